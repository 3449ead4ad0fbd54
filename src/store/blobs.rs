//! Blob storage: stream into `tmp/`, hash while writing, fsync, rename under the digest.
//!
//! The name of a blob is always the hash of the bytes we wrote, never a value a registry or
//! archive claimed: a [`BlobWriter`] given an expected digest refuses to commit anything else
//! and removes its temporary file, so `blobs/` only ever holds verified content.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{Result, Store, StoreError, io_err};
use crate::atomic::{self, Durability, Staged};
use crate::digest::{Digest, HashingReader, HashingWriter};

/// Mode of every file the store writes under its (0700) root.
const FILE_MODE: u32 = 0o644;

/// A blob being written. Dropping it without [`BlobWriter::commit`] deletes the partial file.
pub struct BlobWriter {
    out: Option<HashingWriter<BufWriter<Staged>>>,
    tmp: PathBuf,
    blobs: PathBuf,
}

impl Store {
    /// Start writing a new blob into `tmp/` (the store's staging directory: its leftovers are
    /// removed when a process finds itself alone with the store).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.tmp_dir();
        let staged = Staged::new_in(&dir, "blob-", FILE_MODE)
            .map_err(io_err("create temporary file in", &dir))?;
        Ok(BlobWriter {
            tmp: staged.path().to_path_buf(),
            out: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                staged,
            ))),
            blobs: self.root().join("blobs/sha256"),
        })
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Store `data` and return its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        w.write_all(data).map_err(io_err("write", &w.tmp))?;
        Ok(w.commit(None)?.0)
    }

    /// Copy a stream into the store, verifying it against `expected` (and `size` if given).
    pub fn put_blob_from(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        io::copy(r, &mut w).map_err(io_err("write", &w.tmp))?;
        if let (Some(size), Some(d)) = (size, expected)
            && w.bytes_written() != size
        {
            return Err(StoreError::SizeMismatch {
                digest: d.clone(),
                expected: size,
                actual: w.bytes_written(),
            });
        }
        w.commit(expected)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing(d.clone()),
            _ => StoreError::Io {
                op: "open blob",
                path: p,
                source: e,
            },
        })
    }

    /// Read a (small) blob whole and check it still hashes to its name. Manifests and configs
    /// are read this way; verifying them costs microseconds and catches a damaged store.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut r = HashingReader::new(self.open_blob(d)?);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(io_err("read blob", self.blob_path(d)))?;
        let (_, actual, _) = r.finish();
        if &actual != d {
            return Err(StoreError::Corrupt {
                digest: d.clone(),
                actual,
            });
        }
        Ok(buf)
    }

    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        Ok(fs::metadata(&p).map_err(io_err("stat blob", &p))?.len())
    }
}

impl BlobWriter {
    pub fn bytes_written(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.bytes_written())
    }

    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Finish the blob: flush, fsync, verify against `expected`, and rename it into place.
    /// On a mismatch the temporary file is removed and nothing is stored.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let staged = self.stage()?;
        let (digest, size) = (staged.digest.clone(), staged.size);
        if let Some(exp) = expected
            && exp != &digest
        {
            // Dropping `staged` removes the tmp file.
            return Err(StoreError::DigestMismatch {
                expected: exp.clone(),
                actual: digest,
                size,
            });
        }
        staged.commit()?;
        Ok((digest, size))
    }

    /// Finish writing and hashing, but keep the file in `tmp/`: a caller that can only
    /// judge the content once other entries are read (a docker archive's layers, checked
    /// against a config that comes later) commits it then, or drops it and nothing is stored.
    pub fn stage(mut self) -> Result<StagedBlob> {
        let out = self.out.take().expect("stage once");
        let (buf, digest, size) = out.finish();
        let staged = buf.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        Ok(StagedBlob {
            staged,
            tmp: std::mem::take(&mut self.tmp),
            blobs: std::mem::take(&mut self.blobs),
            digest,
            size,
        })
    }
}

/// A blob written and hashed in `tmp/`, not yet in `blobs/`. Dropping it removes the file.
pub struct StagedBlob {
    staged: Staged,
    tmp: PathBuf,
    blobs: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl StagedBlob {
    /// Where the staged bytes are, to read them before deciding.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Rename the blob into `blobs/` under its digest (a no-op when it is already there).
    pub fn commit(self) -> Result<()> {
        let dest = self.blobs.join(self.digest.hex());
        if dest.exists() {
            // Same content already stored (blobs are immutable); drop ours.
            return Ok(());
        }
        self.staged
            .commit(&dest, Durability::Durable)
            .map_err(io_err("rename blob into place", &dest))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

/// Replace `dest` (a file of the store: `index.json`, `oci-layout`) with `data` atomically and
/// durably, staged in the store's `tmp/` so a crash leaves nothing beside `dest`.
pub(crate) fn write_atomic(root: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let tmpdir = root.join("tmp");
    fs::create_dir_all(&tmpdir).map_err(io_err("create directory", &tmpdir))?;
    atomic::write_in(&tmpdir, dest, data, FILE_MODE, Durability::Durable)
        .map_err(io_err("write", dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_named_by_its_content() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let d = s.put_blob(b"hello").unwrap();
        assert_eq!(d, Digest::of_bytes(b"hello"));
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn mismatched_blob_is_not_stored_and_tmp_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let claimed = Digest::of_bytes(b"good");
        let err = s
            .put_blob_from(&mut &b"evil"[..], Some(&claimed), None)
            .unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&claimed.to_string()));
        assert!(!s.has_blob(&claimed));
        assert!(!s.has_blob(&Digest::of_bytes(b"evil")));
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn truncated_blob_is_rejected_by_size() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let d = Digest::of_bytes(b"full content");
        let err = s
            .put_blob_from(&mut &b"full"[..], Some(&d), Some(12))
            .unwrap_err();
        assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
        assert!(!s.has_blob(&d));
    }

    #[test]
    fn corrupt_blob_is_detected_on_read() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let d = s.put_blob(b"{}").unwrap();
        let p = s.blob_path(&d);
        let mut perm = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(&p, perm).unwrap();
        fs::write(&p, b"[]").unwrap();
        assert!(matches!(s.read_blob(&d), Err(StoreError::Corrupt { .. })));
    }
}
