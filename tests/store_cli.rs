//! The store through the `box` binary: OCI archives from skopeo, read back by skopeo and umoci;
//! docker and OCI archives exchanged with podman, and hostile docker archives; tags, rmi and
//! prune; and a blob write killed with -9.
mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn boxcmd(root: &Path) -> Command {
    let mut c = Command::new(common::bin("box"));
    c.arg("--root").arg(root);
    c
}

/// An OCI archive made by umoci and skopeo only: a layer holding /bin/busybox and a file.
fn make_archive(dir: &Path, name: &str) -> std::path::PathBuf {
    let layout = dir.join("layout");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    let img = format!("{}:t", layout.display());
    run(Command::new("umoci").args(["new", "--image", &img]));
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/greeting"), "hello from umoci\n").unwrap();
    run(Command::new("umoci")
        .args(["insert", "--image", &img])
        .arg(src.join("etc"))
        .arg("/etc"));
    run(Command::new("umoci").args(["config", "--image", &img, "--config.cmd", "sh"]));
    let archive = dir.join("image.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q", &format!("oci:{img}")])
        .arg(format!("oci-archive:{}:{name}", archive.display())));
    archive
}

fn need_tools() -> bool {
    for t in ["skopeo", "umoci"] {
        if !common::have_tool(t) {
            common::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

#[test]
fn skopeo_archive_loads_and_skopeo_and_umoci_read_the_store() {
    if !need_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let archive = make_archive(t.path(), "busybox:latest");
    let out = run(boxcmd(&store).args(["load", "-i"]).arg(&archive));
    assert_eq!(out.trim(), "Loaded image: busybox:latest");

    let images = run(boxcmd(&store).arg("images"));
    let lines: Vec<&str> = images.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{images}");
    assert!(
        lines[1].starts_with("busybox ") && lines[1].contains(" latest "),
        "{images}"
    );

    // Independent readers of the OCI layout the store is.
    let reference = format!("oci:{}:docker.io/library/busybox:latest", store.display());
    let inspect = run(Command::new("skopeo").args(["inspect", &reference]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let bundle = t.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:docker.io/library/busybox:latest",
            store.display()
        ))
        .arg(&bundle));
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/greeting")).unwrap(),
        "hello from umoci\n"
    );

    // box inspect agrees with skopeo on the manifest digest.
    let ours: serde_json::Value =
        serde_json::from_str(&run(boxcmd(&store).args(["inspect", "busybox"]))).unwrap();
    assert_eq!(ours[0]["Manifest"]["Digest"], v["Digest"]);
    assert_eq!(ours[0]["RepoTags"][0], "busybox:latest");
}

#[test]
fn save_round_trips_through_skopeo_and_load() {
    if !need_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let archive = make_archive(t.path(), "example.com/team/app:v1");
    run(boxcmd(&store).args(["load", "-i"]).arg(&archive));
    let saved = t.path().join("saved.tar");
    run(boxcmd(&store)
        .args([
            "save",
            "--format",
            "oci-archive",
            "example.com/team/app:v1",
            "-o",
        ])
        .arg(&saved));
    let a = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display())));
    let b = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", saved.display())));
    assert_eq!(
        a, b,
        "the saved manifest must be byte-identical to the loaded one"
    );
    let store2 = t.path().join("store2");
    let out = run(boxcmd(&store2).args(["load", "-i"]).arg(&saved));
    assert_eq!(out.trim(), "Loaded image: example.com/team/app:v1");
}

#[test]
fn tag_rmi_and_prune_keep_referenced_content_only() {
    if !need_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    run(boxcmd(&store)
        .args(["load", "-i"])
        .arg(make_archive(t.path(), "busybox:latest")));
    run(boxcmd(&store).args(["tag", "busybox", "localhost/mine:1"]));
    let blobs = || fs::read_dir(store.join("blobs/sha256")).unwrap().count();
    let before = blobs();
    assert_eq!(before, 3, "manifest, config and one layer");

    // Two names: removing one only untags.
    let out = run(boxcmd(&store).args(["rmi", "busybox"]));
    assert_eq!(out.trim(), "Untagged: busybox:latest");
    run(boxcmd(&store).arg("prune"));
    assert_eq!(
        blobs(),
        before,
        "prune must keep blobs that a tag still references"
    );
    run(boxcmd(&store).args(["inspect", "localhost/mine:1"]));

    let out = run(boxcmd(&store).args(["rmi", "localhost/mine:1"]));
    assert!(out.contains("Deleted: sha256:"), "{out}");
    run(boxcmd(&store).arg("prune"));
    assert_eq!(blobs(), 0);
    let fail = boxcmd(&store)
        .args(["inspect", "localhost/mine:1"])
        .output()
        .unwrap();
    assert_eq!(fail.status.code(), Some(1));
}

#[test]
fn archive_with_a_lying_blob_is_rejected_and_tags_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let mut b = tar::Builder::new(Vec::new());
    let claimed = boxkit::digest::Digest::of_bytes(b"the real bytes");
    for (path, data) in [
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            format!("blobs/sha256/{}", claimed.hex()),
            b"forged content".to_vec(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    let data = b.into_inner().unwrap();
    let archive = t.path().join("bad.tar");
    fs::write(&archive, data).unwrap();
    let out = boxcmd(&store)
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&claimed.to_string()) && err.contains("failed verification"),
        "{err}"
    );
    assert_eq!(fs::read_dir(store.join("blobs/sha256")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}

#[test]
fn blob_write_killed_with_sigkill_leaves_no_blob_and_next_run_cleans_tmp() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let full = vec![7u8; 4 << 20];
    let digest = boxkit::digest::Digest::of_bytes(&full);
    let mut child = boxcmd(&store)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A tar header announcing the whole blob, then only half of its bytes.
    let mut h = tar::Header::new_ustar();
    h.set_path(format!("blobs/sha256/{}", digest.hex()))
        .unwrap();
    h.set_size(full.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    stdin.write_all(h.as_bytes()).unwrap();
    stdin.write_all(&full[..full.len() / 2]).unwrap();
    stdin.flush().unwrap();

    // Wait until the partial blob is really on disk in tmp/.
    let tmp = store.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size: u64 = fs::read_dir(&tmp)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if size > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "box load never started writing the blob"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);

    assert!(
        !store.join("blobs/sha256").join(digest.hex()).exists(),
        "a partial blob appeared under its final name"
    );
    assert_eq!(fs::read_dir(store.join("blobs/sha256")).unwrap().count(), 0);
    assert!(
        fs::read_dir(&tmp).unwrap().count() > 0,
        "the stale tmp file should still be there before the next run"
    );
    run(boxcmd(&store).arg("images"));
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the next run must remove the stale tmp file"
    );
}

/// An OCI archive (Python's tarfile over a layout from the fixture builder) whose image config
/// carries a 5 MiB label: above the 4 MiB default config cap.
fn archive_with_a_big_config(dir: &Path) -> (std::path::PathBuf, String) {
    let layout = dir.join("layout");
    let archive = dir.join("big-config.tar");
    let script = format!(
        "import sys, json, tarfile; sys.path.insert(0, {images:?}); import build\n\
         lay = build.Layout({out:?}); l = build.Layer(); l.dir('etc'); \
         l.file('etc/hello.txt', 'hi\\n')\n\
         cfg = build.runnable_config(); cfg['config']['Labels'] = {{'padding': 'x' * (5 << 20)}}\n\
         m = lay.image([l.finish()], cfg, 'big config'); lay.tag(m, 'big:latest')\n\
         man = json.load(open({out:?} + '/blobs/' + m['digest'].replace(':', '/')))\n\
         print(man['config']['digest'])\n\
         with tarfile.open({tar:?}, 'w') as t:\n    t.add({out:?}, arcname='.')\n",
        images = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images"),
        out = layout.display().to_string(),
        tar = archive.display().to_string(),
    );
    let config = run(Command::new("python3").args(["-c", &script]));
    (archive, config.trim().to_string())
}

#[test]
fn load_refuses_an_image_config_above_the_cap_and_tags_nothing() {
    if !common::have_tool("python3") {
        return common::skip("python3 is not installed");
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let (archive, config) = archive_with_a_big_config(t.path());
    let out = boxcmd(&store)
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&config)
            && err.contains("5 MiB")
            && err.contains("4 MiB")
            && err.contains("BOX_MAX_CONFIG_SIZE"),
        "the error names the blob, its size, the cap and the setting: {err}"
    );
    let index = fs::read_to_string(store.join("index.json")).unwrap_or_default();
    assert!(!index.contains("big"), "something was tagged: {index}");
    // Raised, the same archive loads.
    run(boxcmd(&store)
        .env("BOX_MAX_CONFIG_SIZE", "8m")
        .args(["load", "-i"])
        .arg(&archive));
    run(boxcmd(&store).args(["inspect", "big"]));
}

fn podman_id(pm: &common::podman::Podman, name: &str) -> String {
    let id = run(pm
        .cmd()
        .args(["image", "inspect", "--format", "{{.Id}}", name]));
    format!("sha256:{}", id.trim())
}

fn box_id(store: &Path, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&run(boxcmd(store).args(["inspect", name]))).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

fn tar_names(archive: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(fs::File::open(archive).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn podman_and_box_exchange_docker_and_oci_archives_both_ways() {
    if !need_tools() {
        return;
    }
    let Some(pm) = common::podman::Podman::new_or_skip() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let name = "example.com/team/app:v1";
    run(pm
        .cmd()
        .args(["load", "-i"])
        .arg(make_archive(t.path(), name)));
    for format in ["docker-archive", "oci-archive"] {
        // podman save → box load: the image ID is the archive's config digest, and the
        // content is readable by umoci. (podman rewrites a config it loaded from a docker
        // archive when it saves an OCI archive, so the ID is read from each archive.)
        let from_podman = t.path().join(format!("podman-{format}.tar"));
        run(pm
            .cmd()
            .args(["save", "--format", format, "-o"])
            .arg(&from_podman)
            .arg(name));
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{format}:{}", from_podman.display())));
        let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let id = manifest["config"]["digest"].as_str().unwrap().to_string();
        let store = t.path().join(format!("store-{format}"));
        let out = run(boxcmd(&store).args(["load", "-i"]).arg(&from_podman));
        assert_eq!(out.trim(), format!("Loaded image: {name}"), "{format}");
        assert_eq!(box_id(&store, name), id, "{format}");
        let bundle = t.path().join(format!("bundle-{format}"));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{name}", store.display()))
            .arg(&bundle));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/greeting")).unwrap(),
            "hello from umoci\n",
            "{format}"
        );

        // box save → podman load (into an empty podman): the same image ID again.
        let from_box = t.path().join(format!("box-{format}.tar"));
        run(boxcmd(&store)
            .args(["save", "--format", format, name, "-o"])
            .arg(&from_box));
        let names = tar_names(&from_box);
        let is_docker = names.iter().any(|n| n == "manifest.json");
        let is_oci = names.iter().any(|n| n == "index.json");
        assert_eq!(
            (is_docker, is_oci),
            (format == "docker-archive", format == "oci-archive"),
            "{format}: {names:?}"
        );
        run(pm.cmd().args(["rmi", "--all", "--force"]));
        let out = run(pm.cmd().args(["load", "-i"]).arg(&from_box));
        assert!(
            out.contains(&format!("Loaded image: {name}")),
            "{format}: {out}"
        );
        assert_eq!(podman_id(&pm, name), id, "{format}");
    }

    // With no --format, box save writes what docker save and podman save write by default.
    let default = t.path().join("default.tar");
    let store = t.path().join("store-docker-archive");
    run(boxcmd(&store).args(["save", name, "-o"]).arg(&default));
    let names = tar_names(&default);
    assert!(
        names.iter().any(|n| n == "manifest.json") && !names.iter().any(|n| n == "index.json"),
        "{names:?}"
    );
    // `box save x | gzip` (or zstd) loads as it is, from stdin, as docker load takes it.
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        if !common::have_tool(tool) {
            continue;
        }
        run(Command::new(tool).args(["-k", "-q"]).arg(&default));
        let packed = t.path().join(format!("default.tar.{ext}"));
        let store = t.path().join(format!("store-{ext}"));
        let out = run(boxcmd(&store)
            .arg("load")
            .stdin(fs::File::open(&packed).unwrap()));
        assert_eq!(out.trim(), format!("Loaded image: {name}"), "{tool}");
    }
    // --compression-format is the OCI archive's: docker archives hold uncompressed tars.
    let out = boxcmd(&store)
        .args(["save", "--compression-format", "zstd", name, "-o"])
        .arg(t.path().join("never.tar"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oci-archive"));
    assert!(!t.path().join("never.tar").exists());
}

/// A one-file layer tar (made with the tar crate, not boxkit) and its diff_id.
fn layer_tar(content: &[u8]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello.txt", content).unwrap();
    let data = b.into_inner().unwrap();
    let diff_id = boxkit::digest::Digest::of_bytes(&data).to_string();
    (data, diff_id)
}

fn config_json(diff_id: &str, padding: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Labels": {"padding": "x".repeat(padding)}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap()
}

/// A docker archive: regular files, then symlinks, then `manifest.json` last (as podman writes).
fn docker_archive(
    dir: &Path,
    files: &[(&str, &[u8])],
    links: &[(&str, &str)],
    layers: &[&str],
) -> std::path::PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "config.json", "RepoTags": ["evil:latest"], "Layers": layers}
    ]))
    .unwrap();
    for (path, data) in files
        .iter()
        .copied()
        .chain([("manifest.json", &manifest[..])])
    {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    }
    for (path, target) in links {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }
    let archive = dir.join("docker.tar");
    fs::write(&archive, b.into_inner().unwrap()).unwrap();
    archive
}

/// Load must fail with 125 and a message containing each of `want`, leaving no blob, nothing
/// in tmp/ and no tag.
fn assert_refused_and_nothing_stored(archive: &Path, want: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let out = boxcmd(&store)
        .args(["load", "-i"])
        .arg(archive)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    for w in want {
        assert!(err.contains(w), "the error should say {w:?}: {err}");
    }
    assert_eq!(
        fs::read_dir(store.join("blobs/sha256")).unwrap().count(),
        0,
        "blobs were stored"
    );
    assert_eq!(
        fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "tmp/ keeps leftovers"
    );
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(store.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"],
        serde_json::json!([]),
        "something was tagged"
    );
}

#[test]
fn docker_archive_whose_layer_paths_escape_is_rejected_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (layer, diff_id) = layer_tar(b"hi\n");
    let config = config_json(&diff_id, 0);
    let files: &[(&str, &[u8])] = &[("config.json", &config), ("layer.tar", &layer)];
    // The controls: the same archive with an honest path loads, and so does one naming the
    // layer through a link inside the archive (podman's `<id>/layer.tar -> ../<diff_id>.tar`).
    let good = docker_archive(t.path(), files, &[], &["layer.tar"]);
    run(boxcmd(&t.path().join("good"))
        .args(["load", "-i"])
        .arg(&good));
    let linked = docker_archive(
        t.path(),
        files,
        &[("id/layer.tar", "../layer.tar")],
        &["id/layer.tar"],
    );
    let out = run(boxcmd(&t.path().join("linked"))
        .args(["load", "-i"])
        .arg(&linked));
    assert_eq!(out.trim(), "Loaded image: evil:latest");

    for path in ["../layer.tar", "/layer.tar", "x/../../layer.tar"] {
        let bad = docker_archive(t.path(), files, &[], &[path]);
        assert_refused_and_nothing_stored(&bad, &[path, "leaves the archive"]);
    }
    // A symbolic link (podman writes `<id>/layer.tar -> ../<diff_id>.tar`) that leaves it.
    for target in ["../../layer.tar", "/etc/passwd"] {
        let bad = docker_archive(
            t.path(),
            files,
            &[("id/layer.tar", target)],
            &["id/layer.tar"],
        );
        assert_refused_and_nothing_stored(&bad, &["id/layer.tar", "leaves the archive"]);
    }
}

#[test]
fn docker_archive_whose_layer_is_not_its_diff_id_is_rejected_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (real, diff_id) = layer_tar(b"the real layer\n");
    let (forged, forged_id) = layer_tar(b"a forged layer\n");
    let config = config_json(&diff_id, 0);
    let good = docker_archive(
        t.path(),
        &[("config.json", &config), ("l.tar", &real)],
        &[],
        &["l.tar"],
    );
    run(boxcmd(&t.path().join("good"))
        .args(["load", "-i"])
        .arg(&good));

    let bad = docker_archive(
        t.path(),
        &[("config.json", &config), ("l.tar", &forged)],
        &[],
        &["l.tar"],
    );
    assert_refused_and_nothing_stored(&bad, &["l.tar", "does not match", &diff_id, &forged_id]);
}

#[test]
fn docker_archive_with_a_config_above_the_cap_is_rejected_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (layer, diff_id) = layer_tar(b"hi\n");
    let config = config_json(&diff_id, 5 << 20);
    let archive = docker_archive(
        t.path(),
        &[("config.json", &config), ("l.tar", &layer)],
        &[],
        &["l.tar"],
    );
    assert_refused_and_nothing_stored(
        &archive,
        &["config.json", "5 MiB", "4 MiB", "BOX_MAX_CONFIG_SIZE"],
    );
    // Raised, the same archive loads.
    let store = t.path().join("raised");
    run(boxcmd(&store)
        .env("BOX_MAX_CONFIG_SIZE", "8m")
        .args(["load", "-i"])
        .arg(&archive));
    run(boxcmd(&store).args(["inspect", "evil"]));
}

/// What `docker save` writes since Docker 25: an OCI layout whose index.json names the image in
/// containerd's annotation and only its tag in ref.name, plus a `manifest.json` for older
/// loaders. Made from skopeo's archive by rewriting those two files (Docker is not installed).
#[test]
fn docker_25_archive_loads_under_its_full_name_not_its_tag() {
    if !need_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = make_archive(t.path(), "busybox:latest");
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(fs::File::open(&src).unwrap());
    let mut manifest_digest = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path == "index.json" {
            let mut idx: serde_json::Value = serde_json::from_slice(&data).unwrap();
            let m = &mut idx["manifests"][0];
            manifest_digest = m["digest"].as_str().unwrap().to_string();
            m["annotations"] = serde_json::json!({
                "io.containerd.image.name": "docker.io/library/busybox:latest",
                "org.opencontainers.image.ref.name": "latest",
            });
            data = serde_json::to_vec(&idx).unwrap();
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    let docker_manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("blobs/sha256/{}", "0".repeat(64)),
        "RepoTags": ["busybox:latest"],
        "Layers": [],
    }]))
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(docker_manifest.len() as u64);
    h.set_mode(0o644);
    out.append_data(&mut h, "manifest.json", &docker_manifest[..])
        .unwrap();
    let archive = t.path().join("docker25.tar");
    fs::write(&archive, out.into_inner().unwrap()).unwrap();

    let store = t.path().join("store");
    let out = run(boxcmd(&store).args(["load", "-i"]).arg(&archive));
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    let images = run(boxcmd(&store).args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(images.trim(), "busybox:latest");
    // The index entry keeps only boxkit's tag annotation: no stale containerd name.
    let index = fs::read_to_string(store.join("index.json")).unwrap();
    assert!(
        index.contains(&manifest_digest) && !index.contains("io.containerd"),
        "{index}"
    );
}

/// skopeo's `--all` archive of a two-platform index, and the same archive with one platform's
/// manifest left out: both load as an index (the second partial), tagged under its name; the
/// stored index is byte-identical to the archive's and `box images` lists it once.
#[test]
fn an_oci_archive_of_an_index_loads_as_an_index_whole_or_partial() {
    if !need_tools() {
        return;
    }
    let archive = common::fixtures::oci_archive(common::fixtures::Fixture::Multi);
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    run(boxcmd(&store).args(["load", "-q", "-i"]).arg(&archive));
    let out = run(boxcmd(&store).args([
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}} {{.ID}}",
    ]));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 1, "{out}");
    let idx: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(store.join("index.json")).unwrap()).unwrap();
    let entry = &idx["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let digest = entry["digest"].as_str().unwrap();
    assert!(rows[0].ends_with(digest), "{out}");
    let inner: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(&digest[7..])).unwrap())
            .unwrap();
    assert_eq!(inner["manifests"].as_array().unwrap().len(), 2);

    // The same archive without the arm64 manifest (rewritten with Python's tarfile).
    let partial = t.path().join("partial.tar");
    let arm = inner["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    run(Command::new("python3").args([
        "-c",
        "import sys,tarfile\n\
         src=tarfile.open(sys.argv[1]); dst=tarfile.open(sys.argv[2],'w')\n\
         for m in src.getmembers():\n\
         \x20   if m.name.endswith(sys.argv[3]): continue\n\
         \x20   dst.addfile(m, src.extractfile(m) if m.isfile() else None)\n\
         dst.close()",
        archive.to_str().unwrap(),
        partial.to_str().unwrap(),
        &arm[7..],
    ]));
    let store2 = t.path().join("store2");
    run(boxcmd(&store2).args(["load", "-q", "-i"]).arg(&partial));
    assert!(!store2.join("blobs/sha256").join(&arm[7..]).exists());
    let j: serde_json::Value =
        serde_json::from_str(&run(boxcmd(&store2).args(["inspect", digest]))).unwrap();
    let present: Vec<bool> = j[0]["Manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Present"].as_bool().unwrap())
        .collect();
    assert_eq!(present.iter().filter(|p| **p).count(), 1, "{j}");
}
