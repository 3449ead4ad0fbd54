//! The stdin of a detached container run with `-i` (`boxrun -d -i`, `box create -i` then
//! `box start`), kept open with no daemon: a FIFO `containers/<id>/stdin`.
//!
//! The monitor makes it when it starts (whatever was at that path is unlinked first, never
//! followed), opens its read end, which every run of the container gets as fd 0, and also a
//! write end that it holds for its whole life: the container never reads EOF, neither between
//! two `box attach`es nor after one ends (docker's `-d -i`, whose stdin is not "stdin once").
//! `box attach` opens the FIFO for writing ([`open_for_attach`]) and copies its own stdin into
//! it. The FIFO is mode 0600 in the container's 0700 directory, owned as that directory is
//! (the user who runs boxkit; as root, the host id of the tool namespace's root): no other local user can open it, and the container only holds the read end (it
//! cannot reach the path). A container run without `-i` has no FIFO and reads /dev/null.
//!
//! Several attaches at once all write into the same pipe: the container reads their input
//! interleaved, a whole `write` (up to 4 KiB, PIPE_BUF) at a time, as with docker.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::{Mode, SFlag, fstat};

use super::{ContainerError, Containers, Result};

/// The FIFO's name in the container's directory.
pub const FIFO: &str = "stdin";

/// Where container `id`'s stdin FIFO lives.
pub fn path(c: &Containers, id: &str) -> PathBuf {
    c.dir(id).join(FIFO)
}

/// The FIFO as its monitor holds it (see the module doc); unlinked on drop.
#[derive(Debug)]
pub struct Held {
    reader: OwnedFd,
    /// Held, never written: while it is open the container reads no EOF.
    _writer: OwnedFd,
    path: PathBuf,
}

fn sys(op: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |cause| ContainerError::Io {
        op,
        path,
        cause: std::io::Error::from(cause),
    }
}

/// The owner of everything in container `id`'s directory (the directory's): the user who
/// runs boxkit, or as root the host id of the tool's namespace root.
fn state_owner(c: &Containers, id: &str) -> Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let d = c.dir(id);
    match std::fs::symlink_metadata(&d) {
        Ok(m) => Ok(m.uid()),
        Err(cause) => Err(ContainerError::Io {
            op: "stat",
            path: d,
            cause,
        }),
    }
}

/// Check that `fd` is a FIFO of `owner` with no access for anyone else.
fn check_fifo(fd: BorrowedFd<'_>, path: &Path, owner: u32) -> Result<nix::sys::stat::FileStat> {
    let st = fstat(fd).map_err(sys("stat", path))?;
    let is_fifo = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO;
    if !is_fifo || st.st_uid != owner || st.st_mode & 0o077 != 0 {
        return Err(ContainerError::NotStdinFifo {
            path: path.to_path_buf(),
        });
    }
    Ok(st)
}

fn set_blocking(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(sys("fcntl", path))?;
    let fl = OFlag::from_bits_truncate(fl) - OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(fl)).map_err(sys("fcntl", path))?;
    Ok(())
}

impl Held {
    /// Make the FIFO of container `id` afresh and open both its ends.
    pub fn create(c: &Containers, id: &str) -> Result<Held> {
        let p = path(c, id);
        let owner = state_owner(c, id)?;
        // A FIFO of an earlier monitor, or anything else found there: unlink never follows
        // a symlink, and mkfifo below fails rather than reuse a name made meanwhile.
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => {
                return Err(ContainerError::Io {
                    op: "remove old stdin pipe",
                    path: p,
                    cause,
                });
            }
        }
        nix::unistd::mkfifo(&p, Mode::S_IRUSR | Mode::S_IWUSR).map_err(sys("mkfifo", &p))?;
        let flags = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        // The read end first: opening it does not wait for a writer when non-blocking.
        let reader =
            open(&p, OFlag::O_RDONLY | flags, Mode::empty()).map_err(sys("open stdin pipe", &p))?;
        let r = check_fifo(reader.as_fd(), &p, owner)?;
        let writer =
            open(&p, OFlag::O_WRONLY | flags, Mode::empty()).map_err(sys("open stdin pipe", &p))?;
        let w = check_fifo(writer.as_fd(), &p, owner)?;
        if (r.st_dev, r.st_ino) != (w.st_dev, w.st_ino) {
            return Err(ContainerError::NotStdinFifo { path: p });
        }
        // The container reads it blocking, as any pipe on its stdin.
        set_blocking(reader.as_fd(), &p)?;
        Ok(Held {
            reader,
            _writer: writer,
            path: p,
        })
    }

    /// The read end, the container's fd 0.
    pub fn reader(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // No attach may open it once the monitor is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Open the stdin of running container `id` for writing (`box attach`). None when it has
/// none: run without `-i`, in the foreground, or its monitor is gone (no reader).
/// Anything at the path but this user's private FIFO is refused, a symlink included.
pub fn open_for_attach(c: &Containers, id: &str) -> Result<Option<File>> {
    let p = path(c, id);
    let owner = state_owner(c, id)?;
    let flags = OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match open(&p, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT | nix::Error::ENXIO) => return Ok(None),
        Err(nix::Error::ELOOP) => return Err(ContainerError::NotStdinFifo { path: p }),
        Err(e) => return Err(sys("open stdin pipe", &p)(e)),
    };
    check_fifo(fd.as_fd(), &p, owner)?;
    // Block when the container reads slower than we write, as a pipe does.
    set_blocking(fd.as_fd(), &p)?;
    Ok(Some(File::from(fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn containers() -> (tempfile::TempDir, Containers, String) {
        let d = tempfile::tempdir().unwrap();
        let c = Containers::new(d.path());
        let id = "c".repeat(64);
        std::fs::create_dir(c.dir(&id)).unwrap();
        (d, c, id)
    }

    #[test]
    fn what_attach_writes_reaches_the_reader_and_no_eof_comes_after_it_closes() {
        let (_d, c, id) = containers();
        let held = Held::create(&c, &id).unwrap();
        let mut w = open_for_attach(&c, &id).unwrap().expect("a writer");
        w.write_all(b"hello\n").unwrap();
        drop(w);
        let mut r = File::from(held.reader().try_clone_to_owned().unwrap());
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"hello\n");
        // The monitor's writer keeps the pipe open: a read would wait, not return 0.
        let fl = fcntl(r.as_fd(), FcntlArg::F_GETFL).unwrap();
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        fcntl(r.as_fd(), FcntlArg::F_SETFL(fl)).unwrap();
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let m = std::fs::symlink_metadata(path(&c, &id)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o600
        );
        drop(held);
        assert!(open_for_attach(&c, &id).unwrap().is_none());
    }

    #[test]
    fn a_symlink_at_the_path_is_replaced_by_the_monitor_and_refused_by_attach() {
        let (d, c, id) = containers();
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, path(&c, &id)).unwrap();
        assert!(matches!(
            open_for_attach(&c, &id),
            Err(ContainerError::NotStdinFifo { .. })
        ));
        let held = Held::create(&c, &id).unwrap();
        let m = std::fs::symlink_metadata(path(&c, &id)).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        drop(held);
        // A plain file there is not a stdin either.
        std::fs::write(path(&c, &id), "x").unwrap();
        assert!(open_for_attach(&c, &id).is_err());
    }

    #[test]
    fn no_fifo_means_no_stdin() {
        let (_d, c, id) = containers();
        assert!(open_for_attach(&c, &id).unwrap().is_none());
    }
}
