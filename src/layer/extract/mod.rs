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
//!
//! Files: this one drives the stream (decompression, size cap, diff_id) and sorts each entry
//! by kind; [`path`] cleans names, [`entries`] creates each kind of entry, [`whiteouts`] applies
//! whiteouts, [`meta`] reads, checks and applies ids, modes, xattrs and times, and [`fsat`]
//! holds the `*at` calls on directory fds (nix's safe wrappers; no `unsafe` here).

mod entries;
mod fsat;
mod meta;
mod path;
mod pool;
mod whiteouts;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::Compression;
use super::whiteout::{self, OciName, OverlayXattr};
use crate::digest::{Digest, HashingReader};
use fsat::Obj;
use path::{clean, lossy, split_last};

/// What to do with the archive's uid/gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Ownership {
    /// chown every entry to the archive's ids; failing to do so is an error.
    #[default]
    Preserve,
    /// Leave everything owned by the extracting user.
    Ignore,
    /// Only container root is mapped (no subordinate range), so no other owner can be given
    /// by the kernel: record an owner other than 0:0 in the `user.boxkit.owner` xattr
    /// ([`crate::layer::OWNER_XATTR`]) of a regular file or directory instead, which
    /// [`crate::layer::pack`] turns back into the tar header's ids. Ids are checked against
    /// the container range as with `Preserve`. Symlinks and fifos cannot carry `user.*` xattrs:
    /// they stay root's, with one warning.
    Xattr,
}

impl Ownership {
    /// Whether owners are kept (by chown or in the owner xattr), so ids must be in range.
    pub fn keeps_owners(self) -> bool {
        matches!(self, Ownership::Preserve | Ownership::Xattr)
    }
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
    /// Threads that create regular files besides the one reading the stream: `Some(0)` does
    /// everything on the reading thread; `None` takes `BOX_UNPACK_WORKERS`, else 0 (see
    /// [`pool::workers`] for why). At most [`pool::MAX_WORKERS`]. The result is the same.
    #[serde(default)]
    pub workers: Option<usize>,
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
            workers: None,
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
    let workers = pool::workers(opts.workers);
    let pool = (workers > 0)
        .then(|| pool::Pool::new(workers, opts))
        .flatten();
    let mut x = Extractor {
        root,
        opts,
        planted: HashSet::new(),
        written: HashSet::new(),
        dir_times: Vec::new(),
        notes: Notes::default(),
        devices: Vec::new(),
        entries: 0,
        buf: vec![0u8; 1 << 20],
        pool,
        pending: HashSet::new(),
        pending_dirs: HashSet::new(),
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
    // Every file is written before any directory is dated.
    if let Some(pool) = x.pool.take() {
        let notes = pool.finish()?;
        x.notes.warnings.extend(notes.warnings);
        x.notes.unowned.extend(notes.unowned);
    }
    x.finish_dirs();
    if let Some(first) = x.devices.first() {
        x.notes.warnings.push(format!(
            "{} device node(s) not created, e.g. {first}: device nodes are never made from \
             image content (containers get /dev from boxkit)",
            x.devices.len()
        ));
    }
    if let Some(first) = x.notes.unowned.first() {
        x.notes.warnings.push(format!(
            "{} symlink(s) or fifo(s) of owners other than root kept as root's, e.g. {first}: \
             only container root is mapped, and these cannot carry the owner xattr",
            x.notes.unowned.len()
        ));
    }
    let (_, diff_id, _) = reader.finish();
    Ok(ExtractReport {
        diff_id,
        entries,
        warnings: x.notes.warnings,
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

/// The state of one extraction.
struct Extractor<'a> {
    root: OwnedFd,
    opts: &'a ExtractOptions,
    /// Paths of symlinks this archive created: nothing may be extracted through them.
    planted: HashSet<Vec<u8>>,
    /// Paths this archive created (Flatten): an opaque marker must not delete them.
    written: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, i64)>,
    notes: Notes,
    /// Device entries skipped (reported as one warning).
    devices: Vec<String>,
    entries: u64,
    buf: Vec<u8>,
    /// The threads that create regular files, if any ([`pool`]).
    pool: Option<pool::Pool>,
    /// Paths handed to the pool since it was last drained: no other entry may touch them, or
    /// anything below them, until it is drained again.
    pending: HashSet<Vec<u8>>,
    /// The ancestors of the pending paths: replacing one of them must wait too.
    pending_dirs: HashSet<Vec<u8>>,
}

/// What an extraction notes besides errors; each pool worker keeps its own, merged at the end.
#[derive(Default)]
struct Notes {
    warnings: Vec<String>,
    /// Entries whose owner could not be recorded ([`Ownership::Xattr`] on a symlink or fifo),
    /// reported as one warning.
    unowned: Vec<String>,
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
            // Whiteouts delete, or replace, what may still be being written.
            OciName::Opaque => {
                self.drain()?;
                self.opaque(&name_s, parent)
            }
            OciName::Whiteout(gone) => {
                self.drain()?;
                self.whiteout(&name_s, parent, gone)
            }
            OciName::Meta => {
                self.notes
                    .warnings
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
}
