//! `box create` and `box start`: a container prepared now and run later, detached (the same
//! monitor as `boxrun -d`) or in the caller's foreground (`start -ai`), from the launch
//! record its state keeps ([`super::launch`]).

use super::{
    ContainerError, Containers, Result, RunOptions, State, detach, finish, launch, mark_running,
    monitor, prepare, redirect_stdin_null, state,
};
use crate::run::{self, ToolContext};
use crate::store::Store;

/// `box create`: everything `boxrun` does before it starts the command; the container is
/// left in state "created" for `box start`.
pub fn create(store: &Store, o: &RunOptions, tool: &ToolContext) -> Result<State> {
    Ok(prepare(store, o, None, tool)?.state)
}

/// A container that `box start` may start now: created or exited, its monitor gone, with a
/// launch record. Its restart count and any user stop are reset, as docker does.
fn startable(c: &Containers, id: &str) -> Result<State> {
    let Some(mut st) = c.refresh(id)? else {
        return Err(state::StateError::NoSuch(id.to_string()).into());
    };
    // A monitor that recorded a final exit (not `restarting`) writes nothing more, even if
    // it has not quite ended yet.
    if st.is_running() || (st.restarting && st.recorder_alive()) {
        return Err(ContainerError::AlreadyRunning(st.id));
    }
    if st.launch.is_none() {
        return Err(ContainerError::NoLaunch(st.id));
    }
    c.clear_user_stop(id);
    st.restart_count = 0;
    st.restarting = false;
    st.error = None;
    Ok(st)
}

/// `box start` of container `id`, detached: called in the daemon made by
/// [`detach::daemonize`], as [`run_detached`] is.
pub fn start_detached(
    c: &Containers,
    volumes_dir: &std::path::Path,
    id: &str,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    let r = startable(c, id).and_then(|mut st| {
        st.detached = true;
        let l = st.launch.clone().unwrap_or_default();
        let spec = launch::spec_of(c, &st, &l, isolation, 0)?;
        Ok((st, spec))
    });
    let (st, spec) = match r {
        Ok(v) => v,
        Err(e) => {
            detach::report_failure(&e.to_string(), 125);
            return Err(e);
        }
    };
    monitor::supervise(c, volumes_dir, spec, st, isolation, tool)
}

/// `box start -a -i`: run container `id` in the foreground, this process supervising (stdin
/// and a TTY as `boxrun -it`, the output also in its log); returns its exit code. When the restart
/// policy says so, a detached monitor runs it again afterwards ([`end_foreground`]).
pub fn start_foreground(
    c: &Containers,
    volumes_dir: &std::path::Path,
    id: &str,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    let mut st = startable(c, id)?;
    let l = st.launch.clone().unwrap_or_default();
    let spec = launch::spec_of(c, &st, &l, isolation, 0)?;
    if !l.interactive {
        redirect_stdin_null();
    }
    mark_running(c, &mut st, std::process::id() as i32)?;
    // Its output goes to the log too, as a foreground `boxrun`'s does.
    let tee = super::tee::start(&c.log_path(&st.id));
    let r = run::run(&spec, tool);
    if let Some(t) = tee {
        t.finish();
    }
    let code = r.as_ref().ok().copied();
    if let Ok(s) = c.load(&st.id) {
        st = s;
    }
    end_foreground(c, volumes_dir, &mut st, code);
    Ok(r?)
}

/// After a foreground run (boxrun, `box start -ai`) ended with `code`: record the exit, and
/// when the restart policy says so, ask for the container to be handed to a detached monitor
/// once this command has exited ([`detach::request_handoff`]); the state says "restarting"
/// meanwhile. A run ended by a signal this process passed on (Ctrl-C) was stopped by its
/// user and is not restarted, as docker's sig-proxy stops the policy.
pub(super) fn end_foreground(
    c: &Containers,
    volumes_dir: &std::path::Path,
    st: &mut State,
    code: Option<i32>,
) {
    let again = code.is_some_and(|code| {
        !st.auto_remove
            && !run::process::passed_on()
            && st
                .restart
                .should_restart(code, st.restart_count, c.user_stopped(&st.id))
    });
    st.restarting = again;
    finish(c, volumes_dir, st, code);
    if again && !detach::request_handoff(c.store_root(), &st.id) {
        st.restarting = false;
        let _ = c.save(st);
    }
}

/// `box container-start --restarted ID`: go on with the restart policy of a container whose
/// foreground run ended ([`end_foreground`]): after the first back-off, run it again
/// detached, counting from its state's restart count. Nothing happens when it was stopped,
/// removed or started meanwhile.
pub fn resume_restart(
    c: &Containers,
    volumes_dir: &std::path::Path,
    id: &str,
    isolation: run::isolation::Isolation,
    tool: &ToolContext,
) -> Result<i32> {
    let st = match c.load(id) {
        Ok(s) => s,
        Err(e) => {
            detach::report_failure(&e.to_string(), 125);
            return Err(e.into());
        }
    };
    // The foreground run's own process (its recorded supervisor) may still be ending: only
    // another monitor, or a start meanwhile, takes the container from us.
    let monitored = st.monitor_pid.is_some() && st.recorder_alive();
    if !st.restarting || st.is_running() || monitored {
        detach::report_started(id);
        return Ok(0);
    }
    monitor::resume(c, volumes_dir, st, isolation, tool)
}
