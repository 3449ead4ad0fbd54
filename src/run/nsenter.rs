//! Opening another process's namespaces (`/proc/PID/ns/KIND`) and joining them: how the
//! keeper's namespaces ([`super::keeper`]) are entered by the rootless bridge and the
//! published-ports proxy.

use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

/// `/proc/PID/ns/KIND`, opened (for `setns`).
pub fn ns_fd(pid: i32, kind: &str) -> std::io::Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/{kind}");
    nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
}

/// Join the user and network namespaces of `pid` (the keeper's; single-threaded callers
/// only: a process with threads cannot change its user namespace).
pub fn join_net(pid: i32) -> std::io::Result<()> {
    let user = ns_fd(pid, "user")?;
    let net = ns_fd(pid, "net")?;
    nix::sched::setns(user, CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)?;
    nix::sched::setns(net, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    Ok(())
}
