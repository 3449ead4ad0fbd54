//! `box cp`: files between a container and the host, both ways, or as a tar stream.
//!
//! Two processes, one per side, joined by a pipe that carries a tar stream and a socket that
//! carries a few messages ([`side::Msg`]). The host side runs with the caller's own
//! credentials and touches only host paths; the container side is a forked child inside the
//! container's user namespace that touches only the container's files, through a descriptor
//! of its root ([`side`]). Neither ever follows a path of the other, so the container can
//! redirect nothing to the host by planting or swapping symlinks (CVE-2018-15664), and the
//! stream that crosses is always extracted by [`crate::layer::extract`], which refuses `..`,
//! absolute names and entries through links planted by the same stream.
//!
//! - In (`box cp SRC|- CONTAINER:DEST`): the child resolves DEST, decides where the stream
//!   goes ([`place`]) and tells the host side the name of the stream's top entry; the host
//!   side walks SRC into the pipe (or passes stdin's tar as it is); the child extracts it as
//!   the container's root, keeping the stream's owners with `-a`, else owned by container
//!   root, as docker does.
//! - Out (`box cp CONTAINER:SRC DEST|-`): the child resolves SRC and reports what it is; the
//!   host side decides where it goes; the child walks it into the pipe, and the host side
//!   extracts it as the caller (owners are the caller's, setuid/setgid bits dropped: a
//!   container must not hand root a setuid binary), or writes the tar to stdout.
//!
//! A container that is not running is copied from a detached overlay of its image's layers
//! and, where it keeps one, its writable layer ([`stopped`]), with the same two sides.

mod place;
mod side;
mod stopped;
mod walk;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use thiserror::Error;

use super::State;
use crate::layer::extract::{ExtractMode, ExtractOptions, Ownership, extract_at};
use crate::layer::tarwriter::TarWriter;
use crate::layer::{Compression, ExtractError};
use crate::store::Store;
pub use place::{DestState, Placement, SrcInfo, place, spec};
use side::{Ctl, Msg};

#[derive(Debug, Error)]
pub enum CpError {
    #[error("prepare the copy: {0}")]
    Setup(String),
    #[error("{op}: {cause}")]
    Io {
        op: &'static str,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Place(String),
    #[error("{op} {}: {cause}", path.display())]
    Host {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("container {id}: {msg}")]
    InContainer { id: String, msg: String },
    #[error("copy out of container {id}: {cause}")]
    Extract { id: String, cause: ExtractError },
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
}

pub type Result<T> = std::result::Result<T, CpError>;

/// `docker cp`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpOptions {
    /// `-a`: keep uid/gid of what is copied in.
    pub archive: bool,
    /// `-L`: follow a symlink that is the source itself.
    pub follow_link: bool,
}

/// The host end of a copy.
#[derive(Debug, Clone)]
pub enum HostEnd {
    Path(PathBuf),
    /// `-`: a tar stream on stdin (in) or stdout (out).
    Stream,
}

fn host_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CpError {
    let path = path.to_path_buf();
    move |cause| CpError::Host { op, path, cause }
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> CpError {
    move |cause| CpError::Sys { op, cause }
}

/// Whose files a copy works on.
enum Target {
    /// A running container's pid 1 (or its command, see `join_target`).
    Running(i32),
    Stopped(stopped::View),
}

fn target(store: &Store, st: &State, writing: bool) -> Result<Target> {
    if st.is_running()
        && let Some(pid) = super::started::init_when_started(st)
    {
        return Ok(Target::Running(crate::run::exec::join_target(pid)));
    }
    Ok(Target::Stopped(stopped::locate(store, st, writing)?))
}

/// In the child: take the container's ids and get its root.
fn enter(t: &Target, ctl: &mut Ctl) -> std::result::Result<OwnedFd, String> {
    match t {
        Target::Running(pid) => side::join(*pid),
        Target::Stopped(v) => stopped::enter(v, ctl),
    }
}

/// The child's next message, serving its request for id maps on the way.
fn recv(ctl: &mut Ctl, child: nix::unistd::Pid, t: &Target) -> Option<Msg> {
    loop {
        match ctl.recv() {
            Some(Msg::MapMe) => {
                if let Target::Stopped(stopped::View {
                    root_map: Some(m), ..
                }) = t
                {
                    match stopped::write_maps(child, *m) {
                        Ok(()) => ctl.send(&Msg::Mapped),
                        Err(e) => ctl.send(&Msg::Fail(format!("write id maps: {e}"))),
                    }
                } else {
                    ctl.send(&Msg::Fail("no id maps to write".into()));
                }
            }
            m => return m,
        }
    }
}

fn done(t: &Target) {
    if let Target::Stopped(v) = t {
        stopped::cleanup(v);
    }
}

/// The pipe and control socket between the sides; the caller keeps its ends.
struct Channels {
    data_r: OwnedFd,
    data_w: OwnedFd,
    ctl_host: UnixStream,
    ctl_child: UnixStream,
}

fn channels() -> Result<Channels> {
    // Before anything looks at the container: its processes must not reach ours.
    crate::run::exec::harden().map_err(|e| CpError::Setup(e.to_string()))?;
    let (data_r, data_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (ctl_host, ctl_child) = UnixStream::pair().map_err(|e| CpError::Io {
        op: "socketpair",
        cause: e,
    })?;
    Ok(Channels {
        data_r,
        data_w,
        ctl_host,
        ctl_child,
    })
}

/// Wait for the child; its last message says how it ended.
fn finish(id: &str, ctl: &mut Ctl, child: nix::unistd::Pid, t: &Target) -> Result<()> {
    let last = recv(ctl, child, t);
    let _ = nix::sys::wait::waitpid(child, None);
    match last {
        Some(Msg::Done) => Ok(()),
        Some(Msg::Fail(msg)) => Err(CpError::InContainer {
            id: id.to_string(),
            msg,
        }),
        _ => Err(CpError::InContainer {
            id: id.to_string(),
            msg: "the copy ended without a result".into(),
        }),
    }
}

/// Open `path` inside `root` (RESOLVE_IN_ROOT) as a directory to extract into.
fn open_dir_in(root: BorrowedFd, path: &str) -> std::result::Result<OwnedFd, String> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(root, rel, how).map_err(|e| match e {
        nix::Error::ENOENT => format!("no such directory: {path}"),
        nix::Error::ENOTDIR => format!("not a directory: {path}"),
        e => format!("open {path}: {e}"),
    })
}

/// The parent directory of `p` ("/" and "." stay themselves).
fn parent_of(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match Path::new(t).parent() {
        Some(d) if d.as_os_str().is_empty() => ".".into(),
        Some(d) => d.to_string_lossy().into_owned(),
        None => if p.starts_with('/') { "/" } else { "." }.into(),
    }
}

/// The container side of a copy in: resolve DEST, tell the host side where the stream
/// goes, extract it.
fn child_in(
    t: &Target,
    src: Option<&SrcInfo>,
    dest: &str,
    o: CpOptions,
    ctl: &mut Ctl,
    data: OwnedFd,
) -> std::result::Result<(), String> {
    let root = enter(t, ctl)?;
    let d = spec(dest);
    let state = match walk::open_start(root.as_fd(), Path::new(&d.path), true, true) {
        Ok(s) if s.is_dir() => DestState::Dir,
        Ok(_) => DestState::File,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => DestState::Missing,
        Err(e) => return Err(format!("{dest}: {e}")),
    };
    let p = place(src, state, dest)?;
    let dir = if p.into_dest {
        open_dir_in(root.as_fd(), &d.path)?
    } else {
        open_dir_in(root.as_fd(), &parent_of(&d.path))?
    };
    ctl.send(&Msg::Place(p));
    let opts = ExtractOptions {
        mode: ExtractMode::Plain,
        ownership: if o.archive {
            Ownership::Preserve
        } else {
            Ownership::Ignore
        },
        max_id: side::mapped_ids(),
        workers: Some(0),
        ..ExtractOptions::default()
    };
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::from(data));
    // A stream from stdin may be compressed, as docker accepts it; boxkit's own is plain.
    let compression = if src.is_none() {
        sniff(&mut input)
    } else {
        Compression::None
    };
    extract_at(input, compression, dir.as_fd(), &opts)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// gzip or zstd by their magic numbers, else a plain tar.
fn sniff(r: &mut impl std::io::BufRead) -> Compression {
    match r.fill_buf() {
        Ok([0x1f, 0x8b, ..]) => Compression::Gzip,
        Ok([0x28, 0xb5, 0x2f, 0xfd, ..]) => Compression::Zstd,
        _ => Compression::None,
    }
}

/// `box cp SRC|- CONTAINER:DEST`.
pub fn copy_in(store: &Store, st: &State, from: &HostEnd, dest: &str, o: CpOptions) -> Result<()> {
    let t = target(store, st, true)?;
    let r = copy_in_to(&t, st, from, dest, o);
    done(&t);
    r
}

fn copy_in_to(t: &Target, st: &State, from: &HostEnd, dest: &str, o: CpOptions) -> Result<()> {
    // The host source first: a missing one fails before the container is touched.
    let host = match from {
        HostEnd::Stream => None,
        HostEnd::Path(p) => {
            let s = spec(&p.to_string_lossy());
            let cwd = nix::fcntl::AT_FDCWD;
            let start = walk::open_start(cwd, Path::new(&s.path), false, o.follow_link)
                .map_err(host_err("copy", p))?;
            if s.slash && !start.is_dir() {
                return Err(CpError::Place(format!("{}: not a directory", p.display())));
            }
            let info = SrcInfo {
                dir: start.is_dir(),
                base: s.base.clone(),
                contents: s.contents,
            };
            Some((start, info))
        }
    };
    let ch = channels()?;
    let info = host.as_ref().map(|(_, i)| i.clone());
    let Channels {
        data_r,
        data_w,
        ctl_host,
        ctl_child,
    } = ch;
    let parents = [data_w.as_raw_fd(), ctl_host.as_raw_fd()];
    let child = side::fork_child(ctl_child, &parents, move |ctl| {
        child_in(t, info.as_ref(), dest, o, ctl, data_r)
    })
    .map_err(sys("fork"))?;
    let mut ctl = Ctl::new(ctl_host).map_err(|e| CpError::Io {
        op: "socket",
        cause: e,
    })?;
    let placement = match recv(&mut ctl, child, t) {
        Some(Msg::Place(p)) => p,
        Some(Msg::Fail(msg)) => {
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(CpError::InContainer {
                id: st.name.clone(),
                msg,
            });
        }
        _ => {
            drop(data_w);
            return finish(&st.name, &mut ctl, child, t);
        }
    };
    let mut out = std::fs::File::from(data_w);
    let produced = match host {
        None => std::io::copy(&mut std::io::stdin().lock(), &mut out).map(drop),
        Some((start, _)) => {
            let mut tw = TarWriter::new(&mut out, None);
            let mut w = walk::Walker {
                out: &mut tw,
                opts: walk::WalkOptions {
                    ids: o.archive,
                    clear_setid: false,
                },
            };
            w.start(&start, placement.name.as_bytes())
                .and_then(|()| tw.finish().map(drop))
        }
    };
    let _ = out.flush();
    drop(out);
    let r = finish(&st.name, &mut ctl, child, t);
    // Whichever side failed first explains it; the other one only saw the stream break.
    match (r, produced) {
        (_, Err(cause)) if cause.kind() != std::io::ErrorKind::BrokenPipe => Err(CpError::Host {
            op: "read",
            path: match from {
                HostEnd::Path(p) => p.clone(),
                HostEnd::Stream => PathBuf::from("-"),
            },
            cause,
        }),
        (Err(e), _) => Err(e),
        (Ok(()), Err(cause)) => Err(CpError::Host {
            op: "write to the container",
            path: PathBuf::from(dest),
            cause,
        }),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The container side of a copy out: resolve SRC, report it, walk it into the pipe.
fn child_out(
    t: &Target,
    src: &str,
    o: CpOptions,
    for_host: bool,
    ctl: &mut Ctl,
    data: OwnedFd,
) -> std::result::Result<(), String> {
    let root = enter(t, ctl)?;
    let s = spec(src);
    let start = walk::open_start(root.as_fd(), Path::new(&s.path), true, o.follow_link).map_err(
        |e| match e.raw_os_error() {
            Some(libc::ENOENT) => format!("no such file or directory: {src}"),
            _ => format!("{src}: {e}"),
        },
    )?;
    if s.slash && !start.is_dir() {
        return Err(format!("{src}: not a directory"));
    }
    ctl.send(&Msg::Src(SrcInfo {
        dir: start.is_dir(),
        base: s.base.clone(),
        contents: s.contents,
    }));
    let name = match ctl.recv() {
        Some(Msg::Place(p)) => p.name,
        _ => return Err("the host side gave up".into()),
    };
    let mut out = std::fs::File::from(data);
    let mut tw = TarWriter::new(&mut out, None);
    let mut w = walk::Walker {
        out: &mut tw,
        opts: walk::WalkOptions {
            ids: true,
            clear_setid: for_host,
        },
    };
    w.start(&start, name.as_bytes())
        .and_then(|()| tw.finish().map(drop))
        .map_err(|e| format!("{src}: {e}"))
}

/// What DEST is on the host (followed as the user's own path).
fn host_dest(p: &Path) -> Result<DestState> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Ok(DestState::Dir),
        Ok(_) => Ok(DestState::File),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DestState::Missing),
        Err(e) => Err(CpError::Host {
            op: "stat",
            path: p.to_path_buf(),
            cause: e,
        }),
    }
}

/// The host side's consumer of a copy out.
fn consume_out(to: &HostEnd, p: &Placement, data: OwnedFd, id: &str) -> Result<()> {
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::from(data));
    match to {
        HostEnd::Stream => {
            let mut input = input;
            let mut stdout = std::io::stdout().lock();
            std::io::copy(&mut input, &mut stdout)
                .and_then(|_| stdout.flush())
                .map_err(host_err("write", Path::new("-")))
        }
        HostEnd::Path(dest) => {
            let s = spec(&dest.to_string_lossy());
            let dir_path = if p.into_dest {
                s.path.clone()
            } else {
                parent_of(&s.path)
            };
            let dir = std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&dir_path)
                .map_err(host_err("open destination directory", Path::new(&dir_path)))?;
            let opts = ExtractOptions {
                mode: ExtractMode::Plain,
                ownership: Ownership::Ignore,
                max_id: u32::MAX,
                workers: Some(0),
                ..ExtractOptions::default()
            };
            extract_at(input, Compression::None, dir.as_fd(), &opts)
                .map(drop)
                .map_err(|cause| CpError::Extract {
                    id: id.to_string(),
                    cause,
                })
        }
    }
}

/// `box cp CONTAINER:SRC DEST|-`.
pub fn copy_out(store: &Store, st: &State, src: &str, to: &HostEnd, o: CpOptions) -> Result<()> {
    let t = target(store, st, false)?;
    let r = copy_out_of(&t, st, src, to, o);
    done(&t);
    r
}

fn copy_out_of(t: &Target, st: &State, src: &str, to: &HostEnd, o: CpOptions) -> Result<()> {
    let dest_state = match to {
        HostEnd::Path(p) => Some(host_dest(p)?),
        HostEnd::Stream => None,
    };
    let Channels {
        data_r,
        data_w,
        ctl_host,
        ctl_child,
    } = channels()?;
    let for_host = matches!(to, HostEnd::Path(_));
    let parents = [data_r.as_raw_fd(), ctl_host.as_raw_fd()];
    // data_w moves into the closure: the parent's copy closes when the closure is dropped.
    let child = side::fork_child(ctl_child, &parents, move |ctl| {
        child_out(t, src, o, for_host, ctl, data_w)
    })
    .map_err(sys("fork"))?;
    let mut ctl = Ctl::new(ctl_host).map_err(|e| CpError::Io {
        op: "socket",
        cause: e,
    })?;
    let info = match recv(&mut ctl, child, t) {
        Some(Msg::Src(i)) => i,
        Some(Msg::Fail(msg)) => {
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(CpError::InContainer {
                id: st.name.clone(),
                msg,
            });
        }
        _ => return finish(&st.name, &mut ctl, child, t),
    };
    let placement = match (to, dest_state) {
        (HostEnd::Path(p), Some(ds)) => place(Some(&info), ds, &p.to_string_lossy()),
        _ => Ok(Placement {
            into_dest: true,
            name: if info.contents {
                ".".into()
            } else {
                info.base.clone()
            },
        }),
    };
    let placement = match placement {
        Ok(p) => p,
        Err(msg) => {
            ctl.send(&Msg::Fail(msg.clone()));
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(CpError::Place(msg));
        }
    };
    ctl.send(&Msg::Place(placement.clone()));
    let consumed = consume_out(to, &placement, data_r, &st.name);
    let r = finish(&st.name, &mut ctl, child, t);
    // Whichever side failed first explains it: the child's error, unless it only saw the
    // host side stop reading.
    match (r, consumed) {
        (Err(CpError::InContainer { msg, .. }), Err(c)) if msg.contains("Broken pipe") => Err(c),
        (Err(e), _) => Err(e),
        (Ok(()), c) => c,
    }
}
