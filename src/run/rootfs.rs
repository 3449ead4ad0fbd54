//! The container's filesystem view, built inside its private mount namespace.
//!
//! Mounts made in a mount namespace we own are invisible to the host and vanish with the
//! namespace. We first make every inherited mount private (no propagation either way), mount
//! a small scratch tmpfs for generated files and the ephemeral upper dir, then assemble the
//! new root there: an overlay of the image layers (created with the new mount API —
//! fsopen/fsconfig/fsmount/move_mount — so each layer is passed as its own `lowerdir+`
//! parameter and the one-page limit of mount(2)'s option string does not cap the layer
//! count) or a bind of a plain directory; then /proc, read-only /sys, a minimal /dev,
//! generated /etc files, the caller's mounts, Docker's masked and read-only paths, and finally
//! `pivot_root(2)` with the old root detached. Every step is an [`Op`] in a plan computed
//! without touching the kernel, applied through the [`Kernel`] trait: the ordering is tested
//! without root, and the real implementation runs in the real-kernel tests.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use thiserror::Error;

use super::spec::{MountSpec, RootfsSource, UpperDir};

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("mount {fstype} {src} on {target} (flags {flags:?}, data {data:?}): {cause}")]
    Mount {
        /// The mount source (`source` would be taken by thiserror as the error source).
        src: String,
        target: PathBuf,
        fstype: String,
        flags: MsFlags,
        data: Option<String>,
        cause: nix::Error,
    },
    #[error("mount overlay on {target} ({layers} layers, upper {upper}): {step}: {cause}{log}")]
    Overlay {
        target: PathBuf,
        layers: usize,
        upper: PathBuf,
        step: String,
        cause: nix::Error,
        log: String,
    },
    #[error("make {target} read-only: {cause}")]
    ReadOnly { target: PathBuf, cause: nix::Error },
    #[error("pivot_root to {new_root}: {cause}")]
    PivotRoot {
        new_root: PathBuf,
        cause: nix::Error,
    },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, RootfsError>;

/// Docker's masked paths: files get /dev/null bound over them, directories a read-only tmpfs.
pub const MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READ_ONLY: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host devices bound into the container's /dev (mknod is not allowed in a user namespace).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// One step of building the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stop propagation between the container's mounts and the host's.
    MakePrivate,
    Mount {
        fstype: &'static str,
        source: &'static str,
        target: PathBuf,
        flags: MsFlags,
        data: Option<String>,
    },
    Overlay {
        /// Topmost first (overlay's own order).
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        userxattr: bool,
    },
    /// sysfs, or (when the network namespace is not ours, e.g. host network in a user
    /// namespace) a recursive bind of the host's /sys; read-only either way.
    Sysfs {
        target: PathBuf,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
        read_only: bool,
    },
    /// Attach a detached mount that the supervisor prepared (see [`prepare`]).
    Attach {
        fd: RawFd,
        target: PathBuf,
        read_only: bool,
    },
    Mkdir(PathBuf),
    /// Create an empty file or directory to mount on, when missing. `optional`: skip the
    /// following bind when it cannot be created (read-only or foreign-owned image dirs).
    MountPoint {
        path: PathBuf,
        dir: bool,
        optional: bool,
    },
    Symlink {
        target: &'static str,
        link: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    Mask(PathBuf),
    ReadOnlyPath(PathBuf),
    PivotRoot(PathBuf),
    /// After pivot: remount / read-only.
    ReadOnlyRoot,
}

/// What a path is, for masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Missing,
}

/// The kernel calls the plan needs.
pub trait Kernel {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    fn overlay(
        &mut self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        userxattr: bool,
    ) -> Result<()>;
    fn set_read_only(&mut self, target: &Path, recursive: bool) -> Result<()>;
    /// `move_mount(2)` a detached mount (from fsmount or open_tree) onto `target`.
    fn attach(&mut self, fd: RawFd, target: &Path) -> Result<()>;
    fn pivot_root(&mut self, new_root: &Path) -> Result<()>;
    fn mkdir_all(&mut self, path: &Path) -> Result<()>;
    fn create_file(&mut self, path: &Path) -> Result<()>;
    fn symlink(&mut self, target: &str, link: &Path) -> Result<()>;
    fn write_file(&mut self, path: &Path, contents: &str) -> Result<()>;
    fn kind(&mut self, path: &Path) -> Kind;
}

/// Inputs of the plan besides the spec's rootfs and mounts.
pub struct Layout<'a> {
    pub rootfs: &'a RootfsSource,
    pub mounts: &'a [MountSpec],
    /// Empty directory on the host where the scratch tmpfs goes.
    pub scratch: &'a Path,
    pub read_only: bool,
    pub hostname: &'a str,
    pub hosts: &'a str,
    pub resolv_conf: &'a str,
    /// In a non-initial user namespace (overlay needs `userxattr`).
    pub in_userns: bool,
    /// Mounts the supervisor prepared before clone; when given, they replace the rootfs
    /// overlay/bind and the bind mounts of `mounts`.
    pub prepared: Option<&'a Prepared>,
}

/// Mounts made by the supervisor, outside the container's user namespace, as detached mount
/// fds. The container may live in a nested user namespace (root's case) whose root cannot
/// open the store or a bind source under a 0700 directory; the supervisor, which can, opens
/// them, and the container only attaches the result with `move_mount(2)`.
#[derive(Debug)]
pub struct Prepared {
    pub root: OwnedFd,
    /// One entry per `mounts` item: the detached bind and whether it is a directory (`None`
    /// for tmpfs mounts).
    pub binds: Vec<Option<(OwnedFd, bool)>>,
}

/// Prepare the rootfs and bind mounts. `scratch` is the container's scratch directory; for an
/// ephemeral upper a tmpfs is mounted on it here (in the tool's private mount namespace) and
/// must be unmounted by the caller when the container is gone.
pub fn prepare(
    rootfs: &RootfsSource,
    mounts: &[MountSpec],
    scratch: &Path,
    in_userns: bool,
) -> Result<Prepared> {
    let root = match rootfs {
        RootfsSource::Dir(d) => open_tree_clone(d)?,
        RootfsSource::Overlay { lowerdirs, upper } => {
            let (upper, work) = match upper {
                UpperDir::Ephemeral => {
                    Real.mount(
                        Some(Path::new("tmpfs")),
                        scratch,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some("mode=0755"),
                    )?;
                    let (u, w) = (scratch.join("upper"), scratch.join("work"));
                    Real.mkdir_all(&u)?;
                    Real.mkdir_all(&w)?;
                    (u, w)
                }
                UpperDir::Dir { upper, work } => (upper.clone(), work.clone()),
            };
            let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
            overlay_fd(&lowers, &upper, &work, scratch, in_userns)?
        }
    };
    let binds = mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind { source, .. } => {
                let dir = std::fs::metadata(source)
                    .map_err(|cause| RootfsError::Io {
                        op: "stat bind-mount source",
                        path: source.clone(),
                        cause,
                    })?
                    .is_dir();
                Ok(Some((open_tree_clone(source)?, dir)))
            }
            MountSpec::Tmpfs { .. } => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok(Prepared { root, binds })
}

/// A detached recursive copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE)`).
fn open_tree_clone(path: &Path) -> Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    let p = cpath(path);
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_RECURSIVE as u32,
        )
    } as i32;
    if fd < 0 {
        return Err(RootfsError::Mount {
            src: path.display().to_string(),
            target: PathBuf::from("(detached bind)"),
            fstype: "open_tree".into(),
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            cause: nix::Error::last(),
        });
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Join `path` (absolute inside the container) to `root`, resolving symlinks as if `root`
/// were `/`, so an image cannot point a mount target outside its root.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        parts.push(c);
        let full: PathBuf = std::iter::once(root.as_os_str().to_os_string())
            .chain(parts.iter().cloned())
            .collect();
        if let Ok(t) = std::fs::read_link(&full) {
            hops += 1;
            if hops > 40 {
                break;
            }
            parts.pop();
            if t.is_absolute() {
                parts.clear();
            }
            for c in t.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        }
    }
    std::iter::once(root.as_os_str().to_os_string())
        .chain(parts)
        .collect()
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The ordered steps that build the container's root under `layout.scratch/root`.
pub fn plan(l: &Layout) -> Vec<Op> {
    let s = l.scratch;
    let root = s.join("root");
    let r = |p: &str| secure_join(&root, Path::new(p));
    let mut ops = vec![
        Op::MakePrivate,
        Op::Mount {
            fstype: "tmpfs",
            source: "tmpfs",
            target: s.to_path_buf(),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=0755".into()),
        },
        Op::Mkdir(root.clone()),
    ];
    match l.rootfs {
        _ if l.prepared.is_some() => ops.push(Op::Attach {
            fd: l.prepared.map_or(-1, |p| p.root.as_raw_fd()),
            target: root.clone(),
            read_only: false,
        }),
        RootfsSource::Dir(d) => ops.push(Op::Bind {
            source: d.clone(),
            target: root.clone(),
            recursive: true,
            read_only: false,
        }),
        RootfsSource::Overlay { lowerdirs, upper } => {
            let (upper, work) = match upper {
                UpperDir::Ephemeral => {
                    ops.push(Op::Mkdir(s.join("upper")));
                    ops.push(Op::Mkdir(s.join("work")));
                    (s.join("upper"), s.join("work"))
                }
                UpperDir::Dir { upper, work } => (upper.clone(), work.clone()),
            };
            ops.push(Op::Overlay {
                lowers: lowerdirs.iter().rev().cloned().collect(),
                upper,
                work,
                target: root.clone(),
                userxattr: l.in_userns,
            });
        }
    }
    for (name, text) in [
        ("hostname", format!("{}\n", l.hostname)),
        ("hosts", l.hosts.to_string()),
        ("resolv.conf", l.resolv_conf.to_string()),
    ] {
        ops.push(Op::WriteFile {
            path: s.join(name),
            contents: text,
        });
    }
    ops.push(Op::MountPoint {
        path: r("/proc"),
        dir: true,
        optional: false,
    });
    ops.push(Op::Mount {
        fstype: "proc",
        source: "proc",
        target: r("/proc"),
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    });
    ops.push(Op::MountPoint {
        path: r("/sys"),
        dir: true,
        optional: false,
    });
    ops.push(Op::Sysfs { target: r("/sys") });
    let dev = r("/dev");
    ops.push(Op::MountPoint {
        path: dev.clone(),
        dir: true,
        optional: false,
    });
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "tmpfs",
        target: dev.clone(),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        data: Some("mode=755,size=65536k".into()),
    });
    for d in DEVICES {
        ops.push(Op::MountPoint {
            path: dev.join(d),
            dir: false,
            optional: false,
        });
        ops.push(Op::Bind {
            source: Path::new("/dev").join(d),
            target: dev.join(d),
            recursive: false,
            read_only: false,
        });
    }
    ops.push(Op::Mkdir(dev.join("pts")));
    ops.push(Op::Mount {
        fstype: "devpts",
        source: "devpts",
        target: dev.join("pts"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    });
    ops.push(Op::Symlink {
        target: "pts/ptmx",
        link: dev.join("ptmx"),
    });
    ops.push(Op::Mkdir(dev.join("shm")));
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "shm",
        target: dev.join("shm"),
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777,size=65536k".into()),
    });
    for (t, l) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ] {
        ops.push(Op::Symlink {
            target: t,
            link: dev.join(l),
        });
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        let target = r(&format!("/etc/{name}"));
        ops.push(Op::MountPoint {
            path: target.clone(),
            dir: false,
            optional: true,
        });
        ops.push(Op::Bind {
            source: s.join(name),
            target,
            recursive: false,
            read_only: false,
        });
    }
    for (i, m) in l.mounts.iter().enumerate() {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let prepared = l
                    .prepared
                    .and_then(|p| p.binds.get(i))
                    .and_then(|b| b.as_ref());
                let dir = match prepared {
                    Some((_, dir)) => *dir,
                    None => std::fs::metadata(source)
                        .map(|m| m.is_dir())
                        .unwrap_or(true),
                };
                let t = r(&target.to_string_lossy());
                ops.push(Op::MountPoint {
                    path: t.clone(),
                    dir,
                    optional: false,
                });
                ops.push(match prepared {
                    Some((fd, _)) => Op::Attach {
                        fd: fd.as_raw_fd(),
                        target: t,
                        read_only: *read_only,
                    },
                    None => Op::Bind {
                        source: source.clone(),
                        target: t,
                        recursive: true,
                        read_only: *read_only,
                    },
                });
            }
            MountSpec::Tmpfs { target, options } => {
                let t = r(&target.to_string_lossy());
                ops.push(Op::MountPoint {
                    path: t.clone(),
                    dir: true,
                    optional: false,
                });
                ops.push(Op::Mount {
                    fstype: "tmpfs",
                    source: "tmpfs",
                    target: t,
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: options.clone(),
                });
            }
        }
    }
    for p in MASKED {
        ops.push(Op::Mask(r(p)));
    }
    for p in READ_ONLY {
        ops.push(Op::ReadOnlyPath(r(p)));
    }
    ops.push(Op::PivotRoot(root));
    if l.read_only {
        ops.push(Op::ReadOnlyRoot);
    }
    ops
}

/// Run the plan. A `MountPoint { optional: true }` that fails skips the op after it.
pub fn apply(ops: &[Op], k: &mut impl Kernel) -> Result<()> {
    let mut skip_next = false;
    for op in ops {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match op {
            Op::MakePrivate => k.mount(
                None,
                Path::new("/"),
                None,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None,
            )?,
            Op::Mount {
                fstype,
                source,
                target,
                flags,
                data,
            } => k.mount(
                Some(Path::new(source)),
                target,
                Some(fstype),
                *flags,
                data.as_deref(),
            )?,
            Op::Overlay {
                lowers,
                upper,
                work,
                target,
                userxattr,
            } => k.overlay(lowers, upper, work, target, *userxattr)?,
            Op::Sysfs { target } => {
                let ro = MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC;
                if k.mount(Some(Path::new("sysfs")), target, Some("sysfs"), ro, None)
                    .is_err()
                {
                    k.mount(
                        Some(Path::new("/sys")),
                        target,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    k.set_read_only(target, true)?;
                }
            }
            Op::Bind {
                source,
                target,
                recursive,
                read_only,
            } => {
                let mut f = MsFlags::MS_BIND;
                if *recursive {
                    f |= MsFlags::MS_REC;
                }
                k.mount(Some(source), target, None, f, None)?;
                if *read_only {
                    k.set_read_only(target, *recursive)?;
                }
            }
            Op::Attach {
                fd,
                target,
                read_only,
            } => {
                k.attach(*fd, target)?;
                if *read_only {
                    k.set_read_only(target, true)?;
                }
            }
            Op::Mkdir(p) => k.mkdir_all(p)?,
            Op::MountPoint {
                path,
                dir,
                optional,
            } => {
                let r = match (k.kind(path), dir) {
                    (Kind::Missing, true) => k.mkdir_all(path),
                    (Kind::Missing, false) => {
                        let parent = path.parent().unwrap_or(Path::new("/"));
                        k.mkdir_all(parent).and_then(|_| k.create_file(path))
                    }
                    _ => Ok(()),
                };
                match r {
                    Err(_) if *optional => skip_next = true,
                    r => r?,
                }
            }
            Op::Symlink { target, link } => k.symlink(target, link)?,
            Op::WriteFile { path, contents } => k.write_file(path, contents)?,
            Op::Mask(p) => match k.kind(p) {
                Kind::Dir => k.mount(
                    Some(Path::new("tmpfs")),
                    p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                )?,
                Kind::File => k.mount(
                    Some(Path::new("/dev/null")),
                    p,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )?,
                Kind::Missing => {}
            },
            Op::ReadOnlyPath(p) => {
                if k.kind(p) != Kind::Missing {
                    k.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
                    k.set_read_only(p, true)?;
                }
            }
            Op::PivotRoot(r) => k.pivot_root(r)?,
            Op::ReadOnlyRoot => k.set_read_only(Path::new("/"), false)?,
        }
    }
    Ok(())
}

/// The real kernel.
pub struct Real;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl Kernel for Real {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(|cause| RootfsError::Mount {
            src: source.map(|s| s.display().to_string()).unwrap_or_default(),
            target: target.to_path_buf(),
            fstype: fstype.unwrap_or("(bind/remount)").to_string(),
            flags,
            data: data.map(String::from),
            cause,
        })
    }

    fn overlay(
        &mut self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
        userxattr: bool,
    ) -> Result<()> {
        let fd = overlay_fd(lowers, upper, work, target, userxattr)?;
        self.attach(fd.as_raw_fd(), target)
    }

    fn attach(&mut self, fd: RawFd, target: &Path) -> Result<()> {
        const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
        let t = cpath(target);
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(RootfsError::Mount {
                src: format!("(detached mount fd {fd})"),
                target: target.to_path_buf(),
                fstype: "move_mount".into(),
                flags: MsFlags::empty(),
                data: None,
                cause: nix::Error::last(),
            });
        }
        Ok(())
    }

    fn set_read_only(&mut self, target: &Path, recursive: bool) -> Result<()> {
        let attr = MountAttr {
            attr_set: 1, // MOUNT_ATTR_RDONLY
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let flags = if recursive { 0x8000u32 } else { 0 }; // AT_RECURSIVE
        let t = cpath(target);
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
                &attr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r < 0 {
            return Err(RootfsError::ReadOnly {
                target: target.to_path_buf(),
                cause: nix::Error::last(),
            });
        }
        Ok(())
    }

    fn pivot_root(&mut self, new_root: &Path) -> Result<()> {
        let err = |cause| RootfsError::PivotRoot {
            new_root: new_root.to_path_buf(),
            cause,
        };
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching "."
        // then removes it without needing a put_old directory inside the image.
        nix::unistd::chdir(new_root).map_err(err)?;
        nix::unistd::pivot_root(".", ".").map_err(err)?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(err)?;
        nix::unistd::chdir("/").map_err(err)
    }

    fn mkdir_all(&mut self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|cause| RootfsError::Io {
            op: "mkdir",
            path: path.to_path_buf(),
            cause,
        })
    }

    fn create_file(&mut self, path: &Path) -> Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
            .map_err(|cause| RootfsError::Io {
                op: "create",
                path: path.to_path_buf(),
                cause,
            })
    }

    fn symlink(&mut self, target: &str, link: &Path) -> Result<()> {
        std::os::unix::fs::symlink(target, link).map_err(|cause| RootfsError::Io {
            op: "symlink",
            path: link.to_path_buf(),
            cause,
        })
    }

    fn write_file(&mut self, path: &Path, contents: &str) -> Result<()> {
        std::fs::write(path, contents).map_err(|cause| RootfsError::Io {
            op: "write",
            path: path.to_path_buf(),
            cause,
        })
    }

    fn kind(&mut self, path: &Path) -> Kind {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(_) => Kind::File,
            Err(_) => Kind::Missing,
        }
    }
}

/// The merged view of `lowerdirs` (OCI order, bottom first) as a detached overlay mount, for
/// reading an image's files outside a container (e.g. to fill a new volume). `scratch` holds
/// the (unused) upper and work directories; it must stay until the mount is closed.
pub fn image_view(lowerdirs: &[PathBuf], scratch: &Path, userxattr: bool) -> Result<OwnedFd> {
    let (u, w) = (scratch.join("upper"), scratch.join("work"));
    Real.mkdir_all(&u)?;
    Real.mkdir_all(&w)?;
    let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
    overlay_fd(&lowers, &u, &w, scratch, userxattr)
}

/// Create an overlay with the new mount API and return it as a detached mount. `target` only
/// names the mount in error messages. Each layer is its own `lowerdir+` parameter (topmost
/// first), so the layer count is not capped by mount(2)'s one-page option string.
fn overlay_fd(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    userxattr: bool,
) -> Result<OwnedFd> {
    let fail = |fd: i32, step: String, cause: nix::Error| {
        // The filesystem context keeps the kernel's reason as "e overlay: …" messages.
        let mut log = String::new();
        let mut buf = [0u8; 512];
        loop {
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            log.push_str(" [");
            log.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim());
            log.push(']');
        }
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
        RootfsError::Overlay {
            target: target.to_path_buf(),
            layers: lowers.len(),
            upper: upper.to_path_buf(),
            step,
            cause,
            log,
        }
    };
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 1u32) } as i32;
    if fd < 0 {
        return Err(fail(-1, "fsopen".into(), nix::Error::last()));
    }
    let set = |key: &str, val: Option<&CString>| -> std::result::Result<(), (String, nix::Error)> {
        let k = CString::new(key).unwrap_or_default();
        let (cmd, v) = match val {
            Some(v) => (1u32, v.as_ptr()),    // FSCONFIG_SET_STRING
            None => (0u32, std::ptr::null()), // FSCONFIG_SET_FLAG
        };
        if unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, k.as_ptr(), v, 0) } < 0 {
            let shown = val
                .map(|v| v.to_string_lossy().to_string())
                .unwrap_or_default();
            return Err((format!("fsconfig {key}={shown}"), nix::Error::last()));
        }
        Ok(())
    };
    let r = (|| {
        for l in lowers {
            set("lowerdir+", Some(&cpath(l)))?;
        }
        set("upperdir", Some(&cpath(upper)))?;
        set("workdir", Some(&cpath(work)))?;
        if userxattr {
            set("userxattr", None)?;
        }
        // With redirect_always_follow (the default), "off" means "create none but follow
        // them", which userxattr rejects; "nofollow" is the same for a fresh upper dir.
        let redirect = if userxattr { c"nofollow" } else { c"off" };
        for (k, v) in [
            ("redirect_dir", redirect),
            ("metacopy", c"off"),
            ("index", c"off"),
        ] {
            set(k, Some(&v.to_owned()))?;
        }
        if unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fd,
                6u32,
                std::ptr::null::<i8>(),
                std::ptr::null::<i8>(),
                0,
            )
        } < 0
        {
            return Err(("fsconfig create".to_string(), nix::Error::last()));
        }
        Ok(())
    })();
    if let Err((step, cause)) = r {
        return Err(fail(fd, step, cause));
    }
    // FSMOUNT_CLOEXEC
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fd, 1u32, 0u32) } as i32;
    if mfd < 0 {
        return Err(fail(fd, "fsmount".into(), nix::Error::last()));
    }
    unsafe { libc::close(fd) };
    Ok(unsafe { OwnedFd::from_raw_fd(mfd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout<'a>(rootfs: &'a RootfsSource, mounts: &'a [MountSpec], ro: bool) -> Layout<'a> {
        Layout {
            rootfs,
            mounts,
            scratch: Path::new("/nonexistent-scratch"),
            read_only: ro,
            hostname: "h",
            hosts: "",
            resolv_conf: "",
            in_userns: true,
            prepared: None,
        }
    }

    fn pos(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().position(f).expect("op present")
    }

    #[test]
    fn overlay_gets_layers_topmost_first_and_userxattr() {
        let src = RootfsSource::Overlay {
            lowerdirs: vec!["/l/bottom".into(), "/l/top".into()],
            upper: UpperDir::Ephemeral,
        };
        let ops = plan(&layout(&src, &[], false));
        let ov = ops.iter().find_map(|o| match o {
            Op::Overlay {
                lowers, userxattr, ..
            } => Some((lowers.clone(), *userxattr)),
            _ => None,
        });
        assert_eq!(ov, Some((vec!["/l/top".into(), "/l/bottom".into()], true)));
    }

    #[test]
    fn order_private_first_pivot_last_masks_after_proc() {
        let src = RootfsSource::Dir("/img".into());
        let ops = plan(&layout(&src, &[], true));
        assert_eq!(ops[0], Op::MakePrivate);
        let pivot = pos(&ops, |o| matches!(o, Op::PivotRoot(_)));
        assert_eq!(pivot, ops.len() - 2);
        assert_eq!(ops.last(), Some(&Op::ReadOnlyRoot));
        let proc_ = pos(&ops, |o| matches!(o, Op::Mount { fstype: "proc", .. }));
        let mask = pos(&ops, |o| matches!(o, Op::Mask(_)));
        let devpts = pos(&ops, |o| {
            matches!(
                o,
                Op::Mount {
                    fstype: "devpts",
                    ..
                }
            )
        });
        let dev = pos(
            &ops,
            |o| matches!(o, Op::Mount { target, .. } if target.ends_with("root/dev")),
        );
        assert!(proc_ < mask && dev < devpts && mask < pivot);
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::Mask(_))).count(),
            MASKED.len()
        );
    }

    #[derive(Default)]
    struct Rec(Vec<String>);
    impl Kernel for Rec {
        fn mount(
            &mut self,
            s: Option<&Path>,
            t: &Path,
            f: Option<&str>,
            _: MsFlags,
            _: Option<&str>,
        ) -> Result<()> {
            if f == Some("sysfs") {
                // As with host networking in a user namespace.
                return Err(RootfsError::Mount {
                    src: "sysfs".into(),
                    target: t.into(),
                    fstype: "sysfs".into(),
                    flags: MsFlags::empty(),
                    data: None,
                    cause: nix::Error::EPERM,
                });
            }
            self.0
                .push(format!("mount {:?} {} {:?}", s, t.display(), f));
            Ok(())
        }
        fn overlay(&mut self, _: &[PathBuf], _: &Path, _: &Path, _: &Path, _: bool) -> Result<()> {
            Ok(())
        }
        fn attach(&mut self, fd: RawFd, t: &Path) -> Result<()> {
            self.0.push(format!("attach {fd} {}", t.display()));
            Ok(())
        }
        fn set_read_only(&mut self, t: &Path, r: bool) -> Result<()> {
            self.0.push(format!("ro {} {r}", t.display()));
            Ok(())
        }
        fn pivot_root(&mut self, _: &Path) -> Result<()> {
            Ok(())
        }
        fn mkdir_all(&mut self, _: &Path) -> Result<()> {
            Ok(())
        }
        fn create_file(&mut self, p: &Path) -> Result<()> {
            Err(RootfsError::Io {
                op: "create",
                path: p.into(),
                cause: std::io::ErrorKind::PermissionDenied.into(),
            })
        }
        fn symlink(&mut self, _: &str, _: &Path) -> Result<()> {
            Ok(())
        }
        fn write_file(&mut self, _: &Path, _: &str) -> Result<()> {
            Ok(())
        }
        fn kind(&mut self, p: &Path) -> Kind {
            if p.ends_with("etc/hosts") || p.starts_with("/nonexistent-scratch/root/dev") {
                Kind::Missing
            } else {
                Kind::Dir
            }
        }
    }

    #[test]
    fn sysfs_falls_back_to_readonly_bind_and_optional_targets_are_skipped() {
        let src = RootfsSource::Dir("/img".into());
        let ops = plan(&layout(&src, &[], false));
        let mut k = Rec::default();
        // /dev/null etc. cannot be created by Rec, so only apply up to /dev setup.
        let upto = pos(
            &ops,
            |o| matches!(o, Op::Mount { fstype: "tmpfs", target, .. } if target.ends_with("root/dev")),
        );
        apply(&ops[..upto], &mut k).unwrap();
        assert!(
            k.0.iter()
                .any(|l| l.starts_with("ro /nonexistent-scratch/root/sys true"))
        );
        let etc: Vec<Op> = ops
            .iter()
            .filter(|o| match o {
                Op::MountPoint { path, .. } | Op::Bind { target: path, .. } => {
                    path.ends_with("etc/hosts")
                }
                _ => false,
            })
            .cloned()
            .collect();
        let mut k = Rec::default();
        apply(&etc, &mut k).unwrap();
        assert!(
            k.0.is_empty(),
            "bind skipped when its mount point cannot be made: {:?}",
            k.0
        );
    }

    #[test]
    fn secure_join_keeps_symlinks_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/../../real", d.path().join("etc")).unwrap();
        assert_eq!(
            secure_join(d.path(), Path::new("/etc/hosts")),
            d.path().join("real/hosts")
        );
        std::os::unix::fs::symlink("../x", d.path().join("up")).unwrap();
        assert_eq!(
            secure_join(d.path(), Path::new("/up/y")),
            d.path().join("x/y")
        );
    }
}
