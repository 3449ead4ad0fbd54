//! What the supervisor mounts before clone, as detached mount fds (`open_tree(2)`,
//! `fsopen(2)`/`fsconfig(2)`/`fsmount(2)`, `mount_setattr(2)`): the container's root and its
//! bind-mount sources; the container only attaches them ([`move_mount_onto`]).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::{ATTR_NODEV, ATTR_RDONLY, Result, RootfsError};
use crate::run::spec::{MountSpec, RootfsSource, UpperDir};

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
    /// The detached tmpfs that holds an ephemeral upper and work dir, when there is one. The
    /// overlay keeps its own reference to the upper, but closing the last descriptor of a
    /// detached mount unmounts it, and every unmount waits for an RCU grace period (0.1 ms
    /// and more on a VM whose other vCPU sleeps): the supervisor keeps it until the container
    /// is gone instead of closing it on the start path ([`Prepared::take_scratch`]).
    pub scratch: Option<OwnedFd>,
    /// Where pid 1 receives the container's /dev as a detached tree made ahead of it
    /// (`run::prestart`), which it attaches instead of building /dev itself: a socket that
    /// the supervisor keeps open until pid 1 has exec'd.
    pub dev_from: Option<RawFd>,
}

impl Prepared {
    /// The detached scratch tmpfs, for the caller to keep past the container's start.
    pub fn take_scratch(&mut self) -> Option<OwnedFd> {
        self.scratch.take()
    }
}

/// Prepare the rootfs and bind mounts. An ephemeral upper lives on a detached tmpfs; where the
/// kernel refuses that, `scratch` (the container's scratch directory, created here) gets a
/// tmpfs mounted in the tool's private mount namespace, which the caller unmounts and removes
/// when the container is gone. The root is `nodev`, binds are
/// `nodev` (and read-only when asked), set here before anything is attached.
pub fn prepare(rootfs: &RootfsSource, mounts: &[MountSpec], scratch: &Path) -> Result<Prepared> {
    // Held until the overlay is made, and then by the caller (see `Prepared::scratch`).
    let mut held_tmpfs = None;
    let root = match rootfs {
        RootfsSource::Dir(d) => {
            let fd = open_tree_clone(d)?;
            set_attrs(fd.as_fd(), &d.display().to_string(), ATTR_NODEV, true)?;
            fd
        }
        RootfsSource::Overlay { lowerdirs, upper } => {
            let upper_kind = upper;
            let (upper, work) = match upper {
                UpperDir::Ephemeral => match detached_tmpfs() {
                    // Nothing on the host: the overlay's upper and work dirs are named through
                    // the detached tmpfs's descriptor (kernels that accept a detached upper).
                    Some(t) => {
                        let at = PathBuf::from(format!("/proc/self/fd/{}", t.as_raw_fd()));
                        held_tmpfs = Some(t);
                        (at.join("upper"), at.join("work"))
                    }
                    None => scratch_tmpfs(scratch)?,
                },
                UpperDir::Dir { upper, work } => (upper.clone(), work.clone()),
            };
            let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
            // A kept upper dir (a build step's) is made durable by its owner at commit (one
            // syncfs before the layer is published), so the overlay need not honour every
            // fsync on the way: "volatile" skips them, as a tmpfs upper does for boxrun.
            let volatile = matches!(upper_kind, UpperDir::Dir { .. });
            match overlay_fd(&lowers, &upper, &work, scratch, ATTR_NODEV, volatile) {
                Ok(fd) => fd,
                // An overlay that refuses an upper on a detached mount (before Linux 6.15
                // it had to be in the caller's mount namespace): the tmpfs on `scratch`.
                Err(_) if held_tmpfs.is_some() => {
                    held_tmpfs = None;
                    let (upper, work) = scratch_tmpfs(scratch)?;
                    overlay_fd(&lowers, &upper, &work, scratch, ATTR_NODEV, volatile)?
                }
                Err(e) => return Err(e),
            }
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
    Ok(Prepared {
        root,
        binds,
        scratch: held_tmpfs,
        dev_from: None,
    })
}

/// A tmpfs for an ephemeral upper as a detached mount (`fsopen`/`fsmount`, nosuid, nodev)
/// holding `upper` and `work`; `None` when the kernel refuses any step (then the caller mounts
/// one on a directory). Nothing is created on the host, and nothing needs unmounting: the
/// mount goes with its last reference.
fn detached_tmpfs() -> Option<OwnedFd> {
    // The fallback is every pre-6.15 kernel's path; this switch lets the tests take it here.
    if std::env::var_os("BOX_DEBUG_SCRATCH_UPPER").is_some() {
        return None;
    }
    // SAFETY: a static NUL-terminated name; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 1u32) } as i32;
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor (checked above) that nothing else owns.
    let ctx = unsafe { OwnedFd::from_raw_fd(fd) };
    let mode = CString::new("0755").ok()?;
    fs_config(&ctx, "mode", Some(&mode)).ok()?;
    fs_create(&ctx).ok()?;
    // FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV.
    // SAFETY: no pointers; the result is a new descriptor or -1.
    let m =
        unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), 1u32, 0x2u32 | 0x4u32) } as i32;
    if m < 0 {
        return None;
    }
    // SAFETY: `m` is a fresh descriptor (checked above) that we now own.
    let mnt = unsafe { OwnedFd::from_raw_fd(m) };
    for d in ["upper", "work"] {
        nix::sys::stat::mkdirat(&mnt, d, nix::sys::stat::Mode::from_bits_truncate(0o755)).ok()?;
    }
    Some(mnt)
}

/// The fallback for [`detached_tmpfs`]: create `scratch` and mount a tmpfs on it (in the
/// tool's private mount namespace); the caller unmounts and removes it when the container is
/// gone.
fn scratch_tmpfs(scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    match std::fs::create_dir(scratch) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(cause) => {
            return Err(RootfsError::Io {
                op: "create the scratch directory",
                path: scratch.to_path_buf(),
                cause,
            });
        }
    }
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
    Ok((u, w))
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
pub(super) fn open_tree(dirfd: RawFd, path: &Path, flags: u32, what: &str) -> Result<OwnedFd> {
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
pub(super) fn set_attrs(fd: BorrowedFd<'_>, what: &str, attrs: u64, recursive: bool) -> Result<()> {
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
pub(super) fn move_mount_onto(from: RawFd, onto: BorrowedFd<'_>, what: &str) -> Result<()> {
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

/// The merged view of `lowerdirs` (OCI order, bottom first) as a detached overlay mount, for
/// reading an image's files outside a container (e.g. to fill a new volume). `scratch` holds
/// the (unused) upper and work directories; it must stay until the mount is closed.
pub fn image_view(lowerdirs: &[PathBuf], scratch: &Path) -> Result<OwnedFd> {
    let (u, w) = (scratch.join("upper"), scratch.join("work"));
    mkdir_all(&u)?;
    mkdir_all(&w)?;
    let lowers: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
    overlay_fd(&lowers, &u, &w, scratch, ATTR_NODEV, false)
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
    volatile: bool,
) -> Result<OwnedFd> {
    let fail = |ctx: Option<&OwnedFd>, step: String, cause: nix::Error| RootfsError::Overlay {
        target: target.to_path_buf(),
        layers: lowers.len(),
        upper: upper.to_path_buf(),
        step,
        cause,
        log: ctx.map(fs_context_log).unwrap_or_default(),
    };
    // SAFETY: a static NUL-terminated name; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 1u32) } as i32;
    if fd < 0 {
        return Err(fail(None, "fsopen".into(), nix::Error::last()));
    }
    // SAFETY: a fresh descriptor (checked above) that nothing else owns.
    let ctx = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut params = overlay_params(lowers, upper, work);
    if volatile {
        params.push(("volatile", None));
    }
    let r = params
        .iter()
        .try_for_each(|(k, v)| fs_config(&ctx, k, v.as_ref()))
        .and_then(|()| fs_create(&ctx));
    if let Err((step, cause)) = r {
        return Err(fail(Some(&ctx), step, cause));
    }
    // FSMOUNT_CLOEXEC; `attrs` are MOUNT_ATTR_* bits, the same as mount_setattr's.
    // SAFETY: no pointers; the result is a new descriptor or -1.
    let mfd =
        unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), 1u32, attrs as u32) } as i32;
    if mfd < 0 {
        return Err(fail(Some(&ctx), "fsmount".into(), nix::Error::last()));
    }
    // SAFETY: `mfd` is a fresh descriptor (checked above) that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(mfd) })
}

/// The kernel's reasons kept in a filesystem context, as " [e overlay: …]" messages.
fn fs_context_log(ctx: &OwnedFd) -> String {
    let mut log = String::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = nix::unistd::read(ctx, &mut buf) {
        if n == 0 {
            break;
        }
        log.push_str(" [");
        log.push_str(String::from_utf8_lossy(&buf[..n]).trim());
        log.push(']');
    }
    log
}

/// `fsconfig(2)` one parameter: a string (`FSCONFIG_SET_STRING`) or, with no value, a flag
/// (`FSCONFIG_SET_FLAG`). Errs with the step and the cause.
fn fs_config(
    ctx: &OwnedFd,
    key: &str,
    val: Option<&CString>,
) -> std::result::Result<(), (String, nix::Error)> {
    let k = CString::new(key).unwrap_or_default();
    let (cmd, v) = match val {
        Some(v) => (1u32, v.as_ptr()),
        None => (0u32, std::ptr::null()),
    };
    // SAFETY: key and value are NUL-terminated strings (or null for a flag) that outlive
    // the call; the kernel copies them.
    if unsafe { libc::syscall(libc::SYS_fsconfig, ctx.as_raw_fd(), cmd, k.as_ptr(), v, 0) } < 0 {
        let shown = val
            .map(|v| v.to_string_lossy().to_string())
            .unwrap_or_default();
        return Err((format!("fsconfig {key}={shown}"), nix::Error::last()));
    }
    Ok(())
}

/// `FSCONFIG_CMD_CREATE`: make the superblock from the parameters given.
fn fs_create(ctx: &OwnedFd) -> std::result::Result<(), (String, nix::Error)> {
    // SAFETY: no pointers are passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            6u32,
            std::ptr::null::<i8>(),
            std::ptr::null::<i8>(),
            0,
        )
    };
    if r < 0 {
        return Err(("fsconfig create".to_string(), nix::Error::last()));
    }
    Ok(())
}

/// The overlay's fsconfig parameters, in order (`None`: a flag). See [`overlay_fd`].
pub(super) fn overlay_params(
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
