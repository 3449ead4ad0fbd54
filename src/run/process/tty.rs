//! The container's terminal (`-t`): a pty opened *inside* the container, in its own devpts
//! (so the name `tty` prints exists there), whose master travels back to the waiting process
//! over a socket pair with SCM_RIGHTS; the waiting process relays it to its own stdio, with
//! the caller's terminal in raw mode (`RawMode`).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// With `-t`: the socket pair over which the container's process sends back its pty master.
pub struct PtyChannel {
    ours: OwnedFd,
    theirs: Option<OwnedFd>,
}

impl PtyChannel {
    /// A channel when `tty`, else none.
    pub fn new(tty: bool) -> nix::Result<Option<PtyChannel>> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        if !tty {
            return Ok(None);
        }
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok(Some(PtyChannel {
            ours,
            theirs: Some(theirs),
        }))
    }

    /// The end the container's process uses ([`open_in_container`]) after the fork or clone.
    pub fn child_end(&self) -> Option<RawFd> {
        self.theirs.as_ref().map(|f| f.as_raw_fd())
    }

    /// Close our copy of the child's end (right after the fork), so that a child that dies
    /// before sending reads as EOF.
    pub fn close_child_end(&mut self) {
        self.theirs = None;
    }

    /// Wait for the pty master; None when the child closed its end first.
    pub fn receive_master(mut self) -> Option<OwnedFd> {
        self.close_child_end();
        receive_fd(&self.ours)
    }
}

/// Receive one file descriptor sent with SCM_RIGHTS; None when the peer closed first.
pub(super) fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    receive_fds(sock).into_iter().next()
}

/// Receive the descriptors (at most eight) of one SCM_RIGHTS message; none when the peer
/// closed first.
pub(crate) fn receive_fds(sock: &impl AsRawFd) -> Vec<OwnedFd> {
    receive_fds_with(sock, nix::sys::socket::MsgFlags::empty()).unwrap_or_default()
}

/// [`receive_fds`] without waiting: `None` when no message has arrived yet.
pub(crate) fn receive_fds_now(sock: &impl AsRawFd) -> Option<Vec<OwnedFd>> {
    receive_fds_with(sock, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
}

/// One SCM_RIGHTS message's descriptors; `None` only when `MSG_DONTWAIT` found none yet.
fn receive_fds_with(
    sock: &impl AsRawFd,
    flags: nix::sys::socket::MsgFlags,
) -> Option<Vec<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let msg = match recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | flags,
    ) {
        Ok(m) => m,
        Err(nix::Error::EAGAIN) if flags.contains(MsgFlags::MSG_DONTWAIT) => return None,
        Err(_) => return Some(Vec::new()),
    };
    let Ok(cmsgs) = msg.cmsgs() else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in our table just now; nothing
            // else owns them.
            out.extend(fds.iter().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) }));
        }
    }
    Some(out)
}

/// In the container (after pivot_root): open a pty in its devpts, give it the window size of
/// the caller's terminal (still our stdin here) before anything runs on it, make the slave our
/// controlling terminal and stdio, and send the master over `sock` ([`PtyChannel::child_end`]),
/// which is closed then.
pub fn open_in_container(sock: RawFd) -> std::result::Result<(), String> {
    use nix::fcntl::OFlag;
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("open /dev/ptmx: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {name}: {e}"))?;
    if let Some(ws) = winsize(0) {
        set_winsize(master.as_raw_fd(), &ws);
    }
    // SAFETY: TIOCSCTTY takes an integer argument; `slave` is open.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!(
            "make {name} the controlling terminal: {}",
            nix::Error::last()
        ));
    }
    let _ = nix::unistd::dup2_stdin(&slave);
    let _ = nix::unistd::dup2_stdout(&slave);
    let _ = nix::unistd::dup2_stderr(&slave);
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock,
        &[std::io::IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send pty master: {e}"))?;
    // SAFETY: `sock` is the child's copy of the channel's end, which nothing in this process
    // owns as a value (the parent's `PtyChannel` is never dropped here: the child only execs
    // or _exits), so closing it by number closes nothing else.
    unsafe { libc::close(sock) };
    Ok(())
}

/// The window size of the terminal on `fd`.
pub(super) fn winsize(fd: RawFd) -> Option<nix::pty::Winsize> {
    // SAFETY: winsize is plain integers, valid zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which outlives the call.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Set the window size of the terminal on `fd` (best effort).
pub(super) fn set_winsize(fd: RawFd, ws: &nix::pty::Winsize) {
    // SAFETY: TIOCSWINSZ reads one winsize from `ws`, which outlives the call.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws) };
}

/// The caller's terminal in raw mode while alive (restored on drop); a no-op when `on` is false.
pub(super) struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    pub(super) fn enter(on: bool) -> RawMode {
        if !on {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(orig) = nix::sys::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Copy what the pty master has to our stdout; false once the pty is closed (all slaves gone).
pub(super) fn relay_master(m: &OwnedFd, buf: &mut [u8]) -> bool {
    match nix::unistd::read(m, buf) {
        Ok(0) | Err(nix::Error::EIO) => false,
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
        Err(nix::Error::EINTR | nix::Error::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Copy what our stdin has to the pty master; false at end of input.
pub(super) fn relay_stdin(m: &OwnedFd, buf: &mut [u8]) -> bool {
    match nix::unistd::read(std::io::stdin().as_fd(), buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let _ = nix::unistd::write(m, &buf[..n]);
            true
        }
    }
}
