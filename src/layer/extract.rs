//! Extract: a layer tar (plain, gzip or zstd) → a directory, safely.
//!
//! A layer is untrusted input: it comes from a registry, and a hostile one tries to write
//! outside the target through `../x`, `/etc/x`, a symlink it plants first (`a -> /`, then
//! `a/etc/passwd`), or a hardlink to a host file. So every name is cleaned (absolute names and
//! `..` components are rejected), every entry whose path runs through a symlink this same
//! archive created is rejected, and every parent directory is opened with `openat2` and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, which makes the kernel resolve symlinks already in
//! the tree (from lower layers) as if the target were `/`, so even those can never lead out.
//! The final component is then created with `*at` calls relative to that directory fd, never
//! following a symlink. Hardlink targets must resolve beneath the root with no symlink at all
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`).
//!
//! Three targets: [`ExtractMode::Flatten`] applies the layer onto a tree that already holds the
//! lower layers, so whiteouts delete; [`ExtractMode::Overlay`] fills an empty per-layer dir
//! that will be an overlay lowerdir, so whiteouts are converted into overlay form;
//! [`ExtractMode::Plain`] treats every name literally (COPY/ADD content, volume copy-up).
//! Ownership, mode, xattrs and mtime come from the archive; directory mtimes are set last,
//! after their content stopped changing them. The uncompressed stream is hashed on the way: the
//! report carries the diff_id actually seen.
//!
//! Ids: an entry owned by an id at or above [`ExtractOptions::max_id`] (the size of the
//! container's id range) is refused before anything is created for it, so a layer can never
//! leave a file owned by an id the container range does not hold. Device nodes are never
//! created from an archive: containers get their /dev from the sandbox. Callers that run in a
//! user namespace mapping more than the container range (root's tool namespace) must not call
//! this directly but through [`super::confine`], which runs it in a namespace that maps
//! exactly the container range, so the kernel refuses any other id as well.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use tar::EntryType;

use super::whiteout::{self, OciName, OverlayXattr};
use super::{Compression, xattr};
use crate::digest::{Digest, HashingReader};

/// What to do with the archive's uid/gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Ownership {
    /// chown every entry to the archive's ids; failing to do so is an error.
    #[default]
    Preserve,
    /// Leave everything owned by the extracting user.
    Ignore,
}

/// How whiteouts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ExtractMode {
    /// The target already holds the lower layers: whiteouts delete, opaque markers empty
    /// their directory of lower content.
    #[default]
    Flatten,
    /// No whiteouts at all: `.wh.` names are ordinary names (files copied by COPY/ADD, a
    /// volume filled from the image).
    Plain,
    /// The target is an empty per-layer dir to be used as an overlay lowerdir: whiteouts
    /// become 0/0 character devices and opaque dirs get the given overlay opaque xattr
    /// (`User` when the overlay is mounted with `userxattr`).
    Overlay(OverlayXattr),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExtractOptions {
    pub mode: ExtractMode,
    pub ownership: Ownership,
    /// Ids must be below this: the size of the container's id range (65536 for root's
    /// remapped containers; the number of mapped ids rootless). With [`Ownership::Preserve`]
    /// an entry owned by a larger uid or gid is an error naming the entry and the id.
    pub max_id: u32,
    /// Apply the metadata of the archive's root entry (`./`) to the target directory itself
    /// (a volume takes the owner and mode of the image directory it was filled from).
    pub root_meta: bool,
    /// Refuse a stream whose uncompressed size exceeds this many bytes (decompression bombs).
    pub max_bytes: Option<u64>,
}

/// The container id range docker and podman use, and boxkit's default: ids 0…65535.
pub const DEFAULT_MAX_ID: u32 = 65536;

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            mode: ExtractMode::default(),
            ownership: Ownership::default(),
            max_id: DEFAULT_MAX_ID,
            root_meta: false,
            max_bytes: None,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    /// sha256 of the uncompressed tar stream, all of it including the end-of-archive padding.
    pub diff_id: Digest,
    /// Number of tar entries processed.
    pub entries: u64,
    /// Things skipped that do not make the layer unusable: device nodes that could not be
    /// created (EPERM in a user namespace), xattrs the filesystem or namespace refused.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("extract into {}: open target directory: {source}", target.display())]
    Target { target: PathBuf, source: io::Error },
    #[error(
        "read layer stream: {source} (the blob is corrupt, truncated or not in the declared format)"
    )]
    Read { source: io::Error },
    #[error("entry {entry}: read data: {source} (the blob is corrupt or truncated)")]
    ReadEntry { entry: String, source: io::Error },
    #[error("entry {entry}: {reason}; refusing a hostile or corrupt layer")]
    Hostile { entry: String, reason: String },
    #[error("entry {entry}: {op}: {source}")]
    Io {
        entry: String,
        op: String,
        source: io::Error,
    },
    #[error(
        "entry {entry}: chown to {uid}:{gid}: {source}; files owned by other users need root or \
         a user namespace with a subuid range (see `usermod --add-subuids`), or extract with \
         ownership Ignore"
    )]
    Chown {
        entry: String,
        uid: u64,
        gid: u64,
        source: io::Error,
    },
    #[error("entry {entry}: unsupported tar entry type {kind}")]
    Unsupported { entry: String, kind: String },
    #[error(
        "entry {entry}: owner {uid}:{gid} is outside the container's id range 0-{last} \
         (insufficient UIDs or GIDs available in user namespace); boxkit never stores a file \
         owned by an id the container range does not hold",
        last = u64::from(*max_id).saturating_sub(1)
    )]
    IdOutOfRange {
        entry: String,
        uid: u64,
        gid: u64,
        max_id: u32,
    },
    #[error(
        "the uncompressed stream exceeds the limit of {limit} bytes (a decompression bomb, or \
         raise BOX_MAX_LAYER_SIZE)"
    )]
    TooBig { limit: u64 },
    /// An error from extraction confined in its own user namespace, as that process reported
    /// it.
    #[error("{0}")]
    Confined(String),
}

type Result<T> = std::result::Result<T, ExtractError>;

/// Extract the layer blob `blob`, compressed as `compression`, into the directory `target`.
pub fn extract<R: Read>(
    blob: R,
    compression: Compression,
    target: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport> {
    let root = File::options()
        .read(true)
        .custom_flags_dir()
        .open(target)
        .map_err(|source| ExtractError::Target {
            target: target.to_path_buf(),
            source,
        })?;
    extract_at(blob, compression, root.as_fd(), opts)
}

/// [`extract`] into the open directory `target`: nothing is ever resolved outside it.
pub fn extract_at<R: Read>(
    blob: R,
    compression: Compression,
    target: BorrowedFd,
    opts: &ExtractOptions,
) -> Result<ExtractReport> {
    let root = target
        .try_clone_to_owned()
        .map_err(|source| ExtractError::Target {
            target: PathBuf::from("(directory descriptor)"),
            source,
        })?;
    match compression {
        Compression::None => extract_tar(blob, root, opts),
        Compression::Gzip => extract_tar(flate2::read::MultiGzDecoder::new(blob), root, opts),
        Compression::Zstd => {
            let dec = zstd::Decoder::new(blob).map_err(|source| ExtractError::Read { source })?;
            extract_tar(dec, root, opts)
        }
    }
}

/// Counts the bytes that pass and fails the read that would go past `limit`.
struct Capped<R> {
    inner: R,
    left: Option<u64>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(left) = &mut self.left {
            *left = left
                .checked_sub(n as u64)
                .ok_or_else(|| io::Error::new(io::ErrorKind::FileTooLarge, "size limit"))?;
        }
        Ok(n)
    }
}

fn extract_tar<R: Read>(tar: R, root: OwnedFd, opts: &ExtractOptions) -> Result<ExtractReport> {
    let mut x = Extractor {
        root,
        opts,
        planted: HashSet::new(),
        written: HashSet::new(),
        dir_times: Vec::new(),
        warnings: Vec::new(),
        devices: Vec::new(),
        entries: 0,
        buf: vec![0u8; 1 << 20],
    };
    let too_big = |e: &io::Error| e.kind() == io::ErrorKind::FileTooLarge;
    let limit = opts.max_bytes;
    let capped = Capped {
        inner: tar,
        left: limit,
    };
    let mut reader = HashingReader::new(capped);
    let r = x.run(&mut reader);
    match r {
        Err(ExtractError::Read { source } | ExtractError::ReadEntry { source, .. })
            if too_big(&source) =>
        {
            return Err(ExtractError::TooBig {
                limit: limit.unwrap_or(0),
            });
        }
        r => r?,
    }
    let entries = x.entries;
    x.finish_dirs();
    if let Some(first) = x.devices.first() {
        x.warnings.push(format!(
            "{} device node(s) not created, e.g. {first}: device nodes are never made from \
             image content (containers get /dev from boxkit)",
            x.devices.len()
        ));
    }
    let (_, diff_id, _) = reader.finish();
    Ok(ExtractReport {
        diff_id,
        entries,
        warnings: x.warnings,
    })
}

impl Extractor<'_> {
    fn run<R: Read>(&mut self, reader: &mut R) -> Result<()> {
        {
            let mut archive = tar::Archive::new(&mut *reader);
            let iter = archive
                .entries()
                .map_err(|source| ExtractError::Read { source })?;
            for entry in iter {
                let mut entry = entry.map_err(|source| ExtractError::Read { source })?;
                self.entries += 1;
                self.entry(&mut entry)?;
            }
        }
        // Hash whatever follows the end-of-archive marker too: the diff_id covers the whole
        // stream, and reading to the end makes the decompressor check its own trailer.
        io::copy(reader, &mut io::sink()).map_err(|source| ExtractError::Read { source })?;
        Ok(())
    }
}

trait DirFlags {
    fn custom_flags_dir(&mut self) -> &mut Self;
}
impl DirFlags for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
    }
}

/// An entry's metadata, from the ustar header with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where to apply metadata: an open fd, or a name in a directory (not followed).
enum Obj<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a CStr, bool /* is a symlink */),
}

struct Extractor<'a> {
    root: OwnedFd,
    opts: &'a ExtractOptions,
    /// Paths of symlinks this archive created: nothing may be extracted through them.
    planted: HashSet<Vec<u8>>,
    /// Paths this archive created (Flatten): an opaque marker must not delete them.
    written: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, i64)>,
    warnings: Vec<String>,
    /// Device entries skipped (reported as one warning).
    devices: Vec<String>,
    entries: u64,
    buf: Vec<u8>,
}

/// Clean a tar name into a relative path of normal components joined by `/`.
fn clean(raw: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path; layer entries must be relative to the layer root");
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path escapes the layer root (`..` component)"),
            _ if c.contains(&0) => return Err("NUL byte in path"),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = parent.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn lstat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(r) {
        Ok(()) => Ok(Some(st)),
        Err(e) if errno(&e) == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn open_at(dir: BorrowedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Remove `name` in `dir`, recursively when it is a directory, never following symlinks.
fn remove_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        for child in list_dir(sub.as_fd())? {
            remove_at(sub.as_fd(), &child)?;
        }
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
    }
}

fn list_dir(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    let dup = dir.try_clone_to_owned()?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(io::Error::from)?;
        let n = ent.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn set_times(obj: &Obj, mtime: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    match obj {
        Obj::Fd(fd) => check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }),
        Obj::At(dir, name, _) => check(unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        }),
    }
}

impl Extractor<'_> {
    fn io(entry: &str, op: impl Into<String>, source: io::Error) -> ExtractError {
        ExtractError::Io {
            entry: entry.to_string(),
            op: op.into(),
            source,
        }
    }

    fn hostile(entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::Hostile {
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    /// Open the directory `path` (relative, cleaned) inside the root, resolving any symlink
    /// as if the root were `/`. With `create`, missing directories are made (0755).
    fn open_dir(&mut self, path: &[u8], create: bool) -> io::Result<Option<OwnedFd>> {
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
                    let n = cstr(name)?;
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), n.as_ptr(), 0o755) };
                    check(r)?;
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

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name_s = lossy(&raw);
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let path = clean(&raw).map_err(|r| Self::hostile(&name_s, r))?;
        if path.is_empty() {
            // The layer root itself: the target dir belongs to the caller, unless it asked
            // for the archive's metadata.
            if self.opts.root_meta && kind == EntryType::Directory {
                let meta = Self::meta(entry, &name_s)?;
                self.check_ids(&name_s, &meta)?;
                let root = self
                    .root
                    .try_clone()
                    .map_err(|e| Self::io(&name_s, "open target directory", e))?;
                self.apply(&name_s, &Obj::Fd(root.as_fd()), &meta, false)?;
                self.dir_times.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        }
        self.check_planted(&name_s, &path)?;
        let (parent, name) = split_last(&path);
        let class = if self.opts.mode == ExtractMode::Plain {
            OciName::Plain
        } else {
            whiteout::classify(name).map_err(|e| Self::hostile(&name_s, e.to_string()))?
        };
        match class {
            OciName::Opaque => self.opaque(&name_s, parent),
            OciName::Whiteout(gone) => self.whiteout(&name_s, parent, gone),
            OciName::Meta => {
                self.warnings
                    .push(format!("entry {name_s}: skipped aufs whiteout metadata"));
                Ok(())
            }
            OciName::Plain => self.create(entry, &name_s, &path, kind),
        }
    }

    fn check_planted(&self, entry: &str, path: &[u8]) -> Result<()> {
        for (i, &b) in path.iter().enumerate() {
            if b == b'/' && self.planted.contains(&path[..i]) {
                return Err(Self::hostile(
                    entry,
                    format!(
                        "path goes through symlink {} created by this same layer",
                        lossy(&path[..i])
                    ),
                ));
            }
        }
        Ok(())
    }

    fn opaque(&mut self, entry: &str, dir: &[u8]) -> Result<()> {
        match self.opts.mode {
            ExtractMode::Plain => unreachable!("Plain mode classifies no whiteouts"),
            ExtractMode::Overlay(kind) => {
                let fd = self
                    .open_dir(dir, true)
                    .map_err(|e| Self::io(entry, "open parent directory", e))?
                    .ok_or_else(|| {
                        Self::io(
                            entry,
                            "open parent directory",
                            io::ErrorKind::NotFound.into(),
                        )
                    })?;
                whiteout::set_overlay_opaque(fd.as_fd(), kind)
                    .map_err(|e| Self::io(entry, format!("set {}", kind.opaque_name()), e))
            }
            ExtractMode::Flatten => {
                let Some(fd) = self
                    .open_dir(dir, false)
                    .map_err(|e| Self::io(entry, "open parent directory", e))?
                else {
                    return Ok(());
                };
                self.clear_lower(fd.as_fd(), dir)
                    .map_err(|e| Self::io(entry, "remove lower-layer content of opaque dir", e))
            }
        }
    }

    /// Delete everything under `dir` that this layer did not write itself.
    fn clear_lower(&self, dir: BorrowedFd, prefix: &[u8]) -> io::Result<()> {
        for child in list_dir(dir)? {
            let path = join(prefix, child.to_bytes());
            if self.written.contains(&path) {
                if let Some(st) = lstat_at(dir, &child)?
                    && is_dir(&st)
                {
                    let sub = open_at(dir, &child, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                    self.clear_lower(sub.as_fd(), &path)?;
                }
            } else {
                remove_at(dir, &child)?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, entry: &str, parent: &[u8], gone: &[u8]) -> Result<()> {
        let gone_path = join(parent, gone);
        self.planted.remove(&gone_path);
        self.written.remove(&gone_path);
        let n = cstr(gone).map_err(|e| Self::io(entry, "whiteout name", e))?;
        let create = matches!(self.opts.mode, ExtractMode::Overlay(_));
        debug_assert!(self.opts.mode != ExtractMode::Plain);
        let Some(pfd) = self
            .open_dir(parent, create)
            .map_err(|e| Self::io(entry, "open parent directory", e))?
        else {
            return Ok(());
        };
        remove_at(pfd.as_fd(), &n).map_err(|e| Self::io(entry, "remove whited-out path", e))?;
        if create {
            whiteout::make_overlay_whiteout(pfd.as_fd(), &n)
                .map_err(|e| Self::io(entry, "create overlay whiteout (0/0 char device)", e))?;
        }
        Ok(())
    }

    fn meta<R: Read>(entry: &mut tar::Entry<R>, name: &str) -> Result<Meta> {
        let bad = |what: &str, e: io::Error| Self::hostile(name, format!("invalid {what}: {e}"));
        let h = entry.header();
        let mut m = Meta {
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            uid: h.uid().map_err(|e| bad("uid", e))?,
            gid: h.gid().map_err(|e| bad("gid", e))?,
            mtime: h.mtime().map_err(|e| bad("mtime", e))? as i64,
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX header", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("PAX header", e))?;
                let key = ext.key_bytes();
                let num = || -> Option<i64> {
                    let v = std::str::from_utf8(ext.value_bytes()).ok()?;
                    v.split('.').next()?.parse().ok()
                };
                match key {
                    b"uid" => {
                        m.uid = num()
                            .ok_or_else(|| bad("PAX uid", io::ErrorKind::InvalidData.into()))?
                            as u64
                    }
                    b"gid" => {
                        m.gid = num()
                            .ok_or_else(|| bad("PAX gid", io::ErrorKind::InvalidData.into()))?
                            as u64
                    }
                    b"mtime" => m.mtime = num().unwrap_or(m.mtime),
                    _ => {
                        if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                            m.xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        Ok(m)
    }

    fn create<R: Read>(
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
        let pfd = pfd.as_fd();
        let existing =
            lstat_at(pfd, &n).map_err(|e| Self::io(name_s, "lstat existing entry", e))?;
        let replace = |this: &Self| -> Result<()> {
            let _ = this;
            if existing.is_some() {
                remove_at(pfd, &n).map_err(|e| Self::io(name_s, "replace existing entry", e))?;
            }
            Ok(())
        };
        self.planted.remove(path);
        match kind {
            EntryType::Directory => {
                if !existing.as_ref().is_some_and(is_dir) {
                    replace(self)?;
                    check(unsafe { libc::mkdirat(pfd.as_raw_fd(), n.as_ptr(), 0o700) })
                        .map_err(|e| Self::io(name_s, "mkdir", e))?;
                }
                let fd = open_at(pfd, &n, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(|e| Self::io(name_s, "open directory", e))?;
                self.apply(name_s, &Obj::Fd(fd.as_fd()), &meta, false)?;
                self.dir_times.push((path.to_vec(), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                replace(self)?;
                let fd = open_at(
                    pfd,
                    &n,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
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
                self.apply(name_s, &Obj::Fd(f.as_fd()), &meta, true)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Self::hostile(name_s, "symlink without a target"))?
                    .into_owned();
                if target.is_empty() {
                    return Err(Self::hostile(name_s, "symlink with an empty target"));
                }
                replace(self)?;
                let t = cstr(&target).map_err(|e| Self::io(name_s, "symlink target", e))?;
                check(unsafe { libc::symlinkat(t.as_ptr(), pfd.as_raw_fd(), n.as_ptr()) })
                    .map_err(|e| Self::io(name_s, "create symlink", e))?;
                self.planted.insert(path.to_vec());
                self.apply(name_s, &Obj::At(pfd, &n, true), &meta, true)?;
            }
            EntryType::Link => {
                self.hardlink(entry, name_s, pfd, &n, existing)?;
            }
            EntryType::Fifo => {
                replace(self)?;
                nix::sys::stat::mknodat(
                    pfd,
                    &*n,
                    nix::sys::stat::SFlag::S_IFIFO,
                    nix::sys::stat::Mode::from_bits_truncate(meta.mode & 0o777),
                    0,
                )
                .map_err(|e| Self::io(name_s, "create fifo", e.into()))?;
                self.apply(name_s, &Obj::At(pfd, &n, false), &meta, true)?;
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

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        name_s: &str,
        pfd: BorrowedFd,
        n: &CStr,
        existing: Option<libc::stat>,
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
        let (tparent, tname) = split_last(&target);
        let tpfd = if tparent.is_empty() {
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
        })?;
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
        check(unsafe {
            libc::linkat(
                tpfd.as_raw_fd(),
                tn.as_ptr(),
                pfd.as_raw_fd(),
                n.as_ptr(),
                0,
            )
        })
        .map_err(|e| Self::io(name_s, format!("link to {shown}"), e))
    }

    /// Refuse an owner outside the container range before anything is created for it.
    fn check_ids(&self, name_s: &str, m: &Meta) -> Result<()> {
        let max = u64::from(self.opts.max_id);
        if self.opts.ownership == Ownership::Preserve && (m.uid >= max || m.gid >= max) {
            return Err(ExtractError::IdOutOfRange {
                entry: name_s.to_string(),
                uid: m.uid,
                gid: m.gid,
                max_id: self.opts.max_id,
            });
        }
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown clears
    /// security.capability), then mtime (unless deferred, for directories).
    fn apply(&mut self, name_s: &str, obj: &Obj, m: &Meta, times: bool) -> Result<()> {
        if self.opts.ownership == Ownership::Preserve {
            let (uid, gid) = (m.uid as libc::uid_t, m.gid as libc::gid_t);
            let r = match obj {
                Obj::Fd(fd) => unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) },
                Obj::At(dir, n, _) => unsafe {
                    libc::fchownat(
                        dir.as_raw_fd(),
                        n.as_ptr(),
                        uid,
                        gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                },
            };
            check(r).map_err(|source| ExtractError::Chown {
                entry: name_s.to_string(),
                uid: m.uid,
                gid: m.gid,
                source,
            })?;
        }
        let r = match obj {
            Obj::Fd(fd) => unsafe { libc::fchmod(fd.as_raw_fd(), m.mode) },
            Obj::At(_, _, true) => 0,
            Obj::At(dir, n, false) => unsafe {
                libc::fchmodat(dir.as_raw_fd(), n.as_ptr(), m.mode, 0)
            },
        };
        check(r).map_err(|e| Self::io(name_s, format!("chmod {:o}", m.mode), e))?;
        for (k, v) in &m.xattrs {
            let r = match obj {
                Obj::Fd(fd) => xattr::fset(*fd, k, v),
                Obj::At(dir, n, _) => {
                    let p = format!("/proc/self/fd/{}", dir.as_raw_fd());
                    let mut p = std::path::PathBuf::from(p);
                    p.push(std::ffi::OsStr::from_bytes(n.to_bytes()));
                    xattr::lset(&p, k, v)
                }
            };
            if let Err(e) = r {
                if matches!(errno(&e), libc::EPERM | libc::ENOTSUP | libc::EACCES) {
                    self.warnings
                        .push(format!("entry {name_s}: xattr {} not set: {e}", lossy(k)));
                } else {
                    return Err(Self::io(name_s, format!("set xattr {}", lossy(k)), e));
                }
            }
        }
        if times {
            set_times(obj, m.mtime).map_err(|e| Self::io(name_s, "set mtime", e))?;
        }
        Ok(())
    }

    fn finish_dirs(&mut self) {
        let times = std::mem::take(&mut self.dir_times);
        for (path, mtime) in times.iter().rev() {
            if path.is_empty() {
                let _ = set_times(&Obj::Fd(self.root.as_fd()), *mtime);
                continue;
            }
            let (parent, name) = split_last(path);
            let Ok(Some(pfd)) = self.open_dir(parent, false) else {
                continue;
            };
            let Ok(n) = cstr(name) else { continue };
            // The dir may since have been deleted or replaced by a later entry; then there is
            // nothing left to date.
            let _ = set_times(&Obj::At(pfd.as_fd(), &n, false), *mtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(clean(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(clean(b"./").unwrap(), b"");
        assert!(clean(b"/etc/x").is_err());
        assert!(clean(b"a/../../x").is_err());
        assert!(clean(b"..").is_err());
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
    }
}
