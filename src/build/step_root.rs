//! The root a RUN step runs on, per snapshotter ([`super::backends`]), and how its changes
//! become an overlay-form upper dir that [`super::fsview::commit_dir`] packs:
//! - overlay: the stage's layers as lowerdirs, upper and work dirs in the step's work dir,
//!   or on a tmpfs mounted there when the store is on overlayfs;
//! - copy: a plain copy of the stage's layers kept for the whole stage
//!   ([`CopyRoot`]); each step's diff against the stat snapshot taken before it is written
//!   as an upper dir ([`crate::layer::snapshot::diff`]).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::backends::Snapshotter;
use super::engine::{Engine, StageRun};
use super::error::{StepErrorKind, StepResult};
use super::fsview::{self, Lowers};
use crate::digest::Digest;
use crate::layer::snapshot::{self, Snapshot};
use crate::run::{RootfsSource, UpperDir};

/// A tmpfs mounted in the tool's own mount namespace, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> StepResult<Tmpfs> {
        fs::create_dir(at).map_err(fsview::io_err("create", at))?;
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0700"),
        )
        .map_err(|e| {
            fsview::io_err(
                "mount a tmpfs for the overlay's upper dir (the store is on overlayfs, which \
                 overlayfs refuses as an upper dir; put the store on a volume with --root, or \
                 use --snapshotter copy) on",
                at,
            )(std::io::Error::from(e))
        })?;
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A fuse-overlayfs mount (the program daemonizes once mounted), unmounted when dropped.
struct FuseMount(PathBuf);

impl FuseMount {
    fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, at: &Path) -> StepResult<FuseMount> {
        let esc = |p: &Path| p.to_string_lossy().replace(',', "\\,").replace(':', "\\:");
        // fuse-overlayfs lists lowerdirs topmost first, as the kernel does.
        let lower: Vec<String> = lowers.iter().rev().map(|p| esc(p)).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            esc(upper),
            esc(work)
        );
        let out = std::process::Command::new("fuse-overlayfs")
            .arg("-o")
            .arg(&opts)
            .arg(at)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(fsview::io_err(
                "run fuse-overlayfs (is it installed?) for",
                at,
            ))?;
        if !out.status.success() {
            return Err(StepErrorKind::Invalid(format!(
                "fuse-overlayfs could not mount the step's root on {} ({}): {}",
                at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(FuseMount(at.to_path_buf()))
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if nix::mount::umount2(&self.0, MntFlags::empty()).is_err() {
            let _ = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
}

/// A stage's plain-copy root (copy snapshotter): the layers it holds, and the stat snapshot
/// of its state after them.
pub struct CopyRoot {
    dir: tempfile::TempDir,
    applied: Vec<Digest>,
    snapshot: Snapshot,
}

impl CopyRoot {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// A step's root, ready to run on; [`StepRoot::upper`] afterwards gives its changes.
pub(super) struct StepRoot {
    pub source: RootfsSource,
    /// The image below the step (for telling the sandbox's stubs from the image's files).
    pub lowers: Lowers,
    kind: Kind,
}

enum Kind {
    Overlay {
        upper: PathBuf,
        _tmpfs: Option<Tmpfs>,
    },
    Fuse {
        upper: PathBuf,
        mount: Option<FuseMount>,
    },
    Copy,
}

impl Engine<'_> {
    /// The root for the next RUN of `sr`, its dirs in `work`.
    pub(super) fn step_root(
        &self,
        sr: &mut StageRun,
        work: &tempfile::TempDir,
    ) -> StepResult<StepRoot> {
        let mut lowerdirs = self.lowerdirs(&sr.out.layers)?;
        let lowers = Lowers::new(lowerdirs.clone());
        match self.opts.backends.snapshotter {
            Snapshotter::Overlay { tmpfs_upper } => {
                if lowerdirs.is_empty() {
                    let empty = work.path().join("empty");
                    fs::create_dir(&empty).map_err(fsview::io_err("create", &empty))?;
                    lowerdirs.push(empty);
                }
                let tmpfs = if tmpfs_upper {
                    Some(Tmpfs::mount(&work.path().join("t"))?)
                } else {
                    None
                };
                let base = tmpfs.as_ref().map_or(work.path(), |t| t.0.as_path());
                let upper = base.join("upper");
                let wdir = base.join("work");
                for d in [&upper, &wdir] {
                    fs::create_dir(d).map_err(fsview::io_err("create", d))?;
                }
                Ok(StepRoot {
                    source: RootfsSource::Overlay {
                        lowerdirs,
                        upper: UpperDir::Dir {
                            upper: upper.clone(),
                            work: wdir,
                        },
                    },
                    lowers,
                    kind: Kind::Overlay {
                        upper,
                        _tmpfs: tmpfs,
                    },
                })
            }
            Snapshotter::Fuse => {
                let dirs: Vec<PathBuf> = ["upper", "work", "merged"]
                    .iter()
                    .map(|d| work.path().join(d))
                    .collect();
                for d in &dirs {
                    fs::create_dir(d).map_err(fsview::io_err("create", d))?;
                }
                if lowerdirs.is_empty() {
                    let empty = work.path().join("empty");
                    fs::create_dir(&empty).map_err(fsview::io_err("create", &empty))?;
                    lowerdirs.push(empty);
                }
                let mount = FuseMount::mount(&lowerdirs, &dirs[0], &dirs[1], &dirs[2])?;
                Ok(StepRoot {
                    source: RootfsSource::Dir(dirs[2].clone()),
                    lowers,
                    kind: Kind::Fuse {
                        upper: dirs[0].clone(),
                        mount: Some(mount),
                    },
                })
            }
            Snapshotter::Copy => {
                let layers: Vec<Digest> = sr.out.layers.iter().map(|l| l.diff_id.clone()).collect();
                self.sync_copy_root(sr, &layers, &lowerdirs)?;
                let root = sr.copy.as_ref().expect("synced").root();
                Ok(StepRoot {
                    source: RootfsSource::Dir(root),
                    lowers,
                    kind: Kind::Copy,
                })
            }
        }
    }

    /// Make the stage's copy root hold exactly `layers`: apply the ones added since the last
    /// step (a COPY's layer), or copy them all afresh.
    fn sync_copy_root(
        &self,
        sr: &mut StageRun,
        layers: &[Digest],
        lowerdirs: &[PathBuf],
    ) -> StepResult<()> {
        if let Some(c) = &mut sr.copy
            && layers.starts_with(&c.applied)
        {
            let root = c.root();
            for d in &lowerdirs[c.applied.len()..] {
                snapshot::apply_layer(d, &root).map_err(StepErrorKind::Snapshot)?;
            }
            if layers.len() > c.applied.len() {
                c.snapshot = snapshot::snapshot(&root).map_err(StepErrorKind::Snapshot)?;
                c.applied = layers.to_vec();
            }
            return Ok(());
        }
        sr.copy = None;
        let dir = self.new_layer_dir("copy-")?;
        let root = dir.path().join("root");
        snapshot::materialize(lowerdirs, &root).map_err(StepErrorKind::Snapshot)?;
        let snapshot = snapshot::snapshot(&root).map_err(StepErrorKind::Snapshot)?;
        sr.copy = Some(CopyRoot {
            dir,
            applied: layers.to_vec(),
            snapshot,
        });
        Ok(())
    }
}

impl StepRoot {
    /// After the step: the overlay-form upper dir holding its changes (in `work` for the copy
    /// snapshotter), with the sandbox's mount-point stubs left out. The copy root's snapshot
    /// moves on to the state after the step.
    pub(super) fn upper(
        &mut self,
        sr: &mut StageRun,
        work: &tempfile::TempDir,
        stubs: &[String],
    ) -> StepResult<PathBuf> {
        match &mut self.kind {
            Kind::Overlay { upper, .. } => {
                super::step_run::remove_stubs(upper, &self.lowers, stubs);
                Ok(upper.clone())
            }
            Kind::Fuse { upper, mount } => {
                // Unmounted first: the upper dir is complete once fuse-overlayfs let go.
                drop(mount.take());
                let lowers = &self.lowers;
                crate::layer::whiteout::normalize_fuse_upper(upper, &|rel| {
                    lowers.find(rel).is_some()
                })
                .map_err(fsview::io_err("read fuse-overlayfs's upper dir", upper))?;
                super::step_run::remove_stubs(upper, &self.lowers, stubs);
                Ok(upper.clone())
            }
            Kind::Copy => {
                let c = sr.copy.as_mut().expect("copy root of this step");
                let upper = work.path().join("upper");
                fs::create_dir(&upper).map_err(fsview::io_err("create", &upper))?;
                let skip: Vec<&str> = stubs.iter().map(|s| s.trim_matches('/')).collect();
                let after = snapshot::diff(&c.root(), &c.snapshot, &upper, &skip)?;
                c.snapshot = after;
                Ok(upper)
            }
        }
    }

    /// The copy root now also holds the step's layer (`None`: the step changed nothing).
    pub(super) fn committed(&self, sr: &mut StageRun, layer: Option<&Digest>) {
        if let (Kind::Copy, Some(c), Some(d)) = (&self.kind, sr.copy.as_mut(), layer) {
            c.applied.push(d.clone());
        }
    }
}
