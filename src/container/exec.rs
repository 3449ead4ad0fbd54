//! `box exec`: run a process inside a running container, as nsenter does.
//!
//! `setns(2)` into each namespace of the container's pid 1 that differs from ours — its user
//! namespace first (as root the container has a nested one; joining it grants the capabilities
//! needed for the rest), the mount namespace last (after it `/` is the container's root). A
//! pid namespace applies to children only, so we then fork; the child takes the container's
//! environment, working directory, user and capability set, exactly as the sandbox sets them
//! up for pid 1, and execs. With `-t` the child opens a pty in the container's own devpts and
//! passes the master back over a socket, and this process relays the terminal.
//!
//! This runs with the caller's own credentials, outside any tool namespace: each boxkit
//! invocation makes its own tool user namespace, and a second one would have no capabilities
//! over the first's processes. From outside, root has them all, and a rootless user owns the
//! container's tool namespace, which gives it full capabilities there and in what is nested.
//! Before joining, the process moves into pid 1's cgroups so the container's limits count it.
//!
//! Hardening (the CVE-2019-5736 class): until it execs, the forked child is boxkit — its
//! /proc/PID/exe is the host binary, and as root it is host root until the id switch. So the
//! process is non-dumpable from the start (closing its /proc/PID to the container), and
//! everything read from the container — the user's /etc/passwd and /etc/group — is read
//! before joining, through /proc/PID/root with [`crate::run::user::read_db`]'s checks, so a
//! hostile container can neither hang nor feed the joining process.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::signal::{SigmaskHow, sigprocmask};
use nix::sys::wait::waitpid;

use super::{ContainerError, Result, State};
use crate::run::{finalize, process, seccomp, user};

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

/// Namespaces to join, in order: user first, mount last.
const ORDER: [(&str, libc::c_int); 7] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ContainerError {
    move |cause| ContainerError::Sys { op, cause }
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
        let f = std::fs::File::open(&theirs).map_err(|cause| ContainerError::Io {
            op: "open namespace",
            path: theirs.clone().into(),
            cause,
        })?;
        fds.push((name, flag, OwnedFd::from(f)));
    }
    for (name, flag, fd) in fds {
        if unsafe { libc::setns(fd.as_raw_fd(), flag) } < 0 {
            let cause = nix::Error::last();
            return Err(ContainerError::Io {
                op: "join namespace",
                path: format!("/proc/{pid}/ns/{name}").into(),
                cause: cause.into(),
            });
        }
    }
    Ok(())
}

/// Move this process (and so what it forks) into the cgroups of `pid`, so the container's
/// limits count the exec'd process too. Failure matters only when the container has limits
/// (rootless runs without a writable cgroup have none).
fn join_cgroups(pid: i32, required: bool) -> Result<()> {
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
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
            return Err(ContainerError::Io {
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
fn join_target(pid: i32) -> i32 {
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

/// Run `o` in the running container `st`; returns the exit code (docker's mapping).
/// [`ContainerError::Start`] means the command could not be started (docker exec's 126).
pub fn exec(st: &State, o: &ExecOptions) -> Result<i32> {
    // First, before anything touches the container: see the module documentation.
    finalize::set_dumpable(false).map_err(|e| ContainerError::Start {
        id: st.id.clone(),
        why: e.to_string(),
    })?;
    let init = st
        .init_pid()
        .ok_or_else(|| ContainerError::NotRunning(st.id.clone()))?;
    let pid = join_target(init);
    let start_err = |why: String| ContainerError::Start {
        id: st.id.clone(),
        why,
    };
    let u = {
        let root_path = format!("/proc/{pid}/root");
        let root = nix::fcntl::open(
            root_path.as_str(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| start_err(format!("open the container's root {root_path}: {e}")))?;
        let who = o.user.clone().or_else(|| st.user.clone());
        user::resolve_in(root.as_fd(), who.as_deref(), &[]).map_err(|e| start_err(e.to_string()))?
    };
    if !o.interactive
        && let Ok(f) = std::fs::File::open("/dev/null")
    {
        // SAFETY: dup2 onto stdin, which this process owns; f stays open across the call.
        unsafe { libc::dup2(f.as_raw_fd(), 0) };
    }
    let stdin_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let tty_sock = process::pty_channel(o.tty).map_err(sys("socketpair"))?;
    join_cgroups(pid, !st.limits.is_empty())?;
    join_namespaces(pid)?;

    // The container's own profile, compiled before the fork.
    let filter = seccomp::Seccomp::from_record(&st.seccomp)
        .and_then(|s| s.compile(st.caps))
        .map_err(|e| ContainerError::Start {
            id: st.id.clone(),
            why: e.to_string(),
        })?;
    let (fwd, old) = process::block_forwarded().map_err(sys("sigprocmask"))?;

    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    // SAFETY: box exec is single-threaded (no tool namespace, no helper threads), so the
    // child may do anything until it execs.
    let child = match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Child => {
            let sock = tty_sock.as_ref().map(|(_, c)| c.as_raw_fd());
            let msg = match child_setup(st, o, &u, sock, err_w.as_raw_fd(), &filter) {
                Ok(ready) => {
                    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                    let code = process::exec_searching_path(&ready.argv, &ready.env, "box exec");
                    // SAFETY: _exit ends the child without running the parent's destructors.
                    unsafe { libc::_exit(code) }
                }
                Err(m) => m,
            };
            // SAFETY: err_w is open: finalize keeps it (and nothing else above 2).
            let err_w = unsafe { std::os::fd::BorrowedFd::borrow_raw(err_w.as_raw_fd()) };
            let _ = nix::unistd::write(err_w, msg.as_bytes());
            // SAFETY: as above.
            unsafe { libc::_exit(126) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(err_w);
    let master = tty_sock.and_then(|(ours, theirs)| {
        drop(theirs);
        crate::run::process::receive_fd(&ours)
    });
    let mut msg = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(err_r), &mut msg);
    if !msg.is_empty() {
        let _ = waitpid(child, None);
        return Err(start_err(msg));
    }
    // The same wait as boxrun's: forward signals, relay the terminal, map the exit status.
    let r = process::wait_loop(child, &fwd, master, stdin_tty)
        .map_err(|e| ContainerError::Sandbox(crate::run::SandboxError::Process(e)));
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    r
}

/// In the forked child, inside the container: a session of its own, the pty, then
/// [`finalize::finalize`].
fn child_setup(
    st: &State,
    o: &ExecOptions,
    u: &user::Resolved,
    tty_sock: Option<RawFd>,
    err_w: RawFd,
    filter: &seccomp::Filter,
) -> std::result::Result<finalize::Ready, String> {
    let _ = nix::unistd::setsid();
    if let Some(sock) = tty_sock {
        process::open_container_pty(sock)?;
    }
    let mut env = st.env.clone();
    for e in &o.env {
        let k = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != k);
        env.push(e.clone());
    }
    let cwd = o
        .cwd
        .as_deref()
        .or(st.cwd.as_deref())
        .filter(|c| !c.is_empty())
        .unwrap_or("/");
    let finish = finalize::Finish {
        argv: &o.argv,
        env,
        hostname: &st.hostname,
        tty: o.tty,
        user: u,
        caps: st.caps,
        no_new_privs: st.no_new_privs,
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
