//! Container state on disk: `containers/<id>/state.json` (written whole: temp file + rename),
//! the log of a detached container next to it, and `containers/names/<name>` symlinks that
//! reserve names atomically.
//!
//! A running container records its supervisor's pid and start time (field 22 of
//! /proc/PID/stat), so a recycled pid is never taken for the container. When the supervisor
//! is gone but the state still says running (the machine rebooted, or someone SIGKILLed the
//! supervisor), [`refresh`] marks it exited; one started with `--rm` is removed then.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::run::Limits;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("no such container: {0}")]
    NoSuch(String),
    #[error(
        "container reference {0:?} is ambiguous: it matches {1} containers; give more of the ID"
    )]
    Ambiguous(String, usize),
    #[error(
        "the container name {0:?} is already in use; remove that container (box rm) or choose another name"
    )]
    NameInUse(String),
    #[error(
        "invalid container name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("container state {path}: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StateError>;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |cause| StateError::Io { op, path, cause }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// Everything `box ps`, `inspect`, `exec` and `stop` need about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its manifest digest (which also keeps the image's
    /// blobs and unpacked layers alive through `box prune`).
    pub image: String,
    pub image_digest: String,
    pub image_id: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub hostname: String,
    pub stop_signal: i32,
    /// `--stop-timeout`: what `box stop` waits without `-t` (None: 10 s).
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--label`s of the container (the image's are merged under them where shown).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Capability set of the container's processes (bit mask), for `box exec`.
    pub caps: u64,
    pub no_new_privs: bool,
    /// The seccomp profile, so that `box exec` applies the same one (absent: the default).
    #[serde(default)]
    pub seccomp: crate::run::seccomp::SeccompRecord,
    pub network: crate::run::NetworkMode,
    /// The ports asked for (`-p`); a host port of 0 means any free one.
    #[serde(default)]
    pub ports: Vec<crate::run::ports::PortMapping>,
    /// While running: the ports as bound (random host ports resolved), written by the
    /// supervisor once the host side bound them; cleared at exit.
    #[serde(default)]
    pub published: Vec<crate::run::ports::PortMapping>,
    pub limits: Limits,
    pub mounts: Vec<MountRecord>,
    pub read_only: bool,
    pub tty: bool,
    pub detached: bool,
    pub auto_remove: bool,
    /// Anonymous volumes, removed with the container when `auto_remove`.
    pub anonymous_volumes: Vec<String>,
    pub status: Status,
    /// Seconds since the epoch, and the same as RFC 3339 for display.
    pub created: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// The process that supervises the container (pid 1's parent), with its start time.
    pub supervisor_pid: Option<i32>,
    pub supervisor_start: Option<u64>,
    /// A detached container's monitor (the supervisor's parent, which records the exit),
    /// with its start time. None in the foreground, where the supervisor records it.
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub monitor_start: Option<u64>,
    /// Set when the supervisor vanished without recording an exit.
    #[serde(default)]
    pub error: Option<String>,
    /// What `box start` needs to run the container again (absent in states older than it).
    #[serde(default)]
    pub launch: Option<super::launch::Launch>,
    /// `--restart`, kept by the detached monitor.
    #[serde(default)]
    pub restart: super::restart::Policy,
    /// Restarts by the policy since the container was last started by a user.
    #[serde(default)]
    pub restart_count: u32,
    /// Exited, and the monitor waits out the back-off before it starts it again.
    #[serde(default)]
    pub restarting: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
}

/// The directory that holds all containers of a store.
/// A file in a container's directory: a `box wait` waits on it.
const WAITER_MARKER: &str = "waiting";
/// A file in a container's directory: a user stopped (or killed) it, so its restart policy
/// no longer applies until the next `box start`.
const USER_STOP_MARKER: &str = "user-stopped";

#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
    /// The tmpfs directory of foreground `--rm` containers (`store::rundir`), when one exists
    /// or was made here.
    run: std::sync::OnceLock<PathBuf>,
}

/// Docker's container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check_name(n: &str) -> Result<()> {
    let mut c = n.chars();
    let ok = c.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(n.to_string()))
    }
}

/// Start time of `pid` in clock ticks since boot, from /proc/PID/stat.
pub fn process_start(pid: i32) -> Option<u64> {
    let s = crate::procfs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::timefmt::rfc3339_nanos(d.as_secs() as i64, d.subsec_nanos())
}

impl State {
    /// Whether the recorded supervisor is still the live process it was.
    pub fn supervisor_alive(&self) -> bool {
        match (self.supervisor_pid, self.supervisor_start) {
            (Some(pid), Some(start)) => process_start(pid) == Some(start),
            _ => false,
        }
    }

    /// Whether the process that will record the exit still lives: the monitor of a detached
    /// container (it records the exit after the supervisor ends and the log is drained), else
    /// the supervisor.
    pub fn recorder_alive(&self) -> bool {
        match (self.monitor_pid, self.monitor_start) {
            (Some(pid), Some(start)) => process_start(pid) == Some(start),
            _ => self.supervisor_alive(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == Status::Running && self.supervisor_alive()
    }

    /// The container's pid 1 as seen from here: the first descendant of the supervisor that
    /// lives in a deeper pid namespace. None when it is not (or no longer) running.
    ///
    /// Namespace depth comes from the `NSpid:` line of /proc/PID/status, which anyone may
    /// read; /proc/PID/ns/* would need ptrace access to the supervisor, which is not dumpable
    /// after its id change in the tool's user namespace.
    pub fn init_pid(&self) -> Option<i32> {
        if !self.supervisor_alive() {
            return None;
        }
        let sup = self.supervisor_pid?;
        let depth = |p: i32| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().count())
        };
        let sup_depth = depth(sup)?;
        let mut queue = vec![sup];
        // Supervisor → (optional fork helper) → container init: a shallow search suffices.
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in queue {
                let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
                    .unwrap_or_default();
                for k in kids
                    .split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok())
                {
                    match depth(k) {
                        Some(d) if d > sup_depth => return Some(k),
                        Some(_) => next.push(k),
                        None => {}
                    }
                }
            }
            queue = next;
        }
        None
    }

    /// Docker's State.Status: created, running, restarting (exited, its monitor waiting
    /// out the restart back-off) or exited.
    pub fn docker_state(&self) -> &'static str {
        match self.status {
            Status::Created => "created",
            Status::Running if self.is_running() => "running",
            Status::Exited if self.restarting && self.recorder_alive() => "restarting",
            _ => "exited",
        }
    }

    /// Docker's STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
    pub fn status_text(&self) -> String {
        match self.status {
            Status::Created => "Created".into(),
            Status::Running => format!(
                "Up {}",
                ago(self.started_at.as_deref()).trim_end_matches(" ago")
            ),
            Status::Exited if self.restarting && self.recorder_alive() => format!(
                "Restarting ({}) {}",
                self.exit_code.unwrap_or(-1),
                ago(self.finished_at.as_deref())
            ),
            Status::Exited => format!(
                "Exited ({}) {}",
                self.exit_code.unwrap_or(-1),
                ago(self.finished_at.as_deref())
            ),
        }
    }
}

fn ago(t: Option<&str>) -> String {
    crate::timefmt::human_age(t)
}

impl Containers {
    pub fn new(dir: impl Into<PathBuf>) -> Containers {
        let dir = dir.into();
        let run = std::sync::OnceLock::new();
        if let Some(r) = crate::store::rundir::run_dir(&dir) {
            let _ = run.set(r);
        }
        Containers { dir, run }
    }

    /// The container's directory: in the run directory when it is there, else in the store.
    pub fn dir(&self, id: &str) -> PathBuf {
        if let Some(r) = self.run.get() {
            let d = r.join(id);
            if !id.is_empty() && std::fs::symlink_metadata(&d).is_ok() {
                return d;
            }
        }
        self.dir.join(id)
    }

    /// Whether `st` belongs in the run directory: a foreground `--rm` container, created
    /// running, whose state ends with its process (nothing of it is kept on disk).
    fn ephemeral(st: &State) -> bool {
        st.auto_remove && !st.detached && st.status == Status::Running
    }
    /// The store these containers belong to (the containers directory's parent).
    pub fn store_root(&self) -> &std::path::Path {
        self.dir.parent().unwrap_or(&self.dir)
    }
    fn state_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("state.json")
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("container.log")
    }
    fn names_dir(&self) -> PathBuf {
        self.dir.join("names")
    }
    /// The run directory's names (of the foreground `--rm` containers living there); looked
    /// up again when this handle has none, as one may have been made since.
    fn run_names_dir(&self) -> Option<PathBuf> {
        let run = self
            .run
            .get()
            .cloned()
            .or_else(|| crate::store::rundir::run_dir(&self.dir))?;
        Some(run.join("names"))
    }
    /// Whether container `id` lives in the run directory.
    fn in_run_dir(&self, id: &str) -> bool {
        self.run.get().is_some_and(|r| self.dir(id).starts_with(r))
    }

    /// Reserve `name` for `id` (atomic: a symlink either is created or already exists).
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        self.reserve_name_for(name, id, false)
    }

    /// Reserve `name` for `id`; for a foreground `--rm` container (`ephemeral`) in the run
    /// directory, when there can be one. A name is one namespace across both places: each
    /// side makes its link first and then looks at the other, so of two racing reservations
    /// at least one sees the other (both may fail then, never both succeed).
    pub fn reserve_name_for(&self, name: &str, id: &str, ephemeral: bool) -> Result<()> {
        check_name(name)?;
        let run = ephemeral
            .then(|| {
                let r = self
                    .run
                    .get()
                    .cloned()
                    .or_else(|| crate::store::rundir::ensure_run_dir(&self.dir))?;
                let _ = self.run.set(r.clone());
                Some(r.join("names"))
            })
            .flatten();
        let (nd, other) = match run {
            Some(r) => (r, Some(self.names_dir())),
            None => (self.names_dir(), self.run_names_dir()),
        };
        self.link_name(&nd, name, id)?;
        let link = nd.join(name);
        if other.is_some_and(|o| self.live_owner(&o.join(name), id)) {
            let _ = std::fs::remove_file(&link);
            return Err(StateError::NameInUse(name.to_string()));
        }
        Ok(())
    }

    /// Whether the name link `link` names a container other than `id` that still exists.
    fn live_owner(&self, link: &Path, id: &str) -> bool {
        std::fs::read_link(link).is_ok_and(|o| {
            let o = o.to_string_lossy();
            o != id && self.dir(&o).exists()
        })
    }

    fn link_name(&self, nd: &Path, name: &str, id: &str) -> Result<()> {
        std::fs::create_dir_all(nd).map_err(io("create directory", nd))?;
        let link = nd.join(name);
        match std::os::unix::fs::symlink(id, &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A name left behind by a container whose directory is gone is free again.
                let owner = std::fs::read_link(&link).ok();
                if owner.is_some_and(|o| !self.dir(&o.to_string_lossy()).exists()) {
                    let _ = std::fs::remove_file(&link);
                    return self.link_name(nd, name, id);
                }
                Err(StateError::NameInUse(name.to_string()))
            }
            Err(e) => Err(io("create name link", &link)(e)),
        }
    }

    /// Release `name` where it names `id` (in the store and in the run directory).
    pub fn release_name(&self, name: &str, id: &str) {
        for nd in std::iter::once(self.names_dir()).chain(self.run_names_dir()) {
            let link = nd.join(name);
            if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == id) {
                let _ = std::fs::remove_file(&link);
            }
        }
    }

    /// `docker rename`: give container `id` the name `new`, which must be free. The new name
    /// is reserved before the old one is released, so the container always has one.
    pub fn rename(&self, id: &str, new: &str) -> Result<()> {
        let mut st = self.load(id)?;
        if st.name == new {
            return Err(StateError::NameInUse(new.to_string()));
        }
        self.reserve_name_for(new, id, self.in_run_dir(id))?;
        let old = std::mem::replace(&mut st.name, new.to_string());
        if let Err(e) = self.save(&st) {
            self.release_name(new, id);
            return Err(e);
        }
        self.release_name(&old, id);
        Ok(())
    }

    fn exits_dir(&self) -> PathBuf {
        self.dir.join("exits")
    }

    /// Say that a `box wait` waits on container `id`, so that a `--rm` container keeps its
    /// exit code ([`Containers::record_exit`]) when it is removed. Fails when the container's
    /// directory is already gone.
    pub fn add_waiter(&self, id: &str) -> Result<()> {
        let p = self.dir(id).join(WAITER_MARKER);
        std::fs::write(&p, b"").map_err(io("create", &p))
    }

    /// Say that a user stopped container `id` (before the signal is sent), so that its
    /// monitor does not restart it.
    pub fn mark_user_stop(&self, id: &str) -> Result<()> {
        let p = self.dir(id).join(USER_STOP_MARKER);
        std::fs::write(&p, b"").map_err(io("create", &p))
    }

    /// Whether a user stopped container `id` since its last start.
    pub fn user_stopped(&self, id: &str) -> bool {
        self.dir(id).join(USER_STOP_MARKER).exists()
    }

    /// Forget a user stop: the container is being started again.
    pub fn clear_user_stop(&self, id: &str) {
        let _ = std::fs::remove_file(self.dir(id).join(USER_STOP_MARKER));
    }

    /// Whether a `box wait` registered on container `id` ([`Containers::add_waiter`]).
    pub fn has_waiter(&self, id: &str) -> bool {
        self.dir(id).join(WAITER_MARKER).exists()
    }

    /// Keep the exit code of a `--rm` container that is about to be removed, for a
    /// `box wait` that is waiting on it. Codes older than ten minutes are dropped here.
    pub fn record_exit(&self, id: &str, code: i32) -> Result<()> {
        let d = self.exits_dir();
        std::fs::create_dir_all(&d).map_err(io("create directory", &d))?;
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < old)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let p = d.join(id);
        crate::atomic::write_with(
            &p,
            code.to_string().as_bytes(),
            0o600,
            crate::atomic::Durability::Atomic,
        )
        .map_err(io("write", &p))
    }

    /// The exit code [`Containers::record_exit`] kept for a removed container.
    pub fn recorded_exit(&self, id: &str) -> Option<i32> {
        std::fs::read_to_string(self.exits_dir().join(id))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Create the container's directory and first state (no name reservation); a foreground
    /// `--rm` container's in the run directory when there can be one.
    pub fn create(&self, st: &State) -> Result<()> {
        let run = Self::ephemeral(st)
            .then(|| {
                self.run
                    .get()
                    .cloned()
                    .or_else(|| crate::store::rundir::ensure_run_dir(&self.dir))
            })
            .flatten();
        let d = match run {
            Some(r) => {
                let _ = self.run.set(r.clone());
                r.join(&st.id)
            }
            None => self.dir.join(&st.id),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(io("create directory", &d))?;
        self.save(st)
    }

    /// Write the state whole (temp file and rename), so readers never see half of it.
    pub fn save(&self, st: &State) -> Result<()> {
        let p = self.state_path(&st.id);
        let data = serde_json::to_vec_pretty(st).map_err(|cause| StateError::Json {
            path: p.clone(),
            cause,
        })?;
        // 0600: the state holds the container's environment (`-e` values, often secrets).
        // Not fsynced: a container's state means nothing after a crash of the machine.
        crate::atomic::write_with(&p, &data, 0o600, crate::atomic::Durability::Atomic)
            .map_err(io("write", &p))
    }

    pub fn load(&self, id: &str) -> Result<State> {
        let p = self.state_path(id);
        let data = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StateError::NoSuch(id.to_string())
            } else {
                io("read", &p)(e)
            }
        })?;
        serde_json::from_slice(&data).map_err(|cause| StateError::Json { path: p, cause })
    }

    /// Every container id with a state file (in the store and in the run directory).
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = std::iter::once(&self.dir)
            .chain(self.run.get())
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.path().join("state.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Find a container by full id, name or unique id prefix.
    pub fn resolve(&self, what: &str) -> Result<String> {
        if !what.is_empty() && !what.contains('/') && self.state_path(what).is_file() {
            return Ok(what.to_string());
        }
        for nd in std::iter::once(self.names_dir()).chain(self.run_names_dir()) {
            if let Ok(target) = std::fs::read_link(nd.join(what)) {
                let id = target.to_string_lossy().into_owned();
                if self.state_path(&id).is_file() {
                    return Ok(id);
                }
            }
        }
        let hits: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| !what.is_empty() && id.starts_with(what))
            .collect();
        match hits.len() {
            0 => Err(StateError::NoSuch(what.to_string())),
            1 => Ok(hits.into_iter().next().unwrap_or_default()),
            n => Err(StateError::Ambiguous(what.to_string(), n)),
        }
    }

    /// Load a state and reconcile it with the processes that exist: a "running" container
    /// whose supervisor is gone is marked exited (or removed when it was `--rm`). Returns
    /// None when the container was removed here.
    pub fn refresh(&self, id: &str) -> Result<Option<State>> {
        let mut st = self.load(id)?;
        if st.status == Status::Running && !st.recorder_alive() {
            // The supervisor may have just written its final state; look again.
            if let Ok(again) = self.load(id)
                && again.status != Status::Running
            {
                return Ok(Some(again));
            }
            if st.auto_remove {
                self.remove(&st, None)?;
                return Ok(None);
            }
            st.status = Status::Exited;
            st.finished_at = Some(now_rfc3339());
            st.published.clear();
            st.exit_code.get_or_insert(137);
            st.error = Some("the container's supervisor ended without recording an exit".into());
            self.save(&st)?;
        }
        Ok(Some(st))
    }

    /// Remove the container's directory, its name and (when given) its anonymous volumes.
    pub fn remove(&self, st: &State, volumes_dir: Option<&Path>) -> Result<()> {
        self.release_name(&st.name, &st.id);
        if let Some(vd) = volumes_dir {
            for v in &st.anonymous_volumes {
                let _ = std::fs::remove_dir_all(vd.join(v));
            }
        }
        let d = self.dir(&st.id);
        // The writable layer may hold read-only directories the container made.
        match crate::store::gc::remove_tree(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &d)(e)),
        }
    }
}

/// Docker-style random names: adjective_noun.
pub fn random_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "tender", "witty",
    ];
    const NOUN: [&str; 16] = [
        "babbage", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "kepler", "lovelace",
        "newton", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
    ];
    let b = hex::decode(&id[..8.min(id.len())]).unwrap_or_default();
    let a = b.first().copied().unwrap_or(0) as usize % ADJ.len();
    let n = b.get(1).copied().unwrap_or(0) as usize % NOUN.len();
    format!("{}_{}_{}", ADJ[a], NOUN[n], &id[..6.min(id.len())])
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
