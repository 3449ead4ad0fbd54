//! Regular files created by worker threads while the reading thread goes on with the stream.
//!
//! Creating an inode is most of an unpack's cost (on ext4 a few hundred µs of system time
//! each), and it scales across cores, while reading and decompressing the stream does not. So
//! the reading thread keeps everything that orders the tree — names cleaned and checked,
//! directories, symlinks, hardlinks, whiteouts, the set of planted symlinks — and hands each
//! small regular file (its parent directory's fd, name, metadata and bytes) to a pool. A
//! worker creates it exactly as the reading thread would ([`write_file`]).
//!
//! The result equals a serial extraction because no other entry touches a path while a job
//! for it may still run: every path handed out is remembered ([`Extractor::pending`], with
//! its ancestors in [`Extractor::pending_dirs`]), and an entry on, below or above such a path,
//! a hardlink to one, any entry that replaces something already there, and every whiteout
//! first wait for the pool to drain. Directories are dated after the pool finished. The
//! bytes queued are capped ([`MAX_QUEUED`]); larger files are written by the reading thread.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::fcntl::OFlag;

use super::fsat::{self, Obj, lstat_at, remove_at};
use super::meta::{self, Meta};
use super::{ExtractError, ExtractOptions, Extractor, Notes, Result};

/// Workers at most, whatever the CPU count: beyond this the kernel's own locks decide.
pub const MAX_WORKERS: usize = 4;
/// A file larger than this is written by the reading thread, so it is never held in memory.
pub(super) const MAX_JOB: u64 = 256 << 10;
/// Bytes of file content queued or being written at once.
const MAX_QUEUED: usize = 4 << 20;
/// Environment override of the worker count (0: no pool).
pub const WORKERS_VAR: &str = "BOX_UNPACK_WORKERS";

/// The worker count for `requested` (see [`ExtractOptions::workers`]). None by default: where
/// measured (2 shared CPUs, ext4), workers only added contention — files created in one
/// directory compete for one ext4 inode group, and the CPUs had no idle time to give
/// (docs/internals.md, "Unpack: a worker pool"). `BOX_UNPACK_WORKERS=n` turns the pool on.
pub(super) fn workers(requested: Option<usize>) -> usize {
    let n = requested.unwrap_or_else(|| {
        std::env::var(WORKERS_VAR)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    });
    n.min(MAX_WORKERS)
}

/// One regular file to create: in the directory `pfd`, as `name`, with `data` as content.
pub(super) struct FileJob {
    pub(super) pfd: OwnedFd,
    pub(super) name: CString,
    pub(super) name_s: String,
    pub(super) meta: Meta,
    pub(super) data: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<FileJob>,
    /// Jobs queued or running.
    in_flight: usize,
    /// Bytes of content queued or being written.
    bytes: usize,
    closed: bool,
    /// The extraction gave up: queued jobs are dropped unrun.
    cancelled: bool,
    /// The first failure; later jobs are dropped unrun.
    error: Option<ExtractError>,
    notes: Notes,
}

struct Shared {
    q: Mutex<Queue>,
    /// Signalled when a job is queued or the pool closes.
    work: Condvar,
    /// Signalled when a job is done.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A worker never panics while holding the lock (nothing in it can), but a poisoned
        // queue is still a consistent one.
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Start `n` workers creating files with `opts`; None when not even one thread could be
    /// started (the reading thread then writes every file itself).
    pub(super) fn new(n: usize, opts: &ExtractOptions) -> Option<Pool> {
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let threads: Vec<_> = (0..n)
            .map_while(|i| {
                let (shared, opts) = (shared.clone(), opts.clone());
                std::thread::Builder::new()
                    .name(format!("unpack-{i}"))
                    .spawn(move || work(&shared, &opts))
                    .ok()
            })
            .collect();
        (!threads.is_empty()).then_some(Pool { shared, threads })
    }

    /// Queue `job`, waiting while too many bytes are queued; fails with the first error a
    /// worker hit.
    pub(super) fn submit(&self, job: FileJob) -> Result<()> {
        let len = job.data.len();
        let mut q = self.shared.lock();
        while q.error.is_none() && q.bytes > 0 && q.bytes + len > MAX_QUEUED {
            q = self.shared.done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = q.error.take() {
            return Err(e);
        }
        q.in_flight += 1;
        q.bytes += len;
        q.jobs.push_back(job);
        drop(q);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Wait until every queued job is done; fails with the first error a worker hit.
    pub(super) fn drain(&self) -> Result<()> {
        let mut q = self.shared.lock();
        while q.error.is_none() && q.in_flight > 0 {
            q = self.shared.done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        match q.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drain, stop the workers, and return what they noted.
    pub(super) fn finish(mut self) -> Result<Notes> {
        self.drain()?;
        self.stop();
        Ok(std::mem::take(&mut self.shared.lock().notes))
    }

    fn stop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    /// On an error the extraction returns early: the workers stop before its caller removes
    /// or reuses the tree (queued jobs are dropped unrun once an error is recorded).
    fn drop(&mut self) {
        self.shared.lock().cancelled = true;
        self.stop();
    }
}

fn work(shared: &Shared, opts: &ExtractOptions) {
    let mut notes = Notes::default();
    loop {
        let job = {
            let mut q = shared.lock();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break Some(j);
                }
                if q.closed {
                    break None;
                }
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(job) = job else { break };
        let len = job.data.len();
        let skip = {
            let q = shared.lock();
            q.error.is_some() || q.cancelled
        };
        let r = if skip {
            Ok(())
        } else {
            run(&job, opts, &mut notes)
        };
        // The descriptors and the buffer go before the job counts as done.
        drop(job);
        let mut q = shared.lock();
        q.in_flight -= 1;
        q.bytes -= len;
        if let Err(e) = r
            && q.error.is_none()
        {
            q.error = Some(e);
        }
        drop(q);
        shared.done.notify_all();
    }
    let mut q = shared.lock();
    q.notes.warnings.append(&mut notes.warnings);
    q.notes.unowned.append(&mut notes.unowned);
}

fn run(job: &FileJob, opts: &ExtractOptions, notes: &mut Notes) -> Result<()> {
    write_file(
        job.pfd.as_fd(),
        &job.name,
        &job.name_s,
        &job.data,
        &job.meta,
        opts,
        notes,
    )
}

/// Create the regular file `name` in `pfd` holding `data`, replacing whatever is there (never
/// writing through it), and apply its metadata.
pub(super) fn write_file(
    pfd: BorrowedFd,
    name: &CString,
    name_s: &str,
    data: &[u8],
    m: &Meta,
    opts: &ExtractOptions,
    notes: &mut Notes,
) -> Result<()> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
    let fd = match fsat::open_at(pfd, name, flags, 0o600) {
        Err(e) if fsat::errno(&e) == libc::EEXIST => {
            if lstat_at(pfd, name)
                .map_err(|e| Extractor::io(name_s, "lstat existing entry", e))?
                .is_some()
            {
                remove_at(pfd, name)
                    .map_err(|e| Extractor::io(name_s, "replace existing entry", e))?;
            }
            fsat::open_at(pfd, name, flags, 0o600)
        }
        r => r,
    }
    .map_err(|e| Extractor::io(name_s, "create file", e))?;
    let mut f = File::from(fd);
    if !data.is_empty() {
        f.write_all(data)
            .map_err(|e| Extractor::io(name_s, "write file", e))?;
    }
    meta::apply(opts, notes, name_s, &Obj::Fd(f.as_fd()), m, true)
}

impl Extractor<'_> {
    /// Wait for every file handed to the pool; afterwards no path is pending.
    pub(super) fn drain(&mut self) -> Result<()> {
        if let Some(pool) = &self.pool
            && !self.pending.is_empty()
        {
            pool.drain()?;
        }
        self.pending.clear();
        self.pending_dirs.clear();
        Ok(())
    }

    /// Drain first if `path`, an ancestor of it, or anything below it is pending.
    pub(super) fn guard(&mut self, path: &[u8]) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ancestor = path
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && self.pending.contains(&path[..i]));
        if ancestor || self.pending.contains(path) || self.pending_dirs.contains(path) {
            self.drain()?;
        }
        Ok(())
    }

    /// Hand the file `path` to the pool (the caller checked [`Extractor::guard`]).
    pub(super) fn dispatch(&mut self, path: &[u8], job: FileJob) -> Result<()> {
        let Some(pool) = &self.pool else {
            return write_file(
                job.pfd.as_fd(),
                &job.name,
                &job.name_s,
                &job.data,
                &job.meta,
                self.opts,
                &mut self.notes,
            );
        };
        pool.submit(job)?;
        self.pending.insert(path.to_vec());
        for (i, &b) in path.iter().enumerate() {
            if b == b'/' && !self.pending_dirs.contains(&path[..i]) {
                self.pending_dirs.insert(path[..i].to_vec());
            }
        }
        Ok(())
    }
}
