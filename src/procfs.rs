//! Reads of the small text files of /proc (`/proc/self/status`, the id maps, the cgroup, a
//! process's `stat`) with one `read(2)` where `std::fs::read_to_string` makes about eight: it
//! asks the file's size first (procfs says 0) and then grows its buffer from 32 bytes,
//! a system call per doubling. A container start reads seven such files.

use std::io::Read;

/// The text of a /proc file (or any small file): a 4 KiB buffer filled by the first read,
/// grown only for a longer file.
pub fn read(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut s = String::with_capacity(4096);
    f.read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_proc_file_whole_and_a_long_file_past_the_first_buffer() {
        let status = super::read("/proc/self/status").unwrap();
        assert!(
            status.starts_with("Name:") && status.contains("\nPid:"),
            "{status}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("long");
        let long = "x".repeat(10_000) + "\n";
        std::fs::write(&p, &long).unwrap();
        assert_eq!(super::read(&p).unwrap(), long);
        assert!(super::read(dir.path().join("missing")).is_err());
    }
}
