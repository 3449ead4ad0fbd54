//! The container's side of a copy: a forked child that joins the container's user namespace
//! and works on its files through a descriptor of its root, and the messages it exchanges
//! with the host side.
//!
//! The child opens `/proc/PID/root` and `/proc/PID/ns/user` of the container's pid 1 first,
//! joins only the user namespace, and becomes its root (uid and gid 0 there, no supplementary
//! groups). So every file it creates gets container ids from the kernel — an id the container
//! does not map cannot be given at all, as root or rootless — and it stays in the host's mount
//! namespace, where `/proc` is the host's and nothing the container mounted can stand in for
//! it. Every container path is resolved against the root descriptor with `openat2`
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, and the tree is walked by descriptors
//! ([`super::walk`]): a symlink the container planted or swaps in meanwhile resolves inside
//! the container, never on the host. The process is non-dumpable before it forks (and stays
//! so across the id change), so container processes can neither ptrace it nor open its
//! `/proc/PID/*`; it is in no namespace of the container but the user one, so they cannot
//! even see it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use super::place::{Placement, SrcInfo};

/// What the two sides tell each other, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Copy out: what the source in the container is.
    Src(SrcInfo),
    /// Where the stream goes (copy in: decided by the child; copy out: by the host side).
    Place(Placement),
    /// Root, stopped container: the child is in its new user namespace; map it.
    MapMe,
    /// The maps are written.
    Mapped,
    /// Finished.
    Done,
    /// Failed, with the message for the user.
    Fail(String),
}

pub struct Ctl {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Ctl {
    pub fn new(s: UnixStream) -> std::io::Result<Ctl> {
        Ok(Ctl {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    pub fn send(&mut self, m: &Msg) {
        let mut line = serde_json::to_vec(m).unwrap_or_default();
        line.push(b'\n');
        // The other side's end is its own business: a failure shows there as a missing reply.
        let _ = self.w.write_all(&line);
    }

    /// The next message; `None` when the other side ended without one.
    pub fn recv(&mut self) -> Option<Msg> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        }
    }
}

/// Join the user namespace of `pid` as its root and return a descriptor of its root
/// directory (opened before joining, so it is the container's as its pid 1 sees it).
pub fn join(pid: i32) -> Result<OwnedFd, String> {
    let root_path = format!("/proc/{pid}/root");
    let root = nix::fcntl::open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open the container's root {root_path}: {e}"))?;
    let theirs = format!("/proc/{pid}/ns/user");
    let same = match (
        std::fs::read_link(&theirs),
        std::fs::read_link("/proc/self/ns/user"),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        let ns = std::fs::File::open(&theirs)
            .map_err(|e| format!("open the container's user namespace {theirs}: {e}"))?;
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("join the container's user namespace: {e}"))?;
    }
    become_root()?;
    Ok(root)
}

/// Become root of the user namespace just joined: uid and gid 0, no supplementary groups.
pub fn become_root() -> Result<(), String> {
    let (gid, uid) = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| format!("become the container's root group: {e}"))?;
    // Host groups must not travel into the container's files' permission checks. Refused
    // only where setgroups is denied in the namespace (one mapped id), where there are none
    // worth dropping.
    let _ = nix::unistd::setgroups(&[]);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| format!("become the container's root: {e}"))?;
    // The id change reset dumpability to the system default; make sure.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))
}

/// The number of ids mapped in this process's user namespace (uids and gids alike): ids at
/// or above it cannot own a file here.
pub fn mapped_ids() -> u32 {
    let top = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 3).then(|| v[0] + v[2])
            })
            .max()
            .unwrap_or(0)
    };
    top("/proc/self/uid_map")
        .min(top("/proc/self/gid_map"))
        .min(u64::from(u32::MAX)) as u32
}

/// Fork a child that closes the parent's descriptors `parents`, runs `work` and exits (0, or 1 after sending `Fail`); the parent gets
/// the child's pid. The caller is single-threaded and already non-dumpable.
pub fn fork_child(
    ctl: UnixStream,
    parents: &[std::os::fd::RawFd],
    work: impl FnOnce(&mut Ctl) -> Result<(), String>,
) -> Result<nix::unistd::Pid, nix::Error> {
    // SAFETY: `box cp` is single-threaded when it forks; the child only runs `work` (which
    // allocates and makes system calls, safe in a fork of a single-threaded process) and
    // leaves through _exit, never returning into the caller.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            // The parent's ends: a pipe's reader sees its end only when every writer is gone.
            for fd in parents {
                // SAFETY: these descriptors belong to values that only the parent uses; the
                // child never touches or drops them (it leaves through _exit).
                unsafe { libc::close(*fd) };
            }
            let code = match Ctl::new(ctl) {
                Ok(mut c) => match work(&mut c) {
                    Ok(()) => {
                        c.send(&Msg::Done);
                        0
                    }
                    Err(e) => {
                        c.send(&Msg::Fail(e));
                        1
                    }
                },
                Err(_) => 1,
            };
            // SAFETY: ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
    }
}
