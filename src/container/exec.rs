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

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::signal::{SigmaskHow, sigprocmask};
use nix::sys::wait::waitpid;

use super::{ContainerError, Result, State};
use crate::run::{caps, process, seccomp, user};

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

/// Run `o` in the running container `st`; returns the exit code (docker's mapping).
pub fn exec(st: &State, o: &ExecOptions) -> Result<i32> {
    let pid = st
        .init_pid()
        .ok_or_else(|| ContainerError::NotRunning(st.id.clone()))?;
    if !o.interactive
        && let Ok(f) = std::fs::File::open("/dev/null")
    {
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
    let child = match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        nix::unistd::ForkResult::Child => {
            drop(err_r);
            let sock = tty_sock.as_ref().map(|(_, c)| c.as_raw_fd());
            let msg = match child_setup(st, o, sock, &filter) {
                Ok(exec) => {
                    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                    let code = exec.run();
                    unsafe { libc::_exit(code) }
                }
                Err(m) => m,
            };
            let _ = nix::unistd::write(&err_w, msg.as_bytes());
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
        return Err(ContainerError::Start {
            id: st.id.clone(),
            why: msg,
        });
    }
    // The same wait as boxrun's: forward signals, relay the terminal, map the exit status.
    let r = process::wait_loop(child, &fwd, master, stdin_tty)
        .map_err(|e| ContainerError::Sandbox(crate::run::SandboxError::Process(e)));
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    r
}

struct Exec {
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn child_setup(
    st: &State,
    o: &ExecOptions,
    tty_sock: Option<RawFd>,
    filter: &seccomp::Filter,
) -> std::result::Result<Exec, String> {
    let _ = nix::unistd::setsid();
    if let Some(sock) = tty_sock {
        crate::run::process::open_container_pty(sock)?;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let who = o.user.clone().or_else(|| st.user.clone());
    let u = user::resolve(who.as_deref(), &[], &passwd, &group).map_err(|e| e.to_string())?;
    let mut env = st.env.clone();
    for e in &o.env {
        let k = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != k);
        env.push(e.clone());
    }
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(a, _)| a == k))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={}", process::DEFAULT_PATH));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={}", st.hostname));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", u.home));
    }
    if o.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    let cwd = o
        .cwd
        .clone()
        .or_else(|| st.cwd.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "/".into());
    if tty_sock.is_some() {
        unsafe { libc::fchown(0, u.uid, u32::MAX) };
    }
    seccomp::install(filter).map_err(|e| e.to_string())?;
    caps::limit_bounding(st.caps).map_err(|e| e.to_string())?;
    let groups: Vec<nix::unistd::Gid> = u.groups.iter().map(|g| (*g).into()).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            return Err(format!("setgroups {:?}: {e}", u.groups));
        }
    }
    nix::unistd::setresgid(u.gid.into(), u.gid.into(), u.gid.into())
        .map_err(|e| format!("setgid {}: {e}", u.gid))?;
    nix::unistd::setresuid(u.uid.into(), u.uid.into(), u.uid.into())
        .map_err(|e| format!("setuid {}: {e}", u.uid))?;
    if u.uid == 0 {
        caps::set_process(st.caps).map_err(|e| e.to_string())?;
    }
    if st.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(format!("set no_new_privs: {}", nix::Error::last()));
    }
    nix::unistd::chdir(cwd.as_str()).map_err(|e| format!("chdir to {cwd}: {e}"))?;
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let cs = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
    Ok(Exec {
        argv: o
            .argv
            .iter()
            .map(|a| cs(a))
            .collect::<std::result::Result<_, _>>()?,
        env: env
            .iter()
            .map(|e| cs(e))
            .collect::<std::result::Result<_, _>>()?,
    })
}

impl Exec {
    /// execve with a PATH search; 126/127 as docker exec reports them.
    fn run(&self) -> i32 {
        process::exec_searching_path(&self.argv, &self.env, "box exec")
    }
}
