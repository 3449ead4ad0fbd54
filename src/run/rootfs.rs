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
//!
//! - `plan`: the steps, pure ([`plan()`], [`apply`]);
//! - `real`: [`Real`], the [`Kernel`] on the real kernel, targets resolved with [`super::inroot`];
//! - `detached`: what the supervisor mounts before clone — the overlay (new mount API) or the
//!   plain root, and the bind sources — as detached mount fds ([`prepare`], [`image_view`]).

mod detached;
mod plan;
mod real;

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use thiserror::Error;

use super::inroot::{self, Resolve};
use super::spec::MountSpec;

pub use detached::{Prepared, image_view, prepare};
pub use plan::{apply, plan};
pub use real::Real;

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

/// The symlinks of the container's /dev (name, target), made after devpts.
pub const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

// mount_setattr(2) attributes.
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;

pub(crate) const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
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
    pub(crate) fn shown(&self) -> String {
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
    /// Receive the /dev tree made ahead (`run::prestart`) over `sock` and attach it at /dev;
    /// when none comes, build /dev here with a /dev/shm of `shm_size` bytes.
    DevAhead {
        sock: RawFd,
        shm_size: Option<u64>,
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
    /// A detached mount tree received over `sock` (`None` when the sender sent none).
    fn receive_tree(&mut self, sock: RawFd) -> Option<OwnedFd>;
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
    /// Size of /dev/shm in bytes (docker's 64 MiB when None).
    pub shm_size: Option<u64>,
    /// The root and bind mounts the supervisor prepared before clone.
    pub prepared: &'a Prepared,
    /// Mount a new /proc; otherwise bind the job's /proc read-only (a masked /proc, as in a
    /// CI job container, cannot be mounted again).
    pub new_proc: bool,
}

/// Build the container's root as `l` says, on the real kernel; returns in the new root.
pub fn build(l: &Layout) -> Result<()> {
    apply(&plan(l), &mut Real::default())
}

/// The per-CPU `thermal_throttle` directories docker masks, where this host has them
/// (looked up once per process, as docker does once per daemon).
pub fn thermal_throttle_paths() -> &'static [String] {
    static PATHS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let possible = crate::procfs::read("/sys/devices/system/cpu/possible").unwrap_or_default();
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

#[cfg(test)]
mod tests;
