//! Pack: an overlay upper dir → tar → gzip|zstd|none, in one streaming pass.
//!
//! The tree is walked depth-first with each directory's names sorted bytewise, so the stream
//! depends only on the tree's content, never on readdir order. Entries carry lstat's numeric
//! uid/gid/mode/mtime (no user or group names: they mean nothing outside the image). Overlay
//! whiteouts are rewritten into OCI form on the way (see [`super::whiteout`]); files sharing an
//! inode become one regular entry plus tar hardlink entries pointing at the first path in walk
//! order. PAX records carry what ustar cannot: names and link targets over 100 bytes, large
//! ids and sizes, and xattrs (`security.capability` and `user.*`, never overlay's own). Where
//! only container root is mapped, a file's container owner lives in its `user.boxkit.owner`
//! xattr ([`super::Ownership::Xattr`]): that owner becomes the entry's uid/gid and the xattr
//! itself (like every `user.boxkit.*`) never enters the layer, so the layer is the one a
//! kernel chown would have given.
//!
//! The tar bytes are hashed (diff_id) as they are produced, then compressed, then hashed again
//! (blob digest) and counted as they reach the output. With `source_date_epoch` set, every
//! mtime is clamped to it and the compressors write no timestamps, so packing the same tree
//! twice gives the same digest.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::pgzip::ParallelGzip;
use super::tarwriter::{TarEntry, TarWriter};
use super::whiteout::{self, OPAQUE_MARKER};
use super::{Compression, xattr};
use crate::digest::{Digest, HashingWriter};

/// Default gzip level. zlib-rs level 2 (its fast deflate) with 512 KiB parallel blocks gives
/// output within about 1% of `gzip -6` (on the benchmark tree, the same size) for about 20% less
/// CPU than level 6, which keeps the 2x margin over `tar | gzip` on a busy 2-core machine.
/// Docker and BuildKit likewise use a fast default (Go's). Measurements in bench/README.md.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;
/// Default zstd level, zstd's own default.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How to pack a layer.
#[derive(Debug, Clone)]
pub struct PackOptions {
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: clamp every mtime to at most this many seconds since 1970.
    pub source_date_epoch: Option<i64>,
    /// gzip level 0-9 (default [`DEFAULT_GZIP_LEVEL`]).
    pub gzip_level: u32,
    /// Compression threads; None = one per available core.
    pub threads: Option<usize>,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            source_date_epoch: None,
            gzip_level: DEFAULT_GZIP_LEVEL,
            threads: None,
        }
    }
}

/// What a packed layer is called in a manifest and a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackResult {
    /// sha256 of the compressed bytes written (the blob's name and descriptor digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Number of compressed bytes written.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack layer from {}: {op} {}: {source}", root.display(), path.display())]
    Fs {
        root: PathBuf,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "pack layer from {}: {} changed size while being packed (expected {expected} bytes); \
         do not modify a layer directory while it is packed",
        root.display(), path.display()
    )]
    Changed {
        root: PathBuf,
        path: PathBuf,
        expected: u64,
    },
    #[error(
        "pack layer from {}: {} has owner xattr user.boxkit.owner={value:?}, which is not \
         UID:GID inside the container range 0-65535; remove it (setfattr -x user.boxkit.owner)",
        root.display(), path.display()
    )]
    Owner {
        root: PathBuf,
        path: PathBuf,
        value: String,
    },
    #[error("pack layer from {}: write the layer stream: {source}", root.display())]
    Write { root: PathBuf, source: io::Error },
}

type Result<T> = std::result::Result<T, PackError>;

/// Pack the directory `dir` (an overlay upper dir, or any tree) as a layer into `out`.
pub fn pack_dir<W: Write>(dir: &Path, out: W, opts: &PackOptions) -> Result<PackResult> {
    let root = dir.to_path_buf();
    let werr = |source| PackError::Write {
        root: root.clone(),
        source,
    };
    let out = HashingWriter::new(out);
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let out = match opts.compression {
        Compression::None => {
            // The blob is the tar: one hash gives both names.
            let mut tar = out;
            write_tar(dir, &mut tar, opts)?;
            let (_, digest, size) = tar.finish();
            return Ok(PackResult {
                diff_id: digest.clone(),
                digest,
                size,
            });
        }
        Compression::Gzip => {
            let gz = ParallelGzip::new(out, opts.gzip_level, threads).map_err(werr)?;
            let mut tar = HashingWriter::new(gz);
            write_tar(dir, &mut tar, opts)?;
            let (gz, diff_id, _) = tar.finish();
            (gz.finish().map_err(werr)?, diff_id)
        }
        Compression::Zstd => {
            let mut enc = zstd::Encoder::new(out, DEFAULT_ZSTD_LEVEL).map_err(werr)?;
            // Checksums make a truncated blob fail loudly on extraction; zstd adds no
            // timestamps, so the stream stays deterministic.
            enc.include_checksum(true).map_err(werr)?;
            let mut tar = HashingWriter::new(enc);
            write_tar(dir, &mut tar, opts)?;
            let (enc, diff_id, _) = tar.finish();
            (enc.finish().map_err(werr)?, diff_id)
        }
    };
    Ok(finish(out.0, out.1))
}

/// Compress the tar stream `tar` into `out` with the compressor and level [`pack_dir`] uses
/// (no timestamps; pgzip's blocks depend only on the input), so the same tar always gives the
/// same blob. `none` copies. Returns `out`.
pub fn compress<W: Write>(
    tar: &mut impl io::Read,
    out: W,
    compression: Compression,
    threads: Option<usize>,
) -> io::Result<W> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    match compression {
        Compression::None => {
            let mut out = out;
            io::copy(tar, &mut out)?;
            Ok(out)
        }
        Compression::Gzip => {
            let mut gz = ParallelGzip::new(out, DEFAULT_GZIP_LEVEL, threads)?;
            io::copy(tar, &mut gz)?;
            gz.finish()
        }
        Compression::Zstd => {
            let mut enc = zstd::Encoder::new(out, DEFAULT_ZSTD_LEVEL)?;
            enc.include_checksum(true)?;
            io::copy(tar, &mut enc)?;
            enc.finish()
        }
    }
}

fn finish<W: Write>(out: HashingWriter<W>, diff_id: Digest) -> PackResult {
    let (_, digest, size) = out.finish();
    PackResult {
        digest,
        diff_id,
        size,
    }
}

/// xattrs as (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One tar entry before it is encoded.
type Entry<'a> = TarEntry<'a>;

struct Packer<'a, W: Write> {
    root: &'a Path,
    out: TarWriter<&'a mut W>,
    /// (dev, ino) of multiply-linked files → the first tar path written for them.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Write the directory `dir` as a plain layer tar into `out`, with no compression and no
/// digest: for callers that hash the stream themselves (the store's blob writer) or need no
/// name for it (a tar export, a copy stream). `opts.compression` is ignored.
pub fn write_tar<W: Write>(dir: &Path, out: &mut W, opts: &PackOptions) -> Result<()> {
    let mut p = Packer {
        root: dir,
        out: TarWriter::new(out, opts.source_date_epoch),
        links: HashMap::new(),
    };
    let meta = fs::symlink_metadata(dir).map_err(|e| p.fs("lstat", dir, e))?;
    if !meta.is_dir() {
        return Err(p.fs(
            "open directory",
            dir,
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    // The layer root itself has no entry, but an opaque root must still say so.
    if whiteout::is_overlay_opaque(dir).map_err(|e| p.fs("read xattrs of", dir, e))? {
        p.marker(OPAQUE_MARKER.as_bytes(), meta.mtime())?;
    }
    let mut rel = Vec::new();
    p.walk(dir, &mut rel)?;
    p.out.finish().map_err(|source| PackError::Write {
        root: dir.to_path_buf(),
        source,
    })?;
    Ok(())
}

impl<W: Write> Packer<'_, W> {
    fn fs(&self, op: &'static str, path: &Path, source: io::Error) -> PackError {
        PackError::Fs {
            root: self.root.to_path_buf(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<()> {
        let mut names = Vec::new();
        for ent in fs::read_dir(dir).map_err(|e| self.fs("read directory", dir, e))? {
            let ent = ent.map_err(|e| self.fs("read directory", dir, e))?;
            names.push(ent.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let abs = dir.join(&name);
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.one(&abs, rel, name.as_bytes(), len)?;
            rel.truncate(len);
        }
        Ok(())
    }

    fn one(&mut self, abs: &Path, rel: &mut Vec<u8>, name: &[u8], parent_len: usize) -> Result<()> {
        let meta = fs::symlink_metadata(abs).map_err(|e| self.fs("lstat", abs, e))?;
        let ft = meta.file_type();
        if whiteout::is_whiteout_at(abs, &meta) {
            let mut path = rel[..parent_len].to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&whiteout::whiteout_name(name));
            return self.marker(&path, meta.mtime());
        }
        if ft.is_socket() {
            // Sockets cannot be represented in tar and are recreated by whoever listens.
            return Ok(());
        }
        let (xattrs, owner) = self.xattrs(abs)?;
        let (uid, gid) = owner.map_or((meta.uid(), meta.gid()), |(u, g)| (u, g));
        let mut e = Entry {
            path: rel,
            kind: EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: uid.into(),
            gid: gid.into(),
            mtime: meta.mtime(),
            size: 0,
            link: None,
            dev: None,
            xattrs: &xattrs,
        };
        if ft.is_dir() {
            let mut path = rel.clone();
            path.push(b'/');
            e.kind = EntryType::Directory;
            e.path = &path;
            self.header(&e)?;
            let opaque = whiteout::is_overlay_opaque(abs)
                .map_err(|er| self.fs("read xattrs of", abs, er))?;
            if opaque {
                path.extend_from_slice(OPAQUE_MARKER.as_bytes());
                self.marker(&path, meta.mtime())?;
            }
            return self.walk(abs, rel);
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(|er| self.fs("read symlink", abs, er))?;
            e.kind = EntryType::Symlink;
            e.link = Some(target.as_os_str().as_bytes());
            return self.header(&e);
        }
        if !ft.is_file() {
            e.kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            if !ft.is_fifo() {
                let rdev = meta.rdev();
                e.dev = Some((libc::major(rdev), libc::minor(rdev)));
            }
            return self.header(&e);
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                e.kind = EntryType::Link;
                e.link = Some(&first);
                return self.header(&e);
            }
            self.links.insert(key, rel.clone());
        }
        e.size = meta.len();
        self.header(&e)?;
        self.data(abs, meta.len())
    }

    /// An empty regular entry: an OCI whiteout or opaque marker.
    fn marker(&mut self, path: &[u8], mtime: i64) -> Result<()> {
        self.header(&Entry {
            path,
            kind: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        })
    }

    /// The xattrs that go into the layer, and the owner recorded in the owner xattr (where
    /// only container root is mapped, see [`super::Ownership::Xattr`]), which itself does not.
    fn xattrs(&self, abs: &Path) -> Result<(Xattrs, Option<(u32, u32)>)> {
        let mut out = Vec::new();
        let mut owner = None;
        let names = xattr::list(abs).map_err(|e| self.fs("list xattrs of", abs, e))?;
        for name in names {
            let keep = name == b"security.capability"
                || (name.starts_with(b"user.") && !whiteout::is_overlay_xattr(&name));
            if !keep {
                continue;
            }
            let Some(v) = xattr::get(abs, &name).map_err(|e| self.fs("read xattr of", abs, e))?
            else {
                continue;
            };
            if name == xattr::OWNER_XATTR {
                owner = Some(self.owner(abs, &v)?);
            } else if !name.starts_with(xattr::BOXKIT_XATTR_PREFIX) {
                out.push((name, v));
            }
        }
        out.sort();
        Ok((out, owner))
    }

    /// The owner an owner xattr records: `UID:GID` inside the container range, else an error
    /// (the kernel would have refused such a chown; the value was written by hand).
    fn owner(&self, abs: &Path, v: &[u8]) -> Result<(u32, u32)> {
        xattr::parse_owner(v)
            .filter(|&(u, g)| u < super::DEFAULT_MAX_ID && g < super::DEFAULT_MAX_ID)
            .ok_or_else(|| PackError::Owner {
                root: self.root.to_path_buf(),
                path: abs.to_path_buf(),
                value: String::from_utf8_lossy(v).into_owned(),
            })
    }

    fn data(&mut self, abs: &Path, size: u64) -> Result<()> {
        let mut f = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(abs)
            .map_err(|e| self.fs("open", abs, e))?;
        self.out.data(&mut f, size).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => PackError::Changed {
                root: self.root.to_path_buf(),
                path: abs.to_path_buf(),
                expected: size,
            },
            // A write error shows as Write; a read error names the file.
            _ if e.raw_os_error().is_some() && e.raw_os_error() != Some(libc::EPIPE) => {
                self.fs("read", abs, e)
            }
            _ => PackError::Write {
                root: self.root.to_path_buf(),
                source: e,
            },
        })
    }

    fn header(&mut self, e: &Entry) -> Result<()> {
        self.out.header(e).map_err(|source| PackError::Write {
            root: self.root.to_path_buf(),
            source,
        })
    }
}
