//! The container's side, from clone to exec: pid 1 of its pid namespace waits until the
//! supervisor says the host side is ready, sets up network and hostname, builds its root
//! ([`crate::run::rootfs`]), resolves the user, opens its pty, becomes the user
//! ([`crate::run::finalize`]) and execs — or, with `--init`, forks the command and stays as
//! a tiny init. Also the PATH search `box exec` shares.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::exit_code;
use super::signals::forwarded_set;
use crate::run::finalize::{self, DEFAULT_PATH};
use crate::run::isolation::Isolation;
use crate::run::network::{self, Address};
use crate::run::spec::{NetworkMode, RootfsSource, SandboxSpec};
use crate::run::{chown_notify, rootfs, seccomp, user};

/// The two pipes between supervisor and child: "go" (supervisor → child, once the host side
/// is ready) and the close-on-exec error pipe (child → supervisor; EOF means exec).
pub(super) struct Pipes {
    pub go_r: OwnedFd,
    pub go_w: OwnedFd,
    pub err_r: OwnedFd,
    pub err_w: OwnedFd,
}

/// Everything the child needs, computed before clone so the child does little but syscalls.
pub(super) struct ChildPlan<'a> {
    pub spec: &'a SandboxSpec,
    pub scratch: PathBuf,
    pub hostname: String,
    pub tty_sock: Option<RawFd>,
    /// The socket over which pid 1 sends its namespaces to the supervisor
    /// (`run::run_last`).
    pub ns_sock: Option<RawFd>,
    pub old_mask: SigSet,
    pub caps: u64,
    /// The root and bind mounts (none when the command is only chrooted).
    pub prepared: Option<&'a rootfs::Prepared>,
    /// Compiled here, installed by the child (which must not parse or allocate much).
    pub seccomp: &'a seccomp::Filter,
    /// Where only container root is mapped: the socket the chown notify listener goes to
    /// ([`crate::run::chown_notify`]).
    pub chown_sock: Option<RawFd>,
    /// The network namespace was made ahead ([`crate::run::prestart`]), with loopback up.
    pub loopback_ready: bool,
}

/// `_exit(2)`: end the child without running the parent's atexit handlers or destructors.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; skipping destructors is the point (the values
    // this child holds are copies of the parent's).
    unsafe { libc::_exit(code) }
}

/// Write `msg` to the error pipe `err_w` (best effort).
fn report(err_w: RawFd, msg: &str) {
    // SAFETY: `err_w` is the child's copy of the error pipe, open until this process execs
    // or exits (finalize keeps it).
    let fd = unsafe { BorrowedFd::borrow_raw(err_w) };
    let _ = nix::unistd::write(fd, msg.as_bytes());
}

/// Send this process's (new) mount and IPC namespaces, and its network namespace when that
/// has only loopback, over `sock` and close it: the supervisor keeps them so that their
/// teardown waits for the supervisor's exit, not ours (which the caller's exit status waits
/// for). The mount namespace's teardown unmounts every mount and waits for an RCU grace
/// period; the last reference to a network or IPC namespace queues its cleanup on a kernel
/// worker that takes the CPU from the exiting process. A network namespace with a veth or a
/// tap is left to end with pid 1, so that its device goes with the container. Best effort:
/// what is not sent is torn down in this process's exit, as before.
fn send_namespaces(sock: RawFd, network: NetworkMode) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let net = (network == NetworkMode::None).then_some("/proc/self/ns/net");
    let held: Vec<std::fs::File> = ["/proc/self/ns/mnt", "/proc/self/ns/ipc"]
        .into_iter()
        .chain(net)
        .filter_map(|p| std::fs::File::open(p).ok())
        .collect();
    let fds: Vec<RawFd> = held.iter().map(AsRawFd::as_raw_fd).collect();
    if !fds.is_empty() {
        let _ = sendmsg::<()>(
            sock,
            &[std::io::IoSlice::new(b"n")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        );
    }
    // SAFETY: `sock` is the child's copy of the pair's end, which nothing in this process owns
    // as a value (the supervisor's pair is never dropped here: the child only execs or
    // _exits), so closing it by number closes nothing else.
    unsafe { libc::close(sock) };
}

/// The child's body; never returns.
pub(super) fn child_main(plan: &ChildPlan, p: &Pipes) -> ! {
    let err_w = p.err_w.as_raw_fd();
    match child_setup(plan, p) {
        Ok(exec) => exit_now(exec.run(plan, err_w)),
        Err(msg) => {
            report(err_w, &msg);
            exit_now(125)
        }
    }
}

/// What is left to do once the container is set up: the exec (possibly under our init).
struct Exec {
    argv: Vec<CString>,
    env: Vec<CString>,
    init: bool,
}

/// Wait for the supervisor's "go"; returns the container's address if it has one.
fn wait_for_go(p: &Pipes) -> Option<Address> {
    let mut go = [0u8; 128];
    let n = loop {
        match nix::unistd::read(&p.go_r, &mut go) {
            Err(nix::Error::EINTR) => continue,
            r => break r.unwrap_or(0),
        }
    };
    if n == 0 || go[0] != b'g' {
        // The supervisor gave up (host setup failed); it reports why.
        exit_now(125);
    }
    let go = String::from_utf8_lossy(&go[1..n]).to_string();
    go.split_once(' ').map(|(ip, gw)| Address {
        ip: ip.into(),
        gateway: gw.into(),
    })
}

fn child_setup(plan: &ChildPlan, p: &Pipes) -> std::result::Result<Exec, String> {
    let spec = plan.spec;
    // Our ends only; the parent's ends are closed so EOF works both ways.
    // SAFETY: these are the child's copies of the parent's ends; the `Pipes` values that own
    // them are never dropped here (the child only execs or _exits).
    unsafe {
        libc::close(p.go_w.as_raw_fd());
        libc::close(p.err_r.as_raw_fd());
    }
    if let Some(io) = &spec.stdio {
        io.install()
            .map_err(|e| format!("set up the command's stdin/stdout/stderr: {e}"))?;
    }
    if let Some(sock) = plan.ns_sock {
        send_namespaces(sock, spec.network);
    }
    // Own session: terminal-generated signals reach the container only through the
    // supervisor, never twice.
    let _ = nix::unistd::setsid();
    // What needs neither the id maps nor the host's side of the setup is done while the
    // supervisor writes them: this process keeps its CPU instead of sleeping until "go".
    let early = match (spec.isolation, plan.prepared) {
        (Isolation::Namespaces { uts, .. }, Some(_)) => Some(namespaces_early(plan, uts)?),
        _ => None,
    };
    let address = wait_for_go(p);

    match (spec.isolation, plan.prepared, early) {
        (Isolation::Namespaces { new_proc, .. }, Some(prepared), Some(host_resolv)) => {
            namespaced_root(plan, address.as_ref(), new_proc, prepared, host_resolv)?
        }
        // Nothing of the job is hidden: only the root changes.
        (_, None, _) => chroot_root(&spec.rootfs)?,
        (_, Some(_), _) => return Err("a chrooted command got prepared mounts".into()),
    }

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
        super::tty::open_in_container(sock)?;
    }
    // Before finalize closes the socket and loads the profile (which then stacks above it).
    if let Some(sock) = plan.chown_sock {
        chown_notify::install_and_send(sock).map_err(|e| e.to_string())?;
    }
    spec.extras.apply_ulimits()?;
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

/// The part of a namespaced setup that needs no id maps, cgroup or host device: loopback
/// up, the hostname. The namespaces are this process's own (created by its clone), where it
/// holds every capability from the start. Returns the host's /etc/resolv.conf (empty when
/// unreadable), read meanwhile too.
fn namespaces_early(plan: &ChildPlan, uts: bool) -> std::result::Result<String, String> {
    if plan.spec.network != NetworkMode::Host && !plan.loopback_ready {
        network::loopback_up().map_err(|e| e.to_string())?;
    }
    // Without a UTS namespace of its own the container keeps the job's name.
    if uts {
        nix::unistd::sethostname(&plan.hostname)
            .map_err(|e| format!("sethostname {}: {e}", plan.hostname))?;
    }
    Ok(std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// Network (eth0), the generated /etc files and the pivoted root of a namespaced container.
fn namespaced_root(
    plan: &ChildPlan,
    address: Option<&Address>,
    new_proc: bool,
    prepared: &rootfs::Prepared,
    host_resolv: String,
) -> std::result::Result<(), String> {
    let spec = plan.spec;
    // Root's bridge: the host agent put eth0 into our namespace; address, up, route.
    if let Some(a) = address {
        network::configure_eth0(a).map_err(|e| format!("configure eth0: {e}"))?;
    }
    let layout = rootfs::Layout {
        mounts: &spec.mounts,
        scratch: &plan.scratch,
        read_only: spec.read_only,
        hostname: &plan.hostname,
        hosts: &spec.extras.hosts(network::hosts(&plan.hostname, address)),
        resolv_conf: &spec.extras.resolv_conf(&network::resolv_conf(
            &host_resolv,
            spec.network != NetworkMode::Host,
        )),
        shm_size: spec.extras.shm_size,
        prepared,
        new_proc,
    };
    if let RootfsSource::Overlay { lowerdirs, .. } = &spec.rootfs
        && lowerdirs.is_empty()
    {
        return Err("overlay rootfs needs at least one lower directory".into());
    }
    rootfs::build(&layout).map_err(|e| e.to_string())
}

/// chroot(2) into a plain directory root (the supervisor made sure it is one).
fn chroot_root(rootfs: &RootfsSource) -> std::result::Result<(), String> {
    let RootfsSource::Dir(dir) = rootfs else {
        return Err("chroot isolation needs a plain directory root".into());
    };
    nix::unistd::chroot(dir).map_err(|e| format!("chroot {}: {e}", dir.display()))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir / after chroot: {e}"))
}

impl Exec {
    fn run(self, plan: &ChildPlan, err_w: RawFd) -> i32 {
        if !self.init {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&plan.old_mask), None);
            return self.exec();
        }
        // SAFETY: the container's pid 1 is single-threaded (a clone of the single-threaded
        // supervisor), so the forked child may do anything until it execs.
        let child = match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&plan.old_mask), None);
                exit_now(self.exec())
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => child,
            Err(e) => {
                report(err_w, &format!("fork: {e}"));
                return 125;
            }
        };
        // Our copy of the error pipe would hide the command's exec from the supervisor.
        // SAFETY: `err_w` is this process's copy of the pipe's write end, owned by a `Pipes`
        // value that is never dropped here (init_loop returns only into _exit).
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
pub fn exec_searching_path(argv: &[CString], env: &[CString], who: &str) -> i32 {
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
    let searching = candidates.len() > 1;
    for c in &candidates {
        let Ok(cp) = CString::new(c.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // A PATH search looks first (a failed stat costs less than a failed execve, and
        // most of docker's default PATH misses): what is not there is skipped with the error
        // execve would give; a directory or a file nobody may execute gives EACCES, as
        // execve would. The execve still decides.
        if searching {
            match nix::sys::stat::stat(cp.as_c_str()) {
                Err(e) => {
                    if e != nix::Error::ENOENT && e != nix::Error::ENOTDIR {
                        last = e;
                    }
                    continue;
                }
                Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & 0o111 == 0 => {
                    last = nix::Error::EACCES;
                    continue;
                }
                Ok(_) => {}
            }
        }
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
