//! Extended attributes by path (without following symlinks) and by file descriptor.
//!
//! nix has no xattr wrappers, so these call libc directly. Lists and values are read with the
//! usual two-step size probe, retried when the attribute grows between the two calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cname(n: &[u8]) -> io::Result<CString> {
    CString::new(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Run a size-probing libc call until the buffer is big enough.
fn probe(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let n = call(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let m = call(buf.as_mut_ptr().cast(), buf.len());
        if m < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}

/// Names of the xattrs on `path` itself (a symlink is not followed). A filesystem without
/// xattr support has none.
pub fn list(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = cpath(path)?;
    // SAFETY: `p` is a NUL-terminated path that outlives the call; `probe` passes either a
    // null buffer with size 0 or a buffer it owns of exactly `n` writable bytes.
    match probe(|b, n| unsafe { libc::llistxattr(p.as_ptr(), b.cast(), n) }) {
        Ok(raw) => Ok(names(raw)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The value of xattr `name` on `path` itself, or None when it is absent.
pub fn get(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: `p` and `n` are NUL-terminated strings that outlive the call; `probe` passes
    // either a null buffer with size 0 or a buffer it owns of exactly `len` writable bytes.
    match probe(|b, len| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), b, len) }) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in a NUL-separated listxattr buffer.
fn names(raw: Vec<u8>) -> Vec<Vec<u8>> {
    raw.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Names of the xattrs of the object `fd` refers to (none where the filesystem has none).
pub fn flist(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: `fd` is open for the call; `probe` passes a null buffer with size 0 or a
    // buffer it owns of exactly `n` writable bytes.
    match probe(|b, n| unsafe { libc::flistxattr(fd.as_raw_fd(), b.cast(), n) }) {
        Ok(raw) => Ok(names(raw)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The value of xattr `name` on the object `fd` refers to, or None when it is absent.
pub fn fget(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let n = cname(name)?;
    // SAFETY: `fd` is open and `n` NUL-terminated for the call; `probe` passes a null buffer
    // with size 0 or a buffer it owns of exactly `len` writable bytes.
    match probe(|b, len| unsafe { libc::fgetxattr(fd.as_raw_fd(), n.as_ptr(), b, len) }) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Set xattr `name` on the object `fd` refers to (must not be an O_PATH descriptor).
pub fn fset(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: `fd` is open for the duration (borrowed), `n` is NUL-terminated, and the value
    // pointer and length come from one live slice the kernel only reads.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set xattr `name` on `path` itself, not following a final symlink.
pub fn lset(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: `p` and `n` are NUL-terminated and outlive the call; the value pointer and
    // length come from one live slice the kernel only reads.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Remove xattr `name` from the object `fd` refers to; absent is fine.
pub fn fremove(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: `fd` is open for the duration (borrowed) and `n` is NUL-terminated.
    let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), n.as_ptr()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOTSUP)) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// The xattr that records a file's container owner where only container root is mapped
/// ([`super::Ownership::Xattr`]): `"UID:GID"` in decimal. Only regular files and directories
/// can carry `user.*` xattrs, so symlinks, fifos and sockets cannot be given another owner.
pub const OWNER_XATTR: &[u8] = b"user.boxkit.owner";

/// The prefix of every xattr boxkit gives meaning to: never taken from a layer, never
/// written into one.
pub const BOXKIT_XATTR_PREFIX: &[u8] = b"user.boxkit.";

/// The value of [`OWNER_XATTR`] for `uid:gid`.
pub fn format_owner(uid: u32, gid: u32) -> Vec<u8> {
    format!("{uid}:{gid}").into_bytes()
}

/// `uid:gid` from a value of [`OWNER_XATTR`] (plain decimal, nothing else), or None.
pub fn parse_owner(v: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (u, g) = s.split_once(':')?;
    let num = |t: &str| -> Option<u32> {
        if t.is_empty() || t.len() > 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    Some((num(u)?, num(g)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_values_round_trip_and_anything_else_is_refused() {
        assert_eq!(parse_owner(&format_owner(1234, 5)), Some((1234, 5)));
        assert_eq!(parse_owner(b"0:0"), Some((0, 0)));
        for bad in [
            &b""[..],
            b"1234",
            b"1:2:3",
            b"-1:0",
            b"+1:0",
            b" 1:0",
            b"1:",
            b"99999999999:0",
        ] {
            assert_eq!(parse_owner(bad), None, "{bad:?}");
        }
    }
}
