//! `box top`: a running container's processes, read from the host's /proc, with pids as the
//! host sees them (as docker shows them).
//!
//! A process belongs to the container when it lives in the pid namespace of the container's
//! pid 1 (its `/proc/PID/ns/pid` link names the same namespace), which takes in what `box
//! exec` started too. That link needs ptrace access, which a rootless caller lacks for
//! non-dumpable processes (boxkit's own `--init`, an exec helper); those are found as the
//! descendants of pid 1 instead. Nothing here enters the container or trusts a file inside
//! it: every field comes from the host's /proc.

use std::collections::BTreeSet;

use super::{ContainerError, Result, State};

/// One process, as /proc/PID/stat and /proc/PID/status describe it.
#[derive(Debug, Clone, Default)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// The real uid, as the host sees it.
    pub uid: u32,
    pub tty_nr: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    pub threads: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// The command line, or `[comm]` for a kernel-style process without one.
    pub cmd: String,
}

/// Read one process; None when it is gone (or is not a process).
pub fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    // Fields from 3 (state) on; index 0 here is field 3.
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let rss_pages = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    Some(Proc {
        pid,
        ppid: num(1) as i32,
        uid,
        tty_nr: num(4),
        cpu_ticks: num(11) + num(12),
        start_ticks: num(19),
        threads: num(17),
        rss_pages,
        cmd: if cmd.is_empty() {
            format!("[{comm}]")
        } else {
            cmd
        },
    })
}

fn pid_ns(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

fn children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for t in tasks.flatten() {
        let p = t.path().join("children");
        if let Ok(s) = std::fs::read_to_string(p) {
            v.extend(s.split_whitespace().filter_map(|k| k.parse::<i32>().ok()));
        }
    }
    v
}

/// The host pids of the container's processes, in ascending order.
pub fn members(st: &State) -> Result<Vec<i32>> {
    let init = super::started::init_when_started(st)
        .ok_or_else(|| ContainerError::NotRunning(st.name.clone()))?;
    let mut found = BTreeSet::new();
    // Descendants of pid 1 (readable whatever their dumpability).
    let mut queue = vec![init];
    while let Some(p) = queue.pop() {
        if found.insert(p) {
            queue.extend(children(p));
        }
    }
    // Everything in the same pid namespace: what `box exec` started, too.
    let ns = pid_ns(crate::run::exec::join_target(init));
    if let Some(ns) = ns {
        let all = std::fs::read_dir("/proc").map_err(|cause| ContainerError::Io {
            op: "read",
            path: "/proc".into(),
            cause,
        })?;
        for e in all.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if !found.contains(&pid) && pid_ns(pid).as_ref() == Some(&ns) {
                let mut queue = vec![pid];
                while let Some(p) = queue.pop() {
                    if found.insert(p) {
                        queue.extend(children(p));
                    }
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Clock ticks per second.
pub fn ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v as u64)
}

/// Seconds since the epoch at boot (`btime` of /proc/stat).
pub fn boot_time() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The terminal a process has, as ps names it: `pts/N`, `ttyN`, or `?`.
pub fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".into();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => "?".into(),
    }
}

/// `[[DD-]HH:]MM:SS` as ps prints TIME: `HH:MM:SS`, with days when there are any.
pub fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttys_and_cpu_times_print_as_ps_prints_them() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3723), "01:02:03");
        assert_eq!(cpu_time(90061), "1-01:01:01");
    }

    #[test]
    fn this_process_reads_back() {
        let p = read_proc(std::process::id() as i32).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        assert!(p.threads >= 1);
        assert!(!p.cmd.is_empty());
    }
}
