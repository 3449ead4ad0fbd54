//! What a container needs to be started again later (`box start`, `box restart`, a restart
//! policy): the sandbox options that [`super::State`] does not already hold, frozen when the
//! container is created, as docker keeps a container's config. The process (argv, env, cwd,
//! user), limits, network, ports, seccomp and tty come from the state itself; the image's
//! unpacked layers are named by path (the state's image digest keeps them through prune).
//!
//! A container that is not `--rm` keeps its writable layer on disk in `containers/<id>/upper`
//! (and overlay's `work` beside it), so a second start sees the files the first one wrote.
//! Where the store's filesystem cannot hold an overlay upper (the store is itself on
//! overlayfs) the upper is a tmpfs as for `--rm`, and each start begins from the image.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ContainerError, Containers, Result, State};
use crate::run::{self, MountSpec, RootfsSource, SandboxSpec, UpperDir};

/// The frozen launch options of a container (see the module doc).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Launch {
    /// The unpacked image layers, bottom first.
    pub lowerdirs: Vec<PathBuf>,
    /// The hostname the sandbox sets (None: the sandbox's default, e.g. with --network host).
    pub hostname: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub init: bool,
    pub userns_host: bool,
    pub interactive: bool,
    pub extras: run::spec::Extras,
    /// The writable layer lives in the container's directory (else a tmpfs per start).
    pub kept_upper: bool,
}

/// Whether a writable layer can be kept under `dir` (the containers directory): not on
/// overlayfs, which cannot hold another overlay's upper.
pub fn can_keep_upper(dir: &Path) -> bool {
    use nix::sys::statfs::{OVERLAYFS_SUPER_MAGIC, statfs};
    statfs(dir).is_ok_and(|s| s.filesystem_type() != OVERLAYFS_SUPER_MAGIC)
}

/// The overlay upper and work directories of container `id`. The work directory is made
/// afresh for every start: overlay refuses to mount a "volatile" work directory again
/// (`work/incompat/volatile`), and it holds nothing worth keeping.
pub fn upper_dirs(c: &Containers, id: &str) -> Result<(PathBuf, PathBuf)> {
    let d = c.dir(id);
    let (upper, work) = (d.join("upper"), d.join("work"));
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |cause| ContainerError::Io { op, path, cause }
    };
    match std::fs::create_dir(&upper) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create writable layer", &upper)(e)),
    }
    crate::store::gc::remove_tree(&work).map_err(io("remove old overlay work dir", &work))?;
    std::fs::create_dir(&work).map_err(io("create overlay work dir", &work))?;
    Ok((upper, work))
}

/// The sandbox run of a recorded container, from its state and launch record.
/// `isolation` and `preserve_fds` belong to the invocation, not to the container.
pub fn spec_of(
    c: &Containers,
    st: &State,
    l: &Launch,
    isolation: run::isolation::Isolation,
    preserve_fds: u32,
) -> Result<SandboxSpec> {
    let upper = if l.kept_upper {
        let (upper, work) = upper_dirs(c, &st.id)?;
        UpperDir::Dir { upper, work }
    } else {
        UpperDir::Ephemeral
    };
    let mut spec = SandboxSpec::new(
        RootfsSource::Overlay {
            lowerdirs: l.lowerdirs.clone(),
            upper,
        },
        st.argv.clone(),
    );
    // The sandbox id names the cgroup; 16 hex characters as the sandbox makes them.
    spec.id = st.id[..16].to_string();
    spec.isolation = isolation;
    spec.env = st.env.clone();
    spec.cwd = st.cwd.clone();
    spec.user = st.user.clone();
    spec.hostname = l.hostname.clone();
    spec.network = st.network;
    spec.ports = st.ports.clone();
    if !st.ports.is_empty() {
        spec.on_published = Some(published_hook(c, &st.id));
    }
    spec.mounts = l.mounts.clone();
    spec.read_only = st.read_only;
    spec.limits = st.limits.clone();
    spec.cap_add = l.cap_add.clone();
    spec.cap_drop = l.cap_drop.clone();
    spec.no_new_privs = st.no_new_privs;
    spec.seccomp = run::seccomp::Seccomp::from_record(&st.seccomp)?;
    spec.tty = st.tty;
    spec.init = l.init;
    spec.userns = if l.userns_host {
        run::UsernsMode::Host
    } else {
        run::UsernsMode::Remap
    };
    spec.preserve_fds = preserve_fds;
    spec.extras = l.extras.clone();
    Ok(spec)
}

/// The supervisor learns the ports as bound (random ones resolved) before the command
/// starts, so `boxrun -d` returns with them recorded.
fn published_hook(c: &Containers, id: &str) -> run::spec::PublishedHook {
    let (c, cid) = (c.clone(), id.to_string());
    run::spec::PublishedHook(std::sync::Arc::new(move |bound| {
        let r = c.load(&cid).and_then(|mut st| {
            st.published = bound.to_vec();
            c.save(&st)
        });
        if let Err(e) = r {
            eprintln!("boxkit: record the published ports of {}: {e}", &cid[..12]);
        }
    }))
}
