//! Pull against a small misbehaving registry (an in-test HTTP server serving the busybox
//! fixture's OCI layout, built by tests/fixtures/images/build.py) for the failure cases a real
//! registry will not produce on demand: wrong bytes, a truncated body, 500 then success, 429
//! with Retry-After. After each, the store must be consistent and nothing tagged. The same
//! server also plays Docker Hub's anonymous token flow and serves an image with a plain
//! (uncompressed) tar layer, which skopeo cannot put into a registry. A hostile registry that
//! serves a 10 GiB image config, announced in the manifest or not, is refused by the config
//! size cap (`BOX_MAX_CONFIG_SIZE`) before anything is stored.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxkit::digest::Digest;
use boxkit::store::Store;
use common::fixtures::{self, Fixture};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The layer's bytes with one byte flipped (same length).
    BadDigest,
    /// Content-Length of the whole layer, then half of it and a closed connection.
    Truncated,
    /// The first two layer requests get 500.
    ServerError,
    /// The first layer request gets 429 with Retry-After: 1.
    RateLimited,
    /// No fault at all (for layouts the real registry cannot be given, e.g. plain tar layers).
    None,
    /// No fault, but Docker Hub's anonymous token flow: every /v2/ request needs a bearer
    /// token from the realm the 401 challenge names.
    Token,
    /// The manifest announces a 10 GiB config, and the config blob is 10 GiB of zeros.
    HugeConfig,
    /// The manifest announces the real config size, but the config blob is 10 GiB of zeros.
    EndlessConfig,
}

/// What the hostile configs weigh.
const TEN_GIB: u64 = 10 << 30;

/// A reply header the test server acts on instead of sending: stream this many zero bytes
/// (with that Content-Length) until the client goes away.
const STREAM_ZEROS: &str = "x-test-stream-zeros";

const TOKEN: &str = "anon-token-123";

/// What the server saw: (when, request line, status sent).
type Log = Arc<Mutex<Vec<(Instant, String, u16)>>>;

struct BadRegistry {
    addr: String,
    log: Log,
    layer: Digest,
    config: Digest,
    manifest: Digest,
}

impl BadRegistry {
    fn start(fault: Fault) -> BadRegistry {
        Self::serve_layout(fixtures::layout(Fixture::Busybox), fault)
    }

    /// Serve the image tagged in the OCI layout `layout` as `library/busybox`.
    fn serve_layout(layout: PathBuf, fault: Fault) -> BadRegistry {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest: Digest = idx["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let blob = |d: &Digest| std::fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&blob(&manifest)).unwrap();
        let layer: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
        let config: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
        // The manifest as served: rewritten to announce a huge config for HugeConfig.
        let manifest_bytes = if fault == Fault::HugeConfig {
            m["config"]["size"] = TEN_GIB.into();
            serde_json::to_vec(&m).unwrap()
        } else {
            blob(&manifest)
        };
        let manifest = Digest::of_bytes(&manifest_bytes);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let state = Arc::new(Server {
            addr: addr.clone(),
            layout,
            fault,
            layer: layer.clone(),
            config: config.clone(),
            manifest: manifest.clone(),
            manifest_bytes,
            layer_hits: Mutex::new(0),
            log: log.clone(),
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let st = state.clone();
                std::thread::spawn(move || {
                    let _ = st.serve(conn);
                });
            }
        });
        BadRegistry {
            addr,
            log,
            layer,
            config,
            manifest,
        }
    }

    fn blob_requests(&self, d: &Digest) -> usize {
        let want = format!("/blobs/{d}");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l, _)| l.starts_with("GET ") && l.contains(&want))
            .count()
    }

    fn layer_requests(&self) -> Vec<(Instant, u16)> {
        let want = format!("/blobs/{}", self.layer);
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l, _)| l.starts_with("GET ") && l.contains(&want))
            .map(|(t, _, s)| (*t, *s))
            .collect()
    }
}

/// (status, headers, body, cut the body after n bytes)
type Reply = (u16, Vec<(String, String)>, Vec<u8>, Option<usize>);

struct Server {
    addr: String,
    layout: PathBuf,
    fault: Fault,
    layer: Digest,
    config: Digest,
    manifest: Digest,
    manifest_bytes: Vec<u8>,
    layer_hits: Mutex<u32>,
    log: Log,
}

impl Server {
    fn serve(&self, conn: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut w = conn;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end().to_string();
            let mut auth = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(v.trim().to_string());
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let head = line.starts_with("HEAD ");
            let (status, headers, body, cut) = self.respond(&path, auth.as_deref());
            self.log
                .lock()
                .unwrap()
                .push((Instant::now(), line.clone(), status));
            let reason = match status {
                200 => "OK",
                401 => "Unauthorized",
                404 => "Not Found",
                429 => "Too Many Requests",
                _ => "Internal Server Error",
            };
            let zeros: Option<u64> = headers
                .iter()
                .find(|(k, _)| k == STREAM_ZEROS)
                .map(|(_, v)| v.parse().unwrap());
            let mut resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
                zeros.unwrap_or(body.len() as u64)
            );
            for (k, v) in headers.iter().filter(|(k, _)| k != STREAM_ZEROS) {
                resp += &format!("{k}: {v}\r\n");
            }
            resp += "\r\n";
            w.write_all(resp.as_bytes())?;
            if head {
                continue;
            }
            if let Some(mut left) = zeros {
                // Until the client hangs up (the write fails) or all of it is sent.
                let chunk = vec![0u8; 1 << 16];
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    w.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                continue;
            }
            match cut {
                Some(n) => {
                    w.write_all(&body[..n])?;
                    w.flush()?;
                    // Close mid-body: the client sees fewer bytes than Content-Length.
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
                None => w.write_all(&body)?,
            }
        }
    }

    fn blob(&self, d: &Digest) -> Option<Vec<u8>> {
        std::fs::read(self.layout.join("blobs/sha256").join(d.hex())).ok()
    }

    fn respond(&self, path: &str, auth: Option<&str>) -> Reply {
        let none = Vec::new;
        if self.fault == Fault::Token {
            if path.starts_with("/token?") {
                let body = format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#);
                return (200, none(), body.into_bytes(), None);
            }
            if auth != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="bad-registry",scope="repository:library/busybox:pull""#,
                    self.addr
                );
                let h = vec![("WWW-Authenticate".to_string(), challenge)];
                return (401, h, b"{}".to_vec(), None);
            }
        }
        if path == "/v2/" {
            return (200, none(), b"{}".to_vec(), None);
        }
        let Some(rest) = path.strip_prefix("/v2/library/busybox/") else {
            return (404, none(), b"{}".to_vec(), None);
        };
        if let Some(r) = rest.strip_prefix("manifests/") {
            if r == "latest" || r == self.manifest.to_string() {
                let ct = vec![(
                    "Content-Type".to_string(),
                    "application/vnd.oci.image.manifest.v1+json".to_string(),
                )];
                return (200, ct, self.manifest_bytes.clone(), None);
            }
            return (404, none(), b"{}".to_vec(), None);
        }
        let Some(d) = rest
            .strip_prefix("blobs/")
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            return (404, none(), b"{}".to_vec(), None);
        };
        if d == self.config && matches!(self.fault, Fault::HugeConfig | Fault::EndlessConfig) {
            let h = vec![(STREAM_ZEROS.to_string(), TEN_GIB.to_string())];
            return (200, h, Vec::new(), None);
        }
        let Some(mut body) = self.blob(&d) else {
            return (404, none(), b"{}".to_vec(), None);
        };
        if d != self.layer {
            return (200, none(), body, None);
        }
        let hit = {
            let mut h = self.layer_hits.lock().unwrap();
            *h += 1;
            *h
        };
        match self.fault {
            Fault::BadDigest => {
                let mid = body.len() / 2;
                body[mid] ^= 0xff;
                (200, none(), body, None)
            }
            Fault::Truncated => {
                let half = body.len() / 2;
                (200, none(), body, Some(half))
            }
            Fault::ServerError if hit <= 2 => (500, none(), b"{}".to_vec(), None),
            Fault::RateLimited if hit == 1 => (
                429,
                vec![("Retry-After".to_string(), "1".to_string())],
                b"{}".to_vec(),
                None,
            ),
            _ => (200, none(), body, None),
        }
    }
}

/// A store and a registries.conf naming the bad registry insecure.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(reg: &BadRegistry) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-faults-")
            .tempdir()
            .unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let conf = dir.path().join("registries.conf");
        std::fs::write(
            &conf,
            format!(
                "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
                reg.addr
            ),
        )
        .unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
        Env { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn pull(&self, reg: &BadRegistry) -> Output {
        self.pull_env(reg, &[])
    }

    fn pull_env(&self, reg: &BadRegistry, env: &[(&str, &str)]) -> Output {
        std::process::Command::new(common::bin("box"))
            .arg("--root")
            .arg(self.store())
            .args(["pull", &format!("{}/library/busybox", reg.addr)])
            .env(
                "BOX_REGISTRIES_CONF",
                self.dir.path().join("registries.conf"),
            )
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env("DOCKER_CONFIG", self.dir.path())
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

fn assert_consistent_and_untagged(root: &Path, layer: &Digest) {
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    for e in std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            Digest::of_bytes(&data).hex(),
            e.file_name().to_str().unwrap()
        );
    }
    assert!(!root.join("blobs/sha256").join(layer.hex()).exists());
    let store = Store::open(root).unwrap();
    assert!(store.tags().unwrap().is_empty(), "something was tagged");
    let layers: Vec<_> = std::fs::read_dir(root.join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(layers.is_empty(), "unverified content was unpacked");
}

fn blob_stored(root: &Path, d: &Digest) -> bool {
    root.join("blobs/sha256").join(d.hex()).exists()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn have_fixture_tools() -> bool {
    for t in ["docker-registry", "skopeo", "python3"] {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed (fixtures need it)"));
            return false;
        }
    }
    true
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_refused() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::BadDigest);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&reg.layer.to_string()) && err.contains("hashes to sha256:"),
        "expected and actual digest named: {err}"
    );
    // A digest mismatch is not a transient fault: one download, no retries.
    assert_eq!(reg.layer_requests().len(), 1);
    assert_consistent_and_untagged(&env.store(), &reg.layer);
}

#[test]
fn a_truncated_blob_is_retried_then_refused() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::Truncated);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&reg.layer.to_string()) && err.contains("ended after"),
        "{err}"
    );
    assert!(
        reg.layer_requests().len() > 1,
        "a broken download is retried"
    );
    assert_consistent_and_untagged(&env.store(), &reg.layer);
}

#[test]
fn a_500_then_success_pulls_the_image() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::ServerError);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert!(o.status.success(), "{}", stderr(&o));
    let statuses: Vec<u16> = reg.layer_requests().iter().map(|r| r.1).collect();
    assert_eq!(statuses, [500, 500, 200]);
    let store = Store::open(env.store()).unwrap();
    let img = store
        .resolve_image(&format!("{}/library/busybox", reg.addr))
        .unwrap();
    assert_eq!(img.manifest_desc.digest, reg.manifest);
    assert!(store.has_blob(&reg.layer));
}

#[test]
fn a_429_waits_as_long_as_retry_after_says() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::RateLimited);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert!(o.status.success(), "{}", stderr(&o));
    let reqs = reg.layer_requests();
    assert_eq!(reqs.iter().map(|r| r.1).collect::<Vec<_>>(), [429, 200]);
    // Behaviour, not speed: the retry came no earlier than the server allowed.
    let waited = reqs[1].0 - reqs[0].0;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    let store = Store::open(env.store()).unwrap();
    assert!(store.has_blob(&reg.layer));
    assert_eq!(store.tags().unwrap().len(), 1);
}

#[test]
fn the_anonymous_bearer_token_flow_works() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::Token);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = reg.log.lock().unwrap().clone();
    let token_reqs: Vec<&String> = log
        .iter()
        .filter(|(_, l, _)| l.starts_with("GET /token?"))
        .map(|(_, l, _)| l)
        .collect();
    assert_eq!(token_reqs.len(), 1, "one token per session: {log:?}");
    assert!(
        token_reqs[0].contains("service=bad-registry")
            && token_reqs[0].contains("scope=repository%3Alibrary%2Fbusybox%3Apull"),
        "{}",
        token_reqs[0]
    );
    // Only the first ping went without the token.
    let unauthorized = log.iter().filter(|(_, _, s)| *s == 401).count();
    assert_eq!(unauthorized, 1, "{log:?}");
    let store = Store::open(env.store()).unwrap();
    assert_eq!(store.tags().unwrap().len(), 1);
}

#[test]
fn plain_tar_layers_pull_and_unpack() {
    if !have_fixture_tools() {
        return;
    }
    // An image whose only layer is an uncompressed tar, written by the fixture builder
    // (Python's tarfile); registries accept it, skopeo would recompress it on the way in.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("plain");
    let script = format!(
        "import sys; sys.path.insert(0, {images:?}); import build\n\
         lay = build.Layout({out:?}); l = build.Layer(); l.dir('etc'); \
         l.file('etc/hello.txt', 'plain tar\\n'); tar = l.finish()\n\
         import hashlib\n\
         d = dict(lay.blob(tar), mediaType='application/vnd.oci.image.layer.v1.tar')\n\
         lay.tag(lay.image_from_descs([d], ['sha256:' + hashlib.sha256(tar).hexdigest()], \
         build.runnable_config(), 'plain'))\n",
        images = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images"),
        out = layout.display().to_string(),
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let reg = BadRegistry::serve_layout(layout, Fault::None);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert!(o.status.success(), "{}", stderr(&o));
    let store = Store::open(env.store()).unwrap();
    let img = store
        .resolve_image(&format!("{}/library/busybox", reg.addr))
        .unwrap();
    assert_eq!(
        img.manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    // The diff_id is the blob's own digest for a plain tar.
    assert_eq!(img.diff_ids()[0], img.manifest.layers[0].digest);
    let tree =
        boxkit::layer::cached_layer(&env.store().join("layers"), &img.diff_ids()[0]).unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hello.txt")).unwrap(),
        "plain tar\n"
    );
}

#[test]
fn a_config_announced_above_the_cap_is_refused_before_download() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::HugeConfig);
    let env = Env::new(&reg);
    let o = env.pull(&reg);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&reg.config.to_string())
            && err.contains("10 GiB")
            && err.contains("4 MiB")
            && err.contains("BOX_MAX_CONFIG_SIZE"),
        "the error names the blob, its size, the cap and the setting: {err}"
    );
    assert_eq!(
        reg.blob_requests(&reg.config),
        0,
        "the config was requested"
    );
    assert!(!blob_stored(&env.store(), &reg.config));
    assert_consistent_and_untagged(&env.store(), &reg.layer);
}

#[test]
fn a_config_bigger_than_announced_stops_at_the_announced_size() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::EndlessConfig);
    let env = Env::new(&reg);
    let start = Instant::now();
    let o = env.pull(&reg);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&reg.config.to_string()), "{err}");
    // Stopped at once, not after 10 GiB.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(!blob_stored(&env.store(), &reg.config));
    assert_consistent_and_untagged(&env.store(), &reg.layer);
}

#[test]
fn the_config_cap_is_configurable() {
    if !have_fixture_tools() {
        return;
    }
    let reg = BadRegistry::start(Fault::None);
    let env = Env::new(&reg);
    // busybox's config is a few hundred bytes: over a 100-byte cap.
    let o = env.pull_env(&reg, &[("BOX_MAX_CONFIG_SIZE", "100")]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&reg.config.to_string()) && err.contains("100 bytes"),
        "{err}"
    );
    assert!(!blob_stored(&env.store(), &reg.config));
    assert_consistent_and_untagged(&env.store(), &reg.layer);
    let o = env.pull_env(&reg, &[("BOX_MAX_CONFIG_SIZE", "lots")]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("BOX_MAX_CONFIG_SIZE=\"lots\""),
        "{}",
        stderr(&o)
    );
    let o = env.pull_env(&reg, &[("BOX_MAX_CONFIG_SIZE", "1m")]);
    assert!(o.status.success(), "{}", stderr(&o));
}
