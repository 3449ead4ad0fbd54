//! `box stats`: a running container's resource use, from its cgroup and its network
//! namespace.
//!
//! A container gets its own cgroup (`.../boxkit/<id>`, see [`crate::run::cgroups`]) only when
//! it has limits — moving every container would cost each start a cgroup migration. With one,
//! the counters are the cgroup's (v2: `cpu.stat`, `memory.current`, `io.stat`, `pids.current`;
//! v1: `cpuacct.usage`, `memory.usage_in_bytes`, `blkio.throttle.io_service_bytes_recursive`,
//! `pids.current`), memory without the inactive page cache as docker counts it. Without one,
//! they are summed over the container's processes ([`super::top::members`]) from /proc:
//! CPU time and resident memory of the live processes, their `/proc/PID/io` where readable,
//! and the host's memory as the limit. Network bytes come from `/proc/<pid 1>/net/dev`, which
//! shows the container's own network namespace (`lo` left out).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Result, State, top};

/// One reading of a container's counters.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// CPU time used so far, in nanoseconds.
    pub cpu_ns: u64,
    pub mem_usage: u64,
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
}

impl Sample {
    /// CPU use between `prev` and this sample, in percent of one CPU (docker's CPU %).
    pub fn cpu_percent(&self, prev: &Sample) -> f64 {
        let wall = self.at.duration_since(prev.at).as_nanos() as f64;
        if wall <= 0.0 {
            return 0.0;
        }
        self.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / wall * 100.0
    }

    pub fn mem_percent(&self) -> f64 {
        if self.mem_limit == 0 {
            return 0.0;
        }
        self.mem_usage as f64 / self.mem_limit as f64 * 100.0
    }
}

/// Where the container's own cgroup is, if it has one.
enum Cgroup {
    V2(PathBuf),
    /// The memory, cpuacct, pids and blkio directories.
    V1 {
        memory: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
        blkio: Option<PathBuf>,
    },
}

fn own_cgroup(pid: i32, id: &str) -> Option<Cgroup> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mine = |p: &str| p.trim_end_matches('/').ends_with(&format!("boxkit/{id}"));
    let mut v1 = (None, None, None, None);
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        if !mine(path) {
            continue;
        }
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            let unified = Path::new("/sys/fs/cgroup/unified");
            let base = if unified.is_dir() {
                unified
            } else {
                Path::new("/sys/fs/cgroup")
            };
            let dir = base.join(rel);
            if dir.join("memory.current").exists() || dir.join("cpu.stat").exists() {
                return Some(Cgroup::V2(dir));
            }
            continue;
        }
        for c in ctrls.split(',') {
            let dir = Some(Path::new("/sys/fs/cgroup").join(c).join(rel));
            match c {
                "memory" => v1.0 = dir,
                "cpuacct" => v1.1 = dir,
                "pids" => v1.2 = dir,
                "blkio" => v1.3 = dir,
                _ => {}
            }
        }
    }
    let (memory, cpuacct, pids, blkio) = v1;
    if memory.is_none() && cpuacct.is_none() && pids.is_none() {
        return None;
    }
    Some(Cgroup::V1 {
        memory,
        cpuacct,
        pids,
        blkio,
    })
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat): the value of `key`.
fn keyed(p: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(p)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The host's memory (MemTotal), the limit of a container without one.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Received and sent bytes over every interface but `lo` of `pid`'s network namespace.
fn net(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut rx_tx = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        rx_tx.0 += f.first().copied().unwrap_or(0);
        rx_tx.1 += f.get(8).copied().unwrap_or(0);
    }
    rx_tx
}

fn sample_v2(s: &mut Sample, dir: &Path) {
    s.cpu_ns = keyed(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
    let cur = read_u64(&dir.join("memory.current")).unwrap_or(0);
    let inactive = keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    s.mem_usage = cur.saturating_sub(inactive);
    if let Some(max) = read_u64(&dir.join("memory.max")) {
        s.mem_limit = max.min(s.mem_limit);
    }
    s.pids = read_u64(&dir.join("pids.current")).unwrap_or(s.pids);
    let io = std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
    for kv in io.split_whitespace() {
        match kv.split_once('=') {
            Some(("rbytes", v)) => s.blk_read += v.parse::<u64>().unwrap_or(0),
            Some(("wbytes", v)) => s.blk_write += v.parse::<u64>().unwrap_or(0),
            _ => {}
        }
    }
}

fn sample_v1(
    s: &mut Sample,
    memory: &Option<PathBuf>,
    cpu: &Option<PathBuf>,
    pids: &Option<PathBuf>,
    blkio: &Option<PathBuf>,
) {
    if let Some(m) = memory {
        let usage = read_u64(&m.join("memory.usage_in_bytes")).unwrap_or(0);
        let inactive = keyed(&m.join("memory.stat"), "total_inactive_file").unwrap_or(0);
        s.mem_usage = usage.saturating_sub(inactive);
        if let Some(l) = read_u64(&m.join("memory.limit_in_bytes")) {
            s.mem_limit = l.min(s.mem_limit);
        }
    }
    if let Some(c) = cpu {
        s.cpu_ns = read_u64(&c.join("cpuacct.usage")).unwrap_or(s.cpu_ns);
    }
    if let Some(p) = pids {
        s.pids = read_u64(&p.join("pids.current")).unwrap_or(s.pids);
    }
    if let Some(b) = blkio {
        let text = std::fs::read_to_string(b.join("blkio.throttle.io_service_bytes_recursive"))
            .unwrap_or_default();
        let (mut r, mut w) = (0, 0);
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match (f.get(1), f.get(2).and_then(|v| v.parse::<u64>().ok())) {
                (Some(&"Read"), Some(n)) => r += n,
                (Some(&"Write"), Some(n)) => w += n,
                _ => {}
            }
        }
        (s.blk_read, s.blk_write) = (r, w);
    }
}

/// Read the counters of running container `st`.
pub fn sample(st: &State) -> Result<Sample> {
    let members = top::members(st)?;
    let init = members.first().copied().unwrap_or(0);
    let init = st.init_pid().unwrap_or(init);
    let (net_rx, net_tx) = net(init);
    let mut s = Sample {
        at: Instant::now(),
        cpu_ns: 0,
        mem_usage: 0,
        mem_limit: host_memory(),
        net_rx,
        net_tx,
        blk_read: 0,
        blk_write: 0,
        pids: 0,
    };
    // The processes' own figures first: what a container without a cgroup shows.
    let tick_ns = 1_000_000_000 / top::ticks_per_sec();
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64);
    for p in members.iter().filter_map(|p| top::read_proc(*p)) {
        s.cpu_ns += p.cpu_ticks * tick_ns;
        s.mem_usage += p.rss_pages * page;
        s.pids += p.threads.max(1);
        let io = std::fs::read_to_string(format!("/proc/{}/io", p.pid)).unwrap_or_default();
        s.blk_read += keyed_colon(&io, "read_bytes");
        s.blk_write += keyed_colon(&io, "write_bytes");
    }
    let id16 = &st.id[..16.min(st.id.len())];
    match own_cgroup(init, id16) {
        Some(Cgroup::V2(dir)) => {
            (s.blk_read, s.blk_write) = (0, 0);
            sample_v2(&mut s, &dir);
        }
        Some(Cgroup::V1 {
            memory,
            cpuacct,
            pids,
            blkio,
        }) => sample_v1(&mut s, &memory, &cpuacct, &pids, &blkio),
        None => {}
    }
    Ok(s)
}

fn keyed_colon(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok())
        .unwrap_or(0)
}

/// docker's binary size for memory ("1.5MiB", "7.6GiB").
pub fn binary_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_print_in_binary_units_as_docker_does() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(8 * 1024 * 1024 * 1024), "8GiB");
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let a = Sample {
            at: Instant::now(),
            cpu_ns: 0,
            mem_usage: 50,
            mem_limit: 200,
            net_rx: 0,
            net_tx: 0,
            blk_read: 0,
            blk_write: 0,
            pids: 1,
        };
        let mut b = a.clone();
        b.at = a.at + std::time::Duration::from_secs(2);
        b.cpu_ns = 1_000_000_000;
        assert!((b.cpu_percent(&a) - 50.0).abs() < 1e-9);
        assert!((a.mem_percent() - 25.0).abs() < 1e-9);
    }
}
