//! The distribution API over HTTP: one [`Session`] per (endpoint, repository), authenticated
//! once, with every request retried on 429, 5xx and connection failures.
//!
//! Authentication follows the registry's challenge to `GET /v2/`: none, HTTP basic with stored
//! credentials, or a bearer token from the `realm` it names (Docker Hub's anonymous token flow,
//! with basic credentials when we have some). Retries back off exponentially (250 ms doubling,
//! at most 10 s) and honour `Retry-After` (seconds or an HTTP date, at most 60 s).
//!
//! Why reqwest and not oci-client: oci-client cannot fall back from one mirror to the next,
//! does not retry or honour Retry-After, and its pull buffers layers in memory; boxkit needs all
//! three, and the protocol subset it uses is small.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::{AuthFiles, Found};
use super::config::Endpoint;
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

/// An authenticated conversation with one repository on one endpoint.
pub struct Session {
    http: reqwest::Client,
    pub endpoint: Endpoint,
    base: String,
    auth: Option<HeaderValue>,
    /// What credentials were used, for "unauthorized" messages.
    pub tried: String,
    pub retry: RetryPolicy,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"` → parts.
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((k, v));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_string(),
        params,
    })
}

impl Session {
    /// Ping the endpoint and authenticate for `scopes` (e.g. `repository:library/busybox:pull`).
    pub async fn open(
        http: &reqwest::Client,
        endpoint: &Endpoint,
        auth_files: &AuthFiles,
        scopes: &[String],
        name: &str,
    ) -> Result<Session> {
        let mut s = Session {
            http: http.clone(),
            endpoint: endpoint.clone(),
            base: endpoint.base_url(),
            auth: None,
            tried: "no credentials".into(),
            retry: RetryPolicy::default(),
        };
        let ping = s
            .send(Method::GET, &format!("{}/v2/", s.base), None)
            .await?;
        match ping.status() {
            StatusCode::UNAUTHORIZED => {}
            st if st.is_success() => return Ok(s),
            st => {
                return Err(RegistryError::Http {
                    what: format!("ping {}", s.endpoint.host),
                    status: st.as_u16(),
                    body: body_text(ping).await,
                });
            }
        }
        let challenge = ping
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        let found = auth_files.lookup(&endpoint.host, &endpoint.repository)?;
        s.tried = match &found {
            Some(f) => format!("credentials from {}", f.source),
            None => auth_files.describe_search(),
        };
        let unauthorized = |s: &Session| RegistryError::Unauthorized {
            name: name.to_string(),
            registry: s.endpoint.host.clone(),
            tried: s.tried.clone(),
        };
        match challenge {
            Some(c) if c.scheme.eq_ignore_ascii_case("bearer") => {
                let token = s.fetch_token(&c, scopes, found.as_ref()).await?;
                match token {
                    Some(t) => {
                        s.auth = Some(header_value(&format!("Bearer {t}"))?);
                        Ok(s)
                    }
                    None => Err(unauthorized(&s)),
                }
            }
            Some(c) if c.scheme.eq_ignore_ascii_case("basic") => {
                let Some(f) = found else {
                    return Err(unauthorized(&s));
                };
                let v = B64.encode(format!("{}:{}", f.creds.username, f.creds.password));
                s.auth = Some(header_value(&format!("Basic {v}"))?);
                let check = s
                    .send(Method::GET, &format!("{}/v2/", s.base), None)
                    .await?;
                if check.status() == StatusCode::UNAUTHORIZED {
                    return Err(unauthorized(&s));
                }
                Ok(s)
            }
            _ => Err(unauthorized(&s)),
        }
    }

    async fn fetch_token(
        &self,
        c: &Challenge,
        scopes: &[String],
        found: Option<&Found>,
    ) -> Result<Option<String>> {
        let Some(realm) = c.param("realm") else {
            return Err(RegistryError::Http {
                what: format!("authenticate to {}", self.endpoint.host),
                status: 401,
                body: "bearer challenge without a realm".into(),
            });
        };
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(svc) = c.param("service") {
            query.push(("service", svc));
        }
        for sc in scopes {
            query.push(("scope", sc));
        }
        let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Http {
            what: format!("authenticate to {}", self.endpoint.host),
            status: 401,
            body: format!("bad token realm {realm:?}: {e}"),
        })?;
        url.query_pairs_mut().extend_pairs(query);
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.http.get(url.clone());
            if let Some(f) = found {
                rb = rb.basic_auth(&f.creds.username, Some(&f.creds.password));
            }
            match self.retrying(rb, &mut attempt, url.as_str()).await? {
                Some(r) => break r,
                None => continue,
            }
        };
        let st = resp.status();
        if st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !st.is_success() {
            return Err(RegistryError::Http {
                what: format!("get a token from {realm}"),
                status: st.as_u16(),
                body: body_text(resp).await,
            });
        }
        let v: serde_json::Value = resp.json_value().await?;
        Ok(v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_string))
    }

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

    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.auth {
            Some(a) => rb.header(AUTHORIZATION, a.clone()),
            None => rb,
        }
    }

    /// Send a bodiless request with retries; the final response whatever its status.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: Option<HeaderMap>,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let mut rb = self.request(method.clone(), url);
            if let Some(h) = &headers {
                rb = rb.headers(h.clone());
            }
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

fn header_value(s: &str) -> Result<HeaderValue> {
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

trait JsonValue {
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
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
        let b = parse_challenge(r#"Basic realm="boxkit-test""#).unwrap();
        assert_eq!(b.scheme, "Basic");
        assert_eq!(b.param("realm"), Some("boxkit-test"));
    }

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
