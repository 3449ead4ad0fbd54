//! The log of a foreground container (`boxrun` without `-d`, `--rm` or `-t`): its stdout and
//! stderr become pipes read by a small forked process, the tee, which passes every byte on
//! to boxrun's own stdout or stderr and appends it to `container.log` with its line index
//! ([`super::logs::LogWriter`]), as a detached container's monitor does.
//!
//! A process rather than a thread: the supervisor must stay single-threaded (its clone of
//! the container would otherwise need one more fork), and the tee ignores the terminal's
//! signals, which reach the whole foreground process group while the supervisor forwards
//! them to the container. When boxrun's stdout (or stderr) is closed by its reader, the tee
//! closes that pipe, so the container gets SIGPIPE/EPIPE as it would have without the tee.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::logs::{self, LogWriter};

/// A running tee; [`Tee::finish`] gives boxrun its stdout and stderr back.
pub struct Tee {
    pid: nix::unistd::Pid,
    saved_out: OwnedFd,
    saved_err: OwnedFd,
}

fn open_append(p: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600) // the log holds whatever the container prints, secrets included
        .open(p)
        .ok()
}

fn dup_cloexec(fd: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor or fails; no memory is involved.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: `d` is a fresh descriptor that nothing else owns.
    (d >= 0).then(|| unsafe { OwnedFd::from_raw_fd(d) })
}

/// Start the tee for the log at `log`, and point this process's stdout and stderr at it
/// (the container inherits them). None when anything fails: then nothing changed, and the
/// container runs without a log.
pub fn start(log: &Path) -> Option<Tee> {
    let log_file = open_append(log)?;
    let index = open_append(&logs::index_path(log))?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let saved_out = dup_cloexec(1)?;
    let saved_err = dup_cloexec(2)?;
    // SAFETY: glibc's fork runs its handlers, so the child's allocator is usable whatever
    // other threads did; the child only polls, reads and writes, and ends in _exit.
    match unsafe { nix::unistd::fork() }.ok()? {
        nix::unistd::ForkResult::Child => {
            drop((out_w, err_w));
            ignore_terminal_signals();
            relay(
                [(out_r, saved_out), (err_r, saved_err)],
                LogWriter::new(log_file, index),
            );
            // SAFETY: _exit skips boxrun's destructors and atexit handlers, which the forked
            // tee must not run.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop((out_r, err_r));
            if nix::unistd::dup2_stdout(&out_w).is_err()
                || nix::unistd::dup2_stderr(&err_w).is_err()
            {
                let _ = nix::unistd::dup2_stdout(&saved_out);
                let _ = nix::unistd::dup2_stderr(&saved_err);
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                return None;
            }
            Some(Tee {
                pid: child,
                saved_out,
                saved_err,
            })
        }
    }
}

fn ignore_terminal_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for s in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGHUP,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}

/// Copy each pipe to its output and to the log until every pipe has ended.
fn relay(pairs: [(OwnedFd, OwnedFd); 2], mut log: LogWriter) {
    let mut open: Vec<(Option<OwnedFd>, std::fs::File)> = pairs
        .into_iter()
        .map(|(r, w)| (Some(r), std::fs::File::from(w)))
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut log_ok = true;
    while open.iter().any(|(r, _)| r.is_some()) {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|(r, _)| {
                    r.as_ref()
                        .map(|r| PollFd::new(r.as_fd(), PollFlags::POLLIN))
                })
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(_) => return,
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|e| !e.is_empty()))
                .collect()
        };
        let mut k = 0;
        for (r, out) in open.iter_mut() {
            let Some(fd) = r.as_ref() else { continue };
            let hit = ready[k];
            k += 1;
            if !hit {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::Error::EBADF) => *r = None,
                Ok(n) => {
                    if log_ok {
                        log_ok = log.write(&buf[..n]).is_ok();
                    }
                    if out.write_all(&buf[..n]).is_err() {
                        // The reader went away: the container learns it on its next write.
                        *r = None;
                    }
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => *r = None,
            }
        }
    }
}

impl Tee {
    /// Give this process its stdout and stderr back (closing its ends of the pipes), then
    /// wait (bounded) for the tee to pass on the container's last output.
    pub fn finish(self) {
        let _ = std::io::stdout().flush();
        let _ = nix::unistd::dup2_stdout(&self.saved_out);
        let _ = nix::unistd::dup2_stderr(&self.saved_err);
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        // A helper of the run that still holds the pipes (none should) must not keep boxrun.
        let end = Instant::now() + Duration::from_secs(2);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {}
                _ => return,
            }
            if Instant::now() >= end {
                let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(self.pid, None);
                return;
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }
}
