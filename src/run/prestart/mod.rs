//! A foreground container's network, IPC, UTS and cgroup namespaces and its /dev, made ahead
//! of its pid 1 by a helper on another CPU.
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
//! Then the helper builds the container's /dev as a detached mount tree ([`dev_tree`]: a
//! tmpfs, the host's harmless device nodes bound in, devpts, /dev/shm, an mqueue of the
//! container's IPC namespace, the symlinks), in a mount namespace of its own, and sends it in
//! a second message, which pid 1 receives on its copy of the supervisor's socket when its
//! root gets to /dev ([`receive_dev`], `rootfs::Op::DevAhead`). So the tree is built while the
//! supervisor clones pid 1 and pid 1 mounts /proc and /sys, and pid 1 only attaches it (one
//! `move_mount` where it made some 110 system calls). No path of the image is involved: every
//! target is inside the fresh tmpfs; the image's /dev itself is opened by pid 1, symlinks
//! refused, as before. When no tree comes (the helper failed, or the run's /dev/shm size is
//! not the one it was built with), pid 1 builds /dev itself.
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

use super::idmap::IdMaps;
use super::isolation::Isolation;
use super::spec::NetworkMode;
use super::{idmap, namespaces};

mod devtree;
mod join;
pub(super) mod raw;

use devtree::dev_tree;
pub(super) use join::Stack;

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
    /// The size of /dev/shm in the /dev tree it builds (`None`: docker's 64 MiB).
    shm_size: Option<u64>,
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
    /// Where pid 1 receives its /dev, built by the helper as a detached mount tree
    /// ([`receive_dev`]); `None` when the helper does not build one or builds one of another
    /// /dev/shm size.
    pub dev_from: Option<RawFd>,
    /// The helper itself, for the caller to finish with once pid 1 runs.
    pub leftover: Option<Leftover>,
}

/// What is left of a helper once pid 1 has joined its namespaces. Dropping it reaps the helper
/// (done by then); the caller keeps `mnt` until it exits.
#[derive(Debug)]
pub struct Leftover {
    pub pre: Prestart,
    /// The helper's mount namespace (a copy of the tool's mounts, where it built /dev), which
    /// pid 1 joins ([`Joined::clone_into`]) and builds the container's root in: held so that
    /// the helper's exit does not unmount them, an RCU grace period that the supervisor would
    /// wait for when it reaps the helper.
    pub mnt: Option<OwnedFd>,
}

impl Prestart {
    /// Start the helper for a foreground run, in the tool that has just entered its user
    /// namespace (with these maps) and is still single-threaded: before the run's arguments
    /// are even parsed, so it makes what a default run gets (a network namespace of its own,
    /// docker's isolation, a 64 MiB /dev/shm). The run checks that at the clone
    /// ([`Prestart::take`]); anything else only leaves the helper's work unused.
    pub fn spawn(tool_maps: &IdMaps) -> Option<Self> {
        // docker's /dev/shm size (`None`), as a run without `--shm-size` has.
        let shm_size = None;
        let network = NetworkMode::None;
        let isolation = Isolation::FULL;
        let flags = namespaces::clone_flags(network, isolation);
        if !raw::SUPPORTED {
            return None;
        }
        let made = AHEAD.iter().fold(0, |m, f| m | (flags & f));
        let maps = tool_maps.container_maps();
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
        let shm = std::ffi::CString::new(DEFAULT_SHM.to_string()).ok()?;
        let mut args = Box::new(HelperArgs {
            sock: theirs.as_raw_fd(),
            nested,
            made,
            shm,
            stop: Stop::from_env(),
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
            shm_size,
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
    /// is not done yet. `None` leaves the container to the plain clone. The /dev tree comes
    /// with them when the container's /dev/shm has the size it was built with.
    pub fn take(self, flags: libc::c_int, shm_size: Option<u64>) -> Option<Joined> {
        let (mut j, mnt) = self.take_namespaces(flags)?;
        // It builds /dev once it has a mount namespace of its own.
        if mnt.is_some() && shm_size.unwrap_or(DEFAULT_SHM) == self.shm_size.unwrap_or(DEFAULT_SHM)
        {
            j.dev_from = Some(self.sock.as_raw_fd());
        }
        j.leftover = Some(Leftover { pre: self, mnt });
        Some(j)
    }

    /// [`Prestart::take`] without the /dev check; also the helper's mount namespace.
    fn take_namespaces(&self, flags: libc::c_int) -> Option<(Joined, Option<OwnedFd>)> {
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
    /// each one made, in [`AHEAD`]'s order, then its own mount namespace when it made one.
    /// Anything else is no result.
    fn joined(&self, fds: Vec<OwnedFd>) -> Option<(Joined, Option<OwnedFd>)> {
        let mut fds = fds.into_iter();
        let user = if self.nested { Some(fds.next()?) } else { None };
        let mut others = Vec::with_capacity(AHEAD.len());
        for flag in AHEAD.into_iter().filter(|f| self.made & f != 0) {
            others.push((fds.next()?, flag));
        }
        let mnt = fds.next();
        let j = Joined {
            user,
            others,
            dev_from: None,
            leftover: None,
        };
        fds.next().is_none().then_some((j, mnt))
    }
}

/// Pid 1's side of [`Joined::dev_from`]: the /dev tree the helper built, or `None` (it could
/// not, or is gone), in which case pid 1 builds /dev itself.
pub fn receive_dev(sock: RawFd) -> Option<OwnedFd> {
    // `sock` is this process's copy of the supervisor's end of the helper's socket, open for
    // as long as pid 1 builds its root (the supervisor keeps it past pid 1's exec).
    super::process::receive_fds(&sock).into_iter().next()
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
    /// End the helper (its work is sent or no longer wanted; it holds nothing that a kill
    /// leaves inconsistent) and reap it. Its stack and arguments are dropped after this, when
    /// nothing runs on them any more.
    fn drop(&mut self) {
        use nix::sys::socket::{Shutdown, shutdown};
        let _ = shutdown(self.sock.as_raw_fd(), Shutdown::Both);
        let _ = nix::sys::signal::kill(self.helper, nix::sys::signal::Signal::SIGKILL);
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

/// For tests only: `none` makes the helper give up before it makes anything (the container
/// then gets the plain `clone(2)`), `no-dev` makes it stop once it has sent the namespaces
/// (pid 1 then finds no /dev tree and builds /dev itself). The fallbacks are otherwise taken
/// only when the kernel refuses something, which a test cannot arrange.
pub const TEST_STOP_VAR: &str = "BOX_TEST_PRESTART";

/// Where the helper stops ([`TEST_STOP_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Never,
    AtOnce,
    BeforeDev,
}

impl Stop {
    fn from_env() -> Self {
        match std::env::var(TEST_STOP_VAR).as_deref() {
            Ok("none") => Stop::AtOnce,
            Ok("no-dev") => Stop::BeforeDev,
            _ => Stop::Never,
        }
    }
}

/// What the helper reads; it shares this process's memory.
#[derive(Debug)]
struct HelperArgs {
    sock: RawFd,
    nested: bool,
    /// The namespaces to make ([`AHEAD`]'s flags).
    made: libc::c_int,
    /// The size of /dev/shm in bytes, as `fsconfig` takes it.
    shm: std::ffi::CString,
    /// Where the helper stops early, for the tests of the fallbacks ([`TEST_STOP_VAR`]).
    stop: Stop,
    steer: bool,
    others: libc::cpu_set_t,
}

/// The helper, a `CLONE_VM` child (no copy of the tool's memory to make, and none for the tool
/// to fault back in): move to the other CPUs (a new process starts on its parent's), make the
/// network, IPC, UTS and cgroup namespaces (in the user namespace it was born in), bring
/// loopback up, wait until the tool has written its id maps, build the container's /dev as a
/// detached mount tree ([`dev_tree`]), send the user namespace (when nested), the ones it made
/// and the tree, and exit. It runs at the same time as the tool in the same memory, so it
/// makes raw system calls only: no libc (whose errno is the tool's thread's), no allocation,
/// no panic (sha2's hash of nothing, at its start, is plain code on this stack).
extern "C" fn helper_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `HelperArgs` the tool boxed for this child; it is only read, and
    // it lives until the tool has reaped this child.
    let a = unsafe { &*(arg as *const HelperArgs) };
    // Gone with the tool: a command that ends before its run (`boxrun --help`, a bad flag)
    // leaves no helper behind.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        raw::call(
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as usize, libc::SIGKILL as usize, 0],
        )
    };
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
    0
}

/// The helper's work (see [`helper_main`]); gives up at the first failure, which leaves the
/// tool without namespaces to join (or, when only /dev failed, without the tree). No indexing
/// or arithmetic that could panic.
fn helper_work(a: &HelperArgs) {
    use raw::call;
    // First, while the tool parses its arguments: sha2's run-time CPU feature check, which
    // the tool would otherwise make when it verifies the image's manifest (three `cpuid`s,
    // each a trap to the hypervisor on a VM: ≈ 20 µs a start here). Its result is a static
    // in the memory this helper shares with the tool; the hash of nothing allocates nothing.
    use sha2::Digest as _;
    let _ = sha2::Sha256::digest([]);
    if a.stop == Stop::AtOnce {
        return;
    }
    // SAFETY: unshare takes no pointers and changes only this process.
    if unsafe { call(libc::SYS_unshare, [a.made as usize, 0, 0]) } < 0 {
        return;
    }
    let open = |path: &std::ffi::CStr| {
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as usize;
        let at = libc::AT_FDCWD as usize;
        // SAFETY: a NUL-terminated static path; the descriptor is this process's.
        unsafe { call(libc::SYS_openat, [at, path.as_ptr() as usize, flags]) as RawFd }
    };
    // A mount namespace of its own (owned by its user namespace) lets it make mounts; the
    // /dev tree it builds is detached, in no namespace, until pid 1 attaches it. The
    // namespace goes to the tool, which holds it (`Leftover::mnt`).
    // SAFETY: as above.
    let mnt = if unsafe { call(libc::SYS_unshare, [libc::CLONE_NEWNS as usize, 0, 0]) } == 0 {
        open(c"/proc/self/ns/mnt")
    } else {
        -1
    };
    if !loopback_up() {
        return;
    }
    let mut fds: [RawFd; MAX_FDS] = [-1; MAX_FDS];
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
    if mnt >= 0
        && let Some(slot) = fds.get_mut(n)
    {
        *slot = mnt;
        n += 1;
    }
    // First the namespaces, which the supervisor waits for before it clones pid 1 ...
    if !send_fds(a.sock, fds.get(..n).unwrap_or_default(), b'n') || mnt < 0 {
        return;
    }
    if a.stop == Stop::BeforeDev {
        return;
    }
    // ... then /dev, which pid 1 receives (on its copy of the supervisor's end) when it gets
    // there: the tree is built while the supervisor clones and pid 1 starts. Files cannot be
    // made in a user namespace without maps, and the maps need this process alive: the tool
    // sends "m" once they are written (and closes the socket if it gives up).
    let mut b = 0u8;
    let r = loop {
        // SAFETY: a one-byte read into `b`.
        let r = unsafe { call(libc::SYS_read, [a.sock as usize, (&raw mut b) as usize, 1]) };
        if r != -(libc::EINTR as isize) {
            break r;
        }
    };
    if r != 1 || b != b'm' {
        return;
    }
    let dev = dev_tree(&a.shm);
    if dev >= 0 {
        send_fds(a.sock, &[dev], b'd');
    }
}

/// The most descriptors the helper sends in one message: the user namespace, the ones made
/// ahead and its mount namespace.
const MAX_FDS: usize = 2 + AHEAD.len();

/// Send `fds` (at most [`MAX_FDS`]) and the byte `tag` over `sock` with raw system calls.
fn send_fds(sock: RawFd, fds: &[RawFd], tag: u8) -> bool {
    #[repr(C)]
    struct Rights {
        hdr: libc::cmsghdr,
        fds: [RawFd; MAX_FDS],
    }
    // SAFETY: plain data; all-zero bytes are valid.
    let mut cmsg: Rights = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for (slot, fd) in cmsg.fds.iter_mut().zip(fds) {
        *slot = *fd;
        n += 1;
    }
    cmsg.hdr.cmsg_len = (std::mem::size_of::<libc::cmsghdr>() + n * 4) as _;
    cmsg.hdr.cmsg_level = libc::SOL_SOCKET;
    cmsg.hdr.cmsg_type = libc::SCM_RIGHTS;
    let mut byte = tag;
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
    let r = unsafe {
        raw::call(
            libc::SYS_sendmsg,
            [sock as usize, (&raw const msg) as usize, 0],
        )
    };
    r == 1
}

/// Bring up the loopback device of this process's network namespace.
fn loopback_up() -> bool {
    use raw::call;
    let dgram = (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize;
    // SAFETY: socket takes no pointers; the descriptor is this process's.
    let s = unsafe { call(libc::SYS_socket, [libc::AF_INET as usize, dgram, 0]) };
    if s < 0 {
        return false;
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
    up >= 0
}

/// docker's /dev/shm size when the run does not set one.
const DEFAULT_SHM: u64 = 64 << 20;
