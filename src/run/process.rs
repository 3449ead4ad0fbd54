//! The container process: from clone to exec, and the supervisor that waits for it.
//!
//! The supervisor blocks the signals it forwards (and SIGCHLD) before `clone(2)`, so none is
//! lost, and later reads them from a signalfd. The child — pid 1 of its pid namespace — waits
//! on a pipe until the host side (cgroup, network) is ready, builds its root (see
//! [`super::rootfs`]), resolves the user against the image's /etc/passwd, becomes that user
//! ([`super::finalize`]), and execs the command, which therefore *is* pid 1 (unless `init`:
//! then the child stays as a tiny init that reaps orphans and forwards signals to the
//! command). Setup errors travel back on a close-on-exec pipe: EOF with no message means the
//! exec happened. The supervisor forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2
//! and SIGWINCH, relays a pseudo-terminal when asked, and maps the wait status the way docker
//! does (exit n → n, killed by signal n → 128+n).
//!
//! - `supervisor`: the tool-side process — prepare, clone, host setup, wait.
//! - `child`: the container side until exec, `--init`'s loop, and the PATH search
//!   ([`exec_searching_path`]).
//! - [`tty`]: the pty made inside the container and passed back to the waiting process
//!   ([`PtyChannel`]).
//! - `signals`: the forwarded signals, blocked while a container runs ([`Blocked`]).
//! - `wait`: the wait loop (signals, terminal relay, exit status) shared with `box exec`
//!   ([`wait_loop`]).

mod child;
mod signals;
mod supervisor;
pub mod tty;
mod wait;

use nix::sys::wait::WaitStatus;
use thiserror::Error;

pub use child::exec_searching_path;
pub use signals::{Blocked, FORWARDED, passed_on};
pub(crate) use supervisor::single_threaded;
pub use supervisor::{Last, run};
pub use tty::PtyChannel;
pub(crate) use tty::{receive_fds, receive_fds_now};
pub use wait::wait_loop;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
    #[error("create scratch dir {path}: {cause}")]
    Scratch {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Namespace(#[from] super::namespaces::NamespaceError),
    #[error(transparent)]
    Host(#[from] super::agent::AgentError),
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    /// The container failed before its command started; the message comes from inside.
    #[error("container setup: {0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, ProcessError>;

/// Docker's mapping of a wait status to an exit code.
pub fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ProcessError {
    move |cause| ProcessError::Sys { op, cause }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn exit_status_is_mapped_like_docker() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGTERM, false)),
            Some(143)
        );
    }
}
