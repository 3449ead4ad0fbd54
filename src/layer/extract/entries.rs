//! Creating what an entry describes, one function per entry kind, each relative to its parent
//! directory's fd. Parents are opened with `openat2(RESOLVE_IN_ROOT)` ([`Extractor::open_dir`]),
//! hardlink targets with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; device nodes are never made.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::FileStat;
use tar::EntryType;

use super::fsat::{self, Obj, errno, is_dir, lstat_at, remove_at};
use super::meta::Meta;
use super::path::{clean, cstr, lossy, split_last};
use super::pool::{self, FileJob};
use super::{ExtractError, Extractor, Result};

/// Where a new entry goes: its parent directory, its name there, and what is there now.
struct Slot<'a> {
    pfd: BorrowedFd<'a>,
    name: &'a CStr,
    existing: Option<FileStat>,
}

impl Slot<'_> {
    /// Remove whatever is in the way (a file, or a whole directory tree).
    fn replace(&self, name_s: &str) -> Result<()> {
        if self.existing.is_some() {
            remove_at(self.pfd, self.name)
                .map_err(|e| Extractor::io(name_s, "replace existing entry", e))?;
        }
        Ok(())
    }
}

impl Extractor<'_> {
    /// Create the entry at `path` (cleaned, not a whiteout) with its metadata.
    pub(super) fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name_s: &str,
        path: &[u8],
        kind: EntryType,
    ) -> Result<()> {
        let meta = Self::meta(entry, name_s)?;
        if kind != EntryType::Link {
            self.check_ids(name_s, &meta)?;
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            // Never from an archive: a device node in the store or a volume is a way into
            // host hardware for anyone who can open it.
            self.devices.push(name_s.to_string());
            return Ok(());
        }
        // Nothing touches a path the pool may still be writing.
        self.guard(path)?;
        let (parent, name) = split_last(path);
        let n = cstr(name).map_err(|e| Self::io(name_s, "name", e))?;
        let pfd = self
            .open_dir(parent, true)
            .map_err(|e| Self::io(name_s, "create parent directories", e))?
            .ok_or_else(|| {
                Self::io(
                    name_s,
                    "open parent directory",
                    io::ErrorKind::NotFound.into(),
                )
            })?;
        self.planted.remove(path);
        if matches!(kind, EntryType::Regular | EntryType::Continuous)
            && self.pool.is_some()
            && entry.size() <= pool::MAX_JOB
        {
            let data = read_data(entry, name_s)?;
            let job = FileJob {
                pfd,
                name: n,
                name_s: name_s.to_string(),
                meta,
                data,
            };
            self.dispatch(path, job)?;
            self.written.insert(path.to_vec());
            return Ok(());
        }
        let at = Slot {
            pfd: pfd.as_fd(),
            name: &n,
            existing: lstat_at(pfd.as_fd(), &n)
                .map_err(|e| Self::io(name_s, "lstat existing entry", e))?,
        };
        // Whatever is replaced may hold files the pool is still writing.
        if at
            .existing
            .as_ref()
            .is_some_and(|st| kind != EntryType::Directory || !is_dir(st))
        {
            self.drain()?;
        }
        match kind {
            EntryType::Directory => self.create_dir(name_s, path, &at, &meta)?,
            EntryType::Regular | EntryType::Continuous => {
                self.create_file(entry, name_s, &at, &meta)?
            }
            EntryType::Symlink => self.create_symlink(entry, name_s, path, &at, &meta)?,
            EntryType::Link => self.hardlink(entry, name_s, at.pfd, at.name, at.existing)?,
            EntryType::Fifo => {
                at.replace(name_s)?;
                fsat::mkfifo_at(at.pfd, at.name, meta.mode & 0o777)
                    .map_err(|e| Self::io(name_s, "create fifo", e))?;
                self.apply(name_s, &Obj::At(at.pfd, at.name, false), &meta, true)?;
            }
            other => {
                return Err(ExtractError::Unsupported {
                    entry: name_s.to_string(),
                    kind: format!("{other:?}"),
                });
            }
        }
        self.written.insert(path.to_vec());
        Ok(())
    }

    /// A directory already there is kept (its content stays); its mtime is set at the end.
    fn create_dir(&mut self, name_s: &str, path: &[u8], at: &Slot, meta: &Meta) -> Result<()> {
        if !at.existing.as_ref().is_some_and(is_dir) {
            at.replace(name_s)?;
            fsat::mkdir_at(at.pfd, at.name, 0o700).map_err(|e| Self::io(name_s, "mkdir", e))?;
        }
        let fd = fsat::open_dir_at(at.pfd, at.name)
            .map_err(|e| Self::io(name_s, "open directory", e))?;
        self.apply(name_s, &Obj::Fd(fd.as_fd()), meta, false)?;
        self.dir_times.push((path.to_vec(), meta.mtime));
        Ok(())
    }

    /// A new file (never written through an existing one), with exactly the declared size.
    fn create_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name_s: &str,
        at: &Slot,
        meta: &Meta,
    ) -> Result<()> {
        at.replace(name_s)?;
        let fd = fsat::open_at(
            at.pfd,
            at.name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o600,
        )
        .map_err(|e| Self::io(name_s, "create file", e))?;
        let mut f = File::from(fd);
        let mut buf = std::mem::take(&mut self.buf);
        let expected = entry.size();
        let mut got = 0u64;
        loop {
            let k = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ExtractError::ReadEntry {
                        entry: name_s.to_string(),
                        source,
                    });
                }
            };
            f.write_all(&buf[..k])
                .map_err(|e| Self::io(name_s, "write file", e))?;
            got += k as u64;
        }
        self.buf = buf;
        // The tar reader ends a cut-off entry quietly; a short file is an error here.
        if got != expected {
            return Err(ExtractError::ReadEntry {
                entry: name_s.to_string(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended after {got} of {expected} bytes"),
                ),
            });
        }
        self.apply(name_s, &Obj::Fd(f.as_fd()), meta, true)
    }

    /// A symlink is stored as is and remembered: no later entry may be extracted through it.
    fn create_symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name_s: &str,
        path: &[u8],
        at: &Slot,
        meta: &Meta,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| Self::hostile(name_s, "symlink without a target"))?
            .into_owned();
        if target.is_empty() {
            return Err(Self::hostile(name_s, "symlink with an empty target"));
        }
        at.replace(name_s)?;
        let t = cstr(&target).map_err(|e| Self::io(name_s, "symlink target", e))?;
        fsat::symlink_at(&t, at.pfd, at.name).map_err(|e| Self::io(name_s, "create symlink", e))?;
        self.planted.insert(path.to_vec());
        self.apply(name_s, &Obj::At(at.pfd, at.name, true), meta, true)
    }

    /// A hardlink's target must be an earlier non-directory entry beneath the root, reached
    /// through no symlink at all.
    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name_s: &str,
        pfd: BorrowedFd,
        n: &CStr,
        existing: Option<FileStat>,
    ) -> Result<()> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| Self::hostile(name_s, "hardlink without a target"))?
            .into_owned();
        let shown = lossy(&raw);
        let target = clean(&raw).map_err(|r| {
            Self::hostile(
                name_s,
                format!("hardlink target {shown} is outside the layer root: {r}"),
            )
        })?;
        if target.is_empty() {
            return Err(Self::hostile(name_s, "hardlink to the layer root"));
        }
        self.check_planted(name_s, &target)?;
        // The target may be a file the pool is still writing.
        self.guard(&target)?;
        let (tparent, tname) = split_last(&target);
        let tpfd = self.open_link_target_dir(name_s, &shown, tparent)?;
        let tn = cstr(tname).map_err(|e| Self::io(name_s, "hardlink target", e))?;
        let tst = lstat_at(tpfd.as_fd(), &tn)
            .map_err(|e| Self::io(name_s, format!("lstat hardlink target {shown}"), e))?
            .ok_or_else(|| {
                Self::io(
                    name_s,
                    format!("hardlink target {shown}"),
                    io::Error::from_raw_os_error(libc::ENOENT),
                )
            })?;
        if is_dir(&tst) {
            return Err(Self::hostile(
                name_s,
                format!("hardlink target {shown} is a directory"),
            ));
        }
        if let Some(st) = existing {
            if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                return Ok(());
            }
            remove_at(pfd, n).map_err(|e| Self::io(name_s, "replace existing entry", e))?;
        }
        fsat::link_at(tpfd.as_fd(), &tn, pfd, n)
            .map_err(|e| Self::io(name_s, format!("link to {shown}"), e))
    }

    /// The directory of a hardlink target: beneath the root, through no symlink (ELOOP and
    /// EXDEV mean the layer tried to leave, and say so).
    fn open_link_target_dir(&self, name_s: &str, shown: &str, tparent: &[u8]) -> Result<OwnedFd> {
        if tparent.is_empty() {
            self.root.try_clone()
        } else {
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            let p = cstr(tparent).map_err(|e| Self::io(name_s, "hardlink target", e))?;
            openat2(self.root.as_fd(), &p[..], how).map_err(io::Error::from)
        }
        .map_err(|e| match errno(&e) {
            libc::ELOOP => Self::hostile(
                name_s,
                format!("hardlink target {shown} goes through a symlink"),
            ),
            libc::EXDEV => Self::hostile(
                name_s,
                format!("hardlink target {shown} is outside the layer root"),
            ),
            _ => Self::io(
                name_s,
                format!("open directory of hardlink target {shown}"),
                e,
            ),
        })
    }

    /// Open the directory `path` (relative, cleaned) inside the root, resolving any symlink
    /// as if the root were `/`. With `create`, missing directories are made (0755).
    pub(super) fn open_dir(&mut self, path: &[u8], create: bool) -> io::Result<Option<OwnedFd>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let open = |p: &[u8]| -> io::Result<OwnedFd> {
            if p.is_empty() {
                return self.root.try_clone();
            }
            openat2(self.root.as_fd(), &cstr(p)?[..], how).map_err(io::Error::from)
        };
        match open(path) {
            Ok(fd) => return Ok(Some(fd)),
            Err(e) if errno(&e) == libc::ENOENT && create => {}
            // With `create`, a non-directory in the way is an error (ENOTDIR), as in docker.
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) && !create => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let mut cur = self.root.try_clone()?;
        let mut end = 0;
        let mut created = Vec::new();
        while end < path.len() {
            let next = path[end..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| end + i);
            let prefix = &path[..next];
            let name = &path[end..next];
            cur = match open(prefix) {
                Ok(fd) => fd,
                Err(e) if errno(&e) == libc::ENOENT => {
                    fsat::mkdir_at(cur.as_fd(), &cstr(name)?, 0o755)?;
                    created.push(prefix.to_vec());
                    open(prefix)?
                }
                Err(e) => return Err(e),
            };
            end = next + 1;
        }
        self.written.extend(created);
        Ok(Some(cur))
    }
}

/// The whole content of a (small) regular file entry; a short read is an error, as in
/// [`Extractor::create_file`].
fn read_data<R: Read>(entry: &mut tar::Entry<R>, name_s: &str) -> Result<Vec<u8>> {
    let expected = entry.size();
    let mut data = Vec::with_capacity(expected as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|source| ExtractError::ReadEntry {
            entry: name_s.to_string(),
            source,
        })?;
    if data.len() as u64 != expected {
        return Err(ExtractError::ReadEntry {
            entry: name_s.to_string(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ended after {} of {expected} bytes", data.len()),
            ),
        });
    }
    Ok(data)
}
