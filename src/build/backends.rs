//! Which isolation and which snapshotter the RUN steps of a build use (issue 13), chosen from
//! the environment probe ([`crate::run::probe`]) unless forced with `--isolation` /
//! `--snapshotter`. Every build prints one line naming both (see [`Backends::describe`]).
//!
//! Snapshotters, strongest (and fastest) first:
//! - **overlay**: the kernel's overlayfs, upper and work dirs in the store's `tmp/`; or, when
//!   the store itself is on overlayfs (a job container's root filesystem, which overlayfs
//!   refuses as an upper dir), on a tmpfs mounted in the tool's own mount namespace;
//! - **fuse**: fuse-overlayfs, where /dev/fuse exists but the kernel's overlay is refused;
//! - **copy**: no mounts at all: a plain copy of the stage's layers, diffed by stat snapshots
//!   before and after each step ([`crate::layer::snapshot`]). The only one chroot isolation
//!   can use.

use std::path::Path;

use crate::run::isolation::{self, Isolation, IsolationChoice};
use crate::run::probe::Probe;

/// The snapshotter a user asks for (`--snapshotter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotterChoice {
    #[default]
    Auto,
    Overlay,
    Fuse,
    Copy,
}

impl std::str::FromStr for SnapshotterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "overlay" | "overlayfs" => Ok(Self::Overlay),
            "fuse" | "fuse-overlayfs" => Ok(Self::Fuse),
            "copy" | "vfs" => Ok(Self::Copy),
            _ => Err(format!(
                "invalid snapshotter {s:?}: expected auto, overlay, fuse or copy"
            )),
        }
    }
}

/// How a RUN step's root is made and diffed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// Kernel overlayfs; `tmpfs_upper`: upper and work dirs on a tmpfs of the tool's mount
    /// namespace instead of the store (which is on overlayfs).
    Overlay { tmpfs_upper: bool },
    /// fuse-overlayfs.
    Fuse,
    /// A plain copy of the layers, diffed by stat snapshots.
    Copy,
}

impl Snapshotter {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Overlay { tmpfs_upper: false } => "overlay",
            Self::Overlay { tmpfs_upper: true } => "overlay (upper on tmpfs)",
            Self::Fuse => "fuse-overlayfs",
            Self::Copy => "copy",
        }
    }
}

/// The isolation and snapshotter of a build's RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backends {
    pub isolation: Isolation,
    pub snapshotter: Snapshotter,
}

impl Default for Backends {
    /// A host with every feature: full namespaces, overlay in the store.
    fn default() -> Self {
        Backends {
            isolation: Isolation::FULL,
            snapshotter: Snapshotter::Overlay { tmpfs_upper: false },
        }
    }
}

impl Backends {
    /// The line every build prints.
    pub fn describe(&self) -> String {
        format!(
            "isolation {}, snapshotter {}",
            self.isolation.describe(),
            self.snapshotter.describe()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Isolation(#[from] isolation::NoIsolation),
    #[error("snapshotter {asked}: {why}")]
    Snapshotter { asked: &'static str, why: String },
}

/// Whether overlayfs would refuse `dir` as an upper dir: it is on overlayfs itself.
pub fn on_overlayfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

/// Choose both from the probe. `store_tmp`: where step dirs go (its filesystem decides
/// whether an overlay upper can live there).
pub fn choose(
    isolation: IsolationChoice,
    snapshotter: SnapshotterChoice,
    probe: &Probe,
    root: bool,
    store_tmp: &Path,
) -> Result<Backends, BackendError> {
    let iso = isolation::choose(isolation, probe, root)?;
    let store_on_overlay = on_overlayfs(store_tmp);
    let overlay = Snapshotter::Overlay {
        tmpfs_upper: store_on_overlay,
    };
    // fuse-overlayfs does not read the xattr whiteouts a store on overlayfs holds.
    let fuse_ok = probe.ok("fuse-overlayfs") && !store_on_overlay;
    let why = |c: &str| {
        probe
            .checks
            .iter()
            .find(|x| x.name == c && !x.ok)
            .map_or_else(String::new, |x| x.detail.clone())
    };
    let needs_ns = |asked| BackendError::Snapshotter {
        asked,
        why: format!(
            "needs a mount namespace, and isolation {} has none; use --snapshotter copy",
            iso.describe()
        ),
    };
    let snap = match snapshotter {
        SnapshotterChoice::Copy => Snapshotter::Copy,
        _ if !iso.namespaced() && snapshotter != SnapshotterChoice::Auto => {
            return Err(needs_ns(match snapshotter {
                SnapshotterChoice::Fuse => "fuse",
                _ => "overlay",
            }));
        }
        SnapshotterChoice::Auto if !iso.namespaced() => Snapshotter::Copy,
        SnapshotterChoice::Overlay if probe.ok("overlay") => overlay,
        SnapshotterChoice::Overlay => {
            return Err(BackendError::Snapshotter {
                asked: "overlay",
                why: format!("overlayfs cannot be mounted here: {}", why("overlay")),
            });
        }
        SnapshotterChoice::Fuse if fuse_ok => Snapshotter::Fuse,
        SnapshotterChoice::Fuse if store_on_overlay => {
            return Err(BackendError::Snapshotter {
                asked: "fuse",
                why: "the store is on overlayfs, whose layers mark deletions in a form \
                      fuse-overlayfs does not read; put the store on a volume (--root) or use \
                      --snapshotter overlay or copy"
                    .into(),
            });
        }
        SnapshotterChoice::Fuse => {
            return Err(BackendError::Snapshotter {
                asked: "fuse",
                why: why("fuse-overlayfs"),
            });
        }
        SnapshotterChoice::Auto if probe.ok("overlay") => overlay,
        SnapshotterChoice::Auto if fuse_ok => Snapshotter::Fuse,
        SnapshotterChoice::Auto => Snapshotter::Copy,
    };
    Ok(Backends {
        isolation: iso,
        snapshotter: snap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::probe::{CHECKS, Check};

    fn probe(failing: &[&str]) -> Probe {
        Probe {
            checks: CHECKS
                .iter()
                .map(|(n, _)| *n)
                .chain(["fuse-overlayfs"])
                .map(|name| Check {
                    name,
                    ok: !failing.contains(&name),
                    detail: "refused".into(),
                })
                .collect(),
            subordinate_ids: None,
            elapsed: std::time::Duration::ZERO,
        }
    }

    fn pick(i: IsolationChoice, s: SnapshotterChoice, failing: &[&str], root: bool) -> String {
        match choose(i, s, &probe(failing), root, Path::new("/nonexistent")) {
            Ok(b) => b.describe(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn auto_picks_overlay_then_fuse_then_copy() {
        let a = (IsolationChoice::Auto, SnapshotterChoice::Auto);
        assert_eq!(
            pick(a.0, a.1, &[], false),
            "isolation userns, snapshotter overlay"
        );
        assert!(pick(a.0, a.1, &["overlay"], false).ends_with("snapshotter fuse-overlayfs"));
        let none = pick(a.0, a.1, &["overlay", "fuse-overlayfs"], false);
        assert!(none.ends_with("snapshotter copy"), "{none}");
    }

    #[test]
    fn without_namespaces_only_copy_works() {
        let no_ns = ["user-namespace", "mount-namespace", "overlay"];
        let (a, s) = (IsolationChoice::Auto, SnapshotterChoice::Auto);
        assert_eq!(
            pick(a, s, &no_ns, true),
            "isolation chroot, snapshotter copy"
        );
        let forced = pick(
            IsolationChoice::Chroot,
            SnapshotterChoice::Overlay,
            &[],
            true,
        );
        assert!(forced.contains("use --snapshotter copy"), "{forced}");
        let fuse = pick(a, SnapshotterChoice::Fuse, &["fuse-overlayfs"], false);
        assert!(
            fuse.starts_with("error: snapshotter fuse: refused"),
            "{fuse}"
        );
    }
}
