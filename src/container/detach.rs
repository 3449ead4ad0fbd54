//! `boxrun -d`: leave the terminal before anything else happens.
//!
//! The tool's user namespace is entered through a host-side agent that stays the parent of
//! the tool process and lives as long as the container (it owns the cgroup and network). A
//! detached container must not keep the caller's shell waiting, so the split happens first,
//! in `main`, while the process is still single-threaded and outside any namespace: the
//! original process forks a daemon (new session, stdio on /dev/null) and waits on a pipe. The
//! daemon enters the namespace and starts the container; the monitor inside reports "started,
//! here is the id" or "failed, here is why" through the pipe (its fd travels in
//! `BOX_DETACH_FD`), and the original process prints that and exits.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicI32, Ordering};

const ENV: &str = "BOX_DETACH_FD";
static FD: AtomicI32 = AtomicI32::new(-2);

fn fd() -> i32 {
    let cur = FD.load(Ordering::Relaxed);
    if cur != -2 {
        return cur;
    }
    let f = std::env::var(ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(-1);
    FD.store(f, Ordering::Relaxed);
    f
}

/// Whether this process is a detached container's daemon that has not reported yet.
pub fn pending() -> bool {
    fd() >= 0
}

fn send(msg: &str) {
    let f = fd();
    if f < 0 {
        return;
    }
    // SAFETY: `f` is the report pipe this process was handed (BOX_DETACH_FD) and nothing
    // else owns it; FD is reset below so it is never used again.
    let mut file = unsafe { std::fs::File::from_raw_fd(f) };
    // NUL-terminated: the agent (outside the namespace) holds a copy of the pipe for the
    // container's lifetime, so the reader cannot wait for EOF.
    let _ = std::io::Write::write_all(&mut file, format!("{msg}\0").as_bytes());
    drop(file);
    FD.store(-1, Ordering::Relaxed);
}

/// Tell `boxrun -d` the container runs; it prints `id` and exits 0.
pub fn report_started(id: &str) {
    send(&format!("0 {id}"));
}

/// Tell `boxrun -d` the container could not start; it prints `why` and exits with `code`.
pub fn report_failure(why: &str, code: i32) {
    send(&format!("{code} {why}"));
}

/// Close our copy of the pipe without reporting (in processes that must not hold it).
pub fn close_report_fd() {
    let f = fd();
    if f >= 0 {
        let _ = nix::unistd::close(f);
        FD.store(-1, Ordering::Relaxed);
    }
}

/// Where [`daemonize`] leaves the calling process.
#[derive(Debug, PartialEq, Eq)]
pub enum Daemonized {
    /// In the daemon: go on and start the container.
    InDaemon,
    /// In the caller's process, after the report was printed: exit with this code.
    Exit(i32),
}

/// Fork the daemon. Returns [`Daemonized::InDaemon`] in the daemon; the calling process
/// waits for the report, prints it and gets [`Daemonized::Exit`]. Call while single-threaded.
pub fn daemonize(prog: &str) -> Daemonized {
    // Close-on-exec keeps helpers the agent runs (pasta) from holding the pipe.
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{prog}: create pipe: {e}");
            return Daemonized::Exit(125);
        }
    };
    // SAFETY: called first in main, while the process is single-threaded.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("{prog}: fork: {e}");
            Daemonized::Exit(125)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = nix::unistd::dup2_stdin(&null);
                let _ = nix::unistd::dup2_stdout(&null);
                let _ = nix::unistd::dup2_stderr(&null);
            }
            let w = w.into_raw_fd();
            // SAFETY: single-threaded (called first in main).
            unsafe { std::env::set_var(ENV, w.to_string()) };
            FD.store(w, Ordering::Relaxed);
            Daemonized::InDaemon
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(w);
            Daemonized::Exit(print_report(prog, std::fs::File::from(r)))
        }
    }
}

/// Read the daemon's report from `pipe` (up to its NUL), print it, and return the code the
/// caller's process exits with.
fn print_report(prog: &str, mut pipe: std::fs::File) -> i32 {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                if bytes.contains(&0) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(0);
    let msg = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let (code, text) = msg.split_once(' ').unwrap_or(("", ""));
    match code.parse::<i32>() {
        Ok(0) => {
            println!("{text}");
            0
        }
        Ok(c) => {
            eprintln!("{prog}: {text}");
            c
        }
        Err(_) => {
            eprintln!(
                "{prog}: the detached container's monitor ended without reporting whether it started"
            );
            125
        }
    }
}

// ---- A foreground run handed to a detached monitor (`--restart`) -------------------------
//
// A foreground container (`boxrun`, `box start -ai`) whose policy says "run again" when it
// ends is restarted in the background, as docker's daemon does after its client has printed
// the first run's output and exited with its code. With no daemon, the command's host-side
// process starts the monitor: that is `box container-start --restarted ID`, which detaches
// as `box start` does and runs the policy on from the restart count the state holds. The
// tool (inside the namespace, a fork of the host process that dies with it) names the
// container through a pipe made before the fork; the host process reads it once the tool
// has exited ([`take_handoff`]).

static HANDOFF_W: AtomicI32 = AtomicI32::new(-1);
/// The read end, kept here when no fork happened (the tool is the host process itself).
static HANDOFF_LOCAL_R: AtomicI32 = AtomicI32::new(-1);

/// Make the hand-off pipe (in the host process, before it forks the tool); returns its read
/// end for [`take_handoff`]. Call while single-threaded.
pub fn handoff_pipe() -> Option<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
    HANDOFF_W.store(w.into_raw_fd(), Ordering::Relaxed);
    Some(r)
}

/// No fork happened (the command runs without a namespace of its own): this process reads
/// its own hand-off ([`take_local_handoff`]).
pub fn keep_handoff_local(r: std::os::fd::OwnedFd) {
    HANDOFF_LOCAL_R.store(r.into_raw_fd(), Ordering::Relaxed);
}

/// In the tool: ask for container `id` of the store at `root` to be handed to a detached
/// monitor once this command has exited. False when nobody would read it.
pub fn request_handoff(root: &std::path::Path, id: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let f = HANDOFF_W.load(Ordering::Relaxed);
    if f < 0 {
        return false;
    }
    let mut msg = Vec::with_capacity(id.len() + root.as_os_str().len() + 2);
    msg.extend_from_slice(id.as_bytes());
    msg.push(0);
    msg.extend_from_slice(root.as_os_str().as_bytes());
    msg.push(0);
    // SAFETY: `f` is the pipe's write end, open for the process's life (never closed in the
    // tool); the borrow lasts for this call only.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(f) };
    // A few hundred bytes into an empty pipe: written whole at once (below PIPE_BUF).
    nix::unistd::write(fd, &msg).is_ok_and(|n| n == msg.len())
}

/// In the host process once the tool has exited: the (store root, container id) it asked to
/// hand off, if any.
pub fn take_handoff(r: std::os::fd::OwnedFd) -> Option<(std::path::PathBuf, String)> {
    use std::os::unix::ffi::OsStrExt;
    let w = HANDOFF_W.swap(-1, Ordering::Relaxed);
    if w >= 0 {
        let _ = nix::unistd::close(w);
    }
    // Written before the tool told the agent it exits: already in the pipe.
    let mut buf = Vec::with_capacity(8192);
    let n = crate::procfs::read_spare(r.as_raw_fd(), &mut buf).ok()?;
    let mut parts = buf[..n].split(|b| *b == 0);
    let id = std::str::from_utf8(parts.next()?).ok()?;
    let root = parts.next()?;
    let valid = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !root.is_empty();
    valid.then(|| {
        (
            std::path::PathBuf::from(std::ffi::OsStr::from_bytes(root)),
            id.to_string(),
        )
    })
}

/// [`take_handoff`] for a command that ran without a fork ([`keep_handoff_local`]).
pub fn take_local_handoff() -> Option<(std::path::PathBuf, String)> {
    let r = HANDOFF_LOCAL_R.swap(-1, Ordering::Relaxed);
    if r < 0 {
        return None;
    }
    // SAFETY: the read end kept by keep_handoff_local; the swap above makes this its only
    // owner.
    take_handoff(unsafe { std::os::fd::OwnedFd::from_raw_fd(r) })
}
