//! The container's filesystem view, built inside its private mount namespace.
//!
//! Mounts made in a mount namespace we own are invisible to the host and vanish with the
//! namespace. We first make every inherited mount private (no propagation either way), mount
//! a small scratch tmpfs for generated files and the new root's mount point, and attach there
//! the root the supervisor prepared before clone: an overlay of the image layers (created with
//! the new mount API — fsopen/fsconfig/fsmount — so each layer is its own `lowerdir+`
//! parameter and the one-page limit of mount(2)'s option string does not cap the layer count;
//! always with `userxattr`, the form of the opaque markers in the unpacked layers) or a bind
//! of a plain directory. Then /proc, read-only /sys, a minimal /dev, generated /etc files, the
//! caller's mounts, Docker's masked and read-only paths, and finally `pivot_root(2)` with the
//! old root detached.
//!
//! **Targets are never path strings the kernel walks.** Every target is a path *inside the
//! container* ([`Target`]), opened with openat2(RESOLVE_IN_ROOT) on a descriptor of the
//! attached root (see [`super::inroot`]); missing mount points are created relative to
//! descriptors, and the mount goes onto the descriptor (`move_mount` with
//! `MOVE_MOUNT_T_EMPTY_PATH`, or mount(2) on `/proc/self/fd/N`). So symlinks in the image, or
//! swapped into a shared volume while we work, can redirect a mount only inside the root, and
//! the kernel filesystems (/proc, /sys, /dev) refuse a symlink on their path altogether.
//!
//! **nodev everywhere but the device nodes.** The rootfs, the scratch tmpfs, /dev, /dev/shm,
//! /dev/mqueue, tmpfs mounts, volumes and bind mounts are `nodev`; only the bound host nodes
//! (null, zero, full, random, urandom, tty) and devpts allow device access. With
//! `--userns=host` the container has CAP_MKNOD, and this (with the device cgroup, see
//! [`super::cgroups::filter_devices`]) is what keeps a node it makes from opening.
//!
//! Every step is an [`Op`] in a plan computed without touching the kernel, applied through the
//! [`Kernel`] trait: the ordering is tested without root, and the real implementation ([`Real`])
//! runs in the real-kernel tests.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use thiserror::Error;

use super::inroot::{self, Resolve};
use super::spec::{MountSpec, RootfsSource, UpperDir};

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("mount {fstype} {src} on {target} (flags {flags:?}, data {data:?}): {cause}")]
    Mount {
        /// The mount source (`source` would be taken by thiserror as the error source).
        src: String,
        target: String,
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
    #[error("set mount attributes {attrs:#x} on {target}: {cause}")]
    Attrs {
        target: String,
        attrs: u64,
        cause: nix::Error,
    },
    #[error("pivot_root to the container's root: {cause}")]
    PivotRoot { cause: nix::Error },
    #[error("{op} {path} in the container: {cause}")]
    Resolve {
        op: &'static str,
        path: String,
        cause: nix::Error,
    },
    #[error(
        "the image's {path} is a symlink or has one on its path: {what} is only ever mounted on \
         a real directory, so that an image cannot choose where it goes (CVE-2023-28642); \
         rebuild the image with {path} as a plain directory"
    )]
    Symlink { path: String, what: &'static str },
    #[error(
        "mount target {path} resolves to the container's root directory (a symlink to / on its \
         path?); refusing to mount over the root"
    )]
    OntoRoot { path: String },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, RootfsError>;

/// Docker's masked paths (moby's daemon/pkg/oci/defaults.go): files get /dev/null bound over
/// them, directories an empty read-only tmpfs. Docker also masks each CPU's
/// `/sys/devices/system/cpu/cpuN/thermal_throttle` ([`thermal_throttle_paths`]).
pub const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths.
pub const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host devices bound into the container's /dev (mknod is not allowed in a user namespace).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

// mount_setattr(2) attributes.
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Where a mount goes: a path inside the container, and how it may be resolved there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub resolve: Resolve,
}

impl Target {
    /// A place the runtime owns (/proc, /sys, /dev and below): no symlink may lead there.
    pub fn fixed(p: impl Into<PathBuf>) -> Target {
        Target {
            path: p.into(),
            resolve: Resolve::NoSymlinks,
        }
    }
    /// A place the image or the user names (volumes, /etc files, masks): symlinks are
    /// followed, inside the root only.
    pub fn in_root(p: impl Into<PathBuf>) -> Target {
        Target {
            path: p.into(),
            resolve: Resolve::InRoot,
        }
    }
    fn shown(&self) -> String {
        inroot::shown(&self.path)
    }
}

/// Mount attributes to set on a bind before it is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attrs {
    /// `ATTR_*` bits.
    pub set: u64,
    /// Also on every mount below (bind mounts are recursive when this is set).
    pub recursive: bool,
}

/// What a bind mount copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindSource<'a> {
    /// A path on the host (looked up before pivot_root: the host's /dev, /sys).
    Host(&'a Path),
    /// A file in the scratch tmpfs (generated /etc files).
    Scratch(&'a str),
    /// A detached mount the supervisor made (see [`prepare`]).
    Detached(RawFd),
    /// The target itself (to make it read-only).
    Itself,
}

/// One step of building the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stop propagation between the container's mounts and the host's.
    MakePrivate,
    /// Mount the scratch tmpfs on this directory of the container's own mount namespace.
    Scratch(PathBuf),
    WriteScratch {
        name: &'static str,
        contents: String,
    },
    /// Attach the prepared root at `<scratch>/root`; every later target resolves inside it.
    AttachRoot(RawFd),
    /// Create the mount point when missing. `optional`: skip the following op when it cannot
    /// be created (read-only or foreign-owned image dirs).
    MountPoint {
        target: Target,
        dir: bool,
        optional: bool,
    },
    Mount {
        fstype: &'static str,
        source: &'static str,
        target: Target,
        flags: MsFlags,
        data: Option<String>,
    },
    /// sysfs, or (when the network namespace is not ours, e.g. host network in a user
    /// namespace) a recursive bind of the host's /sys; read-only either way.
    Sysfs(Target),
    BindHost {
        source: PathBuf,
        target: Target,
        attrs: Attrs,
    },
    BindScratch {
        name: &'static str,
        target: Target,
    },
    /// Attach a detached mount that the supervisor prepared (attributes already set).
    Attach {
        fd: RawFd,
        target: Target,
    },
    Symlink {
        target: &'static str,
        link: Target,
    },
    Mask(Target),
    ReadOnlyPath(Target),
    PivotRoot,
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

/// The kernel calls the plan needs. Targets are container paths: an implementation resolves
/// them inside the root attached by [`Kernel::attach_root`], never against the host.
pub trait Kernel {
    fn make_private(&mut self) -> Result<()>;
    /// Mount the scratch tmpfs on `at` and keep a handle on it.
    fn scratch(&mut self, at: &Path) -> Result<()>;
    fn write_scratch(&mut self, name: &str, contents: &str) -> Result<()>;
    /// `move_mount(2)` the detached root `fd` onto `<scratch>/root` and resolve every later
    /// target in it.
    fn attach_root(&mut self, fd: RawFd) -> Result<()>;
    fn kind(&mut self, target: &Target) -> Result<Kind>;
    fn make_mount_point(&mut self, target: &Target, dir: bool) -> Result<()>;
    fn mount(
        &mut self,
        fstype: &str,
        source: &str,
        target: &Target,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    fn bind(&mut self, source: BindSource<'_>, target: &Target, attrs: Attrs) -> Result<()>;
    fn symlink(&mut self, target: &str, link: &Target) -> Result<()>;
    fn pivot_root(&mut self) -> Result<()>;
    fn read_only_root(&mut self) -> Result<()>;
}

/// Inputs of the plan.
pub struct Layout<'a> {
    pub mounts: &'a [MountSpec],
    /// Directory of the container's mount namespace where the scratch tmpfs goes.
    pub scratch: &'a Path,
    pub read_only: bool,
    pub hostname: &'a str,
    pub hosts: &'a str,
    pub resolv_conf: &'a str,
    /// The root and bind mounts the supervisor prepared before clone.
    pub prepared: &'a Prepared,
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
/// must be unmounted by the caller when the container is gone. The root is `nodev`, binds are
/// `nodev` (and read-only when asked), set here before anything is attached.
pub fn prepare(rootfs: &RootfsSource, mounts: &[MountSpec], scratch: &Path) -> Result<Prepared> {
    let root = match rootfs {
        RootfsSource::Dir(d) => {
            let fd = open_tree_clone(d)?;
            set_attrs(fd.as_fd(), &d.display().to_string(), ATTR_NODEV, true)?;
            fd
        }
        RootfsSource::Overlay { lowerdirs, upper } => {
            let (upper, work) = match upper {
                UpperDir::Ephemeral => {
                    nix::mount::mount(
                        Some("tmpfs"),
                        scratch,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some("mode=0755"),
                    )
                    .map_err(|cause| RootfsError::Mount {
                        src: "tmpfs".into(),
                        target: scratch.display().to_string(),
                        fstype: "tmpfs".into(),
                        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        data: Some("mode=0755".into()),
                        cause,
                    })?;
                    let (u, w) = (scratch.join("upper"), scratch.join("work"));
                    mkdir_all(&u)?;
                    mkdir_all(&w)?;
                    (u, w)
                }
                UpperDir::Dir { upper, work } => (upper.clone(), work.clone()),
            };
            let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
            overlay_fd(&lowers, &upper, &work, scratch, ATTR_NODEV)?
        }
    };
    let binds = mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind {
                source, read_only, ..
            } => {
                let dir = std::fs::metadata(source)
                    .map_err(|cause| RootfsError::Io {
                        op: "stat bind-mount source",
                        path: source.clone(),
                        cause,
                    })?
                    .is_dir();
                let fd = open_tree_clone(source)?;
                let ro = if *read_only { ATTR_RDONLY } else { 0 };
                set_attrs(
                    fd.as_fd(),
                    &source.display().to_string(),
                    ATTR_NODEV | ro,
                    true,
                )?;
                Ok(Some((fd, dir)))
            }
            MountSpec::Tmpfs { .. } => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok(Prepared { root, binds })
}

fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|cause| RootfsError::Io {
        op: "mkdir",
        path: path.to_path_buf(),
        cause,
    })
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

const OPEN_TREE_CLONE: u32 = 1;

/// `open_tree(2)`: a detached copy of the mount at `dirfd`/`path`.
fn open_tree(dirfd: RawFd, path: &Path, flags: u32, what: &str) -> Result<OwnedFd> {
    let p = cpath(path);
    // SAFETY: `p` is a valid NUL-terminated string that outlives the call; the kernel only
    // reads it. A non-negative result is a new descriptor that nothing else owns.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            p.as_ptr(),
            flags | OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    } as i32;
    if fd < 0 {
        return Err(RootfsError::Mount {
            src: what.to_string(),
            target: "(detached bind)".into(),
            fstype: "open_tree".into(),
            flags: MsFlags::MS_BIND,
            data: None,
            cause: nix::Error::last(),
        });
    }
    // SAFETY: see above: a fresh descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A detached recursive copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE)`).
fn open_tree_clone(path: &Path) -> Result<OwnedFd> {
    open_tree(
        libc::AT_FDCWD,
        path,
        libc::AT_RECURSIVE as u32,
        &path.display().to_string(),
    )
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on the mount `fd` holds (attached or detached).
fn set_attrs(fd: BorrowedFd<'_>, what: &str, attrs: u64, recursive: bool) -> Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: `attr` is a valid mount_attr of the size passed and outlives the call; the
    // empty path is a static NUL-terminated string. The kernel only reads both.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(RootfsError::Attrs {
            target: what.to_string(),
            attrs,
            cause: nix::Error::last(),
        });
    }
    Ok(())
}

/// `move_mount(2)` the detached mount `from` onto the object `onto` holds.
fn move_mount_onto(from: RawFd, onto: BorrowedFd<'_>, what: &str) -> Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: both paths are static empty NUL-terminated strings; with the EMPTY_PATH flags
    // the kernel uses the two descriptors only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            onto.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(RootfsError::Mount {
            src: format!("(detached mount fd {from})"),
            target: what.to_string(),
            fstype: "move_mount".into(),
            flags: MsFlags::empty(),
            data: None,
            cause: nix::Error::last(),
        });
    }
    Ok(())
}

/// The per-CPU `thermal_throttle` directories docker masks, where this host has them
/// (looked up once per process, as docker does once per daemon).
pub fn thermal_throttle_paths() -> &'static [String] {
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let possible =
            std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
        let mut out = vec![];
        for range in possible.trim().split(',').filter(|r| !r.is_empty()) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
                continue;
            };
            for cpu in a..=b {
                let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
                if Path::new(&p).is_dir() {
                    out.push(p);
                }
            }
        }
        out
    })
}

/// The ordered steps that build the container's root (attached at `<scratch>/root`).
pub fn plan(l: &Layout) -> Vec<Op> {
    fn fixed(p: impl Into<PathBuf>) -> Target {
        Target::fixed(p)
    }
    let mut ops = vec![Op::MakePrivate, Op::Scratch(l.scratch.to_path_buf())];
    for (name, text) in [
        ("hostname", format!("{}\n", l.hostname)),
        ("hosts", l.hosts.to_string()),
        ("resolv.conf", l.resolv_conf.to_string()),
    ] {
        ops.push(Op::WriteScratch {
            name,
            contents: text,
        });
    }
    ops.push(Op::AttachRoot(l.prepared.root.as_raw_fd()));
    let dir = |t: Target| Op::MountPoint {
        target: t,
        dir: true,
        optional: false,
    };
    ops.push(dir(fixed("/proc")));
    ops.push(Op::Mount {
        fstype: "proc",
        source: "proc",
        target: fixed("/proc"),
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    });
    ops.push(dir(fixed("/sys")));
    ops.push(Op::Sysfs(fixed("/sys")));
    ops.push(dir(fixed("/dev")));
    // nodev: the device nodes below are bind mounts of their own, which keep device access.
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "tmpfs",
        target: fixed("/dev"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        data: Some("mode=755,size=65536k".into()),
    });
    for d in DEVICES {
        let t = fixed(format!("/dev/{d}"));
        ops.push(Op::MountPoint {
            target: t.clone(),
            dir: false,
            optional: false,
        });
        ops.push(Op::BindHost {
            source: Path::new("/dev").join(d),
            target: t,
            attrs: Attrs {
                set: ATTR_NOSUID | ATTR_NOEXEC,
                recursive: false,
            },
        });
    }
    ops.push(dir(fixed("/dev/pts")));
    ops.push(Op::Mount {
        fstype: "devpts",
        source: "devpts",
        target: fixed("/dev/pts"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some("newinstance,ptmxmode=0666,mode=0620".into()),
    });
    ops.push(Op::Symlink {
        target: "pts/ptmx",
        link: fixed("/dev/ptmx"),
    });
    ops.push(dir(fixed("/dev/shm")));
    ops.push(Op::Mount {
        fstype: "tmpfs",
        source: "shm",
        target: fixed("/dev/shm"),
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777,size=65536k".into()),
    });
    ops.push(dir(fixed("/dev/mqueue")));
    ops.push(Op::Mount {
        fstype: "mqueue",
        source: "mqueue",
        target: fixed("/dev/mqueue"),
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
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
            link: fixed(format!("/dev/{l}")),
        });
    }
    for name in ["hostname", "hosts", "resolv.conf"] {
        let target = Target::in_root(format!("/etc/{name}"));
        ops.push(Op::MountPoint {
            target: target.clone(),
            dir: false,
            optional: true,
        });
        ops.push(Op::BindScratch { name, target });
    }
    for (i, m) in l.mounts.iter().enumerate() {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let t = Target::in_root(target);
                match l.prepared.binds.get(i).and_then(|b| b.as_ref()) {
                    Some((fd, dir)) => {
                        ops.push(Op::MountPoint {
                            target: t.clone(),
                            dir: *dir,
                            optional: false,
                        });
                        ops.push(Op::Attach {
                            fd: fd.as_raw_fd(),
                            target: t,
                        });
                    }
                    // Not prepared (only in tests): bind the host path from inside.
                    None => {
                        ops.push(Op::MountPoint {
                            target: t.clone(),
                            dir: true,
                            optional: false,
                        });
                        let ro = if *read_only { ATTR_RDONLY } else { 0 };
                        ops.push(Op::BindHost {
                            source: source.clone(),
                            target: t,
                            attrs: Attrs {
                                set: ATTR_NODEV | ro,
                                recursive: true,
                            },
                        });
                    }
                }
            }
            MountSpec::Tmpfs { target, options } => {
                let t = Target::in_root(target);
                ops.push(dir(t.clone()));
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
    for p in MASKED
        .iter()
        .map(|p| p.to_string())
        .chain(thermal_throttle_paths().iter().cloned())
    {
        ops.push(Op::Mask(Target::in_root(p)));
    }
    for p in READ_ONLY {
        ops.push(Op::ReadOnlyPath(Target::in_root(p)));
    }
    ops.push(Op::PivotRoot);
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
            Op::MakePrivate => k.make_private()?,
            Op::Scratch(at) => k.scratch(at)?,
            Op::WriteScratch { name, contents } => k.write_scratch(name, contents)?,
            Op::AttachRoot(fd) => k.attach_root(*fd)?,
            Op::MountPoint {
                target,
                dir,
                optional,
            } => match k.make_mount_point(target, *dir) {
                Err(_) if *optional => skip_next = true,
                r => r?,
            },
            Op::Mount {
                fstype,
                source,
                target,
                flags,
                data,
            } => k.mount(fstype, source, target, *flags, data.as_deref())?,
            Op::Sysfs(target) => {
                let ro = MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC;
                if k.mount("sysfs", "sysfs", target, ro, None).is_err() {
                    k.bind(
                        BindSource::Host(Path::new("/sys")),
                        target,
                        Attrs {
                            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
                            recursive: true,
                        },
                    )?;
                }
            }
            Op::BindHost {
                source,
                target,
                attrs,
            } => k.bind(BindSource::Host(source), target, *attrs)?,
            Op::BindScratch { name, target } => {
                k.bind(BindSource::Scratch(name), target, Attrs::default())?
            }
            Op::Attach { fd, target } => {
                k.bind(BindSource::Detached(*fd), target, Attrs::default())?
            }
            Op::Symlink { target, link } => k.symlink(target, link)?,
            Op::Mask(t) => match k.kind(t)? {
                Kind::Dir => k.mount(
                    "tmpfs",
                    "tmpfs",
                    t,
                    MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
                    Some("size=0"),
                )?,
                Kind::File => k.bind(
                    BindSource::Host(Path::new("/dev/null")),
                    t,
                    Attrs::default(),
                )?,
                Kind::Missing => {}
            },
            Op::ReadOnlyPath(t) => {
                if k.kind(t)? != Kind::Missing {
                    k.bind(
                        BindSource::Itself,
                        t,
                        Attrs {
                            set: ATTR_RDONLY,
                            recursive: true,
                        },
                    )?;
                }
            }
            Op::PivotRoot => k.pivot_root()?,
            Op::ReadOnlyRoot => k.read_only_root()?,
        }
    }
    Ok(())
}

/// Build the container's root as `l` says, on the real kernel; returns in the new root.
pub fn build(l: &Layout) -> Result<()> {
    apply(&plan(l), &mut Real::default())
}

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

/// Join `path` (absolute inside the container) to `root`, resolving symlinks as if `root`
/// were `/`. A string answer the kernel walks again later, so it only suits a tree nobody
/// changes meanwhile (a read-only image view); mount targets use [`super::inroot`].
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

/// The merged view of `lowerdirs` (OCI order, bottom first) as a detached overlay mount, for
/// reading an image's files outside a container (e.g. to fill a new volume). `scratch` holds
/// the (unused) upper and work directories; it must stay until the mount is closed.
pub fn image_view(lowerdirs: &[PathBuf], scratch: &Path) -> Result<OwnedFd> {
    let (u, w) = (scratch.join("upper"), scratch.join("work"));
    mkdir_all(&u)?;
    mkdir_all(&w)?;
    let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
    overlay_fd(&lowers, &u, &w, scratch, ATTR_NODEV)
}

/// Create an overlay with the new mount API and return it as a detached mount with the mount
/// attributes `attrs`. `target` only names the mount in error messages. Each layer is its own
/// `lowerdir+` parameter (topmost first), so the layer count is not capped by mount(2)'s
/// one-page option string.
///
/// Always `userxattr`: the unpacked layers carry overlay's opaque-directory marker as
/// `user.overlay.opaque` (the only form a user namespace can write and read), and an overlay
/// without the option reads `trusted.overlay.*` only, so a directory a later layer replaced
/// would show the lower layers' files again. Real root may use the option too (checked on
/// Linux 6.18), so `--userns=host` mounts the same way. `userxattr` implies no redirects and
/// no metacopy, which we want anyway: the upper dir stays a plain diff.
fn overlay_fd(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    attrs: u64,
) -> Result<OwnedFd> {
    let fail = |fd: i32, step: String, cause: nix::Error| {
        // The filesystem context keeps the kernel's reason as "e overlay: …" messages.
        let mut log = String::new();
        let mut buf = [0u8; 512];
        loop {
            if fd < 0 {
                break;
            }
            // SAFETY: `buf` is writable for its whole length; `fd` is our fs context.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            log.push_str(" [");
            log.push_str(String::from_utf8_lossy(&buf[..n as usize]).trim());
            log.push(']');
        }
        if fd >= 0 {
            // SAFETY: the fs context is ours and not used after this.
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
    // SAFETY: a static NUL-terminated name; the result is a new descriptor or -1.
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
        // SAFETY: key and value are NUL-terminated strings (or null for a flag) that outlive
        // the call; the kernel copies them.
        if unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, k.as_ptr(), v, 0) } < 0 {
            let shown = val
                .map(|v| v.to_string_lossy().to_string())
                .unwrap_or_default();
            return Err((format!("fsconfig {key}={shown}"), nix::Error::last()));
        }
        Ok(())
    };
    let r = (|| {
        for (k, v) in overlay_params(lowers, upper, work) {
            set(k, v.as_ref())?;
        }
        // FSCONFIG_CMD_CREATE.
        // SAFETY: no pointers are passed.
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
    // FSMOUNT_CLOEXEC; `attrs` are MOUNT_ATTR_* bits, the same as mount_setattr's.
    // SAFETY: no pointers; the result is a new descriptor or -1.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fd, 1u32, attrs as u32) } as i32;
    if mfd < 0 {
        return Err(fail(fd, "fsmount".into(), nix::Error::last()));
    }
    // SAFETY: the fs context is ours and done with; `mfd` is a fresh descriptor we now own.
    unsafe { libc::close(fd) };
    Ok(unsafe { OwnedFd::from_raw_fd(mfd) })
}

/// The overlay's fsconfig parameters, in order (`None`: a flag). See [`overlay_fd`].
fn overlay_params(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Vec<(&'static str, Option<CString>)> {
    let mut v: Vec<(&'static str, Option<CString>)> = lowers
        .iter()
        .map(|l| ("lowerdir+", Some(cpath(l))))
        .collect();
    v.push(("upperdir", Some(cpath(upper))));
    v.push(("workdir", Some(cpath(work))));
    v.push(("userxattr", None));
    // With redirect_always_follow (the default), "off" means "create none but follow them",
    // which userxattr rejects; "nofollow" is the same for a fresh upper dir.
    for (k, val) in [
        ("redirect_dir", c"nofollow"),
        ("metacopy", c"off"),
        ("index", c"off"),
    ] {
        v.push((k, Some(val.to_owned())));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stand-ins for the supervisor's detached mounts (the plan only reads their numbers).
    fn prepared(binds: usize) -> Prepared {
        let fd = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        Prepared {
            root: fd(),
            binds: (0..binds).map(|_| Some((fd(), true))).collect(),
        }
    }

    fn layout<'a>(mounts: &'a [MountSpec], p: &'a Prepared, ro: bool) -> Layout<'a> {
        Layout {
            mounts,
            scratch: Path::new("/nonexistent-scratch"),
            read_only: ro,
            hostname: "h",
            hosts: "",
            resolv_conf: "",
            prepared: p,
        }
    }

    fn pos(ops: &[Op], f: impl Fn(&Op) -> bool) -> usize {
        ops.iter().position(f).expect("op present")
    }

    fn target(op: &Op) -> Option<&Target> {
        match op {
            Op::MountPoint { target, .. }
            | Op::Mount { target, .. }
            | Op::Sysfs(target)
            | Op::BindHost { target, .. }
            | Op::BindScratch { target, .. }
            | Op::Attach { target, .. }
            | Op::Mask(target)
            | Op::ReadOnlyPath(target)
            | Op::Symlink { link: target, .. } => Some(target),
            _ => None,
        }
    }

    #[test]
    fn overlay_gets_layers_topmost_first_and_always_userxattr() {
        let lowers: Vec<PathBuf> = vec!["/l/top".into(), "/l/bottom".into()];
        let p = overlay_params(&lowers, Path::new("/u"), Path::new("/w"));
        let keys: Vec<(&str, String)> = p
            .iter()
            .map(|(k, v)| {
                let v = v.as_ref().map(|v| v.to_string_lossy().into_owned());
                (*k, v.unwrap_or_default())
            })
            .collect();
        assert_eq!(keys[0], ("lowerdir+", "/l/top".into()));
        assert_eq!(keys[1], ("lowerdir+", "/l/bottom".into()));
        assert!(keys.contains(&("userxattr", String::new())));
        assert!(keys.contains(&("redirect_dir", "nofollow".into())));
    }

    #[test]
    fn order_private_scratch_root_first_pivot_last_masks_after_proc() {
        let p = prepared(0);
        let ops = plan(&layout(&[], &p, true));
        assert_eq!(ops[0], Op::MakePrivate);
        assert_eq!(ops[1], Op::Scratch("/nonexistent-scratch".into()));
        // Nothing is resolved before the root is attached: every target is inside it.
        let attach = pos(&ops, |o| matches!(o, Op::AttachRoot(_)));
        assert!(ops[..attach].iter().all(|o| target(o).is_none()));
        let pivot = pos(&ops, |o| matches!(o, Op::PivotRoot));
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
            |o| matches!(o, Op::Mount { target, .. } if target.path == Path::new("/dev")),
        );
        assert!(attach < proc_ && proc_ < mask && dev < devpts && mask < pivot);
        assert_eq!(
            ops.iter().filter(|o| matches!(o, Op::Mask(_))).count(),
            MASKED.len() + thermal_throttle_paths().len()
        );
        assert!(ops.contains(&Op::Mask(Target::in_root("/proc/interrupts"))));
    }

    #[test]
    fn kernel_filesystems_refuse_symlinks_and_user_targets_follow_them_inside_the_root() {
        let mounts = [
            MountSpec::Bind {
                source: "/host".into(),
                target: "/data".into(),
                read_only: false,
            },
            MountSpec::Tmpfs {
                target: "/scratch".into(),
                options: None,
            },
        ];
        let p = prepared(1);
        let ops = plan(&layout(&mounts, &p, false));
        for o in &ops {
            let Some(t) = target(o) else { continue };
            let runtime_owned = ["/proc", "/sys", "/dev"]
                .iter()
                .any(|r| t.path == Path::new(r) || t.path.parent() == Some(Path::new(r)))
                && !matches!(o, Op::Mask(_) | Op::ReadOnlyPath(_));
            let want = if runtime_owned {
                Resolve::NoSymlinks
            } else {
                Resolve::InRoot
            };
            assert_eq!(t.resolve, want, "{o:?}");
        }
        assert!(ops.contains(&Op::Attach {
            fd: p.binds[0].as_ref().unwrap().0.as_raw_fd(),
            target: Target::in_root("/data"),
        }));
    }

    #[test]
    fn every_filesystem_but_devpts_is_nodev_and_only_device_binds_allow_devices() {
        let mounts = [MountSpec::Tmpfs {
            target: "/scratch".into(),
            options: None,
        }];
        let p = prepared(0);
        let ops = plan(&layout(&mounts, &p, false));
        for o in &ops {
            if let Op::Mount { fstype, flags, .. } = o {
                assert_eq!(
                    flags.contains(MsFlags::MS_NODEV),
                    *fstype != "devpts",
                    "{o:?}"
                );
            }
            if let Op::BindHost { source, .. } = o {
                assert!(source.starts_with("/dev/"), "{o:?}");
            }
        }
        assert!(ops.contains(&Op::Mount {
            fstype: "mqueue",
            source: "mqueue",
            target: Target::fixed("/dev/mqueue"),
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        }));
    }

    /// Records calls; sysfs fails (as with host networking in a user namespace) and mount
    /// points under /etc cannot be made.
    #[derive(Default)]
    struct Rec(Vec<String>);
    impl Kernel for Rec {
        fn make_private(&mut self) -> Result<()> {
            Ok(())
        }
        fn scratch(&mut self, _: &Path) -> Result<()> {
            Ok(())
        }
        fn write_scratch(&mut self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        fn attach_root(&mut self, fd: RawFd) -> Result<()> {
            self.0.push(format!("root {fd}"));
            Ok(())
        }
        fn kind(&mut self, t: &Target) -> Result<Kind> {
            Ok(if t.path.starts_with("/proc") {
                Kind::File
            } else {
                Kind::Missing
            })
        }
        fn make_mount_point(&mut self, t: &Target, _: bool) -> Result<()> {
            if t.path.starts_with("/etc") {
                return Err(RootfsError::Resolve {
                    op: "create mount point",
                    path: t.shown(),
                    cause: nix::Error::EACCES,
                });
            }
            Ok(())
        }
        fn mount(
            &mut self,
            f: &str,
            _: &str,
            t: &Target,
            _: MsFlags,
            _: Option<&str>,
        ) -> Result<()> {
            if f == "sysfs" {
                return Err(RootfsError::Mount {
                    src: "sysfs".into(),
                    target: t.shown(),
                    fstype: "sysfs".into(),
                    flags: MsFlags::empty(),
                    data: None,
                    cause: nix::Error::EPERM,
                });
            }
            self.0.push(format!("mount {f} {}", t.shown()));
            Ok(())
        }
        fn bind(&mut self, s: BindSource<'_>, t: &Target, a: Attrs) -> Result<()> {
            self.0.push(format!("bind {s:?} {} {a:?}", t.shown()));
            Ok(())
        }
        fn symlink(&mut self, _: &str, _: &Target) -> Result<()> {
            Ok(())
        }
        fn pivot_root(&mut self) -> Result<()> {
            self.0.push("pivot".into());
            Ok(())
        }
        fn read_only_root(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn sysfs_falls_back_to_a_read_only_bind_and_optional_targets_are_skipped() {
        let p = prepared(0);
        let ops = plan(&layout(&[], &p, false));
        let mut k = Rec::default();
        apply(&ops, &mut k).unwrap();
        let sys = format!(
            "bind Host(\"/sys\") /sys {:?}",
            Attrs {
                set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC,
                recursive: true
            }
        );
        assert!(k.0.contains(&sys), "{:?}", k.0);
        assert!(
            !k.0.iter().any(|l| l.contains("/etc/")),
            "binds skipped when their mount point cannot be made: {:?}",
            k.0
        );
        // Masks: Rec says every /proc path is a file, so /dev/null goes over each.
        assert!(
            k.0.iter()
                .any(|l| l.starts_with("bind Host(\"/dev/null\") /proc/interrupts"))
        );
        assert_eq!(k.0.last().map(String::as_str), Some("pivot"));
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
