//! The binaries' entry: `box`, `boxbuild` and `boxrun` are `#![no_main]`, and their C `main`
//! calls [`main_of`].

use super::{ExitCode, Start, ToolContext, enter_userns_if_needed};

/// The whole `main` of a boxkit binary, entered as C's `main` (the binaries are
/// `#![no_main]`): Rust's own start-up code is skipped. It reads /proc/self/maps for the main
/// thread's stack guard, sets up a signal stack and two handlers for the stack-overflow
/// message, 0.15 ms of every command on the VMs measured (bench/README.md, issue 14). What of
/// it boxkit relies on is done here ([`process_start`]); a stack overflow is a plain SIGSEGV
/// without the message. Never returns: exits the way a returning Rust `main` does (standard
/// output flushed, then libc's `exit`).
pub fn main_of(prog: &str, command: fn(ToolContext) -> ExitCode) -> ! {
    process_start();
    let code = match enter_userns_if_needed(prog) {
        Start::Command(tool) => {
            let alone = tool.is_alone();
            let code = command(tool);
            if alone {
                // No agent reports the exit code ahead of this process's teardown: a child
                // holds it off until the caller has the status.
                crate::run::linger::exit(i32::from(code));
            }
            code
        }
        Start::Exit(code) => code,
    };
    // Flushes standard output (Rust's `rt::cleanup`), then libc's exit.
    std::process::exit(i32::from(code))
}

/// What Rust's start-up does that boxkit relies on: descriptors 0, 1 and 2 open (a closed one
/// gets /dev/null, so no file boxkit opens becomes its standard output or error), and
/// SIGPIPE ignored (a closed pipe is an EPIPE error, not a silent death).
fn process_start() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd; a zero timeout never blocks.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0;
    for p in fds {
        let closed = if polled {
            p.revents & libc::POLLNVAL != 0
        } else {
            // SAFETY: F_GETFD only reads a descriptor's flags.
            (unsafe { libc::fcntl(p.fd, libc::F_GETFD) }) < 0
        };
        // SAFETY: a NUL-terminated path; the lowest free descriptor is the closed one.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != p.fd {
            std::process::abort();
        }
    }
    // SAFETY: SIG_IGN for SIGPIPE, as Rust's start-up sets it.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The C `main` of a boxkit binary, whose crate root says `#![cfg_attr(not(test), no_main)]`:
/// `boxkit::binary_main!("boxrun", boxrun_main);` calls [`main_of`] with `cli::boxrun_main`.
/// A test build of the binary (`cargo test --all-targets`) keeps the test harness's `main`.
#[macro_export]
macro_rules! binary_main {
    ($prog:literal, $command:ident) => {
        #[cfg(not(test))]
        #[unsafe(no_mangle)]
        extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // Before anything else: entering a user namespace needs a single-threaded process.
            $crate::cli::main_of($prog, $crate::cli::$command)
        }
    };
}
