//! Views of a stack of unpacked layers, and turning a directory into a stored layer.
//!
//! - [`Lowers`] answers "what is at this path in the merged tree?" without mounting anything,
//!   by looking through the layer trees top-down and honouring overlay whiteouts and opaque
//!   directories: COPY uses it for existing destination directories and `--chown` names.
//! - [`MergedMount`] mounts the stack read-only with overlayfs (in the tool's private mount
//!   namespace) when a whole tree must be read: `COPY --from`, `RUN --mount=…,from=`.
//! - [`commit_dir`] packs a layer directory (a RUN's overlay upper dir, or a COPY's output)
//!   into a blob and then moves the directory itself into the unpacked-layer cache, so the
//!   next step uses it as a lowerdir without extracting the blob again.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layer::{self, PackOptions, whiteout};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Pack(#[from] layer::PackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] layer::CacheError),
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError + use<> {
    let path = path.to_path_buf();
    move |source| FsError::Io { op, path, source }
}

/// A stack of unpacked layer trees, bottom first (overlay lowerdir order reversed).
#[derive(Debug, Clone, Default)]
pub struct Lowers {
    pub dirs: Vec<PathBuf>,
}

impl Lowers {
    pub fn new(dirs: Vec<PathBuf>) -> Lowers {
        Lowers { dirs }
    }

    /// Where the merged tree's entry for `rel` (relative, `/`-separated, no `..`) lives, or
    /// None when it does not exist (absent, or deleted by a whiteout).
    pub fn find(&self, rel: &str) -> Option<PathBuf> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            return self.dirs.last().cloned();
        }
        for d in self.dirs.iter().rev() {
            let mut p = d.clone();
            let mut stop_below = false;
            for (i, part) in parts.iter().enumerate() {
                p.push(part);
                let Ok(m) = fs::symlink_metadata(&p) else {
                    break;
                };
                if whiteout::is_whiteout_at(&p, &m) {
                    return None;
                }
                if i + 1 == parts.len() {
                    return Some(p);
                }
                if !m.is_dir() {
                    // A non-directory hides everything below it in lower layers.
                    return None;
                }
                if whiteout::is_overlay_opaque(&p).unwrap_or(false) {
                    stop_below = true;
                }
            }
            if stop_below {
                return None;
            }
        }
        None
    }

    pub fn metadata(&self, rel: &str) -> Option<fs::Metadata> {
        self.find(rel).and_then(|p| fs::symlink_metadata(p).ok())
    }

    /// The content of the image's regular file `rel` (at most 1 MiB), following symlinks
    /// the way the container would see them: inside the image, never on the host. A FIFO,
    /// device or oversized file reads as absent rather than hanging or exhausting memory.
    pub fn read_to_string(&self, rel: &str) -> Option<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut rel = crate::boxfile::ignore::clean(&format!("/{rel}"));
        for _ in 0..40 {
            let p = self.find(rel.trim_start_matches('/'))?;
            let m = fs::symlink_metadata(&p).ok()?;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).ok()?;
                let t = t.to_string_lossy();
                let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
                rel = crate::boxfile::ignore::clean(&if t.starts_with('/') {
                    t.into_owned()
                } else {
                    format!("{parent}/{t}")
                });
                continue;
            }
            if !m.is_file() || m.len() > 1 << 20 {
                return None;
            }
            let mut f = fs::File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&p)
                .ok()?;
            let mut s = String::new();
            f.by_ref().take(1 << 20).read_to_string(&mut s).ok()?;
            return Some(s);
        }
        None
    }
}

/// A read-only overlay mount of a layer stack; unmounted when dropped.
pub struct MergedMount {
    path: PathBuf,
    mounted: bool,
    _dir: Option<tempfile::TempDir>,
}

impl MergedMount {
    /// Mount `lowers` (bottom first) under a new directory in `tmp`. One layer is used as is,
    /// none gives an empty directory. `in_userns`: the process is in the tool's user namespace,
    /// where overlay reads the `user.` opaque xattrs (`userxattr`).
    pub fn new(lowers: &[PathBuf], tmp: &Path, in_userns: bool) -> Result<MergedMount, FsError> {
        let dir = tempfile::Builder::new()
            .prefix("merged-")
            .tempdir_in(tmp)
            .map_err(io_err("create temporary directory in", tmp))?;
        match lowers {
            [] => Ok(MergedMount {
                path: dir.path().to_path_buf(),
                mounted: false,
                _dir: Some(dir),
            }),
            [one] => Ok(MergedMount {
                path: one.clone(),
                mounted: false,
                _dir: None,
            }),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .rev()
                    .map(|p| p.to_string_lossy().replace(':', "\\:"))
                    .collect();
                let mut data = format!("lowerdir={}", list.join(":"));
                if in_userns {
                    data.push_str(",userxattr");
                }
                if let Err(e) = nix::mount::mount(
                    Some("overlay"),
                    dir.path(),
                    Some("overlay"),
                    nix::mount::MsFlags::MS_RDONLY,
                    Some(data.as_str()),
                ) {
                    // No mounts here (chroot isolation in a job container): a plain copy.
                    let tree = dir.path().join("tree");
                    if crate::layer::snapshot::materialize(many, &tree).is_err() {
                        return Err(FsError::Io {
                            op: "mount overlay (read-only) on",
                            path: dir.path().to_path_buf(),
                            source: e.into(),
                        });
                    }
                    return Ok(MergedMount {
                        path: tree,
                        mounted: false,
                        _dir: Some(dir),
                    });
                }
                Ok(MergedMount {
                    path: dir.path().to_path_buf(),
                    mounted: true,
                    _dir: Some(dir),
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MergedMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A layer as a manifest and a config name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRef {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// Pack `dir` into a blob, then move `dir` into the unpacked-layer cache under its diff_id
/// (or delete it when that layer is already there). `dir` must be on the store's filesystem
/// for the move; otherwise it is deleted and the layer is extracted from the blob when needed.
pub fn commit_dir(store: &Store, dir: &Path, sde: Option<i64>) -> Result<LayerRef, FsError> {
    commit_dir_timed(store, dir, sde).map(|(l, _)| l)
}

/// How long [`commit_dir_timed`] spent packing (tar, compression, hashing) and committing
/// (the blob, the unpacked-layer cache).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitTimes {
    pub pack: std::time::Duration,
    pub commit: std::time::Duration,
}

/// [`commit_dir`], also saying where the time went (for `--progress=plain`'s step lines).
pub fn commit_dir_timed(
    store: &Store,
    dir: &Path,
    sde: Option<i64>,
) -> Result<(LayerRef, CommitTimes), FsError> {
    let start = std::time::Instant::now();
    let mut w = store.blob_writer()?;
    // Stored as a plain tar: compressing is left to push and save (crate::store::compress),
    // off the path from one step to the next. The diff_id, and so the image ID, is the same.
    let opts = PackOptions {
        source_date_epoch: sde,
        compression: layer::Compression::None,
        ..Default::default()
    };
    // A plain tar is its own blob: the blob writer's hash names it and is its diff_id, so the
    // stream is hashed once, as it is written.
    layer::write_tar(dir, &mut w, &opts)?;
    let pack = start.elapsed();
    let (digest, size) = w.commit(None)?;
    let layers = store.layers_dir();
    if layer::cached_layer(&layers, &digest).is_some() {
        set_aside(&layers, &digest, dir);
    } else {
        // The layer cache's own two steps, as for an extracted layer: staged under a unique
        // name beside its final place, then published (marker, rename).
        let tmp = layer::cache::stage(&layers, &digest)?;
        match fs::rename(dir, tmp.path().join(layer::cache::TREE)) {
            // Not synced: the marker is valid for this boot, and the blob (synced by its
            // writer) unpacks the layer again after a restart (layer::cache).
            Ok(()) => {
                layer::cache::publish(&layers, &digest, tmp)?;
            }
            // The blob is stored; the first use unpacks it instead.
            Err(_) => remove_tree(dir),
        }
    }
    let layer = LayerRef {
        media_type: crate::image::media::OCI_LAYER_TAR.to_string(),
        diff_id: digest.clone(),
        digest,
        size,
    };
    let commit = start.elapsed() - pack;
    Ok((layer, CommitTimes { pack, commit }))
}

/// A step made a layer the cache already holds (a `--no-cache` rebuild of unchanged inputs):
/// its new tree is renamed aside under `<layers>/<hex>.unused-<n>`, a name no lookup uses,
/// which `box prune` removes. Deleting thousands of files here would cost seconds on the
/// build's critical path, and on ext4 every create soon after pays for recently freed inodes
/// (buildah keeps such copies too). Off the store's filesystem it is deleted.
fn set_aside(layers: &Path, diff_id: &crate::digest::Digest, dir: &Path) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let aside = layers.join(format!(
        "{}.unused-{stamp}-{}",
        diff_id.hex(),
        std::process::id()
    ));
    if fs::rename(dir, &aside).is_err() {
        remove_tree(dir);
    }
}

/// Remove a tree we own, making unreadable directories (an overlay work dir) removable first;
/// the store's removal, for callers with nothing to do if it fails.
pub fn remove_tree(p: &Path) {
    let _ = crate::store::gc::remove_tree(p);
}

/// A C string for a path (paths never hold NUL bytes).
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_image_symlinks_inside_the_image_never_on_the_host() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("l");
        fs::create_dir_all(l.join("etc")).unwrap();
        fs::write(l.join("real"), "app:x:7:7::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/real", l.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../real", l.join("etc/rel")).unwrap();
        // A host file the image names: it must read as absent, not as the host's.
        let host = t.path().join("host-secret");
        fs::write(&host, "secret").unwrap();
        std::os::unix::fs::symlink(&host, l.join("etc/group")).unwrap();
        nix::unistd::mkfifo(
            &l.join("etc/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let lowers = Lowers::new(vec![l]);
        assert_eq!(
            lowers.read_to_string("etc/passwd").unwrap(),
            "app:x:7:7::/:/bin/sh\n"
        );
        assert_eq!(
            lowers.read_to_string("etc/rel").unwrap(),
            "app:x:7:7::/:/bin/sh\n"
        );
        assert_eq!(lowers.read_to_string("etc/group"), None);
        assert_eq!(lowers.read_to_string("etc/fifo"), None);
    }

    #[test]
    fn lookups_honour_whiteouts_and_opaque_dirs_without_a_kernel_overlay() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(a.join("etc")).unwrap();
        fs::create_dir_all(a.join("data/sub")).unwrap();
        fs::write(a.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(a.join("data/sub/x"), "x").unwrap();
        fs::create_dir_all(b.join("data")).unwrap();
        fs::write(b.join("data/new"), "n").unwrap();
        let l = Lowers::new(vec![a.clone(), b.clone()]);
        assert!(l.read_to_string("etc/passwd").unwrap().starts_with("root"));
        assert!(l.find("data/sub/x").is_some());
        assert_eq!(l.find("data/new").unwrap(), b.join("data/new"));
        assert!(l.find("nope").is_none());
        // An opaque marker on b/data hides a/data/*.
        if crate::layer::whiteout::set_overlay_opaque(
            std::os::fd::AsFd::as_fd(&fs::File::open(b.join("data")).unwrap()),
            crate::layer::OverlayXattr::User,
        )
        .is_ok()
        {
            assert!(l.find("data/sub/x").is_none());
            assert!(l.find("data/new").is_some());
        }
    }
}
