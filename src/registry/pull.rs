//! Pull: resolve the name (search registries, mirrors), fetch the manifest (picking the
//! platform from an index), then stream config and layers into the store, several at once,
//! unpacking each layer as soon as it is verified, and tag last.

use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

use super::auth::{AuthFiles, Credentials};
use super::client::{self, Session, http_client};
use super::config::{Endpoint, RegistriesConf};
use super::progress::{BlobProgress, Reporter};
use super::{PullOptions, RegistryError, Result};
use crate::digest::Digest;
use crate::image::platform::{self, Platform};
use crate::image::{Descriptor, Index, Manifest, Reference, media};
use crate::limits::{self, Limits};
use crate::store::{Image, Store, StoreError};

impl Ctx {
    /// A pull's context from the user's options; `tag`: whether the pulled name is tagged.
    fn new(opts: &PullOptions, tag: bool) -> Result<Ctx> {
        let want = match &opts.platform {
            Some(p) => Some(Platform::parse(p).map_err(RegistryError::BadPlatform)?),
            None => None,
        };
        Ok(Ctx {
            http: http_client()?,
            auth: AuthFiles::new(opts.authfile.clone()),
            conf: RegistriesConf::load()?,
            want,
            unpack: opts.unpack,
            limits: Limits::from_env()?,
            tag,
        })
    }
}

/// Layers downloaded at once (docker's default max-concurrent-downloads).
const PARALLEL: usize = 3;

pub async fn pull(store: &Store, name: &str, opts: &PullOptions, rep: &Reporter) -> Result<Image> {
    let ctx = Ctx::new(opts, true)?;
    let candidates = ctx.conf.candidates(name)?;
    let mut not_found = Vec::new();
    let n = candidates.len();
    for (i, r) in candidates.into_iter().enumerate() {
        match ctx.pull_reference(store, &r, rep).await {
            Ok(img) => return Ok(img),
            Err(RegistryError::NotFound { tried, .. }) if i + 1 < n => not_found.extend(tried),
            Err(RegistryError::NotFound { name, tried }) => {
                not_found.extend(tried);
                return Err(RegistryError::NotFound {
                    name,
                    tried: not_found,
                });
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("candidates() returns at least one name")
}

/// The manifest or index `name` has in its registry (search registries and mirrors as a
/// pull tries them), verified against a pinned digest, with its media type. Nothing is stored.
pub async fn remote_manifest(name: &str, opts: &PullOptions) -> Result<(Vec<u8>, String)> {
    let conf = RegistriesConf::load()?;
    let http = http_client()?;
    let auth = AuthFiles::new(opts.authfile.clone());
    let mut errors: Vec<(String, RegistryError)> = Vec::new();
    for r in conf.candidates(name)? {
        for ep in conf.pull_endpoints(&r)? {
            let attempt = async {
                let full = r.to_string();
                let scope = format!("repository:{}:pull", ep.repository);
                let s = Session::open(&http, &ep, &auth, &[scope], &full).await?;
                let reference = match r.digest() {
                    Some(d) => d.to_string(),
                    None => r.tag().unwrap_or("latest").to_string(),
                };
                let (bytes, mt) = s.get_manifest(&reference, &full).await?;
                if let Some(expected) = r.digest()
                    && *expected != Digest::of_bytes(&bytes)
                {
                    return Err(RegistryError::ManifestDigest {
                        name: full,
                        expected: expected.clone(),
                        actual: Digest::of_bytes(&bytes),
                    });
                }
                Ok((bytes, mt))
            };
            match attempt.await {
                Ok(found) => return Ok(found),
                Err(e) => errors.push((ep.host.clone(), e)),
            }
        }
    }
    Err(combine(errors))
}

/// Verify that `creds` open `server`'s `/v2/`.
pub async fn check_login(server: &str, creds: &Credentials) -> Result<()> {
    let conf = RegistriesConf::load()?;
    let host = super::auth::normalize_key(server);
    let host = host.split('/').next().unwrap_or(&host).to_string();
    let ep = Endpoint {
        insecure: conf.is_insecure_host(&host),
        host,
        repository: String::new(),
        mirror: false,
    };
    // A private auth file holding only these credentials, so the session tries exactly them.
    let dir = tempfile::tempdir().map_err(|e| RegistryError::Runtime(e.to_string()))?;
    let files = AuthFiles::new(Some(dir.path().join("auth.json")));
    files.store(&ep.host, creds)?;
    let http = http_client()?;
    // Opening the session follows the registry's challenge with exactly these credentials
    // and fails with Unauthorized if they are refused. (A registry that lets anyone in never
    // challenges, so there is nothing to check.)
    Session::open(&http, &ep, &files, &[], &ep.host).await?;
    Ok(())
}

struct Ctx {
    http: reqwest::Client,
    auth: AuthFiles,
    conf: RegistriesConf,
    want: Option<Platform>,
    unpack: Option<crate::layer::ContentPolicy>,
    limits: Limits,
    /// Tag the reference when done (false: adding an entry to an index already tagged).
    tag: bool,
}

/// The manifest chosen for a reference, fetched and verified but not stored yet.
struct Resolved {
    session: Session,
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    /// The index the name resolved to, with its bytes (stored with the manifest).
    index: Option<(Descriptor, Vec<u8>)>,
}

impl Ctx {
    async fn pull_reference(&self, store: &Store, r: &Reference, rep: &Reporter) -> Result<Image> {
        let endpoints = self.conf.pull_endpoints(r)?;
        let mut errors: Vec<(String, RegistryError)> = Vec::new();
        for ep in &endpoints {
            let attempt = async {
                let res = self.resolve(ep, r).await?;
                self.fetch(store, r, res, rep).await
            };
            match attempt.await {
                Ok(img) => return Ok(img),
                Err(e) => {
                    if endpoints.len() > 1 {
                        rep.line(&format!("{}: pull from {} failed: {e}", r, ep.host));
                    }
                    errors.push((ep.host.clone(), e));
                }
            }
        }
        Err(combine(errors))
    }

    async fn resolve(&self, ep: &Endpoint, r: &Reference) -> Result<Resolved> {
        let name = r.to_string();
        let scope = format!("repository:{}:pull", ep.repository);
        let session = Session::open(&self.http, ep, &self.auth, &[scope], &name).await?;
        let reference = match r.digest() {
            Some(d) => d.to_string(),
            None => r.tag().unwrap_or("latest").to_string(),
        };
        let (bytes, mt) = session.get_manifest(&reference, &name).await?;
        let digest = Digest::of_bytes(&bytes);
        if let Some(expected) = r.digest()
            && *expected != digest
        {
            return Err(RegistryError::ManifestDigest {
                name,
                expected: expected.clone(),
                actual: digest,
            });
        }
        if media::is_manifest(&mt) {
            return Ok(Resolved {
                session,
                bytes,
                media_type: mt,
                digest,
                index: None,
            });
        }
        if !media::is_index(&mt) {
            return Err(RegistryError::BadManifest {
                name,
                why: format!(
                    "unsupported media type {mt} (Docker schema 1 and other formats are not \
                     supported; re-push the image with a current tool)"
                ),
            });
        }
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| bad(&name, e))?;
        // Nesting, absurd sizes and non-image entries are refused before anything is stored.
        index.check().map_err(|why| RegistryError::BadManifest {
            name: name.clone(),
            why: format!("image index {digest}: {why}"),
        })?;
        let platforms = index.platforms();
        let want = self.want.clone().unwrap_or_else(Platform::host);
        let Some(i) = platform::pick(&want, &platforms) else {
            let mut available: Vec<String> =
                platforms.iter().flatten().map(|p| p.to_string()).collect();
            available.dedup();
            return Err(RegistryError::PlatformMissing {
                name,
                wanted: want.to_string(),
                available,
            });
        };
        let chosen = &index.manifests[i];
        let (mbytes, mmt) = session
            .get_manifest(&chosen.digest.to_string(), &name)
            .await?;
        let mdigest = Digest::of_bytes(&mbytes);
        if mdigest != chosen.digest {
            return Err(RegistryError::ManifestDigest {
                name,
                expected: chosen.digest.clone(),
                actual: mdigest,
            });
        }
        if !media::is_manifest(&mmt) {
            return Err(RegistryError::BadManifest {
                name,
                why: format!(
                    "index entry {} ({want}) is served as {mmt}, not as the image manifest the \
                     index says it is; nothing was stored",
                    chosen.digest
                ),
            });
        }
        Ok(Resolved {
            session,
            bytes: mbytes,
            media_type: mmt,
            digest: mdigest,
            index: Some((Descriptor::new(&mt, digest, bytes.len() as u64), bytes)),
        })
    }

    async fn fetch(
        &self,
        store: &Store,
        r: &Reference,
        res: Resolved,
        rep: &Reporter,
    ) -> Result<Image> {
        let name = r.to_string();
        let manifest: Manifest = serde_json::from_slice(&res.bytes).map_err(|e| bad(&name, e))?;
        let s = &res.session;

        // The config first: it names the diff_ids that unpacking needs, and the platform. It
        // is read into memory whole, so its size is capped (and fetch_blob never accepts more
        // bytes than the manifest announced).
        if manifest.config.size > self.limits.max_config_size {
            return Err(RegistryError::TooLarge {
                name,
                what: "image config",
                digest: manifest.config.digest.clone(),
                size: manifest.config.size,
                limit: self.limits.max_config_size,
                var: limits::MAX_CONFIG_SIZE_VAR,
            });
        }
        fetch_blob(s, store, &manifest.config, None).await?;
        let config = store.read_config(&manifest.config.digest)?;
        if let Some(want) = &self.want
            && res.index.is_none()
            && let Some(actual) = config.platform()
            && !want.matches(&actual)
        {
            return Err(RegistryError::PlatformMismatch {
                name,
                wanted: want.to_string(),
                actual: actual.to_string(),
            });
        }
        let diff_ids = config.diff_ids();
        if diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::BadManifest {
                name,
                why: format!(
                    "its config lists {} diff_ids but the manifest {} layers",
                    diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }

        // Layers: download up to PARALLEL at once; unpack each on a blocking thread as soon
        // as it is stored, while the others still download.
        let mut unpacks = Vec::new();
        let root = store.root().to_path_buf();
        let mut spawn_unpack = |i: usize, bar: Option<BlobProgress>| {
            let Some(policy) = self.unpack else {
                if let Some(b) = bar {
                    b.finish("Pull complete");
                }
                return;
            };
            let (root, diff_id, l) = (
                root.clone(),
                diff_ids[i].clone(),
                manifest.layers[i].clone(),
            );
            if let Some(b) = &bar {
                b.status("Extracting");
            }
            unpacks.push(tokio::task::spawn_blocking(move || {
                unpack(root, diff_id, l, &policy)?;
                // "Pull complete" means ready to run, as docker uses it.
                if let Some(b) = bar {
                    b.finish("Pull complete");
                }
                Ok::<(), RegistryError>(())
            }));
        };
        let mut pending = Vec::new();
        for (i, l) in manifest.layers.iter().enumerate() {
            if store.has_blob(&l.digest) {
                rep.blob(&l.digest, l.size, "").finish("Already exists");
                spawn_unpack(i, None);
            } else {
                pending.push(i);
            }
        }
        let mut downloads = futures_util::stream::iter(pending)
            .map(|i| {
                let l = &manifest.layers[i];
                async move {
                    let bar = rep.blob(&l.digest, l.size, "Downloading");
                    fetch_blob(s, store, l, Some(&bar)).await?;
                    Ok::<_, RegistryError>((i, bar))
                }
            })
            .buffer_unordered(PARALLEL);
        while let Some(done) = downloads.next().await {
            let (i, bar) = done?;
            spawn_unpack(i, Some(bar));
        }
        drop(downloads);
        for u in unpacks {
            u.await
                .map_err(|e| RegistryError::Runtime(format!("unpack task failed: {e}")))??;
        }

        // The manifest (and index), verified against the digests computed when they arrived;
        // then the tag, which points at the index when the name resolved to one.
        store.put_blob_from(&mut &res.bytes[..], Some(&res.digest), None)?;
        let desc = Descriptor::new(&res.media_type, res.digest.clone(), res.bytes.len() as u64);
        let target = match &res.index {
            Some((idx, bytes)) => {
                store.put_blob_from(&mut &bytes[..], Some(&idx.digest), None)?;
                idx.clone()
            }
            None => desc.clone(),
        };
        if self.tag {
            store.set_tag(r, &target)?;
            rep.line(&format!("Digest: {}", r.digest().unwrap_or(&target.digest)));
        }
        let names = store
            .tags()?
            .into_iter()
            .filter(|t| t.target.digest == target.digest)
            .filter_map(|t| t.name)
            .collect();
        let img = store.image_from(&desc, names, res.index.as_ref().map(|(d, _)| d))?;
        Ok(img)
    }
}

/// Pull the entry `entry` of the index `index` that `name` is tagged to (a platform not
/// pulled before) into the store, leaving the tag as it is: the index gains a platform, and a
/// build or run asking for another platform never retags the name.
pub async fn pull_entry(
    store: &Store,
    name: &Reference,
    index: &Descriptor,
    entry: &Digest,
    opts: &PullOptions,
    rep: &Reporter,
) -> Result<Image> {
    let ctx = Ctx::new(opts, false)?;
    let pinned = name.with_digest(entry.clone());
    let mut img = ctx.pull_reference(store, &pinned, rep).await?;
    img.index = Some(index.clone());
    img.names = store
        .tags()?
        .into_iter()
        .filter(|t| t.target.digest == index.digest)
        .filter_map(|t| t.name)
        .collect();
    rep.line(&format!("Digest: {entry} (platform of {name})"));
    Ok(img)
}

fn unpack(
    root: PathBuf,
    diff_id: Digest,
    l: Descriptor,
    policy: &crate::layer::ContentPolicy,
) -> Result<()> {
    let store = Store::open(&root)?;
    store.unpack_layer(&diff_id, &l.digest, &l.media_type, policy)?;
    Ok(())
}

fn bad(name: &str, e: serde_json::Error) -> RegistryError {
    RegistryError::BadManifest {
        name: name.to_string(),
        why: format!("invalid JSON: {e}"),
    }
}

/// Report the most useful error of a pull that failed everywhere, with the others attached.
fn combine(mut errors: Vec<(String, RegistryError)>) -> RegistryError {
    if errors.len() == 1 {
        return errors.pop().expect("one").1;
    }
    let pos = errors
        .iter()
        .position(|(_, e)| e.is_about_content())
        .unwrap_or(errors.len() - 1);
    let (_, mut primary) = errors.remove(pos);
    if let RegistryError::NotFound { tried, .. } = &mut primary {
        for (host, e) in &errors {
            if matches!(e, RegistryError::NotFound { .. }) {
                tried.push(host.clone());
            }
        }
    }
    let others = errors
        .into_iter()
        .filter(|(_, e)| !matches!(e, RegistryError::NotFound { .. }))
        .map(|(h, e)| format!("{h}: {e}"))
        .collect::<Vec<_>>();
    if others.is_empty() {
        primary
    } else {
        RegistryError::Fallback {
            primary: Box::new(primary),
            others,
        }
    }
}

/// Stream one blob into the store, verifying size and digest; retried from the start when the
/// connection breaks. Never buffers more than one network chunk.
async fn fetch_blob(
    s: &Session,
    store: &Store,
    desc: &Descriptor,
    bar: Option<&super::progress::BlobProgress>,
) -> Result<()> {
    if store.has_blob(&desc.digest) {
        return Ok(());
    }
    let url = s.url(&format!("blobs/{}", desc.digest));
    let mut attempt = 0u32;
    loop {
        let resp = s.send(Method::GET, &url, None).await?;
        let st = resp.status();
        if st == StatusCode::NOT_FOUND {
            return Err(RegistryError::Http {
                what: format!("get blob {} from {}", desc.digest, s.endpoint.host),
                status: 404,
                body: "the registry lists it in the manifest but does not have it".into(),
            });
        }
        if !st.is_success() {
            return Err(RegistryError::Http {
                what: format!("get blob {}", desc.digest),
                status: st.as_u16(),
                body: client::body_text(resp).await,
            });
        }
        let mut w = store.blob_writer()?;
        let mut stream = resp.bytes_stream();
        let mut broken: Option<String> = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    if w.bytes_written() + c.len() as u64 > desc.size {
                        return Err(StoreError::SizeMismatch {
                            digest: desc.digest.clone(),
                            expected: desc.size,
                            actual: w.bytes_written() + c.len() as u64,
                        }
                        .into());
                    }
                    w.write_all(&c).map_err(|e| StoreError::Io {
                        op: "write",
                        path: w.tmp_path().to_path_buf(),
                        source: e,
                    })?;
                    if let Some(b) = bar {
                        b.inc(c.len() as u64);
                    }
                }
                Err(e) => {
                    broken = Some(client::error_chain(&e));
                    break;
                }
            }
        }
        let got = w.bytes_written();
        if broken.is_none() && got == desc.size {
            // A mismatch removes the temporary file and names both digests.
            w.commit(Some(&desc.digest))?;
            return Ok(());
        }
        drop(w);
        let cause = broken.unwrap_or_else(|| "the server closed the body early".into());
        attempt += 1;
        if attempt >= s.retry.attempts {
            return Err(RegistryError::Truncated {
                digest: desc.digest.clone(),
                got,
                expected: desc.size,
                cause,
            });
        }
        if let Some(b) = bar {
            b.reset(&format!("got {got} of {} bytes", desc.size));
        }
        tokio::time::sleep(s.retry.backoff(attempt - 1)).await;
    }
}
