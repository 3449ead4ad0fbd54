//! `box wait | rename | logs`: the container lifecycle commands that read or wait on a
//! container's state and log.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::store::open_store;
use super::{CmdResult, Global};
use crate::container::{Containers, Status, logs};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Container name or ID
    pub container: String,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs, or "all"
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since a time: RFC 3339 (2024-01-02T15:04:05Z), a Unix time, or a duration
    /// before now (10m, 1h30m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs up to a time (same forms as --since); with -f, follow until then
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Containers to wait for; each one's exit code is printed when it stops
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    /// The container's name or ID
    pub container: String,
    /// Its new name
    pub new_name: String,
}

fn containers(g: &Global) -> anyhow::Result<Containers> {
    Ok(Containers::new(open_store(g)?.containers_dir()))
}

/// `docker wait`: block until each container stops and print its exit code, in order. A
/// container that does not exist is an error for it (exit 1), the others are still waited for.
pub fn wait(g: &Global, a: WaitArgs) -> CmdResult {
    let c = containers(g)?;
    let mut failed = false;
    for n in &a.containers {
        match wait_one(&c, n) {
            Ok(code) => {
                println!("{code}");
                let _ = std::io::stdout().flush();
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

fn wait_one(c: &Containers, what: &str) -> anyhow::Result<i32> {
    let id = c.resolve(what)?;
    // A --rm container keeps its exit code for us only if we say we wait; one that is
    // already gone is reported below.
    let _ = c.add_waiter(&id);
    loop {
        match c.refresh(&id) {
            Ok(Some(s)) if s.status == Status::Exited => return Ok(s.exit_code.unwrap_or(0)),
            Ok(Some(_)) => {}
            Ok(None) | Err(crate::container::state::StateError::NoSuch(_)) => {
                if let Some(code) = c.recorded_exit(&id) {
                    return Ok(code);
                }
                bail!("container {what} was removed (--rm) before its exit code could be read")
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `docker rename OLD NEW`.
pub fn rename(g: &Global, a: RenameArgs) -> CmdResult {
    let c = containers(g)?;
    let id = c.resolve(&a.container)?;
    c.rename(&id, &a.new_name)
        .with_context(|| format!("rename container {}", a.container))?;
    Ok(0)
}

/// `--tail`: None for all lines.
fn parse_tail(s: &str) -> anyhow::Result<Option<usize>> {
    if s == "all" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => Ok(Some(n as usize)),
        Err(_) => bail!("invalid --tail {s:?}: a number of lines or \"all\""),
    }
}

pub fn logs(g: &Global, a: LogsArgs) -> CmdResult {
    let tail = parse_tail(&a.tail)?;
    let now = now_nanos();
    let time = |flag: &str, v: Option<&str>| -> anyhow::Result<Option<i64>> {
        let Some(s) = v else { return Ok(None) };
        logs::parse_since(s, now).map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid --{flag} {s:?}: give an RFC 3339 time (2024-01-02T15:04:05Z), a Unix \
                 time, or a duration such as 10m"
            )
        })
    };
    let since = time("since", a.since.as_deref())?;
    let until = time("until", a.until.as_deref())?;
    let c = containers(g)?;
    let id = c.resolve(&a.container)?;
    let path = c.log_path(&id);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "container {} has no log: --rm foreground runs keep none",
                &id[..12]
            )
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut pos = 0u64;
    if tail.is_some() || since.is_some() || until.is_some() {
        // The log as it is now, filtered; following goes on from its end.
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        pos = data.len() as u64;
        let index = logs::read_index(&path);
        let mut lines = logs::lines(&data, 0, &index);
        if let Some(t) = since {
            // A line without a time (a log from before the index) is kept.
            lines.retain(|l| l.time.is_none_or(|lt| lt >= t));
        }
        if let Some(t) = until {
            lines.retain(|l| l.time.is_none_or(|lt| lt <= t));
        }
        if let Some(n) = tail {
            lines.drain(..lines.len().saturating_sub(n));
        }
        for l in &lines {
            write_line(&mut out, l, a.timestamps)?;
        }
    }
    let how = Stream {
        follow: a.follow,
        timestamps: a.timestamps,
        until,
    };
    stream(&c, &id, f, pos, &how, &mut out)?;
    Ok(0)
}

fn write_line(
    out: &mut (impl Write + ?Sized),
    l: &logs::Line,
    timestamps: bool,
) -> std::io::Result<()> {
    if timestamps {
        // docker prints the time of a line it has no time for as the zero time; boxkit's
        // index-less logs are older than the feature, so say nothing rather than lie.
        if let Some(t) = l.time {
            write!(out, "{} ", logs::stamp(t))?;
        }
    }
    out.write_all(&l.bytes)
}

/// Print the log from `pos` on: bytes as they are, or (with timestamps) whole lines with
/// their times. With `follow`, until the container has exited and everything it wrote is out.
/// How [`stream`] prints: following or not, with timestamps, and up to when.
pub(super) struct Stream {
    pub follow: bool,
    pub timestamps: bool,
    pub until: Option<i64>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(super) fn stream(
    c: &Containers,
    id: &str,
    mut f: std::fs::File,
    mut pos: u64,
    how: &Stream,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (follow, timestamps) = (how.follow, how.timestamps);
    if how.until.is_some_and(|u| u <= now_nanos()) {
        // Everything up to --until was printed from the snapshot.
        return Ok(());
    }
    let path = c.log_path(id);
    f.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0u8; 64 * 1024];
    // With timestamps: bytes of a line not yet ended, and where it starts in the log.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_at = pos;
    let emit = |out: &mut dyn Write, pending: &mut Vec<u8>, at: &mut u64, all: bool| {
        let cut = if all {
            pending.len()
        } else {
            pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut == 0 {
            return Ok::<(), std::io::Error>(());
        }
        let index = logs::read_index(&path);
        for l in logs::lines(&pending[..cut], *at, &index) {
            write_line(out, &l, true)?;
        }
        pending.drain(..cut);
        *at += cut as u64;
        Ok(())
    };
    let mut settle_until: Option<Instant> = None;
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            pos += n as u64;
            if timestamps {
                pending.extend_from_slice(&buf[..n]);
                emit(out, &mut pending, &mut pending_at, false)?;
            } else {
                out.write_all(&buf[..n])?;
            }
            continue;
        }
        let st = if follow { c.load(id).ok() } else { None };
        let alive = st.as_ref().is_some_and(|s| s.is_running());
        let running = alive && how.until.is_none_or(|u| now_nanos() < u);
        // The supervisor is gone but its monitor has not recorded the exit yet: the log relay
        // may still be writing the last output. Give it a moment (bounded).
        let settling = !alive
            && st.is_some_and(|s| s.status == Status::Running)
            && *settle_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(2))
                > Instant::now();
        if settling {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if !running {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(pos);
            if !follow || len <= pos {
                emit(out, &mut pending, &mut pending_at, true)?;
                out.flush()?;
                return Ok(());
            }
            f.seek(SeekFrom::Start(pos))?;
            continue;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}
