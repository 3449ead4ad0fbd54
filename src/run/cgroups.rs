//! Resource limits through control groups.
//!
//! A cgroup is a directory in a cgroup filesystem; writing a pid to its `cgroup.procs` moves
//! the process (and its future children) in, and files such as `memory.max` or
//! `pids.max` (v2) / `memory.limit_in_bytes` or `pids.max` (v1) set limits. On v2 one
//! hierarchy carries all controllers, usable only where a writable subtree has them enabled
//! in `cgroup.subtree_control` (delegation). On v1 each controller has its own hierarchy and
//! we need write access to each one we use. Hosts may be hybrid (v1 controllers plus a v2
//! mount with none); we take v2 only when it really offers every controller asked for, else
//! v1, and otherwise refuse with the reason: a limit is never silently ignored.
//! The container gets `<own cgroup>/boxkit/<id>` in each hierarchy, removed after it exits.
//!
//! **Device filter.** With `--userns=host` (root only), where the container has CAP_MKNOD in
//! the initial user namespace, it also runs under docker's device rules ([`DEVICE_RULES`]:
//! mknod of anything, read/write only of the standard nodes) through the cgroup v1 devices
//! controller, in one shared cgroup `<own cgroup>/boxkit` of the devices hierarchy that is set
//! up once and kept (like the `box0` bridge), so a run costs one write of its pid. It is the
//! second line behind `nodev` (see [`super::rootfs`]). In a user namespace (root's default,
//! rootless) mknod of a device is refused by the kernel, so no filter is needed there (see
//! [`device_filter_applies`]); rootless could not set one anyway (device rules need
//! CAP_SYS_ADMIN in the initial user namespace). On a host with cgroup v2 only, the
//! equivalent is a BPF_PROG_TYPE_CGROUP_DEVICE program, which boxkit does not load yet: there
//! `nodev` is the protection of `--userns=host` containers.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::spec::Limits;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error(
        "cannot apply {flag}: no writable cgroup offers the {controller} controller ({why}). \
         Run as root, or as a user with a delegated cgroup v2 subtree (systemd \
         Delegate=yes), or drop the flag"
    )]
    NoController {
        flag: &'static str,
        controller: &'static str,
        why: String,
    },
    #[error("create cgroup {path}: {cause}")]
    Create {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("write {value:?} to {path}: {cause}")]
    Write {
        path: PathBuf,
        value: String,
        cause: std::io::Error,
    },
    #[error("read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "set up the device filter in {path}: {cause}; as root every container runs under \
         docker's device rules, and this host's devices cgroup refused them"
    )]
    Devices {
        path: PathBuf,
        cause: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// One mounted hierarchy: where it is, which controllers, and our process's place in it.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    v2: bool,
    controllers: Vec<String>,
    own: String,
}

/// The controllers a set of limits needs, with the flag that asked for each.
fn needed(l: &Limits) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if l.memory.is_some() || l.memory_swap.is_some() {
        v.push(("memory", "--memory"));
    }
    if l.pids.is_some() {
        v.push(("pids", "--pids-limit"));
    }
    if l.cpu_quota.is_some() {
        v.push(("cpu", "--cpus"));
    }
    if l.cpuset_cpus.is_some() {
        v.push(("cpuset", "--cpuset-cpus"));
    }
    v
}

fn hierarchies() -> Vec<Hierarchy> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = crate::procfs::read("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let mount = PathBuf::from(l[4]);
        match r[0] {
            "cgroup2" => {
                let path = own
                    .lines()
                    .find_map(|x| x.strip_prefix("0::"))
                    .unwrap_or("/")
                    .to_string();
                let ctl = std::fs::read_to_string(
                    mount
                        .join(path.trim_start_matches('/'))
                        .join("cgroup.subtree_control"),
                )
                .unwrap_or_default();
                out.push(Hierarchy {
                    mount,
                    v2: true,
                    controllers: ctl.split_whitespace().map(String::from).collect(),
                    own: path,
                });
            }
            "cgroup" => {
                let ctl: Vec<String> = r[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("name="))
                    .map(String::from)
                    .collect();
                let path = own
                    .lines()
                    .find_map(|x| {
                        let mut f = x.splitn(3, ':');
                        let (_, c, p) = (f.next()?, f.next()?, f.next()?);
                        c.split(',')
                            .any(|c| ctl.iter().any(|k| k == c))
                            .then(|| p.to_string())
                    })
                    .unwrap_or_else(|| "/".into());
                out.push(Hierarchy {
                    mount,
                    v2: false,
                    controllers: ctl,
                    own: path,
                });
            }
            _ => {}
        }
    }
    out
}

fn writable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The cgroup directories made for one container.
#[derive(Debug)]
pub struct Cgroup {
    /// Leaf directories, one per hierarchy used.
    pub paths: Vec<PathBuf>,
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|cause| CgroupError::Write {
        path,
        value: value.to_string(),
        cause,
    })
}

/// Where a cgroup for one container would go: the hierarchies and the controllers set in
/// each. Empty when no limit was asked for.
type Placement = Vec<(Hierarchy, Vec<&'static str>)>;

fn base(h: &Hierarchy) -> PathBuf {
    h.mount.join(h.own.trim_start_matches('/'))
}

/// Whether `limits` can be applied here (a writable cgroup offers every controller they
/// need), without creating anything. In a CI job container the cgroup is usually read-only.
pub fn check(limits: &Limits) -> Result<()> {
    place(limits).map(|_| ())
}

fn place(limits: &Limits) -> Result<Placement> {
    let need = needed(limits);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let all = hierarchies();
    // v2 only when one delegated, writable subtree offers everything.
    let v2 = all.iter().find(|h| {
        h.v2 && need
            .iter()
            .all(|(c, _)| h.controllers.iter().any(|k| k == c))
            && writable(&base(h))
    });
    let mut plan: Placement = Vec::new();
    if let Some(h) = v2 {
        plan.push((h.clone(), need.iter().map(|(c, _)| *c).collect()));
    } else {
        for (c, flag) in &need {
            let Some(h) = all
                .iter()
                .find(|h| !h.v2 && h.controllers.iter().any(|k| k == c))
            else {
                let v2why = match all.iter().find(|h| h.v2) {
                    Some(h) => format!(
                        "the cgroup v2 mount at {} delegates only [{}] here",
                        h.mount.display(),
                        h.controllers.join(" ")
                    ),
                    None => "no cgroup v2 mount".into(),
                };
                return Err(CgroupError::NoController {
                    flag,
                    controller: c,
                    why: format!("no cgroup v1 hierarchy has it, and {v2why}"),
                });
            };
            if !writable(&base(h)) {
                return Err(CgroupError::NoController {
                    flag,
                    controller: c,
                    why: format!(
                        "the v1 hierarchy {} is not writable by uid {}, and no cgroup v2 \
                         subtree delegates it",
                        base(h).display(),
                        nix::unistd::geteuid()
                    ),
                });
            }
            match plan.iter_mut().find(|(p, _)| p.mount == h.mount) {
                Some((_, cs)) => cs.push(c),
                None => plan.push((h.clone(), vec![c])),
            }
        }
    }
    Ok(plan)
}

/// Create the container's cgroup(s), set `limits` and move `pid` in. `Ok(None)` when no limit
/// was asked for (the fast path makes no cgroup at all).
pub fn create(id: &str, limits: &Limits, pid: i32) -> Result<Option<Cgroup>> {
    let plan = place(limits)?;
    if plan.is_empty() {
        return Ok(None);
    }
    let mut cg = Cgroup { paths: Vec::new() };
    let r = (|| {
        for (h, ctls) in &plan {
            let dir = base(h).join("boxkit").join(id);
            std::fs::create_dir_all(&dir).map_err(|cause| CgroupError::Create {
                path: dir.clone(),
                cause,
            })?;
            cg.paths.push(dir.clone());
            for c in ctls {
                apply(&dir, h.v2, c, limits)?;
            }
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok(Some(cg)),
        Err(e) => {
            cg.remove();
            Err(e)
        }
    }
}

fn apply(dir: &Path, v2: bool, controller: &str, l: &Limits) -> Result<()> {
    match (controller, v2) {
        ("memory", false) => {
            if let Some(m) = l.memory {
                write(dir, "memory.limit_in_bytes", &m.to_string())?;
            }
            let swap_file = dir.join("memory.memsw.limit_in_bytes");
            match (l.memory, l.memory_swap) {
                (_, Some(-1)) => {}
                (_, Some(s)) => write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?,
                // docker: memory set, swap unset → memory+swap = 2 × memory (when accounted).
                (Some(m), None) if swap_file.exists() => {
                    write(dir, "memory.memsw.limit_in_bytes", &(2 * m).to_string())?
                }
                _ => {}
            }
        }
        ("memory", true) => {
            if let Some(m) = l.memory {
                write(dir, "memory.max", &m.to_string())?;
            }
            let swap = match (l.memory, l.memory_swap) {
                (_, Some(-1)) => Some("max".to_string()),
                (Some(m), Some(s)) => Some((s as u64).saturating_sub(m).to_string()),
                (Some(m), None) => Some(m.to_string()),
                _ => None,
            };
            if let Some(s) = swap
                && dir.join("memory.swap.max").exists()
            {
                write(dir, "memory.swap.max", &s)?;
            }
        }
        ("pids", _) => {
            let p = l.pids.unwrap_or(-1);
            let v = if p <= 0 {
                "max".to_string()
            } else {
                p.to_string()
            };
            write(dir, "pids.max", &v)?;
        }
        ("cpu", false) => {
            write(
                dir,
                "cpu.cfs_period_us",
                &l.cpu_period.unwrap_or(100_000).to_string(),
            )?;
            write(
                dir,
                "cpu.cfs_quota_us",
                &l.cpu_quota.unwrap_or(-1).to_string(),
            )?;
        }
        ("cpu", true) => {
            let q = l.cpu_quota.map_or("max".to_string(), |q| q.to_string());
            write(
                dir,
                "cpu.max",
                &format!("{q} {}", l.cpu_period.unwrap_or(100_000)),
            )?;
        }
        ("cpuset", v2) => {
            if !v2 {
                // v1 refuses tasks until cpus and mems are set; inherit mems from the parent.
                let parent = dir.parent().unwrap_or(dir);
                for d in [parent, dir] {
                    let up = d.parent().unwrap_or(d);
                    let path = up.join("cpuset.mems");
                    let mems = std::fs::read_to_string(&path)
                        .map_err(|cause| CgroupError::Read { path, cause })?;
                    if std::fs::read_to_string(d.join("cpuset.mems"))
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
                    {
                        write(d, "cpuset.mems", mems.trim())?;
                    }
                    let path = up.join("cpuset.cpus");
                    let cpus = std::fs::read_to_string(&path)
                        .map_err(|cause| CgroupError::Read { path, cause })?;
                    if std::fs::read_to_string(d.join("cpuset.cpus"))
                        .unwrap_or_default()
                        .trim()
                        .is_empty()
                    {
                        write(d, "cpuset.cpus", cpus.trim())?;
                    }
                }
            }
            if let Some(c) = &l.cpuset_cpus {
                write(dir, "cpuset.cpus", c)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Docker's default device rules (the allow list of its default spec, completed by runc's
/// default devices), in the devices controller's syntax, after "deny all": mknod of any node,
/// and read/write/mknod of /dev/null, zero, full, random, urandom, tty, console, ptmx and the
/// ptys of devpts (136:*). runc also allows /dev/net/tun (10:200) for old users; boxkit binds
/// no tun device and leaves it out.
pub const DEVICE_RULES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Whether a container gets the device filter: with `--userns=host` (`in_userns` false), the
/// one mode where the container has CAP_MKNOD in the initial user namespace and can make
/// device nodes. In a user namespace (root's default, rootless) the kernel refuses mknod of
/// any device outright, and everything but the bound nodes is `nodev`, so a filter there
/// would protect nothing more — but cost every start a cgroup migration, which waits for an
/// RCU grace period (5–14 ms measured on this machine for an isolated move).
pub fn device_filter_applies(in_userns: bool) -> bool {
    !in_userns
}

/// Whether the rules of the devices cgroup `dir` are [`DEVICE_RULES`] exactly (`Some(true)`),
/// a subset of them (`Some(false)`: a parent cgroup allows less, which we keep), or anything
/// else, e.g. the inherited "a *:* rwm" of a cgroup never set up (`None`).
fn rules_state(dir: &Path) -> Option<bool> {
    let list = std::fs::read_to_string(dir.join("devices.list")).ok()?;
    let mut have: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    have.sort_unstable();
    have.dedup();
    let mut want = DEVICE_RULES.to_vec();
    want.sort_unstable();
    if have == want {
        Some(true)
    } else if have.iter().all(|r| want.contains(r)) {
        Some(false)
    } else {
        None
    }
}

/// Move `pid` (and so everything it forks) under [`DEVICE_RULES`]: into the shared cgroup
/// `<own cgroup>/boxkit` of the v1 devices hierarchy, creating and configuring it first when
/// needed. Returns false when this host has no v1 devices hierarchy (cgroup v2 only: see the
/// module notes). Call as host root.
pub fn filter_devices(pid: i32) -> Result<bool> {
    let Some(h) = hierarchies()
        .into_iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == "devices"))
    else {
        return Ok(false);
    };
    let base = h.mount.join(h.own.trim_start_matches('/'));
    let dir = base.join("boxkit");
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CgroupError::Devices { path, cause }
    };
    if rules_state(&dir) != Some(true) {
        // Set up (or repair) under a lock on the parent, so two first runs never interleave
        // "deny all" with the other's allow lines while a container is already inside.
        let lock = std::fs::File::open(&base).map_err(err(&base))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } < 0 {
            return Err(err(&base)(std::io::Error::last_os_error()));
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(&dir)(e)),
        }
        // Anything broader than our rules (a fresh cgroup inherits its parent's "a *:* rwm")
        // is reset; a subset (a parent that allows less) is kept as it is.
        if rules_state(&dir).is_none() {
            std::fs::write(dir.join("devices.deny"), "a").map_err(err(&dir))?;
            for r in DEVICE_RULES {
                match std::fs::write(dir.join("devices.allow"), r) {
                    // The parent cgroup does not allow this one: it stays denied.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                    r => r.map_err(err(&dir))?,
                }
            }
        }
    }
    write(&dir, "cgroup.procs", &pid.to_string())?;
    Ok(true)
}

impl Cgroup {
    /// Remove the directories; the processes in them must have exited. The kernel refuses
    /// rmdir for a moment after the last task exits, so retry briefly.
    pub fn remove(&self) {
        for p in &self.paths {
            for _ in 0..200 {
                match std::fs::remove_dir(p) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        // Kill stragglers (e.g. after the supervisor died) before retrying.
                        if let Ok(t) = std::fs::read_to_string(p.join("cgroup.procs")) {
                            for pid in t.lines().filter_map(|l| l.parse::<i32>().ok()) {
                                let _ = nix::sys::signal::kill(
                                    nix::unistd::Pid::from_raw(pid),
                                    nix::sys::signal::Signal::SIGKILL,
                                );
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    _ => break,
                }
            }
            // The shared "boxkit" parent goes when it is empty (fails harmlessly otherwise).
            if let Some(parent) = p.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asked_controllers_are_needed() {
        let l = Limits {
            memory: Some(1 << 25),
            pids: Some(64),
            ..Limits::default()
        };
        let n: Vec<_> = needed(&l).into_iter().map(|(c, _)| c).collect();
        assert_eq!(n, ["memory", "pids"]);
        assert!(needed(&Limits::default()).is_empty());
    }

    #[test]
    fn device_rules_are_dockers_and_a_subset_is_kept_but_anything_broader_is_not() {
        let d = tempfile::tempdir().unwrap();
        let list = |t: &str| std::fs::write(d.path().join("devices.list"), t).unwrap();
        list("a *:* rwm\n");
        assert_eq!(rules_state(d.path()), None);
        list(
            &DEVICE_RULES
                .iter()
                .rev()
                .map(|r| format!("{r}\n"))
                .collect::<String>(),
        );
        assert_eq!(rules_state(d.path()), Some(true));
        list("c 1:3 rwm\nc 1:5 rwm\n");
        assert_eq!(rules_state(d.path()), Some(false));
        list("c 1:3 rwm\nb 8:0 rwm\n");
        assert_eq!(rules_state(d.path()), None);
        assert!(
            DEVICE_RULES
                .iter()
                .all(|r| !r.starts_with('b') || r.ends_with(" m"))
        );
    }

    #[test]
    fn no_limits_makes_no_cgroup() {
        assert!(create("x", &Limits::default(), 1).unwrap().is_none());
    }
}
