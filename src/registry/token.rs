//! Registry authentication challenges and bearer tokens, as the distribution token spec says.
//!
//! A registry answers 401 with one or more `WWW-Authenticate` challenges (in one header or
//! several; quoted values may hold commas). They are parsed with the `http-auth` crate, and a
//! `Bearer` challenge is preferred over `Basic`. A bearer token comes from the challenge's
//! `realm`: `GET ?service=…&scope=…` with basic credentials when we have some, or — when the
//! auth file holds an `identitytoken` — the OAuth2 refresh-token grant, `POST` of
//! `grant_type=refresh_token&refresh_token=…&service=…&scope=…&client_id=boxkit`.
//!
//! A token is good for its `expires_in` seconds (60 when the server does not say, as the spec
//! defines); [`renew_at`] is when the session fetches the next one, a little before that.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::auth::AuthFiles;
use super::client::{AuthState, JsonValue, RetryPolicy, Session, body_text, header_value};
use super::config::Endpoint;
use super::{RegistryError, Result};

/// The spec's lifetime of a token whose response has no `expires_in`.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(60);

/// The OAuth2 `client_id` boxkit names itself by.
pub const CLIENT_ID: &str = "boxkit";

/// One parsed `WWW-Authenticate` challenge, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
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

    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Every challenge in one header value; an unparsable value gives none.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    match http_auth::parse_challenges(value) {
        Ok(cs) => cs
            .into_iter()
            .map(|c| Challenge {
                scheme: c.scheme.to_string(),
                params: c
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_unescaped()))
                    .collect(),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The challenge to answer among all of a response's `WWW-Authenticate` headers: the first
/// `Bearer`, else the first `Basic`.
pub fn choose(headers: &HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    let pick = |s: &str| all.iter().find(|c| c.is(s)).cloned();
    pick("bearer").or_else(|| pick("basic"))
}

/// A bearer token from a token server's JSON answer.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires_in: Duration,
    /// A new refresh token, when the OAuth2 server rotated it.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<hidden>, expires in {:?})", self.expires_in)
    }
}

impl Token {
    /// `token` or `access_token`, and `expires_in` (seconds; 60 when absent or not positive).
    pub fn from_json(v: &serde_json::Value) -> Option<Token> {
        let value = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .filter(|t| !t.is_empty())?
            .to_string();
        let expires_in = v["expires_in"]
            .as_u64()
            .or_else(|| v["expires_in"].as_f64().map(|f| f as u64))
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_EXPIRES_IN);
        let refresh_token = v["refresh_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Some(Token {
            value,
            expires_in,
            refresh_token,
        })
    }
}

/// When a token issued at `issued` for `life` should be replaced: a fifth of its life early,
/// at most 10 s early, so a request never leaves with a token about to lapse.
pub fn renew_at(issued: Instant, life: Duration) -> Instant {
    issued + life - (life / 5).min(Duration::from_secs(10))
}

/// The scopes to ask for: ours, plus one a 401 named (`insufficient_scope`).
pub fn scopes_for(ours: &[String], c: &Challenge) -> Vec<String> {
    let mut out = ours.to_vec();
    if let Some(extra) = c.param("scope") {
        for s in extra.split(' ').filter(|s| !s.is_empty()) {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
    }
    out
}

/// The `application/x-www-form-urlencoded` body of the OAuth2 refresh-token grant.
pub fn refresh_form(refresh_token: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut u = reqwest::Url::parse("http://form.invalid/").expect("static URL parses");
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("grant_type", "refresh_token");
        q.append_pair("refresh_token", refresh_token);
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        if !scopes.is_empty() {
            // OAuth2 scopes are one space-separated parameter.
            q.append_pair("scope", &scopes.join(" "));
        }
        q.append_pair("client_id", CLIENT_ID);
    }
    u.query().unwrap_or_default().to_string()
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
            auth: std::sync::Mutex::new(AuthState::default()),
            renewing: tokio::sync::Mutex::new(()),
            found: None,
            scopes: scopes.to_vec(),
            name: name.to_string(),
            tried: "no credentials".into(),
            retry: RetryPolicy::default(),
        };
        let ping = s
            .send_plain(Method::GET, &format!("{}/v2/", s.base))
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
        // Credentials are looked up only now: a registry that lets anyone in never runs a
        // credential helper (which may not even be installed).
        let found = auth_files.lookup(&endpoint.host, &endpoint.repository)?;
        s.tried = match &found {
            Some(f) => format!("credentials from {}", f.source),
            None => auth_files.describe_search(),
        };
        s.state().refresh_token = found.as_ref().and_then(|f| f.identity_token.clone());
        s.found = found;
        let Some(c) = choose(ping.headers()) else {
            return Err(s.unauthorized());
        };
        s.authenticate(c).await?;
        if s.state().renew_at.is_none() {
            // Basic credentials: check them now, for a clear error before any transfer.
            let check = s
                .send(Method::GET, &format!("{}/v2/", s.base), None)
                .await?;
            if check.status() == StatusCode::UNAUTHORIZED {
                return Err(s.unauthorized());
            }
        }
        Ok(s)
    }

    pub fn unauthorized(&self) -> RegistryError {
        RegistryError::Unauthorized {
            name: self.name.clone(),
            registry: self.endpoint.host.clone(),
            tried: self.tried.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
        self.auth.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current `Authorization` header and its generation, renewing a bearer token that
    /// is about to lapse first.
    pub(super) async fn authorization(&self) -> Result<(Option<HeaderValue>, u64)> {
        let (due, generation) = {
            let st = self.state();
            let due = st.renew_at.is_some_and(|t| Instant::now() >= t);
            (due, st.generation)
        };
        if due {
            self.reauth(generation, None).await?;
        }
        let st = self.state();
        Ok((st.header.clone(), st.generation))
    }

    /// Fetch new credentials after a 401 (or a lapse) seen with auth `generation`, answering
    /// `challenge` (from the 401) or the last one. Nothing is fetched when another transfer has
    /// already renewed since. False when there is nothing to answer (no challenge at all).
    pub async fn reauth(&self, generation: u64, challenge: Option<Challenge>) -> Result<bool> {
        let _one_at_a_time = self.renewing.lock().await;
        let current = {
            let st = self.state();
            if st.generation != generation {
                return Ok(true);
            }
            challenge.or_else(|| st.challenge.clone())
        };
        let Some(c) = current else {
            return Ok(false);
        };
        self.authenticate(c).await?;
        Ok(true)
    }

    /// Answer `c`: a bearer token from its realm, or basic credentials.
    async fn authenticate(&self, c: Challenge) -> Result<()> {
        if c.is("bearer") {
            let scopes = scopes_for(&self.scopes, &c);
            let issued = Instant::now();
            let Some(t) = self.fetch_token(&c, &scopes).await? else {
                return Err(self.unauthorized());
            };
            let header = header_value(&format!("Bearer {}", t.value))?;
            let mut st = self.state();
            st.header = Some(header);
            st.renew_at = Some(renew_at(issued, t.expires_in));
            if t.refresh_token.is_some() {
                st.refresh_token = t.refresh_token;
            }
            st.challenge = Some(c);
            st.generation += 1;
            return Ok(());
        }
        if c.is("basic") {
            let Some(f) = &self.found else {
                return Err(self.unauthorized());
            };
            let v = B64.encode(format!("{}:{}", f.creds.username, f.creds.password));
            let header = header_value(&format!("Basic {v}"))?;
            let mut st = self.state();
            // The same header again cannot fix a 401: say so instead of looping.
            if st.header.as_ref() == Some(&header) {
                return Err(self.unauthorized());
            }
            st.header = Some(header);
            st.renew_at = None;
            st.challenge = Some(c);
            st.generation += 1;
            return Ok(());
        }
        Err(self.unauthorized())
    }

    /// A token from the challenge's realm; `None` when the token server refuses us.
    async fn fetch_token(&self, c: &Challenge, scopes: &[String]) -> Result<Option<Token>> {
        let host = &self.endpoint.host;
        let Some(realm) = c.param("realm") else {
            return Err(RegistryError::Http {
                what: format!("authenticate to {host}"),
                status: 401,
                body: "bearer challenge without a realm".into(),
            });
        };
        let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Http {
            what: format!("authenticate to {host}"),
            status: 401,
            body: format!("bad token realm {realm:?}: {e}"),
        })?;
        let refresh = self.state().refresh_token.clone();
        if refresh.is_none() {
            let mut q = url.query_pairs_mut();
            if let Some(svc) = c.param("service") {
                q.append_pair("service", svc);
            }
            for sc in scopes {
                q.append_pair("scope", sc);
            }
        }
        let mut attempt = 0;
        let resp = loop {
            let rb = match &refresh {
                // The OAuth2 refresh-token grant: the identity token stands in for a password.
                Some(rt) => self
                    .http
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(refresh_form(rt, c.param("service"), scopes)),
                None => {
                    let rb = self.http.get(url.clone());
                    match &self.found {
                        Some(f) => rb.basic_auth(&f.creds.username, Some(&f.creds.password)),
                        None => rb,
                    }
                }
            };
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
                what: format!("get a token for {host} from {realm}"),
                status: st.as_u16(),
                body: body_text(resp).await,
            });
        }
        let v: serde_json::Value = resp.json_value().await?;
        Ok(Token::from_json(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn one_bearer_challenge_parses() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is("bearer"));
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn several_challenges_and_quoted_commas() {
        let c = parse_challenges(
            r#"Basic realm="a, b", Bearer realm="http://127.0.0.1:1/token",scope="repository:x:pull,push", error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert_eq!(c[1].param("scope"), Some("repository:x:pull,push"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        let esc = parse_challenges(r#"Basic realm="say \"hi\"""#);
        assert_eq!(esc[0].param("realm"), Some(r#"say "hi""#));
    }

    #[test]
    fn bearer_wins_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="r""#),
        );
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="http://x/t""#),
        );
        let c = choose(&h).unwrap();
        assert!(c.is("Bearer"));
        assert_eq!(c.param("realm"), Some("http://x/t"));
        let mut only_basic = HeaderMap::new();
        only_basic.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=r"));
        assert!(choose(&only_basic).unwrap().is("basic"));
        assert!(choose(&HeaderMap::new()).is_none());
    }

    #[test]
    fn tokens_default_to_sixty_seconds() {
        let t = Token::from_json(&serde_json::json!({"token": "a"})).unwrap();
        assert_eq!(t.expires_in, DEFAULT_EXPIRES_IN);
        let t = Token::from_json(
            &serde_json::json!({"access_token": "b", "expires_in": 2, "refresh_token": "r"}),
        )
        .unwrap();
        assert_eq!(
            (t.value.as_str(), t.expires_in),
            ("b", Duration::from_secs(2))
        );
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        assert!(Token::from_json(&serde_json::json!({"token": ""})).is_none());
        let now = Instant::now();
        assert_eq!(
            renew_at(now, Duration::from_secs(300)),
            now + Duration::from_secs(290)
        );
        assert_eq!(
            renew_at(now, Duration::from_secs(2)),
            now + Duration::from_millis(1600)
        );
    }

    #[test]
    fn refresh_form_encodes_every_field() {
        let f = refresh_form(
            "r&t",
            Some("svc"),
            &["repository:a:pull".into(), "repository:b:pull".into()],
        );
        assert_eq!(
            f,
            "grant_type=refresh_token&refresh_token=r%26t&service=svc\
             &scope=repository%3Aa%3Apull+repository%3Ab%3Apull&client_id=boxkit"
        );
    }
}
