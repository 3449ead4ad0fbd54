//! Layer trees onto a plain directory: what overlayfs shows as its merged view, made of copies.
//!
//! Each tree is applied on top of the last, as overlay stacks its lowerdirs: a 0/0 character
//! device deletes the path below it, an opaque directory (`*.overlay.opaque=y`) hides what was
//! there before, a directory over a directory merges and takes the upper one's attributes,
//! anything else replaces what was there. Files are copied (reflinked where the filesystem can),
//! never hardlinked from the layer cache, since the step then writes into the copy. Hardlinks
//! inside a tree are not kept either: overlay (with `index=off`, as boxkit mounts it) breaks them
//! on copy-up, so a later step that writes one of the names changes only that name there too.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::sys::stat::Mode;

use super::fsops::{self, Ctx, OpErr, R};
use super::{SnapshotError, io_err};
use crate::layer::whiteout;

/// Where an error happened, for its message.
struct At<'a> {
    tree: &'a Path,
    dest: &'a Path,
}

impl At<'_> {
    fn src(&self, rel: &[u8]) -> impl FnOnce(OpErr) -> SnapshotError + '_ {
        let p = self.tree.join(fsops::os(rel));
        move |e| io_err(e, p)
    }
    fn dst(&self, rel: &[u8]) -> impl FnOnce(OpErr) -> SnapshotError + '_ {
        let p = self.dest.join(fsops::os(rel));
        move |e| io_err(e, p)
    }
}

/// Apply the overlay-form layer `tree` on top of the directory `dest`.
pub fn apply_layer(tree: &Path, dest: &Path) -> Result<(), SnapshotError> {
    let at = At { tree, dest };
    let open = |p: &Path| -> R<Dir> {
        Dir::open(
            p,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .op("open directory")
    };
    let mut src = open(tree).map_err(at.src(b""))?;
    let dst = open(dest).map_err(at.dst(b""))?;
    let st = fsops::statx_at(src.as_fd(), c".")
        .op("lstat")
        .map_err(at.src(b""))?;
    if fsops::is_opaque(src.as_fd())
        .op("read xattrs of")
        .map_err(at.src(b""))?
    {
        let mut d = fsops::open_dir_at(dst.as_fd(), c".")
            .op("open directory")
            .map_err(at.dst(b""))?;
        fsops::empty_dir(&mut d).map_err(at.dst(b""))?;
    }
    let mut rel = Vec::new();
    merge_dir(&at, &mut src, dst.as_fd(), &mut rel)?;
    fsops::copy_dir_meta(src.as_fd(), dst.as_fd(), &st, true).map_err(at.dst(b""))?;
    Ok(())
}

/// Materialize the merged view of `lowers` (bottom first, overlay-form trees) into `dest`, a
/// directory that is created when missing and should be empty.
pub fn materialize(lowers: &[impl AsRef<Path>], dest: &Path) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(dest).map_err(|e| {
        io_err(
            OpErr {
                op: "create directory",
                err: e,
            },
            dest.to_path_buf(),
        )
    })?;
    for l in lowers {
        apply_layer(l.as_ref(), dest)?;
    }
    Ok(())
}

fn push(rel: &mut Vec<u8>, name: &CStr) -> usize {
    let len = rel.len();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name.to_bytes());
    len
}

fn merge_dir(
    at: &At,
    src: &mut Dir,
    dst: BorrowedFd<'_>,
    rel: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    let names = fsops::names(src)
        .op("read directory")
        .map_err(at.src(rel))?;
    for name in names {
        let len = push(rel, &name);
        merge_one(at, src.as_fd(), dst, &name, rel)?;
        rel.truncate(len);
    }
    Ok(())
}

fn merge_one(
    at: &At,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    rel: &mut Vec<u8>,
) -> Result<(), SnapshotError> {
    let st = fsops::statx_at(src, name)
        .op("lstat")
        .map_err(at.src(rel))?;
    let here = match fsops::statx_at(dst, name) {
        Ok(s) => Some(s),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(err) => return Err(at.dst(rel)(OpErr { op: "lstat", err })),
    };
    // Either form: a 0/0 device, or (a store on overlayfs) an empty file with the xattr.
    if st.is_whiteout() || (st.is_file() && st.size == 0 && whiteout::has_whiteout_xattr(src, name))
    {
        if here.is_some() {
            fsops::remove_at(dst, name).map_err(at.dst(rel))?;
        }
        return Ok(());
    }
    if !st.is_dir() {
        if here.is_some() {
            fsops::remove_at(dst, name).map_err(at.dst(rel))?;
        }
        return fsops::copy_entry(src, name, &st, dst, name).map_err(at.dst(rel));
    }
    let mut sdir = fsops::open_dir_at(src, name)
        .op("open directory")
        .map_err(at.src(rel))?;
    let opaque = fsops::is_opaque(sdir.as_fd())
        .op("read xattrs of")
        .map_err(at.src(rel))?;
    match here {
        Some(h) if !h.is_dir() => fsops::remove_at(dst, name).map_err(at.dst(rel))?,
        Some(_) if opaque => {
            let mut d = fsops::open_dir_at(dst, name)
                .op("open directory")
                .map_err(at.dst(rel))?;
            fsops::empty_dir(&mut d).map_err(at.dst(rel))?;
        }
        _ => {}
    }
    if !here.is_some_and(|h| h.is_dir()) {
        nix::sys::stat::mkdirat(dst, name, Mode::from_bits_truncate(0o700))
            .op("create directory")
            .map_err(at.dst(rel))?;
    }
    let ddir = fsops::open_dir_at(dst, name)
        .op("open directory")
        .map_err(at.dst(rel))?;
    merge_dir(at, &mut sdir, ddir.as_fd(), rel)?;
    fsops::copy_dir_meta(sdir.as_fd(), ddir.as_fd(), &st, true).map_err(at.dst(rel))
}
