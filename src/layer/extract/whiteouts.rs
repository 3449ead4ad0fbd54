//! Whiteouts in an archive: applied (Flatten: delete, opaque empties the lower content) or
//! converted into overlay form (Overlay: 0/0 character device, opaque xattr). The names are
//! classified by [`crate::layer::whiteout`]; this is what extraction does with them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::fsat::{is_dir, list_dir, lstat_at, open_dir_at, remove_at};
use super::path::{cstr, join};
use super::{ExtractMode, Extractor, Result};
use crate::layer::whiteout;

impl Extractor<'_> {
    pub(super) fn opaque(&mut self, entry: &str, dir: &[u8]) -> Result<()> {
        match self.opts.mode {
            ExtractMode::Plain => unreachable!("Plain mode classifies no whiteouts"),
            ExtractMode::Overlay(kind) => {
                let fd = self
                    .open_dir(dir, true)
                    .map_err(|e| Self::io(entry, "open parent directory", e))?
                    .ok_or_else(|| {
                        Self::io(
                            entry,
                            "open parent directory",
                            io::ErrorKind::NotFound.into(),
                        )
                    })?;
                whiteout::set_overlay_opaque(fd.as_fd(), kind)
                    .map_err(|e| Self::io(entry, format!("set {}", kind.opaque_name()), e))
            }
            ExtractMode::Flatten => {
                let Some(fd) = self
                    .open_dir(dir, false)
                    .map_err(|e| Self::io(entry, "open parent directory", e))?
                else {
                    return Ok(());
                };
                self.clear_lower(fd.as_fd(), dir)
                    .map_err(|e| Self::io(entry, "remove lower-layer content of opaque dir", e))
            }
        }
    }

    /// Delete everything under `dir` that this layer did not write itself.
    fn clear_lower(&self, dir: BorrowedFd, prefix: &[u8]) -> io::Result<()> {
        for child in list_dir(dir)? {
            let path = join(prefix, child.to_bytes());
            if self.written.contains(&path) {
                if let Some(st) = lstat_at(dir, &child)?
                    && is_dir(&st)
                {
                    let sub = open_dir_at(dir, &child)?;
                    self.clear_lower(sub.as_fd(), &path)?;
                }
            } else {
                remove_at(dir, &child)?;
            }
        }
        Ok(())
    }

    pub(super) fn whiteout(&mut self, entry: &str, parent: &[u8], gone: &[u8]) -> Result<()> {
        let gone_path = join(parent, gone);
        self.planted.remove(&gone_path);
        self.written.remove(&gone_path);
        let n = cstr(gone).map_err(|e| Self::io(entry, "whiteout name", e))?;
        let create = matches!(self.opts.mode, ExtractMode::Overlay(_));
        debug_assert!(self.opts.mode != ExtractMode::Plain);
        let Some(pfd) = self
            .open_dir(parent, create)
            .map_err(|e| Self::io(entry, "open parent directory", e))?
        else {
            return Ok(());
        };
        remove_at(pfd.as_fd(), &n).map_err(|e| Self::io(entry, "remove whited-out path", e))?;
        if create {
            whiteout::make_overlay_whiteout(pfd.as_fd(), &n)
                .map_err(|e| Self::io(entry, "create overlay whiteout (0/0 char device)", e))?;
        }
        Ok(())
    }
}
