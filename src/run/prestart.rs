//! A foreground container's network, IPC, UTS and cgroup namespaces, made ahead of its pid 1
//! by a helper on another CPU.
//!
//! Creating a network namespace costs ≈ 0.45 ms of kernel time (registering its loopback
//! device and its sysctls): most of what `clone(2)` with a container's seven namespaces costs
//! (0.6–0.75 ms here, against 0.1 ms without the network namespace; the IPC, UTS and cgroup
//! namespaces 0.09–0.13, 0.07–0.09 and 0.06 ms of the rest), and the supervisor would spend it
//! between the image work and pid 1. None of it depends on the image, so a
//! foreground `boxrun` starts a helper first thing in the tool's user namespace
//! (`cli::run::run`), before it checks the environment and reads the store. The helper is born
//! in the container's nested user namespace (root's case:
//! `clone(CLONE_NEWUSER)`, whose maps the tool writes at once, as it would for pid 1), makes
//! the network, IPC, UTS and cgroup namespaces the container would get (its cgroup namespace
//! is rooted where pid 1's would be: the tool's cgroup, which the helper shares), brings
//! loopback up and sends them all back over a socket. The mount namespace is left to the
//! clone (a copy of the tool's mounts at that moment), as is the pid namespace.
//!
//! Pid 1 must still be created by a `clone(2)` that makes its pid namespace (a pid namespace
//! cannot be named before its init exists) from inside the user namespace that is to own it.
//! So the supervisor starts a short-lived `CLONE_VM | CLONE_VFORK` child on a stack of its
//! own ([`Joined::clone_into`]), which joins the user namespace and the others with `setns(2)`
//! and clones pid 1 with `CLONE_PARENT` and the remaining namespace flags: pid 1 is the
//! supervisor's child, in the same namespaces, owned by the same user namespace, as one
//! `clone(2)` would give ([`super::namespaces`]).
//!
//! The scheduler of a small VM packs a new process onto its parent's CPU, where it would only
//! wait for the parent to block: the tool moves the helper to its other CPUs right after the
//! clone (measured: the helper then starts 0.06 ms after the clone and is done before the
//! supervisor asks, at the median; left on the parent's CPU it started up to 0.9 ms late). When
//! the supervisor asks and the helper is not done (the other CPUs are busy), the helper is
//! moved onto the supervisor's own CPU, which is about to wait for it: a start is then no
//! slower than one that makes the namespace itself (with a busy loop on the other CPU: 0.26 ms
//! faster than the plain clone, where leaving the helper there made it 1.5 ms slower). Everything is best
//! effort: whatever fails, or a spec that wants other namespaces than the helper made, leaves
//! the container to the plain `clone(2)`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::context::{ToolContext, ToolUserns};
use super::isolation::Isolation;
use super::spec::NetworkMode;
use super::{idmap, namespaces};

/// The namespaces a helper can make ahead: all but the mount namespace (a copy of the tool's
/// at clone) and the pid namespace (which cannot exist before its pid 1), in the order
/// they are sent and joined.
const AHEAD: [libc::c_int; 4] = [
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// The `/proc/self/ns` file of each of [`AHEAD`], in the same order.
const AHEAD_FILES: [&std::ffi::CStr; 4] = [
    c"/proc/self/ns/net",
    c"/proc/self/ns/ipc",
    c"/proc/self/ns/uts",
    c"/proc/self/ns/cgroup",
];

/// A running helper and what it makes.
#[derive(Debug)]
pub struct Prestart {
    /// Whether the helper is in a nested user namespace of its own (root's case).
    nested: bool,
    /// The namespaces it makes (a subset of [`AHEAD`], always with the network namespace).
    made: libc::c_int,
    helper: Pid,
    sock: OwnedFd,
    /// The tool's CPUs, given back to the helper when its result is needed.
    cpus: Option<libc::cpu_set_t>,
    /// What the helper reads, and its stack: it shares this process's memory, so both are
    /// kept (never read here) until it is reaped.
    _args: Box<HelperArgs>,
    _stack: Stack,
}

/// The namespaces a pid 1 joins ([`Joined::clone_into`]).
#[derive(Debug)]
pub struct Joined {
    /// The nested user namespace, which owns the others.
    user: Option<OwnedFd>,
    /// The others, each with its clone flag, in [`AHEAD`]'s order.
    others: Vec<(OwnedFd, libc::c_int)>,
}

impl Prestart {
    /// Start the helper for a container with this network and isolation, if that is worth it
    /// and possible here: a namespaced container with a network namespace of its own, in a
    /// single-threaded tool that entered its user namespace.
    pub fn spawn(network: NetworkMode, isolation: Isolation, tool: &ToolContext) -> Option<Self> {
        let flags = namespaces::clone_flags(network, isolation);
        if !raw::SUPPORTED || !isolation.namespaced() || flags & libc::CLONE_NEWNET == 0 {
            return None;
        }
        let made = AHEAD.iter().fold(0, |m, f| m | (flags & f));
        let maps = match tool.userns() {
            ToolUserns::Remapped(m) => m.container_maps(),
            _ => return None,
        };
        if !super::process::single_threaded() {
            return None;
        }
        let nested = maps.is_some();
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        let (cpus, others) = other_cpus().unzip();
        let mut args = Box::new(HelperArgs {
            sock: theirs.as_raw_fd(),
            nested,
            made,
            steer: others.is_some(),
            // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
            others: others.unwrap_or(unsafe { std::mem::zeroed() }),
        });
        let stack = Stack::new(HELPER_STACK)?;
        let user = if nested { libc::CLONE_NEWUSER } else { 0 };
        // SAFETY: the child runs `helper_main`, which makes only raw system calls (no libc, no
        // errno, no allocation) in this process's memory, on a stack of its own; `args` and
        // `stack` live in the returned value until the child is reaped. The tool installs no
        // signal handlers (only the host agent does), so no handler can run in the child.
        let pid = unsafe {
            libc::clone(
                helper_main,
                stack.top(),
                libc::CLONE_VM | user | libc::SIGCHLD,
                (&raw mut *args).cast(),
            )
        };
        drop(theirs);
        if pid <= 0 {
            return None;
        }
        let helper = Pid::from_raw(pid);
        // Moved at once, unless it already moved itself: a new process waits on its parent's
        // CPU until the parent blocks or is preempted.
        if args.steer {
            // SAFETY: a valid cpu_set_t of the size given, for a child of this process.
            unsafe {
                libc::sched_setaffinity(pid, std::mem::size_of_val(&args.others), &args.others)
            };
        }
        // From here on, dropping `pre` ends and reaps the helper.
        let pre = Prestart {
            nested,
            made,
            helper,
            sock: ours,
            cpus,
            _args: args,
            _stack: stack,
        };
        if let Some(m) = &maps {
            idmap::write_maps(helper.as_raw(), m, &mut idmap::RealWriter).ok()?;
        }
        // The maps are written: the helper may exit once it has sent the namespaces.
        nix::unistd::write(&pre.sock, b"m").ok()?;
        Some(pre)
    }

    /// The prepared namespaces, when a clone with `flags` (the container's clone flags, with
    /// `CLONE_NEWUSER` for a nested user namespace) would make them; waits for the helper if it
    /// is not done yet. `None` leaves the container to the plain clone.
    pub fn take(self, flags: libc::c_int) -> Option<Joined> {
        let nested = flags & libc::CLONE_NEWUSER != 0;
        let ahead = AHEAD.iter().fold(0, |m, f| m | (flags & f));
        if ahead != self.made || nested != self.nested {
            return None;
        }
        if let Some(all) = &self.cpus {
            // Not done yet: the other CPUs may be busy (the helper then waits there behind
            // other work while this CPU idles). It finishes here, where this process is about
            // to wait for it, and no slower than this process making the namespace itself.
            let here = match super::process::receive_fds_now(&self.sock) {
                Some(fds) => return self.joined(fds),
                None => this_cpu(),
            };
            let to = here.as_ref().unwrap_or(all);
            // SAFETY: a valid cpu_set_t of the size given, for a child of this process.
            unsafe {
                libc::sched_setaffinity(self.helper.as_raw(), std::mem::size_of_val(to), to);
            }
        }
        let fds = super::process::receive_fds(&self.sock);
        self.joined(fds)
    }

    /// The namespaces from what the helper sent: the user namespace first when nested, then
    /// each one made, in [`AHEAD`]'s order. Anything else is no result.
    fn joined(&self, fds: Vec<OwnedFd>) -> Option<Joined> {
        let mut fds = fds.into_iter();
        let user = if self.nested { Some(fds.next()?) } else { None };
        let mut others = Vec::with_capacity(AHEAD.len());
        for flag in AHEAD.into_iter().filter(|f| self.made & f != 0) {
            others.push((fds.next()?, flag));
        }
        fds.next().is_none().then_some(Joined { user, others })
    }
}

/// The set of just the CPU this thread runs on.
fn this_cpu() -> Option<libc::cpu_set_t> {
    // SAFETY: sched_getcpu has no preconditions.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    if here >= libc::CPU_SETSIZE as usize {
        return None;
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `here` is within the set's size (checked above).
    unsafe { libc::CPU_SET(here, &mut set) };
    Some(set)
}

impl Drop for Prestart {
    /// The helper exits when its socket closes; reap it. Its stack and arguments are
    /// dropped after this, when nothing runs on them any more.
    fn drop(&mut self) {
        use nix::sys::socket::{Shutdown, shutdown};
        let _ = shutdown(self.sock.as_raw_fd(), Shutdown::Both);
        while let Err(nix::Error::EINTR) = waitpid(self.helper, None) {}
    }
}

/// The CPUs this process may use and, when there is more than one, those of them it is not
/// running on.
fn other_cpus() -> Option<(libc::cpu_set_t, libc::cpu_set_t)> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut all: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a cpu_set_t of the size given, written by the kernel.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&all), &mut all) } != 0 {
        return None;
    }
    // SAFETY: sched_getcpu has no preconditions.
    let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    if here >= libc::CPU_SETSIZE as usize {
        return None;
    }
    let mut others = all;
    // SAFETY: `here` is within the set's size (checked above).
    let count = unsafe {
        libc::CPU_CLR(here, &mut others);
        libc::CPU_COUNT(&others)
    };
    (count > 0).then_some((all, others))
}

/// Stack of the helper: it makes a handful of system calls.
const HELPER_STACK: usize = 64 << 10;

/// What the helper reads; it shares this process's memory.
#[derive(Debug)]
struct HelperArgs {
    sock: RawFd,
    nested: bool,
    /// The namespaces to make ([`AHEAD`]'s flags).
    made: libc::c_int,
    steer: bool,
    others: libc::cpu_set_t,
}

/// The helper, a `CLONE_VM` child (no copy of the tool's memory to make, and none for the tool
/// to fault back in): move to the other CPUs (a new process starts on its parent's), make the
/// network, IPC, UTS and cgroup namespaces (in the user namespace it was born in), bring
/// loopback up, send the user namespace (when nested) and the ones it made, and exit once the
/// tool has written the maps (or is gone). It runs at the same time as the tool in the same memory, so it makes raw
/// system calls only: no libc (whose errno is the tool's thread's), no allocation, no panic.
extern "C" fn helper_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `HelperArgs` the tool boxed for this child; it is only read, and
    // it lives until the tool has reaped this child.
    let a = unsafe { &*(arg as *const HelperArgs) };
    if a.steer {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a valid cpu_set_t of that size.
        unsafe {
            raw::call(
                libc::SYS_sched_setaffinity,
                [0, size, (&raw const a.others) as usize],
            )
        };
    }
    helper_work(a);
    let mut b = 0u8;
    loop {
        // SAFETY: a one-byte read into `b`.
        let r = unsafe { raw::call(libc::SYS_read, [a.sock as usize, (&raw mut b) as usize, 1]) };
        if r != -(libc::EINTR as isize) {
            break;
        }
    }
    0
}

/// The helper's work (see [`helper_main`]); gives up at the first failure, which leaves the
/// tool without namespaces to join. No indexing or arithmetic that could panic.
fn helper_work(a: &HelperArgs) {
    use raw::call;
    // SAFETY: unshare takes no pointers and changes only this process.
    if unsafe { call(libc::SYS_unshare, [a.made as usize, 0, 0]) } < 0 {
        return;
    }
    let dgram = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize;
    // SAFETY: socket takes no pointers; the descriptor is this process's.
    let s = unsafe { call(libc::SYS_socket, [libc::AF_INET as usize, dgram, 0]) };
    if s < 0 {
        return;
    }
    // SAFETY: ifreq is plain data; all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    let up = [
        s as usize,
        libc::SIOCSIFFLAGS as usize,
        (&raw const req) as usize,
    ];
    // SAFETY: SIOCSIFFLAGS reads one ifreq from a live local ("lo", NUL-terminated).
    let up = unsafe { call(libc::SYS_ioctl, up) };
    // SAFETY: closes the socket made above, which nothing else uses.
    unsafe { call(libc::SYS_close, [s as usize, 0, 0]) };
    if up < 0 {
        return;
    }
    let open = |path: &std::ffi::CStr| {
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as usize;
        let at = libc::AT_FDCWD as usize;
        // SAFETY: a NUL-terminated static path; the descriptor is this process's.
        unsafe { call(libc::SYS_openat, [at, path.as_ptr() as usize, flags]) as RawFd }
    };
    let mut fds: [RawFd; 1 + AHEAD.len()] = [-1; 1 + AHEAD.len()];
    let mut n = 0;
    let files = a.nested.then_some(c"/proc/self/ns/user").into_iter().chain(
        AHEAD
            .iter()
            .zip(AHEAD_FILES)
            .filter(|(f, _)| a.made & **f != 0)
            .map(|(_, p)| p),
    );
    for (slot, path) in fds.iter_mut().zip(files) {
        *slot = open(path);
        if *slot < 0 {
            return;
        }
        n += 1;
    }
    #[repr(C)]
    struct Rights {
        hdr: libc::cmsghdr,
        fds: [RawFd; 1 + AHEAD.len()],
    }
    // SAFETY: plain data; all-zero bytes are valid.
    let mut cmsg: Rights = unsafe { std::mem::zeroed() };
    cmsg.hdr.cmsg_len = (std::mem::size_of::<libc::cmsghdr>() + n * 4) as _;
    cmsg.hdr.cmsg_level = libc::SOL_SOCKET;
    cmsg.hdr.cmsg_type = libc::SCM_RIGHTS;
    cmsg.fds = fds;
    let mut byte = *b"n";
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    // SAFETY: plain data; all-zero bytes are valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut cmsg).cast();
    // CMSG_SPACE of the descriptors sent: trailing room would be read as another header.
    let len = std::mem::size_of::<libc::cmsghdr>() + n * 4;
    msg.msg_controllen = ((len + 7) & !7) as _;
    // SAFETY: `msg` and what it points to are live locals; the descriptors are ours.
    unsafe {
        call(
            libc::SYS_sendmsg,
            [a.sock as usize, (&raw const msg) as usize, 0],
        )
    };
}

/// An anonymous mapping used as a child's stack, with a guard page at its bottom.
#[derive(Debug)]
struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    fn new(size: usize) -> Option<Stack> {
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
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is what a stack pointer starts at.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; its owner makes sure no child still runs on it.
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// Raw system calls, for a child that shares the tool's memory and so must not touch libc's
/// errno (a thread-local of the tool's thread).
mod raw {
    /// Whether this architecture has [`call`]; elsewhere there is no helper.
    pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

    /// System call `nr` with three arguments; returns the result or minus the error number.
    ///
    /// # Safety
    /// As the system call itself.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn call(nr: libc::c_long, a: [usize; 3]) -> isize {
        let r: isize;
        // SAFETY: the x86-64 Linux system call convention; the caller vouches for the call.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => r,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        r
    }

    /// System call `nr` with three arguments; returns the result or minus the error number.
    ///
    /// # Safety
    /// As the system call itself.
    #[cfg(target_arch = "aarch64")]
    pub unsafe fn call(nr: libc::c_long, a: [usize; 3]) -> isize {
        let r: isize;
        // SAFETY: the AArch64 Linux system call convention; the caller vouches for the call.
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") nr,
                inlateout("x0") a[0] as isize => r,
                in("x1") a[1],
                in("x2") a[2],
                options(nostack),
            );
        }
        r
    }

    /// Never called where [`SUPPORTED`] is false.
    ///
    /// # Safety
    /// None needed.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub unsafe fn call(_nr: libc::c_long, _a: [usize; 3]) -> isize {
        -(libc::ENOSYS as isize)
    }
}

/// Stack of the joining child (and, copied, of pid 1, which runs on it until it execs): as
/// large as a main thread's, untouched pages cost nothing.
const STACK: usize = 8 << 20;

/// What the joining child reads and writes; it shares this process's memory.
struct JoinArgs<'a> {
    user: RawFd,
    /// The other namespaces to join, with their flags; unused slots hold -1.
    others: [(RawFd, libc::c_int); AHEAD.len()],
    flags: libc::c_int,
    /// Pid 1's body; it never returns (it execs or exits).
    child: &'a mut dyn FnMut(),
    pid: libc::c_long,
    errno: libc::c_int,
    step: &'static str,
}

/// The joining child: runs while the supervisor is suspended (`CLONE_VFORK`), in its memory,
/// so it makes only system calls until its clone; pid 1, a copy of this process's memory,
/// continues in `child`.
extern "C" fn join_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `JoinArgs` that `clone_into` passed, alive until this child exits
    // (the parent is suspended until then).
    let a = unsafe { &mut *(arg as *mut JoinArgs) };
    let fail = |a: &mut JoinArgs, step| {
        a.errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        a.step = step;
        1
    };
    // SAFETY: plain system calls on descriptors the parent owns.
    if a.user >= 0 && unsafe { libc::setns(a.user, libc::CLONE_NEWUSER) } != 0 {
        return fail(a, "setns to the container's user namespace");
    }
    for (fd, flag) in a.others {
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
    let flags = (a.flags | libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: no pointers (a null stack: pid 1 continues on a copy of this one, in its own
    // memory).
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        (a.child)();
        // SAFETY: `child` does not return; should it, pid 1 ends here.
        unsafe { libc::_exit(125) }
    }
    if pid < 0 {
        return fail(a, "clone pid 1");
    }
    a.pid = pid;
    0
}

impl Joined {
    /// Clone pid 1 with `flags` (the container's clone flags; the user namespace and the ones
    /// made ahead are joined instead of made) as this process's child, running `child` in it.
    /// Returns its pid.
    ///
    /// # Safety
    /// Same contract as [`namespaces::clone_into`]: this process is single-threaded; `child`
    /// should not return (pid 1 exits with 125 if it does).
    pub unsafe fn clone_into(
        &self,
        flags: libc::c_int,
        child: &mut dyn FnMut(),
    ) -> Result<libc::pid_t, String> {
        let mut others = [(-1, 0); AHEAD.len()];
        let mut joined = libc::CLONE_NEWUSER;
        for (slot, (fd, flag)) in others.iter_mut().zip(&self.others) {
            *slot = (fd.as_raw_fd(), *flag);
            joined |= flag;
        }
        let flags = flags & !joined;
        let stack = Stack::new(STACK)
            .ok_or_else(|| format!("mmap: {}", std::io::Error::last_os_error()))?;
        let mut args = JoinArgs {
            user: self.user.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            others,
            flags,
            child,
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
