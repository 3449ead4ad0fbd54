//! Build output: `[n/N] INSTRUCTION` lines, `CACHED` on hits, RUN output streamed with the
//! step prefix, and the total time. Everything goes to stderr (stdout carries only the image
//! ID), one plain line per event, which reads the same in a terminal and in CI logs.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::OutputMode;

pub struct Printer {
    pub mode: OutputMode,
    pub total: usize,
    pub n: usize,
    start: Instant,
}

impl Printer {
    pub fn new(mode: OutputMode, total: usize) -> Printer {
        Printer {
            mode,
            total,
            n: 0,
            start: Instant::now(),
        }
    }

    pub fn quiet(&self) -> bool {
        self.mode == OutputMode::Quiet
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
        let tag = if cached { " CACHED" } else { "" };
        eprintln!("{}{tag} {first}", self.prefix());
    }

    pub fn line(&self, text: &str) {
        if !self.quiet() {
            eprintln!("{text}");
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

/// While alive, the process's stdout and stderr (which the sandbox's container inherits) go
/// into a pipe whose lines are written to the original stderr with a prefix; stdin reads
/// /dev/null. Dropping it restores the descriptors and flushes the last lines.
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
    pub fn start(prefix: String, discard: bool) -> std::io::Result<Capture> {
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
        let reader = std::thread::spawn(move || copy_lines(r, out, prefix, discard));
        Ok(Capture {
            saved,
            reader: Some(reader),
        })
    }
}

fn copy_lines(r: OwnedFd, mut out: std::fs::File, prefix: String, discard: bool) {
    let r = BufReader::new(std::fs::File::from(r));
    for line in r.split(b'\n') {
        let Ok(line) = line else { break };
        if discard {
            continue;
        }
        let mut buf = Vec::with_capacity(line.len() + 16);
        buf.extend_from_slice(prefix.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(&line);
        buf.push(b'\n');
        let _ = out.write_all(&buf);
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
