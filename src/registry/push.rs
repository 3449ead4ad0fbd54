//! Push: every blob the registry lacks (HEAD first, cross-repository mount when the image
//! came from another repository of the same registry), streamed from the store in one PUT,
//! then the manifest, byte for byte as stored, last. A build's plain tar layers are
//! compressed first (`--compression-format`, see [`crate::store::compress`]); the manifest
//! pushed is then the stored one with those layers replaced, and the config is unchanged.
//! A name tagged to an image index pushes every entry (blobs, then its manifest by digest),
//! then the index under the tag, in its stored media type (OCI index or Docker manifest list).
//! A 401 on a blob's PUT (a token that lapsed or was revoked mid-upload) renews the session's
//! token once and restarts that blob's upload from a new upload session and the file's start.

use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::auth::AuthFiles;
use super::client::{self, Session, http_client};
use super::config::RegistriesConf;
use super::progress::{BlobProgress, Reporter};
use super::{PushOptions, RegistryError, Result};
use crate::digest::Digest;
use crate::image::{Descriptor, Manifest, Platform, Reference, media};
use crate::store::{Image, Store};

const PARALLEL: usize = 3;

pub async fn push(
    store: &Store,
    name: &str,
    dest: Option<&str>,
    opts: &PushOptions,
    rep: &Reporter,
) -> Result<Digest> {
    let img = store.resolve_image(name)?;
    let index = index_named(store, name, &img)?;
    let names = &img.names;
    let dest_ref: Reference = match dest {
        Some(d) => d.parse()?,
        None => match name.parse::<Reference>() {
            Ok(r) => r,
            // An image ID has no name to push to.
            Err(_) => names.first().cloned().ok_or_else(|| {
                RegistryError::Runtime(format!(
                    "image {name} has no name; give a destination: box push {name} REGISTRY/REPO:TAG"
                ))
            })?,
        },
    };
    let conf = RegistriesConf::load()?;
    let ep = conf.push_endpoint(&dest_ref)?;
    // Repositories of the same registry this image already lives in: the registry can link
    // the blobs instead of receiving them again.
    let mounts: Vec<String> = names
        .iter()
        .filter(|n| n.registry() == dest_ref.registry() && n.repository() != dest_ref.repository())
        .map(|n| n.repository().to_string())
        .collect();
    let mut scopes = vec![format!("repository:{}:pull,push", ep.repository)];
    scopes.extend(mounts.iter().map(|m| format!("repository:{m}:pull")));
    let http = http_client()?;
    let auth = AuthFiles::new(opts.authfile.clone());
    let s = Session::open(&http, &ep, &auth, &scopes, &dest_ref.to_string()).await?;
    let reference = match (dest_ref.digest(), dest_ref.tag()) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.unwrap_or("latest").to_string(),
    };
    let ctx = PushCtx {
        s: &s,
        store,
        mounts: &mounts,
        dest: &dest_ref,
        rep,
    };
    let (desc, bytes) = match index {
        Some(idx) => ctx.push_entries(name, &idx, opts).await?,
        None => {
            let (desc, manifest) = store.compressed_manifest(&img, opts.compression)?;
            ctx.push_blobs(&manifest).await?;
            // Exactly the stored bytes, so a pull gets the same digest back.
            let bytes = store.read_blob(&desc.digest)?;
            (desc, bytes)
        }
    };
    // The manifest (or index) last, under the tag.
    ctx.put_manifest(&reference, &desc.media_type, &bytes)
        .await?;
    rep.line(&format!(
        "{}: digest: {} size: {}",
        reference,
        desc.digest,
        bytes.len()
    ));
    Ok(desc.digest)
}

/// The index `name` stands for, when it names one (a tag pointing at an index, or the
/// index's ID), as opposed to one image.
fn index_named(store: &Store, name: &str, img: &Image) -> Result<Option<Descriptor>> {
    if let Some(t) = store.tag_target(name)? {
        return Ok(media::is_index(&t.media_type).then_some(t));
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    Ok(img
        .index
        .clone()
        .filter(|i| !hex.is_empty() && i.digest.hex().starts_with(hex)))
}

struct PushCtx<'a> {
    s: &'a Session,
    store: &'a Store,
    mounts: &'a [String],
    dest: &'a Reference,
    rep: &'a Reporter,
}

impl PushCtx<'_> {
    /// Push every entry of the index `idx` (blobs, then its manifest by digest) and return
    /// the index to put under the tag: the stored bytes, or, when an entry's plain tar layers
    /// had to be compressed (a new manifest digest), the index rewritten to name the new
    /// manifests. Every entry must be in the store: an index pushed without one of its
    /// platforms would be refused by the registry or, worse, half-usable.
    async fn push_entries(
        &self,
        name: &str,
        idx_desc: &Descriptor,
        opts: &PushOptions,
    ) -> Result<(Descriptor, Vec<u8>)> {
        let mut index = self.store.read_image_index(&idx_desc.digest)?;
        if let Some(absent) = index
            .manifests
            .iter()
            .find(|d| !self.store.has_blob(&d.digest))
        {
            let platform = absent
                .platform
                .as_ref()
                .and_then(Platform::known)
                .map_or("(no platform)".to_string(), |p| p.to_string());
            return Err(RegistryError::PlatformNotPulled {
                name: name.to_string(),
                platform,
                digest: absent.digest.clone(),
            });
        }
        let mut changed = false;
        for entry in &mut index.manifests {
            let img = self.store.image_from(entry, vec![], Some(idx_desc))?;
            let (desc, manifest) = self.store.compressed_manifest(&img, opts.compression)?;
            self.push_blobs(&manifest).await?;
            let bytes = self.store.read_blob(&desc.digest)?;
            self.put_manifest(&desc.digest.to_string(), &desc.media_type, &bytes)
                .await?;
            if desc.digest != entry.digest {
                entry.digest = desc.digest;
                entry.size = desc.size;
                changed = true;
            }
        }
        if !changed {
            return Ok((idx_desc.clone(), self.store.read_blob(&idx_desc.digest)?));
        }
        let bytes = serde_json::to_vec(&index).expect("index serialises");
        let digest = self.store.put_blob(&bytes)?;
        let mut desc = idx_desc.clone();
        desc.digest = digest;
        desc.size = bytes.len() as u64;
        Ok((desc, bytes))
    }

    /// Upload the config and layers of `manifest` that the registry lacks, several at once.
    async fn push_blobs(&self, manifest: &Manifest) -> Result<()> {
        let mut blobs: Vec<&Descriptor> = manifest.layers.iter().collect();
        blobs.push(&manifest.config);
        let mut uploads = futures_util::stream::iter(0..blobs.len())
            .map(|i| {
                let (s, store, mounts, rep, d) =
                    (self.s, self.store, self.mounts, self.rep, blobs[i]);
                async move {
                    let bar = rep.blob(&d.digest, d.size, "Pushing");
                    let status = push_blob(s, store, d, mounts, &bar).await?;
                    bar.finish(&status);
                    Ok::<(), RegistryError>(())
                }
            })
            .buffer_unordered(PARALLEL);
        while let Some(r) = uploads.next().await {
            r?;
        }
        Ok(())
    }

    /// PUT a manifest or index under `reference` (a tag or a digest).
    async fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        let url = self.s.url(&format!("manifests/{reference}"));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
                RegistryError::Runtime(format!(
                    "media type {media_type:?} cannot be an HTTP header"
                ))
            })?,
        );
        let resp = self
            .s
            .send_with(Method::PUT, &url, Some(h), Some(bytes))
            .await?;
        check(resp, &format!("push manifest to {url}"), self.s, self.dest).await?;
        Ok(())
    }
}

async fn check(
    resp: reqwest::Response,
    what: &str,
    s: &Session,
    r: &Reference,
) -> Result<reqwest::Response> {
    let st = resp.status();
    if st.is_success() {
        return Ok(resp);
    }
    if st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            name: r.to_string(),
            registry: s.endpoint.host.clone(),
            tried: s.tried.clone(),
        });
    }
    Err(RegistryError::Http {
        what: what.to_string(),
        status: st.as_u16(),
        body: client::body_text(resp).await,
    })
}

/// Upload one blob unless the registry has it; returns the status line.
async fn push_blob(
    s: &Session,
    store: &Store,
    d: &Descriptor,
    mounts: &[String],
    bar: &BlobProgress,
) -> Result<String> {
    if s.has_blob(&d.digest).await? {
        return Ok("Layer already exists".into());
    }
    let mut attempt = 0u32;
    let mut renewed = false;
    loop {
        // Start an upload, or mount from a sibling repository (201: done).
        let mut location = None;
        for from in mounts {
            let url = format!(
                "{}?mount={}&from={}",
                s.url("blobs/uploads/"),
                d.digest,
                from
            );
            let r = s.send(Method::POST, &url, None).await?;
            match r.status() {
                StatusCode::CREATED => return Ok(format!("Mounted from {from}")),
                StatusCode::ACCEPTED => {
                    location = header(&r, LOCATION);
                    break;
                }
                _ => {}
            }
        }
        let location = match location {
            Some(l) => l,
            None => {
                let url = s.url("blobs/uploads/");
                let r = s.send(Method::POST, &url, None).await?;
                if r.status() != StatusCode::ACCEPTED {
                    return Err(RegistryError::Http {
                        what: format!("start upload of {} to {}", d.digest, s.endpoint.host),
                        status: r.status().as_u16(),
                        body: client::body_text(r).await,
                    });
                }
                header(&r, LOCATION).ok_or_else(|| RegistryError::Http {
                    what: format!("start upload of {}", d.digest),
                    status: 202,
                    body: "no Location header".into(),
                })?
            }
        };
        let mut url = s.absolute(&location)?;
        url.query_pairs_mut()
            .append_pair("digest", &d.digest.to_string());

        // One streamed PUT: the file is read in 64 KiB pieces as the socket takes them.
        let file = tokio::fs::File::from_std(store.open_blob(&d.digest)?);
        let handle = bar.handle();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).inspect(move |chunk| {
                if let Ok(b) = chunk {
                    handle.inc(b.len() as u64);
                }
            });
        let body = reqwest::Body::wrap_stream(stream);
        let (rb, generation) = s.request(Method::PUT, url.clone()).await?;
        let rb = rb
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, d.size)
            .body(body);
        let res = rb.send().await;
        let retry = match res {
            Ok(r) if r.status().is_success() => return Ok("Pushed".into()),
            // The token lapsed or was revoked under us: one new token, and the upload starts
            // over from a new session (the streamed body cannot be replayed, the file can).
            Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !renewed => {
                renewed = true;
                if !s.reauth(generation, client::choose_challenge(&r)).await? {
                    return Err(s.unauthorized());
                }
                bar.reset("credentials renewed");
                continue;
            }
            Ok(r) => {
                let st = r.status();
                let retryable = st == StatusCode::TOO_MANY_REQUESTS || st.is_server_error();
                if !retryable || attempt + 1 >= s.retry.attempts {
                    return Err(RegistryError::Http {
                        what: format!("upload blob {} to {}", d.digest, s.endpoint.host),
                        status: st.as_u16(),
                        body: client::body_text(r).await,
                    });
                }
                client::retry_after(r.headers())
                    .map(|w| w.min(s.retry.max_retry_after))
                    .unwrap_or_else(|| s.retry.backoff(attempt))
            }
            Err(e) => {
                let err = client::classify(&e, &s.endpoint.host, url.as_str());
                if !client::is_retryable(&err) || attempt + 1 >= s.retry.attempts {
                    return Err(err);
                }
                s.retry.backoff(attempt)
            }
        };
        attempt += 1;
        bar.reset("upload failed");
        tokio::time::sleep(retry).await;
    }
}

fn header(r: &reqwest::Response, h: reqwest::header::HeaderName) -> Option<String> {
    r.headers()
        .get(h)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
