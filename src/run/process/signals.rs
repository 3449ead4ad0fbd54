//! The signals a container's waiting process relays: blocked before the container's process
//! is created, so none is lost, and read later from a signalfd ([`super::wait`]) or, by
//! `--init`, with sigwait.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

/// Signals the supervisor (and `box exec`) relays to the container.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Set once this process passed a signal on to a container (not SIGWINCH): a foreground run
/// ended that way was stopped by its user (Ctrl-C, `kill`), which its restart policy respects.
static PASSED_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(super) fn note_passed_on() {
    PASSED_ON.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process passed a signal on to a container (see [`note_passed_on`]).
pub fn passed_on() -> bool {
    PASSED_ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// The signals passed on to the container ([`FORWARDED`]) plus SIGCHLD.
pub(super) fn forwarded_set() -> SigSet {
    let mut set: SigSet = FORWARDED.into_iter().collect();
    set.add(Signal::SIGCHLD);
    set
}

/// [`FORWARDED`] and SIGCHLD blocked in the calling thread; the old mask comes back on drop.
pub struct Blocked {
    set: SigSet,
    old: SigSet,
}

impl Blocked {
    /// Block the forwarded signals and SIGCHLD.
    pub fn forwarded() -> nix::Result<Blocked> {
        let set = forwarded_set();
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
        Ok(Blocked { set, old })
    }

    /// The blocked set (what [`super::wait_loop`] reads from its signalfd).
    pub fn set(&self) -> &SigSet {
        &self.set
    }

    /// The mask from before.
    pub fn old(&self) -> SigSet {
        self.old
    }

    /// Put the old mask back now: in a forked child about to exec, which keeps the blocked
    /// signals otherwise (a mask survives execve).
    pub fn restore(&self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.restore();
    }
}
