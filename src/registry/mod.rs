//! Pull and push images over the OCI distribution API.
//!
//! The entry points the rest of boxkit uses are [`ensure_image`] (what `FROM` and `boxrun`
//! call: resolve locally, pull when the policy says so), [`pull`] and [`push`]; `box login` and
//! `box logout` use [`login`] and [`auth::AuthFiles`].
//!
//! - [`config`]: containers-registries.conf(5): mirrors, insecure, blocked, search registries.
//! - [`auth`]: credentials from auth.json / docker config.json and credential helpers.
//! - [`client`]: HTTP sessions: retries with backoff and Retry-After, one re-auth on 401.
//! - [`token`]: WWW-Authenticate challenges, bearer tokens renewed before they lapse,
//!   the OAuth2 refresh-token grant for identity tokens.
//! - `pull`, `push`: the transfers; [`progress`]: bars or plain lines.
//!
//! Blobs stream from the socket through the store's verifying [`crate::store::BlobWriter`]
//! straight to `tmp/`: no layer is ever held in memory, a blob whose bytes do not hash to its
//! digest never enters `blobs/`, and nothing is tagged until every blob is in place.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::Digest;
use crate::image::{Platform, Reference, ReferenceError};
use crate::store::{Image, Store, StoreError};

pub mod auth;
pub mod client;
pub mod config;
pub mod progress;
mod pull;
mod push;
pub mod token;

pub use auth::{AuthFiles, Credentials};
pub use config::RegistriesConf;

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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a TTY, plain lines otherwise.
    #[default]
    Auto,
    /// One line per finished layer (CI logs).
    Plain,
    /// Nothing.
    Quiet,
    /// Every change to a [`progress::TransferEvents`] (the build's TTY and rawjson views).
    Events(progress::EventSink),
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub policy: PullPolicy,
    /// `os/arch[/variant]`; the host's when `None`.
    pub platform: Option<String>,
    pub progress: Progress,
    /// Also extract each layer into the unpacked-layer cache as soon as it is downloaded
    /// ("unpack to ready"), under this policy (the tool context's). Only possible inside the
    /// tool's user namespace.
    pub unpack: Option<crate::layer::ContentPolicy>,
    /// Read credentials from this file only (`--authfile`).
    pub authfile: Option<PathBuf>,
}

/// Options of [`push_with`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub progress: Progress,
    pub authfile: Option<PathBuf>,
    /// How the image's plain tar layers (a build's) are compressed on the way out
    /// (`--compression-format`); layers already compressed are pushed as they are.
    pub compression: crate::layer::Compression,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("image {0} is not in the store and --pull=never forbids pulling it")]
    NotLocal(String),
    #[error("image {name} not found (asked {}); check the name and tag", .tried.join(", "))]
    NotFound { name: String, tried: Vec<String> },
    #[error(
        "{registry} refused access to {name} (unauthorized); tried {tried}; \
         run `box login {registry}` with an account that may read it"
    )]
    Unauthorized {
        name: String,
        registry: String,
        tried: String,
    },
    #[error(
        "TLS connection to {registry} failed: {cause}; if {registry} serves plain HTTP, mark it \
         insecure in registries.conf ([[registry]] location = \"{registry}\" insecure = true)"
    )]
    Tls { registry: String, cause: String },
    #[error(
        "TLS connection to {registry} failed: its certificate is not signed by a CA boxkit \
         trusts ({cause}); add the registry's CA certificate (PEM) with \
         SSL_CERT_FILE=/path/to/ca.pem (or a directory with SSL_CERT_DIR), or to the system's \
         CA store (/usr/local/share/ca-certificates, then update-ca-certificates)"
    )]
    UntrustedCertificate { registry: String, cause: String },
    #[error(
        "cannot reach registry {registry}: {cause}; check the network, or configure a mirror in registries.conf"
    )]
    Unreachable {
        registry: String,
        cause: String,
        dns: bool,
    },
    #[error("{what}: {cause}")]
    Network { what: String, cause: String },
    #[error("{what}: HTTP {status}{}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Http {
        what: String,
        status: u16,
        body: String,
    },
    #[error("pulling {name} is blocked by {}", .conf.as_ref().map_or("registries.conf".to_string(), |p| p.display().to_string()))]
    Blocked { name: String, conf: Option<PathBuf> },
    #[error(
        "image {name} has no variant for platform {wanted}; it has: {}; pick one with --platform",
        .available.join(", ")
    )]
    PlatformMissing {
        name: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("image {name} is for platform {actual}, not the requested {wanted}")]
    PlatformMismatch {
        name: String,
        wanted: String,
        actual: String,
    },
    #[error(
        "cannot push {name}: its platform {platform} ({digest}) is not in the store; pull it \
         first (`box pull --platform {platform} {name}`) or remove it from the index \
         (`box manifest remove {name} {digest}`)"
    )]
    PlatformNotPulled {
        name: String,
        platform: String,
        digest: Digest,
    },
    #[error("invalid --platform: {0}")]
    BadPlatform(String),
    #[error("manifest of {name}: {why}")]
    BadManifest { name: String, why: String },
    #[error(
        "manifest of {name} hashes to {actual}, not the requested {expected}; it was not stored"
    )]
    ManifestDigest {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "blob {digest}: the download ended after {got} of {expected} bytes ({cause}); nothing was stored"
    )]
    Truncated {
        digest: Digest,
        got: u64,
        expected: u64,
        cause: String,
    },
    #[error(
        "{what} {digest} of {name} is {}, over the {} limit for {what}s; refused before \
         download (if you trust the image, raise {var})",
        crate::limits::human(*.size), crate::limits::human(*.limit)
    )]
    TooLarge {
        name: String,
        what: &'static str,
        digest: Digest,
        size: u64,
        limit: u64,
        var: &'static str,
    },
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitsError),
    #[error("{primary}; also tried: {}", .others.join("; "))]
    Fallback {
        primary: Box<RegistryError>,
        others: Vec<String>,
    },
    #[error("registries configuration {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("auth file {path}: {why}")]
    AuthFile { path: PathBuf, why: String },
    #[error("credential helper {helper}: {why}")]
    CredentialHelper { helper: String, why: String },
    #[error("{0}")]
    Runtime(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// Errors about this image at this place (as opposed to "could not talk to it at all"):
    /// when mirrors fall back, these are the ones worth reporting first.
    fn is_about_content(&self) -> bool {
        !matches!(
            self,
            RegistryError::Unreachable { .. }
                | RegistryError::Tls { .. }
                | RegistryError::UntrustedCertificate { .. }
                | RegistryError::Network { .. }
                | RegistryError::Http { .. }
        )
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What the store has for a name and platform: the image, or a platform that must still be
/// pulled into the index the name is tagged to.
enum Local {
    Image(Box<Image>),
    Missing,
    /// The name is tagged to an index listing the platform, whose manifest is not stored.
    Entry {
        name: Reference,
        index: Box<crate::image::Descriptor>,
        entry: Digest,
    },
    /// The name is stored, for another platform than the one asked for.
    Other(StoreError),
}

/// The image `name` refers to, for `opts.platform` (when given), pulled first when
/// `opts.policy` asks for it. A name tagged to an index that lists the platform but lacks it
/// gets that platform's manifest pulled into the same index; the tag never flips to another
/// platform's image.
pub fn ensure_image(store: &Store, name: &str, opts: &PullOptions) -> Result<Image> {
    let want = match &opts.platform {
        Some(p) => Some(Platform::parse(p).map_err(RegistryError::BadPlatform)?),
        None => None,
    };
    let find =
        |n: &str| -> Result<Local> {
            match store.resolve_image_for(n, want.as_ref()) {
                Ok(img) => Ok(Local::Image(Box::new(img))),
                Err(StoreError::NoSuchImage(_)) => Ok(pulled_by_digest(store, n)?
                    .map_or(Local::Missing, |i| Local::Image(Box::new(i)))),
                Err(StoreError::PlatformNotStored(ns)) => {
                    let name: Reference = n.parse()?;
                    let manifest = ns.manifest;
                    let index = store
                        .tag_target(n)?
                        .filter(|d| d.digest == ns.index)
                        .ok_or_else(|| StoreError::NoSuchImage(n.to_string()))?;
                    Ok(Local::Entry {
                        name,
                        index: Box::new(index),
                        entry: manifest,
                    })
                }
                Err(
                    e @ (StoreError::PlatformMismatch { .. } | StoreError::PlatformMissing { .. }),
                ) => Ok(Local::Other(e)),
                Err(e) => Err(e.into()),
            }
        };
    // The plain name first, so that starting a stored image reads no registries.conf (a
    // millisecond of TOML with the system's short-name drop-ins). A short name with an
    // `[aliases]` entry then means the aliased image, here as in `pull`: found in the store
    // under that name, or pulled from there.
    let mut local = find(name)?;
    let missing = matches!(local, Local::Missing);
    let aliased = if missing || matches!(opts.policy, PullPolicy::Always) {
        aliased(name)
    } else {
        None
    };
    if missing && let Some(a) = &aliased {
        local = find(a)?;
    }
    let name = aliased.as_deref().unwrap_or(name);
    match (opts.policy, local) {
        (PullPolicy::Missing | PullPolicy::Never, Local::Image(img)) => Ok(*img),
        (PullPolicy::Never, Local::Missing) => Err(RegistryError::NotLocal(name.to_string())),
        (PullPolicy::Never, Local::Other(e)) => Err(e.into()),
        (PullPolicy::Never, Local::Entry { name, .. }) => Err(RegistryError::NotLocal(format!(
            "{name} for platform {}",
            opts.platform.as_deref().unwrap_or("?")
        ))),
        (PullPolicy::Missing, Local::Entry { name, index, entry }) => {
            let rep = progress::Reporter::new(&opts.progress);
            block_on(pull::pull_entry(store, &name, &index, &entry, opts, &rep))
        }
        _ => pull(store, name, opts),
    }
}

/// The fully qualified name an `[aliases]` entry gives the short name `name`, if any. A
/// registries.conf that does not load is left for the pull to report.
fn aliased(name: &str) -> Option<String> {
    if Reference::parse_is_qualified(name) || store_id_like(name) {
        return None;
    }
    let conf = RegistriesConf::load().ok()?;
    conf.alias(name).ok().flatten().map(|r| r.to_string())
}

/// An image ID or its prefix (hex only), which no alias may shadow.
fn store_id_like(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `name@sha256:<index digest>` was pulled by an older boxkit, which tagged the platform's
/// manifest with that name, whose digest differs from the one in the name.
fn pulled_by_digest(store: &Store, name: &str) -> Result<Option<Image>> {
    let Ok(r) = name.parse::<Reference>() else {
        return Ok(None);
    };
    if r.digest().is_none() {
        return Ok(None);
    }
    let tagged = store
        .tags()?
        .into_iter()
        .find(|t| t.name.as_ref() == Some(&r));
    match tagged {
        Some(t) => Ok(Some(store.resolve_image(&format!(
            "{}@{}",
            r.name(),
            t.target.digest
        ))?)),
        None => Ok(None),
    }
}

/// Pull `name` into the store and tag it; returns the stored image.
pub fn pull(store: &Store, name: &str, opts: &PullOptions) -> Result<Image> {
    let rep = progress::Reporter::new(&opts.progress);
    block_on(pull::pull(store, name, opts, &rep))
}

/// Push the local image `name` to `dest` (default: `name`); returns the manifest digest. A
/// name tagged to an image index pushes every platform and then the index (whose digest is
/// returned); a platform of the index that is not in the store is an error naming it.
pub fn push(store: &Store, name: &str, dest: Option<&str>, progress: Progress) -> Result<Digest> {
    push_with(
        store,
        name,
        dest,
        &PushOptions {
            progress,
            authfile: None,
            compression: crate::layer::Compression::Gzip,
        },
    )
}

/// [`push`] with every option.
pub fn push_with(
    store: &Store,
    name: &str,
    dest: Option<&str>,
    opts: &PushOptions,
) -> Result<Digest> {
    let rep = progress::Reporter::new(&opts.progress);
    block_on(push::push(store, name, dest, opts, &rep))
}

/// The raw manifest or index `name` has in its registry and its media type (`box manifest
/// inspect` of a remote name); nothing is stored.
pub fn remote_manifest(name: &str, opts: &PullOptions) -> Result<(Vec<u8>, String)> {
    block_on(pull::remote_manifest(name, opts))
}

/// Check `creds` against `server` (its `/v2/` endpoint, as configured in registries.conf) and
/// record them in the auth file; returns the file written.
pub fn login(server: &str, creds: &Credentials, files: &AuthFiles) -> Result<PathBuf> {
    block_on(pull::check_login(server, creds))?;
    files.store(server, creds)
}

/// Run a future to completion on a small runtime of our own. Callers are synchronous; when
/// one already runs inside a tokio runtime, block_on there would panic, so use a thread.
fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("create the tokio runtime");
        rt.block_on(f)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join().expect("registry thread panicked"))
    } else {
        run()
    }
}
