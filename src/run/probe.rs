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
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};

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
    static PROBE: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe)
}

/// Run the probe (a fork; a few milliseconds). Call while single-threaded.
pub fn probe() -> Probe {
    let start = Instant::now();
    let mut checks = run_child();
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
                    detail: "not tried (an earlier check failed)".to_string(),
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
