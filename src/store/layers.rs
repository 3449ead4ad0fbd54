//! Unpacked layers of stored images: the overlay lowerdirs that builds and containers use.
//!
//! Each layer is extracted once, in overlay form, into `layers/<diff_id hex>/` (see
//! [`crate::layer::cache`]); later runs reuse it and never re-extract. Extraction chowns to the
//! archive's ids, so it must run inside the tool's user namespace (where container ids are
//! mapped): every caller is a command that entered it (`boxrun`, `boxbuild`, `box pull`).

use std::path::PathBuf;

use super::image::Image;
use super::{Result, Store, StoreError};
use crate::digest::Digest;
use crate::layer::{self, Compression, ExtractMode, ExtractOptions, OverlayXattr, Ownership};

impl Store {
    /// Options for extracting a layer into the unpacked-layer cache: overlay form, with the
    /// opaque xattr that an overlay mounted inside a user namespace (`userxattr`) reads.
    ///
    /// In a user namespace that maps only the caller's own id (no subordinate range) no other
    /// owner can be represented, so ownership is ignored there and everything belongs to
    /// container root (what podman's `ignore_chown_errors` does); builds that never need
    /// another owner then still work.
    pub fn layer_extract_options() -> ExtractOptions {
        let single = matches!(
            crate::run::userns::state(),
            crate::run::userns::ToolUserns::Remapped(m) if m.single
        );
        ExtractOptions {
            mode: ExtractMode::Overlay(OverlayXattr::User),
            ownership: if single {
                Ownership::Ignore
            } else {
                Ownership::Preserve
            },
        }
    }

    /// The unpacked tree of one layer, extracting the blob `blob` (of `media_type`) into the
    /// cache if it is not there yet.
    pub fn unpack_layer(
        &self,
        diff_id: &Digest,
        blob: &Digest,
        media_type: &str,
    ) -> Result<PathBuf> {
        if let Some(tree) = layer::cached_layer(&self.layers_dir(), diff_id) {
            return Ok(tree);
        }
        let compression =
            Compression::from_media_type(media_type).map_err(|e| StoreError::MediaType {
                media_type: e.0,
                digest: blob.clone(),
            })?;
        let file = self.open_blob(blob)?;
        let r = std::io::BufReader::with_capacity(1 << 20, file);
        Ok(layer::unpack_cached(
            &self.layers_dir(),
            diff_id,
            r,
            compression,
            &Self::layer_extract_options(),
        )?)
    }

    /// The overlay lowerdirs of `image`, bottom layer first, extracting any layer that is not
    /// unpacked yet.
    pub fn unpack_layers(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let diff_ids = image.diff_ids();
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(StoreError::Archive {
                what: format!("image {}", image.id()),
                why: format!(
                    "its config lists {} diff_ids but its manifest {} layers",
                    diff_ids.len(),
                    image.manifest.layers.len()
                ),
            });
        }
        diff_ids
            .iter()
            .zip(&image.manifest.layers)
            .map(|(d, l)| self.unpack_layer(d, &l.digest, &l.media_type))
            .collect()
    }
}
