//! Waiting for the container's process — its pid 1 under `boxrun`, or the process `box exec`
//! forked: forward signals, relay the pty, follow the window size, and map the exit status.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use super::tty::{RawMode, relay_master, relay_stdin, set_winsize, winsize};
use super::{Blocked, ProcessError, Result, exit_code, sys};

/// Wait for `pid`: forward the signals `signals` blocked, relay the pty `master` to our stdio
/// (raw mode when stdin is a terminal), follow the window size, and return the exit status
/// mapped as docker does.
pub fn wait_loop(
    pid: Pid,
    signals: &Blocked,
    master: Option<OwnedFd>,
    stdin_tty: bool,
) -> Result<i32> {
    let sfd =
        SignalFd::with_flags(signals.set(), SfdFlags::SFD_CLOEXEC).map_err(sys("signalfd"))?;
    let _raw = RawMode::enter(master.is_some() && stdin_tty);
    let mut w = Waiting {
        pid,
        stdin_open: master.is_some(),
        master_open: master.is_some(),
        master,
        stdin_tty,
        status: None,
    };
    // A signal may have arrived before the signalfd existed; it is still pending, so the
    // first poll sees it. Still reap once in case SIGCHLD was consumed elsewhere.
    w.reap_nohang();
    // The relay's buffer, only with a pty: zeroing it on the stack faulted in four pages of a
    // start that has nothing to relay.
    let mut buf = if w.master.is_some() {
        vec![0u8; 16384]
    } else {
        Vec::new()
    };
    while w.status.is_none() || w.master_open {
        if !w.poll_once(&sfd, &mut buf)? {
            break;
        }
    }
    // Reap if the loop ended on the pty side first.
    loop {
        if let Some(c) = w.status {
            return Ok(c);
        }
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            Ok(ws) => w.status = exit_code(ws),
            Err(e) => {
                return Err(ProcessError::Sys {
                    op: "waitpid",
                    cause: e,
                });
            }
        }
    }
}

struct Waiting {
    pid: Pid,
    master: Option<OwnedFd>,
    stdin_tty: bool,
    stdin_open: bool,
    master_open: bool,
    /// The exit code, once the process is reaped.
    status: Option<i32>,
}

impl Waiting {
    fn reap_nohang(&mut self) {
        if let Ok(ws) = waitpid(self.pid, Some(WaitPidFlag::WNOHANG))
            && let Some(c) = exit_code(ws)
        {
            self.status = Some(c);
        }
    }

    /// One poll and what it found; false when there is nothing left to wait for.
    fn poll_once(&mut self, sfd: &SignalFd, buf: &mut [u8]) -> Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mfd = self.master.as_ref().map(|m| m.as_fd());
        if let Some(m) = mfd.filter(|_| self.master_open) {
            fds.push(PollFd::new(m, PollFlags::POLLIN));
        }
        let stdin_idx = fds.len();
        if self.stdin_open && self.status.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the command has exited, only drain what the pty still holds.
        let timeout = if self.status.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => return Ok(true),
            Err(e) => {
                return Err(ProcessError::Sys {
                    op: "poll",
                    cause: e,
                });
            }
            Ok(0) => return Ok(false),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (
            ready(0),
            self.master_open && ready(1),
            stdin_idx < fds.len() && ready(stdin_idx),
        );
        drop(fds);
        if sig_ready && let Ok(Some(si)) = sfd.read_signal() {
            self.on_signal(si.ssi_signo as i32);
        }
        if master_ready && let Some(m) = &self.master {
            self.master_open = relay_master(m, buf);
        }
        if stdin_ready && let Some(m) = &self.master {
            self.stdin_open = relay_stdin(m, buf);
            if !self.stdin_open && self.stdin_tty {
                // A terminal in raw mode reads as closed only when it hangs up (its window
                // was killed). Hang up the container's terminal too, so an interactive shell
                // there ends as it would on a real terminal (a process that ignores that runs
                // on, as a docker container does when its client goes).
                self.master = None;
                self.master_open = false;
            }
        }
        Ok(true)
    }

    fn on_signal(&mut self, sig: i32) {
        if sig == libc::SIGCHLD {
            self.reap_nohang();
        } else if sig == libc::SIGWINCH && self.master.is_some() {
            if let (Some(m), Some(ws)) = (&self.master, winsize(0)) {
                set_winsize(m.as_raw_fd(), &ws);
            }
        } else if let Ok(s) = Signal::try_from(sig) {
            if s != Signal::SIGWINCH {
                super::signals::note_passed_on();
            }
            let _ = kill(self.pid, s);
        }
    }
}
