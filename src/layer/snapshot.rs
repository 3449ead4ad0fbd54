//! Placeholder until the copy snapshotter lands (branch `snapshot`): every call fails.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the copy snapshotter is not available in this build")]
    Unavailable,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot;

pub fn materialize(_lowers: &[PathBuf], _dest: &Path) -> Result<(), SnapshotError> {
    Err(SnapshotError::Unavailable)
}
pub fn apply_layer(_tree: &Path, _dest: &Path) -> Result<(), SnapshotError> {
    Err(SnapshotError::Unavailable)
}
pub fn snapshot(_root: &Path) -> Result<Snapshot, SnapshotError> {
    Err(SnapshotError::Unavailable)
}
pub fn diff(
    _root: &Path,
    _before: &Snapshot,
    _upper: &Path,
    _skip: &[&str],
) -> Result<Snapshot, SnapshotError> {
    Err(SnapshotError::Unavailable)
}
