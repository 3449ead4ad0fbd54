//! Progress of pulls and pushes: indicatif bars per blob on a TTY, one plain line per finished
//! blob otherwise (CI logs), nothing with `--quiet`. Everything goes to stderr, so stdout
//! carries only the result (the pulled name, the pushed digest).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Progress;
use crate::digest::Digest;

pub struct Reporter {
    mode: Mode,
    multi: Option<MultiProgress>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Plain,
    Quiet,
}

impl Reporter {
    pub fn new(p: Progress) -> Reporter {
        let mode = match p {
            Progress::Quiet => Mode::Quiet,
            Progress::Plain => Mode::Plain,
            Progress::Auto if std::io::stderr().is_terminal() => Mode::Bars,
            Progress::Auto => Mode::Plain,
        };
        let multi = (mode == Mode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Reporter { mode, multi }
    }

    /// A status line (e.g. "Digest: sha256:…"), unless quiet.
    pub fn line(&self, msg: &str) {
        match (&self.multi, self.mode) {
            (_, Mode::Quiet) => {}
            (Some(m), _) => {
                let _ = m.println(msg);
            }
            (None, _) => eprintln!("{msg}"),
        }
    }

    /// Progress of one blob of `size` bytes.
    pub fn blob(&self, digest: &Digest, size: u64, action: &str) -> BlobProgress {
        let short = digest.short().to_string();
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(short.clone());
            b.set_message(action.to_string());
            b
        });
        BlobProgress {
            bar,
            plain: self.mode == Mode::Plain,
            short,
            size,
            start: Instant::now(),
        }
    }
}

pub struct BlobProgress {
    bar: Option<ProgressBar>,
    plain: bool,
    short: String,
    size: u64,
    start: Instant,
}

/// A cheap, owned handle that only counts bytes (for streams that must be `'static`).
#[derive(Clone)]
pub struct BarHandle(Option<ProgressBar>);

impl BarHandle {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl BlobProgress {
    pub fn handle(&self) -> BarHandle {
        BarHandle(self.bar.clone())
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Start over (a retried download).
    pub fn reset(&self, why: &str) {
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_message(format!("retrying: {why}"));
        } else if self.plain {
            eprintln!("{}: retrying: {why}", self.short);
        }
    }

    /// Done: "Pull complete", "Already exists", "Pushed", …
    pub fn finish(&self, status: &str) {
        if let Some(b) = &self.bar {
            b.set_message(status.to_string());
            b.finish();
        } else if self.plain {
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "{}: {status} ({}, {secs:.1}s)",
                self.short,
                human_size(self.size)
            );
        }
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
