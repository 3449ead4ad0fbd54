//! The one way boxkit writes a file that must never be seen half-written: a temporary file
//! with a unique name in the destination's own directory (so the rename cannot cross
//! filesystems), created with its final mode, written, fsynced, renamed over the destination,
//! and the directory fsynced so the rename survives a crash.
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
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A unique name, created exclusively (O_EXCL) with the final mode; removed on drop.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    let durable = durability == Durability::Durable;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durable {
        sync_dir(dir);
    }
    Ok(())
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
}
