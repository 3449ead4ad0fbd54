//! The build context's content hashes, kept cheap by a stat index.
//!
//! COPY and ADD cache keys cover the *content* of their sources, not mtimes, so touching a file
//! without changing it must still hit the cache. Hashing a large context on every build would
//! cost seconds; instead we remember, per context directory, each regular file's
//! `(size, mtime, ctime, inode)` and the sha256 of its bytes. An entry whose stat still matches
//! is trusted; anything else is re-hashed. ctime is part of the key because a `touch -m` with
//! an old mtime (or a same-size rewrite within one mtime tick) still moves ctime. The index is
//! a JSON file under the store's `cache/context/`, named by a hash of the context's absolute
//! path, and is replaced atomically.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Entry {
    stamp: Stamp,
    sha256: Digest,
}

/// Content hashes of files in one build context, backed by a persistent stat index.
pub struct ContextHasher {
    root: PathBuf,
    index_file: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    dirty: bool,
    /// Files hashed (not served from the index) during this build; for tests and `--progress`.
    pub hashed: usize,
}

impl ContextHasher {
    /// Open the index for `context` kept under `cache_dir` (None: no persistence).
    pub fn open(context: &Path, cache_dir: Option<&Path>) -> ContextHasher {
        let root = fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let index_file = cache_dir.map(|c| {
            let key = Digest::of_bytes(root.as_os_str().as_encoded_bytes());
            c.join("context").join(format!("{}.json", &key.hex()[..32]))
        });
        let entries = index_file
            .as_ref()
            .and_then(|f| fs::read(f).ok())
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        ContextHasher {
            root,
            index_file,
            entries,
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
        let stamp = Stamp::of(meta);
        if let Some(e) = self.entries.get(rel)
            && e.stamp == stamp
        {
            return Ok(e.sha256.clone());
        }
        let path = self.root.join(rel);
        let mut f = File::open(&path).map_err(|source| ContextError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
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
        let (d, _) = h.finish();
        self.hashed += 1;
        self.entries.insert(
            rel.to_string(),
            Entry {
                stamp,
                sha256: d.clone(),
            },
        );
        self.dirty = true;
        Ok(d)
    }

    /// Persist the index if it changed. Failure to save only costs speed next time, so it
    /// is reported but not fatal to callers that choose to ignore it.
    pub fn save(&mut self) -> Result<()> {
        let (Some(f), true) = (&self.index_file, self.dirty) else {
            return Ok(());
        };
        let dir = f.parent().expect("index file has a parent");
        fs::create_dir_all(dir).map_err(|source| ContextError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let data = serde_json::to_vec(&self.entries).expect("index serialises");
        // Losing the index in a crash only costs a rehash: no fsync.
        crate::atomic::write_with(f, &data, 0o644, crate::atomic::Durability::Atomic).map_err(
            |source| ContextError::Io {
                op: "write",
                path: f.clone(),
                source,
            },
        )?;
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
    let ft = meta.file_type();
    let kind_and_content = if ft.is_file() {
        format!("f {}", hasher.file_digest(rel, meta)?)
    } else if ft.is_dir() {
        "d".to_string()
    } else if ft.is_symlink() {
        let p = hasher.root().join(rel);
        let t = fs::read_link(&p).map_err(|source| ContextError::Io {
            op: "readlink",
            path: p,
            source,
        })?;
        format!("l {}", t.display())
    } else {
        format!("o {:o}", meta.mode() & libc::S_IFMT)
    };
    Ok(format!(
        "{rel}\0{:o}\0{}:{}\0{kind_and_content}\n",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    ))
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
        h.save().unwrap();

        let mut h = ContextHasher::open(ctx.path(), Some(cache.path()));
        assert_eq!(digest_of(&mut h, "a"), d1);
        assert_eq!(h.hashed, 0, "an unchanged file must come from the index");
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
