//! The test harness itself: the local registry, the fixture images, the docker.io mirror
//! config, checked with independent tools (skopeo, umoci, podman, Python-made tars read back
//! with the `tar` crate).
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

use common::fixtures::{self, Fixture};
use common::podman::Podman;
use common::registry::{self, Registry};

/// Every tool these tests need, or skip (a failure under BOX_TEST_STRICT=1).
fn tools(extra: &[&str]) -> bool {
    for t in ["docker-registry", "skopeo", "python3"].iter().chain(extra) {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

/// The registry's blob, gunzipped, as (path, entry type, mode, uid, link target, content).
type Entry = (String, tar::EntryType, u32, u64, String, Vec<u8>);

fn layer_entries(reg: &Registry, repo: &str, digest: &str) -> Vec<Entry> {
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    assert_eq!(resp.status, 200, "blob {digest}");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&resp.body[..]));
    let mut out = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((
            path,
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            link,
            data,
        ));
    }
    out
}

fn find<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.0.trim_start_matches("./").trim_end_matches('/') == path)
}

#[test]
fn registry_starts_answers_and_stops_cleanly() {
    if !tools(&[]) {
        return;
    }
    let t = Instant::now();
    let reg = Registry::start();
    eprintln!("registry started in {:?}", t.elapsed());
    let addr = reg.addr().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let resp = reg.get("/v2/");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
    let dir = reg.dir().to_path_buf();
    assert!(dir.join("config.yml").is_file());
    drop(reg);
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(
        TcpStream::connect(&addr).is_err(),
        "registry still listening on {addr}"
    );
}

#[test]
fn two_registries_run_side_by_side() {
    if !tools(&[]) {
        return;
    }
    let (a, b) = (Registry::start(), Registry::start());
    assert_ne!(a.addr(), b.addr());
    fixtures::seed(&a, &[Fixture::Busybox]);
    assert_eq!(a.get("/v2/library/busybox/manifests/latest").status, 200);
    assert_eq!(b.get("/v2/library/busybox/manifests/latest").status, 404);
}

#[test]
fn auth_registry_needs_the_credentials() {
    if !tools(&[]) {
        return;
    }
    let reg = Registry::start_with_auth("tester", "s3cret");
    let anon = registry::http(reg.addr(), None, "GET", "/v2/").unwrap();
    assert_eq!(anon.status, 401);
    assert!(
        anon.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{anon:?}"
    );
    let wrong = registry::http(reg.addr(), Some(("tester", "nope")), "GET", "/v2/").unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(reg.get("/v2/").status, 200);

    // A real push with credentials, then reads with and without them.
    fixtures::push(&reg, Fixture::Busybox, "private/busybox:v1");
    let m = fixtures::raw_manifest(&reg, "private/busybox:v1");
    assert_eq!(m["mediaType"], Fixture::Busybox.media_type());
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(reg.docker_ref("private/busybox:v1"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "anonymous read must fail");

    // The auth file helper carries the same credentials.
    let auth = std::fs::read_to_string(reg.auth_file()).unwrap();
    let auth: serde_json::Value = serde_json::from_str(&auth).unwrap();
    assert_eq!(
        auth["auths"][reg.addr()]["auth"],
        registry::base64(b"tester:s3cret")
    );
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(reg.auth_file())
        .arg(reg.docker_ref("private/busybox:v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_fixture_has_its_promised_manifest_media_type() {
    if !tools(&[]) {
        return;
    }
    let reg = Registry::with_fixtures();
    for &f in Fixture::SMALL {
        let m = fixtures::raw_manifest(&reg, f.name());
        assert_eq!(m["mediaType"], f.media_type(), "{f:?}: {m}");
        assert_eq!(m["schemaVersion"], 2);
    }
    let m = fixtures::raw_manifest(&reg, Fixture::Busybox.name());
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let m = fixtures::raw_manifest(&reg, Fixture::Layered.name());
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

#[test]
fn busybox_fixture_is_a_busybox_root_filesystem() {
    if !tools(&[]) {
        return;
    }
    let reg = Registry::with_fixtures();
    let r = reg.docker_ref(Fixture::Busybox.name());
    let config: serde_json::Value = serde_json::from_str(&fixtures::skopeo(&[
        "inspect",
        "--config",
        "--tls-verify=false",
        &r,
    ]))
    .unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(
        config["config"]["Env"][0]
            .as_str()
            .unwrap()
            .starts_with("PATH=/usr/local/sbin:")
    );

    let m = fixtures::raw_manifest(&reg, Fixture::Busybox.name());
    let layer = layer_entries(
        &reg,
        "library/busybox",
        m["layers"][0]["digest"].as_str().unwrap(),
    );
    let bb = find(&layer, "bin/busybox").expect("bin/busybox");
    assert_eq!(bb.2 & 0o777, 0o755);
    assert!(bb.5.starts_with(b"\x7fELF"));
    let sh = find(&layer, "bin/sh").expect("bin/sh");
    assert_eq!((sh.1, sh.4.as_str()), (tar::EntryType::Symlink, "busybox"));
    let applets = layer
        .iter()
        .filter(|e| e.1 == tar::EntryType::Symlink)
        .count();
    assert!(applets > 100, "only {applets} applet links");
    let passwd = String::from_utf8(find(&layer, "etc/passwd").unwrap().5.clone()).unwrap();
    for line in [
        "root:x:0:0:",
        "app:x:1000:1000:app:/home/app:",
        "nobody:x:65534:65534:",
    ] {
        assert!(passwd.contains(line), "{passwd}");
    }
    assert!(find(&layer, "etc/group").is_some());
    assert_eq!(find(&layer, "tmp").unwrap().2 & 0o7777, 0o1777);
    assert_eq!(find(&layer, "root").unwrap().1, tar::EntryType::Directory);
    assert_eq!(find(&layer, "home/app").unwrap().3, 1000);
}

#[test]
fn layered_fixture_has_whiteouts_and_umoci_applies_them() {
    if !tools(&["umoci"]) {
        return;
    }
    let reg = Registry::with_fixtures();
    let m = fixtures::raw_manifest(&reg, Fixture::Layered.name());
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let one = layer_entries(
        &reg,
        "library/layered",
        layers[0]["digest"].as_str().unwrap(),
    );
    let two = layer_entries(
        &reg,
        "library/layered",
        layers[1]["digest"].as_str().unwrap(),
    );
    for p in [
        "etc/removed.txt",
        "etc/kept.txt",
        "data/a.txt",
        "data/sub/b.txt",
    ] {
        assert!(find(&one, p).is_some(), "layer 1 lacks {p}");
    }
    assert_eq!(
        find(&one, "etc/kept-hardlink.txt").unwrap().1,
        tar::EntryType::Link
    );
    for p in ["etc/.wh.removed.txt", "data/.wh..wh..opq", "data/new.txt"] {
        assert!(find(&two, p).is_some(), "layer 2 lacks {p}");
    }

    // Pull it back with skopeo and let umoci (an independent implementation) apply the layers.
    let tmp = tempfile::tempdir().unwrap();
    let oci = format!("oci:{}:latest", tmp.path().join("oci").display());
    fixtures::skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &reg.docker_ref(Fixture::Layered.name()),
        &oci,
    ]);
    let bundle = tmp.path().join("bundle");
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", tmp.path().join("oci").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    let data: Vec<String> = std::fs::read_dir(rootfs.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(data, ["new.txt"]);
    assert!(!rootfs.join("etc/removed.txt").exists());
    assert!(rootfs.join("etc/kept.txt").exists());
    assert!(rootfs.join("etc/added.txt").exists());
}

#[test]
fn multi_index_lists_both_platforms_with_distinct_images() {
    if !tools(&[]) {
        return;
    }
    let reg = Registry::with_fixtures();
    let index = fixtures::raw_manifest(&reg, Fixture::Multi.name());
    let mut platforms = BTreeMap::new();
    for m in index["manifests"].as_array().unwrap() {
        let p = &m["platform"];
        platforms.insert(
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            ),
            m["digest"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(
        platforms.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for (platform, digest) in &platforms {
        let m = fixtures::raw_manifest(&reg, &format!("library/multi@{digest}"));
        let layer = layer_entries(
            &reg,
            "library/multi",
            m["layers"][0]["digest"].as_str().unwrap(),
        );
        let content = &find(&layer, "platform").expect("/platform").5;
        assert_eq!(String::from_utf8_lossy(content), format!("{platform}\n"));
    }
}

#[test]
fn mirror_config_sends_docker_io_to_the_local_registry() {
    if !tools(&[]) {
        return;
    }
    let reg = Registry::with_fixtures();
    let conf = reg.registries_conf();
    let direct = fixtures::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("library/busybox:latest"),
    ]);
    // skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF (podman 4.3 honours it, see the podman test);
    // its hidden global flag --registries-conf reads the same file. There is no route to the
    // real docker.io here, so an answer can only come from the mirror.
    let via_mirror = fixtures::skopeo(&[
        "--registries-conf",
        conf.to_str().unwrap(),
        "inspect",
        "--raw",
        "docker://docker.io/library/busybox:latest",
    ]);
    assert_eq!(direct, via_mirror);
}

#[test]
fn podman_pulls_through_the_mirror_and_runs_the_fixtures() {
    if !tools(&[]) {
        return;
    }
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let reg = Registry::with_fixtures();
    let conf = reg.registries_conf();
    let run = |args: &[&str]| {
        let out = pm
            .cmd()
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let t = Instant::now();
    run(&["pull", "-q", "docker.io/library/busybox:latest"]);
    run(&["run", "--rm", "--network", "none", "busybox", "true"]);
    eprintln!("podman pull + run: {:?}", t.elapsed());
    let id = run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "app",
        "busybox",
        "id",
    ]);
    assert!(id.starts_with("uid=1000(app) gid=1000(app)"), "{id}");
    let merged = run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "docker.io/library/layered:latest",
        "sh",
        "-c",
        "ls /data; test ! -e /etc/removed.txt && cat /etc/kept.txt",
    ]);
    assert_eq!(merged, "new.txt\nkept\n");
}

#[test]
fn oci_archive_is_readable_by_skopeo() {
    if !tools(&[]) {
        return;
    }
    for f in [Fixture::Busybox, Fixture::Multi] {
        let archive = fixtures::oci_archive(f);
        let names = std::process::Command::new("tar")
            .arg("tf")
            .arg(&archive)
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&names.stdout);
        assert!(
            names
                .lines()
                .any(|l| l.trim_start_matches("./") == "index.json"),
            "{names}"
        );
        assert!(
            names
                .lines()
                .any(|l| l.trim_start_matches("./") == "oci-layout"),
            "{names}"
        );
        let src = format!("oci-archive:{}:{}:latest", archive.display(), f.short());
        let raw: serde_json::Value =
            serde_json::from_str(&fixtures::skopeo(&["inspect", "--raw", &src])).unwrap();
        let want = match f {
            Fixture::Multi => "application/vnd.oci.image.index.v1+json",
            _ => "application/vnd.oci.image.manifest.v1+json",
        };
        assert_eq!(raw["mediaType"], want);
    }
}

#[test]
fn seeding_a_fresh_registry_is_quick_and_deletes_work() {
    if !tools(&[]) {
        return;
    }
    fixtures::layout(Fixture::Busybox); // build the cache outside the timing
    fixtures::seed(&Registry::start(), &[]);
    let t = Instant::now();
    let reg = Registry::start();
    let started = t.elapsed();
    fixtures::seed(&reg, Fixture::SMALL);
    let seeded = t.elapsed();
    eprintln!("fresh registry: started in {started:?}, seeded 3 images by {seeded:?}");
    assert!(seeded.as_secs() < 5, "seeding took {seeded:?}");

    // The registry is configured with deletes enabled.
    let head = reg.head("/v2/library/busybox/manifests/latest");
    assert_eq!(head.status, 200);
    let digest = head.header("Docker-Content-Digest").unwrap().to_string();
    let del = reg.delete(&format!("/v2/library/busybox/manifests/{digest}"));
    assert_eq!(del.status, 202, "{}", String::from_utf8_lossy(&del.body));
    assert_eq!(reg.head("/v2/library/busybox/manifests/latest").status, 404);

    // The template was not touched by the delete: a second registry still has busybox.
    let other = Registry::with_fixtures();
    assert_eq!(
        other.head("/v2/library/busybox/manifests/latest").status,
        200
    );
}

#[test]
fn debian_fixture_is_a_runnable_debian() {
    if !tools(&["debootstrap"]) {
        return;
    }
    if !common::is_root() {
        return common::skip("the debootstrap fixture is made as root");
    }
    let t = Instant::now();
    let tar = fixtures::debian_rootfs_tar();
    assert!(std::fs::metadata(&tar).unwrap().len() > 50 << 20);
    let reg = Registry::start();
    fixtures::seed(&reg, &[Fixture::Debian]);
    eprintln!("debian fixture ready in {:?}", t.elapsed());
    let m = fixtures::raw_manifest(&reg, Fixture::Debian.name());
    assert_eq!(m["mediaType"], Fixture::Debian.media_type());

    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let out = pm
        .cmd()
        .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "docker.io/library/debian:bookworm",
            "cat",
            "/etc/debian_version",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("12."));
}
