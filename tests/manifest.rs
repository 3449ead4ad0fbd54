//! Image indexes in the store through the binaries: `boxrun` of an index runs the host's
//! platform and `--platform` another (emulated with QEMU); `box images` lists an index once;
//! `box inspect` shows its manifests; `box manifest create|add|inspect|push|rm` as podman's,
//! checked with skopeo. Root and rootless.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout};
use common::fixtures::{self, Fixture};

/// An empty store and a registry mirroring docker.io with `busybox:multiarch` in it.
fn env_with_multiarch(who: Who) -> Env {
    let e = Env::with_registry(who);
    fixtures::seed(e.registry.as_ref().unwrap(), &[Fixture::BusyboxMultiarch]);
    e
}

fn ok(e: &Env, bin: &str, args: &[&str]) -> String {
    let o = e.cmd(bin, args);
    assert!(
        o.status.success(),
        "{}: {bin} {args:?} failed:\n{}{}",
        e.who.label(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn fails(e: &Env, bin: &str, args: &[&str]) -> String {
    let o = e.cmd(bin, args);
    assert!(
        !o.status.success(),
        "{}: {bin} {args:?} should fail:\n{}",
        e.who.label(),
        stdout(&o)
    );
    stderr(&o)
}

/// The digest of the index the registry serves for `busybox:multiarch` (its bytes hashed
/// here, independent of boxkit).
fn index_digest(e: &Env) -> String {
    let body = e
        .registry
        .as_ref()
        .unwrap()
        .get("/v2/library/busybox/manifests/multiarch")
        .body;
    boxkit::digest::Digest::of_bytes(&body).to_string()
}

fn run_list_inspect(who: Who) {
    let e = env_with_multiarch(who);
    // No platform asked: the host's.
    let out = ok(&e, "boxrun", &["--rm", "busybox:multiarch", "uname", "-m"]);
    assert_eq!(out.trim(), "x86_64");
    // Another platform: pulled into the same index, run under QEMU.
    let out = ok(
        &e,
        "boxrun",
        &[
            "--rm",
            "--platform",
            "linux/arm64",
            "busybox:multiarch",
            "uname",
            "-m",
        ],
    );
    assert_eq!(out.trim(), "aarch64");
    // The tag did not move: the plain name still runs the host's platform, offline too.
    let out = ok(
        &e,
        "boxrun",
        &[
            "--rm",
            "--pull",
            "never",
            "busybox:multiarch",
            "uname",
            "-m",
        ],
    );
    assert_eq!(out.trim(), "x86_64");
    let out = ok(
        &e,
        "boxrun",
        &[
            "--rm",
            "--pull",
            "never",
            "--platform",
            "linux/arm64",
            "busybox:multiarch",
            "uname",
            "-m",
        ],
    );
    assert_eq!(out.trim(), "aarch64");

    // One row for the index, its ID the index digest (docker's containerd store).
    let idx = index_digest(&e);
    let rows = ok(
        &e,
        "box",
        &[
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ],
    );
    let rows: Vec<&str> = rows
        .lines()
        .filter(|l| l.starts_with("busybox:multiarch"))
        .collect();
    assert_eq!(rows, [format!("busybox:multiarch {idx}").as_str()]);

    // inspect: the host's image (templates work on it), and the index's manifests.
    let arch = ok(
        &e,
        "box",
        &[
            "inspect",
            "--format",
            "{{.Architecture}}",
            "busybox:multiarch",
        ],
    );
    assert_eq!(arch.trim(), "amd64");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&e, "box", &["inspect", "busybox:multiarch"])).unwrap();
    let ms = j[0]["Manifests"].as_array().unwrap();
    let plats: Vec<String> = ms
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(plats, ["amd64", "arm64"]);
    assert!(ms.iter().all(|m| m["Present"] == true), "{j}");
    assert_eq!(j[0]["Id"], idx);
}

#[test]
fn run_list_and_inspect_an_index_root() {
    let Some(who) = Who::root() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        run_list_inspect(who);
    }
}

#[test]
fn run_list_and_inspect_an_index_rootless() {
    let Some(who) = Who::with_range() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        run_list_inspect(who);
    }
}

/// The registry's index of `busybox:multiarch`, parsed.
fn registry_index(e: &Env) -> serde_json::Value {
    let body = e
        .registry
        .as_ref()
        .unwrap()
        .get("/v2/library/busybox/manifests/multiarch")
        .body;
    serde_json::from_slice(&body).unwrap()
}

fn skopeo_raw(e: &Env, name: &str) -> String {
    let r = e.registry.as_ref().unwrap();
    fixtures::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &r.docker_ref(name),
    ])
}

fn manifest_commands(who: Who) {
    let e = env_with_multiarch(who);
    let reg = e.registry.as_ref().unwrap();
    let idx = registry_index(&e);
    let arm = idx["manifests"][1]["digest"].as_str().unwrap().to_string();
    let amd = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    // Two single-platform images: the host's through the index, arm64 pinned by its digest
    // (a name tagged to that manifest alone), recorded here with an explicit variant.
    ok(&e, "box", &["pull", "-q", "busybox:multiarch"]);
    let arm_name = format!("busybox@{arm}");
    ok(&e, "box", &["pull", "-q", &arm_name]);

    let err = fails(
        &e,
        "box",
        &["manifest", "add", "nolist", "busybox:multiarch"],
    );
    assert!(err.contains("no manifest list named"), "{err}");
    ok(&e, "box", &["manifest", "create", "localhost/bb:v1"]);
    let err = fails(&e, "box", &["manifest", "create", "localhost/bb:v1"]);
    assert!(err.contains("already exists"), "{err}");
    ok(
        &e,
        "box",
        &["manifest", "add", "localhost/bb:v1", "busybox:multiarch"],
    );
    ok(
        &e,
        "box",
        &[
            "manifest",
            "add",
            "--variant",
            "v8",
            "localhost/bb:v1",
            &arm_name,
        ],
    );
    let j: serde_json::Value =
        serde_json::from_str(&ok(&e, "box", &["manifest", "inspect", "localhost/bb:v1"])).unwrap();
    assert_eq!(j["mediaType"], "application/vnd.oci.image.index.v1+json");
    let got: Vec<(String, String)> = j["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s = format!("{s}/{v}");
            }
            (m["digest"].as_str().unwrap().to_string(), s)
        })
        .collect();
    assert_eq!(
        got,
        [
            (amd.clone(), "linux/amd64".to_string()),
            (arm.clone(), "linux/arm64/v8".to_string())
        ]
    );

    // Push: every image, then the list; skopeo reads back the index byte for byte.
    let dest = reg.image("lists/bb:v1");
    let pushed = ok(
        &e,
        "box",
        &["manifest", "push", "-q", "localhost/bb:v1", &dest],
    );
    let raw = skopeo_raw(&e, "lists/bb:v1");
    assert_eq!(
        boxkit::digest::Digest::of_bytes(raw.as_bytes()).to_string(),
        pushed.trim()
    );
    for d in [&amd, &arm] {
        let one = skopeo_raw(&e, &format!("lists/bb@{d}"));
        assert_eq!(
            boxkit::digest::Digest::of_bytes(one.as_bytes()).to_string(),
            *d
        );
    }
    // podman runs each platform of the pushed list (arm64 under QEMU).
    if matches!(e.who, Who::Root)
        && common::emulation::amd64_host()
        && common::emulation::ready()
        && let Some(pm) = common::podman::Podman::new_or_skip()
    {
        for (platform, want) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
            let o = pm
                .cmd()
                .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
                .args(["run", "--rm", "--platform", platform, &dest, "uname", "-m"])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "podman run --platform {platform}: {}",
                stderr(&o)
            );
            assert_eq!(stdout(&o).trim(), want, "{platform}");
        }
    }
    // inspect of the remote name (not in the store) shows the same index.
    let remote: serde_json::Value =
        serde_json::from_str(&ok(&e, "box", &["manifest", "inspect", &dest])).unwrap();
    assert_eq!(
        remote,
        serde_json::from_str::<serde_json::Value>(&raw).unwrap()
    );

    // remove an entry; rm the list (the images stay).
    ok(&e, "box", &["manifest", "remove", "localhost/bb:v1", &arm]);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&e, "box", &["manifest", "inspect", "localhost/bb:v1"])).unwrap();
    assert_eq!(j["manifests"].as_array().unwrap().len(), 1);
    ok(&e, "box", &["manifest", "rm", "localhost/bb:v1"]);
    let err = fails(&e, "box", &["manifest", "push", "localhost/bb:v1", &dest]);
    assert!(err.contains("no manifest list named"), "{err}");
    ok(&e, "box", &["inspect", &arm_name]);

    // --all adds every platform of an index (pulling the ones not stored), and a Docker
    // manifest list keeps its media type through the push.
    ok(
        &e,
        "box",
        &[
            "manifest",
            "create",
            "--format",
            "docker",
            "--all",
            "localhost/dl:v1",
            "busybox:multiarch",
        ],
    );
    let dest = reg.image("lists/dl:v1");
    ok(
        &e,
        "box",
        &["manifest", "push", "-q", "localhost/dl:v1", &dest],
    );
    let raw: serde_json::Value = serde_json::from_str(&skopeo_raw(&e, "lists/dl:v1")).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn manifest_create_add_inspect_push_remove_rm_root() {
    let Some(who) = Who::root() else { return };
    manifest_commands(who);
}

#[test]
fn manifest_create_add_inspect_push_remove_rm_rootless() {
    let Some(who) = Who::with_range() else { return };
    manifest_commands(who);
}
