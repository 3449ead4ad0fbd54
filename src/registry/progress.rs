//! Progress of pulls and pushes, to stderr (stdout carries only the result: the pulled name,
//! the pushed digest):
//! - on a TTY, one indicatif bar per blob (the same layout as the build's TTY view draws);
//! - plain (CI logs): a line every [`PLAIN_EVERY`] while a blob moves, and one when it ends;
//! - events: every change goes to a [`TransferEvents`] (the build's TTY and rawjson views);
//! - quiet: nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Progress;
use crate::digest::Digest;

/// How often plain output reports a blob still in transfer.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The bar layout of `box pull` on a TTY; the build's TTY view draws the same fields.
pub const BAR_TEMPLATE: &str =
    "{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}";

/// One blob's state, as sent to [`TransferEvents::transfer`].
#[derive(Debug, Clone, Copy)]
pub struct Transfer<'a> {
    pub digest: &'a Digest,
    /// "Downloading", "Extracting", "Pushing", or the final status ("Pull complete", …).
    pub action: &'a str,
    pub current: u64,
    pub total: u64,
    /// The transfer ended (with `action` as its final status).
    pub done: bool,
}

/// Where a pull or push sends its progress when someone else draws it.
pub trait TransferEvents: Send + Sync {
    fn transfer(&self, t: &Transfer<'_>);
    /// A status line ("Digest: sha256:…", a failed mirror).
    fn message(&self, line: &str);
}

/// A shared [`TransferEvents`], as [`Progress::Events`] carries it.
#[derive(Clone)]
pub struct EventSink(pub Arc<dyn TransferEvents>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl PartialEq for EventSink {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for EventSink {}

pub struct Reporter {
    mode: Mode,
}

enum Mode {
    Bars(MultiProgress),
    Plain,
    Quiet,
    Events(Arc<dyn TransferEvents>),
}

impl Reporter {
    pub fn new(p: &Progress) -> Reporter {
        let mode = match p {
            Progress::Quiet => Mode::Quiet,
            Progress::Plain => Mode::Plain,
            Progress::Events(s) => Mode::Events(s.0.clone()),
            Progress::Auto if std::io::stderr().is_terminal() => {
                Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            }
            Progress::Auto => Mode::Plain,
        };
        Reporter { mode }
    }

    /// A status line (e.g. "Digest: sha256:…"), unless quiet.
    pub fn line(&self, msg: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Bars(m) => {
                let _ = m.println(msg);
            }
            Mode::Plain => eprintln!("{msg}"),
            Mode::Events(e) => e.message(msg),
        }
    }

    /// Progress of one blob of `size` bytes.
    pub fn blob(&self, digest: &Digest, size: u64, action: &str) -> BlobProgress {
        let short = digest.short().to_string();
        let bar = match &self.mode {
            Mode::Bars(m) => {
                let b = m.add(ProgressBar::new(size));
                b.set_style(
                    ProgressStyle::with_template(BAR_TEMPLATE)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_prefix(short.clone());
                b.set_message(action.to_string());
                Some(b)
            }
            _ => None,
        };
        let events = match &self.mode {
            Mode::Events(e) => Some(e.clone()),
            _ => None,
        };
        let now = Instant::now();
        let state = BlobState {
            bar,
            plain: matches!(self.mode, Mode::Plain),
            events,
            digest: digest.clone(),
            short,
            size,
            start: now,
            bytes: AtomicU64::new(0),
            action: Mutex::new(action.to_string()),
            last_line: Mutex::new(now),
        };
        if !action.is_empty() {
            state.send(false);
        }
        BlobProgress(Arc::new(state))
    }
}

/// The progress of one blob; [`BlobProgress::handle`] gives a `'static` copy for streams.
pub struct BlobProgress(Arc<BlobState>);

struct BlobState {
    bar: Option<ProgressBar>,
    plain: bool,
    events: Option<Arc<dyn TransferEvents>>,
    digest: Digest,
    short: String,
    size: u64,
    start: Instant,
    bytes: AtomicU64,
    action: Mutex<String>,
    /// Plain mode: when the last line about this blob was printed.
    last_line: Mutex<Instant>,
}

impl BlobState {
    fn action(&self) -> String {
        self.action.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn send(&self, done: bool) {
        if let Some(e) = &self.events {
            let action = self.action();
            e.transfer(&Transfer {
                digest: &self.digest,
                action: &action,
                current: self.bytes.load(Ordering::Relaxed),
                total: self.size,
                done,
            });
        }
    }

    fn inc(&self, n: u64) {
        let now = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if self.events.is_some() {
            self.send(false);
        }
        if self.plain {
            self.plain_tick(now);
        }
    }

    /// Plain mode: a line when the last one is [`PLAIN_EVERY`] old, so a long transfer shows
    /// in a CI log before it ends.
    fn plain_tick(&self, now: u64) {
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.elapsed() < PLAIN_EVERY {
            return;
        }
        *last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let pct = (now as f64 * 100.0 / self.size.max(1) as f64).min(100.0);
        eprintln!(
            "{}: {} {} of {} ({pct:.0}%, {}/s, {secs:.0}s)",
            self.short,
            self.action(),
            human_size(now),
            human_size(self.size),
            human_size((now as f64 / secs) as u64)
        );
    }
}

/// A cheap, owned handle that only counts bytes (for streams that must be `'static`).
#[derive(Clone)]
pub struct BarHandle(Arc<BlobState>);

impl BarHandle {
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

impl BlobProgress {
    pub fn handle(&self) -> BarHandle {
        BarHandle(self.0.clone())
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// A new state ("Extracting"); plain output waits for the final line.
    pub fn status(&self, msg: &str) {
        let s = &self.0;
        if let Ok(mut a) = s.action.lock() {
            *a = msg.to_string();
        }
        if let Some(b) = &s.bar {
            b.set_message(msg.to_string());
        }
        s.send(false);
    }

    /// Start over (a retried download).
    pub fn reset(&self, why: &str) {
        let s = &self.0;
        s.bytes.store(0, Ordering::Relaxed);
        if let Some(b) = &s.bar {
            b.set_position(0);
            b.set_message(format!("retrying: {why}"));
        } else if s.plain {
            eprintln!("{}: retrying: {why}", s.short);
        }
        s.send(false);
    }

    /// Done: "Pull complete", "Already exists", "Pushed", …
    pub fn finish(&self, status: &str) {
        let s = &self.0;
        if let Ok(mut a) = s.action.lock() {
            *a = status.to_string();
        }
        if let Some(b) = &s.bar {
            b.set_message(status.to_string());
            b.finish();
        } else if s.plain {
            let secs = s.start.elapsed().as_secs_f64();
            eprintln!("{}: {status} ({}, {secs:.1}s)", s.short, human_size(s.size));
        }
        s.send(true);
    }
}

/// "4.2 MB", for plain progress lines.
fn human_size(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, u64, bool)>>);

    impl TransferEvents for Seen {
        fn transfer(&self, t: &Transfer<'_>) {
            let mut v = self.0.lock().unwrap();
            v.push((t.action.to_string(), t.current, t.done));
        }
        fn message(&self, _: &str) {}
    }

    #[test]
    fn events_see_start_progress_and_the_final_status() {
        let seen = Arc::new(Seen::default());
        let rep = Reporter::new(&Progress::Events(EventSink(seen.clone())));
        let b = rep.blob(&Digest::of_bytes(b"x"), 10, "Downloading");
        b.handle().inc(4);
        b.inc(6);
        b.finish("Pull complete");
        let v = seen.0.lock().unwrap().clone();
        assert_eq!(
            v,
            vec![
                ("Downloading".into(), 0, false),
                ("Downloading".into(), 4, false),
                ("Downloading".into(), 10, false),
                ("Pull complete".into(), 10, true),
            ]
        );
    }
}
