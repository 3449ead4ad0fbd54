//! A detached container's log: `container.log` holds the bytes exactly as the container wrote
//! them (so `box logs` without `-t` prints them unchanged, and `-f` can stream the file), and
//! `container.log.ts` holds one text record `OFFSET UNIX_NANOS` per line start, for `--since`
//! and `-t`. The monitor relays the container's stdout and stderr from a pipe into both
//! ([`spawn_relay`]); each line's time is when the monitor read its first byte.
//!
//! The index is written before the bytes it describes, so a reader never sees a line without
//! its time. A log from a container without an index (older boxkit) reads as lines with no time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where a log's line index lives, beside the log.
pub fn index_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".ts");
    PathBuf::from(p)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The relay thread's handle: [`Relay::drain`] waits (bounded) until the container's side of
/// the pipe is closed everywhere and everything read is in the log.
pub struct Relay {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Wait up to `timeout` for the relay to reach the end of the pipe; true when it did.
    pub fn drain(&self, timeout: Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        while !self.done.load(Ordering::Acquire) {
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// [`Relay::drain`], then join the thread when it ended (the monitor forks again for a
    /// restart, best with no other thread).
    pub fn finish(mut self, timeout: Duration) -> bool {
        let done = self.drain(timeout);
        if done && let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        done
    }
}

/// Copy `pipe` into `log`, recording each line start's offset and time in `index`.
pub fn spawn_relay(
    pipe: std::fs::File,
    log: std::fs::File,
    index: std::fs::File,
) -> std::io::Result<Relay> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let thread = std::thread::Builder::new()
        .name("log-relay".into())
        .spawn(move || {
            relay(pipe, log, index);
            flag.store(true, Ordering::Release);
        })?;
    Ok(Relay {
        done,
        thread: Some(thread),
    })
}

fn relay(mut pipe: std::fs::File, log: std::fs::File, index: std::fs::File) {
    let mut w = LogWriter::new(log, index);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if w.write(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Appends to a log and its line index (see the module doc).
pub struct LogWriter {
    log: std::fs::File,
    index: std::fs::File,
    offset: u64,
    at_line_start: bool,
    records: String,
}

impl LogWriter {
    pub fn new(log: std::fs::File, index: std::fs::File) -> LogWriter {
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        LogWriter {
            log,
            index,
            offset,
            at_line_start: offset == 0,
            records: String::new(),
        }
    }

    /// Append `chunk`, read now; the index first, so no line is ever without its time.
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let n = chunk.len();
        let t = now_nanos();
        let (offset, records) = (self.offset, &mut self.records);
        records.clear();
        if self.at_line_start {
            records.push_str(&format!("{offset} {t}\n"));
        }
        for (i, b) in chunk.iter().enumerate() {
            if *b == b'\n' && i + 1 < n {
                records.push_str(&format!("{} {t}\n", offset + i as u64 + 1));
            }
        }
        self.at_line_start = chunk.last() == Some(&b'\n');
        // A failed index write loses times, never output.
        let _ = self.index.write_all(records.as_bytes());
        self.log.write_all(chunk)?;
        self.offset += n as u64;
        Ok(())
    }
}

/// One line of a log (its newline kept, if it had one) and its time in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time: Option<i64>,
    pub bytes: Vec<u8>,
}

/// The line index of `log`: (offset, nanos), sorted by offset.
pub fn read_index(log: &Path) -> Vec<(u64, i64)> {
    let text = std::fs::read_to_string(index_path(log)).unwrap_or_default();
    let mut v: Vec<(u64, i64)> = text
        .lines()
        .filter_map(|l| {
            let (o, t) = l.split_once(' ')?;
            Some((o.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    v.sort_by_key(|r| r.0);
    v
}

/// Split `data` (the log from byte `start` on) into lines with their times from `index`.
pub fn lines(data: &[u8], start: u64, index: &[(u64, i64)]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let off = start + pos as u64;
        let time = match index.binary_search_by_key(&off, |r| r.0) {
            Ok(i) => Some(index[i].1),
            Err(0) => None,
            Err(i) => Some(index[i - 1].1),
        };
        out.push(Line {
            time,
            bytes: data[pos..end].to_vec(),
        });
        pos = end;
    }
    out
}

/// docker's `--since`/`--until` values: RFC 3339 (`2024-01-02T15:04:05Z`), a date, a Unix
/// time (`1700000000[.5]`), or a duration before `now` (`10m`, `1h30m`, `45s`). Nanoseconds.
pub fn parse_since(s: &str, now_nanos: i64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(d) = parse_duration(s) {
        return Some(now_nanos - d as i64);
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some((f * 1e9) as i64);
    }
    if let Some(secs) = crate::timefmt::parse_rfc3339(s) {
        // parse_rfc3339 drops fractions; keep them for lines logged within the same second.
        let frac = s
            .split_once('.')
            .map(|(_, f)| {
                let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
                format!("{digits:0<9}")[..9].parse::<i64>().unwrap_or(0)
            })
            .unwrap_or(0);
        return Some(secs * 1_000_000_000 + frac);
    }
    if s.len() == 10 {
        return crate::timefmt::parse_rfc3339(&format!("{s}T00:00:00Z")).map(|t| t * 1_000_000_000);
    }
    None
}

/// Go durations: `1h30m`, `10m`, `45s`, `500ms`, `1.5h`. Nanoseconds.
fn parse_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(total as u64)
}

/// docker's `-t` prefix: RFC 3339 with nanoseconds, then a space.
pub fn stamp(nanos: i64) -> String {
    crate::timefmt::rfc3339_nanos(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_keeps_the_bytes_and_indexes_every_line_start() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("container.log");
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        let relay = spawn_relay(
            r.into(),
            std::fs::File::create(&log).unwrap(),
            std::fs::File::create(index_path(&log)).unwrap(),
        )
        .unwrap();
        w.write_all(b"one\ntwo\nthr").unwrap();
        w.write_all(b"ee\nfour").unwrap();
        drop(w);
        assert!(relay.drain(Duration::from_secs(5)));
        let data = std::fs::read(&log).unwrap();
        assert_eq!(data, b"one\ntwo\nthree\nfour");
        let idx = read_index(&log);
        let offs: Vec<u64> = idx.iter().map(|r| r.0).collect();
        assert_eq!(offs, [0, 4, 8, 14]);
        let l = lines(&data, 0, &idx);
        assert_eq!(l.len(), 4);
        assert_eq!(l[2].bytes, b"three\n");
        assert!(l.iter().all(|l| l.time.is_some()));
    }

    #[test]
    fn since_takes_rfc3339_unix_times_and_go_durations() {
        let now = 1_700_000_000 * 1_000_000_000i64;
        assert_eq!(parse_since("10m", now), Some(now - 600 * 1_000_000_000));
        assert_eq!(parse_since("1h30m", now), Some(now - 5400 * 1_000_000_000));
        assert_eq!(parse_since("1700000000", now), Some(now));
        assert_eq!(
            parse_since("2023-11-14T22:13:20.5Z", now),
            Some(now + 500_000_000)
        );
        assert_eq!(
            parse_since("2023-11-14", now),
            Some(1_699_920_000 * 1_000_000_000)
        );
        assert_eq!(parse_since("yesterday", now), None);
        assert_eq!(stamp(now + 5), "2023-11-14T22:13:20.000000005Z");
    }
}
