//! The distribution API over HTTP: one [`Session`] per (endpoint, repository), with every
//! request retried on 429, 5xx and connection failures.
//!
//! Authentication follows the registry's challenge to `GET /v2/`: none, HTTP basic with stored
//! credentials, or a bearer token from the `realm` it names (see [`super::token`]); a bearer
//! token is renewed before its `expires_in` runs out and once after a 401. Retries back off exponentially (250 ms doubling,
//! at most 10 s) and honour `Retry-After` (seconds or an HTTP date, at most 60 s).
//!
//! Why reqwest and not oci-client: oci-client cannot fall back from one mirror to the next,
//! does not retry or honour Retry-After, and its pull buffers layers in memory; boxkit needs all
//! three, and the protocol subset it uses is small.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::Found;
use super::config::Endpoint;
use super::token::{self, Challenge};
use super::{RegistryError, Result};
use crate::digest::Digest;
use crate::image::media;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest we accept (distribution's own limit is 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// How often and how long to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max)
    }
}

/// The HTTP client for registries. TLS trusts the system's CA store (or what `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` name); where there is none — the slim images most CI jobs run in ship no CA
/// bundle — it trusts the Mozilla roots built into boxkit instead, so a build that talks only
/// to a plain-HTTP mirror never needs one, and one that reaches Docker Hub still works. A
/// registry whose CA is in neither fails at its first TLS connection, saying how to add it.
pub fn http_client() -> Result<reqwest::Client> {
    // reqwest is built without a crypto provider (Cargo.toml says why); ring is the process's.
    // Err only means one is installed already, which is this one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .user_agent(concat!("boxkit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
    };
    let create_err = |e: reqwest::Error| RegistryError::Network {
        what: "create HTTP client".into(),
        cause: error_chain(&e),
    };
    match builder().build() {
        Ok(c) => Ok(c),
        // No usable system roots: the only way the platform verifier fails to build.
        Err(system) => builder()
            .tls_certs_only(bundled_roots())
            .build()
            .map_err(|_| create_err(system)),
    }
}

/// Mozilla's root CAs as shipped in the binary (webpki-root-certs).
fn bundled_roots() -> Vec<reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|c| reqwest::Certificate::from_der(c).ok())
        .collect()
}

/// An authenticated conversation with one repository on one endpoint. Its token is renewed
/// before it lapses and once after a 401, so a transfer may outlive any one token; the
/// session is shared by concurrent blob transfers, hence the locks.
pub struct Session {
    pub(super) http: reqwest::Client,
    pub endpoint: Endpoint,
    pub(super) base: String,
    pub(super) auth: std::sync::Mutex<AuthState>,
    /// Held while a new token is fetched, so concurrent transfers fetch one, not one each.
    pub(super) renewing: tokio::sync::Mutex<()>,
    /// The credentials found for this endpoint, if any.
    pub(super) found: Option<Found>,
    /// The scopes asked for (e.g. `repository:library/busybox:pull`).
    pub(super) scopes: Vec<String>,
    /// The image name, for "unauthorized" messages.
    pub(super) name: String,
    /// What credentials were used, for "unauthorized" messages.
    pub tried: String,
    pub retry: RetryPolicy,
}

/// The `Authorization` header in use and what it takes to renew it.
#[derive(Default)]
pub(super) struct AuthState {
    pub header: Option<HeaderValue>,
    /// When the bearer token should be replaced; `None` for basic auth and no auth.
    pub renew_at: Option<std::time::Instant>,
    /// The challenge last answered.
    pub challenge: Option<Challenge>,
    /// The OAuth2 refresh token, when the credentials are an identity token.
    pub refresh_token: Option<String>,
    /// Bumped each time the header changes: a request that got 401 with generation `g`
    /// renews only if nobody else has since.
    pub generation: u64,
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.endpoint.repository)
    }

    /// Resolve a `Location` header against the endpoint.
    pub fn absolute(&self, location: &str) -> Result<reqwest::Url> {
        let base = reqwest::Url::parse(&self.base).expect("base URL parses");
        base.join(location).map_err(|e| RegistryError::Http {
            what: format!("follow upload location {location:?}"),
            status: 0,
            body: e.to_string(),
        })
    }

    /// A request with the current credentials (renewed first when the token is about to
    /// lapse), and the auth generation to hand to [`Session::reauth`] if it gets a 401.
    pub async fn request(
        &self,
        method: Method,
        url: impl reqwest::IntoUrl,
    ) -> Result<(RequestBuilder, u64)> {
        let (header, generation) = self.authorization().await?;
        let rb = self.http.request(method, url);
        let rb = match header {
            Some(a) => rb.header(AUTHORIZATION, a),
            None => rb,
        };
        Ok((rb, generation))
    }

    /// Send a bodiless request with retries; the final response whatever its status.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: Option<HeaderMap>,
    ) -> Result<Response> {
        self.send_with(method, url, headers, None).await
    }

    /// Send a request with retries on 429/5xx/connection failures and one renewal of the
    /// credentials on 401; the final response whatever its status. The body (small: a
    /// manifest) is sent again on each attempt.
    pub async fn send_with(
        &self,
        method: Method,
        url: &str,
        headers: Option<HeaderMap>,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            let (mut rb, generation) = self.request(method.clone(), url).await?;
            if let Some(h) = &headers {
                rb = rb.headers(h.clone());
            }
            if let Some(b) = body {
                rb = rb.body(b.to_vec());
            }
            let Some(r) = self.retrying(rb, &mut attempt, url).await? else {
                continue;
            };
            if r.status() == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                if self.reauth(generation, token::choose(r.headers())).await? {
                    continue;
                }
            }
            return Ok(r);
        }
    }

    /// Send without credentials or renewal (the ping that starts a session).
    pub(super) async fn send_plain(&self, method: Method, url: &str) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let rb = self.http.request(method.clone(), url);
            if let Some(r) = self.retrying(rb, &mut attempt, url).await? {
                return Ok(r);
            }
        }
    }
    /// Send once. `Ok(None)` means "wait done, try again"; errors are final.
    pub async fn retrying(
        &self,
        rb: RequestBuilder,
        attempt: &mut u32,
        what: &str,
    ) -> Result<Option<Response>> {
        let last = *attempt + 1 >= self.retry.attempts;
        match rb.send().await {
            Ok(r) => {
                let st = r.status();
                let retryable = st == StatusCode::TOO_MANY_REQUESTS
                    || matches!(st.as_u16(), 500 | 502 | 503 | 504);
                if !retryable || last {
                    return Ok(Some(r));
                }
                let wait = retry_after(r.headers())
                    .map(|d| d.min(self.retry.max_retry_after))
                    .unwrap_or_else(|| self.retry.backoff(*attempt));
                *attempt += 1;
                tokio::time::sleep(wait).await;
                Ok(None)
            }
            Err(e) => {
                let err = classify(&e, &self.endpoint.host, what);
                // Nobody listening is rarely transient: one retry, then the next mirror.
                let refused = matches!(&err, RegistryError::Unreachable { cause, .. }
                    if cause.to_ascii_lowercase().contains("refused"));
                if last || !is_retryable(&err) || (refused && *attempt >= 1) {
                    return Err(err);
                }
                let wait = self.retry.backoff(*attempt);
                *attempt += 1;
                tokio::time::sleep(wait).await;
                Ok(None)
            }
        }
    }

    /// `GET` a manifest by tag or digest: its bytes and media type.
    pub async fn get_manifest(&self, reference: &str, name: &str) -> Result<(Vec<u8>, String)> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send(Method::GET, &url, Some(h)).await?;
        let st = resp.status();
        if st == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                name: name.to_string(),
                tried: vec![self.endpoint.host.clone()],
            });
        }
        if st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                name: name.to_string(),
                registry: self.endpoint.host.clone(),
                tried: format!("{} (or the repository does not exist)", self.tried),
            });
        }
        if !st.is_success() {
            return Err(RegistryError::Http {
                what: format!("get manifest {url}"),
                status: st.as_u16(),
                body: body_text(resp).await,
            });
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let body = read_limited(resp, MAX_MANIFEST, &url).await?;
        // The document's own mediaType wins over a generic Content-Type.
        let doc_mt = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string));
        let mt = match (doc_mt, ct) {
            (Some(m), _) => m,
            (None, Some(c)) if media::is_manifest(&c) || media::is_index(&c) => c,
            (None, _) => {
                // OCI allows omitting mediaType: tell manifests and indexes apart by shape.
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if v.get("manifests").is_some() {
                    media::OCI_INDEX.to_string()
                } else {
                    media::OCI_MANIFEST.to_string()
                }
            }
        };
        Ok((body, mt))
    }

    /// `HEAD` a blob: whether the repository has it.
    pub async fn has_blob(&self, d: &Digest) -> Result<bool> {
        let url = self.url(&format!("blobs/{d}"));
        let r = self.send(Method::HEAD, &url, None).await?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(RegistryError::Http {
                what: format!("check blob {url}"),
                status: s.as_u16(),
                body: String::new(),
            }),
        }
    }
}

/// The challenge a 401 response asks us to answer.
pub fn choose_challenge(r: &Response) -> Option<Challenge> {
    token::choose(r.headers())
}

pub(super) fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| RegistryError::Http {
        what: "build an Authorization header".into(),
        status: 0,
        body: "credentials contain characters HTTP headers cannot carry".into(),
    })
}

/// `Retry-After: 3` or an HTTP date.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs((when - now).max(0) as u64))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → seconds since the epoch.
fn httpdate(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])?
        + 1;
    let ts = format!(
        "{}-{:02}-{:02}T{}Z",
        parts[3],
        month,
        parts[1].parse::<u32>().ok()?,
        parts[4]
    );
    crate::timefmt::parse_rfc3339(&ts)
}

/// The error and all its causes, "a: b: c".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

/// Turn a transport error into one the user can act on.
pub fn classify(e: &reqwest::Error, host: &str, what: &str) -> RegistryError {
    let chain = error_chain(e);
    let low = chain.to_ascii_lowercase();
    let tls = [
        "certificate",
        "tls",
        "invalidcontenttype",
        "corrupt message",
        "handshake",
        "ssl",
    ]
    .iter()
    .any(|k| low.contains(k));
    let untrusted = ["unknownissuer", "unknown issuer"]
        .iter()
        .any(|k| low.contains(k));
    if untrusted {
        return RegistryError::UntrustedCertificate {
            registry: host.to_string(),
            cause: chain,
        };
    }
    if tls {
        return RegistryError::Tls {
            registry: host.to_string(),
            cause: chain,
        };
    }
    if e.is_connect() || e.is_timeout() {
        return RegistryError::Unreachable {
            registry: host.to_string(),
            cause: chain,
            dns: low.contains("dns error") || low.contains("failed to lookup"),
        };
    }
    RegistryError::Network {
        what: what.to_string(),
        cause: chain,
    }
}

pub fn is_retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { dns, .. } => !dns,
        RegistryError::Network { .. } => true,
        _ => false,
    }
}

pub async fn body_text(r: Response) -> String {
    let t = r.text().await.unwrap_or_default();
    let t = t.trim();
    if t.len() > 300 {
        format!("{}…", &t[..t.floor_char_boundary(300)])
    } else {
        t.to_string()
    }
}

async fn read_limited(mut r: Response, limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > limit {
                    return Err(RegistryError::BadManifest {
                        name: what.to_string(),
                        why: format!("larger than {limit} bytes"),
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Network {
                    what: format!("read {what}"),
                    cause: error_chain(&e),
                });
            }
        }
    }
}

pub(super) trait JsonValue {
    async fn json_value(self) -> Result<serde_json::Value>;
}

impl JsonValue for Response {
    async fn json_value(self) -> Result<serde_json::Value> {
        let url = self.url().to_string();
        let body = read_limited(self, 1 << 20, &url).await?;
        serde_json::from_slice(&body).map_err(|e| RegistryError::Http {
            what: format!("read {url}"),
            status: 200,
            body: format!("invalid JSON: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(httpdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0), Duration::from_millis(250));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(10), Duration::from_secs(10));
    }
}
