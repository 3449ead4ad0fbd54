//! `box exec`: run a process inside a running container, as nsenter does.
//!
//! `setns(2)` into each namespace of the container's pid 1 that differs from ours — its user
//! namespace first (as root the container has a nested one; joining it grants the capabilities
//! needed for the rest), the mount namespace last (after it `/` is the container's root). A
//! pid namespace applies to children only, so we then fork; the child takes the container's
//! environment, working directory, user and capability set, exactly as the sandbox sets them
//! up for pid 1 ([`super::finalize`]), and execs. With `-t` the child opens a pty in the
//! container's own devpts and passes the master back ([`super::process::tty`]), and this
//! process relays the terminal ([`super::process::wait_loop`]).
//!
//! This runs with the caller's own credentials, outside any tool namespace: each boxkit
//! invocation makes its own tool user namespace, and a second one would have no capabilities
//! over the first's processes. From outside, root has them all, and a rootless user owns the
//! container's tool namespace, which gives it full capabilities there and in what is nested.
//! Before joining, the process moves into pid 1's cgroups so the container's limits count it.
//!
//! Hardening (the CVE-2019-5736 class): until it execs, the forked child is boxkit — its
//! /proc/PID/exe is the host binary, and as root it is host root until the id switch. So the
//! process is non-dumpable from the start ([`harden`], closing its /proc/PID to the
//! container), and everything read from the container — the user's /etc/passwd and
//! /etc/group — is read before joining, through /proc/PID/root with
//! [`super::user::read_db`]'s checks, so a hostile container can neither hang nor feed the
//! joining process.
//!
//! The container's record (state.json) belongs to the container module above this one,
//! which hands over what exec needs as a [`Target`].

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use thiserror::Error;

use super::process::{self, Blocked, PtyChannel};
use super::{finalize, seccomp, user};

/// What `box exec` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    /// Extra `K=V` on top of the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    /// The caller's descriptors 3..3+N reach the command (`--preserve-fds N`).
    pub preserve_fds: u32,
}

/// The running container, as its record describes its command's process.
pub struct Target<'a> {
    /// The container's pid 1 (the supervisor's child), in our pid namespace.
    pub init_pid: i32,
    pub env: &'a [String],
    pub cwd: Option<&'a str>,
    pub user: Option<&'a str>,
    pub hostname: &'a str,
    pub caps: u64,
    pub no_new_privs: bool,
    pub seccomp: &'a seccomp::SeccompRecord,
    /// The container has resource limits: joining its cgroups must succeed.
    pub has_limits: bool,
}

#[derive(Debug, Error)]
pub enum ExecError {
    /// The command could not be started (docker exec's 126).
    #[error("{0}")]
    Start(String),
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] process::ProcessError),
}

pub type Result<T> = std::result::Result<T, ExecError>;

/// Namespaces to join, in order: user first, mount last.
const ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ExecError {
    move |cause| ExecError::Sys { op, cause }
}

/// Make this process non-dumpable: the first thing `box exec` does, before it looks at the
/// container (see the module documentation). [`exec`] does it too.
pub fn harden() -> Result<()> {
    finalize::set_dumpable(false).map_err(|e| ExecError::Start(e.to_string()))
}

/// Join the namespaces of `pid` that differ from ours.
fn join_namespaces(pid: i32) -> Result<()> {
    // Open them all first: after joining the mount namespace /proc may be another one.
    let mut fds = Vec::new();
    for (name, flag) in ORDER {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = match (
            std::fs::read_link(&theirs),
            std::fs::read_link(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            continue;
        }
        let f = std::fs::File::open(&theirs).map_err(|cause| ExecError::Io {
            op: "open namespace",
            path: theirs.clone().into(),
            cause,
        })?;
        fds.push((name, flag, OwnedFd::from(f)));
    }
    for (name, flag, fd) in fds {
        nix::sched::setns(&fd, flag).map_err(|cause| ExecError::Io {
            op: "join namespace",
            path: format!("/proc/{pid}/ns/{name}").into(),
            cause: cause.into(),
        })?;
    }
    Ok(())
}

/// Move this process (and so what it forks) into the cgroups of `pid`, so the container's
/// limits count the exec'd process too. Failure matters only when the container has limits
/// (rootless runs without a writable cgroup have none).
fn join_cgroups(pid: i32, required: bool) -> Result<()> {
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let ours = crate::procfs::read("/proc/self/cgroup").unwrap_or_default();
    let me = std::process::id().to_string();
    for line in theirs.lines().filter(|l| !ours.lines().any(|o| o == *l)) {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = match (f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let mount = match ctrl {
            "" if Path::new("/sys/fs/cgroup/unified").is_dir() => "unified".to_string(),
            "" => String::new(),
            c => c.trim_start_matches("name=").to_string(),
        };
        let procs = Path::new("/sys/fs/cgroup")
            .join(mount)
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        if let Err(cause) = std::fs::write(&procs, &me)
            && required
        {
            return Err(ExecError::Io {
                op: "join the container's cgroup",
                path: procs,
                cause,
            });
        }
    }
    Ok(())
}

/// The process whose namespaces and root `box exec` uses: the container's pid 1, unless
/// that is boxkit's own `--init`, which is not dumpable (so the container cannot open its
/// /proc/1/exe) and so closed to a rootless caller, who lacks CAP_SYS_PTRACE over the host's
/// user namespace that owns its memory; then the init's child, the command, which was forked
/// with every namespace of the init and is an ordinary dumpable process.
pub fn join_target(pid: i32) -> i32 {
    let denied = |p: i32| {
        matches!(
            std::fs::File::open(format!("/proc/{p}/ns/user")).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EACCES | libc::EPERM))
        )
    };
    if !denied(pid) {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|k| k.parse::<i32>().ok())
        .find(|k| !denied(*k))
        .unwrap_or(pid)
}

/// Resolve the user (`o.user`, else the container's) against the container's /etc files,
/// read through /proc/`pid`/root before joining anything.
fn resolve_user(t: &Target, o: &ExecOptions, pid: i32) -> Result<user::Resolved> {
    let root_path = format!("/proc/{pid}/root");
    let root = nix::fcntl::open(
        root_path.as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ExecError::Start(format!("open the container's root {root_path}: {e}")))?;
    let who = o.user.as_deref().or(t.user);
    user::resolve_in(root.as_fd(), who, &[]).map_err(|e| ExecError::Start(e.to_string()))
}

/// Run `o` in the running container `t`; returns the exit code (docker's mapping).
/// [`ExecError::Start`] means the command could not be started (docker exec's 126).
pub fn exec(t: &Target, o: &ExecOptions) -> Result<i32> {
    harden()?;
    let pid = join_target(t.init_pid);
    let u = resolve_user(t, o, pid)?;
    if !o.interactive
        && let Ok(f) = std::fs::File::open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&f);
    }
    let stdin_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let mut tty = PtyChannel::new(o.tty).map_err(sys("socketpair"))?;
    join_cgroups(pid, t.has_limits)?;
    join_namespaces(pid)?;

    // The container's own profile, compiled before the fork.
    let filter = seccomp::Seccomp::from_record(t.seccomp)
        .and_then(|s| s.compile(t.caps))
        .map_err(|e| ExecError::Start(e.to_string()))?;
    let signals = Blocked::forwarded().map_err(sys("sigprocmask"))?;

    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let sock = tty.as_ref().and_then(PtyChannel::child_end);
    // SAFETY: box exec is single-threaded (no tool namespace, no helper threads), so the
    // child may do anything until it execs; it never returns from child_main.
    let child = match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Child => {
            child_main(t, o, &u, sock, err_w.as_raw_fd(), &filter, &signals)
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(err_w);
    if let Some(c) = &mut tty {
        c.close_child_end();
    }
    let master = tty.and_then(PtyChannel::receive_master);
    let mut msg = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(err_r), &mut msg);
    if !msg.is_empty() {
        let _ = waitpid(child, None);
        return Err(ExecError::Start(msg));
    }
    // The same wait as boxrun's: forward signals, relay the terminal, map the exit status.
    Ok(process::wait_loop(child, &signals, master, stdin_tty)?)
}

/// The forked child: set up, then exec or report on the error pipe; never returns.
fn child_main(
    t: &Target,
    o: &ExecOptions,
    u: &user::Resolved,
    sock: Option<RawFd>,
    err_w: RawFd,
    filter: &seccomp::Filter,
    signals: &Blocked,
) -> ! {
    let msg = match child_setup(t, o, u, sock, err_w, filter) {
        Ok(ready) => {
            signals.restore();
            let code = process::exec_searching_path(&ready.argv, &ready.env, "box exec");
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Err(m) => m,
    };
    // SAFETY: err_w is open: finalize keeps it (and nothing else above 2).
    let err_w = unsafe { std::os::fd::BorrowedFd::borrow_raw(err_w) };
    let _ = nix::unistd::write(err_w, msg.as_bytes());
    // SAFETY: as above.
    unsafe { libc::_exit(126) }
}

/// In the forked child, inside the container: a session of its own, the pty, then
/// [`finalize::finalize`].
fn child_setup(
    t: &Target,
    o: &ExecOptions,
    u: &user::Resolved,
    tty_sock: Option<RawFd>,
    err_w: RawFd,
    filter: &seccomp::Filter,
) -> std::result::Result<finalize::Ready, String> {
    let _ = nix::unistd::setsid();
    if let Some(sock) = tty_sock {
        process::tty::open_in_container(sock)?;
    }
    let mut env = t.env.to_vec();
    for e in &o.env {
        let k = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != k);
        env.push(e.clone());
    }
    let cwd = o
        .cwd
        .as_deref()
        .or(t.cwd)
        .filter(|c| !c.is_empty())
        .unwrap_or("/");
    let finish = finalize::Finish {
        argv: &o.argv,
        env,
        hostname: t.hostname,
        tty: o.tty,
        user: u,
        caps: t.caps,
        no_new_privs: t.no_new_privs,
        cwd,
        // docker exec does not create a missing working directory.
        create_cwd: false,
        preserve_fds: o.preserve_fds,
        keep_fd: Some(err_w),
        seccomp: filter,
    };
    // SAFETY: this is the forked child; after this it only execs or _exits, using no
    // descriptor but err_w, which finalize keeps.
    unsafe { finalize::finalize(&finish) }.map_err(|e| e.to_string())
}
