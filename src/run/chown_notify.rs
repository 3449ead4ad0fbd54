//! `chown` where only container root is mapped: emulated through seccomp user notification.
//!
//! Without a subordinate id range the tool's user namespace maps container root alone, and the
//! kernel refuses `chown(f, 1234, 1234)` with EINVAL before any filesystem sees the ids. Image
//! content then records such owners in the `user.boxkit.owner` xattr (see
//! [`crate::layer::Ownership::Xattr`]), which packing turns back into the tar header's ids. For
//! `RUN chown` to do the same, the container's first process installs a small filter that
//! answers `chown`, `fchown`, `lchown` and `fchownat` with `SECCOMP_RET_USER_NOTIF` and hands
//! the listener (`SECCOMP_FILTER_FLAG_NEW_LISTENER`) to the supervisor over a socketpair
//! (`SCM_RIGHTS`). Filters stack and the kernel keeps the most restrictive result, so the
//! container's own profile (and the job runtime's) still decides first: a chown they deny
//! never reaches us.
//!
//! A thread of the supervisor serves each request as the container would have seen it: it
//! reads the path from its memory (`process_vm_readv`), checks that the request is still live
//! (`SECCOMP_IOCTL_NOTIF_ID_VALID`), then walks the path itself, one component at a time
//! from `/proc/PID/cwd`, the directory descriptor or `/proc/PID/root` (see [`resolve`]): `..`
//! stops at the container's root, an absolute symlink starts again there, and no magic link
//! (`/proc/self/...`) is followed, so nothing outside the container is reached. (chroot(2)
//! would be simpler, but a job runtime's seccomp profile refuses it without CAP_SYS_CHROOT,
//! as in a Kubernetes `restricted` pod.) On the object it found it makes a real chown to the
//! ids the container already
//! has (container root; `-1` stays `-1`), which gives the kernel's side effects and errors
//! (setuid/setgid and file capabilities cleared, EROFS, EPERM on a file container root does
//! not own), then records the owner: the xattr for a regular file or directory, removed for
//! 0:0. Ids outside the container range get EINVAL, as from the kernel; a change of owner
//! without CAP_CHOWN in the caller's effective set gets EPERM.
//!
//! Not emulated: symlinks, fifos and sockets cannot carry `user.*` xattrs, so chowning one
//! succeeds and changes nothing; `stat` shows the real owner (root), not the recorded one;
//! x32 and i386 entry points go to the kernel (EINVAL for other ids); a path through a magic
//! link (`/proc/self/fd/N`) gets ELOOP; and setuid to another user still fails.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::stat::{Mode, SFlag, fstat};
use thiserror::Error;

use crate::layer::{DEFAULT_MAX_ID, OWNER_XATTR, format_owner, parse_owner};

#[derive(Debug, Error)]
pub enum ChownNotifyError {
    #[error("chown emulation: {op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
}

type Result<T> = std::result::Result<T, ChownNotifyError>;

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ChownNotifyError {
    move |cause| ChownNotifyError::Sys { op, cause }
}

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xc000_003e;
/// chown, fchown, lchown, fchownat.
#[cfg(target_arch = "x86_64")]
const CALLS: [(u32, Call); 4] = [
    (92, Call::Chown),
    (93, Call::Fchown),
    (94, Call::Lchown),
    (260, Call::Fchownat),
];
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xc000_00b7;
/// aarch64 has only fchownat and fchown.
#[cfg(target_arch = "aarch64")]
const CALLS: [(u32, Call); 2] = [(54, Call::Fchownat), (55, Call::Fchown)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Chown,
    Fchown,
    Lchown,
    Fchownat,
}

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The filter: native chown calls → USER_NOTIF, everything else → ALLOW (the other filters
/// decide about it).
fn program() -> Vec<libc::sock_filter> {
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let n = CALLS.len();
    let mut p = vec![stmt(ld, 4)];
    // Another audit architecture: straight to ALLOW (over ld nr and the n compares).
    let mut j = stmt(jeq, ARCH);
    j.jf = (n + 1) as u8;
    p.push(j);
    p.push(stmt(ld, 0));
    for (i, (nr, _)) in CALLS.iter().enumerate() {
        let mut j = stmt(jeq, *nr);
        // Match: over the remaining compares and the ALLOW, to USER_NOTIF.
        j.jt = (n - i) as u8;
        p.push(j);
    }
    p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
    p
}

/// The two ends of the channel the listener travels on.
pub struct Channel {
    pub supervisor: OwnedFd,
    pub container: OwnedFd,
}

/// A socketpair for the listener, made by the supervisor before clone.
pub fn channel() -> Result<Channel> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;
    Ok(Channel {
        supervisor: a,
        container: b,
    })
}

/// In the container's first process, before the rest of its seccomp filter and before its
/// descriptors are closed: install the notify filter and send its listener over `sock`.
pub fn install_and_send(sock: RawFd) -> Result<()> {
    let p = program();
    let prog = libc::sock_fprog {
        len: p.len() as u16,
        filter: p.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `p.len()` initialised instructions that outlive the call; the
    // kernel copies them. The result is a new descriptor we own (or -1).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(sys("install the chown notify filter")(nix::Error::last()));
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let listener = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let fds = [listener.as_raw_fd()];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(b"L")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(sys("send the chown notify listener"))?;
    Ok(())
}

/// The supervisor's server thread; stopped and joined on drop.
pub struct Server {
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve the listener the container sends on `sock` until the container is gone.
    /// `root_may_chown`: the container's capability set has CAP_CHOWN, so its root may chown
    /// even where the job's bounding set took the capability away at exec (a job run with
    /// `--cap-drop=all`): the emulated chown follows the container's set, not the job's.
    pub fn start(sock: OwnedFd, root_may_chown: bool) -> Result<Server> {
        let (stop_r, stop_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        let thread = std::thread::Builder::new()
            .name("chown-notify".into())
            .spawn(move || {
                if let Err(e) = serve(&sock, &stop_r, root_may_chown) {
                    eprintln!("boxkit: warning: {e}; chown in this container is not emulated");
                }
            })
            .map_err(|e| {
                sys("start the chown notify thread")(nix::Error::from_raw(
                    e.raw_os_error().unwrap_or(libc::EAGAIN),
                ))
            })?;
        Ok(Server {
            stop: Some(stop_w),
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait until `fd` is readable (true) or `stop` is closed (false).
fn wait(fd: BorrowedFd, stop: BorrowedFd) -> Result<bool> {
    let mut fds = [
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(stop, PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("poll")(e)),
            Ok(_) => {}
        }
        let got = |f: &PollFd| f.revents().unwrap_or(PollFlags::empty());
        if !got(&fds[1]).is_empty() {
            return Ok(false);
        }
        let r = got(&fds[0]);
        if r.contains(PollFlags::POLLIN) {
            return Ok(true);
        }
        // POLLHUP: the container side is gone (socket closed, or no task uses the filter).
        if !r.is_empty() {
            return Ok(false);
        }
    }
}

fn serve(sock: &OwnedFd, stop: &OwnedFd, root_may_chown: bool) -> Result<()> {
    if !wait(sock.as_fd(), stop.as_fd())? {
        return Ok(());
    }
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("receive the chown notify listener"))?;
    let Some(listener) = msg
        .cmsgs()
        .ok()
        .into_iter()
        .flatten()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().map(|fd| {
                // SAFETY: SCM_RIGHTS gave this process a new descriptor nothing else owns.
                unsafe { OwnedFd::from_raw_fd(*fd) }
            }),
            _ => None,
        })
    else {
        // The container ended (or failed) before installing the filter.
        return Ok(());
    };
    // The fchdir in `apply` is this thread's alone.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(sys("unshare(CLONE_FS)"))?;
    let proc = nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open /proc"))?;
    // Requests name tasks by their pid in our pid namespace: /proc must be of that namespace.
    let me = nix::fcntl::readlinkat(proc.as_fd(), "self").map_err(sys("readlink /proc/self"))?;
    if me.to_str() != Some(&std::process::id().to_string()) {
        return Err(sys("/proc is not of the supervisor's pid namespace")(
            nix::Error::ESRCH,
        ));
    }
    while wait(listener.as_fd(), stop.as_fd())? {
        // SAFETY: an all-zero seccomp_notif is the valid empty request RECV wants.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV writes one seccomp_notif into `req`, which is exactly that size.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req,
            )
        } < 0
        {
            match nix::Error::last() {
                // Interrupted, or the task went away before we read it.
                nix::Error::EINTR | nix::Error::ENOENT => continue,
                e => return Err(sys("receive a chown request")(e)),
            }
        }
        let errno = match handle(&Request {
            listener: listener.as_fd(),
            proc: proc.as_fd(),
            n: &req,
            root_may_chown,
        }) {
            Ok(()) => 0,
            Err(e) => e as i32,
        };
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: -errno,
            flags: 0,
        };
        // SAFETY: SEND reads one seccomp_notif_resp from `resp`. ENOENT (the task died
        // meanwhile) needs nothing from us.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            )
        };
    }
    Ok(())
}

/// One request and what serving it needs.
struct Request<'a> {
    listener: BorrowedFd<'a>,
    /// The tool's /proc.
    proc: BorrowedFd<'a>,
    n: &'a libc::seccomp_notif,
    /// See [`Server::start`].
    root_may_chown: bool,
}

/// What a chown asks for, decoded from its arguments.
struct Ask {
    /// The directory a relative path starts at: the cwd, or fchownat's descriptor.
    at: Option<i32>,
    /// The address of the path; None for fchown (the descriptor itself).
    path: Option<u64>,
    /// AT_EMPTY_PATH: an empty path names the descriptor itself.
    empty_ok: bool,
    follow: bool,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn decode(call: Call, a: &[u64; 6]) -> std::result::Result<Ask, nix::Error> {
    let id = |v: u64| (v as u32 != u32::MAX).then_some(v as u32);
    Ok(match call {
        Call::Chown | Call::Lchown => Ask {
            at: None,
            path: Some(a[0]),
            empty_ok: false,
            follow: call == Call::Chown,
            uid: id(a[1]),
            gid: id(a[2]),
        },
        Call::Fchown => Ask {
            at: Some(a[0] as i32),
            path: None,
            empty_ok: false,
            follow: true,
            uid: id(a[1]),
            gid: id(a[2]),
        },
        Call::Fchownat => {
            let flags = a[4] as i32;
            if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
                return Err(nix::Error::EINVAL);
            }
            Ask {
                at: (a[0] as i32 != libc::AT_FDCWD).then_some(a[0] as i32),
                path: Some(a[1]),
                empty_ok: flags & libc::AT_EMPTY_PATH != 0,
                follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                uid: id(a[2]),
                gid: id(a[3]),
            }
        }
    })
}

fn handle(r: &Request) -> std::result::Result<(), nix::Error> {
    let n = r.n;
    if n.data.arch != ARCH {
        return Err(nix::Error::ENOSYS);
    }
    let call = CALLS
        .iter()
        .find(|(nr, _)| *nr as i32 == n.data.nr)
        .map(|(_, c)| *c)
        .ok_or(nix::Error::ENOSYS)?;
    let ask = decode(call, &n.data.args)?;
    for id in [ask.uid, ask.gid].into_iter().flatten() {
        if id >= DEFAULT_MAX_ID {
            // What the kernel answers for an id the namespace does not map.
            return Err(nix::Error::EINVAL);
        }
    }
    let pid = n.pid;
    let path = match ask.path {
        Some(addr) => Some(read_path(pid, addr)?),
        None => None,
    };
    let base = match ask.at {
        Some(fd) => open_proc(r.proc, &format!("{pid}/fd/{fd}"), OFlag::empty())?,
        None => open_proc(r.proc, &format!("{pid}/cwd"), OFlag::O_DIRECTORY)?,
    };
    let root = open_proc(r.proc, &format!("{pid}/root"), OFlag::O_DIRECTORY)?;
    let caps = cap_chown(r.proc, pid, r.root_may_chown);
    // Everything read about the task belongs to the task that asked, not to a reused pid.
    valid(r.listener, n.id)?;
    let obj = match path.as_ref() {
        Some(p) if p.as_bytes().is_empty() && ask.empty_ok => base,
        Some(p) if p.as_bytes().is_empty() => return Err(nix::Error::ENOENT),
        Some(p) => resolve(&root, &base, p, ask.follow)?,
        None => base,
    };
    apply(r.proc, &obj, ask.uid, ask.gid, caps)
}

/// O_PATH open of `rel` in the tool's /proc (magic links followed: they are the point).
fn open_proc(
    proc: BorrowedFd,
    rel: &str,
    extra: OFlag,
) -> std::result::Result<OwnedFd, nix::Error> {
    openat(
        proc,
        rel,
        OFlag::O_PATH | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // The task is gone.
        nix::Error::ENOENT | nix::Error::ESRCH => nix::Error::ESRCH,
        e => e,
    })
}

/// Whether the task may change owners: CAP_CHOWN in its effective set, or it is container
/// root and the container's set has CAP_CHOWN (read from /proc/PID/status with plain reads
/// into a fixed buffer: this runs for every request).
fn cap_chown(proc: BorrowedFd, pid: u32, root_may_chown: bool) -> bool {
    let Ok(fd) = openat(
        proc,
        format!("{pid}/status").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut buf = [0u8; 8192];
    let mut len = 0;
    while len < buf.len() {
        match nix::unistd::read(&fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let has_cap = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_CHOWN) != 0);
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid_root = text
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        == Some("0");
    has_cap || (root_may_chown && euid_root)
}

/// CAP_CHOWN's bit in a capability set.
const CAP_CHOWN: u32 = 0;

fn valid(listener: BorrowedFd, id: u64) -> std::result::Result<(), nix::Error> {
    let mut id = id;
    // SAFETY: ID_VALID reads one u64 from `id`.
    if unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id,
        )
    } < 0
    {
        return Err(nix::Error::ESRCH);
    }
    Ok(())
}

/// The NUL-terminated path at `addr` in the task's memory, read a page at a time (the
/// string may end just before an unmapped page) with process_vm_readv (the same ptrace
/// check as /proc/PID/mem, without opening it).
fn read_path(pid: u32, addr: u64) -> std::result::Result<CString, nix::Error> {
    use nix::sys::uio::{RemoteIoVec, process_vm_readv};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let mut out = Vec::new();
    let mut at = addr;
    let mut buf = [0u8; 4096];
    while out.len() < libc::PATH_MAX as usize {
        let room = 4096 - (at % 4096) as usize;
        let remote = [RemoteIoVec {
            base: at as usize,
            len: room,
        }];
        let n = process_vm_readv(pid, &mut [IoSliceMut::new(&mut buf[..room])], &remote)
            .map_err(|_| nix::Error::EFAULT)?;
        if n == 0 {
            return Err(nix::Error::EFAULT);
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return CString::new(out).map_err(|_| nix::Error::EINVAL);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    Err(nix::Error::ENAMETOOLONG)
}

/// The object `path` names for the task, walked as the kernel would inside the container:
/// from `base` (or `root` for an absolute path), one component at a time with
/// `openat2(RESOLVE_NO_MAGICLINKS)`; `..` at the container's root stays there; a symlink
/// (the last one only when `follow`) is read and walked on, from `root` when absolute, at
/// most 40 of them (ELOOP).
fn resolve(
    root: &OwnedFd,
    base: &OwnedFd,
    path: &CString,
    follow: bool,
) -> std::result::Result<OwnedFd, nix::Error> {
    let id = |fd: &OwnedFd| fstat(fd).map(|s| (s.st_dev, s.st_ino));
    let root_id = id(root)?;
    let bytes = path.as_bytes();
    let mut cur = if bytes.starts_with(b"/") {
        root.try_clone()
    } else {
        base.try_clone()
    }
    .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))?;
    // Components still to walk, the next one last.
    let mut todo: Vec<Vec<u8>> = bytes
        .split(|b| *b == b'/')
        .rev()
        .map(<[u8]>::to_vec)
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == b"." {
            continue;
        }
        let last = todo.iter().all(|c| c.is_empty() || c == b".");
        if c == b".." {
            if id(&cur)? != root_id {
                cur = openat(
                    &cur,
                    "..",
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
            }
            continue;
        }
        let name = CString::new(c).map_err(|_| nix::Error::EINVAL)?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_BENEATH);
        let next = openat2(cur.as_fd(), name.as_c_str(), how)?;
        let kind = SFlag::from_bits_truncate(fstat(&next)?.st_mode & libc::S_IFMT);
        if kind == SFlag::S_IFLNK && (!last || follow) {
            hops += 1;
            if hops > 40 {
                return Err(nix::Error::ELOOP);
            }
            let target = nix::fcntl::readlinkat(&next, "")?;
            let t = target.as_encoded_bytes();
            if t.starts_with(b"/") {
                cur = root
                    .try_clone()
                    .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))?;
            }
            todo.extend(t.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
            continue;
        }
        if !last && kind != SFlag::S_IFDIR {
            return Err(nix::Error::ENOTDIR);
        }
        cur = next;
    }
    Ok(cur)
}

/// Chown `obj` as the kernel would have, recording the owner in the xattr.
fn apply(
    proc: BorrowedFd,
    obj: &OwnedFd,
    uid: Option<u32>,
    gid: Option<u32>,
    cap_chown: bool,
) -> std::result::Result<(), nix::Error> {
    let st = fstat(obj)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let carries = kind == SFlag::S_IFREG || kind == SFlag::S_IFDIR;
    // The object as a path the xattr calls follow: /proc/self/fd/N of the tool.
    nix::unistd::fchdir(proc)?;
    let link = CString::new(format!("thread-self/fd/{}", obj.as_raw_fd()))
        .map_err(|_| nix::Error::EINVAL)?;
    let current = if carries { get_owner(&link)? } else { (0, 0) };
    let want = (uid.unwrap_or(current.0), gid.unwrap_or(current.1));
    if want != current && !cap_chown {
        return Err(nix::Error::EPERM);
    }
    // The real chown, to the ids the file really has: its side effects and its errors.
    let root = |v: Option<u32>| v.map(|_| 0u32);
    nix::unistd::fchownat(
        obj,
        "",
        root(uid).map(nix::unistd::Uid::from_raw),
        root(gid).map(nix::unistd::Gid::from_raw),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )?;
    if !carries {
        return Ok(());
    }
    set_owner(&link, want)
}

fn get_owner(link: &CString) -> std::result::Result<(u32, u32), nix::Error> {
    let name = CString::new(OWNER_XATTR).map_err(|_| nix::Error::EINVAL)?;
    let mut buf = [0u8; 32];
    // SAFETY: both strings are NUL-terminated and live; the buffer is writable for its length.
    let n = unsafe {
        libc::getxattr(
            link.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return match nix::Error::last() {
            nix::Error::ENODATA | nix::Error::ENOTSUP => Ok((0, 0)),
            e => Err(e),
        };
    }
    Ok(parse_owner(&buf[..n as usize]).unwrap_or((0, 0)))
}

fn set_owner(link: &CString, (uid, gid): (u32, u32)) -> std::result::Result<(), nix::Error> {
    let name = CString::new(OWNER_XATTR).map_err(|_| nix::Error::EINVAL)?;
    let rc = if (uid, gid) == (0, 0) {
        // SAFETY: both strings are NUL-terminated and live.
        let rc = unsafe { libc::removexattr(link.as_ptr(), name.as_ptr()) };
        if rc < 0 && nix::Error::last() == nix::Error::ENODATA {
            return Ok(());
        }
        rc
    } else {
        let v = format_owner(uid, gid);
        // SAFETY: both strings are NUL-terminated and live; the value is one live slice.
        unsafe { libc::setxattr(link.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) }
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
