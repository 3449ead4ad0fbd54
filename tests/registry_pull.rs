//! `box pull | push | login | logout` against a real local registry (Debian docker-registry)
//! seeded with fixture images made by independent tools; results checked with skopeo.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use boxkit::digest::Digest;
use boxkit::store::Store;
use common::fixtures::{self, Fixture};
use common::registry::Registry;

fn tools() -> bool {
    for t in ["docker-registry", "skopeo", "python3"] {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

/// A private directory with a store, a registries.conf and an empty credentials setup.
/// (`box pull` runs in the tool's user namespace; as root that namespace also maps the host's
/// ids, so root-owned files stay usable.)
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-regtest-")
            .tempdir()
            .unwrap();
        let e = Env { dir };
        e.new_store("store");
        std::fs::create_dir_all(e.path().join("run")).unwrap();
        e
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn new_store(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// Write a registries.conf readable inside the namespace; returns its path.
    fn conf(&self, text: &str) -> PathBuf {
        let p = self.path().join("registries.conf");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    fn mirror_conf(&self, reg: &Registry) -> PathBuf {
        self.conf(&std::fs::read_to_string(reg.registries_conf()).unwrap())
    }

    fn cmd(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(common::bin("box"));
        c.arg("--root").arg(root).args(args);
        c.env("BOX_REGISTRIES_CONF", self.path().join("registries.conf"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("BOX_ROOT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(&self.store(), args).output().unwrap()
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
        "expected failure\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (config digest, layer digests) of what skopeo copies into an OCI layout.
fn skopeo_copy_digests(conf: &Path, src: &str, extra: &[&str]) -> (String, Vec<String>) {
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:x", out.path().display());
    let conf_s = conf.display().to_string();
    let mut args = vec!["--registries-conf", conf_s.as_str(), "copy", "-q"];
    args.extend_from_slice(extra);
    args.extend(["--src-tls-verify=false", src, dest.as_str()]);
    fixtures::skopeo(&args);
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).unwrap()).unwrap();
    let m = idx["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            out.path()
                .join("blobs/sha256")
                .join(m.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    digests_of(&manifest)
}

fn digests_of(manifest: &serde_json::Value) -> (String, Vec<String>) {
    (
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect(),
    )
}

fn stored(root: &Path, name: &str) -> boxkit::store::Image {
    Store::open(root).unwrap().resolve_image(name).unwrap()
}

/// No temporary files left, and every blob in blobs/ hashes to its name.
fn assert_store_consistent(root: &Path) {
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    if let Ok(d) = std::fs::read_dir(root.join("blobs/sha256")) {
        for e in d.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            assert_eq!(
                Digest::of_bytes(&data).hex(),
                e.file_name().to_str().unwrap(),
                "blob {} does not hash to its name",
                e.path().display()
            );
        }
    }
}

#[test]
fn short_names_pull_through_the_mirror_and_equal_skopeo_copy() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    let conf = env.mirror_conf(&reg);
    for (short, f) in [("busybox", Fixture::Busybox), ("layered", Fixture::Layered)] {
        let out = ok(&env.run(&["pull", short]));
        assert_eq!(out.trim(), format!("docker.io/library/{short}:latest"));
        let img = stored(&env.store(), short);
        let (_, layers) = skopeo_copy_digests(
            &conf,
            &format!("docker://docker.io/library/{short}:latest"),
            &[],
        );
        // skopeo rewrites a Docker config when it converts to OCI; compare the config with
        // the registry's own manifest instead.
        let (cfg, _) = digests_of(&fixtures::raw_manifest(&reg, f.name()));
        assert_eq!(
            img.manifest.config.digest.to_string(),
            cfg,
            "{short} config"
        );
        let ours: Vec<String> = img
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect();
        assert_eq!(ours, layers, "{short} layers");
        // The manifest is stored exactly as the registry serves it.
        let raw = reg.get(&format!("/v2/{}/manifests/latest", f.repository()));
        assert_eq!(img.manifest_desc.digest, Digest::of_bytes(&raw.body));
        assert_eq!(img.manifest_desc.media_type, f.media_type());
        // Unpacked while downloading: every layer is ready in the layer cache.
        let layers_dir = env.store().join("layers");
        for d in img.diff_ids() {
            assert!(
                boxkit::layer::cached_layer(&layers_dir, &d).is_some(),
                "{short}: layer {d} not unpacked"
            );
        }
    }
    let bb = stored(&env.store(), "busybox");
    let tree = boxkit::layer::cached_layer(&env.store().join("layers"), &bb.diff_ids()[0]).unwrap();
    assert!(tree.join("bin/busybox").is_file());
    assert_store_consistent(&env.store());
    // skopeo reads the store as an OCI layout under the normalised name (containers/image
    // skips index entries of Docker media types, so this holds for the OCI-typed image).
    let inspect = fixtures::skopeo(&[
        "inspect",
        &format!(
            "oci:{}:docker.io/library/layered:latest",
            env.store().display()
        ),
    ]);
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");
}

#[test]
fn full_names_digests_and_repeated_pulls() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.mirror_conf(&reg);
    let full = reg.image("library/busybox:latest");
    let o = env.run(&["pull", &full]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Pull complete"), "plain progress lines: {err}");
    let img = stored(&env.store(), &full);
    // Again: nothing to download.
    let o = env.run(&["pull", &full]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Already exists"));
    // Pinned by digest, quiet: prints only the name.
    let pinned = format!(
        "{}@{}",
        reg.image("library/busybox"),
        img.manifest_desc.digest
    );
    let o = env.run(&["pull", "-q", &pinned]);
    let out = ok(&o);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.trim(), pinned);
    // A wrong digest is refused and nothing is tagged.
    let wrong = format!(
        "{}@{}",
        reg.image("library/busybox"),
        Digest::of_bytes(b"nope")
    );
    let err = fails(&env.run(&["pull", &wrong]));
    assert!(err.contains("not found"), "{err}");
    assert_store_consistent(&env.store());
}

#[test]
fn index_picks_the_host_platform_or_the_requested_one() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    let conf = env.mirror_conf(&reg);
    let platform_file = |store: &Path, name: &str| {
        let img = stored(store, name);
        let tree = boxkit::layer::cached_layer(&store.join("layers"), &img.diff_ids()[0]).unwrap();
        std::fs::read_to_string(tree.join("platform")).unwrap()
    };
    ok(&env.run(&["pull", "multi"]));
    let host = match std::env::consts::ARCH {
        "aarch64" => "linux/arm64\n",
        _ => "linux/amd64\n",
    };
    assert_eq!(platform_file(&env.store(), "multi"), host);
    let (_, host_layers) =
        skopeo_copy_digests(&conf, "docker://docker.io/library/multi:latest", &[]);
    let img = stored(&env.store(), "multi");
    assert_eq!(img.manifest.layers[0].digest.to_string(), host_layers[0]);

    let other = env.new_store("store-arm");
    let o = env
        .cmd(&other, &["pull", "--platform", "linux/arm64", "multi"])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(platform_file(&other, "multi"), "linux/arm64\n");
    let (_, arm_layers) = skopeo_copy_digests(
        &conf,
        "docker://docker.io/library/multi:latest",
        &["--override-arch", "arm64"],
    );
    let arm = stored(&other, "multi");
    assert_eq!(arm.manifest.layers[0].digest.to_string(), arm_layers[0]);

    let err = fails(&env.run(&["pull", "--platform", "linux/s390x", "multi"]));
    assert!(
        err.contains("linux/s390x")
            && err.contains("linux/amd64")
            && err.contains("linux/arm64/v8"),
        "{err}"
    );
    assert_store_consistent(&env.store());
}

#[test]
fn a_failing_mirror_falls_back_to_the_next() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    // A port nobody listens on, then the real registry.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    env.conf(&format!(
        "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
         [[registry.mirror]]\nlocation = \"{dead_addr}\"\ninsecure = true\n\
         [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr()
    ));
    let o = env.run(&["pull", "busybox"]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&dead_addr),
        "the failed mirror is reported: {err}"
    );
    stored(&env.store(), "busybox");
}

#[test]
fn errors_say_what_to_do() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    // docker.io rewritten to the local registry (no mirror), so a miss does not fall back to
    // the real Docker Hub: tests talk to 127.0.0.1 only.
    env.conf(&format!(
        "[[registry]]\nprefix = \"docker.io\"\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr()
    ));
    // Not found: the normalised name.
    let err = fails(&env.run(&["pull", "nosuchimage"]));
    assert!(
        err.contains("docker.io/library/nosuchimage:latest") && err.contains("not found"),
        "{err}"
    );
    // TLS against a plain-HTTP registry: hint to mark it insecure.
    env.conf("");
    let err = fails(&env.run(&["pull", &reg.image("library/busybox")]));
    assert!(err.contains("insecure"), "{err}");
    // Blocked.
    env.conf(&format!(
        "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
        reg.addr()
    ));
    let err = fails(&env.run(&["pull", &reg.image("library/busybox")]));
    assert!(err.contains("blocked"), "{err}");
    // Unreachable.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    env.conf(&format!(
        "[[registry]]\nlocation = \"{dead_addr}\"\ninsecure = true\n"
    ));
    let err = fails(&env.run(&["pull", &format!("{dead_addr}/x/y")]));
    assert!(err.contains("cannot reach registry"), "{err}");
    // Bad platform syntax.
    let err = fails(&env.run(&["pull", "--platform", "a/b/c/d", "busybox"]));
    assert!(err.contains("invalid platform"), "{err}");
    assert_store_consistent(&env.store());
    let tags = Store::open(env.store()).unwrap().tags().unwrap();
    assert!(tags.is_empty(), "nothing tagged: {tags:?}");
}

#[test]
fn login_pull_logout_with_basic_auth() {
    if !tools() {
        return;
    }
    let reg = Registry::start_with_auth("tester", "s3cret");
    fixtures::seed(&reg, &[Fixture::Busybox]);
    let env = Env::new();
    env.mirror_conf(&reg);
    let name = reg.image("library/busybox:latest");
    let err = fails(&env.run(&["pull", &name]));
    assert!(
        err.contains("unauthorized")
            && err.contains("no credentials found")
            && err.contains("box login"),
        "{err}"
    );
    let login = |pw: &str| {
        let mut c = env.cmd(
            &env.store(),
            &["login", "-u", "tester", "--password-stdin", reg.addr()],
        );
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let authfile = env.path().join("run/containers/auth.json");
    let err = fails(&login("wrong"));
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!authfile.exists(), "bad credentials were saved");
    let out = ok(&login("s3cret"));
    assert!(out.contains("Login Succeeded"), "{out}");
    let mode = std::fs::metadata(&authfile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(&env.run(&["pull", &name]));
    stored(&env.store(), &name);
    // Credentials from a docker config.json work too (wrong ones are named in the error).
    let docker = env.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    ok(&env.run(&["logout", reg.addr()]));
    let err = fails(&env.run(&["logout", reg.addr()]));
    assert!(err.contains("not logged in"), "{err}");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            reg.addr(),
            common::registry::base64(b"tester:wrong")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        docker.join("config.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = fails(&env.run(&["pull", &name]));
    assert!(
        err.contains("config.json") && err.contains("user tester"),
        "{err}"
    );
    // A docker credential helper named by credHelpers is asked first (protocol: `get`, the
    // server on stdin, JSON on stdout).
    let bin = env.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-boxtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$server\" > {log}\n\
             if [ \"$server\" = \"{addr}\" ]; then\n\
             echo '{{\"ServerURL\":\"{addr}\",\"Username\":\"tester\",\"Secret\":\"s3cret\"}}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            addr = reg.addr(),
            log = env.path().join("helper.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"boxtest"}}}}"#, reg.addr()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = env
        .cmd(&env.store(), &["pull", "--platform", "linux/amd64", &name])
        .env("PATH", path)
        .output()
        .unwrap();
    ok(&o);
    let asked = std::fs::read_to_string(env.path().join("helper.log")).unwrap();
    assert_eq!(asked.trim(), reg.addr());
}

#[test]
fn push_then_skopeo_reads_it_and_a_pull_back_is_byte_identical() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    let conf = env.mirror_conf(&reg);
    let src = reg.image("library/layered:latest");
    ok(&env.run(&["pull", &src]));
    let dest = reg.image("pushed/layered:v1");
    let o = env.run(&["push", &src, &dest]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    // Same registry, other repository: blobs are mounted, not uploaded again.
    assert!(err.contains("Mounted from library/layered"), "{err}");
    let img = stored(&env.store(), &src);
    let served = reg.get("/v2/pushed/layered/manifests/v1");
    assert_eq!(
        served.body,
        Store::open(env.store())
            .unwrap()
            .read_blob(&img.manifest_desc.digest)
            .unwrap()
    );
    let (cfg, layers) = skopeo_copy_digests(&conf, &reg.docker_ref("pushed/layered:v1"), &[]);
    assert_eq!(cfg, img.manifest.config.digest.to_string());
    assert_eq!(layers.len(), 2);

    // Into an empty registry: every blob is uploaded; then pull back into a fresh store.
    let empty = Registry::start();
    let env2 = Env::new();
    env2.conf(&format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr(),
        empty.addr()
    ));
    let dest2 = empty.image("fresh/layered:latest");
    let o = env2
        .cmd(&env.store(), &["push", &src, &dest2])
        .output()
        .unwrap();
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Pushed"));
    let o = env2
        .cmd(&env.store(), &["push", "-q", &src, &dest2])
        .output()
        .unwrap();
    let out = ok(&o);
    assert_eq!(out.trim(), img.manifest_desc.digest.to_string());
    let inspect: serde_json::Value = serde_json::from_str(&fixtures::skopeo(&[
        "inspect",
        "--tls-verify=false",
        &empty.docker_ref("fresh/layered:latest"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], img.manifest_desc.digest.to_string());
    ok(&env2.run(&["pull", &dest2]));
    let back = stored(&env2.store(), &dest2);
    assert_eq!(back.manifest_desc.digest, img.manifest_desc.digest);
    for l in back.manifest.layers.iter().chain([&back.manifest.config]) {
        let a = std::fs::read(env.store().join("blobs/sha256").join(l.digest.hex())).unwrap();
        let b = std::fs::read(env2.store().join("blobs/sha256").join(l.digest.hex())).unwrap();
        assert!(a == b, "blob {} differs after the round trip", l.digest);
    }
}

#[test]
fn missing_policy_never_contacts_the_registry_when_the_image_is_present() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.mirror_conf(&reg);
    ok(&env.run(&["pull", "busybox"]));
    // Pinned to the index digest of a multi-platform image: the store tags the index itself
    // with the pinned name (only the host's platform stored).
    let index_digest = Digest::of_bytes(&reg.get("/v2/library/multi/manifests/latest").body);
    let pinned = format!("docker.io/library/multi@{index_digest}");
    ok(&env.run(&["pull", &pinned]));
    drop(reg); // the registry is gone now
    let store = Store::open(env.store()).unwrap();
    let opts = boxkit::registry::PullOptions::default();
    let img = boxkit::registry::ensure_image(&store, "busybox", &opts).unwrap();
    assert_eq!(img.names[0].to_string(), "docker.io/library/busybox:latest");
    let multi = boxkit::registry::ensure_image(&store, &pinned, &opts).unwrap();
    assert_ne!(multi.manifest_desc.digest, index_digest);
    assert_eq!(multi.index.as_ref().unwrap().digest, index_digest);
    let never = boxkit::registry::PullOptions {
        policy: boxkit::registry::PullPolicy::Never,
        ..Default::default()
    };
    let err = boxkit::registry::ensure_image(&store, "alpine", &never).unwrap_err();
    assert!(err.to_string().contains("--pull=never"), "{err}");
}

#[test]
fn zstd_layers_pull_and_unpack() {
    if !tools() {
        return;
    }
    let reg = Registry::start();
    let src = format!(
        "oci:{}:latest",
        fixtures::layout(Fixture::Busybox).display()
    );
    let dest = reg.docker_ref("zstd/busybox:latest");
    fixtures::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "zstd",
        &src,
        &dest,
    ]);
    let env = Env::new();
    env.mirror_conf(&reg);
    let name = reg.image("zstd/busybox:latest");
    ok(&env.run(&["pull", &name]));
    let img = stored(&env.store(), &name);
    assert_eq!(
        img.manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let tree =
        boxkit::layer::cached_layer(&env.store().join("layers"), &img.diff_ids()[0]).unwrap();
    assert!(tree.join("bin/busybox").is_file());
    assert_store_consistent(&env.store());
}

#[test]
fn rootless_pull_unpacks_with_the_users_subordinate_ids() {
    if !tools() {
        return;
    }
    if !common::is_root() {
        return common::skip("creating the unprivileged test users needs root");
    }
    let reg = Registry::with_fixtures();
    for (user, ranged) in [
        (common::users::with_range(), true),
        (common::users::without_range(), false),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-rootless-pull-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        let conf = dir.path().join("registries.conf");
        std::fs::copy(reg.registries_conf(), &conf).unwrap();
        std::os::unix::fs::chown(&conf, Some(user.uid), Some(user.gid)).unwrap();
        let store = dir.path().join("store");
        let o = common::users::command_as(&user, Path::new("/usr/bin/env"))
            .arg(format!("BOX_REGISTRIES_CONF={}", conf.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", dir.path().display()))
            .arg(common::bin("box"))
            .arg("--root")
            .arg(&store)
            .args(["pull", "busybox"])
            .output()
            .unwrap();
        ok(&o);
        let img = stored(&store, "busybox");
        let tree = boxkit::layer::cached_layer(&store.join("layers"), &img.diff_ids()[0]);
        if ranged {
            // Container uid 1000 owns /home/app: on the host that is the subuid start + 999.
            use std::os::unix::fs::MetadataExt;
            let tree = tree.expect("unpacked while pulling");
            let start: u32 = std::fs::read_to_string("/etc/subuid")
                .unwrap()
                .lines()
                .find_map(|l| {
                    let mut f = l.split(':');
                    (f.next()? == user.name).then(|| f.next()?.parse().ok())?
                })
                .expect("the user has a subuid range");
            let home = std::fs::metadata(tree.join("home/app")).unwrap();
            assert_eq!(home.uid(), start + 999);
            assert_eq!(
                std::fs::metadata(tree.join("bin/busybox")).unwrap().uid(),
                user.uid
            );
        } else {
            // One id only: the download works; unpacking is left to a run (which explains).
            assert!(tree.is_none());
            assert!(String::from_utf8_lossy(&o.stderr).contains("Pull complete"));
        }
    }
}

#[test]
fn an_index_tag_gains_the_platforms_asked_for_and_never_flips() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.mirror_conf(&reg);
    ok(&env.run(&["pull", "multi"]));
    let index_digest = Digest::of_bytes(&reg.get("/v2/library/multi/manifests/latest").body);
    let tag_target = || {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.store().join("index.json")).unwrap())
                .unwrap();
        let e = &idx["manifests"][0];
        (
            e["digest"].as_str().unwrap().to_string(),
            e["mediaType"].as_str().unwrap().to_string(),
        )
    };
    // The tag points at the index itself; only the host's platform is stored.
    assert_eq!(
        tag_target(),
        (
            index_digest.to_string(),
            "application/vnd.oci.image.index.v1+json".to_string()
        )
    );
    // skopeo reads the partial index in the store (it picks the host's platform).
    let inspect = fixtures::skopeo(&[
        "inspect",
        &format!(
            "oci:{}:docker.io/library/multi:latest",
            env.store().display()
        ),
    ]);
    assert!(inspect.contains("\"Architecture\": \"amd64\""), "{inspect}");

    let store = Store::open(env.store()).unwrap();
    let host = store.resolve_image("multi").unwrap();
    let foreign = if host.config.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    drop(store);
    // `box create` resolves its image as `boxrun` does (registry::ensure_image).
    let err = fails(&env.run(&[
        "create",
        "--pull",
        "never",
        "--platform",
        foreign,
        "multi",
        "true",
    ]));
    assert!(err.contains(foreign), "{err}");
    ok(&env.run(&["create", "--platform", foreign, "multi", "true"]));
    let store = Store::open(env.store()).unwrap();
    let plat = boxkit::image::Platform::parse(foreign).unwrap();
    let other = store.resolve_image_for("multi", Some(&plat)).unwrap();
    assert_eq!(format!("linux/{}", other.config.architecture), foreign);
    assert_eq!(other.index.as_ref().unwrap().digest, index_digest);
    // The tag did not move, and the host's platform is still what a plain name gives.
    assert_eq!(tag_target().0, index_digest.to_string());
    let again = store.resolve_image("multi").unwrap();
    assert_eq!(again.manifest_desc.digest, host.manifest_desc.digest);
    // Both are in the store now: with the registry gone, either platform resolves.
    drop(reg);
    drop(store);
    ok(&env.run(&[
        "create",
        "--pull",
        "never",
        "--platform",
        foreign,
        "multi",
        "true",
    ]));
    ok(&env.run(&["prune"]));
    let store = Store::open(env.store()).unwrap();
    for d in [
        &host.manifest_desc.digest,
        &other.manifest_desc.digest,
        &index_digest,
    ] {
        assert!(store.has_blob(d), "prune removed {d}");
    }
    assert_store_consistent(&env.store());
}

#[test]
fn push_of_an_index_pushes_every_platform_then_the_index() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.mirror_conf(&reg);
    ok(&env.run(&["pull", "multi"]));
    let dest = reg.image("pushed/multi:v1");
    // Only the host's platform is stored: the push names the missing one and sends nothing.
    let host = stored(&env.store(), "multi");
    let foreign = if host.config.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let err = fails(&env.run(&["push", "multi", &dest]));
    assert!(
        err.contains(foreign) && err.contains("not in the store"),
        "{err}"
    );
    assert_eq!(reg.get("/v2/pushed/multi/manifests/v1").status, 404);

    ok(&env.run(&["create", "--platform", foreign, "multi", "true"]));
    let out = ok(&env.run(&["push", "-q", "multi", &dest]));
    let index_digest = host.index.as_ref().unwrap().digest.clone();
    assert_eq!(out.trim(), index_digest.to_string());
    // skopeo sees the index, byte for byte as stored, and every platform's manifest.
    let raw = fixtures::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("pushed/multi:v1"),
    ]);
    let store = Store::open(env.store()).unwrap();
    assert_eq!(raw.as_bytes(), store.read_blob(&index_digest).unwrap());
    let idx: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(idx["mediaType"], "application/vnd.oci.image.index.v1+json");
    for m in idx["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let one = fixtures::skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &reg.docker_ref(&format!("pushed/multi@{d}")),
        ]);
        assert_eq!(Digest::of_bytes(one.as_bytes()).to_string(), d);
    }
}

#[test]
fn save_of_an_index_tagged_name_writes_the_host_platform_skopeo_reads() {
    if !tools() {
        return;
    }
    let reg = Registry::with_fixtures();
    let env = Env::new();
    env.mirror_conf(&reg);
    ok(&env.run(&["pull", "multi"]));
    let host = stored(&env.store(), "multi");
    for (format, transport) in [
        ("docker-archive", "docker-archive"),
        ("oci-archive", "oci-archive"),
    ] {
        let out = env.path().join(format!("multi-{format}.tar"));
        ok(&env.run(&[
            "save",
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
            "multi",
        ]));
        let inspect: serde_json::Value = serde_json::from_str(&fixtures::skopeo(&[
            "inspect",
            "--config",
            &format!("{transport}:{}", out.display()),
        ]))
        .unwrap();
        assert_eq!(
            inspect["architecture"], host.config.architecture,
            "{format}: {inspect}"
        );
        assert_eq!(
            inspect["rootfs"]["diff_ids"][0],
            host.diff_ids()[0].to_string(),
            "{format}"
        );
    }
}
