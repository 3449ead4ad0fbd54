//! The keeper: one long-lived process per unprivileged user that holds the tool's user
//! namespace (and a network namespace for rootless `bridge`), so later commands join it with
//! `setns` instead of making a new one.
//!
//! A new user namespace with a subordinate range needs the setuid helpers `newuidmap` and
//! `newgidmap`: two execs of a setuid binary on every start, about a millisecond of wall time
//! even when they run side by side. Podman keeps a "pause" process for the same reason. The
//! first rootless command makes the keeper: a child that calls `setsid`, unshares a user and a
//! network namespace, has its maps written by the parent, closes every descriptor and sleeps
//! forever. Its pid goes to `keeper.pid` in the user's runtime directory
//! (`$XDG_RUNTIME_DIR/boxkit`, else `/tmp/boxkit-UID`, mode 0700). Later commands open
//! `/proc/PID/ns/user` and join it only after checking that the namespace is owned by the
//! caller and carries exactly the maps the caller would write today (so an edit of
//! /etc/subuid takes effect on the next command); anything else makes a new keeper.
//!
//! The keeper's network namespace is the rootless counterpart of the host side of `box0`
//! (see [`super::network`]): pasta connects it to the host once, a `box0` bridge with NAT lives
//! in it, and each rootless bridge container gets a veth pair into it — so rootless containers
//! reach each other by address, as rootful ones do, and a run does not pay for starting pasta.
//!
//! `box system migrate` (podman's name) stops the keeper and the pasta serving its namespace
//! (which does not notice on its own); so does replacing a stale keeper.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigHandler, Signal, kill};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Pid, fork};
use thiserror::Error;

use super::idmap::{self, IdMaps, IdRange};
use super::nsenter::ns_fd;
use super::rundir::{RuntimeDirError, runtime_dir};

#[derive(Debug, Error)]
pub enum KeeperError {
    #[error(transparent)]
    Dir(#[from] RuntimeDirError),
    #[error("runtime directory {path}: {cause}")]
    RuntimeDir { path: PathBuf, cause: String },
    #[error("start the user namespace keeper: {0}")]
    Start(String),
    #[error(transparent)]
    Maps(#[from] idmap::IdmapError),
}

pub type Result<T> = std::result::Result<T, KeeperError>;

/// A live keeper the caller may join.
#[derive(Debug)]
pub struct Keeper {
    pub pid: i32,
    /// `/proc/PID/ns/user`, opened and checked.
    pub userns: OwnedFd,
}

const PID_FILE: &str = "keeper.pid";

/// `NS_GET_OWNER_UID` from linux/nsfs.h: `_IO(0xb7, 0x4)`.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

fn parse_map(text: &str) -> Vec<IdRange> {
    let mut v: Vec<IdRange> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some(IdRange {
                inside: f.next()??,
                outside: f.next()??,
                count: f.next()??,
            })
        })
        .collect();
    v.sort_by_key(|r| r.inside);
    v
}

fn same_ranges(live: &str, want: &[IdRange]) -> bool {
    let mut want = want.to_vec();
    want.sort_by_key(|r| r.inside);
    parse_map(live) == want
}

fn owner_is_caller(ns: &OwnedFd) -> bool {
    let mut owner: libc::uid_t = u32::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which points at `owner`;
    // `ns` is an open namespace descriptor for the duration of the call.
    let r = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut owner) };
    r == 0 && owner == nix::unistd::geteuid().as_raw()
}

/// The user namespace of `pid`, if it is the caller's and has exactly `maps`.
fn check(pid: i32, maps: &IdMaps) -> Option<OwnedFd> {
    let fd = ns_fd(pid, "user").ok().filter(owner_is_caller)?;
    let uids = crate::procfs::read(format!("/proc/{pid}/uid_map")).ok()?;
    let gids = crate::procfs::read(format!("/proc/{pid}/gid_map")).ok()?;
    if !same_ranges(&uids, &maps.uids) || !same_ranges(&gids, &maps.gids) {
        return None;
    }
    // The pid may have been reused between the open and the reads: the maps count only if
    // they were read from the namespace we hold.
    let held = nix::sys::stat::fstat(fd.as_fd()).ok()?;
    let now = nix::sys::stat::stat(format!("/proc/{pid}/ns/user").as_str()).ok()?;
    (held.st_ino == now.st_ino && held.st_dev == now.st_dev).then_some(fd)
}

fn recorded_pid(dir: &Path) -> Option<i32> {
    crate::procfs::read(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Holds an exclusive flock on the runtime directory's `keeper.lock` while alive.
struct Lock(#[allow(dead_code)] std::fs::File);
fn lock(dir: &Path) -> Result<Lock> {
    let p = dir.join("keeper.lock");
    let f = std::fs::File::create(&p).map_err(|e| KeeperError::RuntimeDir {
        path: p,
        cause: e.to_string(),
    })?;
    // A failed flock is not fatal (as before): the lock only orders concurrent starts.
    // SAFETY: flock takes no pointers; `f` is open for the duration of the call.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    Ok(Lock(f))
}

/// The caller's keeper with `maps`, started when there is none. Must run while the process is
/// single-threaded (it forks).
pub fn ensure(maps: &IdMaps) -> Result<Keeper> {
    let dir = runtime_dir()?;
    if let Some(pid) = recorded_pid(&dir)
        && let Some(userns) = check(pid, maps)
    {
        return Ok(Keeper { pid, userns });
    }
    let _lock = lock(&dir)?;
    // Someone else may have started one while we waited.
    if let Some(pid) = recorded_pid(&dir)
        && let Some(userns) = check(pid, maps)
    {
        return Ok(Keeper { pid, userns });
    }
    if let Some(old) = recorded_pid(&dir)
        && owned_by_caller(old)
    {
        // Stale maps (the subordinate ranges changed): the old one goes.
        let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
    }
    // Whatever served the old keeper's network (it may have died some other way) goes too.
    super::rootless_net::stop_user_mode_net(&dir);
    let pid = spawn(maps)?;
    // Readers take the file whole or not at all.
    let pid_file = dir.join(PID_FILE);
    crate::atomic::write_with(
        &pid_file,
        format!("{pid}\n").as_bytes(),
        0o644,
        crate::atomic::Durability::Atomic,
    )
    .map_err(|e| KeeperError::RuntimeDir {
        path: dir.clone(),
        cause: e.to_string(),
    })?;
    let userns = check(pid, maps).ok_or_else(|| {
        KeeperError::Start(format!("keeper {pid} does not have the expected id maps"))
    })?;
    Ok(Keeper { pid, userns })
}

/// Whether `pid` is a process whose user namespace the caller owns (a keeper of ours).
fn owned_by_caller(pid: i32) -> bool {
    ns_fd(pid, "user").is_ok_and(|fd| owner_is_caller(&fd))
}

fn spawn(maps: &IdMaps) -> Result<i32> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| KeeperError::Start(format!("socketpair: {e}")))?;
    // SAFETY: callers are single-threaded (see ensure), so the child may do anything.
    match unsafe { fork() }.map_err(|e| KeeperError::Start(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(ours);
            let fd = theirs.as_raw_fd();
            let _ = nix::unistd::setsid();
            let ok = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).is_ok();
            let _ = send(fd, if ok { b"u" } else { b"e" }, MsgFlags::empty());
            let mut b = [0u8; 1];
            let go = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'g';
            if !ok || !go {
                // Child path after fork: end without running the parent's exit handlers.
                // SAFETY: _exit only ends this process.
                unsafe { libc::_exit(1) };
            }
            keep()
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let fd = ours.as_raw_fd();
            let mut b = [0u8; 1];
            let unshared = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'u';
            let status = if unshared {
                idmap::write_maps(child.as_raw(), maps, &mut idmap::RealWriter)
                    .map_err(KeeperError::from)
            } else {
                Err(KeeperError::Start(
                    "unshare(CLONE_NEWUSER | CLONE_NEWNET) failed in the keeper".into(),
                ))
            };
            let _ = send(
                fd,
                if status.is_ok() { b"g" } else { b"x" },
                MsgFlags::empty(),
            );
            if status.is_err() {
                let _ = nix::sys::wait::waitpid(child, None);
            }
            status.map(|()| child.as_raw())
        }
    }
}

/// Overwrite this process's argument strings (what /proc/PID/cmdline shows) with `name`,
/// padded with NULs, as setproctitle does: the kernel reads cmdline from the memory between
/// `arg_start` and `arg_end` of the initial stack (fields 48 and 49 of /proc/self/stat).
/// Setting those bounds elsewhere (PR_SET_MM) needs CAP_SYS_RESOURCE, which a rootless
/// keeper lacks. Names longer than the original arguments are cut.
fn set_cmdline(name: &[u8]) {
    let Ok(stat) = crate::procfs::read("/proc/self/stat") else {
        return;
    };
    // Fields after the parenthesised comm start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| rest.split_whitespace().nth(n - 3)?.parse::<usize>().ok();
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    if end <= start {
        return;
    }
    let len = end - start;
    let n = name.len().min(len - 1);
    // SAFETY: [arg_start, arg_end) is this process's own initial stack, mapped writable for
    // its whole life; the keeper is single-threaded and no longer reads its arguments
    // (std::env::args would now see the new name, which is the point). The writes stay inside
    // the range and the last byte stays NUL, so the kernel reads no further.
    unsafe {
        let p = start as *mut u8;
        std::ptr::copy_nonoverlapping(name.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
    }
}

/// The keeper's life: no descriptors, no terminal signals, sleep until killed.
fn keep() -> ! {
    // `ps -o comm` and top name it by its comm; `ps` and `ps -f` by its command line, which
    // would otherwise stay the first command's (`box run …`) for the keeper's whole life.
    let _ = nix::sys::prctl::set_name(c"box-keeper");
    set_cmdline(b"box-keeper");
    // SAFETY: close_range takes no pointers; closing every descriptor is the point (the
    // keeper holds nothing but its namespaces).
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    if let Ok(null) = nix::fcntl::open(c"/dev/null", OFlag::O_RDWR, Mode::empty()) {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
        if null.as_raw_fd() <= 2 {
            // It is one of the standard descriptors now: keep it open.
            let _ = null.into_raw_fd();
        }
    }
    for s in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigIgn) };
    }
    let _ = nix::unistd::chdir("/");
    loop {
        nix::unistd::pause();
    }
}

/// Stop the caller's keeper and the pasta (or slirp4netns) serving its network namespace.
/// Returns whether a keeper was running.
pub fn stop() -> Result<bool> {
    let dir = runtime_dir()?;
    let _lock = lock(&dir)?;
    super::rootless_net::stop_user_mode_net(&dir);
    let Some(pid) = recorded_pid(&dir) else {
        return Ok(false);
    };
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    if !owned_by_caller(pid) {
        return Ok(false);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_compare_regardless_of_order_and_spacing() {
        let live = "         0       1001          1\n         1     100000      65536\n";
        let want = [
            IdRange {
                inside: 1,
                outside: 100000,
                count: 65536,
            },
            IdRange {
                inside: 0,
                outside: 1001,
                count: 1,
            },
        ];
        assert!(same_ranges(live, &want));
        assert!(!same_ranges(live, &want[..1]));
        assert!(!same_ranges("0 1001 1\n1 100000 1000\n", &want));
    }
}
