//! The monitor of a detached container (`boxrun -d`, `box start`): it relays the container's
//! output into its log, tells the waiting `boxrun -d` when the command runs, waits for the
//! exit, records it, and runs the container again when its restart policy says so
//! ([`super::restart`]).
//!
//! While it lives, its pid and start time are in the state: a reader that finds the
//! supervisor gone never takes the exit for lost while the monitor may still record it, and
//! during a restart's back-off the state says "exited" with `restarting` set.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    ContainerError, Containers, Result, State, detach, launch, logs, restart, started, state, stdin,
};
use crate::run::{self, SandboxSpec, ToolContext};

/// Run the container (first with `first`) and record each exit, restarting it as its policy
/// says, until it ends for good. Returns this monitor process's exit code.
pub(super) fn supervise(
    c: &Containers,
    volumes_dir: &Path,
    first: SandboxSpec,
    st: State,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    let runs = Runs {
        first: Some(first),
        backoff: restart::Backoff::default(),
    };
    supervise_runs(c, volumes_dir, runs, st, isolation, tool)
}

/// Where [`supervise_runs`] begins: the first run's spec (None: made from the launch
/// record), and the back-off so far.
struct Runs {
    first: Option<SandboxSpec>,
    backoff: restart::Backoff,
}

/// Take over a container whose foreground run ended and whose policy restarts it (see
/// [`super::start::resume_restart`]): the first back-off, then [`supervise`] from the restart
/// count its state holds.
pub(super) fn resume(
    c: &Containers,
    volumes_dir: &Path,
    mut st: State,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    let me = std::process::id() as i32;
    st.monitor_pid = Some(me);
    st.monitor_start = state::process_start(me);
    c.save(&st)?;
    let mut backoff = restart::Backoff::default();
    let delay = backoff.delay(Duration::ZERO);
    if !wait_backoff(c, &st.id, delay) {
        if let Ok(mut s) = c.load(&st.id) {
            s.restarting = false;
            let _ = c.save(&s);
        }
        detach::report_started(&st.id);
        return Ok(0);
    }
    let mut st = c.load(&st.id)?;
    st.restarting = false;
    st.restart_count += 1;
    let runs = Runs {
        first: None,
        backoff,
    };
    supervise_runs(c, volumes_dir, runs, st, isolation, tool)
}

fn supervise_runs(
    c: &Containers,
    volumes_dir: &Path,
    runs: Runs,
    mut st: State,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    super::redirect_stdin_null();
    // `-i`: the container's stdin is a FIFO this process holds open (see [`stdin`]); made
    // once, so input written between two runs reaches the next one.
    let input = if st.launch.as_ref().is_some_and(|l| l.interactive) {
        match stdin::Held::create(c, &st.id) {
            Ok(h) => Some(h),
            Err(e) => {
                super::finish(c, volumes_dir, &mut st, None);
                detach::report_failure(&e.to_string(), 125);
                return Err(e);
            }
        }
    } else {
        None
    };
    let me = std::process::id() as i32;
    let Runs {
        first: mut next,
        mut backoff,
    } = runs;
    let mut first_run = true;
    loop {
        st.monitor_pid = Some(me);
        st.monitor_start = state::process_start(me);
        let spec = match next.take() {
            Some(s) => Ok(s),
            None => {
                let l = st.launch.clone().unwrap_or_default();
                launch::spec_of(c, &st, &l, isolation, 0)
            }
        };
        let began = Instant::now();
        let code = match spec.and_then(|spec| run_once(c, &spec, &mut st, input.as_ref(), tool)) {
            Ok(code) => code,
            Err(e) => {
                super::finish(c, volumes_dir, &mut st, None);
                detach::report_failure(&e.to_string(), 125);
                return if first_run { Err(e) } else { Ok(0) };
            }
        };
        first_run = false;
        // Re-read: `box stop`/`kill` never write the state, but keep whatever else changed;
        // gone means `box rm -f` removed it.
        match c.load(&st.id) {
            Ok(s) => st = s,
            Err(_) => return Ok(0),
        }
        let user_stopped = c.user_stopped(&st.id);
        if !st
            .restart
            .should_restart(code, st.restart_count, user_stopped)
        {
            super::finish(c, volumes_dir, &mut st, Some(code));
            return Ok(0);
        }
        let delay = backoff.delay(began.elapsed());
        st.restarting = true;
        super::finish(c, volumes_dir, &mut st, Some(code));
        if !wait_backoff(c, &st.id, delay) {
            if let Ok(mut s) = c.load(&st.id) {
                s.restarting = false;
                let _ = c.save(&s);
            }
            return Ok(0);
        }
        match c.load(&st.id) {
            Ok(s) => st = s,
            Err(_) => return Ok(0),
        }
        st.restarting = false;
        st.restart_count += 1;
    }
}

/// Sleep out a restart's back-off; false when a user stopped or removed the container
/// meanwhile.
fn wait_backoff(c: &Containers, id: &str, delay: Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        if c.user_stopped(id) || !c.dir(id).join("state.json").exists() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// One run of the container: its output relayed into the log, the supervisor forked, the
/// start reported to a waiting `boxrun -d`/`box start`; returns the exit code.
fn run_once(
    c: &Containers,
    spec: &SandboxSpec,
    st: &mut State,
    input: Option<&stdin::Held>,
    tool: &ToolContext,
) -> Result<i32> {
    let log = c.log_path(&st.id);
    use std::os::unix::fs::OpenOptionsExt;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600) // the log holds whatever the container prints, secrets included
        .open(&log)
        .map_err(|cause| ContainerError::Io {
            op: "create log",
            path: log.clone(),
            cause,
        })?;
    let (log_file, relay_read) = log_pipe(&log, log_file)?;
    // The supervisor is a child, so this process stays to record the exit (like conmon).
    // SAFETY: the monitor is single-threaded but for a log relay of an earlier run that did
    // not end within its drain time; that thread only reads and writes files and formats
    // strings, and glibc's fork keeps the allocator consistent for the child. The child ends
    // in _exit without returning here.
    let supervisor = match unsafe { nix::unistd::fork() } {
        Err(cause) => return Err(ContainerError::Sys { op: "fork", cause }),
        Ok(nix::unistd::ForkResult::Child) => {
            detach::close_report_fd();
            if let Some(h) = input {
                let _ = nix::unistd::dup2_stdin(h.reader());
            }
            let _ = nix::unistd::dup2_stdout(&log_file);
            let _ = nix::unistd::dup2_stderr(&log_file);
            // The supervisor records "running" itself, before it runs anything: it writes the
            // state again once the ports are bound, and two writers must not race.
            let _ = super::mark_running(c, st, std::process::id() as i32);
            let code = match run::run(spec, tool) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("boxrun: {e}");
                    125
                }
            };
            // SAFETY: _exit skips the monitor's destructors and atexit handlers, which the
            // forked supervisor must not run.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
    };
    // Only the supervisor holds the pipe's write end now, so the relay sees its end.
    drop(log_file);
    let relay = relay_read();
    super::set_running(st, supervisor.as_raw());
    let code = wait_started_then_exit(c, st, supervisor, relay.as_ref());
    if let Some(r) = relay {
        // Everything the container wrote is in the log before its exit is recorded.
        r.finish(Duration::from_secs(2));
    }
    Ok(code)
}

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
    let sup_cmdline = started::cmdline(supervisor.as_raw());
    let mut reported = false;
    let deadline = Instant::now() + started::WAIT;
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
        if !reported
            && (started::started_init(st, sup_cmdline.as_deref()).is_some()
                || Instant::now() > deadline)
        {
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
