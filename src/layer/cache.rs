//! The unpacked-layer cache: `<layers>/<diff_id hex>/` holds one layer extracted in overlay
//! form, ready to be an overlay lowerdir.
//!
//! Layout: `<layers>/<hex>/diff/` is the tree and `<layers>/<hex>/complete-boot-<boot id>` (or,
//! from a writer that synced the tree, `<layers>/<hex>/complete`) the marker. A layer is
//! extracted into `<layers>/<hex>.tmp-<random>/diff`, its diff_id is checked against the
//! decompressed stream, the marker is written last, and only then is the whole dir renamed to
//! its final name. The tree is not synced: a marker names the boot it was written in, and
//! after a restart of the machine (when unsynced files may be lost) the tree no longer counts
//! and is unpacked again from its blob, which is durable (the blob writer syncs it). A process
//! that is killed loses nothing the kernel has, so within one boot the marker is enough. Where
//! the boot id cannot be read the tree is synced (one `syncfs`) and the plain marker written. The marker lives beside the tree rather than
//! in it, so it never shows up inside a container. A final dir without the marker can only be
//! left by a crash of an older writer; it is never used and is removed on the next attempt.
//! A directory cannot go through [`crate::atomic`]'s file writer, so the rename of the whole
//! tree stays here; the marker file and the directory syncs use [`crate::atomic`].

use crate::bootid::boot_id;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::Compression;
use super::confine::{self, Confinement};
use super::extract::{ExtractError, ExtractOptions};
use crate::atomic;
use crate::digest::Digest;

/// Name of the completion marker inside `<layers>/<hex>/` of a synced tree (valid in any boot).
pub const COMPLETE_MARKER: &str = "complete";
/// Prefix of the completion marker of an unsynced tree, valid in the boot it names.
const BOOT_MARKER_PREFIX: &str = "complete-boot-";

/// Whether `dir` (a `<layers>/<hex>` dir) holds a marker valid now: this boot's, or a synced
/// tree's. One `statx` in the common case.
pub fn marked_complete(dir: &Path) -> bool {
    boot_id().is_some_and(|b| dir.join(format!("{BOOT_MARKER_PREFIX}{b}")).is_file())
        || dir.join(COMPLETE_MARKER).is_file()
}
/// Name of the tree inside `<layers>/<hex>/`.
pub const TREE: &str = "diff";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("unpack layer {diff_id}: {op} {}: {source}", path.display())]
    Fs {
        diff_id: Digest,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unpack layer {diff_id}: {source}")]
    Extract {
        diff_id: Digest,
        source: ExtractError,
    },
    #[error(
        "unpack layer {expected}: the uncompressed tar hashes to {actual}; the blob does not \
         hold the layer the image config names (corrupt store or wrong blob)"
    )]
    DiffIdMismatch { expected: Digest, actual: Digest },
}

fn fs_error(
    diff_id: &Digest,
    op: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> CacheError + use<> {
    let (diff_id, path) = (diff_id.clone(), path.to_path_buf());
    move |source| CacheError::Fs {
        diff_id,
        op,
        path,
        source,
    }
}

/// The unpacked tree of layer `diff_id` (the dir to use as a lowerdir), if it is complete.
pub fn cached_layer(layers_dir: &Path, diff_id: &Digest) -> Option<PathBuf> {
    let dir = layers_dir.join(diff_id.hex());
    marked_complete(&dir).then(|| dir.join(TREE))
}

/// Extract the layer blob into the cache unless it is already there, and return its tree.
/// The diff_id is verified while extracting; on a mismatch nothing appears under the final
/// name. Warnings from the extraction (device nodes skipped, xattrs refused) go to stderr.
pub fn unpack_cached(
    layers_dir: &Path,
    diff_id: &Digest,
    blob: fs::File,
    compression: Compression,
    opts: &ExtractOptions,
    how: Confinement,
) -> Result<PathBuf, CacheError> {
    let fs_err = |op, path: &Path| fs_error(diff_id, op, path);
    if let Some(tree) = cached_layer(layers_dir, diff_id) {
        return Ok(tree);
    }
    // Dropping the TempDir on any error below removes the partial extraction.
    let tmp = stage(layers_dir, diff_id)?;
    let tree = tmp.path().join(TREE);
    fs::create_dir(&tree).map_err(fs_err("create", &tree))?;
    let dir = fs::File::open(&tree).map_err(fs_err("open", &tree))?;
    let report = confine::extract(blob, compression, dir.as_fd(), opts, how).map_err(|source| {
        CacheError::Extract {
            diff_id: diff_id.clone(),
            source,
        }
    })?;
    if &report.diff_id != diff_id {
        return Err(CacheError::DiffIdMismatch {
            expected: diff_id.clone(),
            actual: report.diff_id,
        });
    }
    for w in &report.warnings {
        eprintln!("warning: unpack layer {diff_id}: {w}");
    }
    publish(layers_dir, diff_id, tmp)
}

/// A new staging directory for layer `diff_id`, beside its final place (an incomplete copy
/// there, without the marker, is removed first); dropping it removes what was staged.
pub fn stage(layers_dir: &Path, diff_id: &Digest) -> Result<tempfile::TempDir, CacheError> {
    let fs_err = |op, path: &Path| fs_error(diff_id, op, path);
    let final_dir = layers_dir.join(diff_id.hex());
    // Only a dir without the marker is incomplete: a marked one was just published by a
    // concurrent unpack of the same layer (another thread or process) and may be in use;
    // ours then loses the rename in `publish`, which keeps theirs.
    if final_dir.exists() && !marked_complete(&final_dir) {
        match fs::remove_dir_all(&final_dir) {
            // Removed by a concurrent unpack that found it incomplete too.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(fs_err("remove incomplete", &final_dir))?,
        }
    }
    fs::create_dir_all(layers_dir).map_err(fs_err("create", layers_dir))?;
    tempfile::Builder::new()
        .prefix(&format!("{}.tmp-", diff_id.hex()))
        .tempdir_in(layers_dir)
        .map_err(fs_err("create temporary dir in", layers_dir))
}

/// Make the staged `<tmp>/diff` tree (from [`stage`]) the cached layer `diff_id`: write the
/// completion marker (this boot's; or, where the boot id is unknown, sync the tree and write
/// the plain one), then rename the whole staging dir to `<layers>/<hex>`. The layer's blob must
/// already be stored: after a restart the tree is unpacked again from it. When another process
/// published the same layer first, its copy is kept.
pub fn publish(
    layers_dir: &Path,
    diff_id: &Digest,
    tmp: tempfile::TempDir,
) -> Result<PathBuf, CacheError> {
    let fs_err = |op, path: &Path| fs_error(diff_id, op, path);
    let final_dir = layers_dir.join(diff_id.hex());
    // The marker goes in through the atomic writer too: synced, and its directory entry
    // synced, before the rename below publishes the whole directory.
    let marker = match boot_id() {
        Some(b) => tmp.path().join(format!("{BOOT_MARKER_PREFIX}{b}")),
        None => {
            let tree = tmp.path().join(TREE);
            let dir = fs::File::open(&tree).map_err(fs_err("open", &tree))?;
            nix::unistd::syncfs(&dir).map_err(|e| fs_err("sync filesystem of", &tree)(e.into()))?;
            tmp.path().join(COMPLETE_MARKER)
        }
    };
    atomic::write(&marker, b"", 0o644).map_err(fs_err("create", &marker))?;
    match fs::rename(tmp.path(), &final_dir) {
        Ok(()) => {
            let _ = tmp.keep();
        }
        // Another process finished the same layer first; its copy is as good as ours.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
            if cached_layer(layers_dir, diff_id).is_none() {
                return Err(fs_err("rename into place", &final_dir)(e));
            }
        }
        Err(e) => return Err(fs_err("rename into place", &final_dir)(e)),
    }
    atomic::sync_dir(layers_dir);
    Ok(final_dir.join(TREE))
}
