//! Compression at the store's edge: the layers a build makes are stored as plain tars
//! (`application/vnd.oci.image.layer.v1.tar`, valid OCI; buildah keeps its layers uncompressed
//! too), so no step waits for a compressor. `box push`, `box save`, `boxbuild --push` and
//! `--cache-to` compress them on the way out ([`Store::compressed_manifest`]).
//!
//! - Only plain tar layers are compressed. A layer that already is gzip or zstd (a pulled
//!   base's) leaves as it came: its digest is what the registry gave.
//! - The config is never touched, so the image ID (config digest, whose `diff_ids` are the
//!   uncompressed digests) does not depend on the compression chosen.
//! - gzip is [`crate::layer::pgzip`]'s (no timestamps, blocks cut by input position only) and
//!   zstd has no timestamps either: the same tar gives the same blob, so a pushed manifest is
//!   reproducible under `SOURCE_DATE_EPOCH`.
//! - A compressed blob is made once: `cache/compressed/<tar hex>.<gzip|zstd>` names it (a
//!   hint, checked against the blob store on use; losing it only costs a recompression).

use std::io::BufReader;

use super::Image;
use super::{Result, Store, io_err};
use crate::atomic::{self, Durability};
use crate::digest::Digest;
use crate::image::{Descriptor, Manifest, media};
use crate::layer::Compression;

/// The Docker media type of an uncompressed layer.
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The memo of one compressed blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    digest: Digest,
    size: u64,
}

impl Store {
    /// The image's manifest as it leaves the store with `want`: its plain tar layers
    /// compressed (the blobs stored), every other field as it is. Returns the manifest's
    /// descriptor and value; when nothing changes these are the stored ones, else the new
    /// manifest is stored as a blob too (untagged: prune may remove it).
    pub fn compressed_manifest(
        &self,
        img: &Image,
        want: Compression,
    ) -> Result<(Descriptor, Manifest)> {
        let mut m = img.manifest.clone();
        let docker = m.media_type.as_deref() == Some(media::DOCKER_MANIFEST)
            || img.manifest_desc.media_type == media::DOCKER_MANIFEST;
        let mut changed = false;
        for l in &mut m.layers {
            if let Some(c) = self.compressed_layer(l, want, docker)? {
                *l = c;
                changed = true;
            }
        }
        if !changed {
            return Ok((img.manifest_desc.clone(), m));
        }
        let bytes = serde_json::to_vec(&m).expect("manifest serialises");
        let digest = self.put_blob(&bytes)?;
        let mut desc = img.manifest_desc.clone();
        desc.digest = digest;
        desc.size = bytes.len() as u64;
        Ok((desc, m))
    }

    /// The descriptor of `layer` compressed with `want`, or None when it stays as it is
    /// (already compressed, or `want` is none). `docker`: a Docker manifest's media types.
    pub fn compressed_layer(
        &self,
        layer: &Descriptor,
        want: Compression,
        docker: bool,
    ) -> Result<Option<Descriptor>> {
        let plain =
            layer.media_type == media::OCI_LAYER_TAR || layer.media_type == DOCKER_LAYER_TAR;
        if !plain || want == Compression::None {
            return Ok(None);
        }
        let (ext, mt) = match want {
            Compression::Gzip if docker => ("gzip", media::DOCKER_LAYER_GZIP),
            Compression::Gzip => ("gzip", media::OCI_LAYER_GZIP),
            // Docker has no zstd layer type; buildah writes the OCI one in either manifest.
            _ => ("zstd", media::OCI_LAYER_ZSTD),
        };
        let memo_path = self
            .cache_dir()
            .join("compressed")
            .join(format!("{}.{ext}", layer.digest.hex()));
        let memo = std::fs::read(&memo_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
            .filter(|m| self.has_blob(&m.digest));
        let memo = match memo {
            Some(m) => m,
            None => {
                let m = self.compress_blob(&layer.digest, want)?;
                let dir = memo_path.parent().expect("memo has a parent");
                std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
                let data = serde_json::to_vec(&m).expect("memo serialises");
                // A hint only: a crash may lose it, never leave half of it.
                atomic::write_with(&memo_path, &data, 0o644, Durability::Atomic)
                    .map_err(io_err("write", &memo_path))?;
                m
            }
        };
        let mut d = layer.clone();
        d.media_type = mt.to_string();
        d.digest = memo.digest;
        d.size = memo.size;
        Ok(Some(d))
    }

    /// Compress the stored blob `src` (a plain tar) into a new blob.
    fn compress_blob(&self, src: &Digest, want: Compression) -> Result<Memo> {
        let mut r = BufReader::with_capacity(256 * 1024, self.open_blob(src)?);
        let mut w = self.blob_writer()?;
        let tmp = w.tmp_path().to_path_buf();
        crate::layer::pack::compress(&mut r, &mut w, want, None)
            .map_err(io_err("compress into", &tmp))?;
        let (digest, size) = w.commit(None)?;
        Ok(Memo { digest, size })
    }
}
