//! The one way boxkit writes a file that must never be seen half-written: a temporary file
//! with a unique name in the destination's own directory (so the rename cannot cross
//! filesystems), created with its final mode, written, fsynced, renamed over the destination,
//! and the directory fsynced so the rename survives a crash.
//!
//! Writers that stream ([`Staged`]: the store's blobs, hashed as they arrive) and owners of a
//! staging directory on the same filesystem ([`write_in`]: the store's `tmp/`, swept of
//! leftovers after a crash) use the same steps.
//!
//! Runtime state that a reboot makes meaningless anyway (a container's `state.json`: its
//! processes die with the machine) is written [`Durability::Atomic`]: the rename still makes
//! every reader see a whole file, but the two fsyncs — over a millisecond on every container
//! start here — are skipped.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers never see half of it, and it survives a crash (fsync file and directory).
    Durable,
    /// Readers never see half of it; a crash may lose it.
    Atomic,
}

/// Replace `path` with `data` atomically and durably; the file gets `mode` (e.g. 0o600 for
/// anything that may hold secrets) from its creation on, never a wider one.
pub fn write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_with(path, data, mode, Durability::Durable)
}

/// [`write`] with the durability the caller needs.
pub fn write_with(path: &Path, data: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    write_in(dir_of(path), path, data, mode, durability)
}

/// [`write_with`], staging the temporary file in `staging` instead of the destination's own
/// directory: a directory on the same filesystem (so the rename stays atomic) that the owner
/// cleans of leftovers after a crash, as the store does with its `tmp/`.
pub fn write_in(
    staging: &Path,
    path: &Path,
    data: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = Staged::new_in(staging, &format!(".{name}.tmp-"), mode)?;
    tmp.write_all(data)?;
    tmp.commit(path, durability)
}

/// A file being written under a unique temporary name, for writers that stream (the store's
/// blobs are hashed while they arrive). [`Staged::commit`] renames it whole onto its
/// destination; dropping it uncommitted removes it.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
}

impl Staged {
    /// Create the temporary file in `dir` with `mode` from the start. `dir` must be on the
    /// destination's filesystem: the destination's own directory or a staging one beside it.
    pub fn new_in(dir: &Path, prefix: &str, mode: u32) -> io::Result<Staged> {
        // A unique name, created exclusively (O_EXCL) with the final mode; removed on drop.
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        Ok(Staged { tmp })
    }

    /// Where the temporary file is (for error messages).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Rename the file over `dest`; [`Durability::Durable`] fsyncs the file first and `dest`'s
    /// directory after, so the new content survives a crash.
    pub fn commit(self, dest: &Path, durability: Durability) -> io::Result<()> {
        let durable = durability == Durability::Durable;
        if durable {
            self.tmp.as_file().sync_all()?;
        }
        self.tmp.persist(dest).map_err(|e| e.error)?;
        if durable {
            sync_dir(dir_of(dest));
        }
        Ok(())
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// The directory a path's file is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// fsync a directory so a rename in it survives a crash. Best effort: some filesystems refuse.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_the_given_mode_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.json");
        fs::write(&p, "old").unwrap();
        write(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(t.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn staged_in_another_dir_lands_whole_and_a_dropped_one_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join("tmp");
        fs::create_dir(&staging).unwrap();
        let dest = t.path().join("blob");
        let mut s = Staged::new_in(&staging, "blob-", 0o644).unwrap();
        s.write_all(b"content").unwrap();
        assert!(s.path().starts_with(&staging));
        s.commit(&dest, Durability::Durable).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"content");
        let mut dropped = Staged::new_in(&staging, "blob-", 0o644).unwrap();
        dropped.write_all(b"partial").unwrap();
        drop(dropped);
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    }
}
