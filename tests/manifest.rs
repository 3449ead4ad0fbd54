//! Image indexes in the store through the binaries: `boxrun` of an index runs the host's
//! platform and `--platform` another (emulated with QEMU); `box images` lists an index once;
//! `box inspect` shows its manifests; `box manifest create|add|inspect|push|rm` as podman's,
//! checked with skopeo. Root and rootless.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout};
use common::fixtures::{self, Fixture};

/// The emulated runs need qemu-user-static and its binfmt entry (`scripts/host-setup.sh`).
fn emulation_ready() -> bool {
    common::podman::host_setup();
    let ok = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|s| s.lines().next() == Some("enabled"));
    if !ok {
        common::skip("no qemu-aarch64 binfmt_misc entry (qemu-user-static, scripts/host-setup.sh)");
    }
    ok
}

fn amd64_host() -> bool {
    let ok = std::env::consts::ARCH == "x86_64";
    if !ok {
        common::skip("these tests expect an x86-64 host (arm64 emulated)");
    }
    ok
}

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
    if amd64_host() && emulation_ready() {
        run_list_inspect(who);
    }
}

#[test]
fn run_list_and_inspect_an_index_rootless() {
    let Some(who) = Who::with_range() else { return };
    if amd64_host() && emulation_ready() {
        run_list_inspect(who);
    }
}
