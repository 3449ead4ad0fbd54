//! The image a build makes: config and manifest blobs, then tags, and the history entries
//! the steps add to the config.
//!
//! Tags are set only after both blobs are stored, so a failed build leaves every tag as it
//! was. `--format docker` changes media types only: Docker-only config fields (Shell,
//! Healthcheck, OnBuild) are kept in both formats, as Docker does.

use super::fsview::LayerRef;
use crate::boxfile::{Instruction, dump_instruction};
use crate::digest::Digest;
use crate::image::{Descriptor, History, ImageConfig, Index, Manifest, Platform, RootFs};
use crate::image::{Reference, media};
use crate::store::{Store, StoreError};

/// The `comment` of every history entry a step adds, as BuildKit writes it.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The history entry of a layer step (`empty`: it made no layer).
pub fn layer_history(created: String, created_by: String, empty: bool) -> History {
    History {
        created: Some(created),
        created_by: Some(created_by),
        comment: Some(HISTORY_COMMENT.into()),
        empty_layer: empty,
    }
}

/// A history line for a RUN, in BuildKit's form.
pub fn run_created_by(ins: &Instruction) -> String {
    format!("{} # buildkit", dump_instruction(ins))
}

/// Store `cfg` (completed with its rootfs and default platform) and a manifest over `layers`,
/// then, when `record`, tag it with `tags` (or record it untagged). Without `record` the
/// blobs are only stored (an `-o type=local` build keeps no image). Returns the config digest
/// and the manifest's descriptor.
pub fn write_manifest(
    store: &Store,
    layers: &[LayerRef],
    mut cfg: ImageConfig,
    tags: &[Reference],
    docker: bool,
    record: bool,
) -> Result<(Digest, Descriptor), StoreError> {
    if cfg.architecture.is_empty() {
        cfg.architecture = super::plan::host_arch().into();
    }
    if cfg.os.is_empty() {
        cfg.os = "linux".into();
    }
    cfg.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
    };
    let cfg_bytes = serde_json::to_vec(&cfg).expect("config serialises");
    let cfg_digest = store.put_blob(&cfg_bytes)?;
    let (manifest_type, config_type) = if docker {
        (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
    } else {
        (media::OCI_MANIFEST, media::OCI_CONFIG)
    };
    let layers = layers
        .iter()
        .map(|l| {
            Descriptor::new(
                &layer_media_type(&l.media_type, docker),
                l.digest.clone(),
                l.size,
            )
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.into()),
        config: Descriptor::new(config_type, cfg_digest.clone(), cfg_bytes.len() as u64),
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let m_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let m_digest = store.put_blob(&m_bytes)?;
    let desc = Descriptor::new(manifest_type, m_digest, m_bytes.len() as u64);
    if !record {
        return Ok((cfg_digest, desc));
    }
    if tags.is_empty() {
        store.add_untagged(&desc)?;
    }
    for t in tags {
        store.set_tag(t, &desc)?;
    }
    Ok((cfg_digest, desc))
}

/// Store an image index over `members` (each platform's manifest, in the order given) — an
/// OCI index, or with `docker` a Docker manifest list — then, when `record`, tag it with
/// `tags` (or record it untagged). Returns the index's descriptor. The index carries no
/// annotations or timestamps, so the same members always give the same digest.
pub fn write_index(
    store: &Store,
    members: &[(Platform, Descriptor)],
    tags: &[Reference],
    docker: bool,
    record: bool,
) -> Result<Descriptor, StoreError> {
    let media_type = if docker {
        media::DOCKER_MANIFEST_LIST
    } else {
        media::OCI_INDEX
    };
    let manifests = members
        .iter()
        .map(|(p, m)| {
            let mut d = Descriptor::new(&m.media_type, m.digest.clone(), m.size);
            d.platform = Some(p.clone());
            d
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(media_type.into()),
        manifests,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&index).expect("index serialises");
    let digest = store.put_blob(&bytes)?;
    let desc = Descriptor::new(media_type, digest, bytes.len() as u64);
    if record {
        if tags.is_empty() {
            store.add_untagged(&desc)?;
        }
        for t in tags {
            store.set_tag(t, &desc)?;
        }
    }
    Ok(desc)
}

/// The media type a layer gets in the written manifest (the bytes are the same).
pub fn layer_media_type(mt: &str, docker: bool) -> String {
    let gzip = matches!(mt, media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP)
        || mt.ends_with("tar.gzip")
        || mt.ends_with("tar+gzip");
    let plain = mt == media::OCI_LAYER_TAR || mt == "application/vnd.docker.image.rootfs.diff.tar";
    match (docker, gzip, plain) {
        (true, true, _) => media::DOCKER_LAYER_GZIP.into(),
        (true, _, true) => "application/vnd.docker.image.rootfs.diff.tar".into(),
        (false, true, _) => media::OCI_LAYER_GZIP.into(),
        (false, _, true) => media::OCI_LAYER_TAR.into(),
        _ => mt.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_names_each_platform_and_its_media_type_follows_the_format() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let m = |b: &[u8], mt: &str| Descriptor::new(mt, Digest::of_bytes(b), 10);
        let members = vec![
            (
                Platform::parse("linux/amd64").unwrap(),
                m(b"a", media::OCI_MANIFEST),
            ),
            (
                Platform::parse("linux/arm64").unwrap(),
                m(b"b", media::OCI_MANIFEST),
            ),
        ];
        let tag: Reference = "multi".parse().unwrap();
        let d = write_index(&s, &members, std::slice::from_ref(&tag), false, true).unwrap();
        assert_eq!(d.media_type, media::OCI_INDEX);
        let idx: Index = serde_json::from_slice(&s.read_blob(&d.digest).unwrap()).unwrap();
        assert_eq!(idx.media_type.as_deref(), Some(media::OCI_INDEX));
        let plats: Vec<String> = idx
            .manifests
            .iter()
            .map(|d| d.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
        let tags = s.tags().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].target.digest, d.digest);
        // The same members give the same index; docker's list has its own media type.
        let again = write_index(&s, &members, &[], false, false).unwrap();
        assert_eq!(again.digest, d.digest);
        let list = write_index(&s, &members, &[], true, false).unwrap();
        assert_eq!(list.media_type, media::DOCKER_MANIFEST_LIST);
        assert_eq!(
            s.tags().unwrap().len(),
            1,
            "unrecorded indexes add no entry"
        );
    }

    #[test]
    fn layer_media_types_follow_the_format_and_keep_the_compression() {
        assert_eq!(
            layer_media_type(media::OCI_LAYER_GZIP, true),
            media::DOCKER_LAYER_GZIP
        );
        assert_eq!(
            layer_media_type(media::DOCKER_LAYER_GZIP, false),
            media::OCI_LAYER_GZIP
        );
        assert_eq!(
            layer_media_type(media::OCI_LAYER_TAR, true),
            "application/vnd.docker.image.rootfs.diff.tar"
        );
        assert_eq!(layer_media_type("x/zstd", false), "x/zstd");
    }
}
