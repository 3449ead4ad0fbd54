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

#[test]
fn multiarch_fixture_is_an_index_whose_arm64_image_podman_runs_under_qemu() {
    let Some(_root) = Who::root() else { return };
    if !common::emulation::ready() {
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

/// An empty store and a registry mirroring docker.io with `busybox:multiarch` in it.
fn env_with_multiarch(who: Who) -> Env {
    let e = Env::with_registry(who);
    fixtures::seed(e.registry.as_ref().unwrap(), &[Fixture::BusyboxMultiarch]);
    e
}

const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox:multiarch AS build
RUN uname -m > /arch
FROM busybox:multiarch
COPY --from=build /arch /build-arch
RUN uname -m > /target-arch
RUN echo \"build=$(cat /build-arch) target=$(cat /target-arch)\"
";

fn cross_compile_stage_runs_natively_and_target_stage_emulated(who: Who) {
    let e = env_with_multiarch(who);
    e.boxfile(CROSS);
    let out = e.build_ok(&[
        "--progress=plain",
        "--platform",
        "linux/arm64",
        "-t",
        "cross",
    ]);
    assert!(out.contains("build=x86_64 target=aarch64"), "{out}");
    assert!(
        !out.contains("warning: FROM"),
        "each stage got its platform's image: {out}"
    );
    let img = e.inspect("cross");
    assert_eq!(img["Architecture"], "arm64", "{img}");
    assert_eq!(img["Os"], "linux");
}

#[test]
fn cross_compile_runs_the_buildplatform_stage_natively_and_the_target_stage_under_qemu_root() {
    let Some(who) = Who::root() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        cross_compile_stage_runs_natively_and_target_stage_emulated(who);
    }
}

#[test]
fn cross_compile_runs_the_buildplatform_stage_natively_and_the_target_stage_under_qemu_rootless() {
    let Some(who) = Who::with_range() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        cross_compile_stage_runs_natively_and_target_stage_emulated(who);
    }
}

#[test]
fn platform_args_have_buildkits_values_once_declared() {
    let Some(who) = Who::root() else { return };
    if !(common::emulation::amd64_host() && common::emulation::ready()) {
        return;
    }
    let e = env_with_multiarch(who);
    e.boxfile(
        "FROM --platform=$BUILDPLATFORM busybox:multiarch AS native
RUN echo \"undeclared=[$TARGETARCH][$BUILDPLATFORM]\"
FROM busybox:multiarch
COPY --from=native /etc/hostname /native-hostname
ARG BUILDPLATFORM
ARG BUILDOS
ARG BUILDARCH
ARG BUILDVARIANT
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
RUN echo \"args $BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT] $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $(uname -m)\"
",
    );
    let out = e.build_ok(&[
        "--progress=plain",
        "--platform",
        "linux/arm64/v8",
        "-t",
        "args",
    ]);
    assert!(
        out.contains("args linux/amd64 linux amd64 [] linux/arm64 linux arm64 [] aarch64"),
        "{out}"
    );
    assert!(
        out.contains("undeclared=[][]"),
        "a stage sees them only once declared: {out}"
    );
    // No --platform: the target is the build platform.
    let out = e.build_ok(&["--progress=plain", "-t", "args"]);
    assert!(
        out.contains("args linux/amd64 linux amd64 [] linux/amd64 linux amd64 [] x86_64"),
        "{out}"
    );
}

#[test]
fn a_stage_from_a_stage_keeps_its_parents_platform_whatever_its_own_from_platform_says() {
    let Some(who) = Who::root() else { return };
    if !(common::emulation::amd64_host() && common::emulation::ready()) {
        return;
    }
    let e = env_with_multiarch(who);
    e.boxfile(
        "FROM --platform=$BUILDPLATFORM busybox:multiarch AS base
FROM --platform=linux/arm64 base
RUN echo \"child=$(uname -m)\"
",
    );
    let out = e.build_ok(&[
        "--progress=plain",
        "--platform",
        "linux/arm64",
        "-t",
        "child",
    ]);
    assert!(out.contains("child=x86_64"), "{out}");
    assert_eq!(e.inspect("child")["Architecture"], "amd64");
}

const SHARED: &str = "FROM --platform=$BUILDPLATFORM busybox:multiarch AS build
RUN echo build-step-ran && uname -m > /arch
FROM busybox:multiarch
COPY --from=build /arch /build-arch
RUN echo target-step-ran && uname -m > /target-arch
";

fn buildplatform_stage_is_shared_and_target_stage_is_not(who: Who) {
    let e = env_with_multiarch(who);
    e.boxfile(SHARED);
    let amd = e.build_ok(&["--progress=plain", "--platform", "linux/amd64", "-t", "amd"]);
    assert!(!amd.contains("CACHED"), "{amd}");
    assert!(
        amd.contains("] build-step-ran") && amd.contains("] target-step-ran"),
        "{amd}"
    );
    let arm = e.build_ok(&["--progress=plain", "--platform", "linux/arm64", "-t", "arm"]);
    // The $BUILDPLATFORM stage is linux/amd64 in both builds: its RUN is a hit. The target
    // stage is another platform: its COPY and RUN run again.
    assert_eq!(arm.matches("CACHED").count(), 1, "{arm}");
    // ("] X" is the step's output; the command line shows X too.)
    assert!(!arm.contains("] build-step-ran"), "{arm}");
    assert!(arm.contains("] target-step-ran"), "{arm}");
    assert_ne!(e.inspect("amd")["Id"], e.inspect("arm")["Id"]);
    assert_eq!(e.inspect("arm")["Architecture"], "arm64");
    // And each target's own steps stay cached for that target.
    let again = e.build_ok(&["--progress=plain", "--platform", "linux/amd64", "-t", "amd"]);
    assert_eq!(again.matches("CACHED").count(), 3, "{again}");
}

#[test]
fn an_amd64_then_arm64_build_share_the_buildplatform_stage_not_the_target_stage_root() {
    let Some(who) = Who::root() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        buildplatform_stage_is_shared_and_target_stage_is_not(who);
    }
}

#[test]
fn an_amd64_then_arm64_build_share_the_buildplatform_stage_not_the_target_stage_rootless() {
    let Some(who) = Who::with_range() else { return };
    if common::emulation::amd64_host() && common::emulation::ready() {
        buildplatform_stage_is_shared_and_target_stage_is_not(who);
    }
}

/// A binfmt_misc directory with no entries (mounted, enabled), for BOX_TEST_BINFMT_DIR.
fn empty_binfmt(e: &Env) -> String {
    let dir = e.dir.path().join("binfmt_misc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("register"), "").unwrap();
    std::fs::write(dir.join("status"), "enabled\n").unwrap();
    dir.to_str().unwrap().to_string()
}

fn missing_emulator_is_an_error_before_any_work(who: Who) {
    let e = env_with_multiarch(who);
    let fake = empty_binfmt(&e);
    let env = [("BOX_TEST_BINFMT_DIR", fake.as_str())];
    e.boxfile("FROM busybox:multiarch\nRUN echo must-not-run\n");
    let o = e.build_env(
        &["--progress=plain", "--platform", "linux/arm64", "-t", "x"],
        &env,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for want in [
        "Boxfile:1",
        "linux/arm64",
        "qemu-aarch64",
        "qemu-user-static",
        "host-setup.sh",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert!(
        !err.contains("must-not-run") && !err.contains("[1/"),
        "nothing ran: {err}"
    );
    let images = e.box_cmd(&["images", "-q"]);
    assert!(images.status.success(), "{}", stderr(&images));
    assert_eq!(
        String::from_utf8_lossy(&images.stdout).trim(),
        "",
        "nothing was pulled"
    );

    // Only a RUN on a foreign platform needs the emulator: a native $BUILDPLATFORM stage's
    // RUN and a foreign stage of COPY only build without it.
    e.write("f", "f\n");
    e.boxfile(
        "FROM --platform=$BUILDPLATFORM busybox:multiarch AS build\nRUN uname -m > /arch\n\
         FROM --platform=linux/arm64 scratch\nCOPY --from=build /arch /arch\nCOPY f /f\n",
    );
    let o = e.build_env(&["--platform", "linux/arm64", "-t", "y"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(e.inspect("y")["Architecture"], "arm64");

    // A build that asks for no platform takes a single-platform arm64 base as it is (with a
    // warning); its RUN still needs the emulator, checked before the first step.
    let reg = e.registry.as_ref().unwrap();
    let src = format!(
        "oci:{}:latest",
        fixtures::layout(Fixture::BusyboxMultiarch).display()
    );
    let dest = reg.docker_ref("library/armonly:latest");
    fixtures::skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--override-arch",
        "arm64",
        &src,
        &dest,
    ]);
    e.boxfile("FROM armonly\nRUN echo must-not-run\n");
    let o = e.build_env(&["--progress=plain", "-t", "z"], &env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("warning: FROM armonly: the image is for linux/arm64"),
        "{err}"
    );
    assert!(
        err.contains("Boxfile:1: cannot run linux/arm64 programs"),
        "{err}"
    );
    assert!(!err.contains("] must-not-run"), "{err}");
}

#[test]
fn a_platform_without_a_binfmt_entry_is_an_error_before_anything_is_pulled_root() {
    let Some(who) = Who::root() else { return };
    if common::emulation::amd64_host() {
        missing_emulator_is_an_error_before_any_work(who);
    }
}

#[test]
fn a_platform_without_a_binfmt_entry_is_an_error_before_anything_is_pulled_rootless() {
    let Some(who) = Who::with_range() else { return };
    if common::emulation::amd64_host() {
        missing_emulator_is_an_error_before_any_work(who);
    }
}
