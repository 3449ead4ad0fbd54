//! The copy snapshotter's file operations, all relative to open directory descriptors.
//!
//! Every lookup is `*at` from a directory fd with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, so a
//! tree a RUN step has rewritten (a directory swapped for a symlink to a host path) is never
//! followed out of its root. Files are copied whole: `FICLONE` first (a reflink on btrfs and
//! xfs), then `copy_file_range` (in-kernel copy), then read/write. Metadata goes on in the
//! order that keeps it: data, owner (chown clears setuid and file capabilities), mode, xattrs,
//! times last (everything before changes them).

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::super::whiteout;

/// An operation that failed, before the caller names the path.
#[derive(Debug)]
pub(super) struct OpErr {
    pub op: &'static str,
    pub err: io::Error,
}

pub(super) type R<T> = Result<T, OpErr>;

/// Attach the operation's name to an error.
pub(super) trait Ctx<T> {
    fn op(self, op: &'static str) -> R<T>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn op(self, op: &'static str) -> R<T> {
        self.map_err(|err| OpErr { op, err })
    }
}

impl<T> Ctx<T> for nix::Result<T> {
    fn op(self, op: &'static str) -> R<T> {
        self.map_err(|e| OpErr {
            op,
            err: io::Error::from(e),
        })
    }
}

/// What `statx` says about one path (not following a final symlink). Times are (seconds,
/// nanoseconds); `btime` is the birth time where the filesystem records one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub btime: Option<(i64, u32)>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

impl Stat {
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
    /// overlayfs's deletion mark: a 0/0 character device.
    pub fn is_whiteout(&self) -> bool {
        self.kind() == libc::S_IFCHR && self.rdev == 0
    }
    /// The same object: same inode, birth time and type. A directory deleted and made again
    /// may get its old inode number back (ext4 and xfs reuse them), but not its birth time.
    pub fn same_object(&self, o: &Stat) -> bool {
        self.ino == o.ino && self.dev == o.dev && self.btime == o.btime && self.kind() == o.kind()
    }
    /// Nothing a step could have done to the object shows: ctime cannot be set from user
    /// space, so together with the rest it catches every write, chmod, chown, xattr and link.
    pub fn unchanged(&self, o: &Stat) -> bool {
        self.same_object(o)
            && self.ctime == o.ctime
            && self.mtime == o.mtime
            && self.size == o.size
            && self.mode == o.mode
            && (self.uid, self.gid) == (o.uid, o.gid)
            && self.nlink == o.nlink
    }
}

fn ts((s, ns): (i64, u32)) -> TimeSpec {
    TimeSpec::new(s, ns as i64)
}

/// `statx` of `name` in `dir`, not following a final symlink.
pub(super) fn statx_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both live for
    // the call; `buf` is a zeroed statx buffer the kernel fills and that we own.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            buf.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx returned 0, so it filled the buffer (and it was zeroed before anyway).
    let s = unsafe { buf.assume_init() };
    let t = |t: libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
    Ok(Stat {
        dev: libc::makedev(s.stx_dev_major, s.stx_dev_minor),
        ino: s.stx_ino,
        btime: (s.stx_mask & libc::STATX_BTIME != 0).then(|| t(s.stx_btime)),
        mode: s.stx_mode as u32,
        uid: s.stx_uid,
        gid: s.stx_gid,
        nlink: s.stx_nlink,
        size: s.stx_size,
        rdev: libc::makedev(s.stx_rdev_major, s.stx_rdev_minor),
        atime: t(s.stx_atime),
        mtime: t(s.stx_mtime),
        ctime: t(s.stx_ctime),
    })
}

/// Open the directory `name` in `dir` for reading, refusing a symlink.
pub(super) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Dir> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::from_fd(fd)?)
}

/// The names in a directory freshly opened by [`open_dir_at`] (read once: the position is
/// not rewound), without `.` and `..`.
pub(super) fn names(dir: &mut Dir) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// Remove `name` from `dir`, a directory with everything below it.
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &CStr) -> R<()> {
    let st = statx_at(dir, name).op("lstat")?;
    if st.is_dir() {
        let mut sub = open_dir_at(dir, name).op("open directory")?;
        empty_dir(&mut sub)?;
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir).op("remove directory")
    } else {
        nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).op("remove")
    }
}

/// Remove everything inside a directory freshly opened by [`open_dir_at`].
pub(super) fn empty_dir(dir: &mut Dir) -> R<()> {
    for n in names(dir).op("read directory")? {
        remove_at(dir.as_fd(), &n)?;
    }
    Ok(())
}

/// Copy the non-directory `name` in `src` (described by `st`) to `dname` in `dst`, which must
/// not exist, with owner, mode, xattrs and times.
pub(super) fn copy_entry(
    src: BorrowedFd<'_>,
    name: &CStr,
    st: &Stat,
    dst: BorrowedFd<'_>,
    dname: &CStr,
) -> R<()> {
    let (uid, gid) = (Some(Uid::from_raw(st.uid)), Some(Gid::from_raw(st.gid)));
    let perm = Mode::from_bits_truncate(st.mode & 0o7777);
    match st.kind() {
        libc::S_IFREG => {
            let s = openat(
                src,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .op("open")?;
            let d = openat(
                dst,
                dname,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .op("create")?;
            copy_data(&s, &d)?;
            nix::unistd::fchown(&d, uid, gid).op("chown")?;
            nix::sys::stat::fchmod(&d, perm).op("chmod")?;
            copy_xattrs(s.as_fd(), d.as_fd(), false)?;
            nix::sys::stat::futimens(&d, &ts(st.atime), &ts(st.mtime)).op("set times of")
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(src, name).op("read symlink")?;
            nix::unistd::symlinkat(target.as_os_str(), dst, dname).op("create symlink")?;
            finish_node(dst, dname, st, None)
        }
        kind => {
            let k = SFlag::from_bits_truncate(kind);
            nix::sys::stat::mknodat(dst, dname, k, Mode::from_bits_truncate(0o600), st.rdev).op(
                if k == SFlag::S_IFCHR || k == SFlag::S_IFBLK {
                    "create device node (refused in a user namespace unless 0/0)"
                } else {
                    "create node"
                },
            )?;
            finish_node(dst, dname, st, Some(perm))
        }
    }
}

/// Owner, mode (not for symlinks) and times of a node made by path in `dst`.
fn finish_node(dst: BorrowedFd<'_>, name: &CStr, st: &Stat, perm: Option<Mode>) -> R<()> {
    let (uid, gid) = (Some(Uid::from_raw(st.uid)), Some(Gid::from_raw(st.gid)));
    nix::unistd::fchownat(dst, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).op("chown")?;
    if let Some(p) = perm {
        // Not a symlink (checked by the caller), so following is harmless here.
        nix::sys::stat::fchmodat(dst, name, p, FchmodatFlags::FollowSymlink).op("chmod")?;
    }
    nix::sys::stat::utimensat(
        dst,
        name,
        &ts(st.atime),
        &ts(st.mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .op("set times of")
}

/// Give the directory `d` the owner, mode, xattrs and times of `s` (described by `st`). With
/// `replace`, kept-class xattrs that `d` has and `s` lacks are removed (a merged directory
/// shows only its topmost copy's attributes).
pub(super) fn copy_dir_meta(
    s: BorrowedFd<'_>,
    d: BorrowedFd<'_>,
    st: &Stat,
    replace: bool,
) -> R<()> {
    let (uid, gid) = (Some(Uid::from_raw(st.uid)), Some(Gid::from_raw(st.gid)));
    nix::unistd::fchown(d, uid, gid).op("chown")?;
    nix::sys::stat::fchmod(d, Mode::from_bits_truncate(st.mode & 0o7777)).op("chmod")?;
    copy_xattrs(s, d, replace)?;
    nix::sys::stat::futimens(d, &ts(st.atime), &ts(st.mtime)).op("set times of")
}

/// Data from `s` to `d`: reflink, else in-kernel copy, else read/write.
fn copy_data(s: &OwnedFd, d: &OwnedFd) -> R<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument; both descriptors
    // are open for the duration of the call and the kernel writes no user memory.
    let r = unsafe { libc::ioctl(d.as_raw_fd(), libc::FICLONE, s.as_raw_fd()) };
    if r == 0 {
        return Ok(());
    }
    let mut copied = 0u64;
    loop {
        // SAFETY: both descriptors are open for the call; null offsets mean "use and advance
        // the file positions", so the kernel touches no user memory.
        let n = unsafe {
            libc::copy_file_range(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                d.as_raw_fd(),
                std::ptr::null_mut(),
                1 << 30,
                0,
            )
        };
        match n {
            0 => return Ok(()),
            n if n > 0 => copied += n as u64,
            _ => {
                let e = io::Error::last_os_error();
                let unsupported = matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                );
                if unsupported && copied == 0 {
                    break;
                }
                return Err(e).op("copy data to");
            }
        }
    }
    let mut sf = File::from(s.try_clone().op("dup")?);
    let mut df = File::from(d.try_clone().op("dup")?);
    io::copy(&mut sf, &mut df).op("copy data to")?;
    Ok(())
}

/// Whether an xattr travels with a copy: what a layer carries (`user.*` except overlay's own,
/// and `security.capability`).
fn kept(name: &[u8]) -> bool {
    name == b"security.capability"
        || (name.starts_with(b"user.") && !whiteout::is_overlay_xattr(name))
}

fn copy_xattrs(s: BorrowedFd<'_>, d: BorrowedFd<'_>, replace: bool) -> R<()> {
    let want: Vec<Vec<u8>> = flist(s)
        .op("list xattrs of")?
        .into_iter()
        .filter(|n| kept(n))
        .collect();
    if replace {
        for n in flist(d).op("list xattrs of")? {
            if kept(&n) && !want.contains(&n) {
                fremove(d, &n).op("remove xattr of")?;
            }
        }
    }
    for n in want {
        if let Some(v) = fget(s, &n).op("read xattr of")? {
            super::super::xattr::fset(d, &n, &v).op("set xattr of")?;
        }
    }
    Ok(())
}

/// Run a size-probing xattr call until the buffer is big enough.
fn probe(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let n = call(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let m = call(buf.as_mut_ptr().cast(), buf.len());
        if m < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}

/// xattr names of the object `fd` refers to (none where the filesystem has no xattrs).
pub(super) fn flist(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: `fd` is open for the call; `probe` passes a null buffer with size 0 or a
    // buffer it owns of exactly `n` writable bytes.
    let raw = match probe(|b, n| unsafe { libc::flistxattr(fd.as_raw_fd(), b.cast(), n) }) {
        Ok(raw) => raw,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of xattr `name` on `fd`, or None when absent.
pub(super) fn fget(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `fd` is open and `n` NUL-terminated for the call; `probe` passes a null buffer
    // with size 0 or a buffer it owns of exactly `len` writable bytes.
    match probe(|b, len| unsafe { libc::fgetxattr(fd.as_raw_fd(), n.as_ptr(), b, len) }) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn fremove(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `fd` is open and `n` NUL-terminated for the duration of the call.
    if unsafe { libc::fremovexattr(fd.as_raw_fd(), n.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the directory `fd` is overlay-opaque (either xattr namespace).
pub(super) fn is_opaque(fd: BorrowedFd<'_>) -> io::Result<bool> {
    for n in [whiteout::USER_OPAQUE, whiteout::TRUSTED_OPAQUE] {
        if fget(fd, n.as_bytes())?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A relative path's bytes as a C string (paths from directory listings hold no NUL).
pub(super) fn cstr(b: &[u8]) -> CString {
    CString::new(b).unwrap_or_else(|_| c"\u{fffd}".to_owned())
}

/// Bytes as a path for messages.
pub(super) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
