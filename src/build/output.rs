//! Build output, to stderr (stdout carries only the image ID), in the mode `--progress`
//! chose:
//! - plain: `[n/N] INSTRUCTION` lines, `CACHED` on hits, RUN output streamed with the step
//!   prefix; one line per event, which reads the same in a terminal and in CI logs;
//! - tty and rawjson: the same events go to a [`Board`] (the live view, or JSON lines);
//! - quiet: nothing.

use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use super::OutputMode;
use super::progress::{self, Board, Kind};

pub struct Printer {
    pub mode: OutputMode,
    pub total: usize,
    pub n: usize,
    start: Instant,
    /// tty and rawjson modes.
    board: Option<Arc<Board>>,
    /// The board's index of the running step.
    current: Option<usize>,
}

impl Printer {
    /// A printer for `total` steps; a tty or rawjson mode whose board cannot start (no
    /// descriptor left) falls back to plain.
    pub fn new(mode: OutputMode, total: usize) -> Printer {
        let kind = match mode {
            OutputMode::Tty => Some(Kind::Tty),
            OutputMode::RawJson => Some(Kind::RawJson),
            OutputMode::Plain | OutputMode::Quiet => None,
        };
        let board = kind.and_then(|k| Board::start(k, total).ok());
        let mode = if kind.is_some() && board.is_none() {
            OutputMode::Plain
        } else {
            mode
        };
        Printer {
            mode,
            total,
            n: 0,
            start: Instant::now(),
            board,
            current: None,
        }
    }

    pub fn quiet(&self) -> bool {
        self.mode == OutputMode::Quiet
    }

    /// How pulls and pushes of this build report progress.
    pub fn registry_progress(&self) -> crate::registry::Progress {
        match (&self.board, self.mode) {
            (Some(b), _) => progress::registry_sink(b),
            (None, OutputMode::Quiet) => crate::registry::Progress::Quiet,
            (None, _) => crate::registry::Progress::Plain,
        }
    }

    /// Redirect the output of a RUN step (the process's stdout and stderr, which the sandbox
    /// inherits) to this printer until the returned guard is dropped.
    pub fn capture(&self) -> std::io::Result<Capture> {
        let sink = match (&self.board, self.current) {
            (Some(b), Some(i)) => Sink::Board(b.clone(), i),
            _ if self.quiet() => Sink::Discard,
            _ => Sink::Prefix(self.prefix()),
        };
        Capture::start(sink)
    }

    /// The build succeeded: the live view draws its summary.
    pub fn succeeded(&mut self) {
        if let Some(b) = self.board.take() {
            b.finish(None);
        }
    }

    /// The build failed with `why`: the running step is marked failed.
    pub fn failed(&mut self, why: &str) {
        if let Some(b) = self.board.take() {
            b.finish(Some(why));
        }
    }

    /// The prefix of the current step, `[3/8]`.
    pub fn prefix(&self) -> String {
        format!("[{}/{}]", self.n, self.total)
    }

    /// Start the next step.
    pub fn step(&mut self, text: &str, cached: bool) {
        self.n += 1;
        if self.quiet() {
            return;
        }
        let first = first_line(text);
        if let Some(b) = &self.board {
            self.current = Some(b.step_start(&format!("{} {first}", self.prefix()), cached));
            return;
        }
        let tag = if cached { " CACHED" } else { "" };
        eprintln!("{}{tag} {first}", self.prefix());
    }

    pub fn line(&self, text: &str) {
        match &self.board {
            Some(b) => b.message(text),
            None if self.quiet() => {}
            None => eprintln!("{text}"),
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// The first line of an instruction as written, with a marker when more follows.
pub fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim_end();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

impl Drop for Printer {
    /// A build that returned without [`Printer::succeeded`] or [`Printer::failed`] (an
    /// error before the steps) still ends the live view and shows the cursor again.
    fn drop(&mut self) {
        self.failed("the build stopped");
    }
}

/// Where captured RUN output goes.
enum Sink {
    /// Plain mode: each line to the original stderr after the step's prefix.
    Prefix(String),
    /// Quiet mode.
    Discard,
    /// tty and rawjson: each line to the board, as output of step `.1`.
    Board(Arc<Board>, usize),
}

/// While alive, the process's stdout and stderr (which the sandbox's container inherits) go
/// into a pipe whose lines go to a [`Sink`]; stdin reads /dev/null. Dropping it restores
/// the descriptors and flushes the last lines.
pub struct Capture {
    /// The original stdin, stdout and stderr.
    saved: [OwnedFd; 3],
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A close-on-exec copy of `fd` numbered 10 or above, out of the way of the low descriptors
/// the container is given.
fn save_fd(fd: impl AsFd) -> std::io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: F_DUPFD_CLOEXEC succeeded, so `raw` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Capture {
    fn start(sink: Sink) -> std::io::Result<Capture> {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let devnull = std::fs::File::open("/dev/null")?;
        let saved = [
            save_fd(std::io::stdin())?,
            save_fd(std::io::stdout())?,
            save_fd(std::io::stderr())?,
        ];
        let out = std::fs::File::from(save_fd(&saved[2])?);
        nix::unistd::dup2_stdin(&devnull)?;
        nix::unistd::dup2_stdout(&w)?;
        nix::unistd::dup2_stderr(&w)?;
        drop(w);
        let reader = std::thread::spawn(move || copy_lines(r, out, sink));
        Ok(Capture {
            saved,
            reader: Some(reader),
        })
    }
}

/// A line longer than this is passed on in pieces, so a RUN that prints without newlines
/// cannot make the reader hold all of it.
const MAX_LINE: usize = 64 * 1024;

fn copy_lines(r: OwnedFd, mut out: std::fs::File, sink: Sink) {
    let mut r = std::fs::File::from(r);
    let mut emit = |line: &[u8]| match &sink {
        Sink::Discard => {}
        Sink::Board(b, step) => b.log(*step, line),
        Sink::Prefix(prefix) => {
            let mut buf = Vec::with_capacity(line.len() + 16);
            buf.extend_from_slice(prefix.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(line);
            buf.push(b'\n');
            let _ = out.write_all(&buf);
        }
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(p) = buf[start..].iter().position(|b| *b == b'\n') {
            emit(&buf[start..start + p]);
            start += p + 1;
        }
        buf.drain(..start);
        while buf.len() >= MAX_LINE {
            emit(&buf[..MAX_LINE]);
            buf.drain(..MAX_LINE);
        }
    }
    if !buf.is_empty() {
        emit(&buf);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let [stdin, stdout, stderr] = &self.saved;
        let _ = nix::unistd::dup2_stdin(stdin);
        let _ = nix::unistd::dup2_stdout(stdout);
        let _ = nix::unistd::dup2_stderr(stderr);
        // The pipe's write end is now closed everywhere (the container has exited), so the
        // reader sees EOF. The saved descriptors close when `self` is dropped.
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}
