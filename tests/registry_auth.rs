//! Registry auth that lasts, and where registries.conf comes from: `box pull` and `box push`
//! through a bearer-token front (tests/fixtures/token_proxy.py, standard-library Python) whose
//! tokens live two or three seconds, in front of a real local registry (Debian
//! docker-registry) seeded with the fixture images. The front counts what it saw (/stats), so each test checks the
//! client's behaviour, not just its exit code. All traffic stays on 127.0.0.1.
mod build_common;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::fixtures::Fixture;
use common::registry::{self, Registry};

fn tools() -> bool {
    for t in ["docker-registry", "skopeo", "python3"] {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

const USER: &str = "tester";
const PASSWORD: &str = "secret";
const IDENTITY_TOKEN: &str = "idt-0123456789";

/// The token front: a Python process, killed on drop.
struct Front {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Front {
    fn start(backend: &Registry, extra: &[&str]) -> Front {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/token_proxy.py");
        let child = Command::new("python3")
            .arg(&script)
            .args(["--backend", backend.addr(), "--port-file"])
            .arg(&port_file)
            .args(["--user", USER, "--password", PASSWORD])
            .args(["--identity-token", IDENTITY_TOKEN, "--expires", "2"])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("start token_proxy.py");
        let t = Instant::now();
        while !port_file.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "token proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        Front {
            child,
            addr: format!("127.0.0.1:{}", port.trim()),
            _dir: dir,
        }
    }

    fn stats(&self) -> serde_json::Value {
        let r = registry::http(&self.addr, None, "GET", "/stats").expect("GET /stats");
        serde_json::from_slice(&r.body).unwrap()
    }

    fn stat(&self, k: &str) -> u64 {
        self.stats()[k].as_u64().unwrap()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private store, config directory, run dir and HOME; nothing of the host's leaks in.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-authtest-")
            .tempdir()
            .unwrap();
        for d in ["store", "run", "docker", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Env { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// registries.conf marking these hosts plain HTTP.
    fn insecure(&self, hosts: &[&str]) -> PathBuf {
        let text: String = hosts
            .iter()
            .map(|h| format!("[[registry]]\nlocation = \"{h}\"\ninsecure = true\n\n"))
            .collect();
        self.write("registries.conf", &text)
    }

    /// docker config.json with one `auths` entry.
    fn docker_auth(&self, host: &str, entry: serde_json::Value) {
        let doc = serde_json::json!({ "auths": { host: entry } });
        self.write("docker/config.json", &doc.to_string());
    }

    fn basic_auth(&self, host: &str, user: &str, password: &str) {
        let auth = registry::base64(format!("{user}:{password}").as_bytes());
        self.docker_auth(host, serde_json::json!({ "auth": auth }));
    }

    /// `box --root STORE ARGS` with BOX_REGISTRIES_CONF = our registries.conf.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::bin("box"));
        c.arg("--root").arg(self.path().join("store")).args(args);
        c.env("BOX_REGISTRIES_CONF", self.path().join("registries.conf"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("BOX_ROOT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(125),
        "expected exit 125\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Backend with the fixtures, a front with `extra` knobs, and an Env with basic credentials
/// for the front.
fn setup(extra: &[&str]) -> Option<(Registry, Front, Env)> {
    if !tools() {
        return None;
    }
    let reg = Registry::with_fixtures();
    let front = Front::start(&reg, extra);
    let env = Env::new();
    env.insecure(&[&front.addr, reg.addr()]);
    env.basic_auth(&front.addr, USER, PASSWORD);
    Some((reg, front, env))
}

/// `GET path` with `Authorization: Bearer token`, over a plain socket (not boxkit's HTTP
/// stack): (status, raw head).
fn bearer_get(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw.split("\r\n\r\n").next().unwrap().to_string())
}

#[test]
fn the_token_front_guards_the_registry_and_its_tokens_lapse() {
    // The fixture itself, checked without boxkit: the client tests rely on it refusing.
    let Some((_reg, front, _env)) = setup(&[]) else {
        return;
    };
    let r = registry::http(&front.addr, None, "GET", "/v2/").unwrap();
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[1].starts_with("Bearer realm="), "{challenges:?}");
    let bad = registry::http(
        &front.addr,
        Some((USER, "wrong")),
        "GET",
        "/token?service=boxkit-test",
    )
    .unwrap();
    assert_eq!(bad.status, 401);
    let t = registry::http(
        &front.addr,
        Some((USER, PASSWORD)),
        "GET",
        "/token?service=boxkit-test",
    )
    .unwrap();
    assert_eq!(t.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(doc["expires_in"], 2);
    let token = doc["token"].as_str().unwrap();
    assert_eq!(bearer_get(&front.addr, "/v2/", token).0, 200);
    std::thread::sleep(Duration::from_millis(2100));
    let (status, head) = bearer_get(&front.addr, "/v2/", token);
    assert_eq!(status, 401, "{head}");
    assert_eq!(front.stat("expired"), 1);
}

#[test]
fn a_pull_that_outlives_its_token_renews_it_and_survives_a_slow_blob() {
    // Tokens live 3 s here (renewed 0.6 s early: room for a loaded CI machine). Each blob is
    // answered 3.5 s late and streamed at 256 KiB/s: the layers are asked for after the first
    // token has lapsed, and a layer's download outlasts the next.
    let Some((_reg, front, env)) =
        setup(&["--expires", "3", "--blob-delay", "3.5", "--rate", "262144"])
    else {
        return;
    };
    let name = format!("{}/{}", front.addr, Fixture::Layered.name());
    let t = Instant::now();
    let out = ok(&env.run(&["pull", &name]));
    assert_eq!(out.trim(), name);
    assert!(t.elapsed() > Duration::from_secs(4), "{:?}", t.elapsed());
    let s = front.stats();
    assert!(s["tokens"].as_u64().unwrap() >= 2, "no token renewal: {s}");
    // Renewed before the lapse, not after a refusal.
    assert_eq!(s["expired"], 0, "{s}");
    assert_eq!(s["basic_grants"], s["tokens"], "{s}");
}

#[test]
fn a_rootless_pull_with_an_identity_token_outlives_its_token() {
    let Some((_reg, front, env)) = setup(&["--expires", "3", "--blob-delay", "3.5"]) else {
        return;
    };
    if !common::is_root() {
        return common::skip("creating the unprivileged test user needs root");
    }
    let user = common::users::with_range();
    env.docker_auth(
        &front.addr,
        serde_json::json!({ "identitytoken": IDENTITY_TOKEN }),
    );
    let chown = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(env.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let p = |rel: &str| env.path().join(rel).display().to_string();
    let name = format!("{}/{}", front.addr, Fixture::Layered.name());
    let o = common::users::command_as(&user, Path::new("/usr/bin/env"))
        .arg(format!("BOX_REGISTRIES_CONF={}", p("registries.conf")))
        .arg(format!("XDG_RUNTIME_DIR={}", p("run")))
        .arg(format!("DOCKER_CONFIG={}", p("docker")))
        .arg(format!("HOME={}", p("home")))
        .arg(common::bin("box"))
        .arg("--root")
        .arg(p("store"))
        .args(["pull", &name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&o).trim(), name);
    let s = front.stats();
    assert!(s["refresh_grants"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["basic_grants"], 0, "{s}");
    assert_eq!(s["expired"], 0, "{s}");
}

#[test]
fn a_push_that_outlives_its_token_renews_it() {
    // Tokens live 3 s; each blob PUT is forwarded 3.5 s late: the manifest goes up after the
    // first token lapsed.
    let Some((reg, front, env)) = setup(&["--expires", "3", "--put-delay", "3.5"]) else {
        return;
    };
    let src = reg.image(Fixture::Busybox.name());
    ok(&env.run(&["pull", &src]));
    let dest = format!("{}/team/copy:1", front.addr);
    ok(&env.run(&["push", &src, &dest]));
    let s = front.stats();
    assert!(s["tokens"].as_u64().unwrap() >= 2, "no token renewal: {s}");
    assert_eq!(s["expired"], 0, "{s}");
    // The manifest (pushed last, after the slow blobs) arrived at the real registry.
    assert_eq!(reg.get("/v2/team/copy/manifests/1").status, 200);
}

#[test]
fn a_401_in_the_middle_of_a_push_gets_one_new_token_and_the_upload_restarts() {
    let Some((reg, front, env)) = setup(&["--revoke-once", "PUT:/blobs/uploads/"]) else {
        return;
    };
    let src = reg.image(Fixture::Busybox.name());
    ok(&env.run(&["pull", &src]));
    let dest = format!("{}/team/revoked:1", front.addr);
    ok(&env.run(&["push", &src, &dest]));
    let s = front.stats();
    assert_eq!(s["revoked"], 1, "{s}");
    assert!(s["tokens"].as_u64().unwrap() >= 2, "{s}");
    let raw = reg.get("/v2/team/revoked/manifests/1");
    assert_eq!(raw.status, 200);
    // Every blob the manifest names is whole in the registry.
    let m: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let b = reg.get(&format!("/v2/team/revoked/blobs/{d}"));
        assert_eq!(b.status, 200);
        assert_eq!(b.body.len() as u64, l["size"].as_u64().unwrap());
    }
}

#[test]
fn a_401_in_the_middle_of_a_pull_gets_one_new_token() {
    let Some((_reg, front, env)) = setup(&["--revoke-once", "GET:/blobs/"]) else {
        return;
    };
    let name = format!("{}/{}", front.addr, Fixture::Busybox.name());
    ok(&env.run(&["pull", &name]));
    assert_eq!(front.stat("revoked"), 1);
    assert!(front.stat("tokens") >= 2);
}

#[test]
fn an_identity_token_uses_the_oauth2_refresh_grant() {
    let Some((_reg, front, env)) = setup(&[]) else {
        return;
    };
    env.docker_auth(
        &front.addr,
        serde_json::json!({ "auth": registry::base64(b"<token>:"), "identitytoken": IDENTITY_TOKEN }),
    );
    let name = format!("{}/{}", front.addr, Fixture::Busybox.name());
    ok(&env.run(&["pull", &name]));
    assert!(front.stat("refresh_grants") >= 1);
    assert_eq!(front.stat("basic_grants"), 0);
    assert_eq!(front.stat("refused"), 0);

    // A wrong identity token is refused, and the error says so.
    env.docker_auth(
        &front.addr,
        serde_json::json!({ "identitytoken": "not-the-token" }),
    );
    let err = fails(&env.run(&["pull", &format!("{}/library/layered", front.addr)]));
    assert!(err.contains("identity token"), "{err}");
}

#[test]
fn bad_credentials_fail_clearly_naming_the_registry_and_the_fix() {
    let Some((_reg, front, env)) = setup(&[]) else {
        return;
    };
    env.basic_auth(&front.addr, USER, "wrong");
    let name = format!("{}/{}", front.addr, Fixture::Busybox.name());
    let err = fails(&env.run(&["pull", &name]));
    assert!(err.contains(&front.addr), "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains(&format!("box login {}", front.addr)), "{err}");
    assert!(front.stat("refused") >= 1);
}

#[test]
fn login_gets_a_token_and_a_wrong_password_is_refused() {
    let Some((_reg, front, env)) = setup(&[]) else {
        return;
    };
    let authfile = env.path().join("login.json");
    let authfile_s = authfile.display().to_string();
    let login = |password: &str| {
        env.run(&[
            "login",
            "-u",
            USER,
            "-p",
            password,
            "--authfile",
            &authfile_s,
            &front.addr,
        ])
    };
    let err = fails(&login("wrong"));
    assert!(err.contains(&front.addr), "{err}");
    assert!(!authfile.exists(), "refused credentials were stored");
    ok(&login(PASSWORD));
    assert!(front.stat("basic_grants") >= 1);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&authfile).unwrap()).unwrap();
    assert!(doc["auths"][&front.addr]["auth"].is_string(), "{doc}");
}

#[test]
fn containers_registries_conf_replaces_the_default_file() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    // A user file that would send docker.io nowhere: CONTAINERS_REGISTRIES_CONF must win.
    env.write(
        "home/.config/containers/registries.conf",
        "[[registry]]\nprefix = \"docker.io\"\nblocked = true\n",
    );
    let out = env
        .cmd(&["pull", "busybox"])
        .env_remove("BOX_REGISTRIES_CONF")
        .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "docker.io/library/busybox:latest");
    // Without it the user file is in effect.
    let out = env
        .cmd(&["pull", "layered"])
        .env_remove("BOX_REGISTRIES_CONF")
        .output()
        .unwrap();
    assert!(fails(&out).contains("blocked"));
}

#[test]
fn a_drop_in_overrides_the_main_files_mirror() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    // Nothing listens on the main file's mirror or location (a port we bound and released).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let main = env.write(
        "main.conf",
        &format!(
            "[[registry]]\nprefix = \"example.test\"\nlocation = \"{dead}/library\"\ninsecure = true\n\
             [[registry.mirror]]\nlocation = \"{dead}/mirror\"\ninsecure = true\n"
        ),
    );
    let pull = |name: &str| {
        env.cmd(&["pull", name])
            .env_remove("BOX_REGISTRIES_CONF")
            .env("CONTAINERS_REGISTRIES_CONF", &main)
            .output()
            .unwrap()
    };
    fails(&pull("example.test/busybox"));
    env.write(
        "home/.config/containers/registries.conf.d/10-ignored.conf",
        &format!("[[registry]]\nprefix = \"example.test\"\nlocation = \"{dead}/x\"\n"),
    );
    env.write(
        "home/.config/containers/registries.conf.d/50-mirror.conf",
        &format!(
            "[[registry]]\nprefix = \"example.test\"\nlocation = \"{dead}/library\"\ninsecure = true\n\
             [[registry.mirror]]\nlocation = \"{}/library\"\ninsecure = true\n",
            reg.addr()
        ),
    );
    env.write(
        "home/.config/containers/registries.conf.d/README",
        "not a .conf [",
    );
    assert_eq!(
        ok(&pull("example.test/busybox")).trim(),
        "example.test/busybox:latest"
    );
}

#[test]
fn an_alias_wins_over_the_docker_io_default() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.write(
        "registries.conf",
        &format!(
            "unqualified-search-registries = [\"docker.io\"]\n\
             [aliases]\n\"mytool\" = \"{0}/library/busybox\"\n\n\
             [[registry]]\nlocation = \"{0}\"\ninsecure = true\n",
            reg.addr()
        ),
    );
    let out = ok(&env.run(&["pull", "mytool"]));
    assert_eq!(out.trim(), format!("{}/library/busybox:latest", reg.addr()));
    // The tag given with the short name is kept.
    let out = ok(&env.run(&["pull", "mytool:latest"]));
    assert_eq!(out.trim(), format!("{}/library/busybox:latest", reg.addr()));
    // A run finds the aliased image in the store without asking any registry.
    let o = Command::new(common::bin("boxrun"))
        .arg("--root")
        .arg(env.path().join("store"))
        .args(["--rm", "--pull", "never", "--network", "none"])
        .args(["mytool", "echo", "aliased-and-ran"])
        .env("BOX_REGISTRIES_CONF", env.path().join("registries.conf"))
        .env("XDG_RUNTIME_DIR", env.path().join("run"))
        .env("HOME", env.path().join("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(ok(&o), "aliased-and-ran\n");
}

#[test]
fn a_cache_export_that_outlives_its_token_renews_it_as_root_and_rootless() {
    if !tools() {
        return;
    }
    let Some(root) = build_common::Who::root() else {
        return;
    };
    let reg = Registry::with_fixtures();
    // Tokens live 3 s; each blob PUT of the cache image is forwarded 3.5 s late: its manifest
    // goes up after the first token lapsed.
    let front = Front::start(&reg, &["--expires", "3", "--put-delay", "3.5"]);
    // Config files the builder (root or the unprivileged user) can read.
    let cfg = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        cfg.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let conf = cfg.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            front.addr
        ),
    )
    .unwrap();
    std::fs::create_dir(cfg.path().join("docker")).unwrap();
    let auth = registry::base64(format!("{USER}:{PASSWORD}").as_bytes());
    std::fs::write(
        cfg.path().join("docker/config.json"),
        serde_json::json!({ "auths": { &front.addr: { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let (conf_s, docker_s) = (
        conf.display().to_string(),
        cfg.path().join("docker").display().to_string(),
    );
    let Some(user) = build_common::Who::with_range() else {
        return;
    };
    for (i, who) in [root, user].into_iter().enumerate() {
        let label = who.label();
        let env = build_common::Env::new(who);
        env.write("a.txt", &format!("cache export {i}\n"));
        env.boxfile("FROM busybox\nCOPY a.txt /a.txt\n");
        let before = front.stat("tokens");
        let cache = format!("{}/team/cache:{i}", front.addr);
        let o = env.build_env(
            &["--cache-to", &cache],
            &[
                ("BOX_REGISTRIES_CONF", &conf_s),
                ("DOCKER_CONFIG", &docker_s),
            ],
        );
        assert!(
            o.status.success(),
            "{label}: boxbuild --cache-to failed:\n{}",
            build_common::stderr(&o)
        );
        assert!(
            front.stat("tokens") >= before + 2,
            "{label}: {}",
            front.stats()
        );
        assert_eq!(front.stat("expired"), 0, "{label}: {}", front.stats());
        let m = reg.get(&format!("/v2/team/cache/manifests/{i}"));
        assert_eq!(m.status, 200, "{label}: no cache manifest in the registry");
    }
}
