//! Reads of the small text files of /proc (`/proc/self/status`, the id maps, the cgroup, a
//! process's `stat`) and sysfs with one `read(2)` where `std::fs::read_to_string` makes
//! about eight: it asks the file's size first (procfs says 0), then grows its buffer from 32
//! bytes with a call per doubling, then reads again to see the end. A container start reads
//! seven such files, and /etc/subuid and /etc/subgid.

use std::io::Read;

/// The text of a /proc or sysfs file (or any regular file): a 4 KiB buffer filled by the
/// first read, grown only for a longer file. A read shorter than asked is the end of the
/// file, as it is for regular files and for procfs and sysfs (their files are made whole
/// and handed out in order), so a short file costs one `read` and no `fstat`.
pub fn read(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = match f.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let asked = buf.len() - len;
        len += n;
        if n < asked {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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
        for len in [0, 1, 4095, 4096, 4097, 8192, 10_000] {
            let p = dir.path().join(format!("f{len}"));
            let text = "x".repeat(len);
            std::fs::write(&p, &text).unwrap();
            assert_eq!(super::read(&p).unwrap(), text, "a file of {len} bytes");
        }
        // A long procfs file, past several buffers.
        let maps = super::read("/proc/self/mountinfo").unwrap();
        assert!(maps.lines().count() >= 1 && maps.ends_with('\n'), "{maps}");
        assert!(super::read(dir.path().join("missing")).is_err());
    }
}
