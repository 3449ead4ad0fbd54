//! Paths inside a container's root, resolved by the kernel against a descriptor of that root.
//!
//! A path string handed to mount(2) is walked by the kernel at the moment of the call, from
//! the caller's own root, following every symlink on the way: whatever a symlink planted in
//! the image (or swapped into a shared volume by another container) points at, the mount
//! goes there — on the host, if the link says so (CVE-2021-30465, CVE-2023-28642). So boxkit
//! never lets the kernel walk a target string. [`open`] resolves a container path with
//! `openat2(2)` relative to a descriptor of the mounted root with `RESOLVE_IN_ROOT` (".." and
//! absolute symlinks stop at that root, as they would for the container itself) and
//! `RESOLVE_NO_MAGICLINKS` (no jumping through `/proc/<pid>/root` and the like), and the
//! caller mounts onto the descriptor it got. [`ensure`] creates a missing mount point one
//! component at a time, each relative to the descriptor of its resolved parent. A symlink
//! swapped in between two steps can therefore only ever redirect inside the root.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// How a path inside the root may be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Symlinks are followed, but only inside the root: an image may point a volume's path
    /// elsewhere in itself, never out of it.
    InRoot,
    /// No symlink anywhere on the path: for the kernel filesystems (/proc, /sys, /dev), whose
    /// place an image must not choose. A symlink makes the open fail with `ELOOP`.
    NoSymlinks,
}

fn how(resolve: Resolve, flags: OFlag) -> OpenHow {
    let mut r = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if resolve == Resolve::NoSymlinks {
        r |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(r)
}

/// The normal components of `path` ("." dropped, ".." kept: the kernel clamps it at the root).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn relative(parts: &[OsString]) -> PathBuf {
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// Open `path` (absolute or relative, both taken from `root`) inside `root` as an `O_PATH`
/// descriptor; the result is never outside `root` and never a symlink.
pub fn open(root: BorrowedFd<'_>, path: &Path, resolve: Resolve) -> nix::Result<OwnedFd> {
    let rel = relative(&components(path));
    nix::fcntl::openat2(root, &rel, how(resolve, OFlag::O_PATH))
}

/// Make sure `path` exists inside `root`, creating missing components: directories, and for
/// the last one a directory (`dir`) or an empty file; returns an `O_PATH` descriptor of it. A
/// dangling symlink on the way is followed (inside the root) and its target created, as a
/// string walk would have done, but only with [`Resolve::InRoot`]. Owners and modes are the
/// caller's (root, 0755 / 0644).
pub fn ensure(
    root: BorrowedFd<'_>,
    path: &Path,
    resolve: Resolve,
    dir: bool,
) -> nix::Result<OwnedFd> {
    let mut want = components(path);
    // Each round either finds the path, follows one symlink or creates one component; the
    // bound only stops a racer that keeps swapping things under us.
    for _ in 0..256 {
        match open(root, &relative(&want), resolve) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let Some((i, parent)) = first_missing(root, &want, resolve)? else {
            continue; // appeared meanwhile
        };
        let pfd = match &parent {
            Some(p) => p.as_fd(),
            None => root,
        };
        let name = want[i].clone();
        let last = i + 1 == want.len();
        let made = if last && !dir {
            nix::fcntl::openat(
                pfd,
                name.as_os_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(pfd, name.as_os_str(), Mode::from_bits_truncate(0o755))
        };
        match made {
            // Just made in a resolved parent: open it there, never through a symlink a racer
            // might have swapped in since.
            Ok(()) if last => {
                let mut flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                if dir {
                    flags |= OFlag::O_DIRECTORY;
                }
                return nix::fcntl::openat(pfd, name.as_os_str(), flags, Mode::empty());
            }
            Ok(()) => {}
            // Something is there that did not resolve: a dangling symlink (or a racer).
            Err(Errno::EEXIST) => {
                if let Ok(link) = nix::fcntl::readlinkat(pfd, name.as_os_str()) {
                    if resolve == Resolve::NoSymlinks {
                        return Err(Errno::ELOOP);
                    }
                    // Continue from its target, inside the root.
                    let link = PathBuf::from(link);
                    let mut next = if link.is_absolute() {
                        vec![]
                    } else {
                        want[..i].to_vec()
                    };
                    next.extend(components(&link));
                    next.extend(want[i + 1..].iter().cloned());
                    want = next;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ELOOP)
}

/// The index of the first component of `want` that does not resolve, with a descriptor of
/// its parent (None: the root). Most often only the last one is missing, which one open of
/// the parent shows; otherwise the prefixes are tried in order. None: everything resolves.
fn first_missing(
    root: BorrowedFd<'_>,
    want: &[OsString],
    resolve: Resolve,
) -> nix::Result<Option<(usize, Option<OwnedFd>)>> {
    let n = want.len();
    if n == 0 {
        return Ok(None);
    }
    if n > 1 {
        match open(root, &relative(&want[..n - 1]), resolve) {
            Ok(fd) => return Ok(Some((n - 1, Some(fd)))),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    } else {
        return Ok(Some((0, None)));
    }
    let mut parent = None;
    for i in 0..n {
        match open(root, &relative(&want[..=i]), resolve) {
            Ok(fd) => parent = Some(fd),
            Err(Errno::ENOENT) => return Ok(Some((i, parent))),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The device and inode numbers of what `fd` holds.
pub fn inode(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    nix::sys::stat::fstat(fd).ok().map(|s| (s.st_dev, s.st_ino))
}

/// Whether two descriptors name the same inode (e.g. a target that resolved to the root).
pub fn same_inode(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    matches!((inode(a), inode(b)), (Some(x), Some(y)) if x == y)
}

/// `/proc/self/fd/N` for a descriptor: the path through which the classic mount(2) API
/// mounts onto exactly the object the descriptor holds (the kernel does not re-walk names).
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` for messages: as the container sees it.
pub fn shown(path: &Path) -> String {
    let parts = components(path);
    let mut s = String::new();
    for p in parts {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(p.as_bytes()));
    }
    if s.is_empty() { "/".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("root")).unwrap();
        let fd = nix::fcntl::open(
            &d.path().join("root"),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (d, fd)
    }

    #[test]
    fn symlinks_out_of_the_root_resolve_inside_it() {
        let (d, r) = root();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, d.path().join("root/abs")).unwrap();
        symlink("../../../..", d.path().join("root/up")).unwrap();
        symlink("/", d.path().join("root/slash")).unwrap();
        // An absolute link to a real host directory is looked up inside the root: missing.
        assert_eq!(
            open(r.as_fd(), Path::new("/abs"), Resolve::InRoot).unwrap_err(),
            Errno::ENOENT
        );
        for p in ["/up", "/slash", "/../../..", "/up/slash/.."] {
            let fd = open(r.as_fd(), Path::new(p), Resolve::InRoot).unwrap();
            assert!(same_inode(fd.as_fd(), r.as_fd()), "{p} is the root");
        }
        // Creating through the dangling absolute link makes it inside the root.
        ensure(r.as_fd(), Path::new("/abs/x/y"), Resolve::InRoot, false).unwrap();
        let inside = d
            .path()
            .join("root")
            .join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("x/y").is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn no_symlinks_refuses_any_symlink_on_the_path() {
        let (d, r) = root();
        std::fs::create_dir(d.path().join("root/real")).unwrap();
        symlink("real", d.path().join("root/proc")).unwrap();
        assert_eq!(
            open(r.as_fd(), Path::new("/proc"), Resolve::NoSymlinks).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            ensure(r.as_fd(), Path::new("/proc"), Resolve::NoSymlinks, true).unwrap_err(),
            Errno::ELOOP
        );
        symlink("/nowhere", d.path().join("root/dev")).unwrap();
        assert_eq!(
            ensure(r.as_fd(), Path::new("/dev/pts"), Resolve::NoSymlinks, true).unwrap_err(),
            Errno::ELOOP
        );
        assert!(!d.path().join("root/nowhere").exists());
        ensure(r.as_fd(), Path::new("/sys/fs"), Resolve::NoSymlinks, true).unwrap();
        assert!(d.path().join("root/sys/fs").is_dir());
    }

    #[test]
    fn relative_dangling_links_are_created_where_they_point() {
        let (d, r) = root();
        std::fs::create_dir_all(d.path().join("root/etc")).unwrap();
        symlink("../run/resolv.conf", d.path().join("root/etc/resolv.conf")).unwrap();
        ensure(
            r.as_fd(),
            Path::new("/etc/resolv.conf"),
            Resolve::InRoot,
            false,
        )
        .unwrap();
        assert!(d.path().join("root/run/resolv.conf").is_file());
        assert_eq!(shown(Path::new("etc//x/./y")), "/etc/x/y");
    }
}
