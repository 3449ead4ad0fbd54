//! Filling a new volume from the image, as docker does: when a container mounts an empty named
//! (or anonymous) volume over a directory the image has, the directory's contents — and its
//! own owner and mode — are copied into the volume first (`nocopy` turns this off).
//!
//! The image's merged view comes from a read-only use of an overlay of its unpacked layers
//! (a detached mount, never attached anywhere), so whiteouts and opaque directories mean what
//! they mean in the container. The view is packed as a tar stream (owners, modes, times,
//! symlinks, hardlinks, xattrs) and the volume is written by the same extractor as a layer,
//! confined to the container's id range ([`crate::layer::confine`]) and resolving every path
//! inside the volume: another container sharing the volume cannot race the copy onto a host
//! path by planting symlinks in it.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{ContainerError, Result};
use crate::layer::tarwriter::{TarEntry, TarWriter};
use crate::layer::{ContentPolicy, ExtractError, ExtractMode, PackOptions, confine};
use crate::run::inroot;

/// Copy the image's directory at each container `target` into its empty volume `data`.
pub fn fill(
    lowerdirs: &[PathBuf],
    volumes: &[(String, PathBuf)],
    scratch_parent: &Path,
    policy: &ContentPolicy,
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
    let opts = crate::layer::ExtractOptions {
        root_meta: true,
        ..policy.options(ExtractMode::Plain)
    };
    for (target, data) in volumes {
        // Resolved inside the image, as the container would see the path.
        let Ok(found) = inroot::open(view.as_fd(), Path::new(target), inroot::Resolve::InRoot)
        else {
            continue;
        };
        // `/.` so that the magic link itself is followed to the directory it names.
        let src = inroot::fd_path(found.as_fd()).join(".");
        let Ok(m) = fs::metadata(&src) else { continue };
        if !m.is_dir() {
            continue;
        }
        let what = format!("volume for {target}");
        let dir = fs::File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(data)
            .map_err(|e| fail(what.clone(), format!("open {}: {e}", data.display())))?;
        confine::extract_stream(dir.as_fd(), &opts, policy.confinement, |w| {
            // The directory's own metadata first (the volume root takes it), then its tree.
            let mut root = TarWriter::new(&mut *w, None);
            root.header(&TarEntry {
                mode: m.mode() & 0o7777,
                uid: m.uid().into(),
                gid: m.gid().into(),
                mtime: m.mtime(),
                ..TarEntry::new(b"./", tar::EntryType::Directory)
            })
            .map_err(|e| ExtractError::Confined(format!("write the copy stream: {e}")))?;
            crate::layer::write_tar(&src, &mut *w, &PackOptions::default())
                .map_err(|e| ExtractError::Confined(e.to_string()))?;
            Ok::<(), ExtractError>(())
        })
        .map_err(|e| fail(what, e.to_string()))?;
    }
    Ok(())
}
