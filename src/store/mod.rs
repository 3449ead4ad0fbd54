//! The embedded store: an OCI image layout plus boxkit's own working directories.
//!
//! ```text
//! oci-layout, index.json     tags = manifests annotated org.opencontainers.image.ref.name
//! blobs/sha256/<hex>         manifests, configs, compressed layers; immutable, verified
//! layers/<diff_id hex>/      unpacked layer trees (overlay lowerdirs), complete-marker last;
//!                            also the containers' mount points layer (mountpoints.rs)
//! cache/                     build cache
//! containers/<id>/           container state (a foreground --rm container's: containers/run ->
//!                            a tmpfs directory, see rundir.rs)
//! volumes/<name>/_data        named volumes (volume.json beside: labels, creation time)
//! tmp/                       staging; stale entries removed when the store is opened alone
//! lock                       flock: shared by every user of the store, exclusive for GC
//! index.lock                 flock: serialises read-modify-write of index.json
//! ```
//! Every write goes to `tmp/`, is hashed while streaming, fsynced and renamed into place, so a
//! blob whose bytes do not hash to its name never enters `blobs/`, and a crash leaves at most
//! a stale temporary file. Because the root is an OCI layout, `skopeo inspect oci:ROOT:REF`
//! and `umoci unpack --image ROOT:REF` read it directly.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub mod archive;
pub mod blobs;
pub mod compress;
pub mod docker_archive;
pub mod gc;
pub mod image;
pub mod index;
pub mod layers;
pub mod lists;
pub mod mountpoints;
pub mod rundir;
pub mod volumes;

pub use blobs::{BlobWriter, StagedBlob};
pub use image::{Image, ImageRecord};
pub use index::{REF_NAME, Tag, TagTarget};
pub use volumes::Volume;

use crate::digest::{Digest, DigestError};
use crate::image::ReferenceError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "blob {expected} failed verification: its content hashes to {actual} ({size} bytes); it was not stored"
    )]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {digest} has {actual} bytes but {expected} were expected; it was not stored")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    #[error(
        "blob {digest} in the store is corrupt (content hashes to {actual}); run `box prune` and pull again"
    )]
    Corrupt { digest: Digest, actual: Digest },
    #[error("{what} {path}: invalid JSON: {source}")]
    Json {
        what: &'static str,
        path: String,
        source: serde_json::Error,
    },
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("image reference {0:?} is ambiguous: it matches {1} images; give more of the ID")]
    Ambiguous(String, usize),
    #[error(
        "image {name} has no entry for platform {wanted} in its index; {}",
        if .available.is_empty() { "it lists no platforms (an empty manifest list?)".to_string() }
        else { format!("it has: {}; pick one with --platform", .available.join(", ")) }
    )]
    PlatformMissing {
        name: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error(
        "image {}: platform {} is listed in its index ({}) but was not pulled; pull it with \
         `box pull --platform {} {}`", .0.name, .0.wanted, .0.index, .0.wanted, .0.name
    )]
    PlatformNotStored(Box<NotStored>),
    #[error(
        "image {name} is for platform {actual}, not the requested {wanted}; pull that platform \
         with `box pull --platform {wanted} {name}`"
    )]
    PlatformMismatch {
        name: String,
        wanted: String,
        actual: String,
    },
    #[error("image index {digest}: {why}")]
    BadIndex { digest: Digest, why: String },
    #[error("{path} is not an OCI image layout: {why}")]
    NotLayout { path: PathBuf, why: String },
    #[error("unsupported media type {media_type} for {digest}")]
    MediaType { media_type: String, digest: Digest },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("archive {what}: {why}")]
    Archive { what: String, why: String },
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error(
        "invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    VolumeName(String),
    #[error(transparent)]
    Unpack(#[from] crate::layer::CacheError),
}

/// An index entry whose manifest is not in the store: what [`StoreError::PlatformNotStored`]
/// carries, so that the caller can pull exactly that manifest.
#[derive(Debug)]
pub struct NotStored {
    pub name: String,
    pub wanted: String,
    pub index: Digest,
    pub manifest: Digest,
}

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// How a process uses the store: everyone shares it; GC needs it alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Shared,
    Exclusive,
}

/// An open store. Holding it keeps a shared (or, for GC, exclusive) flock on `ROOT/lock`, so
/// prune never deletes a blob that a concurrent pull or build has written but not yet tagged.
pub struct Store {
    root: PathBuf,
    _lock: File,
}

impl Store {
    /// The default root: `$BOX_ROOT`, else `/var/lib/boxkit` for root, else
    /// `${XDG_DATA_HOME:-~/.local/share}/boxkit`.
    ///
    /// Inside boxkit's own user namespace every process looks like root, so the decision uses
    /// the host uid recorded before entering it (`BOX_HOST_UID`) when present.
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("BOX_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(r);
        }
        let host_uid = std::env::var("BOX_HOST_UID")
            .ok()
            .and_then(|u| u.parse::<u32>().ok())
            .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        if host_uid == 0 {
            return PathBuf::from("/var/lib/boxkit");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        data.join("boxkit")
    }

    /// Open (creating if needed) the store at `root` for shared use.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(root, Access::Shared)
    }

    pub fn open_with(root: impl AsRef<Path>, access: Access) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        secure_root(&root)?;
        for d in DIRS {
            let dir = root.join(d);
            if make_dir(&dir, 0o700)? && SPREAD.contains(&d) {
                spread_subtrees(&dir);
            }
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            crate::store::blobs::write_atomic(&root, &layout, OCI_LAYOUT.as_bytes())?;
        }
        let idx = root.join("index.json");
        if !idx.exists() {
            // Another process may race us here; write_atomic makes either version whole.
            crate::store::blobs::write_atomic(&root, &idx, index::EMPTY_INDEX.as_bytes())?;
        }
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        // Alone with the store? Then whatever sits in tmp/ belongs to a process that died
        // (e.g. killed with -9 mid-write) and can go.
        if lock.try_lock().is_ok() {
            clean_tmp(&root)?;
            if access == Access::Shared {
                lock.lock_shared().map_err(io_err("lock", &lock_path))?;
            }
        } else if access == Access::Shared {
            lock.lock_shared().map_err(io_err("lock", &lock_path))?;
        } else {
            lock.lock().map_err(io_err("lock", &lock_path))?;
            clean_tmp(&root)?;
        }
        Ok(Store { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }
}

/// The directories of a store, made (mode 0700) by every open that does not find them.
const DIRS: [&str; 6] = [
    "blobs/sha256",
    "layers",
    "cache",
    "containers",
    "tmp",
    "volumes",
];

/// The directories where new trees (layers, build steps' files) are made.
const SPREAD: [&str; 2] = ["layers", "tmp"];

/// `FS_TOPDIR_FL` (`chattr +T`): the subdirectories of this one hold unrelated trees.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Mark `dir` as the top of unrelated trees, so that ext2/3/4 spread its subdirectories over
/// the filesystem's emptier block groups (the Orlov allocator) instead of putting each beside
/// its parent. On ext4 without a journal a new inode skips every inode of its group freed in
/// the last 30–180 s, one lookup each: a layer of 50,000 files unpacked near a tree another
/// tool just deleted took 12–17 s instead of 2 (bench/README.md, session 25). Best effort:
/// other filesystems refuse or ignore the flag, and nothing depends on it.
fn spread_subtrees(dir: &Path) {
    let Ok(f) = File::open(dir) else { return };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through the pointer, which
    // lives for both calls; fd is open.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) == 0 && flags & FS_TOPDIR_FL == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

/// Make directory `p` with mode 0700, and its missing parents with mode `parents` (before the
/// umask); true when `p` was made here, false when it was there. One `mkdir(2)` when it is
/// there already (every open of an existing store), where `DirBuilder::recursive` also stats
/// it: a file in its place fails the first use of it instead (ENOTDIR).
fn make_dir(p: &Path, parents: u32) -> Result<bool> {
    let mkdir = || match fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    };
    match mkdir() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(parents)
                    .create(parent)
                    .map_err(io_err("create directory", parent))?;
            }
            mkdir()
        }
        r => r,
    }
    .map_err(io_err("create directory", p))
}

/// Create the store's root 0700, or close an existing one to group and others: unpacked
/// layers hold files of container ids (setuid ones among them) that no other local user may
/// reach, and container state holds environment values.
fn secure_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Its parents get the mode `mkdir -p` gives them.
    if make_dir(root, 0o777)? {
        return Ok(());
    }
    let m = fs::metadata(root).map_err(io_err("stat", root))?;
    if m.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(
            root,
            fs::Permissions::from_mode(m.permissions().mode() & !0o077),
        )
        .map_err(io_err("restrict permissions of", root))?;
    }
    Ok(())
}

fn clean_tmp(root: &Path) -> Result<()> {
    let tmp = root.join("tmp");
    let entries = fs::read_dir(&tmp).map_err(io_err("read directory", &tmp))?;
    for e in entries.flatten() {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err("remove stale temporary", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_on_ext4_spreads_its_layer_and_staging_trees() {
        use std::os::fd::AsRawFd;
        // /var/tmp: a disk filesystem (ext4 on the CI machine), unlike a tmpfs /tmp.
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = t.path().join("store");
        let _s = Store::open(&root).unwrap();
        let fs = nix::sys::statfs::statfs(t.path()).unwrap();
        if fs.filesystem_type() != nix::sys::statfs::EXT4_SUPER_MAGIC {
            assert!(
                std::env::var_os("BOX_TEST_STRICT").is_none(),
                "/var/tmp is not ext4 here: the TOPDIR flag cannot be checked"
            );
            return;
        }
        let flags = |d: &str| {
            let f = File::open(root.join(d)).unwrap();
            let mut v: libc::c_int = 0;
            // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer; f is open.
            let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut v) };
            assert_eq!(r, 0);
            v
        };
        for d in SPREAD {
            assert_ne!(flags(d) & FS_TOPDIR_FL, 0, "{d} lacks FS_TOPDIR_FL");
        }
        assert_eq!(flags("containers") & FS_TOPDIR_FL, 0);
    }

    #[test]
    fn open_creates_an_oci_layout() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        assert_eq!(
            fs::read_to_string(s.root().join("oci-layout")).unwrap(),
            OCI_LAYOUT
        );
        let idx: serde_json::Value =
            serde_json::from_slice(&fs::read(s.root().join("index.json")).unwrap()).unwrap();
        assert_eq!(idx["schemaVersion"], 2);
        assert!(s.root().join("blobs/sha256").is_dir());
    }

    #[test]
    fn open_makes_missing_parents_and_directories_and_restricts_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("a/b/store");
        let s = Store::open(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        for d in DIRS {
            assert_eq!(mode(&root.join(d)), 0o700, "{d}");
        }
        drop(s);
        // A store of an older version (no volumes/) gets what it lacks; an open root is
        // closed to group and others again.
        fs::remove_dir(root.join("volumes")).unwrap();
        fs::remove_dir_all(root.join("blobs")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let _s = Store::open(&root).unwrap();
        assert!(root.join("volumes").is_dir() && root.join("blobs/sha256").is_dir());
        assert_eq!(mode(&root), 0o700);
        // A file where a directory belongs is not looked at here (that would cost a stat per
        // directory on every open): the first use of the directory fails with ENOTDIR.
        let other = t.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("layers"), b"").unwrap();
        let s = Store::open(&other).unwrap();
        let e = s.layers_dir().join("x").metadata().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
    }

    #[test]
    fn stale_tmp_is_removed_only_when_alone() {
        let t = tempfile::tempdir().unwrap();
        let first = Store::open(t.path()).unwrap();
        let stale = first.tmp_dir().join("blob-stale");
        fs::write(&stale, b"x").unwrap();
        // A second opener shares the store with `first`: it must not touch tmp/.
        let second = Store::open(t.path()).unwrap();
        assert!(stale.exists());
        drop(first);
        drop(second);
        let _third = Store::open(t.path()).unwrap();
        assert!(!stale.exists());
    }
}
