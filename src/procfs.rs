//! Reads of the small text files of /proc (`/proc/self/status`, the id maps, the cgroup, a
//! process's `stat`) and sysfs with one `read(2)` where `std::fs::read_to_string` makes
//! about eight: it asks the file's size first (procfs says 0), then grows its buffer from 32
//! bytes with a call per doubling, then reads again to see the end. A container start reads
//! seven such files, and /etc/subuid and /etc/subgid. Also [`read_spare`], the one `read(2)`
//! into a vector's spare capacity that these reads and the start's pipe and socket messages
//! share.

/// The text of a /proc or sysfs file (or any regular file): a 4 KiB buffer filled by the
/// first read, grown only for a longer file. A read shorter than asked is the end of the
/// file, as it is for regular files and for procfs and sysfs (their files are made whole
/// and handed out in order), so a short file costs one `read` and no `fstat`.
pub fn read(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let asked = buf.capacity() - buf.len();
        let n = match read_spare(f.as_raw_fd(), &mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n < asked {
            break;
        }
        buf.reserve(buf.capacity());
    }
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// One `read(2)` of `fd` (a file, a pipe or a socket: on a socket, one message) appended to
/// `buf`, into its spare capacity, which is never zeroed first: the kernel touches only the
/// bytes it writes, where a zeroed 8–64 KiB buffer faulted in fresh pages at every start for
/// a message of a few bytes. Returns the bytes read (0 at the end, or nothing to read with no
/// spare capacity).
pub fn read_spare(fd: std::os::fd::RawFd, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: read writes at most `spare.len()` bytes into the vector's own allocation.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the `n` bytes after the old length (n <= spare.len()).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
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

    #[test]
    fn read_spare_appends_one_message_and_reports_a_bad_fd() {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, send, socketpair};
        use std::os::fd::AsRawFd;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        for msg in [&b"first"[..], b"second"] {
            send(a.as_raw_fd(), msg, nix::sys::socket::MsgFlags::empty()).unwrap();
        }
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b">");
        // One call, one message: the second stays queued.
        assert_eq!(super::read_spare(b.as_raw_fd(), &mut buf).unwrap(), 5);
        assert_eq!(buf, b">first");
        assert_eq!(super::read_spare(b.as_raw_fd(), &mut buf).unwrap(), 6);
        assert_eq!(buf, b">firstsecond");
        drop(a);
        assert_eq!(
            super::read_spare(b.as_raw_fd(), &mut buf).unwrap(),
            0,
            "closed"
        );
        let err = super::read_spare(-1, &mut buf).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert_eq!(buf, b">firstsecond", "nothing appended on an error");
    }
}
