//! Entering the tool's user namespace, first thing in `main`.
//!
//! `unshare(CLONE_NEWUSER)` is refused in a multi-threaded process, and the id maps of a new
//! namespace must be written from the parent namespace. So before any thread exists the
//! binary forks: the child unshares a user and a mount namespace and waits; the parent writes
//! its id maps (directly, or via newuidmap/newgidmap for an unprivileged user with a
//! subordinate range), lets it go, and then stays outside as the host agent (see
//! [`super::agent`]) until the child exits, forwarding termination signals to it and exiting
//! with its status. The child returns [`Entered::Tool`] from [`enter_if_needed`], with the
//! [`ToolContext`] the CLI passes down, and runs the command as "root" of the namespace; the
//! agent returns [`Entered::Exit`] with the child's status, and the CLI exits with it. No
//! re-exec is needed: a fork of a single-threaded process is itself single-threaded, and
//! skipping execve keeps start-up lean.

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::unistd::{ForkResult, Pid, fork};

use super::context::ToolContext;
pub use super::context::ToolUserns;
use super::idmap::{self, IdMaps};
use super::keeper::Keeper;

/// Where [`enter_if_needed`] leaves the calling process.
#[derive(Debug)]
pub enum Entered {
    /// This process is the tool: go on with this context.
    Tool(ToolContext),
    /// This process has nothing more to do and must exit with this code: the host agent
    /// once the tool process ended (its status), or a tool process that could not enter.
    /// The CLI edge ends the process; library code never does.
    Exit(i32),
}

/// The tool process's pid, for [`forward`]: a signal handler receives no context, so this
/// one value stays process-wide (set once, in the agent, before the handler is installed).
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Whether the command line or `BOX_USERNS` asks for `--userns=host`.
fn wants_host(args: &[String]) -> bool {
    if std::env::var("BOX_USERNS").is_ok_and(|v| v == "host") {
        return true;
    }
    let mut it = args.iter().take_while(|a| *a != "--");
    while let Some(a) = it.next() {
        if a == "--userns=host" || (a == "--userns" && it.next().is_some_and(|v| v == "host")) {
            return true;
        }
    }
    false
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Terminal-generated signals (SI_KERNEL) already reach the child, which shares our
    // process group; forward only those sent by kill(2) and friends.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    let child = CHILD.load(Ordering::Relaxed);
    if code <= 0
        && child > 0
        && let Ok(s) = Signal::try_from(sig)
    {
        // kill(2) is async-signal-safe.
        let _ = nix::sys::signal::kill(Pid::from_raw(child), s);
    }
}

/// Not entering: a context saying why, for commands that do not need the namespace.
fn not_entered(reason: impl Into<String>) -> Entered {
    Entered::Tool(ToolContext::not_entered(reason))
}

/// The maps of the namespace to make: `Ok(None)` for `--userns=host` (root only).
fn plan(host: bool, root: bool) -> Result<Option<IdMaps>, String> {
    if host {
        if !root {
            return Err(
                "--userns=host needs root (an unprivileged user can only create \
                        namespaces inside its own user namespace)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let (m, name) = idmap::plan_for_current_user().map_err(|e| e.to_string())?;
    if m.single {
        eprintln!("{}", idmap::single_mapping_warning(&name));
    }
    Ok(Some(m))
}

/// Enter the tool's user namespace (and a private mount namespace). Call once, first in
/// `main`, before any thread starts. The process forks: the child returns
/// [`Entered::Tool`] in the namespace; the original process stays outside as the host agent
/// and returns [`Entered::Exit`] with the child's status once it has ended. Failures to enter
/// leave a context saying why (`NotEntered`), so commands that do not need the namespace
/// still work.
///
/// `meanwhile` runs in the child while the parent writes its id maps (when it does): work the
/// command needs anyway (parsing its arguments) then costs no time of its own. With
/// `prestart` (a foreground container run), the child first starts the helper that makes the
/// container's namespaces and /dev ahead ([`super::prestart`]), as soon as its maps exist, and
/// runs `meanwhile` after that: the helper's work then overlaps the parse too.
///
/// With `alone` (a foreground run whose command line needs nothing of the host side: no
/// cgroup limits, no host network, no `--cidfile`; the CLI decides), the process does not
/// fork when it can enter by itself: an unprivileged user joins its keeper's namespace, and
/// root makes its namespace with a short-lived map writer ([`super::selfmap`]). The process
/// is then the tool, with no agent ([`ToolContext::is_alone`]), and ends through
/// [`super::linger::exit`]. Otherwise it forks as above.
pub fn enter_if_needed(meanwhile: &mut dyn FnMut(), prestart: bool, alone: bool) -> Entered {
    let args: Vec<String> = std::env::args().collect();
    let host = wants_host(&args);
    let euid = nix::unistd::geteuid();
    let root = euid.is_root();
    if std::env::var_os("BOX_HOST_UID").is_none() {
        // Inside the namespace every process is uid 0; the store's default root depends on
        // who the user really is (crate::store::Store::default_root).
        // SAFETY: called first in main, before any thread exists.
        unsafe { std::env::set_var("BOX_HOST_UID", euid.as_raw().to_string()) };
    }
    let maps = match plan(host, root) {
        Ok(m) => m,
        Err(reason) => return not_entered(reason),
    };
    // An unprivileged user joins its keeper's namespace (no setuid map helpers per command);
    // when that fails the command makes a namespace of its own, as root always does.
    let mut keeper = match &maps {
        Some(m) if !root => match super::keeper::ensure(m) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("boxkit: warning: {e}; using a user namespace of this command's own");
                None
            }
        },
        _ => None,
    };
    if alone && let Some(m) = &maps {
        if let Some(k) = keeper.take() {
            return in_place(&maps, Join::Keeper(k), meanwhile, prestart);
        }
        if root && let Some(w) = super::selfmap::Writer::start(m) {
            return in_place(&maps, Join::Own(w), meanwhile, prestart);
        }
    }
    let (outer, inner) = match socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) {
        Ok(p) => p,
        Err(e) => return not_entered(format!("socketpair: {e}")),
    };
    let agent = nix::unistd::getpid();
    // SAFETY: called first in main, while the process is single-threaded.
    match unsafe { fork() } {
        Err(e) => not_entered(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(outer);
            tool_side(inner, maps, keeper, agent, meanwhile, prestart)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(inner);
            Entered::Exit(agent_side(&outer, child, maps.as_ref(), keeper))
        }
    }
}

/// The forked child: join the keeper's user namespace or make one (maps written by the
/// parent), make a private mount namespace, and become the tool.
fn tool_side(
    inner: OwnedFd,
    maps: Option<IdMaps>,
    keeper: Option<Keeper>,
    agent: Pid,
    meanwhile: &mut dyn FnMut(),
    prestart: bool,
) -> Entered {
    // The tool dies with the agent, which owns its cgroups and network.
    if !die_with(agent) {
        return Entered::Exit(125);
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    if maps.is_some() && keeper.is_none() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let fd = inner.as_raw_fd();
    let keeper_pid = keeper.as_ref().map(|k| k.pid);
    let go;
    // The kept probe's key, read ahead in a job container (see below) once this process is
    // in its final namespaces: here, or after its helper is started.
    let mut key_after_helper = false;
    let ok = if let Some(k) = keeper {
        go = true;
        nix::sched::setns(k.userns, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("join the keeper's user namespace (setns): {e}"))
            .and_then(|()| unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}")))
    } else {
        // The user namespace first, so that the agent writes its maps while this process
        // copies the mount table into its new mount namespace (≈ 0.1 ms as root), which needs
        // no maps: the new user namespace's capabilities are ours from the unshare on.
        let user = flags & CloneFlags::CLONE_NEWUSER;
        let ok = unshare(user).map_err(|e| format!("unshare({user:?}): {e}"));
        let msg: &[u8] = if ok.is_ok() { b"u" } else { b"e" };
        let _ = send(fd, msg, MsgFlags::empty());
        let rest = flags - user;
        let ok = ok.and_then(|()| unshare(rest).map_err(|e| format!("unshare({rest:?}): {e}")));
        if !prestart {
            meanwhile();
        }
        // In a job container a start checks the kept probe against the environment: what
        // of that the maps do not change is read here, while the agent writes the maps. A
        // foreground run reads it once its helper is started instead: the agent's "go"
        // usually comes before these reads would be done, and the helper (the start's
        // critical path) can only start after "go".
        if ok.is_ok() && super::idmap::in_job_container() {
            if prestart {
                key_after_helper = true;
            } else {
                super::probe::read_key_ahead();
            }
        }
        let mut b = [0u8; 1];
        go = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'g';
        ok
    };
    match (ok, go) {
        // Refused here (a job container's seccomp profile): go on outside, as a tool that
        // did not enter; what needs the namespace says so, and chroot isolation still works.
        (Err(e), _) => return not_entered(format!("enter the user namespace: {e}")),
        (_, false) => return Entered::Exit(125),
        _ => {}
    }
    if maps.is_some() {
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
        // As root that changed the effective uid (host 0 to the range's base), and a change
        // of effective ids clears the parent-death signal (prctl(2)): arm it again.
        if !die_with(agent) {
            return Entered::Exit(125);
        }
    }
    mounts_stay_here();
    let pre = match &maps {
        Some(m) if prestart => super::prestart::Prestart::spawn(m),
        _ => None,
    };
    if key_after_helper {
        super::probe::read_key_ahead();
    }
    if prestart {
        meanwhile();
    }
    let userns = match maps {
        Some(m) => ToolUserns::Remapped(m),
        None => ToolUserns::HostIds,
    };
    // The agent's socket lives as long as the tool process.
    let agent: RawFd = inner.into_raw_fd();
    let tool = ToolContext::new(userns, Some(agent), keeper_pid);
    tool.keep_prestart(pre);
    Entered::Tool(tool)
}

/// How a run that goes alone enters its user namespace.
enum Join {
    /// Join the keeper's (an unprivileged user).
    Keeper(Keeper),
    /// Make one, whose maps this writer writes (root).
    Own(super::selfmap::Writer),
}

/// Enter the namespaces in this very process, with no host agent: a foreground run that needs
/// nothing of the host side (see [`enter_if_needed`]'s `alone`). Saves the fork of the tool
/// and the agent's wait and exit; the process then exits through [`super::linger::exit`].
fn in_place(
    maps: &Option<IdMaps>,
    join: Join,
    meanwhile: &mut dyn FnMut(),
    prestart: bool,
) -> Entered {
    let mut keeper_pid = None;
    let entered = match join {
        Join::Keeper(k) => {
            keeper_pid = Some(k.pid);
            nix::sched::setns(k.userns, CloneFlags::CLONE_NEWUSER)
                .map_err(|e| format!("join the keeper's user namespace (setns): {e}"))
                .and_then(|()| {
                    unshare(CloneFlags::CLONE_NEWNS)
                        .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))
                })
        }
        Join::Own(mut writer) => {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
                // Still outside, with nothing changed: go on as a tool that did not enter.
                drop(writer);
                return not_entered(format!("enter the user namespace: unshare: {e}"));
            }
            // The writer writes the maps while this process copies its mount table.
            let told = writer.go();
            let ns = unshare(CloneFlags::CLONE_NEWNS);
            // Reaped before anything else happens here: it has the host's credentials.
            let written = writer.finish();
            match (told, written, ns) {
                (true, Ok(()), Ok(())) => Ok(()),
                (_, Err(e), _) => Err(format!("set up user namespace id maps: {e}")),
                (false, ..) => Err("set up user namespace id maps: the writer is gone".into()),
                (_, _, Err(e)) => Err(format!("unshare(CLONE_NEWNS): {e}")),
            }
        }
    };
    if let Err(e) = entered {
        // In a user namespace without maps, or without a mount namespace of its own: nothing
        // can go on here.
        eprintln!("boxkit: {e}");
        return Entered::Exit(125);
    }
    let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
    let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    mounts_stay_here();
    let pre = match maps {
        Some(m) if prestart => super::prestart::Prestart::spawn(m),
        _ => None,
    };
    meanwhile();
    let userns = match maps {
        Some(m) => ToolUserns::Remapped(m.clone()),
        None => ToolUserns::HostIds,
    };
    let tool = ToolContext::alone(userns, keeper_pid);
    tool.keep_prestart(pre);
    Entered::Tool(tool)
}

/// Mounts made in the tool's mount namespace must not propagate back to the host: every
/// mount becomes a slave of the host's (it still sees the host's new mounts).
fn mounts_stay_here() {
    let _ = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    );
}

/// Make this process get SIGKILL when `agent`, its parent, exits; false when the parent has
/// already gone (then the signal would never come). Call it again after any change of
/// effective ids, which clears the setting.
fn die_with(agent: Pid) -> bool {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    nix::unistd::getppid() == agent
}

/// The original process: write the child's maps (unless it joins a keeper), then serve as
/// the host agent until the child exits; returns the child's exit status.
fn agent_side(outer: &OwnedFd, child: Pid, maps: Option<&IdMaps>, keeper: Option<Keeper>) -> i32 {
    let fd = outer.as_raw_fd();
    CHILD.store(child.as_raw(), Ordering::Relaxed);
    let keeper_pid = keeper.as_ref().map(|k| k.pid);
    if keeper.is_none() {
        let mut b = [0u8; 1];
        let unshared = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'u';
        let mut status = Ok(());
        if unshared && let Some(m) = maps {
            status = idmap::write_maps(child.as_raw(), m, &mut idmap::RealWriter);
        }
        if let Err(e) = &status {
            eprintln!("boxkit: set up user namespace id maps: {e}");
        }
        let go: &[u8] = if unshared && status.is_ok() {
            b"g"
        } else {
            b"x"
        };
        let _ = send(fd, go, MsgFlags::empty());
    }
    drop(keeper);
    forward_signals();
    if let Some(code) = super::agent::serve(fd, keeper_pid) {
        // The tool has finished everything; its exit (the teardown of its namespaces) goes on
        // without the caller, and init reaps it.
        return i32::from(code);
    }
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => return c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Err(nix::Error::EINTR) | Ok(_) => continue,
            Err(_) => return 125,
        }
    }
}

/// Forward termination signals (and SIGWINCH) sent to the agent to the tool process.
fn forward_signals() {
    let sa = SigAction::new(
        SigHandler::SigAction(forward),
        SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // The same signals the supervisor relays on to the container.
    for s in super::process::FORWARDED {
        // SAFETY: `forward` only reads an atomic and calls kill(2), both async-signal-safe.
        let _ = unsafe { sigaction(s, &sa) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_mode_is_read_from_flags_before_the_command() {
        assert!(wants_host(&v(&["box", "run", "--userns=host", "img"])));
        assert!(wants_host(&v(&["box", "run", "--userns", "host", "img"])));
        assert!(!wants_host(&v(&[
            "box",
            "run",
            "img",
            "--",
            "--userns=host"
        ])));
        assert!(!wants_host(&v(&["box", "run", "img"])));
    }
}
