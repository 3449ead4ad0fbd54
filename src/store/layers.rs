//! Unpacked layers of stored images: the overlay lowerdirs that builds and containers use.
//!
//! Each layer is extracted once, in overlay form, into `layers/<diff_id hex>/` (see
//! [`crate::layer::cache`]); later runs reuse it and never re-extract. Extraction chowns to the
//! archive's ids, so it must run inside the tool's user namespace (where container ids are
//! mapped): every caller is a command that entered it (`boxrun`, `boxbuild`, `box pull`) and
//! passes the [`ContentPolicy`] of its tool context; as root it runs confined to the container
//! range ([`crate::layer::confine`]).

use std::path::PathBuf;

use super::image::Image;
use super::{Result, Store, StoreError};
use crate::digest::Digest;
use crate::layer::{self, Compression, ContentPolicy, ExtractMode, OverlayXattr};

impl Store {
    /// The unpacked tree of one layer, extracting the blob `blob` (of `media_type`) into the
    /// cache if it is not there yet, with the owners and confinement `policy` allows (the
    /// tool context's, [`crate::run::ToolContext::content_policy`]).
    pub fn unpack_layer(
        &self,
        diff_id: &Digest,
        blob: &Digest,
        media_type: &str,
        policy: &ContentPolicy,
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
        self.unpack_file(diff_id, file, compression, policy)
    }

    /// Extract the layer tar in `file` into the cache as `diff_id` (checked against it), in
    /// overlay form, under `policy`; the caller has seen it is not there yet.
    pub(super) fn unpack_file(
        &self,
        diff_id: &Digest,
        file: std::fs::File,
        compression: Compression,
        policy: &ContentPolicy,
    ) -> Result<PathBuf> {
        // Overlay form, with the opaque xattr that an overlay mounted with `userxattr` reads.
        let opts = policy.options(ExtractMode::Overlay(OverlayXattr::User));
        Ok(layer::unpack_cached(
            &self.layers_dir(),
            diff_id,
            file,
            compression,
            &opts,
            policy.confinement,
        )?)
    }

    /// The overlay lowerdirs of `image`, bottom layer first, extracting any layer that is not
    /// unpacked yet (under `policy`, as [`Store::unpack_layer`]).
    pub fn unpack_layers(&self, image: &Image, policy: &ContentPolicy) -> Result<Vec<PathBuf>> {
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
            .map(|(d, l)| self.unpack_layer(d, &l.digest, &l.media_type, policy))
            .collect()
    }
}
