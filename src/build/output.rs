//! Build output, to stderr (stdout carries only the image ID), in the mode `--progress`
//! chose:
//! - plain: `[n/N] INSTRUCTION` lines, `CACHED` on hits, RUN output streamed with the step
//!   prefix; one line per event, which reads the same in a terminal and in CI logs;
//! - tty and rawjson: the same events go to a [`Board`] (the live view, or JSON lines);
//! - quiet: nothing.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
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
    /// A multi-platform build's platform, shown in every prefix: `[linux/arm64 3/8]`.
    tag: Option<String>,
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
            tag: None,
        }
    }

    /// This printer with `tag` (a platform) in its prefixes.
    pub fn tagged(mut self, tag: Option<String>) -> Printer {
        self.tag = tag;
        self
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

    /// A RUN step's output descriptors, whose lines come to this printer until the returned
    /// guard is dropped (after the step's container has exited).
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

    /// The prefix of the current step, `[3/8]` (`[linux/arm64 3/8]` with a tag).
    pub fn prefix(&self) -> String {
        match &self.tag {
            Some(t) => format!("[{t} {}/{}]", self.n, self.total),
            None => format!("[{}/{}]", self.n, self.total),
        }
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
    /// Plain mode: each line to stderr after the step's prefix.
    Prefix(String),
    /// Quiet mode.
    Discard,
    /// tty and rawjson: each line to the board, as output of step `.1`.
    Board(Arc<Board>, usize),
    /// Unit tests: the lines, kept.
    #[cfg(test)]
    Keep(Arc<std::sync::Mutex<Vec<String>>>),
}

/// One RUN step's output: the descriptors its container gets ([`Capture::stdio`]: stdin
/// /dev/null, stdout and stderr one pipe) and the thread that passes the pipe's lines to a
/// [`Sink`]. Nothing of the process's own descriptors changes, so steps in several threads
/// (the platforms of a multi-platform build) each have their own.
///
/// The reader does not wait for EOF: a RUN started by another thread forks while this pipe
/// exists, and its helper process keeps a copy of the write end until its own container
/// exits. So dropping the capture (after the container has exited, and with it every
/// process that could write) tells the reader to stop, and it reads what is left without
/// blocking.
pub struct Capture {
    stdio: crate::run::spec::Stdio,
    /// A byte written here stops the reader (a write, not a close: other helpers may hold
    /// copies of this end too).
    stop: OwnedFd,
    /// The read end of `stop`, held here too so that the byte never meets a closed pipe
    /// (the reader may have stopped at EOF already).
    _stop_r: Arc<OwnedFd>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start(sink: Sink) -> std::io::Result<Capture> {
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (r, w) = nix::unistd::pipe2(cloexec)?;
        let (stop_r, stop) = nix::unistd::pipe2(cloexec)?;
        let devnull = OwnedFd::from(std::fs::File::open("/dev/null")?);
        let w = Arc::new(w);
        let stdio = crate::run::spec::Stdio {
            stdin: Arc::new(devnull),
            stdout: w.clone(),
            stderr: w,
        };
        let stop_r = Arc::new(stop_r);
        let held = stop_r.clone();
        let reader = std::thread::Builder::new()
            .name("run-output".into())
            .spawn(move || copy_lines(r, &held, sink))?;
        Ok(Capture {
            stdio,
            stop,
            _stop_r: stop_r,
            reader: Some(reader),
        })
    }

    /// The descriptors for the step's [`crate::run::SandboxSpec::stdio`].
    pub fn stdio(&self) -> crate::run::spec::Stdio {
        self.stdio.clone()
    }
}

/// A line longer than this is passed on in pieces, so a RUN that prints without newlines
/// cannot make the reader hold all of it.
const MAX_LINE: usize = 64 * 1024;

fn copy_lines(r: OwnedFd, stop: &OwnedFd, sink: Sink) {
    let mut r = std::fs::File::from(r);
    let emit = |line: &[u8]| match &sink {
        Sink::Discard => {}
        Sink::Board(b, step) => b.log(*step, line),
        #[cfg(test)]
        Sink::Keep(v) => v
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned()),
        Sink::Prefix(prefix) => {
            let mut buf = Vec::with_capacity(line.len() + prefix.len() + 2);
            buf.extend_from_slice(prefix.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(line);
            buf.push(b'\n');
            // One write under stderr's lock: lines of steps in other threads stay whole.
            let _ = std::io::stderr().lock().write_all(&buf);
        }
    };
    let mut lines = Lines::default();
    let mut chunk = [0u8; 8192];
    let mut stopping = false;
    loop {
        if !stopping {
            use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
            let mut fds = [
                PollFd::new(r.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|e| !e.is_empty());
            if ready(&fds[1]) {
                // The container is gone: what it wrote is in the pipe; read it all, then stop.
                stopping = true;
                if nix::fcntl::fcntl(
                    r.as_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .is_err()
                {
                    break;
                }
            }
            if !stopping && !ready(&fds[0]) {
                continue;
            }
        }
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        lines.push(&chunk[..n], &emit);
    }
    lines.finish(&emit);
}

/// Bytes not yet passed on as whole lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8], emit: &impl Fn(&[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(p) = self.buf[start..].iter().position(|b| *b == b'\n') {
            emit(&self.buf[start..start + p]);
            start += p + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= MAX_LINE {
            emit(&self.buf[..MAX_LINE]);
            self.buf.drain(..MAX_LINE);
        }
    }

    fn finish(self, emit: &impl Fn(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = nix::unistd::write(&self.stop, b"x");
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_passes_whole_lines_and_stops_though_another_copy_of_its_pipe_lives() {
        let kept = Arc::new(std::sync::Mutex::new(vec![]));
        let cap = Capture::start(Sink::Keep(kept.clone())).unwrap();
        let io = cap.stdio();
        // What another thread's forked helper would hold: a copy of the write end.
        let other = nix::unistd::dup(&*io.stdout).unwrap();
        let mut out = std::fs::File::from(nix::unistd::dup(&*io.stdout).unwrap());
        out.write_all(b"one\ntwo\npart").unwrap();
        drop(out);
        drop(io);
        drop(cap);
        assert_eq!(*kept.lock().unwrap(), ["one", "two", "part"]);
        drop(other);
    }

    #[test]
    fn a_long_line_is_passed_on_in_pieces() {
        let got = std::cell::RefCell::new(vec![]);
        let emit = |l: &[u8]| got.borrow_mut().push(l.len());
        let mut lines = Lines::default();
        lines.push(&vec![b'x'; MAX_LINE + 10], &emit);
        lines.push(b"\n", &emit);
        lines.finish(&emit);
        assert_eq!(*got.borrow(), [MAX_LINE, 10]);
    }
}
