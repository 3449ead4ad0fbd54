//! This process's own id maps, written by a short-lived child that stays outside its new
//! user namespace.
//!
//! The id maps of a new user namespace can only be written from its parent namespace, by a
//! process with `CAP_SETUID`/`CAP_SETGID` there (user_namespaces(7)); a process inside the new
//! namespace has its capabilities only there. So [`super::userns`] usually forks: the child
//! unshares and becomes the tool, the parent (the host agent) writes its maps. A foreground run
//! that needs no host agent stays one process instead ([`super::userns`], "alone"): before it
//! unshares, it clones a writer with `CLONE_VM` on a small stack of its own (no page tables
//! copied, unlike a fork), which waits on a pipe, writes the maps into `/proc/PID/` once told,
//! and exits.
//!
//! The writer keeps the caller's host credentials (root's, which is the only caller that writes
//! maps directly) while it shares the caller's memory. So it makes only raw system calls on
//! buffers prepared before the clone, and the caller reaps it ([`Writer::finish`]) before it
//! does anything but copy its mount table: before it reads the store, an image or any other
//! input. The writer never outlives that: when the caller ends first, its end of the pipe
//! closes and the writer exits without writing.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::idmap::{self, IdMaps};
use super::prestart::{Stack, raw};

/// The writer's stack: it makes a handful of system calls in one frame.
const STACK: usize = 64 << 10;

/// What the writer reads (prepared before the clone) and writes (its outcome).
struct Job {
    /// The pipe's read end, on which "go" comes.
    wait: RawFd,
    /// The write end, which the writer closes in its own descriptor table first (so that the
    /// caller's exit ends the wait).
    go: RawFd,
    /// `/proc/PID/uid_map` and the others, each with its text, in the order they are written.
    files: Vec<(CString, Vec<u8>)>,
    /// Which file failed (its index), and the error number (positive) or 0.
    failed: AtomicUsize,
    errno: AtomicIsize,
}

/// A writer, started and waiting for [`Writer::go`].
pub struct Writer {
    pid: Pid,
    go: Option<OwnedFd>,
    reaped: bool,
    job: Box<Job>,
    _stack: Stack,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("pid", &self.pid).finish()
    }
}

impl Writer {
    /// Start a writer of `maps` for this process, which must be single-threaded and about to
    /// `unshare(CLONE_NEWUSER)`. `None` when it cannot be started (this architecture has no
    /// raw system calls here, or a clone failed): the caller then forks as usual.
    pub fn start(maps: &IdMaps) -> Option<Writer> {
        if !raw::SUPPORTED || maps.needs_helpers || !super::process::single_threaded() {
            return None;
        }
        let me = std::process::id();
        let files = idmap::map_files(maps)
            .into_iter()
            .map(|(file, text)| {
                let path = CString::new(format!("/proc/{me}/{file}")).ok()?;
                Some((path, text.into_bytes()))
            })
            .collect::<Option<Vec<_>>>()?;
        let (wait, go) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let mut job = Box::new(Job {
            wait: wait.as_raw_fd(),
            go: go.as_raw_fd(),
            files,
            failed: AtomicUsize::new(0),
            errno: AtomicIsize::new(0),
        });
        let stack = Stack::new(STACK)?;
        // SAFETY: the child runs `writer_main`, which makes only raw system calls (no libc, no
        // errno, no allocation) on `job`'s prepared buffers, on a stack of its own; `job` and
        // the stack live in the returned value until the child is reaped (`finish` or drop).
        // The process is single-threaded and, before the tool's run, installs no signal
        // handler that could run in the child.
        let pid = unsafe {
            libc::clone(
                writer_main,
                stack.top(),
                libc::CLONE_VM | libc::SIGCHLD,
                (&raw mut *job).cast(),
            )
        };
        // The child's copy of the read end is its own; this process keeps the write end.
        drop(wait);
        if pid <= 0 {
            return None;
        }
        Some(Writer {
            pid: Pid::from_raw(pid),
            go: Some(go),
            reaped: false,
            job,
            _stack: stack,
        })
    }

    /// Tell the writer that this process has unshared its user namespace.
    pub fn go(&mut self) -> bool {
        self.go
            .take()
            .is_some_and(|fd| nix::unistd::write(&fd, b"g").is_ok_and(|n| n == 1))
    }

    /// Wait for the writer to end; whether it wrote every map, or what failed.
    pub fn finish(mut self) -> Result<(), String> {
        let status = self.reap();
        let failed = self.job.failed.load(Ordering::Acquire);
        let errno = self.job.errno.load(Ordering::Acquire);
        if errno != 0 {
            let file = self.job.files.get(failed).map_or_else(
                || "the id maps".to_string(),
                |(p, _)| p.to_string_lossy().into_owned(),
            );
            let e = nix::Error::from_raw(errno as i32);
            return Err(format!("write {file}: {e}"));
        }
        match status {
            Some(WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!("the id map writer ended with {other:?}")),
        }
    }

    /// Close the pipe (a writer still waiting then exits) and wait for the writer's end.
    fn reap(&mut self) -> Option<WaitStatus> {
        drop(self.go.take());
        if self.reaped {
            return None;
        }
        self.reaped = true;
        loop {
            match waitpid(self.pid, None) {
                Err(nix::Error::EINTR) => continue,
                r => return r.ok(),
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The writer runs on `_stack` and reads `job`: both outlive it.
        self.reap();
    }
}

/// The writer (see the module documentation). Never returns: it exits.
extern "C" fn writer_main(arg: *mut libc::c_void) -> libc::c_int {
    use raw::call;
    // SAFETY: `arg` is the `Job` boxed for this child, alive until the caller has reaped it;
    // the caller does not touch it until then, and this child writes only its atomics.
    let job = unsafe { &*(arg as *const Job) };
    // SAFETY: close and read on this process's own descriptors, into a local byte.
    let told = unsafe {
        call(libc::SYS_close, [job.go as usize, 0, 0]);
        let mut b = 0u8;
        call(
            libc::SYS_read,
            [job.wait as usize, (&raw mut b) as usize, 1],
        ) == 1
            && b == b'g'
    };
    let mut code = 0;
    if told {
        for (i, (path, text)) in job.files.iter().enumerate() {
            let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as usize;
            let at = libc::AT_FDCWD as usize;
            // SAFETY: a NUL-terminated path and a byte buffer, both prepared before the clone
            // and unchanged since; the descriptor is this process's own.
            let r = unsafe {
                let fd = call(libc::SYS_openat, [at, path.as_ptr() as usize, flags]);
                if fd < 0 {
                    fd
                } else {
                    let w = call(
                        libc::SYS_write,
                        [fd as usize, text.as_ptr() as usize, text.len()],
                    );
                    call(libc::SYS_close, [fd as usize, 0, 0]);
                    w
                }
            };
            if r < 0 {
                job.failed.store(i, Ordering::Release);
                job.errno.store(r.wrapping_neg(), Ordering::Release);
                code = 1;
                break;
            }
        }
    } else {
        code = 2;
    }
    // SAFETY: ends this process (not the thread group of the caller: a process of its own).
    unsafe { call(libc::SYS_exit, [code, 0, 0]) };
    0
}
