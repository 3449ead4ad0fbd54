//! The build's live progress (`--progress=tty` and `--progress=rawjson`): a [`Board`] that
//! holds every step (BuildKit's "vertex"), the transfers of the running step's pulls and the
//! last lines of each step's output, fed by the engine's [`super::output::Printer`], the RUN
//! output capture thread and the registry client ([`TransferEvents`]).
//!
//! The board writes to its own copy of stderr (RUN output reaches it through each step's own
//! pipe, [`super::output::Capture`], never through descriptor 2). In TTY mode a ticker thread redraws the live area
//! ([`super::progress_tty`]) every [`TICK`]; in rawjson mode every event is one JSON line
//! ([`super::progress_json`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::progress_tty::sanitize;
use super::{progress_json as json, progress_tty as tty};
use crate::digest::Digest;
use crate::registry::progress::{Transfer, TransferEvents};

/// How often the TTY view is redrawn.
pub const TICK: Duration = Duration::from_millis(100);
/// Output lines kept per step: the TTY view shows the last [`tty::LIVE_LOG_LINES`] of a
/// running step, and all of these under a step that failed.
pub const KEPT_LINES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tty,
    RawJson,
}

/// One step of the build.
#[derive(Debug)]
pub struct Step {
    /// `[3/8] RUN make` (the first line of the instruction).
    pub name: String,
    /// An opaque id, unique in this build (rawjson's `digest`).
    pub digest: Digest,
    pub started: SystemTime,
    pub t0: Instant,
    /// Set when the step ended.
    pub took: Option<Duration>,
    pub completed: Option<SystemTime>,
    pub cached: bool,
    pub error: Option<String>,
    /// The last [`KEPT_LINES`] output lines, made safe for a terminal.
    pub tail: VecDeque<String>,
}

/// One blob moving (a pull's layer, a push's blob).
#[derive(Debug)]
pub struct Xfer {
    pub digest: Digest,
    /// The step that was running when it started.
    pub step: Option<usize>,
    pub action: String,
    pub current: u64,
    pub total: u64,
    pub started: SystemTime,
    pub t0: Instant,
    pub completed: Option<SystemTime>,
    /// rawjson: when this transfer was last written (byte counts are sent at most each
    /// [`TICK`]).
    pub sent: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct State {
    pub steps: Vec<Step>,
    pub xfers: Vec<Xfer>,
    /// TTY: permanent lines not yet written above the live area.
    pub pending: Vec<tty::Line>,
    /// TTY: how many lines the live area has on screen.
    pub drawn: usize,
    /// The build ended: Some(true) on success.
    pub finished: Option<bool>,
}

impl State {
    fn running(&self) -> Option<usize> {
        self.steps
            .len()
            .checked_sub(1)
            .filter(|i| self.steps[*i].took.is_none())
    }
}

pub struct Board {
    pub kind: Kind,
    /// Steps the build will show (`N` of `[n/N]`).
    pub total: usize,
    pub start: Instant,
    state: Mutex<State>,
    out: Mutex<File>,
    stop: AtomicBool,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl Board {
    /// A board writing to a copy of the current stderr; TTY mode starts its ticker.
    pub fn start(kind: Kind, total: usize) -> std::io::Result<Arc<Board>> {
        let fd = nix::fcntl::fcntl(
            std::io::stderr().as_fd(),
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10),
        )?;
        // SAFETY: F_DUPFD_CLOEXEC succeeded, so `fd` is a new descriptor that nothing else
        // owns.
        let out = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let board = Arc::new(Board {
            kind,
            total,
            start: Instant::now(),
            state: Mutex::new(State::default()),
            out: Mutex::new(out),
            stop: AtomicBool::new(false),
            ticker: Mutex::new(None),
        });
        if kind == Kind::Tty {
            let b = board.clone();
            let h = std::thread::Builder::new()
                .name("box-progress".into())
                .spawn(move || {
                    while !b.stop.load(Ordering::Relaxed) {
                        b.draw();
                        std::thread::sleep(TICK);
                    }
                })?;
            *board.lock_ticker() = Some(h);
        }
        Ok(board)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_ticker(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.ticker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A closed or full stderr must not stop the build.
        let _ = out.write_all(bytes);
    }

    /// The terminal's (columns, rows), 80×24 when stderr is not one.
    fn size(&self) -> (usize, usize) {
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        tty::terminal_size(out.as_raw_fd()).unwrap_or((80, 24))
    }

    /// Redraw the TTY view: permanent lines first, then the live area in place.
    pub fn draw(&self) {
        let (cols, rows) = self.size();
        let mut st = self.lock();
        let text = tty::redraw(&mut st, self.start.elapsed(), self.total, cols, rows);
        drop(st);
        self.write(text.as_bytes());
    }

    /// A new step starts; the one running ends. Returns its index.
    pub fn step_start(&self, name: &str, cached: bool) -> usize {
        let mut st = self.lock();
        self.end_running(&mut st, None);
        let n = st.steps.len();
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        st.steps.push(Step {
            name: name.to_string(),
            digest: Digest::of_bytes(format!("boxbuild step {n} {nanos} {name}").as_bytes()),
            started: now,
            t0: Instant::now(),
            took: None,
            completed: None,
            cached,
            error: None,
            tail: VecDeque::new(),
        });
        if self.kind == Kind::RawJson {
            self.write(json::vertex(&st.steps[n]).as_bytes());
        }
        n
    }

    /// The running step ends, with `error` when it failed.
    fn end_running(&self, st: &mut State, error: Option<&str>) {
        let Some(i) = st.running() else { return };
        let s = &mut st.steps[i];
        s.took = Some(s.t0.elapsed());
        s.completed = Some(SystemTime::now());
        s.error = error.map(str::to_string);
        match self.kind {
            Kind::RawJson => {
                let line = json::vertex(&st.steps[i]);
                self.write(line.as_bytes());
            }
            Kind::Tty => {
                let lines = tty::collapsed(&st.steps[i]);
                st.pending.extend(lines);
            }
        }
    }

    /// One line (without its newline) of a step's output.
    pub fn log(&self, step: usize, raw: &[u8]) {
        let mut st = self.lock();
        let Some(s) = st.steps.get_mut(step) else {
            return;
        };
        match self.kind {
            Kind::RawJson => {
                let line = json::log(&s.digest, 1, raw);
                drop(st);
                self.write(line.as_bytes());
            }
            Kind::Tty => {
                if s.tail.len() == KEPT_LINES {
                    s.tail.pop_front();
                }
                s.tail.push_back(sanitize(raw));
            }
        }
    }

    /// A message of the build ("warning: …"), above the live area.
    pub fn message(&self, text: &str) {
        let mut st = self.lock();
        match self.kind {
            Kind::RawJson => {
                let vertex = st.running().map(|i| st.steps[i].digest.clone());
                drop(st);
                let mut raw = text.as_bytes().to_vec();
                raw.push(b'\n');
                self.write(json::message(vertex.as_ref(), &raw).as_bytes());
            }
            Kind::Tty => {
                let lines = text
                    .lines()
                    .map(|l| tty::Line::Text(sanitize(l.as_bytes())));
                st.pending.extend(lines);
            }
        }
    }

    /// The build ended: the running step ends (failed with `error`), the TTY view draws its
    /// last frame and its summary. Later calls do nothing.
    pub fn finish(&self, error: Option<&str>) {
        {
            let mut st = self.lock();
            if st.finished.is_some() {
                return;
            }
            self.end_running(&mut st, error);
            st.finished = Some(error.is_none());
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.lock_ticker().take() {
            let _ = h.join();
        }
        if self.kind == Kind::Tty {
            self.draw();
        }
    }

    fn transfer_event(&self, t: &Transfer<'_>) {
        let mut st = self.lock();
        let step = st.running();
        let i = match st.xfers.iter().position(|x| &x.digest == t.digest) {
            Some(i) => i,
            None => {
                st.xfers.push(Xfer {
                    digest: t.digest.clone(),
                    step,
                    action: String::new(),
                    current: 0,
                    total: t.total,
                    started: SystemTime::now(),
                    t0: Instant::now(),
                    completed: None,
                    sent: None,
                });
                st.xfers.len() - 1
            }
        };
        let x = &mut st.xfers[i];
        let changed = x.action != t.action || t.done;
        x.action = t.action.to_string();
        x.current = t.current;
        x.total = t.total;
        if t.done {
            x.completed = Some(SystemTime::now());
        }
        if self.kind != Kind::RawJson {
            return;
        }
        if changed || x.sent.is_none_or(|s| s.elapsed() >= TICK) {
            x.sent = Some(Instant::now());
            let vertex = x.step.map(|s| st.steps[s].digest.clone());
            let line = json::status(&st.xfers[i], vertex.as_ref());
            drop(st);
            self.write(line.as_bytes());
        }
    }
}

/// Pulls and pushes inside the build report here (`registry::Progress::Events`).
impl TransferEvents for Board {
    fn transfer(&self, t: &Transfer<'_>) {
        self.transfer_event(t);
    }

    fn message(&self, line: &str) {
        Board::message(self, line);
    }
}

/// A `Board` as the registry client takes it.
pub fn registry_sink(b: &Arc<Board>) -> crate::registry::Progress {
    let sink: Arc<dyn TransferEvents> = b.clone();
    crate::registry::Progress::Events(crate::registry::progress::EventSink(sink))
}
