//! The supervisor: the tool-side process that prepares the container's mounts, clones its
//! pid 1 into fresh namespaces, has the host agent set up cgroup and network, says "go", and
//! waits ([`super::wait_loop`]).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};

use super::child::{ChildPlan, Pipes, child_main};
use super::{Blocked, ProcessError, PtyChannel, Result, exit_code, sys};
use crate::run::agent::{HostLink, Request};
use crate::run::context::{ToolContext, ToolUserns};
use crate::run::idmap::IdMaps;
use crate::run::isolation::Isolation;
use crate::run::network::Address;
use crate::run::prestart::{Leftover, Prestart};
use crate::run::spec::{NetworkMode, RootfsSource, SandboxSpec};
use crate::run::{caps, chown_notify, idmap, namespaces, rootfs, seccomp};

/// Where the container mounts its scratch tmpfs (generated /etc files, the new root's mount
/// point) inside its own mount namespace. Any existing directory works: it is covered only in
/// the container's namespace, and detached with the old root at pivot_root.
const CHILD_SCRATCH: &str = "/tmp";

/// Whether the calling process has a single thread (then a raw clone is safe): procfs counts
/// a process's threads in the link count of its `task` directory (2 + threads), which a stat
/// reads without generating all of /proc/self/status.
pub(crate) fn single_threaded() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/task").is_ok_and(|m| m.nlink() == 3)
}

/// Run the container to completion; returns its exit code (docker's mapping). `end`: how the
/// run relates to this process's end ([`Last`]).
pub fn run(spec: &SandboxSpec, in_userns: bool, tool: &ToolContext, end: Last) -> Result<i32> {
    if single_threaded() {
        return supervise(spec, in_userns, tool, end);
    }
    drop(end);
    // A raw clone would skip glibc's fork handlers (malloc locks held by other threads would
    // stay locked in the child), so first fork through glibc into a single-threaded helper.
    // Rust's stderr lock is held across the fork, so that no other thread (boxbuild prints
    // from several) holds it then: the helper and the container, which report errors with
    // eprintln, would wait for it forever. The child's copy is owned by its own thread (the
    // lock is reentrant) and released when its guard is dropped.
    let stderr = std::io::stderr().lock();
    // SAFETY: glibc's fork runs its handlers, so the child's allocator is usable; the child
    // runs `supervise` and then _exits without returning into the caller.
    let forked = unsafe { nix::unistd::fork() }.map_err(sys("fork"));
    drop(stderr);
    match forked? {
        nix::unistd::ForkResult::Child => {
            // A helper's exit would release the namespace on the waited path anyway.
            let code = match supervise(spec, in_userns, tool, Last::default()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("boxkit: {e}");
                    125
                }
            };
            // SAFETY: _exit skips the parent's atexit handlers and destructors, as a forked
            // helper must.
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

fn supervise(spec: &SandboxSpec, in_userns: bool, tool: &ToolContext, end: Last) -> Result<i32> {
    let asked = caps::resolve(&spec.cap_add, &spec.cap_drop)
        .map_err(|e| ProcessError::Setup(e.to_string()))?;
    let caps = match spec.isolation {
        Isolation::Namespaces { .. } => asked,
        // Chrooted: at most what the job has; with `none`, all of it.
        Isolation::Chroot => asked & job_caps()?,
        Isolation::Bare => job_caps()?,
    };
    // Without namespaces there is no CAP_SYS_ADMIN to load a filter with (and no_new_privs
    // would break setuid programs in RUN): the job runtime's own filter is what applies.
    let filter = if spec.isolation.namespaced() {
        spec.seccomp.compile(caps)?
    } else {
        seccomp::Seccomp::Unconfined.compile(caps)?
    };
    let own_uts = matches!(spec.isolation, Isolation::Namespaces { uts: true, .. });
    let job_name = || {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into())
    };
    // Without a UTS namespace of its own the container has the job's name.
    let hostname = match (&spec.hostname, spec.network) {
        _ if !own_uts => job_name(),
        (Some(h), _) => h.clone(),
        (None, NetworkMode::Host) => job_name(),
        (None, _) => spec.id.chars().take(12).collect(),
    };
    // An ephemeral upper lives on a detached tmpfs; only where the kernel refuses that is a
    // host directory made for it (its tmpfs mounted there, in the tool's private mount
    // namespace: rootfs::prepare). The container's own scratch tmpfs goes over a fixed
    // directory in its private mount namespace, so nothing is created on the host per run and
    // nothing is left behind if the supervisor is killed.
    let upper_scratch = std::env::temp_dir().join(format!("boxkit-{}", spec.id));
    let r = supervise_in(
        spec,
        in_userns,
        tool,
        &upper_scratch,
        hostname,
        (caps, end),
        &filter,
    );
    if nix::mount::umount2(&upper_scratch, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        let _ = std::fs::remove_dir(&upper_scratch);
    }
    r
}

/// The job's own effective capabilities (a chrooted command cannot gain any).
fn job_caps() -> Result<u64> {
    caps::effective().map_err(|e| ProcessError::Setup(format!("read the capability sets: {e}")))
}

fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// The container's pid 1, cloned and, unless `go_w` is gone, not yet told to go.
struct Started {
    pid: Pid,
    /// `None` when "go" was said before the clone.
    go_w: Option<OwnedFd>,
    err_r: OwnedFd,
    tty: Option<PtyChannel>,
    /// Where pid 1 sends its namespaces, for [`hold_until_exit`].
    ns_sock: Option<OwnedFd>,
    /// The detached tmpfs under the overlay's upper ([`rootfs::Prepared::scratch`]): closed
    /// once the container is gone, not on the start path.
    scratch: Option<OwnedFd>,
    /// The helper that made namespaces ahead, finished with once pid 1 has exec'd.
    leftover: Option<Leftover>,
}

fn supervise_in(
    spec: &SandboxSpec,
    in_userns: bool,
    tool: &ToolContext,
    scratch: &Path,
    hostname: String,
    (caps, Last { last, pre }): (u64, Last),
    filter: &seccomp::Filter,
) -> Result<i32> {
    let stdin_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    // Restored when this returns, on every path.
    let signals = Blocked::forwarded().map_err(sys("sigprocmask"))?;
    // Only container root mapped: chown is emulated (see chown_notify).
    let chown = if tool.single_mapping() && spec.isolation.namespaced() {
        Some(chown_notify::channel().map_err(|e| ProcessError::Setup(e.to_string()))?)
    } else {
        None
    };
    let devices = crate::run::cgroups::device_filter_applies(in_userns);
    let needs_host = !spec.limits.is_empty() || spec.network == NetworkMode::Bridge || devices;
    if needs_host && tool.is_alone() {
        return Err(ProcessError::Setup(
            "this run needs the host agent (cgroup limits or the bridge network), which a \
             command line that asks for neither does not start; please report this as a bug"
                .into(),
        ));
    }
    // Nothing to do between the clone and "go" (no host side, no chown listener), and pid 1
    // execs the command itself (no `--init`): "go" can be said before the clone.
    let go_first = !needs_host && chown.is_none() && !spec.init;
    let Started {
        pid,
        go_w,
        err_r,
        tty,
        ns_sock,
        scratch,
        leftover,
    } = start(
        spec,
        nested_maps(tool),
        scratch,
        hostname,
        Limits {
            caps,
            filter,
            chown_sock: chown.as_ref().map(|c| c.container.as_raw_fd()),
        },
        &signals,
        Last { last, pre },
        go_first,
    )?;
    // The container's end lives on in the child only.
    let chown = chown.map(|c| c.supervisor);

    let mut host = tool.host_link();
    let address = if needs_host {
        match host_setup(&mut host, spec, pid, devices) {
            Ok(a) => a,
            Err(e) => {
                kill_and_reap(pid);
                return Err(e);
            }
        }
    } else {
        None
    };
    // Started after the host side (which may fork helpers) and before "go"; joined when
    // this returns, after the container is gone.
    let root_may_chown = caps::names(caps).contains(&"CHOWN");
    let _chown_server = match chown.map(|c| chown_notify::Server::start(c, root_may_chown)) {
        Some(Err(e)) => {
            kill_and_reap(pid);
            if needs_host {
                let _ = host.call(Request::Release {
                    id: spec.id.clone(),
                });
            }
            return Err(ProcessError::Setup(e.to_string()));
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    if let Some(go_w) = go_w {
        let go = match &address {
            Some(a) => format!("{} {}", a.ip, a.gateway),
            None => String::new(),
        };
        let _ = nix::unistd::write(&go_w, format!("g{go}").as_bytes());
    }

    let master = tty.and_then(PtyChannel::receive_master);

    // A run alone ends by leaving its teardown to a lingering child: made now, while pid 1
    // builds its root on the other CPU and this process would only wait.
    if tool.is_alone() {
        crate::run::linger::arm();
    }
    // EOF on the error pipe: the command was exec'd (or the child died).
    let mut msg = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut msg);
    if let Some(s) = ns_sock {
        hold_until_exit(s);
    }
    // Done by now (pid 1 has exec'd, so it had the /dev tree, or built /dev without it):
    // reaped without a wait.
    if let Some(Leftover { pre, mnt }) = leftover {
        if let Some(m) = mnt {
            keep_until_exit(m);
        }
        drop(pre);
    }

    let status = if msg.is_empty() {
        super::wait_loop(pid, &signals, master, stdin_tty)
    } else {
        kill_and_reap(pid);
        Err(ProcessError::Setup(msg))
    };
    // Its unmount waits for an RCU grace period: a last run leaves it to this process's exit.
    match scratch {
        Some(fd) if last => keep_until_exit(fd),
        other => drop(other),
    }
    if needs_host {
        let _ = host.call(Request::Release {
            id: spec.id.clone(),
        });
    }
    status
}

/// Keep the container's namespaces referenced until this process exits (see
/// [`crate::run::run_last`]): pid 1 sent them over `sock` before its exec (this process may not
/// open /proc/PID/ns/* of a child that is not dumpable). Called once pid 1 has exec'd or
/// died, so the receive never waits on a live sender. Nothing received leaves the teardown
/// where it was.
fn hold_until_exit(sock: OwnedFd) {
    for ns in super::tty::receive_fds(&sock) {
        keep_until_exit(ns);
    }
}

/// Never close `fd`: the kernel closes it when this process exits, after the agent has the
/// exit code.
fn keep_until_exit(fd: OwnedFd) {
    let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
}

/// How a run relates to its process's end: `last`, the run is the process's last act (its
/// namespaces may be left to the process's exit: [`hold_until_exit`]); `pre`, namespaces made
/// ahead for it (only a last run has them).
#[derive(Debug, Default)]
pub struct Last {
    pub last: bool,
    pub pre: Option<Prestart>,
}

/// Root's tool namespace also maps host ids (for the tool's own file access); the container
/// then gets a nested user namespace with only the container range: its maps, if so.
fn nested_maps(tool: &ToolContext) -> Option<IdMaps> {
    match tool.userns() {
        ToolUserns::Remapped(m) => m.container_maps(),
        _ => None,
    }
}

/// What confines the container's processes: capabilities, the seccomp filter, and (only
/// container root mapped) the socket for the chown notify listener.
struct Limits<'a> {
    caps: u64,
    filter: &'a seccomp::Filter,
    chown_sock: Option<std::os::fd::RawFd>,
}

/// Prepare the mounts, clone the container's pid 1 (which runs [`child_main`]) and write its
/// nested user namespace's maps. `go_first`: nothing is to be done between the clone and
/// "go", and pid 1 execs the command itself; with namespaces made ahead, "go" is then said
/// before the clone and pid 1 shares this process's memory until its exec
/// ([`crate::run::prestart::Joined::clone_into`]).
#[allow(clippy::too_many_arguments)]
fn start(
    spec: &SandboxSpec,
    nested: Option<IdMaps>,
    scratch: &Path,
    hostname: String,
    limits: Limits,
    signals: &Blocked,
    Last { last: hold, pre }: Last,
    go_first: bool,
) -> Result<Started> {
    let Limits {
        caps,
        filter,
        chown_sock,
    } = limits;
    let pipe = || pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"));
    let ((go_r, go_w), (err_r, err_w)) = (pipe()?, pipe()?);
    let mut tty = PtyChannel::new(spec.tty).map_err(sys("socketpair"))?;
    let ns_pair = if hold && spec.isolation.namespaced() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let flags = SockFlag::SOCK_CLOEXEC;
        Some(
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, flags)
                .map_err(sys("socketpair"))?,
        )
    } else {
        None
    };
    let p = Pipes {
        go_r,
        go_w,
        err_r,
        err_w,
    };
    // Mounts whose sources only the tool can reach are made here, before clone; a chrooted
    // command gets none.
    let mut prepared = if spec.isolation.namespaced() {
        Some(
            rootfs::prepare(&spec.rootfs, &spec.mounts, scratch)
                .map_err(|e| ProcessError::Setup(e.to_string()))?,
        )
    } else {
        chroot_only(spec)?;
        None
    };
    let mut flags = namespaces::clone_flags(spec.network, spec.isolation);
    if nested.is_some() && spec.isolation.namespaced() {
        flags |= libc::CLONE_NEWUSER;
    }
    // The namespaces made ahead (`prestart`: user, network, IPC, UTS, cgroup), when this
    // clone would make them: pid 1 then joins them, and receives the /dev tree built ahead.
    let mut joined = pre.and_then(|p| p.take(flags, spec.extras.shm_size));
    if let (Some(j), Some(p)) = (&joined, &mut prepared) {
        p.dev_from = j.dev_from;
    }
    let plan = ChildPlan {
        spec,
        scratch: PathBuf::from(CHILD_SCRATCH),
        hostname,
        tty_sock: tty.as_ref().and_then(PtyChannel::child_end),
        ns_sock: ns_pair.as_ref().map(|(_, theirs)| theirs.as_raw_fd()),
        old_mask: signals.old(),
        caps,
        prepared: prepared.as_ref(),
        seccomp: filter,
        chown_sock,
        loopback_ready: joined.is_some(),
    };
    // Pid 1 shares this memory until its exec only when it waits for nothing from this
    // process, which cannot act until then: "go" is in the pipe before the clone.
    let share_vm =
        go_first && joined.is_some() && nix::unistd::write(&p.go_w, b"g").is_ok_and(|n| n == 1);
    // SAFETY: the supervisor is single-threaded (`run` made sure), so the clone may run
    // anything; the child never returns from child_main.
    let pid = match &joined {
        Some(j) => {
            let mut child = || child_main(&plan, &p);
            // SAFETY: as above; `child` never returns, and with `share_vm` it waits for
            // nothing from this process ("go" is written) and execs or exits.
            let pid = unsafe { j.clone_into(flags, &mut child, share_vm) };
            Pid::from_raw(pid.map_err(ProcessError::Setup)?)
        }
        // SAFETY: as above.
        None => match unsafe { namespaces::clone_into(flags) }? {
            0 => child_main(&plan, &p),
            pid => Pid::from_raw(pid),
        },
    };
    // Pid 1 is in them; nothing here needs them any more.
    let prestarted = joined.is_some();
    let leftover = joined.as_mut().and_then(|j| j.leftover.take());
    drop(joined);
    // The child holds its own copies of the mount fds; the scratch tmpfs stays open here.
    let scratch = prepared.as_mut().and_then(rootfs::Prepared::take_scratch);
    drop(prepared);
    let Pipes {
        go_r,
        go_w,
        err_r,
        err_w,
    } = p;
    drop((go_r, err_w));
    if let Some(t) = &mut tty {
        t.close_child_end();
    }
    // Prepared namespaces come with their maps written (to the helper that made them).
    if let Some(m) = nested
        .as_ref()
        .filter(|_| spec.isolation.namespaced() && !prestarted)
        && let Err(e) = idmap::write_maps(pid.as_raw(), m, &mut idmap::RealWriter)
    {
        kill_and_reap(pid);
        return Err(ProcessError::Setup(format!(
            "write the container's nested user namespace maps: {e}"
        )));
    }
    // Our copy of pid 1's end closed: a pid 1 that dies before sending reads as EOF.
    let ns_sock = ns_pair.map(|(ours, _theirs)| ours);
    Ok(Started {
        pid,
        go_w: (!share_vm).then_some(go_w),
        err_r,
        tty,
        ns_sock,
        scratch,
        leftover,
    })
}

/// What a chrooted command (no namespaces, so no mounts) can run on: a plain directory root
/// and no mounts of its own.
fn chroot_only(spec: &SandboxSpec) -> Result<()> {
    if !matches!(spec.rootfs, RootfsSource::Dir(_)) {
        return Err(ProcessError::Setup(format!(
            "isolation {} needs a plain directory root (the copy snapshotter), not an overlay",
            spec.isolation.describe()
        )));
    }
    if let Some(m) = spec.mounts.first() {
        return Err(ProcessError::Setup(format!(
            "isolation {} cannot mount {m:?}: mounts need a mount namespace, which this \
             environment refuses",
            spec.isolation.describe()
        )));
    }
    Ok(())
}

/// Ask the host agent for the container's cgroup, devices and network; returns its address.
fn host_setup(
    host: &mut HostLink,
    spec: &SandboxSpec,
    pid: Pid,
    devices: bool,
) -> Result<Option<Address>> {
    let g = host.call(Request::Setup {
        id: spec.id.clone(),
        pid: pid.as_raw(),
        limits: spec.limits.clone(),
        network: spec.network,
        ports: spec.ports.clone(),
        devices,
    })?;
    if let Some(hook) = &spec.on_published
        && !g.ports.is_empty()
    {
        (hook.0)(&g.ports);
    }
    Ok(g.address)
}

#[cfg(test)]
mod tests {
    use super::single_threaded;

    #[test]
    fn single_threaded_is_false_beside_another_thread_and_true_in_a_fork() {
        // The test harness runs this on a thread of its own: never single-threaded here.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(!single_threaded());
        // A fork has only the thread that forked.
        // SAFETY: the child only stats a file and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = if single_threaded() { 0 } else { 1 };
                // SAFETY: ends the forked child without running the harness's exit.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        tx.send(()).unwrap();
        other.join().unwrap().unwrap();
    }
}
