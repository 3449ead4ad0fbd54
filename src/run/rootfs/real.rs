//! [`Real`]: the [`Kernel`] the container's root is built with. Every target is opened inside
//! the attached root with [`inroot`] (openat2 `RESOLVE_IN_ROOT`, or no symlinks at all for the
//! runtime's own /proc, /sys and /dev), and mounts go onto the descriptor.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use super::detached::{move_mount_onto, open_tree, set_attrs};
use super::{ATTR_RDONLY, Attrs, BindSource, Kernel, Kind, Result, RootfsError, Target};
use crate::run::inroot::{self, Resolve};

/// The real kernel: targets resolve inside the attached root (see [`super::inroot`]).
#[derive(Debug, Default)]
pub struct Real {
    scratch: Option<OwnedFd>,
    root: Option<OwnedFd>,
    /// Device and inode of the root, to refuse targets that resolve to it.
    root_inode: Option<(u64, u64)>,
    /// The target the last step resolved (a mount point just made, a mask's kind looked
    /// up), kept for the mount that comes next so it is not resolved twice.
    resolved: Option<(PathBuf, Resolve, OwnedFd)>,
}

impl Real {
    fn root(&self) -> Result<BorrowedFd<'_>> {
        self.root
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| RootfsError::Resolve {
                op: "resolve",
                path: "/".into(),
                cause: nix::Error::EBADF,
            })
    }

    /// Open `t` in the root for mounting on: never outside the root, never a symlink, never
    /// the root itself.
    fn open_target(&mut self, t: &Target, what: &'static str) -> Result<OwnedFd> {
        let cached = match self.resolved.take() {
            Some((p, r, fd)) if p == t.path && r == t.resolve => Some(fd),
            _ => None,
        };
        let fd = match cached {
            Some(fd) => fd,
            None => inroot::open(self.root()?, &t.path, t.resolve)
                .map_err(|e| self.resolve_err(t, e, what))?,
        };
        // Only a symlink can lead a non-empty path back to the root.
        if t.resolve == Resolve::InRoot
            && self.root_inode.is_some()
            && inroot::inode(fd.as_fd()) == self.root_inode
        {
            return Err(RootfsError::OntoRoot { path: t.shown() });
        }
        Ok(fd)
    }

    fn resolve_err(&self, t: &Target, cause: nix::Error, what: &'static str) -> RootfsError {
        if cause == nix::Error::ELOOP && t.resolve == Resolve::NoSymlinks {
            // The first component is the one the runtime owns (/proc, /sys, /dev).
            let top = t.path.components().find_map(|c| match c {
                Component::Normal(n) => Some(format!("/{}", n.to_string_lossy())),
                _ => None,
            });
            return RootfsError::Symlink {
                path: top.unwrap_or_else(|| t.shown()),
                what,
            };
        }
        RootfsError::Resolve {
            op: "open mount target",
            path: t.shown(),
            cause,
        }
    }
}

fn what_of(fstype: &str) -> &'static str {
    match fstype {
        "proc" => "procfs",
        "sysfs" => "sysfs",
        "devpts" => "devpts",
        "mqueue" => "mqueue",
        _ => "a kernel filesystem",
    }
}

impl Kernel for Real {
    fn make_private(&mut self) -> Result<()> {
        let flags = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|cause| {
            RootfsError::Mount {
                src: String::new(),
                target: "/".into(),
                fstype: "(propagation)".into(),
                flags,
                data: None,
                cause,
            }
        })
    }

    fn scratch(&mut self, at: &Path) -> Result<()> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        let err = |cause| RootfsError::Mount {
            src: "tmpfs".into(),
            target: at.display().to_string(),
            fstype: "tmpfs".into(),
            flags,
            data: Some("mode=0755".into()),
            cause,
        };
        // `at` is a fixed directory of the host's tree (root's to change), in a mount
        // namespace only we use.
        nix::mount::mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some("mode=0755"))
            .map_err(err)?;
        let fd = nix::fcntl::open(
            at,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(err)?;
        nix::sys::stat::mkdirat(&fd, "root", nix::sys::stat::Mode::from_bits_truncate(0o755))
            .map_err(err)?;
        self.scratch = Some(fd);
        Ok(())
    }

    fn write_scratch(&mut self, name: &str, contents: &str) -> Result<()> {
        use nix::fcntl::OFlag;
        let err = |cause: nix::Error| RootfsError::Io {
            op: "write",
            path: PathBuf::from("(scratch)").join(name),
            cause: cause.into(),
        };
        let dir = self.scratch.as_ref().ok_or(err(nix::Error::EBADF))?;
        let fd = nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(err)?;
        std::io::Write::write_all(&mut std::fs::File::from(fd), contents.as_bytes()).map_err(
            |cause| RootfsError::Io {
                op: "write",
                path: PathBuf::from("(scratch)").join(name),
                cause,
            },
        )
    }

    fn attach_root(&mut self, fd: RawFd) -> Result<()> {
        use nix::fcntl::OFlag;
        let scratch = self.scratch.as_ref().ok_or(RootfsError::Resolve {
            op: "attach the root",
            path: "/".into(),
            cause: nix::Error::EBADF,
        })?;
        let err = |cause| RootfsError::Resolve {
            op: "attach the root at",
            path: "(scratch)/root".into(),
            cause,
        };
        let point = nix::fcntl::openat(
            scratch,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(err)?;
        move_mount_onto(fd, point.as_fd(), "(scratch)/root")?;
        // Reopened, the name now crosses into the attached mount: its root directory.
        let root = nix::fcntl::openat(
            scratch,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(err)?;
        self.root_inode = inroot::inode(root.as_fd());
        self.root = Some(root);
        Ok(())
    }

    fn kind(&mut self, t: &Target) -> Result<Kind> {
        let fd = match inroot::open(self.root()?, &t.path, t.resolve) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => return Ok(Kind::Missing),
            Err(e) => return Err(self.resolve_err(t, e, "a mask")),
        };
        let st = nix::sys::stat::fstat(&fd).map_err(|cause| RootfsError::Resolve {
            op: "stat",
            path: t.shown(),
            cause,
        })?;
        self.resolved = Some((t.path.clone(), t.resolve, fd));
        Ok(if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            Kind::Dir
        } else {
            Kind::File
        })
    }

    fn make_mount_point(&mut self, t: &Target, dir: bool) -> Result<()> {
        let top = t.path.components().nth(1).map(|c| c.as_os_str().to_owned());
        let what = match top.as_deref().and_then(|s| s.to_str()) {
            Some("proc") => "procfs",
            Some("sys") => "sysfs",
            _ => "the /dev tmpfs",
        };
        let fd = inroot::ensure(self.root()?, &t.path, t.resolve, dir).map_err(|e| match e {
            nix::Error::ELOOP if t.resolve == Resolve::NoSymlinks => self.resolve_err(t, e, what),
            cause => RootfsError::Resolve {
                op: "create mount point",
                path: t.shown(),
                cause,
            },
        })?;
        self.resolved = Some((t.path.clone(), t.resolve, fd));
        Ok(())
    }

    fn mount(
        &mut self,
        fstype: &str,
        source: &str,
        t: &Target,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        let fd = self.open_target(t, what_of(fstype))?;
        nix::mount::mount(
            Some(source),
            &inroot::fd_path(fd.as_fd()),
            Some(fstype),
            flags,
            data,
        )
        .map_err(|cause| RootfsError::Mount {
            src: source.to_string(),
            target: t.shown(),
            fstype: fstype.to_string(),
            flags,
            data: data.map(String::from),
            cause,
        })
    }

    fn bind(&mut self, source: BindSource<'_>, t: &Target, attrs: Attrs) -> Result<()> {
        let onto = self.open_target(t, "a bind mount")?;
        let recursive = if attrs.recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
        let copy;
        let (from, what) = match source {
            BindSource::Host(p) => {
                copy = open_tree(libc::AT_FDCWD, p, recursive, &p.display().to_string())?;
                (copy.as_raw_fd(), p.display().to_string())
            }
            BindSource::Scratch(name) => {
                let dir = self.scratch.as_ref().map_or(-1, |f| f.as_raw_fd());
                copy = open_tree(
                    dir,
                    Path::new(name),
                    libc::AT_SYMLINK_NOFOLLOW as u32,
                    &format!("(scratch)/{name}"),
                )?;
                (copy.as_raw_fd(), format!("(scratch)/{name}"))
            }
            BindSource::Detached(fd) => (fd, format!("(prepared mount fd {fd})")),
            BindSource::Itself => {
                copy = open_tree(
                    onto.as_raw_fd(),
                    Path::new(""),
                    libc::AT_EMPTY_PATH as u32 | libc::AT_RECURSIVE as u32,
                    &t.shown(),
                )?;
                (copy.as_raw_fd(), t.shown())
            }
        };
        if attrs.set != 0 {
            // SAFETY: `from` is open for the rest of this call (owned by `copy` or by the
            // caller's prepared mounts).
            let b = unsafe { BorrowedFd::borrow_raw(from) };
            set_attrs(b, &what, attrs.set, attrs.recursive)?;
        }
        move_mount_onto(from, onto.as_fd(), &t.shown())
    }

    fn symlink(&mut self, target: &str, link: &Target) -> Result<()> {
        let err = |cause| RootfsError::Resolve {
            op: "symlink",
            path: link.shown(),
            cause,
        };
        let parent = link.path.parent().unwrap_or(Path::new("/"));
        let name = link.path.file_name().ok_or(err(nix::Error::EINVAL))?;
        let dir = inroot::open(self.root()?, parent, link.resolve).map_err(err)?;
        nix::unistd::symlinkat(target, &dir, name).map_err(err)
    }

    fn receive_tree(&mut self, sock: RawFd) -> Option<OwnedFd> {
        crate::run::prestart::receive_dev(sock)
    }

    fn pivot_root(&mut self) -> Result<()> {
        let err = |cause| RootfsError::PivotRoot { cause };
        let root = self.root.take().ok_or(err(nix::Error::EBADF))?;
        // The scratch tmpfs goes with the old root; keep no handle on either.
        self.scratch = None;
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching "."
        // then removes it without needing a put_old directory inside the image.
        nix::unistd::fchdir(&root).map_err(err)?;
        drop(root);
        nix::unistd::pivot_root(".", ".").map_err(err)?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(err)?;
        nix::unistd::chdir("/").map_err(err)
    }

    fn read_only_root(&mut self) -> Result<()> {
        let fd = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|cause| RootfsError::Resolve {
            op: "open",
            path: "/".into(),
            cause,
        })?;
        set_attrs(fd.as_fd(), "/", ATTR_RDONLY, false)
    }
}
