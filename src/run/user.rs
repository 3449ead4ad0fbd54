//! Resolving `USER` against the image's own /etc/passwd and /etc/group.
//!
//! Docker's rule: `name|uid[:group|gid]`; names must exist in the image's files, numeric ids
//! need not. The primary group defaults to the passwd entry's (0 for unknown uids), HOME to
//! the passwd entry's directory (or `/`), and supplementary groups are the image's groups
//! that list the user by name. [`resolve`] is pure text processing, tested without a kernel.
//!
//! The files come from the container, which may be hostile: a FIFO there would hang the
//! reader (`box exec` reads them as the caller, before it joins the container), a device or a
//! huge file would feed it without end, and a symlink could point anywhere. [`read_db`] opens
//! them inside the container's root (`openat2` RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS),
//! non-blocking, accepts only a regular file of at most [`DB_MAX`] bytes, and says plainly
//! what it found otherwise. A missing file reads as empty, as docker treats it.

use std::io::Read;
use std::os::fd::BorrowedFd;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use thiserror::Error;

/// The largest /etc/passwd or /etc/group boxkit reads (real ones are a few KiB; a
/// directory-sized one is a few MiB).
pub const DB_MAX: u64 = 8 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error(
        "{path} in the container is {kind}, not a regular file: boxkit reads it to resolve \
         the user and refuses anything else (fix the image)"
    )]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} in the container is larger than {max} bytes: refusing to read it")]
    TooBig { path: String, max: u64 },
    #[error("read {path} in the container: {cause}")]
    Read { path: String, cause: nix::Error },
}

pub type Result<T> = std::result::Result<T, UserError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub name: Option<String>,
}

/// Resolve `spec` (None = root) against the contents of /etc/passwd and /etc/group.
pub fn resolve(
    spec: Option<&str>,
    extra: &[String],
    passwd: &str,
    group: &str,
) -> Result<Resolved> {
    let spec = spec.filter(|s| !s.is_empty()).unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = match u.parse::<u32>() {
        Ok(n) => pw.iter().find(|f| f[2].parse() == Ok(n)),
        Err(_) => Some(
            pw.iter()
                .find(|f| f[0] == u)
                .ok_or_else(|| UserError::NoUser(u.to_string()))?,
        ),
    };
    let uid = entry.map_or_else(|| u.parse().unwrap_or(0), |f| f[2].parse().unwrap_or(0));
    let find_group = |g: &str| -> Result<u32> {
        match g.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.to_string())),
        }
    };
    let gid = match g {
        Some(g) => find_group(g)?,
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0].to_string());
    let mut groups = vec![gid];
    if g.is_none()
        && let Some(n) = &name
    {
        for f in &gr {
            if f[3].split(',').any(|m| m == n)
                && let Ok(id) = f[2].parse()
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    for e in extra {
        let id = find_group(e)?;
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok(Resolved {
        uid,
        gid,
        groups,
        home: entry.map_or("/".to_string(), |f| f[5].to_string()),
        name,
    })
}

/// The text of `path` (absolute, as seen in the container) under the container root `root`;
/// empty when it does not exist. See the module documentation for what is refused.
pub fn read_db(root: BorrowedFd, path: &str) -> Result<String> {
    let read_err = |cause: nix::Error| UserError::Read {
        path: path.to_string(),
        cause,
    };
    let how = OpenHow::new()
        // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
        // writer; O_NOCTTY: a terminal never becomes ours.
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(root, path.trim_start_matches('/'), how) {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) => return Ok(String::new()),
        // A socket cannot be opened at all.
        Err(nix::Error::ENXIO) => {
            return Err(UserError::NotRegular {
                path: path.to_string(),
                kind: "a socket",
            });
        }
        Err(e) => return Err(read_err(e)),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(read_err)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFSOCK => Some("a socket"),
        _ => Some("a special file"),
    };
    if let Some(kind) = kind {
        return Err(UserError::NotRegular {
            path: path.to_string(),
            kind,
        });
    }
    let too_big = || UserError::TooBig {
        path: path.to_string(),
        max: DB_MAX,
    };
    if st.st_size as u64 > DB_MAX {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(st.st_size as usize);
    // One byte over the cap tells a file that grew since the fstat.
    std::fs::File::from(fd)
        .take(DB_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_err(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    if bytes.len() as u64 > DB_MAX {
        return Err(too_big());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// [`resolve`] against the container's /etc/passwd and /etc/group under `root`.
pub fn resolve_in(root: BorrowedFd, spec: Option<&str>, extra: &[String]) -> Result<Resolved> {
    let passwd = read_db(root, "/etc/passwd")?;
    let group = read_db(root, "/etc/group")?;
    resolve(spec, extra, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GR: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\nstaff:x:50:\n";

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let r = resolve(Some("alice"), &[], PW, GR).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone(), r.home.as_str()),
            (1000, 1000, vec![1000, 10], "/home/alice")
        );
        let r = resolve(Some("4242:staff"), &[], PW, GR).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 50, "/"));
        let r = resolve(None, &["staff".into()], PW, GR).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone(), r.home.as_str()),
            (0, 0, vec![0, 50], "/root")
        );
        assert_eq!(
            resolve(Some("bob"), &[], PW, GR),
            Err(UserError::NoUser("bob".into()))
        );
        assert_eq!(
            resolve(Some("0:nog"), &[], PW, GR),
            Err(UserError::NoGroup("nog".into()))
        );
    }

    fn root_of(dir: &std::path::Path) -> std::os::fd::OwnedFd {
        std::fs::File::open(dir).unwrap().into()
    }

    #[test]
    fn hostile_databases_are_refused_promptly() {
        use std::os::fd::AsFd;
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let root = root_of(d.path());
        let read = |p: &str| read_db(root.as_fd(), p);
        // Missing: empty, as docker treats it.
        assert_eq!(read("/etc/passwd"), Ok(String::new()));
        // A FIFO with no writer: an error at once, not a hang.
        nix::unistd::mkfifo(
            &etc.join("passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = read("/etc/passwd").unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
        // A directory, a device and a magic link (the last two under the host's own root).
        std::fs::create_dir(etc.join("group")).unwrap();
        let e = read("/etc/group").unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let host = root_of(std::path::Path::new("/"));
        let e = read_db(host.as_fd(), "/dev/zero").unwrap_err();
        assert!(e.to_string().contains("is a character device"), "{e}");
        assert!(matches!(
            read_db(host.as_fd(), "/proc/self/fd/0"),
            Err(UserError::Read {
                cause: nix::Error::ELOOP,
                ..
            })
        ));
        std::fs::remove_dir(etc.join("group")).unwrap();
        // Larger than the cap (sparse, so cheap).
        let f = std::fs::File::create(etc.join("group")).unwrap();
        f.set_len(DB_MAX + 1).unwrap();
        assert!(matches!(read("/etc/group"), Err(UserError::TooBig { .. })));
        // `..` and absolute symlinks stay inside the root.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        std::fs::write(d.path().join("real"), PW).unwrap();
        std::os::unix::fs::symlink("../../../../real", etc.join("passwd")).unwrap();
        assert_eq!(read("/etc/passwd").unwrap(), PW);
    }
}
