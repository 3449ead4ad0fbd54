//! The OCI types boxkit reads and writes, in one place: image references (Docker's
//! normalisation), media types, descriptors, manifests and indexes, the image config with
//! Docker's extra fields, and platforms.
//!
//! Every type that other tools write keeps the fields boxkit does not know (`extra`, a serde
//! flatten), so what we read and write back loses nothing. Why these are our own types and
//! not the `oci-spec` crate's: docs/architecture.md ("OCI types").

pub mod config;
pub mod descriptor;
pub mod manifest;
pub mod platform;
pub mod reference;

pub use config::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use descriptor::Descriptor;
pub use manifest::{Index, Manifest};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};

/// Read `null` as the type's default, as Go's encoding/json leaves a field at its zero value
/// for `null` (Docker writes `"Volumes": null` and the like).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }
}
