//! The build context's content hashes, kept cheap by a stat index.
//!
//! COPY and ADD cache keys cover the *content* of their sources, not mtimes, so touching a file
//! without changing it must still hit the cache. Hashing a large context on every build would
//! cost seconds; instead we remember, per context directory, each regular file's
//! `(size, mtime, ctime, inode, device)` and the sha256 of its bytes. An entry whose stat still
//! matches is trusted; anything else is re-hashed. ctime is part of the key because a
//! `touch -m` with an old mtime (or a same-size rewrite within one mtime tick) still moves
//! ctime.
//!
//! Racy entries: a file rewritten (same size) within one timestamp tick of its hashing keeps
//! the stamp we recorded, so its new bytes would hide behind the old hash. An entry whose
//! ctime is not safely older than the build that hashed it (within [`RACY_NS`] of its start)
//! is therefore saved marked *racy*, and the next build hashes it again before trusting it,
//! as git does for its index.
//!
//! The index is a flat binary file under the store's `cache/context/`, named by a hash of the
//! context's absolute path, replaced atomically: loading 50,000 entries costs a few
//! milliseconds (JSON cost ten times that). A damaged file only costs a rehash.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, ContextError>;

/// How close to a build's start a ctime makes an entry racy: generously above any
/// filesystem's timestamp granularity (1 s on the coarsest we meet).
const RACY_NS: i64 = 2_000_000_000;

/// The first bytes of an index file; another version is ignored (and rebuilt).
const MAGIC: &[u8] = b"boxkit context index 2\n";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    stamp: Stamp,
    /// The sha256 as 64 lowercase hex digits.
    hex: [u8; 64],
    /// Hashed too close to its last change to be trusted by stat alone (see the module doc).
    racy: bool,
}

/// Bytes of one entry after its path: size, mtime, ctime, ino, dev, flags, hex digest.
const FIXED: usize = 8 * 5 + 1 + 64;

/// Content hashes of files in one build context, backed by a persistent stat index.
pub struct ContextHasher {
    root: PathBuf,
    index_file: Option<PathBuf>,
    entries: HashMap<Box<[u8]>, Entry>,
    /// The index being read and parsed in the background (it overlaps the walk of the
    /// context); joined on the first lookup.
    loading: Option<std::thread::JoinHandle<HashMap<Box<[u8]>, Entry>>>,
    /// When this build started, in ns since the epoch (the racy-entry reference).
    started_ns: i64,
    dirty: bool,
    /// Files hashed (not served from the index) during this build; for tests and `--progress`.
    pub hashed: usize,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Parse an index file; None when it is not one (another version, truncated, damaged).
fn parse_index(data: &[u8]) -> Option<HashMap<Box<[u8]>, Entry>> {
    let mut rest = data.strip_prefix(MAGIC)?;
    let mut out = HashMap::with_capacity(rest.len() / (FIXED + 32));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let path = rest.get(4..4 + len)?;
        let f = rest.get(4 + len..4 + len + FIXED)?;
        let mut hex = [0u8; 64];
        hex.copy_from_slice(&f[41..]);
        if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let stamp = Stamp {
            size: u64_at(f, 0),
            mtime_ns: u64_at(f, 1) as i64,
            ctime_ns: u64_at(f, 2) as i64,
            ino: u64_at(f, 3),
            dev: u64_at(f, 4),
        };
        let racy = f[40] & 1 != 0;
        out.insert(path.into(), Entry { stamp, hex, racy });
        rest = &rest[4 + len + FIXED..];
    }
    Some(out)
}

impl ContextHasher {
    /// Open the index for `context` kept under `cache_dir` (None: no persistence).
    pub fn open(context: &Path, cache_dir: Option<&Path>) -> ContextHasher {
        let root = fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let index_file = cache_dir.map(|c| {
            let key = Digest::of_bytes(root.as_os_str().as_encoded_bytes());
            c.join("context").join(format!("{}.idx", &key.hex()[..32]))
        });
        let load = |f: PathBuf| {
            fs::read(f)
                .ok()
                .and_then(|d| parse_index(&d))
                .unwrap_or_default()
        };
        let loading = index_file.clone().map(|f| {
            std::thread::Builder::new()
                .name("context-index".into())
                .spawn(move || load(f))
        });
        // No thread to be had: read it now.
        let (entries, loading) = match loading {
            Some(Ok(h)) => (HashMap::new(), Some(h)),
            Some(Err(_)) => (load(index_file.clone().expect("index file")), None),
            None => (HashMap::new(), None),
        };
        ContextHasher {
            root,
            index_file,
            entries,
            loading,
            started_ns: now_ns(),
            dirty: false,
            hashed: 0,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sha256 of the regular file at `rel` (relative to the context), from the index when
    /// its stat is unchanged.
    pub fn file_digest(&mut self, rel: &str, meta: &fs::Metadata) -> Result<Digest> {
        let hex = self.file_hex(rel, meta)?;
        let hex = std::str::from_utf8(&hex).expect("hex digits");
        Ok(Digest::from_hex(hex).expect("a sha256 in hex"))
    }

    /// The index, once loaded.
    fn loaded(&mut self) -> &mut HashMap<Box<[u8]>, Entry> {
        if let Some(h) = self.loading.take() {
            // A panicked loader (it cannot, short of a bug) only costs a rehash.
            let mut loaded = h.join().unwrap_or_default();
            loaded.extend(self.entries.drain());
            self.entries = loaded;
        }
        &mut self.entries
    }

    /// [`Self::file_digest`] as hex digits, without allocating on an index hit.
    fn file_hex(&mut self, rel: &str, meta: &fs::Metadata) -> Result<[u8; 64]> {
        let stamp = Stamp::of(meta);
        self.loaded();
        if let Some(e) = self.entries.get(rel.as_bytes())
            && e.stamp == stamp
            && !e.racy
        {
            return Ok(e.hex);
        }
        let d = self.hash_file(rel)?;
        let mut hex = [0u8; 64];
        hex.copy_from_slice(d.hex().as_bytes());
        // Changed within RACY_NS of this build's start: its stamp may not move on the next
        // same-size rewrite, so the next build checks its bytes again.
        let racy = stamp.ctime_ns >= self.started_ns - RACY_NS;
        self.entries
            .insert(rel.as_bytes().into(), Entry { stamp, hex, racy });
        self.dirty = true;
        Ok(hex)
    }

    fn hash_file(&mut self, rel: &str) -> Result<Digest> {
        let path = self.root.join(rel);
        let mut f = File::open(&path).map_err(|source| ContextError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|source| ContextError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        self.hashed += 1;
        Ok(h.finish().0)
    }

    /// The index file's bytes.
    fn serialise(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(MAGIC.len() + self.entries.len() * (FIXED + 40));
        data.extend_from_slice(MAGIC);
        for (path, e) in &self.entries {
            data.extend_from_slice(&(path.len() as u32).to_le_bytes());
            data.extend_from_slice(path);
            let s = &e.stamp;
            for v in [s.size, s.mtime_ns as u64, s.ctime_ns as u64, s.ino, s.dev] {
                data.extend_from_slice(&v.to_le_bytes());
            }
            data.push(u8::from(e.racy));
            data.extend_from_slice(&e.hex);
        }
        data
    }

    /// Persist the index if it changed. Failure to save only costs speed next time, so it
    /// is reported but not fatal to callers that choose to ignore it.
    pub fn save(&mut self) -> Result<()> {
        self.loaded();
        let (Some(f), true) = (&self.index_file, self.dirty) else {
            return Ok(());
        };
        let dir = f.parent().expect("index file has a parent");
        fs::create_dir_all(dir).map_err(|source| ContextError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let data = self.serialise();
        // Losing the index in a crash only costs a rehash: no fsync.
        crate::atomic::write_with(f, &data, 0o644, crate::atomic::Durability::Atomic).map_err(
            |source| ContextError::Io {
                op: "write",
                path: f.clone(),
                source,
            },
        )?;
        // The JSON index of earlier versions, if any, is dead weight now.
        let _ = fs::remove_file(f.with_extension("json"));
        self.dirty = false;
        Ok(())
    }
}

/// What a COPY/ADD source contributes to a cache key: its relative path, type, mode, owner,
/// symlink target and content hash. mtimes are deliberately left out.
pub fn describe_entry(
    hasher: &mut ContextHasher,
    rel: &str,
    meta: &fs::Metadata,
) -> Result<String> {
    let mut out = Vec::new();
    describe_into(hasher, rel, meta, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`describe_entry`], appended to `out` (the bytes are the same; this path allocates
/// nothing for a file the index knows).
pub fn describe_into(
    hasher: &mut ContextHasher,
    rel: &str,
    meta: &fs::Metadata,
    out: &mut Vec<u8>,
) -> Result<()> {
    let ft = meta.file_type();
    let _ = write!(
        out,
        "{rel}\0{:o}\0{}:{}\0",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    if ft.is_file() {
        let hex = hasher.file_hex(rel, meta)?;
        out.extend_from_slice(b"f sha256:");
        out.extend_from_slice(&hex);
    } else if ft.is_dir() {
        out.push(b'd');
    } else if ft.is_symlink() {
        let p = hasher.root().join(rel);
        let t = fs::read_link(&p).map_err(|source| ContextError::Io {
            op: "readlink",
            path: p,
            source,
        })?;
        let _ = write!(out, "l {}", t.display());
    } else {
        let _ = write!(out, "o {:o}", meta.mode() & libc::S_IFMT);
    }
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(h: &mut ContextHasher, rel: &str) -> Digest {
        let m = fs::symlink_metadata(h.root().join(rel)).unwrap();
        h.file_digest(rel, &m).unwrap()
    }

    #[test]
    fn unchanged_files_are_not_rehashed_across_builds() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("a"), b"alpha").unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        let d1 = digest_of(&mut h, "a");
        assert_eq!(d1, Digest::of_bytes(b"alpha"));
        assert_eq!(h.hashed, 1);
        age(&mut h);
        h.save().unwrap();

        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        assert_eq!(digest_of(&mut h, "a"), d1);
        assert_eq!(h.hashed, 0, "an unchanged file must come from the index");
    }

    /// An index saved by a build long ago: no entry is racy any more.
    fn age(h: &mut ContextHasher) {
        h.loaded();
        h.started_ns += 10 * RACY_NS;
        for e in h.entries.values_mut() {
            e.racy = e.stamp.ctime_ns >= h.started_ns - RACY_NS;
        }
        h.dirty = true;
    }

    #[test]
    fn file_hashed_in_the_second_it_changed_is_hashed_again_next_build() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let p = ctx.path().join("a");
        fs::write(&p, b"alpha").unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        let before = fs::symlink_metadata(&p).unwrap();
        assert_eq!(digest_of(&mut h, "a"), Digest::of_bytes(b"alpha"));
        h.save().unwrap();
        // A same-size rewrite within one timestamp tick leaves the stamp as recorded: forge
        // exactly that (restore mtime; ctime cannot be set, so compare on the recorded one).
        fs::write(&p, b"alphb").unwrap();
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        drop(f);
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        let e = h.loaded().get(b"a".as_slice()).unwrap();
        assert!(
            e.racy,
            "an entry hashed within a second of its change is racy"
        );
        // Pretend the stamp did not move at all (the racy case): still rehashed.
        let now = fs::symlink_metadata(&p).unwrap();
        h.entries.get_mut(b"a".as_slice()).unwrap().stamp = Stamp::of(&now);
        assert_eq!(digest_of(&mut h, "a"), Digest::of_bytes(b"alphb"));
        assert_eq!(h.hashed, 1);
        // Once the change is old, the stamp alone is trusted again.
        age(&mut h);
        h.save().unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        assert_eq!(digest_of(&mut h, "a"), Digest::of_bytes(b"alphb"));
        assert_eq!(h.hashed, 0);
    }

    #[test]
    fn one_changed_file_among_50000_is_found_and_only_it_rehashed() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        for d in 0..100 {
            let dir = ctx.path().join(format!("d{d:03}"));
            fs::create_dir(&dir).unwrap();
            for i in 0..500 {
                fs::write(dir.join(format!("f{i:03}")), format!("{d} {i}")).unwrap();
            }
        }
        let f = crate::build::copy::Filter {
            ignore: None,
            excludes: None,
        };
        let all = [".".to_string()];
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        let d1 = crate::build::copy::context_digest(&mut h, &all, &f).unwrap();
        assert_eq!(h.hashed, 50_000);
        age(&mut h);
        h.save().unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        assert_eq!(
            crate::build::copy::context_digest(&mut h, &all, &f).unwrap(),
            d1
        );
        assert_eq!(h.hashed, 0, "unchanged files come from the index");
        fs::write(ctx.path().join("d042/f317"), "42 318").unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        let d2 = crate::build::copy::context_digest(&mut h, &all, &f).unwrap();
        assert_ne!(d2, d1, "the edit changes the key");
        assert_eq!(h.hashed, 1, "only the edited file is read");
    }

    #[test]
    fn damaged_index_is_ignored_and_rebuilt() {
        let ctx = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        fs::write(ctx.path().join("a"), b"alpha").unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        digest_of(&mut h, "a");
        h.save().unwrap();
        let idx = h.index_file.clone().unwrap();
        let data = fs::read(&idx).unwrap();
        fs::write(&idx, &data[..data.len() - 3]).unwrap();
        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        assert!(h.loaded().is_empty(), "a truncated index is not used");
        assert_eq!(digest_of(&mut h, "a"), Digest::of_bytes(b"alpha"));
        assert_eq!(h.hashed, 1);
    }

    #[test]
    fn touched_file_is_rehashed_and_keeps_its_digest_edited_file_changes() {
        let ctx = tempfile::tempdir().unwrap();
        let p = ctx.path().join("a");
        fs::write(&p, b"alpha").unwrap();
        let mut h = ContextHasher::open(ctx.path(), None);
        let d1 = digest_of(&mut h, "a");
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(f);
        assert_eq!(digest_of(&mut h, "a"), d1);
        assert_eq!(h.hashed, 2);
        fs::write(&p, b"alphb").unwrap();
        assert_ne!(digest_of(&mut h, "a"), d1);
    }

    #[test]
    fn description_covers_mode_and_content_not_mtime() {
        use std::os::unix::fs::PermissionsExt;
        let ctx = tempfile::tempdir().unwrap();
        let p = ctx.path().join("f");
        fs::write(&p, b"x").unwrap();
        let mut h = ContextHasher::open(ctx.path(), None);
        let desc = |h: &mut ContextHasher| {
            describe_entry(h, "f", &fs::symlink_metadata(&p).unwrap()).unwrap()
        };
        let a = desc(&mut h);
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(desc(&mut h), a);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(desc(&mut h), a);
    }
}
