//! The copy snapshotter: RUN steps without overlayfs, for places where nothing can be mounted
//! (CI job containers with default capabilities and seccomp).
//!
//! The stage's layers are [`materialize`]d into a plain directory (copies, reflinked where
//! the filesystem can), and later layers go on top with [`apply_layer`]. Before a step runs,
//! [`snapshot`] records the `statx` of every path; afterwards [`diff`] walks the tree again,
//! compares, and writes what changed into an empty directory *exactly as overlayfs would have
//! left its upper dir* (copied-up parents, 0/0 whiteouts, `user.overlay.opaque` on replaced
//! directories), so `layer::pack_dir` packs the same bytes either way. The snapshot `diff`
//! returns is the one the next step compares with, so each step walks the tree once.
//!
//! Change detection is stat-based, as kaniko's is, but without hashing: ctime cannot be set
//! from user space, so an object whose (inode, birth time, ctime, mtime, size, mode, owner,
//! link count) are all unchanged was not touched. The one hole is timestamp granularity: a
//! file changed within the same clock tick as its last recorded change keeps its ctime. As git
//! does for its index ("racy git"), an entry whose ctime lies within [`RACY_WINDOW_NS`] of the
//! moment its snapshot was taken counts as changed; and to keep that from firing on files the
//! tool itself just wrote, every snapshot waits, before it is sealed, until its newest ctime is
//! that far in the past (at most the window, 20 ms, and only when something was that recent).

mod diff;
mod fsops;
mod merge;

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

pub use diff::diff;
pub use fsops::Stat;
pub use merge::{apply_layer, materialize};

use fsops::{Ctx, OpErr};

/// How close to the moment a snapshot was taken a ctime must be for the entry to count as
/// changed whatever its stat says. Above any kernel's clock tick (HZ=100: 10 ms).
pub const RACY_WINDOW_NS: i128 = 20_000_000;
/// The window on a filesystem that stores whole seconds only (every ctime's nanoseconds 0).
const COARSE_WINDOW_NS: i128 = 2_000_000_000;

/// A copy-snapshotter operation that failed, on which path.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("copy snapshotter: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(e: OpErr, path: PathBuf) -> SnapshotError {
    SnapshotError::Io {
        op: e.op,
        path,
        source: e.err,
    }
}

/// The stat of every path of a tree (relative paths, `""` for the root), and when it was
/// taken.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(super) entries: HashMap<Vec<u8>, Stat>,
    /// CLOCK_REALTIME in ns when the snapshot was sealed.
    taken: i128,
    window: i128,
}

impl Snapshot {
    /// Number of paths recorded (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded stat of `rel` (relative to the root; `""` is the root).
    pub fn get(&self, rel: &Path) -> Option<&Stat> {
        use std::os::unix::ffi::OsStrExt;
        let b = rel.as_os_str().as_bytes();
        let b = b.strip_prefix(b"/").unwrap_or(b);
        self.entries.get(b)
    }

    /// Whether `st` (recorded in this snapshot) may have changed again within the same clock
    /// tick without its ctime showing it.
    pub(super) fn racy(&self, st: &Stat) -> bool {
        ns(st.ctime) + self.window >= self.taken
    }
}

fn ns((s, n): (i64, u32)) -> i128 {
    s as i128 * 1_000_000_000 + n as i128
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Seal a walk into a snapshot: wait until the newest ctime is a racy window in the past,
/// so nothing the tool just wrote counts as changed by the next step.
pub(super) fn seal(entries: HashMap<Vec<u8>, Stat>) -> Snapshot {
    let coarse = entries.len() >= 8 && entries.values().all(|s| s.ctime.1 == 0);
    let window = if coarse {
        COARSE_WINDOW_NS
    } else {
        RACY_WINDOW_NS
    };
    let newest = entries.values().map(|s| ns(s.ctime)).max().unwrap_or(0);
    loop {
        let now = now_ns();
        let wait = newest + window - now;
        if wait < 0 {
            return Snapshot {
                entries,
                taken: now,
                window,
            };
        }
        std::thread::sleep(std::time::Duration::from_nanos(wait as u64 + 1_000_000));
    }
}

/// Paths (relative) that a diff neither walks nor reports.
pub(super) struct Skip(Vec<Vec<u8>>);

impl Skip {
    pub(super) fn new(paths: &[&str]) -> Self {
        Self(
            paths
                .iter()
                .map(|p| p.trim_matches('/').as_bytes().to_vec())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// `rel` is a skipped path or below one.
    pub(super) fn covers(&self, rel: &[u8]) -> bool {
        self.0
            .iter()
            .any(|s| rel.starts_with(s) && (rel.len() == s.len() || rel[s.len()] == b'/'))
    }

    /// `rel` is a directory above a skipped path.
    pub(super) fn above(&self, rel: &[u8]) -> bool {
        self.0.iter().any(|s| {
            rel.is_empty() || (s.starts_with(rel) && s.len() > rel.len() && s[rel.len()] == b'/')
        })
    }
}

/// The stat snapshot of the tree at `root`. Directories on another filesystem (mount points)
/// are recorded but not entered.
pub fn snapshot(root: &Path) -> Result<Snapshot, SnapshotError> {
    Ok(seal(walk(root, &Skip(Vec::new()))?))
}

/// Every path below `root` (and `""` for the root) with its stat.
pub(super) fn walk(root: &Path, skip: &Skip) -> Result<HashMap<Vec<u8>, Stat>, SnapshotError> {
    let fail = |op, err| io_err(OpErr { op, err }, root.to_path_buf());
    let mut dir = Dir::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open directory", e.into()))?;
    let st = fsops::statx_at(dir.as_fd(), c".").map_err(|e| fail("lstat", e))?;
    let mut out = HashMap::new();
    out.insert(Vec::new(), st);
    let mut rel = Vec::new();
    walk_dir(root, &mut dir, st.dev, &mut rel, skip, &mut out)?;
    Ok(out)
}

fn walk_dir(
    root: &Path,
    dir: &mut Dir,
    dev: u64,
    rel: &mut Vec<u8>,
    skip: &Skip,
    out: &mut HashMap<Vec<u8>, Stat>,
) -> Result<(), SnapshotError> {
    let at = |rel: &[u8]| root.join(fsops::os(rel));
    let names = fsops::names(dir)
        .op("read directory")
        .map_err(|e| io_err(e, at(rel)))?;
    for name in names {
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        if !skip.covers(rel) {
            let st = fsops::statx_at(dir.as_fd(), &name)
                .op("lstat")
                .map_err(|e| io_err(e, at(rel)))?;
            out.insert(rel.clone(), st);
            if st.is_dir() && st.dev == dev {
                let mut sub = fsops::open_dir_at(dir.as_fd(), &name)
                    .op("open directory")
                    .map_err(|e| io_err(e, at(rel)))?;
                walk_dir(root, &mut sub, dev, rel, skip, out)?;
            }
        }
        rel.truncate(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
