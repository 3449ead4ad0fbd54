//! Pid 1 cloned into the namespaces the helper made: a `CLONE_VM | CLONE_VFORK` child on a
//! stack of its own joins them with `setns(2)` and clones pid 1 with `CLONE_PARENT`.

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::{AHEAD, Joined};

/// An anonymous mapping used as a child's stack, with a guard page at its bottom.
#[derive(Debug)]
pub(in crate::run) struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    pub(in crate::run) fn new(size: usize) -> Option<Stack> {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        // An overflow faults instead of writing below the stack.
        // SAFETY: the first page of the mapping made above.
        unsafe { libc::mprotect(base, 4096, libc::PROT_NONE) };
        Some(Stack { base, size })
    }

    /// The initial stack pointer (the mapping's end, 16-byte aligned).
    pub(in crate::run) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is what a stack pointer starts at.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

// SAFETY: a `Stack` owns its mapping outright (no other value refers to it), so it may be
// dropped (unmapped) on whichever thread holds it; the owner makes sure no child runs on it.
unsafe impl Send for Stack {}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; its owner makes sure no child still runs on it.
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// Stack of the joining child and of pid 1, which runs on a copy of it, or on the part below
/// the joining child's frames, until it execs: as large as a main thread's, untouched pages
/// cost nothing.
const STACK: usize = 8 << 20;

/// Room at the top of the joining child's stack for its own frames when pid 1 runs on the
/// rest of it ([`JoinArgs::pid1_stack`]): the child makes a handful of system calls.
const JOINER_FRAMES: usize = 64 << 10;

/// What the joining child reads and writes; it shares this process's memory.
struct JoinArgs<'a> {
    user: RawFd,
    /// The other namespaces to join, with their flags; unused slots hold -1.
    others: [(RawFd, libc::c_int); AHEAD.len()],
    /// The helper's mount namespace, to join instead of copying the tool's; -1 for a copy.
    mnt: RawFd,
    flags: libc::c_int,
    /// Pid 1's body; it never returns (it execs or exits).
    child: &'a mut dyn FnMut(),
    /// Where pid 1's stack starts when it shares this process's memory until its exec
    /// ([`Joined::clone_into`]'s `share_vm`); null: pid 1 gets a copy of the memory.
    pid1_stack: *mut libc::c_void,
    pid: libc::c_long,
    errno: libc::c_int,
    step: &'static str,
}

/// Pid 1 when it shares the supervisor's memory: runs `child`, which execs or exits.
extern "C" fn pid1_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the joining child's `JoinArgs`, alive (on the suspended supervisor's
    // stack) until this process execs or exits; the joining child, suspended in its clone
    // until then, holds no reference into it meanwhile.
    let child = unsafe { &mut *(*(arg as *mut JoinArgs)).child };
    child();
    // SAFETY: `child` does not return; should it, pid 1 ends here.
    unsafe { libc::_exit(125) }
}

/// The joining child: runs while the supervisor is suspended (`CLONE_VFORK`), in its memory,
/// so it makes only system calls until its clone; pid 1, a copy of this process's memory (or,
/// with [`JoinArgs::pid1_stack`], this memory itself until its exec), continues in `child`.
extern "C" fn join_main(arg: *mut libc::c_void) -> libc::c_int {
    let a = arg as *mut JoinArgs;
    // SAFETY: `arg` is the `JoinArgs` that `clone_into` passed, alive until this child exits
    // (the parent is suspended until then). It is only read and written through this raw
    // pointer, so no reference is held while pid 1 uses it.
    let fail = |a: *mut JoinArgs, step| unsafe {
        (*a).errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        (*a).step = step;
        1
    };
    // SAFETY: as above; plain copies of descriptors and flags.
    let (user, others, mnt, flags, pid1_stack) = unsafe {
        (
            (*a).user,
            (*a).others,
            (*a).mnt,
            (*a).flags,
            (*a).pid1_stack,
        )
    };
    // SAFETY: plain system calls on descriptors the parent owns.
    if user >= 0 && unsafe { libc::setns(user, libc::CLONE_NEWUSER) } != 0 {
        return fail(a, "setns to the container's user namespace");
    }
    for (fd, flag) in others {
        // SAFETY: as above.
        if fd >= 0 && unsafe { libc::setns(fd, flag) } != 0 {
            let step = match flag {
                libc::CLONE_NEWNET => "setns to the container's network namespace",
                libc::CLONE_NEWIPC => "setns to the container's IPC namespace",
                libc::CLONE_NEWUTS => "setns to the container's UTS namespace",
                _ => "setns to the container's cgroup namespace",
            };
            return fail(a, step);
        }
    }
    // Last: joining a mount namespace also moves this child's root and working directory
    // to that namespace's root.
    // SAFETY: as above.
    if mnt >= 0 && unsafe { libc::setns(mnt, libc::CLONE_NEWNS) } != 0 {
        return fail(a, "setns to the container's mount namespace");
    }
    let flags = flags | libc::CLONE_PARENT | libc::SIGCHLD;
    let pid = if pid1_stack.is_null() {
        // SAFETY: no pointers (a null stack: pid 1 continues on a copy of this one, in its
        // own memory).
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            // SAFETY: pid 1's own copy of `JoinArgs`; nothing else in its memory uses it.
            let child = unsafe { &mut *(*a).child };
            child();
            // SAFETY: `child` does not return; should it, pid 1 ends here.
            unsafe { libc::_exit(125) }
        }
        pid
    } else {
        // SAFETY: pid 1 runs `pid1_main` on the part of this child's stack below its own
        // frames ([`JOINER_FRAMES`]), in this memory, while this child is suspended in the
        // call (`CLONE_VFORK`) until pid 1 execs or exits.
        let pid = unsafe {
            libc::clone(
                pid1_main,
                pid1_stack,
                flags | libc::CLONE_VM | libc::CLONE_VFORK,
                arg,
            )
        };
        libc::c_long::from(pid)
    };
    if pid < 0 {
        return fail(a, "clone pid 1");
    }
    // SAFETY: as above; pid 1 has exec'd or exited, or has its own memory.
    unsafe { (*a).pid = pid };
    0
}

impl Joined {
    /// Clone pid 1 with `flags` (the container's clone flags; the user namespace and the ones
    /// made ahead are joined instead of made) as this process's child, running `child` in it.
    /// Its mount namespace is the helper's, when the helper made one: a copy of the tool's
    /// mounts owned by the same user namespace as the one the clone would make, only made
    /// earlier, so the clone copies no mount table and one namespace fewer is torn down.
    /// Returns its pid.
    ///
    /// With `share_vm`, pid 1 runs in this process's memory (`CLONE_VM | CLONE_VFORK`, on a
    /// stack of its own) until it execs, and this call returns only then (or when it exits):
    /// no copy of the tool's page tables is made at the clone and none torn down at the exec,
    /// and neither process takes copy-on-write faults on the other's pages.
    ///
    /// # Safety
    /// Same contract as [`namespaces::clone_into`]: this process is single-threaded; `child`
    /// should not return (pid 1 exits with 125 if it does). With `share_vm`, `child` must
    /// exec or exit without waiting for anything this process does after the call (it is
    /// suspended until then), and must leave alone what this process uses afterwards, except
    /// through the allocator (whose state it leaves consistent, as nothing else runs in this
    /// memory meanwhile but the helper, which never allocates).
    pub unsafe fn clone_into(
        &self,
        flags: libc::c_int,
        child: &mut dyn FnMut(),
        share_vm: bool,
    ) -> Result<libc::pid_t, String> {
        let mut others = [(-1, 0); AHEAD.len()];
        let mut joined = libc::CLONE_NEWUSER;
        for (slot, (fd, flag)) in others.iter_mut().zip(&self.others) {
            *slot = (fd.as_raw_fd(), *flag);
            joined |= flag;
        }
        let mnt = match self.leftover.as_ref().and_then(|l| l.mnt.as_ref()) {
            Some(m) if flags & libc::CLONE_NEWNS != 0 => {
                joined |= libc::CLONE_NEWNS;
                m.as_raw_fd()
            }
            _ => -1,
        };
        let flags = flags & !joined;
        let stack = Stack::new(STACK)
            .ok_or_else(|| format!("mmap: {}", std::io::Error::last_os_error()))?;
        let pid1_stack = if share_vm {
            // SAFETY: within the mapping (STACK is far larger); 16-byte aligned.
            unsafe { stack.top().cast::<u8>().sub(JOINER_FRAMES).cast() }
        } else {
            std::ptr::null_mut()
        };
        let mut args = JoinArgs {
            user: self.user.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            others,
            mnt,
            flags,
            child,
            pid1_stack,
            pid: -1,
            errno: 0,
            step: "clone the joining child",
        };
        // SAFETY: the stack is ours (its top is 16-byte aligned), `args` outlives the child
        // (CLONE_VFORK suspends this thread until the child exits), and the child makes only
        // system calls in this process's memory.
        let v = unsafe {
            libc::clone(
                join_main,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut args).cast(),
            )
        };
        let cloned = std::io::Error::last_os_error();
        if v > 0 {
            while let Err(nix::Error::EINTR) = waitpid(Pid::from_raw(v), None) {}
        }
        // The child that ran on it is gone, and pid 1 has its own copy.
        drop(stack);
        if v < 0 {
            return Err(format!("{}: {cloned}", args.step));
        }
        if args.pid < 0 {
            return Err(format!(
                "{}: {}",
                args.step,
                std::io::Error::from_raw_os_error(args.errno)
            ));
        }
        Ok(args.pid as libc::pid_t)
    }
}
