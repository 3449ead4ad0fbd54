//! Containers: an image plus `docker run` options turned into a sandbox run, with state that
//! outlives the command for detached containers.
//!
//! ```text
//! boxrun (host)                           boxrun -d (host)
//!  └─ agent (outside the tool userns)      └─ daemon: setsid, stdio → /dev/null   detach::daemonize
//!      └─ tool: supervisor = this process      └─ agent
//!          └─ container pid 1                      └─ tool: monitor, records the exit
//!                                                      └─ supervisor (fork), stdio → log
//!                                                          └─ container pid 1
//! ```
//! The supervisor's pid and start time go into `containers/<id>/state.json` ([`state`]);
//! `box exec` finds the container's pid 1 as the supervisor's descendant in another pid
//! namespace and joins its namespaces ([`exec`]). `box stop` signals pid 1 directly (StopSignal,
//! then SIGKILL after the timeout); the supervisor sees the exit and the monitor records it.
//! Layers come from [`crate::store::Store::unpack_layers`], unpacked once and shared.

pub mod config;
pub mod cp;
pub mod detach;
pub mod exec;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod populate;
pub mod runflags;
pub mod state;
pub mod stats;
pub mod top;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::registry::{self, PullOptions};
use crate::run::{self, MountSpec, RootfsSource, SandboxSpec, ToolContext, UpperDir};
use crate::store::Store;
pub use state::{Containers, State, Status};

#[derive(Debug, Error)]
pub enum ContainerError {
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("image {image}: {cause}")]
    Config {
        image: String,
        cause: config::ConfigError,
    },
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Spec(#[from] run::spec::SpecError),
    #[error(transparent)]
    Sandbox(#[from] run::SandboxError),
    #[error(
        "invalid --security-opt {0:?}: boxkit supports no-new-privileges[:true|false] and \
         seccomp=unconfined|builtin|PROFILE.json"
    )]
    SecurityOpt(String),
    #[error(transparent)]
    Seccomp(#[from] run::seccomp::SeccompError),
    #[error(transparent)]
    Agent(#[from] run::agent::AgentError),
    #[error("{0}")]
    Cidfile(String),
    #[error("invalid capability: {0}")]
    Caps(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error(
        "container {0} is running: stop it first (box stop) or remove it with force (box rm -f)"
    )]
    Running(String),
    #[error("container {id} did not exit within {secs}s of SIGKILL")]
    Unkillable { id: String, secs: u64 },
    #[error("signal {sig} to container {id}: {cause}")]
    Signal {
        id: String,
        sig: i32,
        cause: nix::Error,
    },
    #[error("container {id} failed to start: {why}")]
    Start { id: String, why: String },
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Flag(#[from] runflags::FlagError),
    #[error("fill {what} from the image: {cause} (mount it with nocopy to skip the copy)")]
    Volume { what: String, cause: String },
}

pub type Result<T> = std::result::Result<T, ContainerError>;

/// `docker run`'s options, already split into typed pieces by the CLI.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub image: String,
    pub pull: PullOptions,
    pub overrides: config::Overrides,
    pub mounts: Vec<mounts::Request>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub network: run::NetworkMode,
    pub ports: Vec<run::ports::PortMapping>,
    pub limits: run::Limits,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privs: bool,
    pub seccomp: run::seccomp::Seccomp,
    pub read_only: bool,
    pub tty: bool,
    pub interactive: bool,
    pub init: bool,
    pub auto_remove: bool,
    pub detach: bool,
    pub userns: run::UsernsMode,
    /// The caller's descriptors 3..3+N reach the command (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// Namespaces the environment allows (a CI job container may refuse a UTS namespace or
    /// a new /proc); every one on a host.
    pub isolation: run::isolation::Isolation,
    /// `--add-host`, `--dns*`, `--shm-size`, `--ulimit`, passed to the sandbox as they are.
    pub extras: run::spec::Extras,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where to write the id (absolute; checked not to exist by the caller).
    pub cidfile: Option<PathBuf>,
    pub stop_timeout: Option<u64>,
    /// Overrides the image's STOPSIGNAL.
    pub stop_signal: Option<i32>,
    /// `-P`: publish the image's exposed ports and `expose` to random host ports.
    pub publish_all: bool,
    /// `--expose` ports (`80`, `53/udp`, `8000-8010`), in the image's `ExposedPorts` form.
    pub expose: Vec<String>,
}

/// What `--security-opt` asked for.
#[derive(Debug, Clone, Default)]
pub struct SecurityOpts {
    pub no_new_privs: bool,
    pub seccomp: run::seccomp::Seccomp,
}

/// Parse `--security-opt` values as docker does: `no-new-privileges[:true|false]` and
/// `seccomp=unconfined|builtin|PATH` (`seccomp:` too, docker's older form). A profile file
/// is read and validated here, before anything starts; the last value of each kind wins.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut r = SecurityOpts::default();
    for o in opts {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                r.no_new_privs = true
            }
            "no-new-privileges:false" | "no-new-privileges=false" => r.no_new_privs = false,
            s => match s
                .strip_prefix("seccomp=")
                .or_else(|| s.strip_prefix("seccomp:"))
            {
                Some(v) if !v.is_empty() => r.seccomp = run::seccomp::Seccomp::from_opt(v)?,
                _ => return Err(ContainerError::SecurityOpt(o.clone())),
            },
        }
    }
    Ok(r)
}

/// A container ready to start: its sandbox spec and its first state.
pub struct Prepared {
    pub spec: SandboxSpec,
    pub state: State,
}

fn new_id() -> String {
    format!(
        "{}{}{}{}",
        run::spec::random_id(),
        run::spec::random_id(),
        run::spec::random_id(),
        run::spec::random_id()
    )
}

/// Resolve (pulling if the policy says so) and unpack the image, combine its config with the
/// options, and record the container (name reserved; state "created", or "running" under
/// `supervisor` when that process is about to run it — one state write less on the hot path).
pub fn prepare(
    store: &Store,
    o: &RunOptions,
    supervisor: Option<i32>,
    tool: &ToolContext,
) -> Result<Prepared> {
    let image = registry::ensure_image(store, &o.image, &o.pull)?;
    let with_all;
    let o = if o.publish_all {
        let exposed = image.config.config.exposed_ports.keys().chain(&o.expose);
        with_all = RunOptions {
            ports: runflags::publish_all(&o.ports, exposed),
            ..o.clone()
        };
        &with_all
    } else {
        o
    };
    let policy = tool.content_policy();
    let lowerdirs = store.unpack_layers(&image, &policy)?;
    let cfg = &image.config.config;
    let lookup = |k: &str| std::env::var(k).ok();
    let process =
        config::resolve(cfg, &o.overrides, &lookup).map_err(|cause| ContainerError::Config {
            image: o.image.clone(),
            cause,
        })?;
    let caps = run::caps::resolve(&o.cap_add, &o.cap_drop)
        .map_err(|e| ContainerError::Caps(e.to_string()))?;

    let id = new_id();
    let containers = Containers::new(store.containers_dir());
    let name = o.name.clone().unwrap_or_else(|| state::random_name(&id));
    containers.reserve_name(&name, &id)?;
    let release_name = |c: &Containers| {
        let _ = std::fs::remove_file(store.containers_dir().join("names").join(&name));
        let _ = std::fs::remove_dir_all(c.dir(&id));
    };
    let mounts::Realized {
        mounts,
        anonymous,
        to_fill,
    } = match mounts::realize(&o.mounts, &store.volumes_dir()) {
        Ok(m) => m,
        Err(e) => {
            release_name(&containers);
            return Err(e.into());
        }
    };
    if let Err(e) = populate::fill(&lowerdirs, &to_fill, &store.tmp_dir(), &policy) {
        release_name(&containers);
        return Err(e);
    }

    let mut spec = sandbox_spec(store, o, &id, lowerdirs, &process, mounts.clone());
    let hostname = match (&o.hostname, o.network) {
        (Some(h), _) => h.clone(),
        (None, run::NetworkMode::Host) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        (None, _) => id[..12].to_string(),
    };
    if o.hostname.is_none() && o.network != run::NetworkMode::Host {
        spec.hostname = Some(hostname.clone());
    }
    let mut st = State {
        id: id.clone(),
        name: name.clone(),
        image: o.image.clone(),
        image_digest: image.manifest_desc.digest.to_string(),
        image_id: image.id().to_string(),
        argv: process.argv,
        env: process.env,
        cwd: process.cwd,
        user: process.user,
        hostname,
        stop_signal: o.stop_signal.unwrap_or(process.stop_signal),
        stop_timeout: o.stop_timeout,
        labels: o.labels.clone(),
        caps,
        no_new_privs: o.no_new_privs,
        seccomp: o.seccomp.record(),
        network: o.network,
        ports: o.ports.clone(),
        published: Vec::new(),
        limits: o.limits.clone(),
        mounts: mounts.iter().map(mount_record).collect(),
        read_only: o.read_only,
        tty: o.tty,
        detached: o.detach,
        auto_remove: o.auto_remove,
        anonymous_volumes: anonymous,
        status: Status::Created,
        created: state::now_rfc3339(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        supervisor_pid: None,
        supervisor_start: None,
        monitor_pid: None,
        monitor_start: None,
        error: None,
    };
    if let Some(pid) = supervisor {
        set_running(&mut st, pid);
    }
    if let Err(e) = containers.create(&st) {
        release_name(&containers);
        return Err(e.into());
    }
    if let Some(p) = &o.cidfile
        && let Err(e) = tool.write_cidfile(p, &id)
    {
        release_name(&containers);
        return Err(match e {
            run::agent::AgentError::Host(m) => ContainerError::Cidfile(m),
            e => e.into(),
        });
    }
    Ok(Prepared { spec, state: st })
}

/// The sandbox run of container `id`: the image's layers under an ephemeral upper, its
/// process as resolved, and the options.
fn sandbox_spec(
    store: &Store,
    o: &RunOptions,
    id: &str,
    lowerdirs: Vec<PathBuf>,
    process: &config::Process,
    mounts: Vec<MountSpec>,
) -> SandboxSpec {
    let mut spec = SandboxSpec::new(
        RootfsSource::Overlay {
            lowerdirs,
            upper: UpperDir::Ephemeral,
        },
        process.argv.clone(),
    );
    // The sandbox id names the cgroup; 16 hex characters as the sandbox makes them.
    spec.id = id[..16].to_string();
    spec.isolation = o.isolation;
    spec.env = process.env.clone();
    spec.cwd = process.cwd.clone();
    spec.user = process.user.clone();
    spec.hostname = o.hostname.clone();
    spec.network = o.network;
    spec.ports = o.ports.clone();
    if !o.ports.is_empty() {
        // The supervisor learns the ports as bound (random ones resolved) before the command
        // starts, so `boxrun -d` returns with them recorded.
        let (dir, cid) = (store.containers_dir(), id.to_string());
        spec.on_published = Some(run::spec::PublishedHook(std::sync::Arc::new(
            move |bound| {
                let c = Containers::new(dir.clone());
                let r = c.load(&cid).and_then(|mut st| {
                    st.published = bound.to_vec();
                    c.save(&st)
                });
                if let Err(e) = r {
                    eprintln!("boxkit: record the published ports of {}: {e}", &cid[..12]);
                }
            },
        )));
    }
    spec.mounts = mounts;
    spec.read_only = o.read_only;
    spec.limits = o.limits.clone();
    spec.cap_add = o.cap_add.clone();
    spec.cap_drop = o.cap_drop.clone();
    spec.no_new_privs = o.no_new_privs;
    spec.seccomp = o.seccomp.clone();
    spec.tty = o.tty;
    spec.init = o.init;
    spec.userns = o.userns;
    spec.preserve_fds = o.preserve_fds;
    spec.extras = o.extras.clone();
    spec
}

/// How the state (and `inspect`) shows a mount.
fn mount_record(m: &MountSpec) -> state::MountRecord {
    match m {
        MountSpec::Bind {
            source,
            target,
            read_only,
        } => state::MountRecord {
            kind: "bind".into(),
            source: source.display().to_string(),
            destination: target.display().to_string(),
            rw: !read_only,
        },
        MountSpec::Tmpfs { target, .. } => state::MountRecord {
            kind: "tmpfs".into(),
            source: String::new(),
            destination: target.display().to_string(),
            rw: true,
        },
    }
}

fn set_running(st: &mut State, supervisor: i32) {
    st.status = Status::Running;
    st.started_at = Some(state::now_rfc3339());
    st.supervisor_pid = Some(supervisor);
    st.supervisor_start = state::process_start(supervisor);
}

fn mark_running(c: &Containers, st: &mut State, supervisor: i32) -> Result<()> {
    set_running(st, supervisor);
    Ok(c.save(st)?)
}

/// Record the exit, or remove the container when it was started with `--rm`.
fn finish(c: &Containers, volumes_dir: &std::path::Path, st: &mut State, code: Option<i32>) {
    if st.auto_remove {
        // Kept only when a `box wait` asked for it (one stat on every --rm exit instead of a
        // file written, and old ones swept, on each).
        if let Some(code) = code
            && c.has_waiter(&st.id)
        {
            let _ = c.record_exit(&st.id, code);
        }
        let _ = c.remove(st, Some(volumes_dir));
        return;
    }
    st.status = Status::Exited;
    st.finished_at = Some(state::now_rfc3339());
    st.published.clear();
    st.exit_code = code;
    if code.is_none() {
        st.exit_code = Some(125);
    } else {
        // A reader that found the supervisor gone before this record may have set one.
        st.error = None;
    }
    let _ = c.save(st);
}

/// Run in the foreground: this process supervises; returns the container's exit code.
pub fn run_foreground(store: Store, o: &RunOptions, tool: &ToolContext) -> Result<i32> {
    let containers = Containers::new(store.containers_dir());
    let volumes_dir = store.volumes_dir();
    let Prepared { spec, mut state } = prepare(&store, o, Some(std::process::id() as i32), tool)?;
    // The state names the image's digest, which keeps its layers through `box prune`; holding
    // the store lock for the container's lifetime would block prune instead.
    drop(store);
    if !o.interactive {
        // docker run without -i: the container reads nothing.
        redirect_stdin_null();
    }
    let r = run::run(&spec, tool);
    let code = r.as_ref().ok().copied();
    // Re-read: `box rename` may have changed the state meanwhile.
    if let Ok(s) = containers.load(&state.id) {
        state = s;
    }
    finish(&containers, &volumes_dir, &mut state, code);
    Ok(r?)
}

fn redirect_stdin_null() {
    if let Ok(f) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&f);
    }
}

/// Run detached: called in the daemon made by [`detach::daemonize`] (already inside the
/// tool's user namespace). Reports the id (or the failure) to the waiting `boxrun -d`, then
/// stays to record the container's exit. Returns the exit code for this monitor process.
pub fn run_detached(store: Store, o: &RunOptions, tool: &ToolContext) -> Result<i32> {
    let containers = Containers::new(store.containers_dir());
    let volumes_dir = store.volumes_dir();
    let prepared = prepare(&store, o, None, tool);
    drop(store);
    let Prepared { spec, mut state } = match prepared {
        Ok(p) => p,
        Err(e) => {
            detach::report_failure(&e.to_string(), 125);
            return Err(e);
        }
    };
    let log = containers.log_path(&state.id);
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
        });
    let log_file = match log_file {
        Ok(f) => f,
        Err(e) => {
            finish(&containers, &volumes_dir, &mut state, None);
            detach::report_failure(&e.to_string(), 125);
            return Err(e);
        }
    };
    let (log_file, relay_read) = match monitor::log_pipe(&log, log_file) {
        Ok(p) => p,
        Err(e) => {
            finish(&containers, &volumes_dir, &mut state, None);
            detach::report_failure(&e.to_string(), 125);
            return Err(e);
        }
    };
    redirect_stdin_null();
    // A reader that finds the supervisor gone while this monitor still drains the log must
    // not take the exit for lost.
    let me = std::process::id() as i32;
    state.monitor_pid = Some(me);
    state.monitor_start = state::process_start(me);
    // The supervisor is a child, so this process stays to record the exit (like conmon).
    // SAFETY: the monitor is single-threaded (a fresh daemon), so the child may do anything;
    // it ends in _exit without returning here.
    let supervisor = match unsafe { nix::unistd::fork() } {
        Err(cause) => {
            finish(&containers, &volumes_dir, &mut state, None);
            detach::report_failure(&format!("fork: {cause}"), 125);
            return Err(ContainerError::Sys { op: "fork", cause });
        }
        Ok(nix::unistd::ForkResult::Child) => {
            detach::close_report_fd();
            let _ = nix::unistd::dup2_stdout(&log_file);
            let _ = nix::unistd::dup2_stderr(&log_file);
            // The supervisor records "running" itself, before it runs anything: it writes the
            // state again once the ports are bound, and two writers must not race.
            let _ = mark_running(&containers, &mut state, std::process::id() as i32);
            let code = match run::run(&spec, tool) {
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
    set_running(&mut state, supervisor.as_raw());
    let code = monitor::wait_started_then_exit(&containers, &state, supervisor, relay.as_ref());
    if let Some(r) = &relay {
        // Everything the container wrote is in the log before its exit is recorded.
        r.drain(Duration::from_secs(2));
    }
    let code_opt = Some(code);
    // Re-read: `box stop`/`kill` never write the state, but keep whatever else changed.
    if let Ok(s) = containers.load(&state.id) {
        state = s;
    }
    finish(&containers, &volumes_dir, &mut state, code_opt);
    Ok(0)
}

/// Send `sig` to the container's pid 1.
pub fn kill(st: &State, sig: i32) -> Result<()> {
    let pid = st
        .init_pid()
        .ok_or_else(|| ContainerError::NotRunning(st.id.clone()))?;
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
/// not an error.
pub fn stop(c: &Containers, id: &str, timeout: Duration) -> Result<()> {
    let st = c.load(id)?;
    if !st.is_running() {
        return Ok(());
    }
    match kill(&st, st.stop_signal) {
        Ok(()) | Err(ContainerError::NotRunning(_)) => {}
        Err(e) => return Err(e),
    }
    if wait_exit(c, id, timeout) {
        return settle(c, id);
    }
    match kill(&st, libc::SIGKILL) {
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

/// After the supervisor ended, give the monitor a moment to record the exit.
fn settle(c: &Containers, id: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match c.load(id) {
            Ok(st) if st.status == Status::Running => {}
            _ => return Ok(()),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.refresh(id)?;
    Ok(())
}

/// `docker rm [-f]`.
pub fn remove(c: &Containers, volumes_dir: &std::path::Path, id: &str, force: bool) -> Result<()> {
    let Some(st) = c.refresh(id)? else {
        return Ok(());
    };
    if st.is_running() {
        if !force {
            return Err(ContainerError::Running(st.id));
        }
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
    c.remove(&st, st.auto_remove.then_some(volumes_dir))?;
    Ok(())
}
