//! Exiting without making the caller wait for this process's teardown.
//!
//! When a process exits, the kernel releases its memory (every mapping and page table), its
//! descriptors and its namespaces before its parent's `wait` returns. For a container's tool
//! process that is its whole address space plus the mount namespace it built the container
//! in: ≈ 0.5 ms of a container start on the benchmark machine (bench/README.md, "Session 24").
//! With the host agent in between, the agent reports the exit code first and the tool's
//! teardown overlaps with the caller going on ([`super::agent`]'s `Exit`). A run that keeps no
//! agent ([`super::userns`], "alone") gets the same with [`exit`]: it clones a child that shares
//! its memory, descriptors and namespaces (`CLONE_VM | CLONE_FILES | CLONE_FS`), then exits.
//! Its exit then tears down nothing that the child still holds; the child has asked for
//! `SIGKILL` at its parent's death, so it is killed right then and releases everything on its
//! own exit, while the caller already has the exit status. The child runs raw system calls
//! only, on a static stack, and is reaped by init (or the caller's subreaper), as any orphan.
//! A run's supervisor makes it ahead ([`arm`]), while pid 1 builds its root and the supervisor
//! would only wait: the clone then costs the exit nothing (−0.07 ms paired, "Session 24").

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::prestart::raw;

const STACK: usize = 16 << 10;

/// The child's stack: it makes three system calls in one small frame. Atomics, so that the
/// static is writable without `static mut`; nothing else ever touches it.
#[repr(C, align(16))]
struct LingerStack([AtomicU8; STACK]);

static STACK_MEM: LingerStack = LingerStack([const { AtomicU8::new(0) }; STACK]);

/// The lingering child: dies with its parent, or at once when the parent is already gone.
extern "C" fn linger_main(arg: *mut libc::c_void) -> libc::c_int {
    let parent = arg as usize;
    // SAFETY: prctl, getppid, ppoll with no descriptors and no timeout, and exit: integer
    // arguments only, on this child's own state.
    unsafe {
        raw::call(
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize, 0],
        );
        if raw::call(libc::SYS_getppid, [0; 3]) as usize == parent {
            loop {
                raw::call6(libc::SYS_ppoll, [0; 6]);
            }
        }
        raw::call(libc::SYS_exit, [0; 3]);
    }
    0
}

/// Whether the lingering child exists (made by [`arm`]).
static ARMED: AtomicBool = AtomicBool::new(false);

/// Make the lingering child now, ahead of [`exit`], from the main thread of a process that is
/// about to wait anyway (a run's supervisor while pid 1 builds its root): the exit then makes
/// none. Until this process exits the child only sleeps. Best effort; once per process.
pub fn arm() {
    // The parent-death signal follows the thread that made the child: the main thread, which
    // lives until the process exits.
    if raw::SUPPORTED
        && nix::unistd::gettid() == nix::unistd::getpid()
        && !ARMED.swap(true, Ordering::AcqRel)
        && !spawn()
    {
        ARMED.store(false, Ordering::Release);
    }
}

/// Clone the lingering child; whether it was made.
fn spawn() -> bool {
    let top = STACK_MEM.0.as_ptr().wrapping_add(STACK) as *mut libc::c_void;
    let me = std::process::id() as usize;
    // SAFETY: the child runs `linger_main` on the static stack, which no other code uses (one
    // child per process: `ARMED`, or the process's end in `exit`), and makes only raw system
    // calls; the memory it shares stays mapped until it exits, as it holds the address space.
    let pid = unsafe {
        libc::clone(
            linger_main,
            top,
            libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_FS | libc::SIGCHLD,
            me as *mut libc::c_void,
        )
    };
    pid > 0
}

/// Exit with `code` (after flushing standard output), leaving the teardown to a lingering
/// child (see the module documentation), made now unless [`arm`] made it. Where the child
/// cannot be made, a plain `_exit`.
pub fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if raw::SUPPORTED && !ARMED.load(Ordering::Acquire) {
        spawn();
    }
    // SAFETY: ends the process; every value that needed dropping is gone or holds nothing the
    // kernel does not release (the command has finished, its output is flushed).
    unsafe { libc::_exit(code) }
}
