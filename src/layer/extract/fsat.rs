//! File operations relative to an open directory, never following a final symlink: the only
//! way extraction touches the filesystem below the directory it resolved. Every call is nix's
//! safe wrapper; errors come back as `io::Error` so callers can match on errno.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

/// Where to apply metadata: an open fd, or a name in a directory (not followed).
pub(super) enum Obj<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr, bool /* is a symlink */),
}

pub(super) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// `name` in `dir` as it is (a symlink is not followed), or None when it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Open `name` in `dir` (close-on-exec, and failing on a symlink rather than following it).
pub(super) fn open_at(
    dir: BorrowedFd,
    name: &CStr,
    flags: OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(mode),
    )?)
}

/// Open the directory `name` in `dir` for reading.
pub(super) fn open_dir_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)
}

pub(super) fn mkdir_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(mkdirat(dir, name, Mode::from_bits_truncate(mode))?)
}

/// Create the symlink `name` in `dir`, pointing at `target` (stored as is, never resolved).
pub(super) fn symlink_at(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    Ok(symlinkat(target, dir, name)?)
}

/// Hardlink `name` in `dir` to `target` in `tdir`; a symlink `target` is linked, not followed.
pub(super) fn link_at(
    tdir: BorrowedFd,
    target: &CStr,
    dir: BorrowedFd,
    name: &CStr,
) -> io::Result<()> {
    Ok(linkat(tdir, target, dir, name, AtFlags::empty())?)
}

/// Create the fifo `name` in `dir` with permission bits `perm`.
pub(super) fn mkfifo_at(dir: BorrowedFd, name: &CStr, perm: u32) -> io::Result<()> {
    Ok(mknodat(
        dir,
        name,
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(perm),
        0,
    )?)
}

/// Remove `name` in `dir`, recursively when it is a directory, never following symlinks.
pub(super) fn remove_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_dir_at(dir, name)?;
        for child in list_dir(sub.as_fd())? {
            remove_at(sub.as_fd(), &child)?;
        }
        Ok(unlinkat(dir, name, UnlinkatFlags::RemoveDir)?)
    } else {
        Ok(unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?)
    }
}

/// The names in `dir`, without `.` and `..`.
pub(super) fn list_dir(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    let dup = dir.try_clone_to_owned()?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Owner of `obj` (a symlink itself, not its target).
pub(super) fn chown(obj: &Obj, uid: u32, gid: u32) -> io::Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    Ok(match obj {
        Obj::Fd(fd) => fchown(fd, uid, gid),
        Obj::At(dir, n, _) => fchownat(dir, *n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW),
    }?)
}

/// Mode of `obj`; a symlink has none of its own (Linux ignores it), so it is left alone.
pub(super) fn chmod(obj: &Obj, mode: u32) -> io::Result<()> {
    let mode = Mode::from_bits_truncate(mode);
    Ok(match obj {
        Obj::Fd(fd) => fchmod(fd, mode),
        Obj::At(_, _, true) => Ok(()),
        Obj::At(dir, n, false) => fchmodat(dir, *n, mode, FchmodatFlags::FollowSymlink),
    }?)
}

/// Access and modification time of `obj` (a symlink itself), both `mtime`, whole seconds.
pub(super) fn set_times(obj: &Obj, mtime: i64) -> io::Result<()> {
    let ts = TimeSpec::new(mtime as libc::time_t, 0);
    Ok(match obj {
        Obj::Fd(fd) => futimens(fd, &ts, &ts),
        Obj::At(dir, name, _) => utimensat(dir, *name, &ts, &ts, UtimensatFlags::NoFollowSymlink),
    }?)
}
