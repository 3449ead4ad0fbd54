//! What this environment lets boxkit do (issue 13): inside a CI job container the runtime's
//! seccomp profile, dropped capabilities, a masked /proc or an overlayfs root take away parts
//! of the sandbox, and the strongest isolation left can only be found by trying. A forked
//! child tries each kernel feature the sandbox uses, as the caller, in namespaces of its own
//! that vanish with it, and reports one line per check; nothing on the host changes.
//!
//! `box info` prints the result; boxbuild picks its isolation ([`super::isolation`]) and
//! snapshotter (`crate::build::backends`) from it.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};

/// The detail of a check that did not run.
const NOT_TRIED: &str = "not tried";

/// One kernel feature: whether it worked, and what failed if not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The probe's result, in the order the checks depend on each other.
#[derive(Debug, Clone)]
pub struct Probe {
    pub checks: Vec<Check>,
    /// The caller's subordinate id range (uid side), if /etc/subuid gives one.
    pub subordinate_ids: Option<(u32, u32)>,
    pub elapsed: Duration,
}

impl Probe {
    pub fn ok(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.name == name && c.ok)
    }
}

/// The checks, in order; each needs the ones before it to have worked.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "user-namespace",
        "unshare a user namespace (the tool's id mapping)",
    ),
    ("mount-namespace", "unshare a mount namespace inside it"),
    ("tmpfs", "mount a tmpfs there"),
    (
        "overlay",
        "mount overlayfs (userxattr) with its upper dir on that tmpfs",
    ),
    (
        "uts-namespace",
        "unshare a UTS namespace and set a hostname",
    ),
    (
        "pid-namespace-proc",
        "unshare a pid namespace and mount a new /proc",
    ),
];

/// The probe, run once per process (the first call must come while single-threaded).
pub fn cached() -> &'static Probe {
    cached_in(None)
}

/// [`cached`], also kept across processes in the file `keep` (in the store): a container
/// start then reads a few small files instead of forking the probe (1–2 ms). The file names
/// everything the namespace checks depend on ([`environment_key`]); any difference probes
/// again and rewrites it.
pub fn cached_in(keep: Option<&Path>) -> &'static Probe {
    static PROBE: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| probe_with(keep))
}

/// Only the namespace checks (what [`super::isolation::choose`] reads), kept in `keep` as
/// [`cached_in`] does: no fuse-overlayfs check, no subordinate range. For boxrun's start.
pub fn namespaces_in(keep: &Path) -> Probe {
    let start = Instant::now();
    Probe {
        checks: kept_checks(keep),
        subordinate_ids: None,
        elapsed: start.elapsed(),
    }
}

/// Run the probe (a fork; a few milliseconds). Call while single-threaded.
pub fn probe() -> Probe {
    probe_with(None)
}

fn probe_with(keep: Option<&Path>) -> Probe {
    let start = Instant::now();
    let mut checks = match keep {
        Some(file) => kept_checks(file),
        None => run_child(),
    };
    // Outside the child: plain file checks.
    checks.push(fuse_check());
    // The range the container's ids map to: root's first range, a user's second (the first
    // is the user's own id).
    let subordinate_ids = crate::run::idmap::plan_for_current_user()
        .ok()
        .filter(|(maps, _)| !maps.single)
        .and_then(|(maps, _)| {
            let i = usize::from(!nix::unistd::getuid().is_root());
            maps.uids.get(i).map(|r| (r.outside, r.count))
        });
    Probe {
        checks,
        subordinate_ids,
        elapsed: start.elapsed(),
    }
}

/// The namespace checks from `file` when it was written for this environment, else probed
/// and written there (best effort: an unwritable store only costs the fork next time).
fn kept_checks(file: &Path) -> Vec<Check> {
    let key = environment_key();
    let kept = std::fs::read_to_string(file).unwrap_or_default();
    if let Some(report) = kept
        .strip_prefix(key.as_str())
        .and_then(|r| r.strip_prefix('\n'))
    {
        return parse_report(report);
    }
    let checks = run_child();
    let mut text = key;
    text.push('\n');
    for c in checks
        .iter()
        .filter(|c| c.ok || !c.detail.starts_with(NOT_TRIED))
    {
        let line = if c.ok { "ok" } else { c.detail.as_str() };
        text.push_str(&format!("{} {line}\n", c.name));
    }
    // A cache: losing it to a crash only costs the fork next time.
    let _ = crate::atomic::write_with(
        file,
        text.as_bytes(),
        0o600,
        crate::atomic::Durability::Atomic,
    );
    checks
}

/// What the namespace checks depend on, as one line: this boot, the id maps of the caller's
/// user namespace, the root directory (a job container has its own), the cgroup, the
/// seccomp, no_new_privs and capability state, the AppArmor label and the sysctls that
/// allow or restrict user namespaces. Reading it costs a few small reads; all but the id
/// maps' may have been made ahead ([`read_key_ahead`]).
fn environment_key() -> String {
    let read = |p: &str| crate::procfs::read(p).unwrap_or_default();
    let uid_map = read("/proc/self/uid_map");
    // Each user namespace has its own /proc/sys/user, whose limits read as INT_MAX in a new
    // one (the parents' limits apply): only the initial namespace's value says anything. A
    // start runs in a namespace of its own, where looking the file up costs a new proc
    // inode and a walk past every other namespace's dentry of that name.
    let initial_userns = uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    let max_userns = if initial_userns {
        read("/proc/sys/user/max_user_namespaces")
    } else {
        "-".to_string()
    };
    let ahead = KEY_AHEAD.get().cloned().unwrap_or_else(KeyAhead::read);
    let parts = [
        ahead.boot,
        uid_map,
        read("/proc/self/gid_map"),
        ahead.root,
        ahead.cgroup,
        ahead.status,
        ahead.label,
        max_userns,
        ahead.unprivileged_userns_clone,
        ahead.apparmor_restrict,
    ];
    let joined: Vec<String> = parts
        .iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    format!("boxkit-probe-v1 {}", joined.join(" | "))
}

/// The parts of the environment key that a process's id maps and ids do not change.
#[derive(Clone)]
struct KeyAhead {
    boot: String,
    root: String,
    cgroup: String,
    status: String,
    label: String,
    unprivileged_userns_clone: String,
    apparmor_restrict: String,
}

static KEY_AHEAD: std::sync::OnceLock<KeyAhead> = std::sync::OnceLock::new();

impl KeyAhead {
    fn read() -> KeyAhead {
        use std::os::unix::fs::MetadataExt;
        let read = |p: &str| crate::procfs::read(p).unwrap_or_default();
        let status: Vec<String> = read("/proc/self/status")
            .lines()
            .filter(|l| {
                [
                    "CapBnd:",
                    "CapPrm:",
                    "NoNewPrivs:",
                    "Seccomp:",
                    "Seccomp_filters:",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        KeyAhead {
            boot: crate::bootid::boot_id().unwrap_or_default().to_string(),
            root: std::fs::metadata("/")
                .map(|m| format!("{}:{}", m.dev(), m.ino()))
                .unwrap_or_default(),
            cgroup: read("/proc/self/cgroup"),
            status: status.join(","),
            label: read("/proc/self/attr/current"),
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        }
    }
}

/// Read the environment key's parts that do not depend on the id maps now, in a process that
/// has made its user namespace and waits for its maps (`userns::enter_if_needed`): the wait
/// then does the reading. Only for a process in its final mount namespace, cgroup and
/// capability bounds, with every capability of its new user namespace (as after setresuid
/// to 0 there), since the key is read once per process from then on.
pub fn read_key_ahead() {
    let _ = KEY_AHEAD.set(KeyAhead::read());
}

/// fuse-overlayfs needs /dev/fuse (a job container gets it only with `--device /dev/fuse`)
/// and the program.
fn fuse_check() -> Check {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let prog = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fuse-overlayfs").is_file()));
    let (ok, detail) = match (dev, prog) {
        (Ok(_), true) => (true, String::new()),
        (Err(e), _) => (false, format!("open /dev/fuse: {e}")),
        (Ok(_), false) => (false, "fuse-overlayfs is not in PATH".to_string()),
    };
    Check {
        name: "fuse-overlayfs",
        ok,
        detail,
    }
}

/// Fork the child that tries the namespace checks; parse its report.
fn run_child() -> Vec<Check> {
    let failed_all = |why: String| {
        CHECKS
            .iter()
            .map(|(name, _)| Check {
                name,
                ok: false,
                detail: why.clone(),
            })
            .collect()
    };
    let (r, w) = match pipe() {
        Ok(p) => p,
        Err(e) => return failed_all(format!("pipe: {e}")),
    };
    // SAFETY: box info calls this while single-threaded; the child only makes syscalls,
    // formats its report and leaves with _exit.
    match unsafe { fork() } {
        Err(e) => failed_all(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(r);
            let report = child_checks(w.as_raw_fd());
            let _ = nix::unistd::write(&w, report.as_bytes());
            drop(w);
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(w);
            let mut text = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut text);
            // The report is complete once the pipe closes; the child's exit then tears down
            // its namespaces and mounts, which can take milliseconds (RCU grace periods), so
            // it is reaped if done and otherwise left to the end of this process.
            let _ = waitpid(child, Some(WaitPidFlag::WNOHANG));
            parse_report(&text)
        }
    }
}

/// The report: one line per check, `name ok` or `name error text`; a check missing from it
/// did not run because an earlier one failed.
fn parse_report(text: &str) -> Vec<Check> {
    CHECKS
        .iter()
        .map(|(name, _)| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')));
            match line {
                Some("ok") => Check {
                    name,
                    ok: true,
                    detail: String::new(),
                },
                Some(err) => Check {
                    name,
                    ok: false,
                    detail: err.to_string(),
                },
                None => Check {
                    name,
                    ok: false,
                    detail: format!("{NOT_TRIED} (an earlier check failed)"),
                },
            }
        })
        .collect()
}

/// In the forked child: each step as the sandbox would take it. Returns the report.
fn child_checks(report_fd: RawFd) -> String {
    let mut out = String::new();
    let mut step = |name: &str, r: Result<(), String>| -> bool {
        let ok = r.is_ok();
        out.push_str(&format!(
            "{name} {}\n",
            r.err().unwrap_or_else(|| "ok".into())
        ));
        ok
    };
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    // The tool process changed ids on entering its namespace, which made it non-dumpable:
    // its /proc/self files would then belong to host root, and the new namespace's maps
    // could not be written.
    let _ = nix::sys::prctl::set_dumpable(true);
    if !step("user-namespace", enter_userns(uid, gid)) {
        return out;
    }
    let ns = unshare(CloneFlags::CLONE_NEWNS)
        .and_then(|()| {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
        })
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"));
    if !step("mount-namespace", ns) {
        return out;
    }
    // A tmpfs over a directory every system has; only this namespace sees it.
    let base = "/tmp";
    let tmpfs = mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(|e| format!("mount tmpfs on {base}: {e}"));
    if step("tmpfs", tmpfs) {
        step("overlay", overlay_on(base));
    }
    let uts = unshare(CloneFlags::CLONE_NEWUTS)
        .and_then(|()| nix::unistd::sethostname("boxkit-probe"))
        .map_err(|e| format!("new UTS namespace, sethostname: {e}"));
    step("uts-namespace", uts);
    step("pid-namespace-proc", new_proc(base, report_fd));
    out
}

/// Unshare a user namespace mapping the caller's ids to 0, as the rootless floor does (no
/// setuid helpers: a probe must not need them).
fn enter_userns(uid: u32, gid: u32) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    let write = |f: &str, s: String| std::fs::write(f, s).map_err(|e| format!("write {f}: {e}"));
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// An overlay with lower, upper and work on the tmpfs at `base`, as the tool mounts a layer
/// stack (userxattr: unprivileged overlay).
fn overlay_on(base: &str) -> Result<(), String> {
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(format!("{base}/{d}")).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    let opts = format!("lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work,userxattr");
    mount(
        Some("overlay"),
        format!("{base}/merged").as_str(),
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mount overlay: {e}"))
}

/// A new pid namespace applies to children: fork one that mounts a fresh /proc (a job
/// container's masked /proc makes the kernel refuse it).
fn new_proc(base: &str, report_fd: RawFd) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
    let dir = format!("{base}/proc");
    let _ = std::fs::create_dir(&dir);
    // SAFETY: the probe child is single-threaded; the grandchild only mounts and _exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            // Only the probe child's copy of the report pipe may keep it open.
            let _ = nix::unistd::close(report_fd);
            let code = match mount(
                Some("proc"),
                dir.as_str(),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: ends the forked grandchild without running destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, errno)) => Err(format!(
                "mount proc in a new pid namespace: {}",
                nix::Error::from_raw(errno)
            )),
            other => Err(format!("mount proc in a new pid namespace: {other:?}")),
        },
    }
}

/// `box info`'s text: one line per check.
pub fn render(p: &Probe) -> String {
    let mut s = String::from("Environment (probed as this user):\n");
    for c in &p.checks {
        let what = CHECKS
            .iter()
            .find(|(n, _)| *n == c.name)
            .map_or("open /dev/fuse, fuse-overlayfs in PATH", |(_, w)| *w);
        if c.ok {
            s.push_str(&format!("  {:<20} yes   {what}\n", c.name));
        } else {
            s.push_str(&format!("  {:<20} no    {what}: {}\n", c.name, c.detail));
        }
    }
    match p.subordinate_ids {
        // Root in a job container without a range: the job's own ids, mapped as they are.
        Some((0, count)) => s.push_str(&format!(
            "  {:<20} yes   no /etc/subuid range: the job's own ids 0-{} (identity, in a job \
             container)\n",
            "subordinate-ids",
            count - 1
        )),
        Some((start, count)) => s.push_str(&format!(
            "  {:<20} yes   /etc/subuid: {count} ids from {start}\n",
            "subordinate-ids"
        )),
        None => s.push_str(&format!(
            "  {:<20} no    no /etc/subuid range: only the caller's own id is mapped\n",
            "subordinate-ids"
        )),
    }
    s.push_str(&format!(
        "  probed in {:.1} ms\n",
        p.elapsed.as_secs_f64() * 1000.0
    ));
    s
}

/// A probe result where every check but `failing` worked (for tests of what is chosen from
/// a probe).
#[cfg(test)]
pub(crate) fn with_failing(failing: &[&str]) -> Probe {
    Probe {
        checks: CHECKS
            .iter()
            .map(|(n, _)| *n)
            .chain(["fuse-overlayfs"])
            .map(|name| Check {
                name,
                ok: !failing.contains(&name),
                detail: if failing.contains(&name) {
                    "EPERM".into()
                } else {
                    String::new()
                },
            })
            .collect(),
        subordinate_ids: None,
        elapsed: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_result_is_used_only_for_the_environment_it_was_probed_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("probe");
        // Another environment's result (say, a job container that allowed nothing) is not
        // believed: the probe runs again and replaces it.
        std::fs::write(&file, "boxkit-probe-v1 elsewhere\nuser-namespace EPERM\n").unwrap();
        let fresh = kept_checks(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(&environment_key()), "{text}");
        // This environment's result is read back as it was probed, without a probe: a
        // planted report under the right key shows it is the file that answers.
        assert_eq!(kept_checks(&file), fresh);
        let planted = format!("{}\nuser-namespace planted\n", environment_key());
        std::fs::write(&file, planted).unwrap();
        let read = kept_checks(&file);
        assert!(!read[0].ok && read[0].detail == "planted", "{read:?}");
        assert!(read[1].detail.starts_with(NOT_TRIED));
    }

    #[test]
    fn the_report_reads_ok_errors_and_checks_that_did_not_run() {
        let c = parse_report("user-namespace ok\nmount-namespace unshare(CLONE_NEWNS): EPERM\n");
        assert!(c[0].ok);
        assert!(!c[1].ok);
        assert_eq!(c[1].detail, "unshare(CLONE_NEWNS): EPERM");
        assert!(!c[2].ok);
        assert!(c[2].detail.starts_with("not tried"));
        assert_eq!(c.len(), CHECKS.len());
    }
}
