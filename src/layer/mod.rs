//! The layer codec: directory diff → tar(+gzip/zstd) with whiteouts, and safe extraction.
//!
//! A layer travels in two forms. On disk, next to overlayfs, it is a directory in *overlay
//! form*: deletions are 0/0 character devices and a directory that hides everything below it
//! carries an `overlay.opaque` xattr. In a registry it is a tar stream in *OCI form*: deletions
//! are `.wh.<name>` entries and an opaque directory holds a `.wh..wh..opq` entry. [`whiteout`]
//! converts between the two, [`pack`] turns an overlay upper dir into a compressed tar in one
//! streaming pass (yielding the blob digest, the diff_id and the size together), [`extract`]
//! applies a tar onto a directory without ever writing outside it, and [`cache`] keeps
//! unpacked layers under their diff_id so each is extracted once.

pub mod cache;
pub mod confine;
pub mod extract;
pub mod pack;
mod pgzip;
pub mod snapshot;
pub mod tarwriter;
pub mod whiteout;
pub(crate) mod xattr;

pub use cache::{CacheError, cached_layer, unpack_cached};
pub use confine::{Confinement, ContentPolicy};
pub use extract::{
    DEFAULT_MAX_ID, ExtractError, ExtractMode, ExtractOptions, ExtractReport, Ownership, extract,
    extract_at,
};
pub use pack::{PackError, PackOptions, PackResult, pack_dir, write_tar};
pub use snapshot::{Snapshot, SnapshotError};
pub use whiteout::OverlayXattr;
pub use xattr::{BOXKIT_XATTR_PREFIX, OWNER_XATTR, format_owner, parse_owner};

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
}

/// A media type that names no layer format we can read.
#[derive(Debug, thiserror::Error)]
#[error(
    "unsupported layer media type {0:?}: expected an OCI or Docker tar layer \
     (…tar, …tar+gzip, …tar+zstd, …rootfs.diff.tar.gzip)"
)]
pub struct UnknownMediaType(pub String);

impl Compression {
    /// The compression a layer descriptor's media type announces. Foreign (non-distributable)
    /// layers are the same tar formats under another name, so they are accepted too.
    pub fn from_media_type(media_type: &str) -> Result<Self, UnknownMediaType> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Self::Zstd),
            other => Err(UnknownMediaType(other.to_string())),
        }
    }

    /// The OCI media type for a layer written with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "uncompressed" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: expected gzip, zstd or none"
            )),
        }
    }
}

/// The container owner of the file at `path` (lstat `meta`): the owner recorded in
/// `user.boxkit.owner` where only container root is mapped, else the file's own.
pub fn recorded_owner(path: &std::path::Path, meta: &std::fs::Metadata) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    xattr::get(path, xattr::OWNER_XATTR)
        .ok()
        .flatten()
        .and_then(|v| xattr::parse_owner(&v))
        .unwrap_or((meta.uid(), meta.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_compression_and_back() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.media_type()).unwrap(), c);
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert!(Compression::from_media_type("application/json").is_err());
    }
}
