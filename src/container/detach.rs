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
use std::os::fd::{FromRawFd, IntoRawFd};
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
