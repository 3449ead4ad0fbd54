//! A tree → tar stream, walked only through descriptors: every child is opened relative to
//! its parent's descriptor with `O_NOFOLLOW`, so a symlink inside the tree is written as a
//! link and never followed, and one swapped in while the walk runs (CVE-2018-15664) fails the
//! open instead of leading elsewhere. Regular files are opened non-blocking (a fifo swapped in
//! for a file cannot hang the walk) and checked to be the inode just classified. Only the
//! starting object is resolved from a path, by the caller's [`open_start`].

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::statfs::{self, FsType};
use tar::EntryType;

use crate::layer::tarwriter::{TarEntry, TarWriter};

/// How entries are written.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Keep the files' uid/gid (else 0:0).
    pub ids: bool,
    /// Drop setuid/setgid bits: the stream is written out on the host, where a container's
    /// setuid binary must not become the caller's (root's) setuid binary.
    pub clear_setid: bool,
}

/// Filesystems a copy does not descend into: their files are the kernel's, not the
/// container's (and reading some of them has effects or never ends).
const SKIP_FS: [FsType; 11] = [
    statfs::PROC_SUPER_MAGIC,
    statfs::SYSFS_MAGIC,
    statfs::DEVPTS_SUPER_MAGIC,
    statfs::CGROUP_SUPER_MAGIC,
    statfs::CGROUP2_SUPER_MAGIC,
    statfs::DEBUGFS_MAGIC,
    statfs::SECURITYFS_MAGIC,
    statfs::TRACEFS_MAGIC,
    statfs::BPF_FS_MAGIC,
    statfs::SELINUX_MAGIC,
    // mqueue (not among nix's constants)
    FsType(0x1980_0202),
];

fn skipped_fs(fd: BorrowedFd) -> bool {
    statfs::fstatfs(fd).is_ok_and(|s| SKIP_FS.contains(&s.filesystem_type()))
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// The object a copy starts from, opened.
pub struct Start {
    /// An `O_PATH` descriptor of the object itself (a symlink's own, when not followed).
    pub fd: OwnedFd,
    pub stat: FileStat,
}

impl Start {
    pub fn is_dir(&self) -> bool {
        kind(&self.stat) == SFlag::S_IFDIR
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn open_how(flags: OFlag, in_root: bool) -> OpenHow {
    let mut r = ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if in_root {
        r |= ResolveFlag::RESOLVE_IN_ROOT;
    }
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(r)
}

/// Open `path` relative to `dir` (inside it as a root when `in_root`: `..` and absolute
/// symlinks stop there) as an `O_PATH` descriptor; the last component is followed only when
/// `follow`.
pub fn open_start(dir: BorrowedFd, path: &Path, in_root: bool, follow: bool) -> io::Result<Start> {
    let mut flags = OFlag::O_PATH;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let rel: &Path = if in_root {
        path.strip_prefix("/").unwrap_or(path)
    } else {
        path
    };
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = nix::fcntl::openat2(dir, rel, open_how(flags, in_root)).map_err(errno)?;
    let stat = nix::sys::stat::fstat(&fd).map_err(errno)?;
    Ok(Start { fd, stat })
}

/// Writes a tree into a tar stream.
pub struct Walker<'a, W: Write> {
    pub out: &'a mut TarWriter<W>,
    pub opts: WalkOptions,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix == b"." || prefix.is_empty() {
        return name.to_vec();
    }
    let mut v = prefix.to_vec();
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

impl<W: Write> Walker<'_, W> {
    /// Write `start` (and what is below it) with the tar name `name`.
    pub fn start(&mut self, start: &Start, name: &[u8]) -> io::Result<()> {
        match kind(&start.stat) {
            SFlag::S_IFDIR => {
                let dir = reopen_dir(start.fd.as_fd())?;
                self.dir(dir, &start.stat, name)
            }
            SFlag::S_IFREG => {
                // An O_PATH descriptor cannot be read: reopened, and checked to be the same.
                let f = reopen_file(start.fd.as_fd(), &start.stat)?;
                self.file(f, &start.stat, name)
            }
            _ => self.other(start.fd.as_fd(), OsStr::new(""), &start.stat, name),
        }
    }

    fn header(&mut self, st: &FileStat, name: &[u8], kind: EntryType, size: u64) -> io::Result<()> {
        let mut mode = st.st_mode & 0o7777;
        if self.opts.clear_setid {
            mode &= !0o6000;
        }
        let (uid, gid) = if self.opts.ids {
            (st.st_uid.into(), st.st_gid.into())
        } else {
            (0, 0)
        };
        let mut e = TarEntry::new(name, kind);
        e.mode = mode;
        e.uid = uid;
        e.gid = gid;
        e.mtime = st.st_mtime;
        e.size = size;
        self.out.header(&e)
    }

    fn file(&mut self, f: std::fs::File, st: &FileStat, name: &[u8]) -> io::Result<()> {
        let size = st.st_size.max(0) as u64;
        self.header(st, name, EntryType::Regular, size)?;
        // A file that shrinks meanwhile is padded, one that grows is cut: the header's size
        // is what the stream holds.
        let mut r = f.take(size).chain(io::repeat(0)).take(size);
        self.out.data(&mut r, size)
    }

    fn dir(&mut self, dir: OwnedFd, st: &FileStat, name: &[u8]) -> io::Result<()> {
        let mut n = name.to_vec();
        if n.last() != Some(&b'/') {
            n.push(b'/');
        }
        self.header(st, &n, EntryType::Directory, 0)?;
        if skipped_fs(dir.as_fd()) {
            return Ok(());
        }
        let mut names: Vec<OsString> = Vec::new();
        {
            let d = nix::dir::Dir::from_fd(dir.try_clone()?).map_err(errno)?;
            for e in d.into_iter() {
                let e = e.map_err(errno)?;
                let b = e.file_name().to_bytes();
                if b != b"." && b != b".." {
                    names.push(OsStr::from_bytes(b).to_os_string());
                }
            }
        }
        names.sort();
        for child in names {
            let tar_name = join(name, child.as_bytes());
            self.child(dir.as_fd(), &child, &tar_name)?;
        }
        Ok(())
    }

    fn child(&mut self, dir: BorrowedFd, name: &OsStr, tar_name: &[u8]) -> io::Result<()> {
        let st = match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed while the walk ran: docker skips it too.
            Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(errno(e)),
        };
        match kind(&st) {
            SFlag::S_IFDIR => {
                let fd = nix::fcntl::openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                let now = nix::sys::stat::fstat(&fd).map_err(errno)?;
                same(&st, &now)?;
                self.dir(fd, &now, tar_name)
            }
            SFlag::S_IFREG => {
                let fd = nix::fcntl::openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                let now = nix::sys::stat::fstat(&fd).map_err(errno)?;
                same(&st, &now)?;
                self.file(std::fs::File::from(fd), &now, tar_name)
            }
            _ => self.other(dir, name, &st, tar_name),
        }
    }

    /// A symlink, fifo or device node: a header only. Sockets are skipped (tar has no type).
    fn other(&mut self, dir: BorrowedFd, name: &OsStr, st: &FileStat, n: &[u8]) -> io::Result<()> {
        let k = kind(st);
        let ty = match k {
            SFlag::S_IFLNK => EntryType::Symlink,
            SFlag::S_IFIFO => EntryType::Fifo,
            SFlag::S_IFCHR => EntryType::Char,
            SFlag::S_IFBLK => EntryType::Block,
            _ => return Ok(()),
        };
        let mut e = TarEntry::new(n, ty);
        let target;
        if k == SFlag::S_IFLNK {
            // An empty name reads the link an O_PATH|O_NOFOLLOW descriptor holds.
            target = nix::fcntl::readlinkat(dir, name).map_err(errno)?;
            e.link = Some(target.as_bytes());
        }
        if matches!(k, SFlag::S_IFCHR | SFlag::S_IFBLK) {
            let r = st.st_rdev;
            e.dev = Some((
                nix::sys::stat::major(r) as u32,
                nix::sys::stat::minor(r) as u32,
            ));
        }
        e.mode = st.st_mode & 0o777;
        if self.opts.ids {
            e.uid = st.st_uid.into();
            e.gid = st.st_gid.into();
        }
        e.mtime = st.st_mtime;
        self.out.header(&e)
    }
}

/// The object changed between its classification and its open: refuse rather than copy
/// something else (a racer swapping entries while the copy runs).
fn same(a: &FileStat, b: &FileStat) -> io::Result<()> {
    if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
        return Ok(());
    }
    Err(io::Error::other("changed while being copied"))
}

fn reopen_dir(fd: BorrowedFd) -> io::Result<OwnedFd> {
    nix::fcntl::openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// A readable descriptor of the regular file an `O_PATH` descriptor names. `openat(fd, "")`
/// is refused by the kernel; `/proc/self/fd/N` is a magic link but names exactly this inode
/// (no path is walked again), and the result is checked to be the same inode.
fn reopen_file(fd: BorrowedFd, st: &FileStat) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = nix::fcntl::open(
        p.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let now = nix::sys::stat::fstat(&f).map_err(errno)?;
    same(st, &now)?;
    Ok(std::fs::File::from(f))
}
