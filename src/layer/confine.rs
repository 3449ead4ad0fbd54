//! Extraction confined to a user namespace that maps exactly the container range.
//!
//! Everything boxkit stores as image content — unpacked layers, COPY/ADD output, a volume
//! filled from the image, a cache mount's directory — is written by [`super::extract`], and
//! the ids an archive asks for become owners on disk. As root, the tool's own user namespace
//! maps more than the container range: container ids 0…65535 go to root's subordinate range,
//! and every other host id is mapped above them (namespace uid 65536 is host root) so that
//! the tool can read a root-owned build context or write the store. A file created there with
//! uid 65536 and mode 04755 would be a setuid-root binary on the host.
//!
//! So, as root, extraction never runs in the tool's process. [`Confinement::Nested`] starts a
//! short-lived copy of the boxkit binary (re-executed, so it is single-threaded and may
//! unshare), which makes a new user namespace; the tool writes its maps — this namespace's
//! ids 0…n-1 one to one, nothing else — and hands over two descriptors: the archive and the
//! target directory. The worker extracts relative to that directory (it could not even walk
//! the 0700 store by path) and replies with the report or the error. Inside it any id outside
//! the container range is refused twice: by the extractor's id check, with an error naming the
//! entry, and by the kernel, which has no host id to give it.
//!
//! Rootless, the tool's namespace already maps exactly the container range (the caller's uid
//! and its subordinate range), and with `--userns=host` ids are host ids by the user's choice;
//! both extract in process ([`Confinement::InProcess`]).

use std::fs::File;
use std::io::{self, BufReader, IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

use super::Compression;
use super::extract::{ExtractError, ExtractOptions, ExtractReport, extract_at};

/// `argv[1]` of a worker: the binary serves one extraction instead of being a command.
const WORKER_ARG: &str = "--boxkit-confined-extract";
/// The descriptor a worker finds its socket on.
const WORKER_FD: RawFd = 3;

/// Where an extraction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// In this process: its user namespace maps exactly the container range (rootless), or
    /// ids are host ids on purpose (`--userns=host`, tests).
    InProcess,
    /// In a child process in a new user namespace that maps ids `0..ids` of this one, one to
    /// one, and nothing else (root's tool namespace).
    Nested { ids: u32 },
}

/// How image content may be created by this process: the owners it may give, and where the
/// extraction runs. Decided once, when the tool's user namespace is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentPolicy {
    pub ownership: super::Ownership,
    /// The size of the container's id range: owners must be below it.
    pub max_id: u32,
    pub confinement: Confinement,
    /// Uncompressed bytes one stream may hold (`BOX_MAX_LAYER_SIZE`).
    pub max_bytes: Option<u64>,
}

impl ContentPolicy {
    /// Extraction options for this policy in `mode`.
    pub fn options(&self, mode: super::ExtractMode) -> ExtractOptions {
        ExtractOptions {
            mode,
            ownership: self.ownership,
            max_id: self.max_id,
            max_bytes: self.max_bytes,
            ..ExtractOptions::default()
        }
    }

    /// Whether `uid`/`gid` may own image content; an id outside the range is an error that
    /// names `what`, before anything is created.
    pub fn check_ids(&self, what: &str, uid: u32, gid: u32) -> Result<(), ExtractError> {
        if self.ownership.keeps_owners() && (uid >= self.max_id || gid >= self.max_id) {
            return Err(ExtractError::IdOutOfRange {
                entry: what.to_string(),
                uid: uid.into(),
                gid: gid.into(),
                max_id: self.max_id,
            });
        }
        Ok(())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Request {
    compression: Compression,
    opts: ExtractOptions,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Reply {
    Ok {
        diff_id: String,
        entries: u64,
        warnings: Vec<String>,
    },
    Err(String),
}

fn confined(what: impl std::fmt::Display) -> ExtractError {
    ExtractError::Confined(format!("confined extraction: {what}"))
}

/// Extract the archive `input` into the open directory `dir`, confined as `how` says.
pub fn extract(
    input: File,
    compression: Compression,
    dir: BorrowedFd,
    opts: &ExtractOptions,
    how: Confinement,
) -> Result<ExtractReport, ExtractError> {
    match how {
        Confinement::InProcess => extract_at(
            BufReader::with_capacity(1 << 20, input),
            compression,
            dir,
            opts,
        ),
        Confinement::Nested { ids } => {
            let w = Worker::start(ids)?;
            w.request(input.as_fd(), dir, compression, opts)?;
            drop(input);
            w.finish()
        }
    }
}

/// A pipe's write end that remembers whether the reader went away, so that the reader's
/// error, not "broken pipe", is reported.
pub struct StreamWriter {
    pipe: File,
    broken: bool,
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pipe.write(buf).inspect_err(|_| self.broken = true)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Extract the uncompressed tar stream that `produce` writes into `dir`, confined as `how`
/// says; `produce` runs on the calling thread while the extraction consumes the stream.
/// When both fail the extraction's error is the one reported if the producer only saw the
/// stream break; otherwise the producer's own error is.
pub fn extract_stream<E: From<ExtractError>>(
    dir: BorrowedFd,
    opts: &ExtractOptions,
    how: Confinement,
    produce: impl FnOnce(&mut StreamWriter) -> Result<(), E>,
) -> Result<ExtractReport, E> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| confined(format!("pipe: {e}")))?;
    let mut writer = StreamWriter {
        pipe: File::from(w),
        broken: false,
    };
    let finish = |produced: Result<(), E>, broken: bool, extracted: Result<ExtractReport, _>| match (
        produced, extracted,
    ) {
        (Err(e), _) if !broken => Err(e),
        (_, Err(x)) => Err(E::from(x)),
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(report)) => Ok(report),
    };
    match how {
        Confinement::InProcess => std::thread::scope(|s| {
            let reader = File::from(r);
            let consumer = s.spawn(move || {
                let mut reader = BufReader::with_capacity(1 << 20, reader);
                let report = extract_at(&mut reader, Compression::None, dir, opts);
                // Drain so the producer never blocks on a full pipe after an early error.
                let _ = io::copy(&mut reader, &mut io::sink());
                report
            });
            let produced = produce(&mut writer);
            let broken = writer.broken;
            drop(writer);
            let extracted = consumer
                .join()
                .unwrap_or_else(|_| Err(confined("the extracting thread panicked")));
            finish(produced, broken, extracted)
        }),
        Confinement::Nested { ids } => {
            let worker = Worker::start(ids)?;
            worker.request(r.as_fd(), dir, Compression::None, opts)?;
            drop(r);
            let produced = produce(&mut writer);
            let broken = writer.broken;
            drop(writer);
            finish(produced, broken, worker.finish())
        }
    }
}

/// A started worker whose user namespace has its maps.
struct Worker {
    child: std::process::Child,
    sock: OwnedFd,
    reaped: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Worker {
    fn start(ids: u32) -> Result<Worker, ExtractError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| confined(format!("socketpair: {e}")))?;
        let theirs_raw = theirs.as_raw_fd();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("box-extract")
            .arg(WORKER_ARG)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: between fork and exec the closure only calls dup2 and fcntl, which are
        // async-signal-safe, on descriptors that stay open in the child.
        unsafe {
            cmd.pre_exec(move || {
                if theirs_raw == WORKER_FD {
                    // dup2 onto itself would keep FD_CLOEXEC.
                    nix::fcntl::fcntl(
                        BorrowedFd::borrow_raw(WORKER_FD),
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )?;
                } else if libc::dup2(theirs_raw, WORKER_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| confined(format!("start {}: {e}", "/proc/self/exe")))?;
        drop(theirs);
        let w = Worker {
            child,
            sock: ours,
            reaped: false,
        };
        // The worker has unshared its user namespace once it says so; then its maps are ours
        // to write (we hold CAP_SETUID and CAP_SETGID in the parent namespace).
        let mut b = [0u8; 1];
        match nix::sys::socket::recv(w.sock.as_raw_fd(), &mut b, MsgFlags::empty()) {
            Ok(1) if b[0] == b'u' => {}
            Ok(_) | Err(_) => return Err(w.died("it could not create its user namespace")),
        }
        let pid = w.child.id();
        let map = format!("0 0 {ids}\n");
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, &map).map_err(|e| confined(format!("write {path}: {e}")))?;
        }
        nix::sys::socket::send(w.sock.as_raw_fd(), b"g", MsgFlags::empty())
            .map_err(|e| confined(format!("release the worker: {e}")))?;
        Ok(w)
    }

    fn request(
        &self,
        input: BorrowedFd,
        dir: BorrowedFd,
        compression: Compression,
        opts: &ExtractOptions,
    ) -> Result<(), ExtractError> {
        let req = serde_json::to_vec(&Request {
            compression,
            opts: opts.clone(),
        })
        .map_err(|e| confined(e.to_string()))?;
        let fds = [input.as_raw_fd(), dir.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&req)],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| confined(format!("send the request: {e}")))?;
        Ok(())
    }

    fn finish(mut self) -> Result<ExtractReport, ExtractError> {
        let mut buf = vec![0u8; 1 << 20];
        let n =
            nix::sys::socket::recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap_or(0);
        let reply: Option<Reply> = serde_json::from_slice(&buf[..n]).ok();
        let status = self.child.wait();
        self.reaped = true;
        match reply {
            Some(Reply::Ok {
                diff_id,
                entries,
                warnings,
            }) => Ok(ExtractReport {
                diff_id: diff_id.parse().map_err(confined)?,
                entries,
                warnings,
            }),
            Some(Reply::Err(msg)) => Err(ExtractError::Confined(msg)),
            None => Err(confined(format!(
                "the extracting process ended without a reply ({})",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            ))),
        }
    }

    fn died(mut self, what: &str) -> ExtractError {
        let status = self.child.wait();
        self.reaped = true;
        confined(format!(
            "{what} ({})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ))
    }
}

/// If this process is a worker ([`WORKER_ARG`]), serve its one extraction and return the
/// code the worker must exit with (the CLI edge ends the process); else return `None` at
/// once. Every boxkit binary calls this first in `main`, while single-threaded.
pub fn serve_if_requested() -> Option<i32> {
    if std::env::args_os().nth(1).is_none_or(|a| a != WORKER_ARG) {
        return None;
    }
    // SAFETY: the spawning tool put our socket on WORKER_FD; nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(WORKER_FD) };
    let code = match serve(&sock) {
        Ok(()) => 0,
        Err(e) => {
            let reply = serde_json::to_vec(&Reply::Err(e)).unwrap_or_default();
            let _ = nix::sys::socket::send(sock.as_raw_fd(), &reply, MsgFlags::empty());
            1
        }
    };
    Some(code)
}

fn serve(sock: &OwnedFd) -> Result<(), String> {
    let fd = sock.as_raw_fd();
    // Die with the tool, and never gain privileges by exec.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("prctl(NO_NEW_PRIVS): {e}"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))?;
    nix::sys::socket::send(fd, b"u", MsgFlags::empty()).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    match nix::sys::socket::recv(fd, &mut b, MsgFlags::empty()) {
        Ok(1) if b[0] == b'g' => {}
        _ => return Err("the tool did not set up this namespace's id maps".into()),
    }
    // Supplementary groups inherited from the tool are unmapped here; keep none.
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;

    let mut buf = vec![0u8; 64 << 10];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| format!("receive the request: {e}"))?;
    let mut fds = vec![];
    for c in msg.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(v) = c {
            // SAFETY: descriptors just received with SCM_RIGHTS belong to this process alone.
            fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    let n = msg.bytes;
    let req: Request = serde_json::from_slice(&iov[0][..n]).map_err(|e| e.to_string())?;
    let [input, dir]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|_| "the request did not carry two descriptors".to_string())?;
    let report = extract(
        File::from(input),
        req.compression,
        dir.as_fd(),
        &req.opts,
        Confinement::InProcess,
    )
    .map_err(|e| e.to_string())?;
    let mut warnings = report.warnings;
    warnings.truncate(200);
    let reply = serde_json::to_vec(&Reply::Ok {
        diff_id: report.diff_id.to_string(),
        entries: report.entries,
        warnings,
    })
    .map_err(|e| e.to_string())?;
    nix::sys::socket::send(fd, &reply, MsgFlags::empty()).map_err(|e| e.to_string())?;
    Ok(())
}
