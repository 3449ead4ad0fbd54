//! `box stop`, `kill`, `rm`: signals to a container's pid 1, waiting for the exit to be
//! recorded, and removal (with the kept writable layer).

use std::time::{Duration, Instant};

use super::{ContainerError, Containers, Result, State, Status, started, state};

/// Send `sig` to the container's pid 1. Any signal but SIGKILL waits for the container's
/// command to run ([`started::init_when_started`]): while pid 1 still builds the container's
/// root it is boxkit's own code with no handler, and as the init of its pid namespace it
/// drops such a signal, so a `box stop` then would wait out its whole timeout for a SIGKILL.
pub fn kill(st: &State, sig: i32) -> Result<()> {
    let pid = if sig == libc::SIGKILL {
        st.init_pid()
    } else {
        started::init_when_started(st)
    };
    let pid = pid.ok_or_else(|| ContainerError::NotRunning(st.id.clone()))?;
    // A raw number: docker's kill takes real-time signals too, which nix's Signal lacks.
    // SAFETY: kill(2) takes plain integers.
    let r = unsafe { libc::kill(pid, sig) };
    if r < 0 {
        return Err(ContainerError::Signal {
            id: st.id.clone(),
            sig,
            cause: nix::Error::last(),
        });
    }
    Ok(())
}

/// Wait up to `timeout` for the container's supervisor to end; true when it did.
pub fn wait_exit(c: &Containers, id: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        match c.load(id) {
            Ok(st) if st.supervisor_alive() => {}
            _ => return true,
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `docker stop`: StopSignal, then SIGKILL after `timeout`. Stopping a stopped container is
/// not an error. The container's restart policy no longer applies (until it is started
/// again), and its monitor is gone when this returns, so a `box start` may follow at once.
pub fn stop(c: &Containers, id: &str, timeout: Duration) -> Result<()> {
    // Before any signal: the monitor reads it when the container exits.
    let _ = c.mark_user_stop(id);
    // A monitor that decided to restart just before the mark may start it once more; stop
    // that run too.
    for round in 0..3 {
        let st = match c.load(id) {
            Ok(s) => s,
            // Removed on its exit (--rm) after our signal.
            Err(state::StateError::NoSuch(_)) if round > 0 => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !st.is_running() {
            settle(c, id)?;
            if !c.load(id).is_ok_and(|s| s.is_running()) {
                return Ok(());
            }
            continue;
        }
        stop_once(c, &st, timeout)?;
    }
    Ok(())
}

fn stop_once(c: &Containers, st: &State, timeout: Duration) -> Result<()> {
    let id = st.id.as_str();
    match kill(st, st.stop_signal) {
        Ok(()) | Err(ContainerError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    if wait_exit(c, id, timeout) {
        return settle(c, id);
    }
    match kill(st, libc::SIGKILL) {
        Ok(()) | Err(ContainerError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    if wait_exit(c, id, Duration::from_secs(10)) {
        return settle(c, id);
    }
    Err(ContainerError::Unkillable {
        id: id.to_string(),
        secs: 10,
    })
}

/// After the supervisor ended, give the monitor a moment to record the exit and end.
fn settle(c: &Containers, id: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match c.load(id) {
            // The recorder (monitor, else supervisor) lives: it is about to record the exit,
            // or (a monitor) to end after recording it.
            Ok(st)
                if st.recorder_alive()
                    && (st.status == Status::Running || st.monitor_pid.is_some()) => {}
            // Recorded, or lost (refresh below says so).
            _ => break,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match c.refresh(id) {
        Ok(_) | Err(state::StateError::NoSuch(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `docker rm [-f]`.
pub fn remove(c: &Containers, volumes_dir: &std::path::Path, id: &str, force: bool) -> Result<()> {
    let Some(st) = c.refresh(id)? else {
        return Ok(());
    };
    if st.is_running() || st.restarting {
        if !force {
            return Err(ContainerError::Running(st.id));
        }
        let _ = c.mark_user_stop(id);
        match kill(&st, libc::SIGKILL) {
            Ok(()) | Err(ContainerError::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        if !wait_exit(c, id, Duration::from_secs(10)) {
            return Err(ContainerError::Unkillable {
                id: id.to_string(),
                secs: 10,
            });
        }
        settle(c, id)?;
    }
    let st = match c.load(id) {
        Ok(s) => s,
        Err(state::StateError::NoSuch(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_layer(c, id)?;
    c.remove(&st, st.auto_remove.then_some(volumes_dir))?;
    Ok(())
}

/// Remove the kept writable layer of container `id` (first, so that nothing else of the
/// container goes while it stays). Outside the tool's user namespace, a rootless user cannot
/// remove what a non-root container user made there: [`ContainerError::LayerInNamespace`]
/// says to call [`remove_layer_in_namespace`] from inside it.
pub fn remove_layer(c: &Containers, id: &str) -> Result<()> {
    for d in ["upper", "work"] {
        let p = c.dir(id).join(d);
        match crate::store::gc::remove_tree(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ContainerError::LayerInNamespace(id.to_string()));
            }
            Err(cause) => {
                return Err(ContainerError::Io {
                    op: "remove the writable layer",
                    path: p,
                    cause,
                });
            }
        }
    }
    Ok(())
}

/// [`remove_layer`] from inside the tool's user namespace, for a container that is not
/// running.
pub fn remove_layer_in_namespace(c: &Containers, id: &str) -> Result<()> {
    let st = c.load(id)?;
    if st.is_running() || (st.restarting && st.recorder_alive()) {
        return Err(ContainerError::Running(st.id));
    }
    remove_layer(c, id)
}
