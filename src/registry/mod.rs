//! Pull and push images over the OCI distribution API.
//!
//! The entry points the rest of boxkit uses are [`ensure_image`] (what `FROM` and `boxrun`
//! call: resolve locally, pull when the policy says so) and [`push`].
//!
//! Status: only the local half exists so far (policy `never`, and `missing` with the image
//! present); pulling and pushing land with the registry issue.

use std::str::FromStr;

use crate::store::{Image, Store, StoreError};

/// When to contact the registry, as `docker run --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store (docker's default).
    #[default]
    Missing,
    /// Always ask the registry for the current manifest (blobs already stored are skipped).
    Always,
    /// Never contact a registry; fail when the image is not in the store.
    Never,
}

impl FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(Self::Missing),
            "always" | "true" => Ok(Self::Always),
            "never" | "false" => Ok(Self::Never),
            other => Err(format!(
                "invalid pull policy {other:?}: expected missing, always or never"
            )),
        }
    }
}

/// How pull and push report progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a TTY, plain lines otherwise.
    #[default]
    Auto,
    /// One line per finished layer (CI logs).
    Plain,
    /// Nothing.
    Quiet,
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub policy: PullPolicy,
    /// `os/arch[/variant]`; the host's when `None`.
    pub platform: Option<String>,
    pub progress: Progress,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("image {0} is not in the store and --pull=never forbids pulling it")]
    NotLocal(String),
    #[error("not implemented yet: {0}")]
    NotImplemented(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The image `name` refers to, pulled first when `opts.policy` asks for it.
pub fn ensure_image(store: &Store, name: &str, opts: &PullOptions) -> Result<Image> {
    let local = match store.resolve_image(name) {
        Ok(img) => Some(img),
        Err(StoreError::NoSuchImage(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match (opts.policy, local) {
        (PullPolicy::Missing, Some(img)) => Ok(img),
        (PullPolicy::Never, Some(img)) => Ok(img),
        (PullPolicy::Never, None) => Err(RegistryError::NotLocal(name.to_string())),
        _ => pull(store, name, opts),
    }
}

/// Pull `name` into the store and tag it; returns the stored image.
pub fn pull(_store: &Store, _name: &str, _opts: &PullOptions) -> Result<Image> {
    Err(RegistryError::NotImplemented("pull"))
}

/// Push the local image `name` to `dest` (default: `name`); returns the manifest digest.
pub fn push(
    _store: &Store,
    _name: &str,
    _dest: Option<&str>,
    _progress: Progress,
) -> Result<crate::digest::Digest> {
    Err(RegistryError::NotImplemented("push"))
}
