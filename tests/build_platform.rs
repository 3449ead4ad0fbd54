//! The platform of one build: the multi-arch busybox fixture runs under QEMU (checked with
//! skopeo and podman, independent of boxkit); `FROM --platform` gives each stage its own
//! platform (a `$BUILDPLATFORM` stage runs natively in a cross build, the target stage under
//! QEMU); the automatic platform ARGs; cache keys per stage platform; a platform without a
//! binfmt_misc entry is refused before any work.

mod build_common;
mod common;

use build_common::{Env, Who, stderr};
use common::fixtures::{self, Fixture};
use common::podman::Podman;

/// The emulated tests need qemu-user-static and its binfmt entry: `scripts/host-setup.sh`
/// registers it (as root, idempotently); this runs it once per process.
fn emulation_ready() -> bool {
    common::podman::host_setup();
    let ok = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|s| s.lines().next() == Some("enabled"));
    if !ok {
        common::skip("no qemu-aarch64 binfmt_misc entry (qemu-user-static, scripts/host-setup.sh)");
    }
    ok
}

#[test]
fn multiarch_fixture_is_an_index_whose_arm64_image_podman_runs_under_qemu() {
    let Some(_root) = Who::root() else { return };
    if !emulation_ready() {
        return;
    }
    let Some(reg) = common::registry::Registry::start_or_skip() else {
        return;
    };
    fixtures::seed(&reg, &[Fixture::BusyboxMultiarch]);
    let raw = fixtures::raw_manifest(&reg, Fixture::BusyboxMultiarch.name());
    assert_eq!(raw["mediaType"], Fixture::BusyboxMultiarch.media_type());
    let platforms: Vec<String> = raw["manifests"]
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
            s
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);

    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let conf = reg.registries_conf();
    for (platform, want) in [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")] {
        let o = pm
            .cmd()
            .env("CONTAINERS_REGISTRIES_CONF", &conf)
            .args(["run", "--rm", "--platform", platform])
            .arg(reg.image(Fixture::BusyboxMultiarch.name()))
            .args(["uname", "-m"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman run --platform {platform}: {}",
            stderr(&o)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            want,
            "{platform}"
        );
    }
}

#[allow(dead_code)]
fn env_with_multiarch(who: Who) -> Env {
    let e = Env::with_registry(who);
    fixtures::seed(e.registry.as_ref().unwrap(), &[Fixture::BusyboxMultiarch]);
    e
}
