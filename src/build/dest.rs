//! The new layer as a tar stream: where each COPY/ADD entry goes (destinations resolved
//! through the image's and this COPY's own symlinks), with which owner and mode, and ADD's
//! archive unpacking. The stream is extracted by [`super::owner::write_tree`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::EntryType;

use super::copy::{CopyError, Filter, Result, entries, io_err};
use super::fsview::Lowers;
use crate::boxfile::ignore::clean;
use crate::layer::tarwriter::{TarEntry, TarWriter};

/// What this COPY has written so far at a path (relative to the image root).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    Dir,
    File,
    Symlink(String),
}

/// Where files go and how they are owned: the new layer, as a tar stream that the extractor
/// (confined to the container's id range) writes into the layer's directory. Nothing here
/// touches the layer directory itself, so no path in it — and no symlink a source planted
/// there — is ever followed on the host.
pub struct Dest<'a, W: Write> {
    /// The image below the new layer.
    pub lowers: &'a Lowers,
    pub owner: (u32, u32),
    pub chmod: Option<u32>,
    out: TarWriter<W>,
    /// What the stream holds so far, for destinations resolved through this COPY's own
    /// symlinks and directories.
    written: BTreeMap<String, Written>,
    now: i64,
}

fn dir_name(rel: &str) -> Vec<u8> {
    format!("{rel}/").into_bytes()
}

impl<'a, W: Write> Dest<'a, W> {
    /// A destination writing tar into `out`. The owner must already have been checked
    /// against the container range.
    pub fn new(out: W, lowers: &'a Lowers, owner: (u32, u32), chmod: Option<u32>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Dest {
            lowers,
            owner,
            chmod,
            out: TarWriter::new(out, None),
            written: BTreeMap::new(),
            now,
        }
    }

    /// End the stream.
    pub fn finish(self) -> Result<()> {
        self.out.finish().map(drop).map_err(CopyError::Stream)
    }

    fn emit(&mut self, e: &TarEntry) -> Result<()> {
        self.out.header(e).map_err(CopyError::Stream)
    }

    /// Forget what was written below `rel` (a later entry replaces the directory).
    fn forget_below(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let below: Vec<String> = self
            .written
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.written.remove(&k);
        }
    }

    /// Resolve symlinks in the parents of the absolute image path `p` (in the layer being
    /// written, then in the image), as Docker resolves a destination inside the container.
    pub fn resolve(&self, p: &str) -> String {
        let mut parts: Vec<String> = clean(p)
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut i = 0;
        let mut hops = 0;
        while i + 1 < parts.len() && hops < 40 {
            let prefix = parts[..=i].join("/");
            let link = match self.written.get(&prefix) {
                Some(Written::Symlink(t)) => Some(t.clone()),
                Some(_) => None,
                None => self.lowers.find(&prefix).and_then(|p| {
                    let m = fs::symlink_metadata(&p).ok()?;
                    m.file_type()
                        .is_symlink()
                        .then(|| fs::read_link(&p).ok())
                        .flatten()
                        .map(|t| t.to_string_lossy().into_owned())
                }),
            };
            if let Some(t) = link {
                hops += 1;
                let base = if t.starts_with('/') {
                    t
                } else {
                    format!("/{}/{t}", parts[..i].join("/"))
                };
                let rest = parts[i + 1..].join("/");
                parts = clean(&format!("{base}/{rest}"))
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                i = 0;
                continue;
            }
            i += 1;
        }
        format!("/{}", parts.join("/"))
    }

    /// Whether the absolute image path is a directory in the layer or the image.
    pub fn is_dir(&self, p: &str) -> bool {
        let rel = p.trim_start_matches('/');
        match self.written.get(rel) {
            Some(w) => *w == Written::Dir,
            None => self.lowers.metadata(rel).is_some_and(|m| m.is_dir()),
        }
    }

    /// Create the parents of the absolute image path `p` in the layer: directories the image
    /// has keep their mode and owner, new ones are 0755 with the copy's owner.
    pub fn ensure_parents(&mut self, p: &str) -> Result<()> {
        let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        for i in 0..parts.len().saturating_sub(1) {
            self.ensure_dir(&parts[..=i].join("/"), None)?;
        }
        Ok(())
    }

    /// Make `rel` a directory in the layer (copying the image's metadata when it has one).
    fn ensure_dir(&mut self, rel: &str, like: Option<&fs::Metadata>) -> Result<()> {
        if rel.is_empty() || self.written.get(rel) == Some(&Written::Dir) {
            return Ok(());
        }
        let image_dir = self
            .lowers
            .find(rel)
            .and_then(|p| fs::symlink_metadata(&p).ok().map(|m| (p, m)))
            .filter(|(_, m)| m.is_dir());
        let (mode, uid, gid, mtime) = match image_dir {
            Some((p, m)) => {
                let (uid, gid) = crate::layer::recorded_owner(&p, &m);
                (m.mode() & 0o7777, uid, gid, m.mtime())
            }
            None => match like {
                Some(m) => (
                    self.chmod.unwrap_or(m.mode() & 0o7777),
                    self.owner.0,
                    self.owner.1,
                    m.mtime(),
                ),
                None => (0o755, self.owner.0, self.owner.1, self.now),
            },
        };
        let name = dir_name(rel);
        self.emit(&TarEntry {
            mode,
            uid: uid.into(),
            gid: gid.into(),
            mtime,
            ..TarEntry::new(&name, EntryType::Directory)
        })?;
        self.written.insert(rel.to_string(), Written::Dir);
        Ok(())
    }

    /// Copy one entry (file, symlink, directory with its contents) from `src` to the absolute
    /// image path `to`.
    pub fn copy_entry(&mut self, src: &Path, meta: &fs::Metadata, to: &str) -> Result<()> {
        let rel = to.trim_start_matches('/');
        let ft = meta.file_type();
        if ft.is_dir() {
            return self.ensure_dir(rel, Some(meta));
        }
        if self.written.get(rel) == Some(&Written::Dir) {
            self.forget_below(rel);
        }
        let (uid, gid) = (self.owner.0.into(), self.owner.1.into());
        if ft.is_symlink() {
            let t = fs::read_link(src).map_err(io_err("readlink", src))?;
            self.emit(&TarEntry {
                mode: 0o777,
                uid,
                gid,
                mtime: meta.mtime(),
                link: Some(t.as_os_str().as_bytes()),
                ..TarEntry::new(rel.as_bytes(), EntryType::Symlink)
            })?;
            let t = t.to_string_lossy().into_owned();
            self.written.insert(rel.to_string(), Written::Symlink(t));
            return Ok(());
        }
        let mode = self.chmod.unwrap_or(meta.mode() & 0o7777);
        if ft.is_file() {
            // Never through a symlink: sources were resolved inside their root already.
            let mut f = fs::File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(src)
                .map_err(io_err("open", src))?;
            self.emit(&TarEntry {
                mode,
                uid,
                gid,
                mtime: meta.mtime(),
                size: meta.len(),
                ..TarEntry::new(rel.as_bytes(), EntryType::Regular)
            })?;
            self.out.data(&mut f, meta.len()).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    CopyError::Changed(src.to_path_buf())
                } else {
                    io_err("copy", src)(e)
                }
            })?;
        } else {
            // Devices, fifos, sockets: Docker copies them too; a fifo is all we make.
            self.emit(&TarEntry {
                mode,
                uid,
                gid,
                mtime: meta.mtime(),
                ..TarEntry::new(rel.as_bytes(), EntryType::Fifo)
            })?;
        }
        self.written.insert(rel.to_string(), Written::File);
        Ok(())
    }

    /// Copy a directory's contents (filtered) to the absolute image directory `to`.
    pub fn copy_tree(&mut self, root: &Path, rel: &str, to: &str, filter: &Filter) -> Result<()> {
        let src = root.join(rel);
        let top = fs::metadata(&src).map_err(io_err("stat", &src))?;
        self.ensure_parents(to)?;
        self.ensure_dir(to.trim_start_matches('/'), Some(&top))?;
        // The walk's own lstat of each entry serves the copy: no second stat per file.
        let base = to.trim_end_matches('/');
        for (e, m) in entries(root, rel, filter).iter().skip(1) {
            let suffix = if rel.is_empty() {
                e.as_str()
            } else {
                &e[rel.len() + 1..]
            };
            let p = root.join(e);
            let target = format!("{base}/{suffix}");
            self.copy_entry(&p, m, &target)?;
        }
        Ok(())
    }

    /// Write literal content (a heredoc) as a 0644 file (or `--chmod`).
    pub fn write_content(&mut self, to: &str, content: &[u8]) -> Result<()> {
        let rel = to.trim_start_matches('/');
        if self.written.get(rel) == Some(&Written::Dir) {
            self.forget_below(rel);
        }
        self.emit(&TarEntry {
            mode: self.chmod.unwrap_or(0o644),
            uid: self.owner.0.into(),
            gid: self.owner.1.into(),
            mtime: self.now,
            size: content.len() as u64,
            ..TarEntry::new(rel.as_bytes(), EntryType::Regular)
        })?;
        self.out
            .data(&mut &content[..], content.len() as u64)
            .map_err(CopyError::Stream)?;
        self.written.insert(rel.to_string(), Written::File);
        Ok(())
    }

    /// ADD of a local archive: its entries go into the absolute image directory `to`, with
    /// their own metadata, owned by `--chown` when one was given. Names pass through as the
    /// archive has them (only prefixed with `to`): the extractor refuses `..` escapes and
    /// links out of the layer, exactly as for an image layer. Returns false when `src` is not
    /// a tar archive we can read (then it is copied as a file).
    pub fn extract_archive(&mut self, src: &Path, to: &str) -> Result<bool> {
        let mut magic = [0u8; 512];
        let n = {
            let mut f = fs::File::open(src).map_err(io_err("open", src))?;
            read_full(&mut f, &mut magic).map_err(io_err("read", src))?
        };
        let f = fs::File::open(src).map_err(io_err("open", src))?;
        let reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else if n >= 4 && magic[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
            Box::new(zstd::Decoder::new(f).map_err(io_err("read", src))?)
        } else if n >= 262 && &magic[257..262] == b"ustar" {
            Box::new(f)
        } else {
            return Ok(false);
        };
        self.ensure_parents(to)?;
        let base = to.trim_start_matches('/').to_string();
        self.ensure_dir(&base, None)?;
        let prefixed = |name: &[u8]| -> Vec<u8> {
            let mut v = if base.is_empty() {
                Vec::new()
            } else {
                format!("{base}/").into_bytes()
            };
            v.extend_from_slice(name);
            v
        };
        let bad = |source: io::Error| CopyError::Archive {
            path: src.to_path_buf(),
            source,
        };
        let mut ar = tar::Archive::new(reader);
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let h = e.header().clone();
            let kind = h.entry_type();
            if kind.is_pax_global_extensions() {
                continue;
            }
            let (mut uid, mut gid) = (h.uid().map_err(bad)?, h.gid().map_err(bad)?);
            if let Some(exts) = e.pax_extensions().map_err(bad)? {
                for ext in exts.flatten() {
                    let num = || std::str::from_utf8(ext.value_bytes()).ok()?.parse().ok();
                    match ext.key_bytes() {
                        b"uid" => uid = num().unwrap_or(uid),
                        b"gid" => gid = num().unwrap_or(gid),
                        _ => {}
                    }
                }
            }
            if self.owner != (0, 0) {
                (uid, gid) = (self.owner.0.into(), self.owner.1.into());
            }
            let path = prefixed(&e.path_bytes());
            let link = e.link_name_bytes().map(|l| match kind {
                // A hardlink names an entry of the archive, which now lives under `to`.
                EntryType::Link => prefixed(&l),
                _ => l.into_owned(),
            });
            let size = if matches!(kind, EntryType::Regular | EntryType::Continuous) {
                e.size()
            } else {
                0
            };
            let dev = match (h.device_major(), h.device_minor()) {
                (Ok(Some(a)), Ok(Some(b))) => Some((a, b)),
                _ => None,
            };
            self.emit(&TarEntry {
                path: &path,
                kind,
                mode: h.mode().map_err(bad)? & 0o7777,
                uid,
                gid,
                mtime: h.mtime().map_err(bad)? as i64,
                size,
                link: link.as_deref(),
                dev,
                xattrs: &[],
            })?;
            if size > 0 {
                self.out.data(&mut e, size).map_err(bad)?;
            }
            // Later destinations of this COPY resolve through what the archive holds.
            let rel = String::from_utf8_lossy(&path);
            let rel = clean(&format!("/{rel}"))
                .trim_start_matches('/')
                .to_string();
            let w = match (kind, link) {
                (EntryType::Directory, _) => Written::Dir,
                (EntryType::Symlink, Some(t)) => {
                    Written::Symlink(String::from_utf8_lossy(&t).into())
                }
                _ => Written::File,
            };
            self.written.insert(rel, w);
        }
        Ok(true)
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve_symlinked_parents_inside_the_image() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        fs::create_dir_all(lower.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", lower.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", lower.join("abs")).unwrap();
        let l = Lowers::new(vec![lower]);
        let mut d = Dest::new(Vec::new(), &l, (0, 0), None);
        assert_eq!(d.resolve("/bin/tool"), "/usr/bin/tool");
        assert_eq!(d.resolve("/abs/tool"), "/usr/bin/tool");
        assert_eq!(d.resolve("/bin"), "/bin");
        assert!(d.is_dir("/usr/bin") && !d.is_dir("/bin"));
        // What this COPY wrote itself counts before the image: a symlink it made is followed,
        // a directory it made is one.
        let m = fs::symlink_metadata(t.path().join("lower/bin")).unwrap();
        d.copy_entry(&t.path().join("lower/bin"), &m, "/opt/link")
            .unwrap();
        assert_eq!(d.resolve("/opt/link/tool"), "/opt/usr/bin/tool");
        d.ensure_parents("/new/dir/x").unwrap();
        assert!(d.is_dir("/new/dir"));
    }
}
