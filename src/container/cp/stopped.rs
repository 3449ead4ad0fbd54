//! A container that is not running, seen as its processes would see their root: an overlay
//! of the image's unpacked layers and, when the container keeps one, its writable layer
//! (`containers/<id>/upper`), mounted detached (`fsmount`, by [`crate::run::rootfs`]'s own
//! code, so with the same options a start uses). Nothing is attached anywhere: the mount lives
//! as long as the descriptor.
//!
//! The ids must be the container's, as for a running one: rootless, the child joins the
//! keeper's user namespace (it maps exactly the container range), becomes its root and makes
//! a mount namespace of its own there to mount in. As root, the child mounts with host
//! credentials, then enters a new user namespace whose map the host side writes — container
//! ids 0…n-1 onto root's subordinate range, nothing else — and becomes its root, so every
//! file it creates gets a container id and no other id can be given.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;

use super::side::{Ctl, Msg};
use super::{CpError, Result};
use crate::container::{Containers, State};
use crate::run::{RootfsSource, UpperDir};
use crate::store::Store;

/// What a child needs to mount a stopped container's root.
pub struct View {
    pub lowers: Vec<PathBuf>,
    /// The kept writable layer, if any.
    pub upper: Option<PathBuf>,
    pub work: PathBuf,
    /// A directory for an image-only view's unused upper and work (removed afterwards).
    pub scratch: PathBuf,
    /// Rootless: the keeper's user namespace.
    pub keeper: Option<OwnedFd>,
    /// Root: container ids 0..count map to start.. (written by the host side).
    pub root_map: Option<(u32, u32)>,
}

/// The image's unpacked layers, bottom first, from the manifest the container records.
fn lowers(store: &Store, st: &State) -> Result<Vec<PathBuf>> {
    let gone = |why: String| CpError::Place(format!("container {}: {why}", st.name));
    let digest: crate::digest::Digest = st
        .image_digest
        .parse()
        .map_err(|_| gone(format!("bad image digest {}", st.image_digest)))?;
    let m = store
        .read_manifest(&digest)
        .map_err(|e| gone(e.to_string()))?;
    let cfg = store
        .read_config(&m.config.digest)
        .map_err(|e| gone(e.to_string()))?;
    cfg.rootfs
        .diff_ids
        .iter()
        .map(|d| {
            let d: crate::digest::Digest = d
                .parse()
                .map_err(|_| gone(format!("bad layer digest {d}")))?;
            crate::layer::cached_layer(&store.layers_dir(), &d).ok_or_else(|| {
                gone(format!(
                    "layer {d} of its image is not unpacked (run a container of the image \
                     once, or box pull it again)"
                ))
            })
        })
        .collect()
}

/// Whether the container's record says it keeps its writable layer on disk (`box create`
/// makes the directory only at the first start).
fn keeps_upper(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["launch"]["kept_upper"] == serde_json::Value::Bool(true))
}

/// Find what the child needs, on the host side, before forking.
pub fn locate(store: &Store, st: &State, writing: bool) -> Result<View> {
    let c = Containers::new(store.containers_dir());
    let dir = c.dir(&st.id);
    let (maps, _) =
        crate::run::idmap::plan_for_current_user().map_err(|e| CpError::Place(e.to_string()))?;
    let mut upper = Some(dir.join("upper")).filter(|u| u.is_dir());
    if writing && upper.is_none() && keeps_upper(&dir) {
        // Created and never started: its writable layer comes into being here, owned by
        // container root as a start would make it.
        let u = dir.join("upper");
        std::fs::create_dir(&u).map_err(|cause| CpError::Host {
            op: "create writable layer",
            path: u.clone(),
            cause,
        })?;
        if nix::unistd::geteuid().is_root() {
            let _ = std::os::unix::fs::chown(&u, Some(maps.root_uid()), Some(maps.root_gid()));
        }
        upper = Some(u);
    }
    if writing && upper.is_none() {
        return Err(CpError::Place(format!(
            "container {} is not running and keeps no writable layer (it ran in the \
             foreground or with --rm, or the store is on overlayfs): what is copied in would \
             be lost at its next start",
            st.name
        )));
    }
    let scratch = store.tmp_dir().join(format!(
        "cp-{}-{}",
        &st.id[..12.min(st.id.len())],
        std::process::id()
    ));
    let (keeper, root_map) = if nix::unistd::geteuid().is_root() {
        (None, Some((maps.root_uid(), maps.container)))
    } else {
        let k = crate::run::keeper::ensure(&maps).map_err(|e| CpError::Place(e.to_string()))?;
        (Some(k.userns), None)
    };
    Ok(View {
        lowers: lowers(store, st)?,
        upper,
        work: dir.join("work"),
        scratch,
        keeper,
        root_map,
    })
}

/// Mount the view (in the child); returns the root's descriptor.
fn mount(v: &View) -> std::result::Result<OwnedFd, String> {
    match &v.upper {
        Some(upper) => {
            // A fresh work dir, as a start makes one: overlay refuses a used volatile one.
            let _ = crate::store::gc::remove_tree(&v.work);
            std::fs::create_dir(&v.work)
                .map_err(|e| format!("create {}: {e}", v.work.display()))?;
            let src = RootfsSource::Overlay {
                lowerdirs: v.lowers.clone(),
                upper: UpperDir::Dir {
                    upper: upper.clone(),
                    work: v.work.clone(),
                },
            };
            crate::run::rootfs::prepare(&src, &[], &v.scratch)
                .map(|p| p.root)
                .map_err(|e| e.to_string())
        }
        None => {
            std::fs::create_dir_all(&v.scratch)
                .map_err(|e| format!("create {}: {e}", v.scratch.display()))?;
            crate::run::rootfs::image_view(&v.lowers, &v.scratch).map_err(|e| e.to_string())
        }
    }
}

/// In the child: mount the stopped container's root and take its ids; returns the root.
pub fn enter(v: &View, ctl: &mut Ctl) -> std::result::Result<OwnedFd, String> {
    if let Some(userns) = &v.keeper {
        nix::sched::setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("join the rootless user namespace: {e}"))?;
        super::side::become_root()?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("make a mount namespace: {e}"))?;
        return mount(v);
    }
    let root = mount(v)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("make a user namespace: {e}"))?;
    ctl.send(&Msg::MapMe);
    match ctl.recv() {
        Some(Msg::Mapped) => {}
        _ => return Err("the host side did not map the container's ids".into()),
    }
    super::side::become_root()?;
    Ok(root)
}

/// On the host side: write the child's maps when it asks (root only).
pub fn write_maps(child: nix::unistd::Pid, map: (u32, u32)) -> std::io::Result<()> {
    let (start, count) = map;
    let line = format!("0 {start} {count}\n");
    std::fs::write(format!("/proc/{child}/uid_map"), &line)?;
    std::fs::write(format!("/proc/{child}/gid_map"), &line)
}

/// Remove the scratch directory of an image-only view (host side, after the child ended).
pub fn cleanup(v: &View) {
    if v.scratch.exists() {
        let _ = crate::store::gc::remove_tree(&v.scratch);
    }
}
