//! When a container's command runs. A container is recorded as running before its pid 1
//! exists (a foreground run writes its record first, so that `ps` lists it at once), and its
//! pid 1 then builds the container's root before it execs the command. What meets the
//! container — `box exec`, `cp`, `top` — waits for the command ([`init_when_started`]): joined
//! earlier, pid 1's mount namespace still has the host's tree at its root, not the image's.
//! So do `box stop` and `kill` (but SIGKILL): pid 1 drops a signal it has no handler for.
//! The monitor of a detached run waits the same way before `boxrun -d` returns.

use std::time::{Duration, Instant};

use super::State;

/// How long `boxrun -d`, exec, cp, top, stop and kill wait for a container's command to run.
pub const WAIT: Duration = Duration::from_secs(120);

/// The container's pid 1 once its command runs (or, under `--init`, the init's child does),
/// waiting up to [`WAIT`] for that. None when the container ends first or never had a pid 1
/// in that time. A command that never tells (one that rewrote its command line to the
/// supervisor's) gets pid 1 as it is after the timeout, which is past its setup anyway.
pub fn init_when_started(st: &State) -> Option<i32> {
    let sup = cmdline(st.supervisor_pid?);
    let end = Instant::now() + WAIT;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(init) = started_init(st, sup.as_deref()) {
            return Some(init);
        }
        if Instant::now() >= end {
            return st.init_pid();
        }
        if !st.supervisor_alive() {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `/proc/PID/cmdline` in one read(2): the kernel takes the process's memory once per call, so
/// one call sees the whole command line or none of it. `fs::read` reads in growing chunks, and
/// a process that exits between two chunks (a failed exec) reads as a truncated command line,
/// which is not the supervisor's and looked like a started command. Lines longer than the
/// buffer compare by their first 64 KiB, on both sides.
pub(super) fn cmdline(pid: i32) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = loop {
        match f.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    };
    buf.truncate(n);
    Some(buf)
}

/// The container's pid 1 when it (or, under --init, its child) runs something other than
/// boxkit itself, i.e. the command was exec'd; None before. The command line tells (unlike
/// /proc/PID/exe it needs no ptrace access).
pub(super) fn started_init(st: &State, sup_cmdline: Option<&[u8]>) -> Option<i32> {
    let init = st.init_pid()?;
    let mut pids = vec![init];
    if let Ok(k) = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")) {
        pids.extend(k.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    // A zombie's command line reads empty: that is an exit, not an exec. A prefix of the
    // supervisor's is not an exec either.
    let started = pids.into_iter().any(|p| {
        cmdline(p).is_some_and(|c| {
            !c.is_empty() && sup_cmdline.is_none_or(|s| !s.starts_with(c.as_slice()))
        })
    });
    started.then_some(init)
}

#[cfg(test)]
mod tests {
    use super::cmdline;

    #[test]
    fn cmdline_reads_a_whole_command_line_in_one_call() {
        // Longer than fs::read's first chunk, so a chunked read would need several calls.
        let want: Vec<u8> = std::env::args()
            .flat_map(|a| a.into_bytes().into_iter().chain([0]))
            .collect();
        assert_eq!(cmdline(std::process::id() as i32), Some(want));
        assert_eq!(cmdline(i32::MAX), None);
    }
}
