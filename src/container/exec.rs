//! `box exec` on a recorded container: find its pid 1 and hand its recorded process
//! settings to [`crate::run::exec`], which does the work.

use super::{ContainerError, Result, State, started};
pub use crate::run::exec::ExecOptions;
use crate::run::exec::{self as run_exec, ExecError};

/// Run `o` in the running container `st`; returns the exit code (docker's mapping).
/// [`ContainerError::Start`] means the command could not be started (docker exec's 126).
pub fn exec(st: &State, o: &ExecOptions) -> Result<i32> {
    let start_err = |why: String| ContainerError::Start {
        id: st.id.clone(),
        why,
    };
    // First, before anything touches the container (see crate::run::exec).
    run_exec::harden().map_err(|e| start_err(e.to_string()))?;
    let init_pid =
        started::init_when_started(st).ok_or_else(|| ContainerError::NotRunning(st.id.clone()))?;
    let target = run_exec::Target {
        init_pid,
        env: &st.env,
        cwd: st.cwd.as_deref(),
        user: st.user.as_deref(),
        hostname: &st.hostname,
        caps: st.caps,
        no_new_privs: st.no_new_privs,
        seccomp: &st.seccomp,
        has_limits: !st.limits.is_empty(),
    };
    run_exec::exec(&target, o).map_err(|e| match e {
        ExecError::Start(why) => start_err(why),
        ExecError::Sys { op, cause } => ContainerError::Sys { op, cause },
        ExecError::Io { op, path, cause } => ContainerError::Io { op, path, cause },
        ExecError::Process(p) => ContainerError::Sandbox(crate::run::SandboxError::Process(p)),
    })
}
