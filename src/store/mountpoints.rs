//! The mount points layer: a fixed, tiny layer that a container's overlay gets below the
//! image's layers, so that the directories and files its root is mounted on (/proc, /sys,
//! /dev, /etc/hostname, /etc/hosts, /etc/resolv.conf) exist before pid 1 looks for them.
//!
//! Docker does the same with a container's "init" layer. Without it, pid 1 makes each missing
//! mount point in the overlay's upper directory while it builds the root (a copy-up of /etc and
//! six creations for an image that has none of them; the layer takes 0.16 ms off such a start,
//! bench/README.md session 22). The layer sits at the bottom of the stack, so the image wins
//! wherever it has an entry of its own: its /etc, a symlink or a whiteout in its place, its own
//! /etc/hosts. Where the image has none, the container sees these entries (every one is
//! mounted over, except /etc itself, which then is what pid 1 would have made: a 0755
//! directory of the container's root).
//!
//! The layer is a constant tar ([`tar_bytes`], whose digest is [`DIFF_ID`]), unpacked once per
//! store like any other layer (`layers/<DIFF_ID>/`, under the tool context's confinement, so
//! its owner is the container's root), and kept by `box prune` while any container exists
//! ([`is_layer`]).

use std::io::{Seek, Write};
use std::path::PathBuf;

use super::{Result, Store, io_err};
use crate::digest::Digest;
use crate::layer::{self, Compression, ContentPolicy};

/// The diff_id of [`tar_bytes`] (a test checks it).
pub const DIFF_ID: &str = "sha256:238658dbcdfdc293b041d9b1d42e685c807bc5e9fa3db09f43112a50addb3ee8";

/// Whether `hex` (an entry of `layers/`) names the mount points layer, which prune keeps while
/// any container exists.
pub fn is_layer(hex: &str) -> bool {
    DIFF_ID.strip_prefix("sha256:") == Some(hex)
}

/// The layer's tar: the directories dev, etc, proc and sys (0755) and the empty files
/// etc/hostname, etc/hosts and etc/resolv.conf (0644), owned by 0:0, dated 0.
pub fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let entry = |b: &mut tar::Builder<Vec<u8>>, path: &str, dir: bool| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty())
            .expect("a tar entry into memory");
    };
    for (path, dir) in [
        ("dev/", true),
        ("etc/", true),
        ("etc/hostname", false),
        ("etc/hosts", false),
        ("etc/resolv.conf", false),
        ("proc/", true),
        ("sys/", true),
    ] {
        entry(&mut b, path, dir);
    }
    b.into_inner().expect("a tar into memory")
}

impl Store {
    /// The unpacked mount points layer (an overlay lowerdir to put below an image's layers),
    /// unpacking it first if this store has no complete copy; under `policy`, as
    /// [`Store::unpack_layer`]. One `statx` once it is there.
    pub fn mount_points_layer(&self, policy: &ContentPolicy) -> Result<PathBuf> {
        let diff_id: Digest = DIFF_ID.parse().expect("a valid constant digest");
        if let Some(tree) = layer::cached_layer(&self.layers_dir(), &diff_id) {
            return Ok(tree);
        }
        let tmp = self.tmp_dir();
        let mut file =
            tempfile::tempfile_in(&tmp).map_err(io_err("create a temporary file in", &tmp))?;
        file.write_all(&tar_bytes())
            .and_then(|()| file.rewind())
            .map_err(io_err(
                "write the mount points layer into a temporary file in",
                &tmp,
            ))?;
        self.unpack_file(&diff_id, file, Compression::None, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    #[test]
    fn diff_id_is_the_digest_of_the_tar() {
        let hex = hex::encode(Sha256::digest(tar_bytes()));
        assert_eq!(DIFF_ID, format!("sha256:{hex}"));
        assert!(is_layer(&hex));
        assert!(!is_layer("ab"));
    }

    #[test]
    fn tar_holds_the_mount_points_owned_by_root() {
        let bytes = tar_bytes();
        let mut a = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, bool, u32, u64, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type().is_dir(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        let want = [
            ("dev/", true, 0o755),
            ("etc/", true, 0o755),
            ("etc/hostname", false, 0o644),
            ("etc/hosts", false, 0o644),
            ("etc/resolv.conf", false, 0o644),
            ("proc/", true, 0o755),
            ("sys/", true, 0o755),
        ];
        assert_eq!(got.len(), want.len());
        for ((p, d, m, u, s), (wp, wd, wm)) in got.iter().zip(want) {
            assert_eq!(
                (p.trim_end_matches('/'), *d, *m, *u, *s),
                (wp.trim_end_matches('/'), wd, wm, 0, 0)
            );
        }
    }
}
