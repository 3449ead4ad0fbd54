//! Push: every blob the registry lacks (HEAD first, cross-repository mount when the image
//! came from another repository of the same registry), streamed from the store in one PUT,
//! then the manifest, byte for byte as stored, last. A build's plain tar layers are
//! compressed first (`--compression-format`, see [`crate::store::compress`]); the manifest
//! pushed is then the stored one with those layers replaced, and the config is unchanged.
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
use crate::image::Descriptor;
use crate::image::Reference;
use crate::store::Store;

const PARALLEL: usize = 3;

pub async fn push(
    store: &Store,
    name: &str,
    dest: Option<&str>,
    opts: &PushOptions,
    rep: &Reporter,
) -> Result<Digest> {
    let img = store.resolve_image(name)?;
    let dest_ref: Reference = match dest {
        Some(d) => d.parse()?,
        None => match name.parse::<Reference>() {
            Ok(r) => r,
            // An image ID has no name to push to.
            Err(_) => img.names.first().cloned().ok_or_else(|| {
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
    let mounts: Vec<String> = img
        .names
        .iter()
        .filter(|n| n.registry() == dest_ref.registry() && n.repository() != dest_ref.repository())
        .map(|n| n.repository().to_string())
        .collect();
    let mut scopes = vec![format!("repository:{}:pull,push", ep.repository)];
    scopes.extend(mounts.iter().map(|m| format!("repository:{m}:pull")));
    let http = http_client()?;
    let auth = AuthFiles::new(opts.authfile.clone());
    let s = Session::open(&http, &ep, &auth, &scopes, &dest_ref.to_string()).await?;

    let (manifest_desc, manifest) = store.compressed_manifest(&img, opts.compression)?;
    let mut blobs: Vec<&Descriptor> = manifest.layers.iter().collect();
    blobs.push(&manifest.config);
    let mut uploads = futures_util::stream::iter(0..blobs.len())
        .map(|i| {
            let (s, mounts, d) = (&s, &mounts, blobs[i]);
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
    drop(uploads);

    // The manifest last, exactly the stored bytes, so a pull gets the same digest back.
    let bytes = store.read_blob(&manifest_desc.digest)?;
    let reference = match (dest_ref.digest(), dest_ref.tag()) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.unwrap_or("latest").to_string(),
    };
    let url = s.url(&format!("manifests/{reference}"));
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        reqwest::header::HeaderValue::from_str(&manifest_desc.media_type).map_err(|_| {
            RegistryError::Runtime(format!(
                "media type {:?} cannot be an HTTP header",
                manifest_desc.media_type
            ))
        })?,
    );
    let resp = s
        .send_with(Method::PUT, &url, Some(h), Some(&bytes))
        .await?;
    check(resp, &format!("push manifest to {url}"), &s, &dest_ref).await?;
    rep.line(&format!(
        "{}: digest: {} size: {}",
        reference,
        manifest_desc.digest,
        bytes.len()
    ));
    Ok(manifest_desc.digest)
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
