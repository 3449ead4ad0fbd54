//! The monitor of a detached container (`boxrun -d`): it relays the container's output into
//! its log, tells the waiting `boxrun -d` when the command runs, and waits for the exit.

use std::time::{Duration, Instant};

use super::{ContainerError, Containers, Result, State, detach, logs};
use crate::run;

/// Wait until the container's command runs (then tell `boxrun -d`) and then until the
/// supervisor exits; returns the container's exit code.
pub(super) fn wait_started_then_exit(
    c: &Containers,
    st: &State,
    supervisor: nix::unistd::Pid,
    relay: Option<&logs::Relay>,
) -> i32 {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let code_of = |ws: WaitStatus| run::process::exit_code(ws);
    let sup_cmdline = cmdline(supervisor.as_raw());
    let mut reported = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match waitpid(supervisor, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(ws) => {
                let code = code_of(ws).unwrap_or(125);
                if !reported {
                    // Ended before we saw the command start: a setup failure (its message is
                    // in the log) or a command that could not be executed.
                    if matches!(code, 125..=127) {
                        if let Some(r) = relay {
                            r.drain(Duration::from_secs(2));
                        }
                        let log = std::fs::read_to_string(c.log_path(&st.id)).unwrap_or_default();
                        detach::report_failure(log.trim(), code);
                    } else {
                        detach::report_started(&st.id);
                    }
                }
                return code;
            }
            Err(nix::Error::EINTR) => continue,
            Err(_) => return 125,
        }
        if !reported && (command_started(st, sup_cmdline.as_deref()) || Instant::now() > deadline) {
            detach::report_started(&st.id);
            reported = true;
        }
        std::thread::sleep(Duration::from_millis(if reported { 50 } else { 2 }));
        if reported {
            // Block now: nothing else to watch.
            loop {
                match waitpid(supervisor, None) {
                    Err(nix::Error::EINTR) => continue,
                    Ok(ws) => return code_of(ws).unwrap_or(125),
                    Err(_) => return 125,
                }
            }
        }
    }
}

/// The container's stdout and stderr: a pipe whose write end replaces the log file, and a
/// closure to call in the monitor after the fork that starts the relay into the log and its
/// line index ([`logs`]).
#[allow(clippy::type_complexity)]
pub(super) fn log_pipe(
    log: &std::path::Path,
    log_file: std::fs::File,
) -> Result<(std::fs::File, Box<dyn FnOnce() -> Option<logs::Relay>>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let idx = logs::index_path(log);
    let index = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&idx)
        .map_err(|cause| ContainerError::Io {
            op: "create log index",
            path: idx,
            cause,
        })?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|cause| ContainerError::Sys { op: "pipe", cause })?;
    let start = move || logs::spawn_relay(r.into(), log_file, index).ok();
    Ok((w.into(), Box::new(start)))
}

fn cmdline(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// Whether the container's pid 1 (or, under --init, its child) runs something other than
/// boxkit itself, i.e. the command was exec'd. The command line tells (unlike /proc/PID/exe
/// it needs no ptrace access).
fn command_started(st: &State, sup_cmdline: Option<&[u8]>) -> bool {
    let Some(init) = st.init_pid() else {
        return false;
    };
    let mut pids = vec![init];
    if let Ok(k) = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")) {
        pids.extend(k.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    // A zombie's command line reads empty: that is an exit, not an exec.
    pids.into_iter()
        .any(|p| cmdline(p).is_some_and(|c| !c.is_empty() && Some(c.as_slice()) != sup_cmdline))
}
