//! The container process: from clone to exec, and the supervisor that waits for it.
//!
//! The supervisor blocks the signals it forwards (and SIGCHLD) before `clone(2)`, so none is
//! lost, and later reads them from a signalfd. The child — pid 1 of its pid namespace — waits
//! on a pipe until the host side (cgroup, network) is ready, builds its root (see
//! [`super::rootfs`]), resolves the user against the image's /etc/passwd, sets capabilities
//! and ids, and execs the command, which therefore *is* pid 1 (unless `init`: then the child
//! stays as a tiny init that reaps orphans and forwards signals to the command). Setup errors
//! travel back on a close-on-exec pipe: EOF with no message means the exec happened. The
//! supervisor forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH,
//! relays a pseudo-terminal when asked, and maps the wait status the way docker does
//! (exit n → n, killed by signal n → 128+n).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use thiserror::Error;

use super::agent::Request;
use super::context::ToolContext;
use super::finalize::{self, DEFAULT_PATH};
use super::network::{self, Address};
use super::spec::{NetworkMode, RootfsSource, SandboxSpec, UpperDir};
use super::{caps, idmap, namespaces, rootfs, seccomp, user};

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
    #[error("create scratch dir {path}: {cause}")]
    Scratch {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Host(#[from] super::agent::AgentError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// The container failed before its command started; the message comes from inside.
    #[error("container setup: {0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, ProcessError>;

/// Where the container mounts its scratch tmpfs (generated /etc files, the new root's mount
/// point) inside its own mount namespace. Any existing directory works: it is covered only in
/// the container's namespace, and detached with the old root at pivot_root.
const CHILD_SCRATCH: &str = "/tmp";

/// Signals the supervisor relays to the container.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Docker's mapping of a wait status to an exit code.
pub fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ProcessError {
    move |cause| ProcessError::Sys { op, cause }
}

/// Whether the calling process has a single thread (then a raw clone is safe).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
        == Some(1)
}

/// Run the container to completion; returns its exit code (docker's mapping).
pub fn run(spec: &SandboxSpec, in_userns: bool, tool: &ToolContext) -> Result<i32> {
    if single_threaded() {
        return supervise(spec, in_userns, tool);
    }
    // A raw clone would skip glibc's fork handlers (malloc locks held by other threads would
    // stay locked in the child), so first fork through glibc into a single-threaded helper.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Child => {
            let code = match supervise(spec, in_userns, tool) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("boxkit: {e}");
                    125
                }
            };
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Err(nix::Error::EINTR) => continue,
                r => return Ok(r.ok().and_then(exit_code).unwrap_or(125)),
            }
        },
    }
}

struct Pipes {
    go_r: OwnedFd,
    go_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
}

/// Everything the child needs, computed before clone so the child does little but syscalls.
struct ChildPlan<'a> {
    spec: &'a SandboxSpec,
    scratch: PathBuf,
    hostname: String,
    tty_sock: Option<RawFd>,
    old_mask: SigSet,
    caps: u64,
    prepared: &'a rootfs::Prepared,
    /// Compiled here, installed by the child (which must not parse or allocate much).
    seccomp: &'a seccomp::Filter,
}

fn supervise(spec: &SandboxSpec, in_userns: bool, tool: &ToolContext) -> Result<i32> {
    let caps = caps::resolve(&spec.cap_add, &spec.cap_drop)
        .map_err(|e| ProcessError::Setup(e.to_string()))?;
    let filter = spec.seccomp.compile(caps)?;
    let hostname = match (&spec.hostname, spec.network) {
        (Some(h), _) => h.clone(),
        (None, NetworkMode::Host) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        (None, _) => spec.id.chars().take(12).collect(),
    };
    // Only an ephemeral upper needs a host directory (its tmpfs is mounted there, in the
    // tool's private mount namespace). The container's own scratch tmpfs goes over a fixed
    // directory in its private mount namespace, so nothing is created on the host per run and
    // nothing is left behind if the supervisor is killed.
    let ephemeral = matches!(
        spec.rootfs,
        RootfsSource::Overlay {
            upper: UpperDir::Ephemeral,
            ..
        }
    );
    let upper_scratch = std::env::temp_dir().join(format!("boxkit-{}", spec.id));
    if ephemeral {
        std::fs::create_dir(&upper_scratch).map_err(|cause| ProcessError::Scratch {
            path: upper_scratch.clone(),
            cause,
        })?;
    }
    let r = supervise_in(
        spec,
        in_userns,
        tool,
        &upper_scratch,
        hostname,
        caps,
        &filter,
    );
    if ephemeral {
        let _ = nix::mount::umount2(&upper_scratch, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&upper_scratch);
    }
    r
}

fn supervise_in(
    spec: &SandboxSpec,
    in_userns: bool,
    tool: &ToolContext,
    scratch: &Path,
    hostname: String,
    caps: u64,
    filter: &seccomp::Filter,
) -> Result<i32> {
    let pipe = || pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"));
    let ((go_r, go_w), (err_r, err_w)) = (pipe()?, pipe()?);
    let p = Pipes {
        go_r,
        go_w,
        err_r,
        err_w,
    };

    let stdin_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let tty_sock = pty_channel(spec.tty).map_err(sys("socketpair"))?;
    let (fwd, old_mask) = block_forwarded().map_err(sys("sigprocmask"))?;
    let restore = |m: &SigSet| {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(m), None);
    };

    // Root's tool namespace also maps host ids (for the tool's own file access); the
    // container then gets a nested user namespace with only the container range.
    let nested = match (in_userns, tool.userns()) {
        (true, super::ToolUserns::Remapped(m)) => m.container_maps(),
        _ => None,
    };
    // Mounts whose sources only the tool can reach are made here, before clone.
    let prepared = match rootfs::prepare(&spec.rootfs, &spec.mounts, scratch) {
        Ok(p) => p,
        Err(e) => {
            restore(&old_mask);
            return Err(ProcessError::Setup(e.to_string()));
        }
    };
    let plan = ChildPlan {
        spec,
        scratch: PathBuf::from(CHILD_SCRATCH),
        hostname,
        tty_sock: tty_sock.as_ref().map(|(_, c)| c.as_raw_fd()),
        old_mask,
        caps,
        prepared: &prepared,
        seccomp: filter,
    };
    let mut flags = namespaces::clone_flags(spec.network);
    if nested.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    let pid = match unsafe { namespaces::clone_into(flags) } {
        Ok(0) => child_main(&plan, &p),
        Ok(pid) => Pid::from_raw(pid),
        Err(e) => {
            restore(&old_mask);
            return Err(e.into());
        }
    };
    // The child holds its own copies of the mount fds.
    drop(prepared);
    let Pipes {
        go_r,
        go_w,
        err_r,
        err_w,
    } = p;
    drop((go_r, err_w));
    let tty_sock = tty_sock.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });

    if let Some(m) = &nested
        && let Err(e) = idmap::write_maps(pid.as_raw(), m, &mut idmap::RealWriter)
    {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        restore(&old_mask);
        return Err(ProcessError::Setup(format!(
            "write the container's nested user namespace maps: {e}"
        )));
    }

    let mut host = tool.host_link();
    let devices = super::cgroups::device_filter_applies(in_userns);
    let needs_host = !spec.limits.is_empty() || spec.network == NetworkMode::Bridge || devices;
    let kill_and_reap = |pid| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    };
    let address = if needs_host {
        match host.call(Request::Setup {
            id: spec.id.clone(),
            pid: pid.as_raw(),
            limits: spec.limits.clone(),
            network: spec.network,
            ports: spec.ports.clone(),
            devices,
        }) {
            Ok(g) => {
                if let Some(hook) = &spec.on_published
                    && !g.ports.is_empty()
                {
                    (hook.0)(&g.ports);
                }
                g.address
            }
            Err(e) => {
                kill_and_reap(pid);
                restore(&old_mask);
                return Err(e.into());
            }
        }
    } else {
        None
    };
    let go = match &address {
        Some(a) => format!("{} {}", a.ip, a.gateway),
        None => String::new(),
    };
    let _ = nix::unistd::write(&go_w, format!("g{go}").as_bytes());
    drop(go_w);

    let master = tty_sock.and_then(|s| receive_fd(&s));

    // EOF on the error pipe: the command was exec'd (or the child died).
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);

    let status = if msg.is_empty() {
        wait_loop(pid, &fwd, master, stdin_tty)
    } else {
        kill_and_reap(pid);
        Err(ProcessError::Setup(msg))
    };
    if needs_host {
        let _ = host.call(Request::Release {
            id: spec.id.clone(),
        });
    }
    restore(&old_mask);
    status
}

/// With `tty`, the socket pair over which the container sends back its pty master: the pty is
/// made inside the container's own devpts (so `tty` names a path that exists there).
pub(crate) fn pty_channel(tty: bool) -> nix::Result<Option<(OwnedFd, OwnedFd)>> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    if !tty {
        return Ok(None);
    }
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map(Some)
}

/// The signals passed on to the container ([`FORWARDED`]) plus SIGCHLD.
fn forwarded_set() -> SigSet {
    let mut set: SigSet = FORWARDED.into_iter().collect();
    set.add(Signal::SIGCHLD);
    set
}

/// Block the signals [`wait_loop`] forwards (and SIGCHLD) so it can read them from a signalfd.
/// Returns that set and the mask to restore.
pub(crate) fn block_forwarded() -> nix::Result<(SigSet, SigSet)> {
    let fwd = forwarded_set();
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&fwd), Some(&mut old))?;
    Ok((fwd, old))
}

/// The window size of the terminal on `fd`.
pub(crate) fn winsize(fd: RawFd) -> Option<nix::pty::Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Puts the caller's terminal in raw mode and restores it on drop.
/// The caller's terminal in raw mode while alive (restored on drop); a no-op when `on` is false.
struct RawMode(Option<nix::sys::termios::Termios>);
impl RawMode {
    fn enter(on: bool) -> RawMode {
        if !on {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(orig) = nix::sys::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}
impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Copy what the pty master has to our stdout; false once the pty is closed (all slaves gone).
fn relay_master(m: &OwnedFd, buf: &mut [u8]) -> bool {
    match nix::unistd::read(m, buf) {
        Ok(0) | Err(nix::Error::EIO) => false,
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
        Err(nix::Error::EINTR | nix::Error::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Copy what our stdin has to the pty master; false at end of input.
fn relay_stdin(m: &OwnedFd, buf: &mut [u8]) -> bool {
    match nix::unistd::read(std::io::stdin(), buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let _ = nix::unistd::write(m, &buf[..n]);
            true
        }
    }
}

/// Wait for `pid` (the container's pid 1, or a `box exec` process): forward the signals in
/// `set`, relay the pty `master` to our stdio (raw mode when stdin is a terminal), follow the
/// window size, and return the exit status mapped as docker does.
pub(crate) fn wait_loop(
    pid: Pid,
    set: &SigSet,
    mut master: Option<OwnedFd>,
    stdin_tty: bool,
) -> Result<i32> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).map_err(sys("signalfd"))?;
    let _raw = RawMode::enter(master.is_some() && stdin_tty);
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = [0u8; 16384];
    let mut status = None;
    // A signal may have arrived before the signalfd existed; it is still pending, so the
    // first poll sees it. Still reap once in case SIGCHLD was consumed elsewhere.
    if let Ok(ws) = waitpid(pid, Some(WaitPidFlag::WNOHANG))
        && let Some(c) = exit_code(ws)
    {
        status = Some(c);
    }
    while status.is_none() || master_open {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mfd = master.as_ref().map(|m| m.as_fd());
        if let Some(m) = mfd.filter(|_| master_open) {
            fds.push(PollFd::new(m, PollFlags::POLLIN));
        }
        let stdin_idx = fds.len();
        if stdin_open && status.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the command has exited, only drain what the pty still holds.
        let timeout = if status.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                return Err(ProcessError::Sys {
                    op: "poll",
                    cause: e,
                });
            }
            Ok(0) => break,
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (
            ready(0),
            master_open && ready(1),
            stdin_idx < fds.len() && ready(stdin_idx),
        );
        drop(fds);
        if sig_ready && let Ok(Some(si)) = sfd.read_signal() {
            let sig = si.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                if let Ok(ws) = waitpid(pid, Some(WaitPidFlag::WNOHANG))
                    && let Some(c) = exit_code(ws)
                {
                    status = Some(c);
                }
            } else if sig == libc::SIGWINCH && master.is_some() {
                if let (Some(m), Some(ws)) = (&master, winsize(0)) {
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            } else if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(pid, s);
            }
        }
        if master_ready && let Some(m) = &master {
            master_open = relay_master(m, &mut buf);
        }
        if stdin_ready && let Some(m) = &master {
            stdin_open = relay_stdin(m, &mut buf);
            if !stdin_open && stdin_tty {
                // A terminal in raw mode reads as closed only when it hangs up (its window
                // was killed). Hang up the container's terminal too, so an interactive shell
                // there ends as it would on a real terminal (a process that ignores that runs
                // on, as a docker container does when its client goes).
                master = None;
                master_open = false;
            }
        }
    }
    // Reap if the loop ended on the pty side first.
    loop {
        if let Some(c) = status {
            return Ok(c);
        }
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            Ok(ws) => status = exit_code(ws),
            Err(e) => {
                return Err(ProcessError::Sys {
                    op: "waitpid",
                    cause: e,
                });
            }
        }
    }
}

/// Receive one file descriptor sent with SCM_RIGHTS; None when the peer closed first.
/// Receive one fd sent with SCM_RIGHTS (the pty master).
pub(crate) fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            return fds.first().map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// In the container (after pivot_root): open a pty in its devpts, give it the window size of
/// the caller's terminal (still our stdin here) before anything runs on it, make the slave our
/// controlling terminal and stdio, and send the master to the supervisor.
pub(crate) fn open_container_pty(sock: RawFd) -> std::result::Result<(), String> {
    use nix::fcntl::OFlag;
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("open /dev/ptmx: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open {name}: {e}"))?;
    if let Some(ws) = winsize(0) {
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) < 0 {
            return Err(format!(
                "make {name} the controlling terminal: {}",
                nix::Error::last()
            ));
        }
        for fd in 0..3 {
            libc::dup2(slave.as_raw_fd(), fd);
        }
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock,
        &[std::io::IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send pty master: {e}"))?;
    unsafe { libc::close(sock) };
    Ok(())
}

// ---- inside the container ----------------------------------------------------------------

/// The child's body; never returns.
fn child_main(plan: &ChildPlan, p: &Pipes) -> ! {
    let err_w = p.err_w.as_raw_fd();
    match child_setup(plan, p) {
        Ok(exec) => {
            let code = exec.run(plan, err_w);
            unsafe { libc::_exit(code) }
        }
        Err(msg) => {
            let _ = nix::unistd::write(unsafe { BorrowedFd::borrow_raw(err_w) }, msg.as_bytes());
            unsafe { libc::_exit(125) }
        }
    }
}

/// What is left to do once the container is set up: the exec (possibly under our init).
struct Exec {
    argv: Vec<CString>,
    env: Vec<CString>,
    init: bool,
}

fn child_setup(plan: &ChildPlan, p: &Pipes) -> std::result::Result<Exec, String> {
    let spec = plan.spec;
    // Our ends only; the parent's ends are closed so EOF works both ways.
    unsafe {
        libc::close(p.go_w.as_raw_fd());
        libc::close(p.err_r.as_raw_fd());
    }
    // Own session: terminal-generated signals reach the container only through the
    // supervisor, never twice.
    let _ = nix::unistd::setsid();
    let mut go = [0u8; 128];
    let n = loop {
        match nix::unistd::read(&p.go_r, &mut go) {
            Err(nix::Error::EINTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    if n == 0 || go[0] != b'g' {
        // The supervisor gave up (host setup failed); it reports why.
        unsafe { libc::_exit(125) };
    }
    let go = String::from_utf8_lossy(&go[1..n]).to_string();
    let address = go.split_once(' ').map(|(ip, gw)| Address {
        ip: ip.into(),
        gateway: gw.into(),
    });

    if spec.network != NetworkMode::Host {
        network::loopback_up().map_err(|e| e.to_string())?;
    }
    // Root's bridge: the host agent put eth0 into our namespace; address, up, route.
    if let Some(a) = &address {
        network::configure_eth0(a).map_err(|e| format!("configure eth0: {e}"))?;
    }
    nix::unistd::sethostname(&plan.hostname)
        .map_err(|e| format!("sethostname {}: {e}", plan.hostname))?;

    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let layout = rootfs::Layout {
        mounts: &spec.mounts,
        scratch: &plan.scratch,
        read_only: spec.read_only,
        hostname: &plan.hostname,
        hosts: &network::hosts(&plan.hostname, address.as_ref()),
        resolv_conf: &network::resolv_conf(&host_resolv, spec.network != NetworkMode::Host),
        prepared: plan.prepared,
    };
    if let RootfsSource::Overlay { lowerdirs, .. } = &spec.rootfs
        && lowerdirs.is_empty()
    {
        return Err("overlay rootfs needs at least one lower directory".into());
    }
    rootfs::build(&layout).map_err(|e| e.to_string())?;

    // Now in the new root. The image's /etc files may be hostile (a FIFO would hang us).
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open the container's root: {e}"))?;
    let u = user::resolve_in(root.as_fd(), spec.user.as_deref(), &spec.extra_groups)
        .map_err(|e| e.to_string())?;
    drop(root);
    if let Some(sock) = plan.tty_sock {
        open_container_pty(sock)?;
    }
    let cwd = spec.cwd.as_deref().filter(|c| !c.is_empty()).unwrap_or("/");
    let finish = finalize::Finish {
        argv: &spec.argv,
        env: spec.env.clone(),
        hostname: &plan.hostname,
        tty: spec.tty,
        user: &u,
        caps: plan.caps,
        no_new_privs: spec.no_new_privs,
        cwd,
        create_cwd: !spec.read_only,
        preserve_fds: spec.preserve_fds,
        keep_fd: Some(p.err_w.as_raw_fd()),
        seccomp: plan.seccomp,
    };
    // SAFETY: this is the cloned child; it only execs or _exits after this (child_main), and
    // uses no descriptor but the error pipe, which finalize keeps.
    let ready = unsafe { finalize::finalize(&finish) }.map_err(|e| e.to_string())?;
    Ok(Exec {
        argv: ready.argv,
        env: ready.env,
        init: spec.init,
    })
}

impl Exec {
    fn run(self, plan: &ChildPlan, err_w: RawFd) -> i32 {
        if !self.init {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&plan.old_mask), None);
            return self.exec();
        }
        let child = match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&plan.old_mask), None);
                unsafe { libc::_exit(self.exec()) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => child,
            Err(e) => {
                let _ = nix::unistd::write(
                    unsafe { BorrowedFd::borrow_raw(err_w) },
                    format!("fork: {e}").as_bytes(),
                );
                return 125;
            }
        };
        // Our copy of the error pipe would hide the command's exec from the supervisor.
        unsafe { libc::close(err_w) };
        init_loop(child)
    }

    /// execve, searching PATH like a shell; 126/127 with docker's messages on failure.
    fn exec(&self) -> i32 {
        exec_searching_path(&self.argv, &self.env, "boxkit")
    }
}

/// execve `argv` with `env`, searching the PATH in `env` like a shell (docker's default PATH
/// when there is none). Returns only on failure: 127 when nothing was found, 126 when a file
/// was found but could not be executed, with docker's messages prefixed by `who`.
pub(crate) fn exec_searching_path(argv: &[CString], env: &[CString], who: &str) -> i32 {
    let Some(arg0) = argv.first() else {
        eprintln!("{who}: no command given");
        return 125;
    };
    let name = arg0.to_string_lossy().into_owned();
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(&name)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.to_str().ok()?.strip_prefix("PATH=").map(String::from))
            .unwrap_or_else(|| DEFAULT_PATH.into());
        path.split(':').map(|d| Path::new(d).join(&name)).collect()
    };
    let mut last = nix::Error::ENOENT;
    for c in &candidates {
        let Ok(cp) = CString::new(c.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        let e = nix::unistd::execve(&cp, argv, env).unwrap_err();
        // Keep the most telling error: a found-but-unusable file beats "not found".
        if e != nix::Error::ENOENT && e != nix::Error::ENOTDIR {
            last = e;
        }
    }
    match last {
        nix::Error::ENOENT if !name.contains('/') => {
            eprintln!("{who}: exec {name:?}: executable file not found in $PATH");
            127
        }
        nix::Error::ENOENT => {
            eprintln!("{who}: exec {name:?}: no such file or directory");
            127
        }
        e => {
            eprintln!("{who}: exec {name:?}: {}", e.desc().to_lowercase());
            126
        }
    }
}

/// `--init`: stay pid 1, reap every child, forward signals to the command, exit with its code.
fn init_loop(child: Pid) -> i32 {
    let set = forwarded_set();
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) if ws.pid() == Some(child) => return exit_code(ws).unwrap_or(125),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_mapped_like_docker() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGTERM, false)),
            Some(143)
        );
    }
}
