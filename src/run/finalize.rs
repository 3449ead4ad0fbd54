//! Becoming the container's user: the last steps before exec, one function for every process
//! boxkit starts in a container — pid 1 of `boxrun` and of RUN steps, boxkit's `--init` (and
//! so the command it forks), and the process `box exec` forks inside a running container.
//!
//! The order is the point of this file:
//! 1. Non-dumpable until exec (CVE-2019-5736): the process is still boxkit, and a dumpable
//!    one would let the container open its /proc/PID/exe, the host binary. execve makes the
//!    command dumpable again as usual; boxkit's `--init` never execs and so stays closed.
//! 2. Every descriptor above 2 closed (CVE-2024-21626), except the caller's `--preserve-fds`
//!    range and boxkit's own close-on-exec error pipe. This comes before anything resolves a
//!    path, so no inherited descriptor can be reached through /proc/self/fd.
//! 3. The working directory opened (and created, for `boxrun`) inside the container's root,
//!    with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: a symlink or a
//!    /proc/self/fd/N path cannot lead out. Done as container root, as runc first tries.
//! 4. The seccomp filter (compiled by the caller before forking).
//! 5. Bounding set, groups, gid, uid, then effective/permitted (the container's set for root,
//!    nothing otherwise) with inheritable and ambient always empty (CVE-2022-29162).
//! 6. no_new_privs, then `fchdir` into the directory from 3 and a `getcwd` check that it is
//!    reachable from the container's root, then the parent-death signal (the id change would
//!    have cleared it).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Component, Path};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use thiserror::Error;

use super::{caps, user};

/// Docker's PATH for a container whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Error)]
pub enum FinalizeError {
    #[error("make the process non-dumpable: {0}")]
    Dumpable(nix::Error),
    #[error("close inherited file descriptors: {0}")]
    CloseFds(nix::Error),
    #[error("--preserve-fds: file descriptor {fd} {why}")]
    PreservedFd { fd: RawFd, why: String },
    #[error(transparent)]
    Caps(#[from] caps::CapsError),
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    #[error("setgroups {groups:?}: {cause}")]
    Groups { groups: Vec<u32>, cause: nix::Error },
    #[error(
        "{what} {id} is outside the container's id range {range} (insufficient UIDs or GIDs \
         available in user namespace): choose a user and group inside it"
    )]
    OutOfRange {
        what: &'static str,
        id: u32,
        range: String,
    },
    #[error("setgid {gid}: {cause} (is gid {gid} mapped in the user namespace?)")]
    Gid { gid: u32, cause: nix::Error },
    #[error("setuid {uid}: {cause} (is uid {uid} mapped in the user namespace?)")]
    Uid { uid: u32, cause: nix::Error },
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("{op} working directory {path}: {cause}{hint}")]
    Cwd {
        op: &'static str,
        path: String,
        cause: nix::Error,
        hint: &'static str,
    },
    #[error(
        "working directory {path} is outside the container's root ({seen}): refusing to run \
         the command there (a possible container breakout)"
    )]
    CwdOutside { path: String, seen: String },
    #[error("NUL byte in {0:?}")]
    Nul(String),
}

pub type Result<T> = std::result::Result<T, FinalizeError>;

/// What the process becomes.
pub struct Finish<'a> {
    pub argv: &'a [String],
    /// The container's `K=V` environment; PATH, HOSTNAME, HOME (and TERM with a tty) are added
    /// when missing.
    pub env: Vec<String>,
    pub hostname: &'a str,
    /// stdio is a terminal the process should own (its slave side, already on 0-2).
    pub tty: bool,
    pub user: &'a user::Resolved,
    /// The capability set (bounding; effective and permitted for root).
    pub caps: u64,
    pub no_new_privs: bool,
    pub cwd: &'a str,
    /// Create a missing working directory (as container root), as `docker run` does.
    pub create_cwd: bool,
    /// Descriptors 3..3+N stay open (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// boxkit's own close-on-exec descriptor that must stay open until exec (the error pipe
    /// whose EOF tells the supervisor the exec happened).
    pub keep_fd: Option<RawFd>,
    /// The seccomp filter, compiled before the fork (nothing is allocated here for it).
    pub seccomp: &'a super::seccomp::Filter,
}

/// Ready to exec.
pub struct Ready {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
}

/// Make the calling process (non-)dumpable. `box exec` calls this first thing: until it
/// execs, every process it forks is boxkit, running as the caller.
pub fn set_dumpable(on: bool) -> Result<()> {
    nix::sys::prctl::set_dumpable(on).map_err(FinalizeError::Dumpable)
}

/// Become the container's user; see the module documentation for what and in which order.
///
/// # Safety
/// Closes every descriptor above 2 but the preserved ones and `keep_fd`: call it only in a
/// process that afterwards only execs or exits, without using or dropping any value that
/// owns one of the closed descriptors (a child boxkit forked or cloned for this).
pub unsafe fn finalize(f: &Finish) -> Result<Ready> {
    set_dumpable(false)?;
    let u = f.user;
    let env = default_env(f);
    let cs = |s: &String| CString::new(s.as_str()).map_err(|_| FinalizeError::Nul(s.clone()));
    let ready = Ready {
        argv: f.argv.iter().map(cs).collect::<Result<_>>()?,
        env: env.iter().map(cs).collect::<Result<_>>()?,
    };

    // SAFETY: forwarded from this function's contract.
    unsafe { close_inherited(f.preserve_fds, f.keep_fd) }?;

    if f.tty {
        // The user owns its terminal, as with docker. Best effort: the pty was made by us.
        let _ = nix::unistd::fchown(
            std::io::stdin(),
            Some(u.uid.into()),
            None::<nix::unistd::Gid>,
        );
    }
    let cwd = open_cwd(f.cwd, f.create_cwd)?;

    // After the mounts and the fd closing, before the id switch and the capability drop:
    // loading a filter without no_new_privs needs CAP_SYS_ADMIN (runc's order). Everything
    // after this point must be allowed by the profile; the seccomp unit tests check that
    // boxkit's default profile allows it.
    super::seccomp::install(f.seccomp)?;

    caps::limit_bounding(f.caps)?;
    let groups: Vec<nix::unistd::Gid> = u.groups.iter().map(|g| (*g).into()).collect();
    if let Err(cause) = nix::unistd::setgroups(&groups) {
        // A user namespace whose gid_map was written with setgroups denied (no subordinate
        // range) cannot set groups at all; anything else is an error.
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            let foreign = u.groups.iter().find_map(|g| unmapped("gid", *g, cause));
            return Err(foreign.unwrap_or(FinalizeError::Groups {
                groups: u.groups.clone(),
                cause,
            }));
        }
    }
    nix::unistd::setresgid(u.gid.into(), u.gid.into(), u.gid.into()).map_err(|cause| {
        unmapped("gid", u.gid, cause).unwrap_or(FinalizeError::Gid { gid: u.gid, cause })
    })?;
    nix::unistd::setresuid(u.uid.into(), u.uid.into(), u.uid.into()).map_err(|cause| {
        unmapped("uid", u.uid, cause).unwrap_or(FinalizeError::Uid { uid: u.uid, cause })
    })?;
    // A non-root user keeps no capability; nobody keeps inheritable or ambient ones.
    caps::set_process(if u.uid == 0 { f.caps } else { 0 })?;
    if f.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(FinalizeError::NoNewPrivs)?;
    }
    enter_cwd(&cwd, f.cwd)?;
    drop(cwd);
    // Die with the supervisor. Set after the id change, which would clear it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    Ok(ready)
}

fn default_env(f: &Finish) -> Vec<String> {
    let mut env = f.env.clone();
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(a, _)| a == k))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={}", f.hostname));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", f.user.home));
    }
    if f.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    env
}

/// Close every descriptor above 2 except 3..3+`preserve` (made inheritable) and `keep`.
///
/// # Safety
/// See [`finalize`].
unsafe fn close_inherited(preserve: u32, keep: Option<RawFd>) -> Result<()> {
    let first = 3u32.saturating_add(preserve);
    for fd in 3..first {
        let fd = fd as RawFd;
        if keep == Some(fd) {
            return Err(FinalizeError::PreservedFd {
                fd,
                why: "was not passed by the caller (boxkit opened it)".into(),
            });
        }
        // Inherited descriptors are normally inheritable already; make sure.
        // SAFETY: F_SETFD only changes a flag of the descriptor, if it is open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(FinalizeError::PreservedFd {
                fd,
                why: format!("is not open: {}", nix::Error::last()),
            });
        }
    }
    let ranges = match keep {
        Some(k) if k >= first as RawFd => [(first, k as u32 - 1), (k as u32 + 1, u32::MAX)],
        _ => [(first, u32::MAX), (1, 0)],
    };
    for (lo, hi) in ranges.into_iter().filter(|(lo, hi)| lo <= hi) {
        // SAFETY: forwarded from this function's contract.
        unsafe { close_range(lo, hi) }.map_err(FinalizeError::CloseFds)?;
    }
    Ok(())
}

/// Close descriptors `lo..=hi`.
///
/// # Safety
/// See [`finalize`].
unsafe fn close_range(lo: u32, hi: u32) -> nix::Result<()> {
    // SAFETY: close_range(2) takes plain integers; the caller owns what it closes.
    if unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) } == 0 {
        return Ok(());
    }
    let e = nix::Error::last();
    if e != nix::Error::ENOSYS {
        return Err(e);
    }
    // Kernels before 5.9: close what /proc/self/fd lists (the listing's own descriptor is in
    // the list and already closed by then; EBADF is fine).
    let open: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| (lo..=hi).contains(fd)) {
        // SAFETY: as above.
        unsafe { libc::close(fd as RawFd) };
    }
    Ok(())
}

/// Open `path` as a directory inside the root of our mount namespace, following symlinks
/// only within it and no magic links at all; create missing components when `create`.
fn open_cwd(path: &str, create: bool) -> Result<OwnedFd> {
    let err = |op: &'static str| {
        move |cause: nix::Error| FinalizeError::Cwd {
            op,
            path: path.to_string(),
            cause,
            hint: if matches!(cause, nix::Error::ELOOP | nix::Error::EXDEV)
                || path.starts_with("/proc/")
            {
                " (a working directory must lie inside the container: it cannot be reached \
                 through /proc/self/fd or another magic link)"
            } else {
                ""
            },
        }
    };
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open"))?;
    let rel = if path.is_empty() { "." } else { path };
    match openat2(root.as_fd(), rel, how()) {
        Ok(fd) => return Ok(fd),
        Err(nix::Error::ENOENT) if create => {}
        Err(e) => return Err(err("open")(e)),
    }
    // Component by component, each prefix resolved from the root again, so a symlink met on
    // the way is followed exactly as the kernel would inside the container.
    let mut prefix = std::path::PathBuf::from(".");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(name) => {
                let parent = openat2(root.as_fd(), prefix.as_path(), how()).map_err(err("open"))?;
                prefix.push(name);
                match openat2(root.as_fd(), prefix.as_path(), how()) {
                    Ok(_) => {}
                    Err(nix::Error::ENOENT) => {
                        match nix::sys::stat::mkdirat(
                            parent.as_fd(),
                            name,
                            Mode::from_bits_truncate(0o755),
                        ) {
                            Ok(()) | Err(nix::Error::EEXIST) => {}
                            Err(e) => return Err(err("create")(e)),
                        }
                    }
                    Err(e) => return Err(err("open")(e)),
                }
            }
            Component::ParentDir => prefix.push(".."),
            _ => {}
        }
    }
    openat2(root.as_fd(), prefix.as_path(), how()).map_err(err("open"))
}

/// Enter the directory [`open_cwd`] opened (as the container's user now), and check that the
/// kernel sees it inside our root: getcwd reports "(unreachable)" (glibc: ENOENT) otherwise.
fn enter_cwd(dir: &OwnedFd, path: &str) -> Result<()> {
    nix::unistd::fchdir(dir).map_err(|cause| FinalizeError::Cwd {
        op: "enter",
        path: path.to_string(),
        cause,
        hint: "",
    })?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(FinalizeError::CwdOutside {
            path: path.to_string(),
            seen: format!("getcwd says {}", p.display()),
        }),
        Err(e) => Err(FinalizeError::CwdOutside {
            path: path.to_string(),
            seen: format!("getcwd: {e}"),
        }),
    }
}

/// An id change refused with EINVAL names an id this user namespace does not map: say so,
/// with the range it does map (read only on this error path).
fn unmapped(what: &'static str, id: u32, cause: nix::Error) -> Option<FinalizeError> {
    if cause != nix::Error::EINVAL {
        return None;
    }
    let file = if what == "uid" { "uid_map" } else { "gid_map" };
    let map = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let ranges: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().ok());
            let (inside, _, count) = (f.next()??, f.next()??, f.next()??);
            Some((inside, count))
        })
        .collect();
    if ranges
        .iter()
        .any(|(a, n)| (*a..a + n).contains(&u64::from(id)))
    {
        return None;
    }
    let range = ranges
        .iter()
        .map(|(a, n)| format!("{a}-{}", a + n - 1))
        .collect::<Vec<_>>()
        .join(", ");
    Some(FinalizeError::OutOfRange { what, id, range })
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_FILTER: crate::run::seccomp::Filter = crate::run::seccomp::Filter::EMPTY;

    fn finish<'a>(u: &'a user::Resolved, env: Vec<String>, tty: bool) -> Finish<'a> {
        Finish {
            argv: &[],
            env,
            hostname: "h",
            tty,
            user: u,
            caps: 0,
            no_new_privs: false,
            cwd: "/",
            create_cwd: false,
            preserve_fds: 0,
            keep_fd: None,
            seccomp: &NO_FILTER,
        }
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let u = user::Resolved {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/home/app".into(),
            name: Some("app".into()),
        };
        let env = default_env(&finish(&u, vec!["PATH=/x".into()], true));
        assert_eq!(
            env,
            ["PATH=/x", "HOSTNAME=h", "HOME=/home/app", "TERM=xterm"].map(String::from)
        );
        let env = default_env(&finish(&u, vec!["HOME=/h".into()], false));
        assert_eq!(
            env,
            [
                "HOME=/h".to_string(),
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=h".into()
            ]
        );
    }
}
