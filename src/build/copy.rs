//! COPY and ADD: files written straight into a new layer directory, no container.
//!
//! Docker's rules, as BuildKit applies them:
//! - sources are relative to the context (or the `--from` stage/image root) and may be globs;
//!   a directory source copies its *contents*; excluded (`.boxignore`, `--exclude`) paths are
//!   left out;
//! - the destination is a directory when it ends in `/`, when there are several sources, or
//!   when it already is one in the image; a relative destination is relative to WORKDIR;
//!   symlinks in the destination's parents resolve inside the image;
//! - copied entries keep their mode and mtime, belong to 0:0 unless `--chown` (names resolved
//!   in the image; a user without a group uses the uid as gid), `--chmod` sets the mode;
//!   missing parent directories are created 0755 with the same owner;
//! - ADD extracts local tar archives (plain, gzip, zstd) into the destination directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::context::{ContextError, ContextHasher, describe_entry};
use super::fsview::Lowers;
use crate::boxfile::IgnoreMatcher;
use crate::boxfile::ignore::clean;
use crate::digest::Hasher;
use crate::layer::confine::{self, StreamWriter};
use crate::layer::tarwriter::{TarEntry, TarWriter};
use crate::layer::{ContentPolicy, ExtractMode, Ownership};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{0}: not found in the build context (or excluded by .boxignore/.dockerignore or --exclude)"
    )]
    NotFound(String),
    #[error("when copying more than one source the destination must be a directory ending in /")]
    DestNotDir,
    #[error(
        "cannot give files the owner {uid}:{gid}: that id is not mapped in boxkit's user \
         namespace. Your user needs a subordinate id range: sudo usermod --add-subuids \
         100000-165535 --add-subgids 100000-165535 $USER"
    )]
    Unmapped { uid: u32, gid: u32 },
    #[error("write the new layer's content: {0}")]
    Stream(io::Error),
    #[error("{}: changed size while being copied; do not modify the context during a build", .0.display())]
    Changed(PathBuf),
    #[error("ADD {}: read archive: {source}", path.display())]
    Archive { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Extract(#[from] crate::layer::ExtractError),
    #[error("--chown {0:?}: {1}")]
    Chown(String, String),
    #[error("--chmod {0:?}: expected an octal mode such as 0755")]
    Chmod(String),
    #[error("heredoc {0} is not defined")]
    NoHeredoc(String),
    #[error(transparent)]
    Context(#[from] ContextError),
}

type Result<T> = std::result::Result<T, CopyError>;

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError + use<> {
    let path = path.to_path_buf();
    move |source| CopyError::Io { op, path, source }
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Filters applied while reading sources.
pub struct Filter<'a> {
    /// The context's ignore file (only for sources from the context).
    pub ignore: Option<&'a IgnoreMatcher>,
    /// `--exclude` patterns.
    pub excludes: Option<IgnoreMatcher>,
}

impl Filter<'_> {
    /// Whether `rel` (relative to the root) is left out. The ignore file matches paths from
    /// the context root; `--exclude` patterns match paths relative to the source being
    /// copied (`base`), as in BuildKit (`COPY --exclude=*.log src/ /app/`).
    fn skipped(&self, rel: &str, base: &str, is_dir: bool) -> bool {
        let ign = self
            .ignore
            .is_some_and(|m| m.matches(rel, is_dir) && !(is_dir && m.may_contain_exceptions(rel)));
        let sub = if base.is_empty() {
            rel
        } else {
            rel.strip_prefix(base)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(rel)
        };
        ign || (!sub.is_empty()
            && self
                .excludes
                .as_ref()
                .is_some_and(|m| m.matches(sub, is_dir)))
    }
}

/// Resolve `rel` under `root` the way a chroot would: symlinks (in every component, the last
/// included) are followed *inside* `root` — absolute targets start again at `root`, `..`
/// stops at it. Reading sources through this never leaves the context (or a stage's tree):
/// a context symlink to `/etc` cannot smuggle host files into an image, and an image's
/// absolute symlinks resolve in the image, not on the host.
pub fn scoped(root: &Path, rel: &str) -> String {
    use std::collections::VecDeque;
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut cand = root.to_path_buf();
        cand.extend(&done);
        cand.push(&c);
        match fs::symlink_metadata(&cand) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                let Ok(t) = fs::read_link(&cand) else {
                    done.push(c);
                    continue;
                };
                let t = t.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty()).rev() {
                    todo.push_front(part.to_string());
                }
            }
            _ => done.push(c),
        }
    }
    done.join("/")
}

/// The relative paths (`""` = the root) a source pattern selects under `root`, sorted.
pub fn select(root: &Path, pattern: &str, filter: &Filter) -> Result<Vec<String>> {
    let p = clean(&format!("/{pattern}"));
    let p = p.trim_start_matches('/').to_string();
    if p.is_empty() {
        return Ok(vec![String::new()]);
    }
    if !has_glob(&p) {
        let full = root.join(&p);
        return match fs::symlink_metadata(&full) {
            Ok(m) if !filter.skipped(&p, "", m.is_dir()) => Ok(vec![p]),
            _ => Err(CopyError::NotFound(pattern.to_string())),
        };
    }
    let m = IgnoreMatcher::parse(&p);
    let depth = if p.contains("**") {
        usize::MAX
    } else {
        p.split('/').count()
    };
    let mut out = Vec::new();
    fn walk(
        root: &Path,
        rel: &str,
        level: usize,
        depth: usize,
        m: &IgnoreMatcher,
        filter: &Filter,
        out: &mut Vec<String>,
    ) {
        for r in sorted_children(root, rel) {
            let is_dir = fs::symlink_metadata(root.join(&r)).is_ok_and(|m| m.is_dir());
            if m.matches(&r, is_dir) {
                if !filter.skipped(&r, "", is_dir) {
                    out.push(r);
                }
            } else if is_dir && level + 1 < depth {
                walk(root, &r, level + 1, depth, m, filter, out);
            }
        }
    }
    walk(root, "", 0, depth, &m, filter, &mut out);
    if out.is_empty() {
        return Err(CopyError::NotFound(pattern.to_string()));
    }
    Ok(out)
}

/// The entries of directory `root/rel`, sorted by name, as paths relative to `root`
/// (none when it cannot be read).
fn sorted_children(root: &Path, rel: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return Vec::new();
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let n = n.to_string_lossy();
            if rel.is_empty() {
                n.to_string()
            } else {
                format!("{rel}/{n}")
            }
        })
        .collect()
}

/// Every entry a selected source contributes (itself and, for a directory, what is below it,
/// filtered), as paths relative to the root, in walk order.
pub fn entries(root: &Path, rel: &str, filter: &Filter) -> Vec<String> {
    let mut out = vec![rel.to_string()];
    fn walk(root: &Path, rel: &str, base: &str, filter: &Filter, out: &mut Vec<String>) {
        for r in sorted_children(root, rel) {
            let Ok(m) = fs::symlink_metadata(root.join(&r)) else {
                continue;
            };
            if filter.skipped(&r, base, m.is_dir()) {
                continue;
            }
            out.push(r.clone());
            if m.is_dir() {
                walk(root, &r, base, filter, out);
            }
        }
    }
    if fs::metadata(root.join(rel)).is_ok_and(|m| m.is_dir()) {
        walk(root, rel, rel, filter, &mut out);
    }
    out
}

/// The content digest of the sources of a COPY/ADD from the build context: relative paths,
/// modes, owners, symlink targets and content hashes (through the stat index), not mtimes.
pub fn context_digest(
    hasher: &mut ContextHasher,
    patterns: &[String],
    filter: &Filter,
) -> Result<String> {
    let root = hasher.root().to_path_buf();
    let mut h = Hasher::new();
    for pat in patterns {
        h.update(format!("source {pat}\n").as_bytes());
        for rel in select(&root, pat, filter)? {
            let resolved = scoped(&root, &rel);
            h.update(format!("{rel} -> {resolved}\n").as_bytes());
            for e in entries(&root, &resolved, filter) {
                let p = root.join(&e);
                let m = fs::symlink_metadata(&p).map_err(|err| {
                    if err.kind() == io::ErrorKind::NotFound && e == resolved {
                        CopyError::NotFound(rel.clone())
                    } else {
                        io_err("stat", &p)(err)
                    }
                })?;
                h.update(describe_entry(hasher, &e, &m)?.as_bytes());
            }
        }
    }
    Ok(h.finish().0.to_string())
}

/// Parse `--chmod` (octal).
pub fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CopyError::Chmod(s.to_string()))
}

/// Resolve `--chown user[:group]` against the image's /etc/passwd and /etc/group.
pub fn resolve_chown(spec: &str, lowers: &Lowers) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str, what: &str| -> Result<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        lowers
            .read_to_string(file)
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == name)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
            })
            .ok_or_else(|| {
                CopyError::Chown(
                    spec.to_string(),
                    format!("no {what} {name:?} in the image's /{file}"),
                )
            })
    };
    let uid = lookup("etc/passwd", u, "user")?;
    let gid = match g {
        Some(g) if !g.is_empty() => lookup("etc/group", g, "group")?,
        _ => uid,
    };
    Ok((uid, gid))
}

/// Fill the new layer directory `tree` through a [`Dest`]: `fill` writes the tar stream,
/// which the extractor — confined to the container's id range, see
/// [`crate::layer::confine`] — turns into files. `owner` (`--chown`) is checked against the
/// range first, so an id the container cannot hold is an error before anything is written.
pub fn write_tree(
    tree: &Path,
    lowers: &Lowers,
    owner: (u32, u32),
    chmod: Option<u32>,
    policy: &ContentPolicy,
    fill: impl FnOnce(&mut Dest<&mut StreamWriter>) -> Result<()>,
) -> Result<()> {
    if policy.ownership == Ownership::Ignore && owner != (0, 0) {
        // Only container root is mapped: ignoring a --chown would silently drop it.
        return Err(CopyError::Unmapped {
            uid: owner.0,
            gid: owner.1,
        });
    }
    policy.check_ids(
        &format!("--chown {}:{}", owner.0, owner.1),
        owner.0,
        owner.1,
    )?;
    let dir = fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(tree)
        .map_err(io_err("open", tree))?;
    let opts = policy.options(ExtractMode::Plain);
    confine::extract_stream(dir.as_fd(), &opts, policy.confinement, |w| {
        let mut d = Dest::new(w, lowers, owner, chmod);
        fill(&mut d)?;
        d.finish()
    })?;
    Ok(())
}

/// Give the new, empty directory `dir` (a cache mount's) an owner and mode, through the
/// confined extractor; an owner outside the container range is an error. Where only container
/// root is mapped, the directory stays container root's.
pub fn own_dir(dir: &Path, owner: (u32, u32), mode: u32, policy: &ContentPolicy) -> Result<()> {
    let (uid, gid) = match policy.ownership {
        Ownership::Ignore => (0, 0),
        Ownership::Preserve => owner,
    };
    policy.check_ids(&format!("uid={uid},gid={gid}"), uid, gid)?;
    let f = fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(io_err("open", dir))?;
    let opts = crate::layer::ExtractOptions {
        root_meta: true,
        ..policy.options(ExtractMode::Plain)
    };
    confine::extract_stream(f.as_fd(), &opts, policy.confinement, |w| {
        let mut t = TarWriter::new(w, None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        t.header(&TarEntry {
            mode: mode & 0o7777,
            uid: uid.into(),
            gid: gid.into(),
            mtime: now,
            ..TarEntry::new(b"./", EntryType::Directory)
        })
        .and_then(|()| t.finish().map(drop))
        .map_err(CopyError::Stream)
    })?;
    Ok(())
}

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
        let (mode, uid, gid, mtime) = match self.lowers.metadata(rel).filter(|m| m.is_dir()) {
            Some(m) => (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
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
        for e in entries(root, rel, filter).iter().skip(1) {
            let suffix = if rel.is_empty() {
                e.as_str()
            } else {
                &e[rel.len() + 1..]
            };
            let p = root.join(e);
            let m = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
            let target = format!("{}/{suffix}", to.trim_end_matches('/'));
            self.copy_entry(&p, &m, &target)?;
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

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("src/sub")).unwrap();
        fs::write(t.path().join("src/a.txt"), "a").unwrap();
        fs::write(t.path().join("src/b.log"), "b").unwrap();
        fs::write(t.path().join("src/sub/c.txt"), "c").unwrap();
        fs::write(t.path().join("top.txt"), "t").unwrap();
        t
    }

    #[test]
    fn globs_select_like_filepath_match() {
        let t = tree();
        let f = Filter {
            ignore: None,
            excludes: None,
        };
        assert_eq!(select(t.path(), "src/*.txt", &f).unwrap(), ["src/a.txt"]);
        assert_eq!(select(t.path(), "*.txt", &f).unwrap(), ["top.txt"]);
        assert_eq!(select(t.path(), "./src", &f).unwrap(), ["src"]);
        assert_eq!(select(t.path(), ".", &f).unwrap(), [""]);
        assert!(matches!(
            select(t.path(), "nope*", &f),
            Err(CopyError::NotFound(_))
        ));
        let ign = IgnoreMatcher::parse("src/*.log\n");
        let f = Filter {
            ignore: Some(&ign),
            excludes: Some(IgnoreMatcher::parse("sub\n")),
        };
        assert_eq!(entries(t.path(), "src", &f), ["src", "src/a.txt"]);
        let f = Filter {
            ignore: None,
            excludes: Some(IgnoreMatcher::parse("*.txt\n")),
        };
        assert_eq!(
            entries(t.path(), "src", &f),
            ["src", "src/b.log", "src/sub", "src/sub/c.txt"]
        );
    }

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

    #[test]
    fn sources_resolve_inside_the_root_never_outside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("real/sub")).unwrap();
        fs::write(r.join("real/sub/f"), "f").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../../real", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/real/sub", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(scoped(r, "etc-link/passwd"), "etc/passwd");
        assert!(!r.join(scoped(r, "etc-link/passwd")).exists());
        assert_eq!(scoped(r, "up/sub/f"), "real/sub/f");
        assert_eq!(scoped(r, "abs/f"), "real/sub/f");
        assert_eq!(scoped(r, "../../real/./sub/../sub/f"), "real/sub/f");
        assert_eq!(scoped(r, "loop"), "loop");
    }

    #[test]
    fn chown_and_chmod_parse() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "app:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(t.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let l = Lowers::new(vec![t.path().to_path_buf()]);
        assert_eq!(resolve_chown("app", &l).unwrap(), (1000, 1000));
        assert_eq!(resolve_chown("app:staff", &l).unwrap(), (1000, 50));
        assert_eq!(resolve_chown("7:8", &l).unwrap(), (7, 8));
        assert!(resolve_chown("ghost", &l).is_err());
        assert_eq!(parse_chmod("0755").unwrap(), 0o755);
        assert!(parse_chmod("rwx").is_err());
    }
}
