//! Containers: an image plus `docker run` options turned into a sandbox run, with state that
//! outlives the command for detached containers.
//!
//! ```text
//! boxrun (host)                           boxrun -d, box start (host, via container-start)
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
//! `box create`/`start` ([`start`]) run a container later from the launch record in its
//! state ([`launch`]); the monitor restarts it per its policy ([`restart`]), a foreground
//! run's too once it is handed over ([`detach`]); a `-i` container's stdin is a FIFO its
//! monitor holds ([`stdin`]); a foreground run's log goes through [`tee`]; stop, kill and rm
//! are in [`stop`].

pub mod config;
pub mod cp;
pub mod detach;
pub mod exec;
pub mod launch;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod populate;
pub mod restart;
pub mod runflags;
mod start;
mod started;
pub mod state;
pub mod stats;
pub mod stdin;
mod stop;
pub mod tee;
pub mod top;

use std::path::PathBuf;

use thiserror::Error;

use crate::registry::{self, PullOptions};
use crate::run::{self, MountSpec, SandboxSpec, ToolContext};
use crate::store::Store;
pub use start::{create, resume_restart, start_detached, start_foreground};
pub use state::{Containers, State, Status};
pub use stop::{kill, remove, remove_layer, remove_layer_in_namespace, stop, wait_exit};

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
    #[error(
        "the writable layer of container {0} holds files of container users that only the \
         tool's user namespace can remove"
    )]
    LayerInNamespace(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error(
        "container {0} was made by an older boxkit that kept no launch record: it cannot be \
         started again; run a new one (boxrun)"
    )]
    NoLaunch(String),
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
    #[error(
        "{path} is not the container's stdin pipe (a FIFO of this user, mode 0600): refusing \
         to use it; remove it and start the container again"
    )]
    NotStdinFifo { path: PathBuf },
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
    /// `--restart`, kept by the detached monitor.
    pub restart: restart::Policy,
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
    // A foreground --rm run keeps its name with its state in the run directory.
    let ephemeral = o.auto_remove && !o.detach && supervisor.is_some();
    containers.reserve_name_for(&name, &id, ephemeral)?;
    let release_name = |c: &Containers| {
        c.release_name(&name, &id);
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

    let hostname = default_hostname(o, &id);
    let lch = launch_record(store, o, lowerdirs, &mounts, &hostname);
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
        launch: None,
        restart: o.restart,
        restart_count: 0,
        restarting: false,
    };
    if let Some(pid) = supervisor {
        set_running(&mut st, pid);
    }
    // The directory first (a kept writable layer lives in it), and one state write.
    let lch = st.launch.insert(lch).clone();
    if let Err(e) = containers.create(&st) {
        release_name(&containers);
        return Err(e.into());
    }
    let mut spec = match launch::spec_of(&containers, &st, &lch, o.isolation, o.preserve_fds) {
        Ok(s) => s,
        Err(e) => {
            release_name(&containers);
            return Err(e);
        }
    };
    with_mount_points(store, &policy, &mut spec);
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

/// The most lower layers an overlay takes (the kernel's `OVL_MAX_STACK`).
const OVERLAY_MAX_LOWERS: usize = 500;

/// Put the store's mount points layer ([`crate::store::mountpoints`]) below the image's layers
/// of an overlay root, so that pid 1 finds /proc, /sys, /dev and the /etc files it mounts on
/// instead of making them in the upper. Best effort: where the layer cannot be had (or the
/// image already uses every layer an overlay takes), pid 1 makes the missing mount points as
/// it always could. It is not in the launch record: a restart of a kept container, whose
/// upper then gets them, works without it.
fn with_mount_points(
    store: &Store,
    policy: &crate::layer::ContentPolicy,
    spec: &mut run::SandboxSpec,
) {
    if let run::RootfsSource::Overlay { lowerdirs, .. } = &mut spec.rootfs
        && lowerdirs.len() < OVERLAY_MAX_LOWERS
        && let Ok(tree) = store.mount_points_layer(policy)
    {
        lowerdirs.insert(0, tree);
    }
}

/// The container's hostname: `--hostname`, the host's with `--network host`, else the first
/// 12 characters of its id.
fn default_hostname(o: &RunOptions, id: &str) -> String {
    match (&o.hostname, o.network) {
        (Some(h), _) => h.clone(),
        (None, run::NetworkMode::Host) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        (None, _) => id[..12].to_string(),
    }
}

/// What a later start needs beyond the state (see [`launch`]).
fn launch_record(
    store: &Store,
    o: &RunOptions,
    lowerdirs: Vec<PathBuf>,
    mounts: &[MountSpec],
    hostname: &str,
) -> launch::Launch {
    launch::Launch {
        lowerdirs,
        // The sandbox's default with --network host: it shares the host's UTS namespace.
        hostname: (o.hostname.is_some() || o.network != run::NetworkMode::Host)
            .then(|| hostname.to_string()),
        mounts: mounts.to_vec(),
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        init: o.init,
        userns_host: o.userns == run::UsernsMode::Host,
        interactive: o.interactive,
        extras: o.extras.clone(),
        // Detached (and created) containers keep their writable layer for a later start; a
        // foreground run keeps the tmpfs upper, the fastest start.
        kept_upper: o.detach && !o.auto_remove && launch::can_keep_upper(&store.containers_dir()),
    }
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

pub(crate) fn set_running(st: &mut State, supervisor: i32) {
    st.status = Status::Running;
    st.started_at = Some(state::now_rfc3339());
    st.supervisor_pid = Some(supervisor);
    st.supervisor_start = state::process_start(supervisor);
}

pub(crate) fn mark_running(c: &Containers, st: &mut State, supervisor: i32) -> Result<()> {
    set_running(st, supervisor);
    Ok(c.save(st)?)
}

/// Record the exit, or remove the container when it was started with `--rm`.
pub(crate) fn finish(
    c: &Containers,
    volumes_dir: &std::path::Path,
    st: &mut State,
    code: Option<i32>,
) {
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

/// Run in the foreground: this process supervises; returns the container's exit code. `pre`:
/// the container's network namespace, when the caller had it made ahead (`run::prestart`).
pub fn run_foreground(
    store: Store,
    o: &RunOptions,
    tool: &ToolContext,
    pre: Option<run::prestart::Prestart>,
) -> Result<i32> {
    let volumes_dir = store.volumes_dir();
    let Prepared { spec, mut state } = prepare(&store, o, Some(std::process::id() as i32), tool)?;
    // After `prepare`, which may have made the run directory a `--rm` container lives in.
    let containers = Containers::new(store.containers_dir());
    // The state names the image's digest, which keeps its layers through `box prune`; holding
    // the store lock for the container's lifetime would block prune instead.
    drop(store);
    if !o.interactive {
        // docker run without -i: the container reads nothing.
        redirect_stdin_null();
    }
    // A container that outlives its run keeps its output (`box logs`). With -t the supervisor
    // relays the pty to its stdout, which is then the tee's pipe: the log gets the terminal's
    // bytes as they are (`\r\n`, escapes), as docker's log of a TTY container does, while the
    // terminal (stdin, where raw mode and the window size live) is untouched.
    let tee = (!o.auto_remove)
        .then(|| tee::start(&containers.log_path(&state.id)))
        .flatten();
    // This process ends with the container (see run::run_last).
    let r = run::run_last(&spec, tool, pre);
    if let Some(t) = tee {
        t.finish();
    }
    let code = r.as_ref().ok().copied();
    // Re-read: `box rename` may have changed the state meanwhile.
    if let Ok(s) = containers.load(&state.id) {
        state = s;
    }
    start::end_foreground(&containers, &volumes_dir, &mut state, code);
    Ok(r?)
}

pub(crate) fn redirect_stdin_null() {
    if let Ok(f) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&f);
    }
}

/// Run detached: called in the daemon made by [`detach::daemonize`] (already inside the
/// tool's user namespace). Reports the id (or the failure) to the waiting `boxrun -d`, then
/// stays to record the container's exit (and to restart it, as its policy says). Returns the
/// exit code for this monitor process.
pub fn run_detached(store: Store, o: &RunOptions, tool: &ToolContext) -> Result<i32> {
    let containers = Containers::new(store.containers_dir());
    let volumes_dir = store.volumes_dir();
    let prepared = prepare(&store, o, None, tool);
    drop(store);
    let Prepared { spec, state } = match prepared {
        Ok(p) => p,
        Err(e) => {
            detach::report_failure(&e.to_string(), 125);
            return Err(e);
        }
    };
    monitor::supervise(&containers, &volumes_dir, spec, state, o.isolation, tool)
}
