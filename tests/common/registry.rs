//! A real local registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
//! port of 127.0.0.1, filesystem storage in a temp dir, deletes enabled, optionally with basic
//! auth. Each test gets its own registry; `Drop` kills it and removes its files.
//!
//! ```ignore
//! let Some(reg) = Registry::start_or_skip() else { return };
//! fixtures::seed(&reg, &[Fixture::Busybox]);
//! // reg.addr() == "127.0.0.1:PORT"; reg.image("library/busybox:latest") is a full reference.
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixtures::{self, Fixture};

pub const REGISTRY_BIN: &str = "docker-registry";

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    credentials: Option<(String, String)>,
}

/// A raw HTTP response from [`Registry::get`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a registry can be started here.
pub fn available() -> bool {
    super::have_tool(REGISTRY_BIN)
}

impl Registry {
    /// Start an empty registry without auth. Panics (with the registry's log) if it does not come up.
    pub fn start() -> Registry {
        Self::start_inner(None, None)
    }

    /// Start an empty registry that serves HTTPS only, with `cert` and `key` (PEM files).
    pub fn start_tls(cert: &Path, key: &Path) -> Registry {
        Self::start_inner(None, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    /// Start an empty registry that requires HTTP basic auth for `user`/`password` (bcrypt
    /// htpasswd file, made with Python's `crypt`, or `htpasswd` from apache2-utils).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())), None)
    }

    /// [`Registry::start`], or `None` after [`super::skip`] when `docker-registry` is missing
    /// (a failure under `BOX_TEST_STRICT=1`).
    pub fn start_or_skip() -> Option<Registry> {
        if !available() {
            super::skip("docker-registry is not installed (Debian package docker-registry)");
            return None;
        }
        Some(Self::start())
    }

    /// A registry holding the small fixtures (busybox, layered, multi). See [`fixtures::seed`].
    pub fn with_fixtures() -> Registry {
        let reg = Self::start();
        fixtures::seed(&reg, Fixture::SMALL);
        reg
    }

    fn start_inner(
        credentials: Option<(String, String)>,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-registry-")
            .tempdir()
            .expect("registry temp dir");
        std::fs::create_dir(dir.path().join("storage")).unwrap();
        let auth = match &credentials {
            Some((user, password)) => {
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, htpasswd_line(user, password)).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: boxkit-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let tls_conf = match &tls {
            Some((cert, key)) => format!(
                "\x20 tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        // A port picked by the kernel can be taken by someone else before the registry binds
        // it; then the registry exits at once and we try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            // No `storage.cache`: the registry then reads everything from disk on each request,
            // which is what lets `fixtures::seed` drop files into a running registry.
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: boxkit-test-secret\n{tls_conf}\
                 {auth}",
                storage = dir.path().join("storage").display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {REGISTRY_BIN}: {e}"));
            if wait_ready(&mut child, &addr, tls.is_some(), Duration::from_secs(10)) {
                return Registry {
                    child,
                    dir,
                    addr,
                    credentials,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start; last log:\n{last_log}");
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A full image reference in this registry: `image("library/busybox:latest")` →
    /// "127.0.0.1:PORT/library/busybox:latest".
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// The same as a skopeo/containers-image transport reference (`docker://…`).
    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}", self.image(name))
    }

    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (`rootdirectory`); images live under `docker/registry/v2`.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A private scratch directory that is removed with the registry.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry has logged so far (level warn and up).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A containers-auth.json(5) / docker config.json file with this registry's credentials
    /// (`{"auths":{"127.0.0.1:PORT":{"auth":"base64(user:pass)"}}}`), for `--authfile`,
    /// `REGISTRY_AUTH_FILE` or `DOCKER_CONFIG`-style tests. Without auth: an empty `auths`.
    pub fn auth_file(&self) -> PathBuf {
        let path = self.dir.path().join("auth.json");
        let auths = match self.credentials() {
            Some((u, p)) => serde_json::json!({
                self.addr.clone(): { "auth": base64(format!("{u}:{p}").as_bytes()) }
            }),
            None => serde_json::json!({}),
        };
        let doc = serde_json::json!({ "auths": auths });
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        path
    }

    /// A containers-registries.conf(5) file that makes this registry a mirror of docker.io
    /// (and marks it insecure, i.e. plain HTTP, also when addressed directly). Set it as
    /// `BOX_REGISTRIES_CONF` for boxkit, `CONTAINERS_REGISTRIES_CONF` for podman/buildah, and
    /// pass it as `skopeo --registries-conf PATH` (skopeo 1.9 ignores the environment variable).
    pub fn registries_conf(&self) -> PathBuf {
        let path = self.dir.path().join("registries.conf");
        let conf = format!(
            "# Written by the boxkit test harness: docker.io is mirrored by a local registry.\n\
             unqualified-search-registries = [\"docker.io\"]\n\
             short-name-mode = \"permissive\"\n\n\
             [[registry]]\n\
             prefix = \"docker.io\"\n\
             location = \"docker.io\"\n\n\
             [[registry.mirror]]\n\
             location = \"{addr}\"\n\
             insecure = true\n\n\
             [[registry]]\n\
             location = \"{addr}\"\n\
             insecure = true\n",
            addr = self.addr
        );
        std::fs::write(&path, conf).unwrap();
        path
    }

    /// `GET path` (e.g. "/v2/library/busybox/manifests/latest"), with basic auth when the
    /// registry has credentials, accepting every manifest media type.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, true)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `HEAD path`, like [`Registry::get`].
    pub fn head(&self, path: &str) -> Response {
        self.request("HEAD", path, true)
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"))
    }

    /// `DELETE path`, like [`Registry::get`].
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, true)
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    fn request(&self, method: &str, path: &str, auth: bool) -> std::io::Result<Response> {
        let creds = if auth { self.credentials() } else { None };
        http(&self.addr, creds, method, path)
    }
}

/// Poll `GET /v2/` (200, or 401 with auth) with short sleeps; false if the process died or the
/// deadline passed.
/// Up when `GET /v2/` answers; over HTTPS the plain request gets Go's "400: client sent an HTTP
/// request to an HTTPS server", which shows the listener is up just as well.
fn wait_ready(child: &mut Child, addr: &str, tls: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(resp) = http(addr, None, "GET", "/v2/")
            && (resp.status == 200 || resp.status == 401 || (tls && resp.status == 400))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A minimal HTTP/1.0 client: enough for a registry on loopback, and independent of the HTTP
/// stack boxkit itself uses.
pub fn http(
    addr: &str,
    credentials: Option<(&str, &str)>,
    method: &str,
    path: &str,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\
             Accept: application/vnd.oci.image.index.v1+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json, */*\r\n"
    );
    if let Some((u, p)) = credentials {
        req += &format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{u}:{p}").as_bytes())
        );
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGKILL: nothing in the registry needs a graceful shutdown, and its storage goes away.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            if !tail.is_empty() {
                eprintln!("--- docker-registry {} log (last lines) ---", self.addr);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One htpasswd line with a bcrypt hash (the only scheme distribution accepts). Cost 4, the
/// minimum, because the registry checks the hash on every request.
fn htpasswd_line(user: &str, password: &str) -> String {
    // pyenv may put a Python without `crypt` (≥ 3.13) first on PATH; Debian's 3.11 has it.
    for python in ["python3", "/usr/bin/python3"] {
        let out = Command::new(python)
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
                password,
            ])
            .output();
        if let Ok(out) = out {
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && hash.starts_with("$2") {
                return format!("{user}:{hash}\n");
            }
        }
    }
    // Python ≥ 3.13 has no `crypt` module; apache2-utils' htpasswd does the same.
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", user, password])
        .output()
        .expect("neither python3's crypt module nor htpasswd (apache2-utils) is available");
    assert!(out.status.success(), "htpasswd failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string() + "\n"
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
