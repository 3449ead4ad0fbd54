//! Filling a new volume from the image, as docker does: when a container mounts an empty named
//! (or anonymous) volume over a directory the image has, the directory's contents — and its
//! own owner and mode — are copied into the volume first (`nocopy` turns this off).
//!
//! The image's merged view comes from a read-only use of an overlay of its unpacked layers
//! (a detached mount, never attached anywhere), so whiteouts and opaque directories mean what
//! they mean in the container. The copy keeps owners (the tool process is root of its user
//! namespace), modes, times and symlinks; fifos become fifos; sockets and devices are skipped.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::{ContainerError, Result};

/// Copy the image's directory at each container `target` into its empty volume `data`.
pub fn fill(
    lowerdirs: &[PathBuf],
    volumes: &[(String, PathBuf)],
    scratch_parent: &Path,
) -> Result<()> {
    if volumes.is_empty() {
        return Ok(());
    }
    let fail = |what: String, cause: String| ContainerError::Volume { what, cause };
    let scratch = tempfile::Builder::new()
        .prefix("volume-fill-")
        .tempdir_in(scratch_parent)
        .map_err(|e| fail(scratch_parent.display().to_string(), e.to_string()))?;
    let view = crate::run::rootfs::image_view(lowerdirs, scratch.path())
        .map_err(|e| fail("the image's files".into(), e.to_string()))?;
    let root = PathBuf::from(format!("/proc/self/fd/{}", view.as_raw_fd()));
    for (target, data) in volumes {
        let src = crate::run::rootfs::secure_join(&root, Path::new(target));
        let Ok(m) = fs::metadata(&src) else { continue };
        if !m.is_dir() {
            continue;
        }
        copy_dir(&src, data, &m).map_err(|e| fail(format!("volume for {target}"), e))?;
    }
    Ok(())
}

fn times(m: &fs::Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(m.atime(), m.atime_nsec()),
        TimeSpec::new(m.mtime(), m.mtime_nsec()),
    )
}

/// Owner, mode (not for symlinks) and times of `m` onto `p`. A user without a subordinate
/// range cannot give files other owners; they stay the user's, as unpacked layers do.
fn set_meta(p: &Path, m: &fs::Metadata) -> std::result::Result<(), String> {
    let _ = nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        p,
        Some(m.uid().into()),
        Some(m.gid().into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    if !m.file_type().is_symlink() {
        fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| format!("chmod {}: {e}", p.display()))?;
    }
    let (a, t) = times(m);
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &a,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| format!("set times of {}: {e}", p.display()))
}

/// Copy the contents of `src` into the existing directory `dst`, then give `dst` the metadata
/// of `src`.
fn copy_dir(src: &Path, dst: &Path, meta: &fs::Metadata) -> std::result::Result<(), String> {
    let entries = fs::read_dir(src).map_err(|e| format!("read {}: {e}", src.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("read {}: {e}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m = fs::symlink_metadata(&from).map_err(|e| format!("stat {}: {e}", from.display()))?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(|e| format!("create {}: {e}", to.display()))?;
            copy_dir(&from, &to, &m)?;
            continue;
        } else if ft.is_symlink() {
            let t =
                fs::read_link(&from).map_err(|e| format!("readlink {}: {e}", from.display()))?;
            std::os::unix::fs::symlink(t, &to)
                .map_err(|e| format!("create {}: {e}", to.display()))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(|e| format!("copy to {}: {e}", to.display()))?;
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            nix::unistd::mkfifo(&to, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| format!("mkfifo {}: {e}", to.display()))?;
        } else {
            continue;
        }
        set_meta(&to, &m)?;
    }
    set_meta(dst, meta)
}
