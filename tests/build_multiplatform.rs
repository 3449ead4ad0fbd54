//! `boxbuild --platform linux/amd64,linux/arm64`: one build per platform, one image index
//! over them, checked with tools independent of boxkit — skopeo reads the pushed index,
//! podman runs each platform's image from the registry (arm64 under QEMU) — and with the
//! store's own files. The platforms build at the same time (BOX_BUILD_PLATFORM_JOBS=1: one
//! after the other); a `$BUILDPLATFORM` stage is built once and taken by the other platform;
//! with SOURCE_DATE_EPOCH each platform's image is the one a single-platform
//! build makes; a platform that does not parse or cannot run fails before any step.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout};
use common::fixtures::{self, Fixture};
use common::podman::Podman;

/// A cross build: the `$BUILDPLATFORM` stage runs natively, the final stage's RUN runs on the
/// target platform (emulated for arm64). The image prints both.
const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox:multiarch AS build\n\
                     RUN uname -m > /build-arch\n\
                     FROM busybox:multiarch\n\
                     COPY --from=build /build-arch /build-arch\n\
                     RUN uname -m > /arch\n\
                     CMD [\"sh\", \"-c\", \"echo $(cat /build-arch) $(cat /arch) $(uname -m)\"]\n";

const BOTH: &str = "linux/amd64,linux/arm64";

/// A store with no images and the registry mirroring docker.io, holding busybox:multiarch.
fn env(who: Who) -> Env {
    let e = Env::with_registry(who);
    fixtures::seed(e.registry.as_ref().unwrap(), &[Fixture::BusyboxMultiarch]);
    e
}

/// A blob of the store, as JSON.
fn blob(e: &Env, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let p = e.store().join("blobs/sha256").join(hex);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// `os/arch[/variant]` of an index entry.
fn platform_of(m: &serde_json::Value) -> String {
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
}

/// Each platform of an index with its manifest's config digest (the image ID).
fn ids_in_index(e: &Env, index: &serde_json::Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let man = blob(e, m["digest"].as_str().unwrap());
            (
                platform_of(m),
                man["config"]["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn skopeo_raw(reg: &common::registry::Registry, name: &str) -> serde_json::Value {
    let out = fixtures::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref(name),
    ]);
    serde_json::from_str(&out).unwrap()
}

fn two_platforms_give_one_index_that_podman_runs(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    let reg = e.registry.as_ref().unwrap();
    e.boxfile(CROSS);
    let name = format!("{}/team/multi:v1", reg.addr());
    let o = e.cmd(
        "boxbuild",
        &[
            "--platform",
            BOTH,
            "-t",
            &name,
            "--push",
            e.ctx().to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{}: {err}", e.who.label());
    let id = stdout(&o).trim().to_string();

    // One platform made the native stage, the other took it: it ran once.
    let shared = |cached: bool| {
        err.lines()
            .filter(|l| l.contains("RUN uname -m > /build-arch") && l.contains("CACHED") == cached)
            .count()
    };
    assert_eq!(
        (shared(false), shared(true)),
        (1, 1),
        "the $BUILDPLATFORM stage runs once and is a hit for the other platform:\n{err}"
    );

    // The store: the tag points at an OCI index whose digest is the printed ID.
    let index_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.store().join("index.json")).unwrap()).unwrap();
    let entry = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str())
        .expect("the tag is in index.json")
        .clone();
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entry["digest"],
        id.as_str(),
        "the build prints the index digest"
    );
    let index = blob(&e, &id);
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(platform_of)
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    // box inspect: the index's ID, the host's image, and the index's entries.
    let inspect = e.inspect(&name);
    assert_eq!(inspect["Id"], id.as_str(), "{inspect}");
    let listed: Vec<String> = inspect["Manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no Manifests in box inspect: {inspect}"))
        .iter()
        .map(platform_of)
        .collect();
    assert_eq!(listed, ["linux/amd64", "linux/arm64"]);

    // The registry: skopeo reads the pushed index. Its manifests name the layers gzipped
    // (the store keeps them as plain tars), so their digests differ from the stored ones, but
    // each platform's config, the image ID, is the same.
    let pushed = skopeo_raw(reg, "team/multi:v1");
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let pushed_ids: Vec<(String, String)> = pushed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            let at = format!("team/multi@{}", m["digest"].as_str().unwrap());
            let man = skopeo_raw(reg, &at);
            (
                platform_of(m),
                man["config"]["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        pushed_ids,
        ids_in_index(&e, &index),
        "the pushed images are the built ones"
    );

    // podman runs each platform's image from the registry.
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    for (platform, arch) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let o = pm
            .cmd()
            .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
            .args(["run", "--rm", "--platform", platform])
            .args([
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=16384:16384",
            ])
            .arg(&name)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman run --platform {platform}: {}",
            stderr(&o)
        );
        // The build stage ran natively; the final RUN and the container on the target.
        assert_eq!(
            stdout(&o).trim(),
            format!("x86_64 {arch} {arch}"),
            "podman run --platform {platform}"
        );
    }
}

#[test]
fn two_platforms_give_one_index_that_podman_runs_root() {
    let Some(who) = Who::root() else { return };
    two_platforms_give_one_index_that_podman_runs(who);
}

#[test]
fn two_platforms_give_one_index_that_podman_runs_rootless() {
    let Some(who) = Who::with_range() else { return };
    two_platforms_give_one_index_that_podman_runs(who);
}

fn format_docker_gives_a_manifest_list(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    let reg = e.registry.as_ref().unwrap();
    e.boxfile(CROSS);
    let name = format!("{}/team/list:v1", reg.addr());
    let meta = e.dir.path().join("meta.json");
    let iid = e.dir.path().join("iid");
    let o = e.cmd(
        "boxbuild",
        &[
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            "--format",
            "docker",
            "-t",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--iidfile",
            iid.to_str().unwrap(),
            e.ctx().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}: {}", e.who.label(), stderr(&o));
    let id = stdout(&o).trim().to_string();
    let list = skopeo_raw(reg, "team/list:v1");
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let ms = list["manifests"].as_array().unwrap();
    let platforms: Vec<String> = ms.iter().map(platform_of).collect();
    assert_eq!(platforms, ["linux/arm64", "linux/amd64"], "the order given");
    for m in ms {
        assert_eq!(
            m["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }
    // --metadata-file has the list, as buildx reports a multi-platform build.
    let md: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(md["containerimage.digest"], id.as_str());
    assert_eq!(
        md["containerimage.descriptor"]["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert!(md.get("containerimage.config.digest").is_none(), "{md}");
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        id,
        "--iidfile has the list's digest"
    );
}

#[test]
fn format_docker_gives_a_manifest_list_root() {
    let Some(who) = Who::root() else { return };
    format_docker_gives_a_manifest_list(who);
}

#[test]
fn format_docker_gives_a_manifest_list_rootless() {
    let Some(who) = Who::with_range() else { return };
    format_docker_gives_a_manifest_list(who);
}

fn with_source_date_epoch_each_platform_is_its_single_platform_build(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    e.boxfile(CROSS);
    let sde = [("SOURCE_DATE_EPOCH", "1700000000")];
    let ctx = e.ctx();
    let ctx = ctx.to_str().unwrap();
    let o = e.cmd_env("boxbuild", &["--platform", BOTH, "-t", "multi", ctx], &sde);
    assert!(o.status.success(), "{}: {}", e.who.label(), stderr(&o));
    let index = blob(&e, stdout(&o).trim());
    let in_index = ids_in_index(&e, &index);
    // Single-platform builds, without the cache, so nothing is taken from the build above.
    for (platform, id) in &in_index {
        let o = e.cmd_env(
            "boxbuild",
            &["--no-cache", "--platform", platform, "-t", "single", ctx],
            &sde,
        );
        assert!(o.status.success(), "{platform}: {}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            id,
            "{}: the {platform} image of the index is the single-platform build's",
            e.who.label()
        );
    }
    assert_eq!(in_index.len(), 2);
}

#[test]
fn with_source_date_epoch_each_platform_is_its_single_platform_build_root() {
    let Some(who) = Who::root() else { return };
    with_source_date_epoch_each_platform_is_its_single_platform_build(who);
}

#[test]
fn with_source_date_epoch_each_platform_is_its_single_platform_build_rootless() {
    let Some(who) = Who::with_range() else { return };
    with_source_date_epoch_each_platform_is_its_single_platform_build(who);
}

fn a_bad_platform_fails_before_any_step_and_names_it(who: Who) {
    let e = env(who);
    e.boxfile(CROSS);
    let ctx = e.ctx();
    let ctx = ctx.to_str().unwrap();
    // mips64le: qemu-user-static has it, but host-setup.sh registers no binfmt entry for it.
    for (list, named, why) in [
        ("linux/amd64,linux/", "\"linux/\"", "invalid platform"),
        (
            "linux/amd64,linux/mips64le",
            "linux/mips64le",
            "binfmt_misc",
        ),
    ] {
        let o = e.cmd("boxbuild", &["--platform", list, "-t", "bad", ctx]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{list}: {err}");
        assert!(err.contains(named) && err.contains(why), "{list}: {err}");
        assert!(!err.contains("[1/"), "no step ran for {list}: {err}");
        assert!(
            !err.contains("#### platform"),
            "no platform started for {list}: {err}"
        );
        let index = std::fs::read_to_string(e.store().join("index.json")).unwrap_or_default();
        assert!(!index.contains("bad:latest"), "nothing tagged: {index}");
    }
    // The unrunnable platform's error says what to install, and the RUN that needs it.
    let o = e.cmd(
        "boxbuild",
        &["--platform", "linux/amd64,linux/mips64le", ctx],
    );
    let err = stderr(&o);
    assert!(
        err.contains("qemu-user-static") && err.contains("Boxfile:5"),
        "{err}"
    );
}

#[test]
fn a_bad_platform_fails_before_any_step_and_names_it_root() {
    let Some(who) = Who::root() else { return };
    a_bad_platform_fails_before_any_step_and_names_it(who);
}

#[test]
fn a_bad_platform_fails_before_any_step_and_names_it_rootless() {
    let Some(who) = Who::with_range() else { return };
    a_bad_platform_fails_before_any_step_and_names_it(who);
}

#[test]
fn local_output_writes_one_directory_per_platform() {
    let Some(who) = Who::root() else { return };
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    e.boxfile(CROSS);
    let out = e.dir.path().join("out");
    let o = e.cmd(
        "boxbuild",
        &[
            "--platform",
            BOTH,
            "-o",
            &format!("type=local,dest={}", out.display()),
            e.ctx().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (dir, arch) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        let got = std::fs::read_to_string(out.join(dir).join("arch")).unwrap();
        assert_eq!(got.trim(), arch, "{dir}");
    }
    let tar = e.cmd(
        "boxbuild",
        &[
            "--platform",
            BOTH,
            "-o",
            "type=tar,dest=x.tar",
            e.ctx().to_str().unwrap(),
        ],
    );
    assert_eq!(tar.status.code(), Some(1));
    assert!(
        stderr(&tar).contains("type=tar with several platforms"),
        "{}",
        stderr(&tar)
    );
}

/// A shared native stage that takes a while, then a RUN per platform that prints the
/// machine's uptime when it starts and when it ends (/proc/uptime is the host's, so the two
/// platforms' times compare). With WAIT=n, each platform's RUN leaves a marker in a cache
/// mount both share and waits up to n seconds for the other's: it prints `met` only if the
/// other platform's RUN started while it was still running (pulls may take the platforms to
/// their RUN seconds apart, so a plain time comparison would not show it reliably).
const TIMED: &str = "FROM --platform=$BUILDPLATFORM busybox:multiarch AS build\n\
                     RUN echo shared-step-ran && sleep 1 && uname -m > /build-arch\n\
                     FROM busybox:multiarch\n\
                     ARG WAIT=0\n\
                     COPY --from=build /build-arch /build-arch\n\
                     RUN --mount=type=cache,target=/meet echo start $(cut -d' ' -f1 /proc/uptime) \
                     && touch /meet/$(uname -m) && i=0 && while [ $i -lt $WAIT ]; do \
                     if [ -e /meet/x86_64 ] && [ -e /meet/aarch64 ]; then echo met; break; fi; \
                     sleep 1; i=$((i+1)); done && sleep 1 && echo end $(cut -d' ' -f1 /proc/uptime)\n";

/// What [`timed_build`] read from the build's plain output.
struct Timed {
    /// Each platform with the (start, end) of its final RUN.
    times: Vec<(String, f64, f64)>,
    /// Platforms whose final RUN printed `met`.
    met: Vec<String>,
    /// How many times the shared stage's RUN ran, and was a hit.
    shared: (usize, usize),
    /// The layers downloaded (`<short digest>: Pull complete` lines), in order.
    pulled: Vec<String>,
    err: String,
}

/// Build TIMED for both platforms, `jobs` at once, each RUN waiting up to `wait` seconds for
/// the other; what the tagged plain output lines say.
fn timed_build(who: Who, jobs: &str, wait: &str) -> Timed {
    let e = env(who);
    e.boxfile(TIMED);
    let o = e.cmd_env(
        "boxbuild",
        &[
            "--progress=plain",
            "--platform",
            BOTH,
            "--build-arg",
            &format!("WAIT={wait}"),
            "-t",
            "timed",
            e.ctx().to_str().unwrap(),
        ],
        &[("BOX_BUILD_PLATFORM_JOBS", jobs)],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{}: {err}", e.who.label());
    // The output lines of `platform`'s steps: what follows `[platform n/N] `.
    let output = |platform: &str| -> Vec<String> {
        let tag = format!("[{platform} ");
        err.lines()
            .filter(|l| l.starts_with(&tag))
            .filter_map(|l| {
                l.split_once("] ")
                    .map(|(_, rest)| rest.trim_end().to_string())
            })
            .collect()
    };
    let time = |platform: &str, what: &str| -> f64 {
        let found: Vec<f64> = output(platform)
            .iter()
            .filter_map(|rest| rest.strip_prefix(&format!("{what} ")))
            .map(|t| t.trim().parse::<f64>().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "one {what} line of {platform}:\n{err}");
        found[0]
    };
    let platforms = ["linux/amd64", "linux/arm64"];
    let times = platforms
        .iter()
        .map(|p| (p.to_string(), time(p, "start"), time(p, "end")))
        .collect();
    let met = platforms
        .iter()
        .filter(|p| output(p).iter().any(|l| l == "met"))
        .map(|p| p.to_string())
        .collect();
    // The shared RUN's own output line (not its header, which has the command).
    let ran = platforms
        .iter()
        .map(|p| output(p).iter().filter(|l| *l == "shared-step-ran").count())
        .sum();
    let hit = err
        .lines()
        .filter(|l| l.contains("CACHED RUN echo shared-step-ran"))
        .count();
    let pulled = err
        .lines()
        .filter_map(|l| l.split_once(": Pull complete"))
        .map(|(d, _)| d.trim().to_string())
        .collect();
    Timed {
        times,
        met,
        shared: (ran, hit),
        pulled,
        err,
    }
}

fn platforms_build_at_once_and_a_shared_stage_runs_once(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let label = who.label();
    let t = timed_build(who, "2", "60");
    assert_eq!(
        t.met,
        ["linux/amd64", "linux/arm64"],
        "{label}: each platform's RUN saw the other's start while it ran: {:?}\n{}",
        t.times,
        t.err
    );
    assert_eq!(
        t.shared,
        (1, 1),
        "{label}: the $BUILDPLATFORM stage ran once, the other platform took it\n{}",
        t.err
    );
    // Both platforms' builds start with the same amd64 base (the $BUILDPLATFORM stage): it is
    // downloaded once, as is the arm64 base, not once per platform.
    let mut once = t.pulled.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        (t.pulled.len(), once.len()),
        (2, 2),
        "{label}: each base layer downloaded once: {:?}\n{}",
        t.pulled,
        t.err
    );
}

#[test]
fn platforms_build_at_once_and_a_shared_stage_runs_once_root() {
    let Some(who) = Who::root() else { return };
    platforms_build_at_once_and_a_shared_stage_runs_once(who);
}

#[test]
fn platforms_build_at_once_and_a_shared_stage_runs_once_rootless() {
    let Some(who) = Who::with_range() else { return };
    platforms_build_at_once_and_a_shared_stage_runs_once(who);
}

fn one_job_builds_the_platforms_one_after_the_other(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let label = who.label();
    let t = timed_build(who, "1", "0");
    let (a, b) = (&t.times[0], &t.times[1]);
    assert!(
        a.2 <= b.1,
        "{label}: amd64 (given first) ended before arm64 started: {:?}\n{}",
        t.times,
        t.err
    );
    assert_eq!(
        t.shared,
        (1, 1),
        "{label}: the second platform took the shared stage\n{}",
        t.err
    );
}

#[test]
fn one_job_builds_the_platforms_one_after_the_other_root() {
    let Some(who) = Who::root() else { return };
    one_job_builds_the_platforms_one_after_the_other(who);
}

#[test]
fn one_job_builds_the_platforms_one_after_the_other_rootless() {
    let Some(who) = Who::with_range() else { return };
    one_job_builds_the_platforms_one_after_the_other(who);
}

fn the_first_failure_stops_the_other_platforms_and_tags_nothing(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    // arm64 fails as soon as its RUN starts; amd64 is still sleeping then, and its next
    // step must not start.
    e.boxfile(
        "FROM busybox:multiarch\n\
         RUN if [ $(uname -m) = aarch64 ]; then echo arm-fails; exit 3; fi; sleep 15\n\
         RUN echo after-the-sleep\n",
    );
    let o = e.cmd_env(
        "boxbuild",
        &[
            "--progress=plain",
            "--platform",
            BOTH,
            "-t",
            "failing",
            e.ctx().to_str().unwrap(),
        ],
        &[("BOX_BUILD_PLATFORM_JOBS", "2")],
    );
    let err = stderr(&o);
    let label = e.who.label();
    assert!(!o.status.success(), "{label}: {err}");
    assert!(
        err.contains("[linux/arm64 2/3] arm-fails") && err.contains("exit code 3"),
        "{label}: the arm64 failure is reported:\n{err}"
    );
    assert!(
        !err.contains("stopped: the build of another platform failed"),
        "{label}: the first failure is the error shown, not the stop it caused:\n{err}"
    );
    assert!(
        !err.contains("after-the-sleep"),
        "{label}: amd64 stopped before its next step:\n{err}"
    );
    let index = std::fs::read_to_string(e.store().join("index.json")).unwrap_or_default();
    assert!(
        !index.contains("failing"),
        "{label}: nothing tagged: {index}"
    );
}

#[test]
fn the_first_failure_stops_the_other_platforms_and_tags_nothing_root() {
    let Some(who) = Who::root() else { return };
    the_first_failure_stops_the_other_platforms_and_tags_nothing(who);
}

#[test]
fn the_first_failure_stops_the_other_platforms_and_tags_nothing_rootless() {
    let Some(who) = Who::with_range() else { return };
    the_first_failure_stops_the_other_platforms_and_tags_nothing(who);
}

fn cache_from_serves_every_platform_of_a_parallel_build(who: Who) {
    if !common::emulation::ready() {
        return;
    }
    let e = env(who);
    let reg = e.registry.as_ref().unwrap();
    e.boxfile(CROSS);
    let ctx = e.ctx();
    let ctx = ctx.to_str().unwrap();
    let label = e.who.label();
    // One cache image per platform, from single-platform builds (--cache-to is refused with
    // several platforms).
    let caches: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|a| format!("{}/team/cache:{a}", reg.addr()))
        .collect();
    for (arch, cache) in ["amd64", "arm64"].iter().zip(&caches) {
        let o = e.cmd(
            "boxbuild",
            &[
                "--platform",
                &format!("linux/{arch}"),
                "--cache-to",
                cache,
                ctx,
            ],
        );
        assert!(o.status.success(), "{label} {arch}: {}", stderr(&o));
    }
    // The local records go; the blobs stay, so only an import can make the steps hit.
    std::fs::remove_dir_all(e.store().join("cache/build")).unwrap();
    let o = e.cmd_env(
        "boxbuild",
        &[
            "--progress=plain",
            "--platform",
            BOTH,
            "--cache-from",
            &caches[0],
            "--cache-from",
            &caches[1],
            "-t",
            "from-cache",
            ctx,
        ],
        &[("BOX_BUILD_PLATFORM_JOBS", "2")],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{label}: {err}");
    let steps: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("[linux/"))
        .filter(|l| {
            l.split_once("] ").is_some_and(|(_, rest)| {
                let ins = rest.strip_prefix("CACHED ").unwrap_or(rest);
                ins.starts_with("RUN ") || ins.starts_with("COPY ")
            })
        })
        .collect();
    assert_eq!(
        steps.len(),
        6,
        "{label}: RUN, COPY, RUN per platform:\n{err}"
    );
    let missed: Vec<&&str> = steps.iter().filter(|l| !l.contains("CACHED")).collect();
    assert!(
        missed.is_empty(),
        "{label}: every step a hit, missed {missed:?}:\n{err}"
    );
}

#[test]
fn cache_from_serves_every_platform_of_a_parallel_build_root() {
    let Some(who) = Who::root() else { return };
    cache_from_serves_every_platform_of_a_parallel_build(who);
}

#[test]
fn cache_from_serves_every_platform_of_a_parallel_build_rootless() {
    let Some(who) = Who::with_range() else { return };
    cache_from_serves_every_platform_of_a_parallel_build(who);
}
