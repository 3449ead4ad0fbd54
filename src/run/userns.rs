//! Entering the tool's user namespace, first thing in `main`.
//!
//! `unshare(CLONE_NEWUSER)` is refused in a multi-threaded process, and the id maps of a new
//! namespace must be written from the parent namespace. So before any thread exists the
//! binary forks: the child unshares a user and a mount namespace and waits; the parent writes
//! its id maps (directly, or via newuidmap/newgidmap for an unprivileged user with a
//! subordinate range), lets it go, and then stays outside as the host agent (see
//! [`super::agent`]) until the child exits, forwarding termination signals to it and exiting
//! with its status. The child returns from [`enter_if_needed`] and runs the command as
//! "root" of the namespace. No re-exec is needed: a fork of a single-threaded process is
//! itself single-threaded, and skipping execve keeps start-up lean.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use nix::unistd::{ForkResult, fork};

use super::idmap::{self, IdMaps};

/// Where the calling process stands after [`enter_if_needed`].
#[derive(Debug, Clone)]
pub enum ToolUserns {
    /// In the tool's user namespace with these maps.
    Remapped(IdMaps),
    /// Root with `--userns=host`: a private mount namespace, host ids.
    HostIds,
    /// Not entered; `reason` says why a remapped sandbox cannot run.
    NotEntered { reason: String },
}

static STATE: OnceLock<ToolUserns> = OnceLock::new();
static AGENT: OnceLock<RawFd> = OnceLock::new();
static CHILD: AtomicI32 = AtomicI32::new(0);
static KEEPER: AtomicI32 = AtomicI32::new(0);

/// The pid of the keeper whose namespaces this command joined (unprivileged users; see
/// [`super::keeper`]).
pub fn keeper_pid() -> Option<i32> {
    Some(KEEPER.load(Ordering::Relaxed)).filter(|p| *p > 0)
}

/// The state set by [`enter_if_needed`] (`NotEntered` when it was never called).
pub fn state() -> ToolUserns {
    STATE.get().cloned().unwrap_or(ToolUserns::NotEntered {
        reason: "the process did not call run::userns::enter_if_needed() at start".into(),
    })
}

/// How this process may create image content (owners it may give, and where extraction
/// runs), from where [`enter_if_needed`] left it.
pub fn content_policy() -> crate::layer::ContentPolicy {
    use crate::layer::{Confinement, ContentPolicy, DEFAULT_MAX_ID, Ownership};
    let limits = crate::limits::Limits::from_env().unwrap_or_else(|e| {
        eprintln!("boxkit: warning: {e}; using the default limits");
        crate::limits::Limits::DEFAULT
    });
    let max_bytes = Some(limits.max_layer_size);
    match state() {
        ToolUserns::Remapped(m) => ContentPolicy {
            // Only the caller's own id is mapped: no other owner can be represented, so
            // ownership is ignored and everything belongs to container root (podman's
            // ignore_chown_errors); builds that never need another owner still work.
            ownership: if m.single {
                Ownership::Ignore
            } else {
                Ownership::Preserve
            },
            max_id: m.container,
            // Root's tool namespace maps host ids above the container range: content is
            // created in a nested namespace that maps the container range alone.
            confinement: if m.container_maps().is_some() {
                Confinement::Nested { ids: m.container }
            } else {
                Confinement::InProcess
            },
            max_bytes,
        },
        // --userns=host: image ids are host ids, by the user's choice.
        ToolUserns::HostIds => ContentPolicy {
            ownership: Ownership::Preserve,
            max_id: u32::MAX,
            confinement: Confinement::InProcess,
            max_bytes,
        },
        // A library caller that never entered (tests as real root): the usual range.
        ToolUserns::NotEntered { .. } => ContentPolicy {
            ownership: Ownership::Preserve,
            max_id: DEFAULT_MAX_ID,
            confinement: Confinement::InProcess,
            max_bytes,
        },
    }
}

/// The socket to the host agent, when there is one.
pub fn agent_fd() -> Option<RawFd> {
    AGENT.get().copied()
}

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
    let code = unsafe { (*info).si_code };
    let child = CHILD.load(Ordering::Relaxed);
    if code <= 0 && child > 0 {
        unsafe { libc::kill(child, sig) };
    }
}

/// Enter the tool's user namespace (and a private mount namespace) unless already done.
/// Call first in `main`, before any thread starts. Returns in the namespace; the original
/// process never returns (it exits with the child's status). Failures to enter are recorded
/// in [`state`], so commands that do not need the namespace still work.
pub fn enter_if_needed() {
    if STATE.get().is_some() {
        return;
    }
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
    let maps = if host {
        if !root {
            let _ = STATE.set(ToolUserns::NotEntered {
                reason: "--userns=host needs root (an unprivileged user can only create \
                         namespaces inside its own user namespace)"
                    .into(),
            });
            return;
        }
        None
    } else {
        match idmap::plan_for_current_user() {
            Ok((m, name)) => {
                if m.single {
                    eprintln!("{}", idmap::single_mapping_warning(&name));
                }
                Some(m)
            }
            Err(e) => {
                let _ = STATE.set(ToolUserns::NotEntered {
                    reason: e.to_string(),
                });
                return;
            }
        }
    };
    let (outer, inner) = match socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) {
        Ok(p) => p,
        Err(e) => {
            let _ = STATE.set(ToolUserns::NotEntered {
                reason: format!("socketpair: {e}"),
            });
            return;
        }
    };
    // An unprivileged user joins its keeper's namespace (no setuid map helpers per command);
    // when that fails the command makes a namespace of its own, as root always does.
    let keeper = match &maps {
        Some(m) if !root => match super::keeper::ensure(m) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("boxkit: warning: {e}; using a user namespace of this command's own");
                None
            }
        },
        _ => None,
    };
    if let Some(k) = &keeper {
        KEEPER.store(k.pid, Ordering::Relaxed);
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    if maps.is_some() && keeper.is_none() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    match unsafe { fork() } {
        Err(e) => {
            let _ = STATE.set(ToolUserns::NotEntered {
                reason: format!("fork: {e}"),
            });
        }
        Ok(ForkResult::Child) => {
            drop(outer);
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let fd = inner.as_raw_fd();
            let go;
            let ok = if let Some(k) = keeper {
                go = true;
                nix::sched::setns(k.userns, CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| format!("join the keeper's user namespace (setns): {e}"))
                    .and_then(|()| unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}")))
            } else {
                let ok = unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"));
                let msg: &[u8] = if ok.is_ok() { b"u" } else { b"e" };
                let _ = send(fd, msg, MsgFlags::empty());
                let mut b = [0u8; 1];
                go = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'g';
                ok
            };
            match (ok, go) {
                (Err(e), _) => {
                    eprintln!("boxkit: enter user namespace: {e}");
                    std::process::exit(125);
                }
                (_, false) => std::process::exit(125),
                _ => {}
            }
            if maps.is_some() {
                let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
                let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
            }
            // Mounts made in here must not propagate back to the host.
            let _ = nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
                None::<&str>,
            );
            let _ = STATE.set(match maps {
                Some(m) => ToolUserns::Remapped(m),
                None => ToolUserns::HostIds,
            });
            let _ = AGENT.set(inner.into_raw_fd());
        }
        Ok(ForkResult::Parent { child }) => {
            drop(inner);
            let fd = outer.as_raw_fd();
            CHILD.store(child.as_raw(), Ordering::Relaxed);
            if keeper.is_none() {
                let mut b = [0u8; 1];
                let unshared = matches!(recv(fd, &mut b, MsgFlags::empty()), Ok(1)) && b[0] == b'u';
                let mut status = Ok(());
                if unshared && let Some(m) = &maps {
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
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = forward as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                for s in [
                    libc::SIGINT,
                    libc::SIGTERM,
                    libc::SIGHUP,
                    libc::SIGQUIT,
                    libc::SIGUSR1,
                    libc::SIGUSR2,
                    libc::SIGWINCH,
                ] {
                    libc::sigaction(s, &sa, std::ptr::null_mut());
                }
            }
            super::agent::serve(fd);
            let code = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => break c,
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                    Err(nix::Error::EINTR) | Ok(_) => continue,
                    Err(_) => break 125,
                }
            };
            std::process::exit(code);
        }
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
