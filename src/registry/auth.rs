//! Registry credentials: the files docker and podman keep, and docker credential helpers.
//!
//! Read, in order (first file with an entry wins): `--authfile` alone when given; otherwise
//! `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json` (podman's; `box login`
//! writes it), `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. In a docker config a
//! `credHelpers` entry for the host, else `credsStore`, names a `docker-credential-<helper>`
//! program that is asked first (`get`, server URL on stdin, JSON on stdout), as docker does.
//!
//! Keys are matched the way containers-auth.json(5) says: `host/namespace/repo` before
//! `host/namespace` before `host`, with `https://` and `/v1/` suffixes ignored and Docker Hub's
//! `https://index.docker.io/v1/` equal to `docker.io`. An entry's `identitytoken` (or a helper's
//! `<token>` user) is an OAuth2 refresh token, used by [`super::token`] instead of a password.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{RegistryError, Result};

/// A user name and password (or token) for HTTP basic auth and token requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

/// Credentials and where they came from, so an "unauthorized" error can say what was tried.
#[derive(Clone, Debug)]
pub struct Found {
    pub creds: Credentials,
    /// An OAuth2 refresh token (`identitytoken` in the file, or a helper's `<token>` user):
    /// bearer tokens then come from the refresh-token grant, not from basic credentials.
    pub identity_token: Option<String>,
    pub source: String,
}

/// The user name docker writes beside an identity token.
const TOKEN_USER: &str = "<token>";

/// Where boxkit looks for credentials, and which file `box login` writes.
#[derive(Clone, Debug, Default)]
pub struct AuthFiles {
    /// `--authfile`: used alone when set.
    pub explicit: Option<PathBuf>,
}

const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

impl AuthFiles {
    pub fn new(explicit: Option<PathBuf>) -> Self {
        AuthFiles { explicit }
    }

    /// The files searched, in order.
    pub fn search_path(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.explicit {
            return vec![p.clone()];
        }
        let mut out = Vec::new();
        if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
            out.push(p);
        }
        out.push(podman_auth_file());
        let docker = env_path("DOCKER_CONFIG")
            .map(|d| d.join("config.json"))
            .or_else(|| env_path("HOME").map(|h| h.join(".docker/config.json")));
        out.extend(docker);
        out
    }

    /// The file `box login` writes and `box logout` edits.
    pub fn write_target(&self) -> PathBuf {
        self.explicit
            .clone()
            .or_else(|| env_path("REGISTRY_AUTH_FILE"))
            .unwrap_or_else(podman_auth_file)
    }

    /// Credentials for `host` (and, for namespaced entries, `repository`), if any file has them.
    pub fn lookup(&self, host: &str, repository: &str) -> Result<Option<Found>> {
        let host = normalize_host(host);
        for path in self.search_path() {
            let Some(doc) = read_json(&path)? else {
                continue;
            };
            if let Some(helper) = helper_for(&doc, &host)
                && let Some(creds) = run_helper(&helper, &host)?
            {
                let identity_token = (creds.username == TOKEN_USER).then(|| creds.password.clone());
                return Ok(Some(Found {
                    creds,
                    identity_token,
                    source: format!("credential helper docker-credential-{helper}"),
                }));
            }
            if let Some((creds, identity_token)) = lookup_auths(&doc, &path, &host, repository)? {
                let who = match &identity_token {
                    Some(_) => "identity token".to_string(),
                    None => format!("user {}", creds.username),
                };
                return Ok(Some(Found {
                    source: format!("{} ({who})", path.display()),
                    creds,
                    identity_token,
                }));
            }
        }
        Ok(None)
    }

    /// A sentence for errors: what was searched.
    pub fn describe_search(&self) -> String {
        let files: Vec<String> = self
            .search_path()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!("no credentials found (looked in {})", files.join(", "))
    }

    /// Record `creds` for `server` in the write target (created 0600 if missing, other entries
    /// kept). Returns the file written.
    pub fn store(&self, server: &str, creds: &Credentials) -> Result<PathBuf> {
        let path = self.write_target();
        let mut doc = read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
        if !doc.is_object() {
            doc = serde_json::json!({});
        }
        if !doc["auths"].is_object() {
            doc["auths"] = serde_json::json!({});
        }
        let key = login_key(server);
        let auth = B64.encode(format!("{}:{}", creds.username, creds.password));
        doc["auths"][key] = serde_json::json!({ "auth": auth });
        write_private(&path, &doc)?;
        Ok(path)
    }

    /// Remove `server`'s entry from the write target; false when there was none.
    pub fn remove(&self, server: &str) -> Result<bool> {
        let path = self.write_target();
        let Some(mut doc) = read_json(&path)? else {
            return Ok(false);
        };
        let want = normalize_key(&login_key(server));
        let Some(auths) = doc.get_mut("auths").and_then(|a| a.as_object_mut()) else {
            return Ok(false);
        };
        let before = auths.len();
        auths.retain(|k, _| normalize_key(k) != want);
        let removed = auths.len() != before;
        if removed {
            write_private(&path, &doc)?;
        }
        Ok(removed)
    }

    /// Remove every entry from the write target; how many there were.
    pub fn remove_all(&self) -> Result<usize> {
        let path = self.write_target();
        let Some(mut doc) = read_json(&path)? else {
            return Ok(0);
        };
        let n = doc["auths"].as_object().map_or(0, |a| a.len());
        if n > 0 {
            doc["auths"] = serde_json::json!({});
            write_private(&path, &doc)?;
        }
        Ok(n)
    }

    /// Whether any searched file other than the write target has an entry for `server`.
    pub fn elsewhere(&self, server: &str) -> Option<PathBuf> {
        let target = self.write_target();
        let want = normalize_key(&login_key(server));
        self.search_path().into_iter().find(|p| {
            *p != target
                && read_json(p).ok().flatten().is_some_and(|d| {
                    d["auths"]
                        .as_object()
                        .is_some_and(|a| a.keys().any(|k| normalize_key(k) == want))
                })
        })
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `${XDG_RUNTIME_DIR}/containers/auth.json`, or podman's fallback `/run/containers/<uid>/`.
fn podman_auth_file() -> PathBuf {
    match env_path("XDG_RUNTIME_DIR") {
        Some(d) => d.join("containers/auth.json"),
        None => {
            let uid = std::env::var("BOX_HOST_UID")
                .ok()
                .and_then(|u| u.parse::<u32>().ok())
                .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
            PathBuf::from(format!("/run/containers/{uid}/auth.json"))
        }
    }
}

/// The key `box login SERVER` writes: docker's historic key for Docker Hub, else the host.
pub fn login_key(server: &str) -> String {
    let k = normalize_key(server);
    if k == crate::image::reference::DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        k
    }
}

fn normalize_host(h: &str) -> String {
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            crate::image::reference::DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/` → `h:5000`; `h/ns` stays.
pub fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k.split_once('/') {
        Some((h, rest)) => format!("{}/{rest}", normalize_host(h)),
        None => normalize_host(k),
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(data) if data.iter().all(|b| b.is_ascii_whitespace()) => Ok(None),
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| RegistryError::AuthFile {
                path: path.to_path_buf(),
                why: format!("invalid JSON: {e}"),
            }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        // An unreadable file (e.g. another user's runtime dir) is skipped, not fatal.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(None),
        Err(e) => Err(RegistryError::AuthFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

fn write_private(path: &Path, doc: &serde_json::Value) -> Result<()> {
    let err = |e: std::io::Error| RegistryError::AuthFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut data = serde_json::to_vec_pretty(doc).expect("JSON serialises");
    data.push(b'\n');
    // 0600 from creation on: the file holds credentials.
    crate::atomic::write(path, &data, 0o600).map_err(err)
}

fn helper_for(doc: &serde_json::Value, host: &str) -> Option<String> {
    if let Some(helpers) = doc["credHelpers"].as_object() {
        for (k, v) in helpers {
            if normalize_key(k) == host
                && let Some(h) = v.as_str()
            {
                return Some(h.to_string());
            }
        }
    }
    doc["credsStore"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Ask `docker-credential-<helper> get` for `host`. "Not found" is `None`.
fn run_helper(helper: &str, host: &str) -> Result<Option<Credentials>> {
    let prog = format!("docker-credential-{helper}");
    let server = if host == crate::image::reference::DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    };
    let child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Err(RegistryError::CredentialHelper {
                helper: prog,
                why: format!("cannot run it: {e}"),
            });
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::CredentialHelper {
            helper: prog.clone(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if msg.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(RegistryError::CredentialHelper {
            helper: prog,
            why: msg.trim().to_string(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| RegistryError::CredentialHelper {
            helper: prog.clone(),
            why: format!("invalid JSON output: {e}"),
        })?;
    let (Some(u), Some(s)) = (v["Username"].as_str(), v["Secret"].as_str()) else {
        return Ok(None);
    };
    Ok(Some(Credentials {
        username: u.to_string(),
        password: s.to_string(),
    }))
}

/// The most specific entry's credentials and its `identitytoken`, if any.
fn lookup_auths(
    doc: &serde_json::Value,
    path: &Path,
    host: &str,
    repository: &str,
) -> Result<Option<(Credentials, Option<String>)>> {
    let Some(auths) = doc["auths"].as_object() else {
        return Ok(None);
    };
    // Most specific first: host/a/b/c, host/a/b, host/a, host.
    let mut wanted = vec![host.to_string()];
    let mut acc = host.to_string();
    for part in repository.split('/').filter(|p| !p.is_empty()) {
        acc = format!("{acc}/{part}");
        wanted.push(acc.clone());
    }
    for w in wanted.iter().rev() {
        let entry = auths
            .iter()
            .find(|(k, _)| &normalize_key(k) == w)
            .map(|(_, v)| v);
        let Some(entry) = entry else { continue };
        let identity = entry["identitytoken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let bad = || RegistryError::AuthFile {
                path: path.to_path_buf(),
                why: format!("entry {w:?}: \"auth\" is not base64 of user:password"),
            };
            let raw = B64.decode(a.trim()).map_err(|_| bad())?;
            let s = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = s.split_once(':').ok_or_else(bad)?;
            let creds = Credentials {
                username: u.to_string(),
                password: p.to_string(),
            };
            return Ok(Some((creds, identity)));
        }
        if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
            let creds = Credentials {
                username: u.to_string(),
                password: p.to_string(),
            };
            return Ok(Some((creds, identity)));
        }
        if let Some(t) = identity {
            let creds = Credentials {
                username: TOKEN_USER.to_string(),
                password: String::new(),
            };
            return Ok(Some((creds, Some(t))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_like_docker_and_podman() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(normalize_key("quay.io/team"), "quay.io/team");
        assert_eq!(login_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(login_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn identity_tokens_are_found_with_or_without_a_user() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("config.json");
        std::fs::write(
            &a,
            format!(
                r#"{{"auths":{{"a.example":{{"auth":"{}","identitytoken":"rt-a"}},"b.example":{{"identitytoken":"rt-b"}},"c.example":{{"auth":"{}"}}}}}}"#,
                B64.encode("alice:"),
                B64.encode("carol:pw")
            ),
        )
        .unwrap();
        let files = AuthFiles::new(Some(a));
        let f = files.lookup("a.example", "x").unwrap().unwrap();
        assert_eq!(f.identity_token.as_deref(), Some("rt-a"));
        assert_eq!(f.creds.username, "alice");
        assert!(f.source.contains("identity token"), "{}", f.source);
        let f = files.lookup("b.example", "x").unwrap().unwrap();
        assert_eq!(f.identity_token.as_deref(), Some("rt-b"));
        assert_eq!(f.creds.username, TOKEN_USER);
        let f = files.lookup("c.example", "x").unwrap().unwrap();
        assert!(f.identity_token.is_none());
    }

    #[test]
    fn lookup_prefers_the_most_specific_entry_and_the_first_file() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.json");
        std::fs::write(
            &a,
            format!(
                r#"{{"auths":{{"reg.example":{{"auth":"{}"}},"reg.example/team":{{"auth":"{}"}}}}}}"#,
                B64.encode("host-user:p1"),
                B64.encode("team-user:p2")
            ),
        )
        .unwrap();
        let files = AuthFiles::new(Some(a.clone()));
        let f = files.lookup("reg.example", "team/app").unwrap().unwrap();
        assert_eq!(f.creds.username, "team-user");
        assert!(f.source.contains("a.json"), "{}", f.source);
        let f = files.lookup("reg.example", "other/app").unwrap().unwrap();
        assert_eq!(f.creds.username, "host-user");
        assert!(files.lookup("elsewhere.example", "x").unwrap().is_none());
    }

    #[test]
    fn store_and_remove_keep_other_entries_and_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/auth.json");
        let files = AuthFiles::new(Some(p.clone()));
        let c = |u: &str| Credentials {
            username: u.into(),
            password: "pw".into(),
        };
        files.store("a.example:5000", &c("a")).unwrap();
        files.store("docker.io", &c("hub")).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert!(doc["auths"][DOCKER_HUB_KEY]["auth"].is_string());
        let hub = files.lookup("registry-1.docker.io", "library/x").unwrap();
        assert_eq!(hub.unwrap().creds.username, "hub");
        assert!(files.remove("a.example:5000").unwrap());
        assert!(!files.remove("a.example:5000").unwrap());
        assert!(files.lookup("a.example:5000", "x").unwrap().is_none());
        assert!(files.lookup("docker.io", "x").unwrap().is_some());
    }

    #[test]
    fn a_broken_auth_file_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("auth.json");
        std::fs::write(&p, "{not json").unwrap();
        let err = AuthFiles::new(Some(p)).lookup("x", "y").unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }
}
