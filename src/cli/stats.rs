//! `box top` and `box stats`: what a running container's processes are and use, read from
//! the host's /proc and the container's cgroup ([`crate::container::top`],
//! [`crate::container::stats`]).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::fmt::{Format, human_size, print_rows, print_table};
use super::store::open_store;
use super::{CmdResult, Global};
use crate::container::stats::{self, Sample, binary_size};
use crate::container::{Containers, State, top};

/// `box top CONTAINER [ps OPTIONS]`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The container
    pub container: String,
    /// Options for ps (default -ef); other than -ef, the host's ps runs with them and its
    /// rows are filtered to the container's processes
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS_OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

/// `box stats [OPTIONS] [CONTAINER...]`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Print one reading and exit, instead of refreshing every second
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table (default), json, or a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Containers (default: every running one)
    pub containers: Vec<String>,
}

fn running(c: &Containers, name: &str) -> anyhow::Result<State> {
    let id = c.resolve(name)?;
    let st = c
        .refresh(&id)?
        .ok_or_else(|| anyhow::anyhow!("no such container: {name}"))?;
    if !st.is_running() {
        bail!("container {name} is not running");
    }
    Ok(st)
}

fn user_names() -> std::collections::HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

/// ps's STIME: the time of day when the process started today, else month and day, else the
/// year.
fn stime(epoch: i64, now: i64) -> String {
    let local = |t: i64| {
        // SAFETY: localtime_r writes only into the tm we pass; a zeroed tm is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call.
        unsafe { libc::localtime_r(&t, &mut tm) };
        tm
    };
    let (s, n) = (local(epoch), local(now));
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if (s.tm_year, s.tm_yday) == (n.tm_year, n.tm_yday) {
        format!("{:02}:{:02}", s.tm_hour, s.tm_min)
    } else if s.tm_year == n.tm_year {
        format!("{}{:02}", MONTHS[s.tm_mon.clamp(0, 11) as usize], s.tm_mday)
    } else {
        format!("{}", s.tm_year + 1900)
    }
}

/// The rows of `ps -ef` for `pids`.
fn ps_ef(pids: &[i32]) -> Vec<Vec<String>> {
    let hz = top::ticks_per_sec();
    let boot = top::boot_time();
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let names = user_names();
    let mut rows = vec![
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
            .map(String::from)
            .to_vec(),
    ];
    for p in pids.iter().filter_map(|p| top::read_proc(*p)) {
        let cpu = p.cpu_ticks as f64 / hz as f64;
        let elapsed = uptime - p.start_ticks as f64 / hz as f64;
        let c = if elapsed > 0.0 {
            (cpu / elapsed * 100.0) as u64
        } else {
            0
        };
        rows.push(vec![
            names
                .get(&p.uid)
                .cloned()
                .unwrap_or_else(|| p.uid.to_string()),
            p.pid.to_string(),
            p.ppid.to_string(),
            c.to_string(),
            stime(boot + (p.start_ticks / hz) as i64, now),
            top::tty_name(p.tty_nr),
            top::cpu_time(p.cpu_ticks / hz),
            p.cmd.clone(),
        ]);
    }
    rows
}

/// Other ps options: the host's ps, its rows kept where the PID column names a member.
fn host_ps(args: &[String], pids: &[i32]) -> anyhow::Result<Vec<String>> {
    let o = std::process::Command::new("ps")
        .args(args)
        .output()
        .context("run ps")?;
    if !o.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("couldn't find PID field in ps output"))?;
    let mut out = vec![header.to_string()];
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

pub fn top(g: &Global, a: TopArgs) -> CmdResult {
    let c = Containers::new(open_store(g)?.containers_dir());
    let st = running(&c, &a.container)?;
    let pids = top::members(&st)?;
    let mut out = std::io::stdout().lock();
    if a.ps_args.is_empty() || a.ps_args == ["-ef"] {
        print_table(&mut out, &ps_ef(&pids))?;
    } else {
        for l in host_ps(&a.ps_args, &pids)? {
            writeln!(out, "{l}")?;
        }
    }
    Ok(0)
}

const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// One container's row, as docker's `--format json` names the fields.
fn row(st: &State, cur: Option<&Sample>, prev: Option<&Sample>, no_trunc: bool) -> Value {
    let id = if no_trunc {
        st.id.clone()
    } else {
        st.id[..12.min(st.id.len())].to_string()
    };
    let (cpu, mem, memp, net, blk, pids) = match cur {
        Some(s) => (
            prev.map_or(0.0, |p| s.cpu_percent(p)),
            format!(
                "{} / {}",
                binary_size(s.mem_usage),
                binary_size(s.mem_limit)
            ),
            s.mem_percent(),
            format!("{} / {}", human_size(s.net_rx), human_size(s.net_tx)),
            format!("{} / {}", human_size(s.blk_read), human_size(s.blk_write)),
            s.pids,
        ),
        None => (
            0.0,
            "0B / 0B".into(),
            0.0,
            "0B / 0B".into(),
            "0B / 0B".into(),
            0,
        ),
    };
    json!({
        "BlockIO": blk,
        "CPUPerc": format!("{cpu:.2}%"),
        "Container": id,
        "ID": id,
        "MemPerc": format!("{memp:.2}%"),
        "MemUsage": mem,
        "Name": st.name,
        "NetIO": net,
        "PIDs": pids.to_string(),
    })
}

fn print_stats(out: &mut dyn Write, f: &Format, rows: &[Value]) -> anyhow::Result<()> {
    if print_rows(out, f, rows, STATS_HEADERS)? {
        return Ok(());
    }
    let mut table = vec![
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    for r in rows {
        table.push(
            [
                "ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs",
            ]
            .iter()
            .map(|k| s(r, k))
            .collect(),
        );
    }
    print_table(out, &table)?;
    Ok(())
}

/// The containers to show: those named, else every running one (every one with `-a`).
fn targets(c: &Containers, a: &StatsArgs) -> anyhow::Result<Vec<State>> {
    if !a.containers.is_empty() {
        return a
            .containers
            .iter()
            .map(|n| {
                let id = c.resolve(n)?;
                c.refresh(&id)?
                    .ok_or_else(|| anyhow::anyhow!("no such container: {n}"))
            })
            .collect();
    }
    let mut v: Vec<State> = c
        .ids()
        .iter()
        .filter_map(|id| c.refresh(id).ok().flatten())
        .filter(|s| a.all || s.is_running())
        .collect();
    v.sort_by(|x, y| y.created.cmp(&x.created));
    Ok(v)
}

fn sample_all(list: &[State]) -> Vec<Option<Sample>> {
    list.iter()
        .map(|s| {
            if s.is_running() {
                stats::sample(s).ok()
            } else {
                None
            }
        })
        .collect()
}

pub fn stats(g: &Global, a: StatsArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let c = Containers::new(open_store(g)?.containers_dir());
    let mut list = targets(&c, &a)?;
    let mut prev = sample_all(&list);
    let tty = std::io::stdout().is_terminal();
    loop {
        // A first reading needs a second one for CPU %: half a second for --no-stream, a
        // second (docker's refresh) when streaming.
        std::thread::sleep(Duration::from_millis(if a.no_stream { 500 } else { 1000 }));
        let cur = sample_all(&list);
        let rows: Vec<Value> = list
            .iter()
            .zip(cur.iter().zip(prev.iter()))
            .map(|(st, (c, p))| row(st, c.as_ref(), p.as_ref(), a.no_trunc))
            .collect();
        let mut out = std::io::stdout().lock();
        if tty && !a.no_stream {
            // docker's refresh: clear the screen, cursor home.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        print_stats(&mut out, &format, &rows)?;
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
        if a.containers.is_empty() {
            // Containers started meanwhile join, stopped ones leave.
            let fresh = targets(&c, &a)?;
            if fresh.iter().map(|s| &s.id).ne(list.iter().map(|s| &s.id)) {
                list = fresh;
                prev = sample_all(&list);
                continue;
            }
        }
        prev = cur;
    }
}
