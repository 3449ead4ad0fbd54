//! Owners and modes of what a COPY writes: `--chown` names resolved in the image, `--chmod`,
//! and the confined extraction ([`crate::layer::confine`]) every new layer directory is
//! written through, which holds ids to the container's range.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tar::EntryType;

use super::copy::{CopyError, Result, io_err};
use super::dest::Dest;
use super::fsview::Lowers;
use crate::layer::confine::{self, StreamWriter};
use crate::layer::tarwriter::{TarEntry, TarWriter};
use crate::layer::{ContentPolicy, ExtractMode, Ownership};

/// Parse `--chmod` (octal).
pub fn parse_chmod(s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CopyError::Chmod(s.to_string()))
}

/// Resolve `--chown user[:group]` against the image's /etc/passwd and /etc/group.
pub fn resolve_chown(spec: &str, lowers: &Lowers) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str, what: &str| -> Result<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        lowers
            .read_to_string(file)
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == name)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
            })
            .ok_or_else(|| {
                CopyError::Chown(
                    spec.to_string(),
                    format!("no {what} {name:?} in the image's /{file}"),
                )
            })
    };
    let uid = lookup("etc/passwd", u, "user")?;
    let gid = match g {
        Some(g) if !g.is_empty() => lookup("etc/group", g, "group")?,
        _ => uid,
    };
    Ok((uid, gid))
}

/// Fill the new layer directory `tree` through a [`Dest`]: `fill` writes the tar stream,
/// which the extractor — confined to the container's id range, see
/// [`crate::layer::confine`] — turns into files. `owner` (`--chown`) is checked against the
/// range first, so an id the container cannot hold is an error before anything is written.
pub fn write_tree(
    tree: &Path,
    lowers: &Lowers,
    owner: (u32, u32),
    chmod: Option<u32>,
    policy: &ContentPolicy,
    fill: impl FnOnce(&mut Dest<&mut StreamWriter>) -> Result<()>,
) -> Result<()> {
    if policy.ownership == Ownership::Ignore && owner != (0, 0) {
        // Owners are ignored: dropping a --chown silently would give another image.
        return Err(CopyError::Unmapped {
            uid: owner.0,
            gid: owner.1,
            fix: crate::run::subid_hint::usermod_fix(
                &std::env::var("USER").unwrap_or_else(|_| "$USER".into()),
            ),
        });
    }
    policy.check_ids(
        &format!("--chown {}:{}", owner.0, owner.1),
        owner.0,
        owner.1,
    )?;
    let dir = fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(tree)
        .map_err(io_err("open", tree))?;
    let opts = policy.options(ExtractMode::Plain);
    confine::extract_stream(dir.as_fd(), &opts, policy.confinement, |w| {
        let mut d = Dest::new(w, lowers, owner, chmod);
        fill(&mut d)?;
        d.finish()
    })?;
    Ok(())
}

/// Give the new, empty directory `dir` (a cache mount's) an owner and mode, through the
/// confined extractor; an owner outside the container range is an error. Where only container
/// root is mapped the owner is recorded in the owner xattr ([`Ownership::Xattr`]).
pub fn own_dir(dir: &Path, owner: (u32, u32), mode: u32, policy: &ContentPolicy) -> Result<()> {
    let (uid, gid) = match policy.ownership {
        Ownership::Ignore => (0, 0),
        Ownership::Preserve | Ownership::Xattr => owner,
    };
    policy.check_ids(&format!("uid={uid},gid={gid}"), uid, gid)?;
    let f = fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(io_err("open", dir))?;
    let opts = crate::layer::ExtractOptions {
        root_meta: true,
        ..policy.options(ExtractMode::Plain)
    };
    confine::extract_stream(f.as_fd(), &opts, policy.confinement, |w| {
        let mut t = TarWriter::new(w, None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        t.header(&TarEntry {
            mode: mode & 0o7777,
            uid: uid.into(),
            gid: gid.into(),
            mtime: now,
            ..TarEntry::new(b"./", EntryType::Directory)
        })
        .and_then(|()| t.finish().map(drop))
        .map_err(CopyError::Stream)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_and_chmod_parse() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "app:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(t.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let l = Lowers::new(vec![t.path().to_path_buf()]);
        assert_eq!(resolve_chown("app", &l).unwrap(), (1000, 1000));
        assert_eq!(resolve_chown("app:staff", &l).unwrap(), (1000, 50));
        assert_eq!(resolve_chown("7:8", &l).unwrap(), (7, 8));
        assert!(resolve_chown("ghost", &l).is_err());
        assert_eq!(parse_chmod("0755").unwrap(), 0o755);
        assert!(parse_chmod("rwx").is_err());
    }
}
