//! Where compression happens: a build stores its layers as plain tars, and push and save
//! compress them (`--compression-format gzip|zstd|none`). The image ID never depends on the
//! choice, a pulled base keeps the blobs the registry gave, a pushed manifest is reproducible
//! under SOURCE_DATE_EPOCH, and skopeo, umoci and podman read what comes out.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout};
use common::podman::Podman;
use serde_json::Value;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

const BOXFILE: &str = "FROM busybox\nRUN mkdir -p /data && for i in $(seq 1 50); do \
                       echo line $i > /data/f$i; done\nCMD [\"cat\", \"/data/f7\"]\n";

fn skopeo_raw(args: &[&str]) -> Value {
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo inspect {args:?}: {}",
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn layer_types(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

/// Build BOXFILE as `name` with SOURCE_DATE_EPOCH=0.
fn build(e: &Env, name: &str) {
    e.boxfile(BOXFILE);
    let o = e.build_env(&["-t", name], &[("SOURCE_DATE_EPOCH", "0")]);
    assert!(o.status.success(), "boxbuild: {}", stderr(&o));
}

/// `box push -q --compression-format FMT name dest`; returns the digest printed.
fn push(e: &Env, name: &str, dest: &str, fmt: &str) -> String {
    let o = e.cmd(
        "box",
        &["push", "-q", "--compression-format", fmt, name, dest],
    );
    assert!(o.status.success(), "box push {fmt}: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn built_layers_are_plain_tars_and_push_compresses_them_as_asked_with_the_same_image_id() {
    let Some(who) = Who::root() else { return };
    let e = Env::with_registry(who);
    build(&e, "comp");
    let local = skopeo_raw(&[&format!("oci:{}", e.oci_ref("comp"))]);
    let types = layer_types(&local);
    assert_eq!(
        types.last().unwrap(),
        TAR,
        "the RUN's layer is stored uncompressed"
    );
    assert_eq!(
        types[0], GZIP,
        "the pulled busybox layer keeps its gzip blob"
    );
    let base_digest = local["layers"][0]["digest"].clone();
    let image_id = local["config"]["digest"].clone();
    let reg = e.registry.as_ref().unwrap();
    for (fmt, want) in [("gzip", GZIP), ("zstd", ZSTD), ("none", TAR)] {
        let dest = reg.image(&format!("team/comp:{fmt}"));
        let digest = push(&e, "comp", &dest, fmt);
        let m = skopeo_raw(&["--tls-verify=false", &format!("docker://{dest}")]);
        assert_eq!(layer_types(&m).last().unwrap(), want, "{fmt}: {m}");
        assert_eq!(
            m["config"]["digest"], image_id,
            "{fmt}: the image ID is unchanged"
        );
        assert_eq!(
            m["layers"][0]["digest"], base_digest,
            "{fmt}: base not recompressed"
        );
        let raw = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{dest}"),
            ])
            .output()
            .unwrap();
        let actual = format!("sha256:{}", sha256_hex(&raw.stdout));
        assert_eq!(
            digest, actual,
            "{fmt}: box push prints the digest it pushed"
        );
        // The registry's copy runs: skopeo pulls and checks every blob against its digest.
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("copy");
        let o = std::process::Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{dest}"),
            ])
            .arg(format!("oci:{}:x", out.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo copy {fmt}: {}", stderr(&o));
        if fmt == "zstd" {
            // umoci reads no zstd layers: the zstd tool and tar read the blob instead.
            let hex = m["layers"][1]["digest"].as_str().unwrap()[7..].to_string();
            let blob = out.join("blobs/sha256").join(hex);
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "zstd -dc {} | tar -xO ./data/f7 2>/dev/null || zstd -dc {} | tar -xO data/f7",
                    blob.display(),
                    blob.display()
                ))
                .output()
                .unwrap();
            assert_eq!(stdout(&o), "line 7\n", "zstd layer: {}", stderr(&o));
            continue;
        }
        let o = std::process::Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:x", out.display())])
            .arg(t.path().join("bundle"))
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci unpack {fmt}: {}", stderr(&o));
        let f7 = std::fs::read_to_string(t.path().join("bundle/rootfs/data/f7")).unwrap();
        assert_eq!(f7, "line 7\n", "{fmt}");
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(b);
    d.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn two_fresh_builds_push_the_same_manifest_bytes_under_source_date_epoch() {
    let Some(who) = Who::root() else { return };
    let mut digests = vec![];
    for fmt in ["gzip", "zstd"] {
        let mut seen = vec![];
        for _ in 0..2 {
            let e = Env::with_registry(who.clone());
            build(&e, "repro");
            let dest = e.registry.as_ref().unwrap().image("team/repro:v1");
            seen.push(push(&e, "repro", &dest, fmt));
        }
        assert_eq!(seen[0], seen[1], "{fmt}: two fresh builds+pushes differ");
        digests.push(seen.remove(0));
    }
    assert_ne!(
        digests[0], digests[1],
        "gzip and zstd manifests name different blobs"
    );
}

#[test]
fn save_compresses_built_layers_load_round_trips_and_podman_runs_the_archive() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who.clone());
    build(&e, "saved");
    let id = e.inspect("saved")["Id"].clone();
    let t = tempfile::tempdir().unwrap();
    for (fmt, want) in [("gzip", GZIP), ("zstd", ZSTD), ("none", TAR)] {
        let ar = t.path().join(format!("saved-{fmt}.tar"));
        let o = e.box_cmd(&[
            "save",
            "--format",
            "oci-archive",
            "--compression-format",
            fmt,
            "-o",
            ar.to_str().unwrap(),
            "saved",
        ]);
        assert!(o.status.success(), "box save {fmt}: {}", stderr(&o));
        let m = skopeo_raw(&[&format!("oci-archive:{}", ar.display())]);
        assert_eq!(layer_types(&m).last().unwrap(), want, "{fmt}: {m}");
        // Into a fresh store: the same image ID, and it runs.
        let f = Env::new(who.clone());
        let o = f.box_cmd(&["load", "-q", "-i", ar.to_str().unwrap()]);
        assert!(o.status.success(), "box load {fmt}: {}", stderr(&o));
        assert_eq!(f.inspect("saved")["Id"], id, "{fmt}: image ID");
        let o = f.cmd("boxrun", &["--rm", "--network", "none", "saved"]);
        assert_eq!(stdout(&o), "line 7\n", "{fmt}: {}", stderr(&o));
    }
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let ar = t.path().join("saved-gzip.tar");
    let o = pm
        .cmd()
        .args(["run", "--rm", "--network", "none"])
        .arg(format!("oci-archive:{}", ar.display()))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "line 7\n", "podman run: {}", stderr(&o));
}
