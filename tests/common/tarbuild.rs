//! In-memory tar archives for extraction tests, built entry by entry with the `tar` crate's
//! builder (a writer independent of boxkit's packer). Every header field the tests compare
//! on is given by the caller as a [`Meta`], so each test file keeps its own values.

use tar::{EntryType, Header};

/// An entry's header fields besides its type, path and size.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub mode: u32,
    pub mtime: u64,
    pub uid: u64,
    pub gid: u64,
}

/// A ustar archive in memory; each method appends one entry, and [`Tar::bytes`] ends it.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, size: u64, m: Meta) -> Header {
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(m.mode);
        h.set_size(size);
        h.set_mtime(m.mtime);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h
    }

    /// A regular file holding `data`.
    pub fn file(mut self, path: &str, data: impl AsRef<[u8]>, m: Meta) -> Self {
        let data = data.as_ref();
        let mut h = Self::header(EntryType::Regular, data.len() as u64, m);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A directory.
    pub fn dir(mut self, path: &str, m: Meta) -> Self {
        let mut h = Self::header(EntryType::Directory, 0, m);
        self.0.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }

    /// A symlink or a hardlink (`kind`) to `target`.
    pub fn link(mut self, kind: EntryType, path: &str, target: &str, m: Meta) -> Self {
        let mut h = Self::header(kind, 0, m);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// The archive, with its end-of-archive blocks.
    pub fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}
