//! An entry's metadata: read from the ustar header with PAX overrides, its ids checked
//! against the container range before anything is created, and applied in the order the
//! kernel needs (owner, mode, xattrs, times). Directory times are applied last of all.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use super::fsat::{self, Obj, errno};
use super::path::{cstr, lossy, split_last};
use super::{ExtractError, ExtractOptions, Extractor, Notes, Ownership, Result};
use crate::layer::xattr;

/// An entry's metadata, from the ustar header with PAX overrides applied.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Extractor<'_> {
    pub(super) fn meta<R: Read>(entry: &mut tar::Entry<R>, name: &str) -> Result<Meta> {
        let bad = |what: &str, e: io::Error| Self::hostile(name, format!("invalid {what}: {e}"));
        let h = entry.header();
        let mut m = Meta {
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            uid: h.uid().map_err(|e| bad("uid", e))?,
            gid: h.gid().map_err(|e| bad("gid", e))?,
            mtime: h.mtime().map_err(|e| bad("mtime", e))? as i64,
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("PAX header", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("PAX header", e))?;
                let key = ext.key_bytes();
                let num = || -> Option<i64> {
                    let v = std::str::from_utf8(ext.value_bytes()).ok()?;
                    v.split('.').next()?.parse().ok()
                };
                match key {
                    b"uid" => {
                        m.uid = num()
                            .ok_or_else(|| bad("PAX uid", io::ErrorKind::InvalidData.into()))?
                            as u64
                    }
                    b"gid" => {
                        m.gid = num()
                            .ok_or_else(|| bad("PAX gid", io::ErrorKind::InvalidData.into()))?
                            as u64
                    }
                    b"mtime" => m.mtime = num().unwrap_or(m.mtime),
                    _ => {
                        if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                            m.xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        Ok(m)
    }

    /// Refuse an owner outside the container range before anything is created for it.
    pub(super) fn check_ids(&self, name_s: &str, m: &Meta) -> Result<()> {
        let max = u64::from(self.opts.max_id);
        if self.opts.ownership.keeps_owners() && (m.uid >= max || m.gid >= max) {
            return Err(ExtractError::IdOutOfRange {
                entry: name_s.to_string(),
                uid: m.uid,
                gid: m.gid,
                max_id: self.opts.max_id,
            });
        }
        Ok(())
    }

    /// [`apply`] with this extraction's options and notes.
    pub(super) fn apply(&mut self, name_s: &str, obj: &Obj, m: &Meta, times: bool) -> Result<()> {
        apply(self.opts, &mut self.notes, name_s, obj, m, times)
    }

    /// Date every directory, deepest last-created first, now that its content stopped
    /// changing its mtime.
    pub(super) fn finish_dirs(&mut self) {
        let times = std::mem::take(&mut self.dir_times);
        // A directory listed twice takes the time of its last entry, as any other metadata.
        let mut dated = std::collections::HashSet::new();
        for (path, mtime) in times.iter().rev() {
            if !dated.insert(path.as_slice()) {
                continue;
            }
            if path.is_empty() {
                let _ = fsat::set_times(&Obj::Fd(self.root.as_fd()), *mtime);
                continue;
            }
            let (parent, name) = split_last(path);
            let Ok(Some(pfd)) = self.open_dir(parent, false) else {
                continue;
            };
            let Ok(n) = cstr(name) else { continue };
            // The dir may since have been deleted or replaced by a later entry; then there is
            // nothing left to date.
            let _ = fsat::set_times(&Obj::At(pfd.as_fd(), &n, false), *mtime);
        }
    }
}

/// Owner, then mode (chown clears setuid), then xattrs (chown clears
/// security.capability), then mtime (unless deferred, for directories).
pub(super) fn apply(
    opts: &ExtractOptions,
    notes: &mut Notes,
    name_s: &str,
    obj: &Obj,
    m: &Meta,
    times: bool,
) -> Result<()> {
    if opts.ownership == Ownership::Preserve {
        fsat::chown(obj, m.uid as libc::uid_t, m.gid as libc::gid_t).map_err(|source| {
            ExtractError::Chown {
                entry: name_s.to_string(),
                uid: m.uid,
                gid: m.gid,
                source,
            }
        })?;
    }
    fsat::chmod(obj, m.mode)
        .map_err(|e| Extractor::io(name_s, format!("chmod {:o}", m.mode), e))?;
    for (k, v) in &m.xattrs {
        if k.starts_with(xattr::BOXKIT_XATTR_PREFIX) {
            // boxkit's own bookkeeping (the owner of a file where only root is mapped) is
            // never taken from a layer: it would let a layer forge an owner.
            notes.warnings.push(format!(
                "entry {name_s}: xattr {} dropped: boxkit's own xattrs are never taken \
                 from a layer",
                lossy(k)
            ));
            continue;
        }
        let r = match obj {
            Obj::Fd(fd) => xattr::fset(*fd, k, v),
            Obj::At(dir, n, _) => {
                let p = format!("/proc/self/fd/{}", dir.as_raw_fd());
                let mut p = std::path::PathBuf::from(p);
                p.push(std::ffi::OsStr::from_bytes(n.to_bytes()));
                xattr::lset(&p, k, v)
            }
        };
        if let Err(e) = r {
            if matches!(errno(&e), libc::EPERM | libc::ENOTSUP | libc::EACCES) {
                notes
                    .warnings
                    .push(format!("entry {name_s}: xattr {} not set: {e}", lossy(k)));
            } else {
                return Err(Extractor::io(name_s, format!("set xattr {}", lossy(k)), e));
            }
        }
    }
    if opts.ownership == Ownership::Xattr {
        record_owner(notes, name_s, obj, m)?;
    }
    if times {
        fsat::set_times(obj, m.mtime).map_err(|e| Extractor::io(name_s, "set mtime", e))?;
    }
    Ok(())
}

/// [`Ownership::Xattr`]: the owner goes into the owner xattr (after the archive's own
/// xattrs, so nothing overrides it); 0:0 needs none, and an existing directory loses an
/// old one. Only regular files and directories (opened, [`Obj::Fd`]) can carry it.
fn record_owner(notes: &mut Notes, name_s: &str, obj: &Obj, m: &Meta) -> Result<()> {
    let owner = (m.uid as u32, m.gid as u32);
    match obj {
        Obj::Fd(fd) if owner == (0, 0) => xattr::fremove(*fd, xattr::OWNER_XATTR)
            .map_err(|e| Extractor::io(name_s, "remove owner xattr", e)),
        Obj::Fd(fd) => {
            let v = xattr::format_owner(owner.0, owner.1);
            xattr::fset(*fd, xattr::OWNER_XATTR, &v).map_err(|e| {
                Extractor::io(
                    name_s,
                    format!(
                        "record owner {}:{} in xattr user.boxkit.owner",
                        m.uid, m.gid
                    ),
                    e,
                )
            })
        }
        Obj::At(..) if owner == (0, 0) => Ok(()),
        Obj::At(..) => {
            notes
                .unowned
                .push(format!("{name_s} ({}:{})", m.uid, m.gid));
            Ok(())
        }
    }
}
