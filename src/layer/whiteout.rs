//! Whiteouts: how a layer says "this path is gone" or "hide everything below this dir".
//!
//! overlayfs (upper dirs and lowerdirs) marks a deleted path with a character device whose
//! device number is 0/0, and a directory that must not show lower content with the xattr
//! `trusted.overlay.opaque=y` (or `user.overlay.opaque=y` when mounted with `userxattr`, as in
//! a user namespace). The OCI layer format instead puts an empty file `.wh.<name>` beside the
//! deleted path and an empty file `.wh..wh..opq` inside an opaque directory. This module is the
//! only place that knows either spelling; pack and extract ask it.

use std::ffi::CStr;
use std::fs::Metadata;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::xattr;

/// Prefix of an OCI whiteout entry: `.wh.<name>` deletes `<name>` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque marker: its directory hides all lower-layer content.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of whiteout meta entries (aufs also uses `.wh..wh.plnk` etc.), which are never
/// real file names.
pub const META_PREFIX: &str = ".wh..wh.";
/// overlayfs's opaque xattr in the privileged (`trusted.`) namespace.
pub const TRUSTED_OPAQUE: &str = "trusted.overlay.opaque";
/// overlayfs's opaque xattr under the `userxattr` mount option.
pub const USER_OPAQUE: &str = "user.overlay.opaque";

/// Which xattr namespace overlayfs reads its own attributes from: `trusted.overlay.*` by
/// default, `user.overlay.*` when the mount uses `userxattr` (required in a user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum OverlayXattr {
    #[default]
    Trusted,
    User,
}

impl OverlayXattr {
    pub fn opaque_name(self) -> &'static str {
        match self {
            Self::Trusted => TRUSTED_OPAQUE,
            Self::User => USER_OPAQUE,
        }
    }
}

/// What a tar entry's final path component means.
#[derive(Debug, PartialEq, Eq)]
pub enum OciName<'a> {
    /// An ordinary file name.
    Plain,
    /// `.wh..wh..opq`: the containing directory is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` in the containing directory is deleted.
    Whiteout(&'a [u8]),
    /// Another `.wh..wh.*` meta entry (aufs hardlink bookkeeping); carries no file.
    Meta,
}

/// A whiteout that names no deletable entry, such as `.wh...` (which would delete `..`).
#[derive(Debug, thiserror::Error)]
#[error("whiteout {0:?} names no deletable entry (empty, `.` or `..`)")]
pub struct BadWhiteout(pub String);

/// Classify the last component of a tar entry name.
pub fn classify(name: &[u8]) -> Result<OciName<'_>, BadWhiteout> {
    if name == OPAQUE_MARKER.as_bytes() {
        return Ok(OciName::Opaque);
    }
    if name.starts_with(META_PREFIX.as_bytes()) {
        return Ok(OciName::Meta);
    }
    match name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(OciName::Plain),
        Some(target) if target.is_empty() || target == b"." || target == b".." => {
            Err(BadWhiteout(String::from_utf8_lossy(name).into_owned()))
        }
        Some(target) if target.contains(&b'/') || target.contains(&0) => {
            Err(BadWhiteout(String::from_utf8_lossy(name).into_owned()))
        }
        Some(target) => Ok(OciName::Whiteout(target)),
    }
}

/// The OCI whiteout entry name for deleting `name`.
pub fn whiteout_name(name: &[u8]) -> Vec<u8> {
    let mut v = WHITEOUT_PREFIX.as_bytes().to_vec();
    v.extend_from_slice(name);
    v
}

/// overlayfs's alternative deletion mark (Linux 6.7+): a zero-size regular file with this
/// xattr, honoured in a directory whose opaque xattr is `x`. Made where a 0/0 device cannot
/// be (a store on overlayfs, which refuses to create one).
pub const USER_WHITEOUT: &str = "user.overlay.whiteout";
pub const TRUSTED_WHITEOUT: &str = "trusted.overlay.whiteout";

/// Whether lstat metadata is overlayfs's deletion mark, a 0/0 character device.
pub fn is_overlay_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the entry `name` of the directory `dir` carries an overlay whiteout xattr (the
/// caller has seen a zero-size regular file there).
pub fn has_whiteout_xattr(dir: BorrowedFd<'_>, name: &CStr) -> bool {
    let p = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(std::ffi::OsStr::from_bytes(name.to_bytes()));
    [USER_WHITEOUT, TRUSTED_WHITEOUT]
        .iter()
        .any(|n| xattr::get(&p, n.as_bytes()).is_ok_and(|v| v.is_some()))
}

/// Whether `path` (lstat `meta`) is a deletion mark in either form: a 0/0 character device,
/// or a zero-size regular file with an overlay whiteout xattr.
pub fn is_whiteout_at(path: &Path, meta: &Metadata) -> bool {
    is_overlay_whiteout(meta)
        || (meta.file_type().is_file()
            && meta.len() == 0
            && [USER_WHITEOUT, TRUSTED_WHITEOUT]
                .iter()
                .any(|n| xattr::get(path, n.as_bytes()).is_ok_and(|v| v.is_some())))
}

/// Whether the directory `dir` carries an overlay opaque xattr in either namespace.
pub fn is_overlay_opaque(dir: &Path) -> io::Result<bool> {
    for name in [TRUSTED_OPAQUE, USER_OPAQUE] {
        if xattr::get(dir, name.as_bytes())?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// fuse-overlayfs's opaque xattr (in a user namespace).
pub const FUSE_OPAQUE: &str = "user.fuseoverlayfs.opaque";

/// Rewrite an upper dir left by fuse-overlayfs into the kernel's form, so that it packs the
/// same: an opaque directory carries `user.fuseoverlayfs.opaque=y` plus a `.wh..wh..opq` file
/// and a `.wh..opq` whiteout of its own; it becomes `user.overlay.opaque=y` alone. fuse-overlayfs
/// also marks every new directory opaque, where the kernel does so only over something it
/// hides: `below(rel)` says whether the lower layers have `rel` (a relative path). Deleted
/// paths are 0/0 devices in both.
pub fn normalize_fuse_upper(upper: &Path, below: &dyn Fn(&str) -> bool) -> io::Result<()> {
    normalize_fuse_dir(upper, "", below)
}

fn normalize_fuse_dir(dir: &Path, rel: &str, below: &dyn Fn(&str) -> bool) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let name = entry.file_name();
            let sub = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            normalize_fuse_dir(&entry.path(), &sub, below)?;
        }
    }
    if xattr::get(dir, FUSE_OPAQUE.as_bytes())?.as_deref() == Some(b"y") {
        for marker in [OPAQUE_MARKER, ".wh..opq"] {
            match std::fs::remove_file(dir.join(marker)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let f = std::fs::File::open(dir)?;
        if !rel.is_empty() && below(rel) {
            xattr::fset(f.as_fd(), USER_OPAQUE.as_bytes(), b"y")?;
        }
        xattr::fremove(f.as_fd(), FUSE_OPAQUE.as_bytes())?;
    }
    Ok(())
}

/// Whether an xattr is overlayfs's own bookkeeping (`trusted.overlay.*`, `user.overlay.*`, and
/// fuse-overlayfs's `*.fuseoverlayfs.*`), which describes the upper dir, not the content, and
/// must not travel in a layer.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"user.fuseoverlayfs.")
        || name.starts_with(b"trusted.fuseoverlayfs.")
}

/// Create overlayfs's deletion mark `name` in the directory `parent`. The kernel allows a 0/0
/// character device even in a user namespace, where other device nodes are refused.
/// Where the filesystem refuses that (overlayfs never creates a 0/0 device through its own
/// mknod), the xattr form is made instead, and `parent` marked as holding such marks (opaque
/// `x`) unless it is opaque already.
pub fn make_overlay_whiteout(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, SFlag, mknodat};
    match mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), 0) {
        Err(nix::Error::EPERM) => {}
        r => return Ok(r?),
    }
    let f = openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    xattr::fset(f.as_fd(), USER_WHITEOUT.as_bytes(), b"")?;
    let dir = Path::new("/proc/self/fd").join(parent.as_raw_fd().to_string());
    if xattr::get(&dir, USER_OPAQUE.as_bytes())?.as_deref() != Some(b"y") {
        xattr::fset(parent, USER_OPAQUE.as_bytes(), b"x")?;
    }
    Ok(())
}

/// Mark the directory `dir` (an fd opened for reading, not O_PATH) opaque for overlayfs.
pub fn set_overlay_opaque(dir: BorrowedFd<'_>, kind: OverlayXattr) -> io::Result<()> {
    xattr::fset(dir, kind.opaque_name().as_bytes(), b"y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"foo").unwrap(), OciName::Plain);
        assert_eq!(classify(b".wh..wh..opq").unwrap(), OciName::Opaque);
        assert_eq!(classify(b".wh.foo").unwrap(), OciName::Whiteout(b"foo"));
        assert_eq!(classify(b".wh..wh.plnk").unwrap(), OciName::Meta);
        assert_eq!(
            classify(b".wh..hidden").unwrap(),
            OciName::Whiteout(b".hidden")
        );
        assert!(classify(b".wh...").is_err());
        assert!(classify(b".wh..").is_err());
        assert!(classify(b".wh.").is_err());
        assert_eq!(whiteout_name(b"x"), b".wh.x");
    }
}
