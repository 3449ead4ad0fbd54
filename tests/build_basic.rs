//! boxbuild on the real kernel: every instruction takes effect in the image; podman runs what
//! boxbuild makes; failures report where and leave tags alone; the cache; multi-stage.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout};
use common::podman::Podman;

const EVERY: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    MODE=prod
LABEL org.example.name="every instruction" version=1
WORKDIR $APP_HOME
COPY --chown=app:app --chmod=0640 greeting.txt ./
COPY --exclude=*.log src/ lib/
COPY *.conf /etc/every/
ADD archive.tar.gz /opt/unpacked/
COPY <<EOF /srv/app/heredoc.txt
greeting is ${GREETING}
EOF
RUN echo "$GREETING from $MODE" > built.txt && chown 1000:1000 built.txt \
 && mkdir -p /var/data && echo x > /var/data/x
RUN <<EOS
set -e
echo "heredoc run" > /srv/app/run-heredoc.txt
EOS
EXPOSE 8080 53/udp
VOLUME /var/data
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD test -f /srv/app/built.txt
ONBUILD RUN echo child
USER app
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app/built.txt /srv/app/heredoc.txt; id -u; stat -c '%a %u:%g' /srv/app/greeting.txt /srv/app/built.txt"]
"#;

fn every_env(who: Who) -> Env {
    // FROM busybox resolves through the registries.conf mirror, as for a real user.
    let e = Env::with_registry(who);
    e.boxfile(EVERY);
    e.write("greeting.txt", "hi there\n");
    e.write("src/a.txt", "a\n");
    e.write("src/deep/b.txt", "b\n");
    e.write("src/debug.log", "excluded\n");
    e.write("one.conf", "1\n");
    e.write("two.conf", "2\n");
    // An archive made by tar(1): ADD must unpack it.
    let stage = e.dir.path().join("tarsrc");
    std::fs::create_dir_all(stage.join("pkg")).unwrap();
    std::fs::write(stage.join("pkg/readme"), "from the archive\n").unwrap();
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(e.ctx().join("archive.tar.gz"))
        .arg("-C")
        .arg(&stage)
        .arg("pkg")
        .status()
        .unwrap();
    assert!(st.success());
    e.write(".boxignore", "secret.txt\n");
    e.write("secret.txt", "do not copy\n");
    e
}

#[test]
fn every_instruction_takes_effect_and_boxrun_and_podman_run_the_image_with_same_output_and_owners()
{
    let Some(who) = Who::root() else { return };
    let e = every_env(who);
    let err = e.build_ok(&["-t", "every"]);
    assert!(err.contains("[1/"), "{err}");
    let img = e.inspect("every");
    let c = &img["Config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "APP_HOME=/srv/app")
    );
    assert_eq!(c["Labels"]["org.example.name"], "every instruction");
    assert_eq!(c["Labels"]["version"], "1");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/var/data": {}}));
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /srv/app/built.txt"])
    );
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));

    // The tree, unpacked by umoci: owners, modes, contents, ignore file.
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("every", t.path());
    let listing = build_common::tree_listing(&root).join("\n");
    for want in [
        "srv/app/greeting.txt 640 1000:1000",
        "srv/app/built.txt 644 1000:1000",
        "srv/app/lib/a.txt 644 0:0",
        "srv/app/lib/deep 755 0:0 dir",
        "etc/every/one.conf 644 0:0",
        "etc/every/two.conf 644 0:0",
        "opt/unpacked/pkg/readme 644",
        "srv/app/heredoc.txt 644 0:0",
        "srv/app/run-heredoc.txt 644 0:0",
        "var/data/x 644 0:0",
    ] {
        assert!(listing.contains(want), "missing {want:?} in\n{listing}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/heredoc.txt")).unwrap(),
        "greeting is hello\n"
    );
    assert!(!root.join("srv/app/secret.txt").exists());
    assert!(!root.join("srv/app/lib/debug.log").exists(), "--exclude");
    // The sandbox's mount points do not leak into layers.
    assert!(!root.join("etc/hostname").exists() || listing.contains("etc/hostname 644"));

    // boxrun and podman run it: same output as the image promises, same ownership.
    let expected = "hello from prod\ngreeting is hello\n1000\n640 1000:1000\n644 1000:1000\n";
    let o = e.box_cmd(&["run", "--rm", "--network", "none", "every"]);
    assert!(o.status.success(), "boxrun: {}", stderr(&o));
    assert_eq!(stdout(&o), expected);
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let pulled = pm
        .cmd()
        .args(["pull", "-q", &format!("oci:{}", e.oci_ref("every"))])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let id = stdout(&pulled).trim().to_string();
    let o = pm.cmd().args(["run", "--rm", &id]).output().unwrap();
    assert!(o.status.success(), "podman run: {}", stderr(&o));
    assert_eq!(stdout(&o), expected);
}

#[test]
fn failing_run_reports_location_command_and_exit_code_and_leaves_tags_alone() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile("FROM busybox\nRUN echo first > /f\n");
    e.build_ok(&["-t", "keep"]);
    let before = e.inspect("keep")["Id"].clone();
    e.boxfile("FROM busybox\nRUN echo first > /f\n\nRUN echo about to fail; \\\n  exit 7\n");
    let o = e.build(&["-t", "keep"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("Boxfile:4"), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    assert!(err.contains("exit 7"), "the command is shown: {err}");
    assert!(err.contains("about to fail"), "RUN output streams: {err}");
    assert_eq!(e.inspect("keep")["Id"], before, "the tag must not move");
}

#[test]
fn rebuild_hits_the_cache_touch_keeps_hits_and_an_edit_reruns_from_there() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write("a.txt", "a\n");
    e.write("b.txt", "b\n");
    e.boxfile("FROM busybox\nCOPY a.txt /a\nRUN echo ran-1 && date +%s%N > /stamp1\nCOPY b.txt /b\nRUN echo ran-2\nENV X=1\n");
    let first = e.build_ok(&["-t", "c"]);
    assert!(first.contains("] ran-1") && first.contains("] ran-2"));
    assert!(!first.contains("CACHED"));
    let first_id = e.inspect("c")["Id"].clone();
    let second = e.build_ok(&["-t", "c"]);
    assert_eq!(second.matches("CACHED").count(), 4, "{second}");
    assert_eq!(
        e.inspect("c")["Id"],
        first_id,
        "a fully cached rebuild gives the same image"
    );
    assert!(
        !second.contains("] ran-1"),
        "a hit runs no container: {second}"
    );
    // Touching without changing content keeps every hit.
    let f = std::fs::File::options()
        .write(true)
        .open(e.ctx().join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    let third = e.build_ok(&["-t", "c"]);
    assert_eq!(third.matches("CACHED").count(), 4, "{third}");
    // An edit misses from the edited COPY on.
    e.write("b.txt", "B\n");
    let fourth = e.build_ok(&["-t", "c"]);
    assert_eq!(fourth.matches("CACHED").count(), 2, "{fourth}");
    assert!(fourth.contains("] ran-2") && !fourth.contains("] ran-1"));
    // A build arg a RUN sees changes its key; --no-cache runs everything.
    let fifth = e.build_ok(&["-t", "c", "--no-cache"]);
    assert!(!fifth.contains("CACHED") && fifth.contains("] ran-1"));
}

#[test]
fn build_args_reach_run_steps_and_their_value_is_part_of_the_key() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile(
        "FROM busybox\nARG FLAVOUR=plain\nRUN echo flavour=$FLAVOUR > /flavour\nRUN echo changes-nothing\n",
    );
    let a = e.build_ok(&["-t", "f"]);
    assert!(!a.contains("CACHED"));
    let b = e.build_ok(&["-t", "f", "--build-arg", "FLAVOUR=spicy"]);
    assert!(!b.contains("CACHED"), "{b}");
    // The RUN that changes nothing adds no layer, only an empty_layer history entry.
    let img = e.inspect("f");
    assert_eq!(img["Manifest"]["Layers"].as_array().unwrap().len(), 2);
    let last = img["History"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["empty_layer"], true, "{last}");
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("f", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("flavour")).unwrap(),
        "flavour=spicy\n"
    );
}

#[test]
fn multi_stage_builds_only_needed_stages_with_target_copy_from_and_scratch() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile(
        "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/app && echo ran-builder\n\
         FROM busybox AS unused\nRUN echo ran-unused\n\
         FROM scratch\nCOPY --from=builder /out/app /app\nCOPY --from=busybox /bin/busybox /bin/busybox\n\
         CMD [\"/bin/busybox\", \"cat\", \"/app\"]\n",
    );
    let err = e.build_ok(&["-t", "ms"]);
    assert!(err.contains("] ran-builder"), "{err}");
    assert!(!err.contains("ran-unused"), "unneeded stage built: {err}");
    let img = e.inspect("ms");
    assert_eq!(
        img["Manifest"]["Layers"].as_array().map(|a| a.len()),
        Some(2)
    );
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("ms", t.path());
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["app", "bin"]);
    assert_eq!(
        std::fs::read_to_string(root.join("app")).unwrap(),
        "built\n"
    );

    let err = e.build_ok(&["-t", "only-unused", "--target", "unused"]);
    assert!(
        err.contains("] ran-unused") && !err.contains("ran-builder"),
        "{err}"
    );
    let o = e.build(&["--target", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"));
}

#[test]
fn run_that_deletes_a_base_file_and_replaces_a_base_directory_gives_whiteouts_umoci_and_podman_honour()
 {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile(
        "FROM busybox\nRUN mkdir -p /olddir/sub && echo 1 > /olddir/sub/f && echo 2 > /olddir/keep\n\
         RUN rm /etc/group && rm -rf /olddir && mkdir /olddir && echo new > /olddir/only\n",
    );
    e.build_ok(&["-t", "wh"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("wh", t.path());
    assert!(!root.join("etc/group").exists());
    assert!(root.join("etc/passwd").exists());
    let names: Vec<String> = std::fs::read_dir(root.join("olddir"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["only"]);
    let check = "ls /olddir; test -e /etc/group && echo group-present || echo group-gone";
    let o = e.box_cmd(&["run", "--rm", "--network", "none", "wh", "sh", "-c", check]);
    assert_eq!(stdout(&o), "only\ngroup-gone\n", "boxrun: {}", stderr(&o));
    let Some(pm) = Podman::new_or_skip() else {
        return;
    };
    let pulled = pm
        .cmd()
        .args(["pull", "-q", &format!("oci:{}", e.oci_ref("wh"))])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let id = stdout(&pulled).trim().to_string();
    let o = pm
        .cmd()
        .args([
            "run",
            "--rm",
            &id,
            "sh",
            "-c",
            "ls /olddir; test -e /etc/group && echo group-present || echo group-gone",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "only\ngroup-gone\n", "{}", stderr(&o));
}

#[test]
fn a_directory_removed_and_recreated_is_opaque_under_both_userns_modes() {
    // The layers carry overlay's opaque marker as `user.overlay.opaque` (the form an overlay
    // mounted with `userxattr` reads); an overlay without it (--userns=host used to mount one)
    // ignores the marker and shows the deleted files again.
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile("FROM busybox\nRUN mkdir /s && echo k > /s/k\nRUN rm -rf /s && mkdir /s\n");
    e.build_ok(&["-t", "opq"]);
    for mode in [None, Some("--userns=host")] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(mode);
        args.extend(["opq", "sh", "-c", "ls -A /s; echo end"]);
        let o = e.box_cmd(&args);
        assert_eq!(stdout(&o), "end\n", "{mode:?}: {}", stderr(&o));
    }
}

#[test]
fn boxfile_on_stdin_builds_without_a_context_and_copy_then_fails_clearly() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    let run = |text: &str| {
        let mut c = std::process::Command::new(common::bin("boxbuild"));
        c.arg("--root")
            .arg(e.store())
            .args(["-t", "stdin", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run("FROM busybox\nRUN echo from-stdin\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().starts_with("sha256:"));
    let o = run("FROM busybox\nCOPY x /x\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no context"), "{}", stderr(&o));
}

#[test]
fn iidfile_labels_and_docker_format() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.boxfile("FROM busybox\nSTOPSIGNAL SIGINT\nHEALTHCHECK CMD true\n");
    let iid = e.dir.path().join("iid");
    let o = e.build(&[
        "-t",
        "dk",
        "--format",
        "docker",
        "--label",
        "a=b",
        "--iidfile",
        iid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(stdout(&o).trim(), id);
    let img = e.inspect("dk");
    assert_eq!(img["Id"], id);
    assert_eq!(img["Config"]["Labels"]["a"], "b");
    assert_eq!(img["Config"]["StopSignal"], "SIGINT");
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.store().join("index.json")).unwrap()).unwrap();
    let entry = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"] == "docker.io/library/dk:latest"
        })
        .unwrap()
        .clone();
    assert_eq!(
        entry["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn cache_exported_to_a_registry_makes_another_store_hit_every_step() {
    let Some(who) = Who::root() else { return };
    let a = Env::with_registry(who.clone());
    a.write("app.txt", "app\n");
    a.boxfile("FROM busybox\nCOPY app.txt /app.txt\nRUN echo ran-step > /ran\nWORKDIR /new/dir\nCMD [\"cat\", \"/ran\"]\n");
    let cache = format!("{}/ci/cache:main", a.registry.as_ref().unwrap().addr());
    let err = a.build_ok(&["-t", "one", "--cache-to", &cache]);
    assert!(err.contains("exporting cache"), "{err}");
    // Another machine: a fresh store (and its own registry view), the same context content.
    let b = Env::with_registry(who);
    b.write("app.txt", "app\n");
    b.boxfile("FROM busybox\nCOPY app.txt /app.txt\nRUN echo ran-step > /ran\nWORKDIR /new/dir\nCMD [\"cat\", \"/ran\"]\n");
    std::fs::copy(
        a.dir.path().join("registries.conf"),
        b.dir.path().join("registries.conf"),
    )
    .unwrap();
    let err = b.build_ok(&[
        "-t",
        "two",
        &format!("--cache-from=type=registry,ref={cache}"),
    ]);
    assert_eq!(err.matches("CACHED").count(), 3, "{err}");
    assert!(!err.contains("] ran-step"), "{err}");
    let t = tempfile::tempdir().unwrap();
    let root = b.umoci_unpack("two", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("ran")).unwrap(),
        "ran-step\n"
    );
    assert!(root.join("new/dir").is_dir());
    // A cache that cannot be imported is a warning, not a failure.
    let err = b.build_ok(&[
        "-t",
        "three",
        "--no-cache",
        "--cache-from",
        &format!("{}/nope:x", a.registry.as_ref().unwrap().addr()),
    ]);
    assert!(err.contains("warning: cannot import cache"), "{err}");
}

/// A plain HTTP server (python3 -m http.server) on 127.0.0.1 serving `dir`.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &std::path::Path) -> HttpServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpServer { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_of_a_url_downloads_with_mode_0600_verifies_checksums_and_caches_on_content() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    let srv_dir = tempfile::tempdir().unwrap();
    std::fs::write(srv_dir.path().join("tool.txt"), "downloaded v1\n").unwrap();
    let srv = HttpServer::start(srv_dir.path());
    let url = format!("http://127.0.0.1:{}/tool.txt", srv.port);
    e.boxfile(&format!(
        "FROM busybox\nADD {url} /opt/\nADD --chmod=0644 {url} /opt/renamed.txt\nRUN echo ran-after\n"
    ));
    e.build_ok(&["-t", "url"]);
    let again = e.build_ok(&["-t", "url"]);
    assert_eq!(again.matches("CACHED").count(), 3, "{again}");
    std::fs::write(srv_dir.path().join("tool.txt"), "downloaded v2\n").unwrap();
    let changed = e.build_ok(&["-t", "url"]);
    assert!(
        !changed.contains("CACHED"),
        "new content must miss: {changed}"
    );
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("url", t.path());
    let listing = build_common::tree_listing(&root).join("\n");
    assert!(listing.contains("opt/tool.txt 600 0:0"), "{listing}");
    assert!(listing.contains("opt/renamed.txt 644 0:0"), "{listing}");
    assert_eq!(
        std::fs::read_to_string(root.join("opt/tool.txt")).unwrap(),
        "downloaded v2\n"
    );
    let sum = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"downloaded v2\n"))
    );
    e.boxfile(&format!("FROM busybox\nADD --checksum={sum} {url} /ok\n"));
    e.build_ok(&["-t", "sum"]);
    e.boxfile(&format!(
        "FROM busybox\nADD --checksum=sha256:{} {url} /bad\n",
        "0".repeat(64)
    ));
    let o = e.build(&["-t", "sum"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
}

#[test]
fn push_sends_the_built_image_to_its_registry_and_pull_never_refuses_a_missing_base() {
    let Some(who) = Who::root() else { return };
    let e = Env::with_registry(who);
    let reg = e.registry.as_ref().unwrap();
    e.boxfile("FROM busybox\nRUN echo pushed > /pushed\n");
    let name = format!("{}/team/pushed:v1", reg.addr());
    e.build_ok(&["-t", &name, "--push"]);
    let r = reg.get("/v2/team/pushed/manifests/v1");
    assert_eq!(r.status, 200, "the pushed manifest is in the registry");
    // A fresh store with --pull=never has no busybox to start from.
    e.boxfile("FROM layered\nRUN true\n");
    let o = e.build(&["--pull=never"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--pull=never"), "{}", stderr(&o));
}

#[test]
fn copy_writes_through_a_symlinked_destination_keeps_parent_metadata_and_parents_paths() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write("f", "f\n");
    e.write("nested/a/x.txt", "a\n");
    e.write("nested/b/x.txt", "b\n");
    e.boxfile(
        "FROM busybox\nRUN mkdir -p /usr/local/real && ln -s real /usr/local/alias\n\
         COPY f /usr/local/alias/\nCOPY f /tmp/in-tmp\nCOPY f /home/app/sub/\n\
         COPY --parents nested/*/x.txt /kept/\n",
    );
    e.build_ok(&["-t", "sym"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("sym", t.path());
    let listing = build_common::tree_listing(&root).join("\n");
    assert!(
        listing.contains("usr/local/alias 777 0:0 -> real"),
        "{listing}"
    );
    assert!(listing.contains("usr/local/real/f 644 0:0"), "{listing}");
    // Existing parents keep the image's mode and owner (/tmp 1777, /home/app 1000).
    assert!(listing.contains("tmp 1777 0:0 dir"), "{listing}");
    assert!(listing.contains("home/app 755 1000:1000 dir"), "{listing}");
    assert!(listing.contains("home/app/sub 755 0:0 dir"), "{listing}");
    // --parents keeps the matched paths below the destination.
    assert!(listing.contains("kept/nested/a/x.txt 644 0:0"), "{listing}");
    assert!(listing.contains("kept/nested/b/x.txt 644 0:0"), "{listing}");
}

#[test]
fn onbuild_triggers_run_in_the_child_build_and_are_not_inherited() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write("trigger.txt", "from the child context\n");
    e.boxfile("FROM busybox\nONBUILD COPY trigger.txt /triggered.txt\nONBUILD RUN echo onbuild-ran > /onbuild\n");
    e.build_ok(&["-t", "parent"]);
    e.boxfile("FROM parent\nRUN cat /onbuild\n");
    let err = e.build_ok(&["-t", "child"]);
    assert!(err.contains("] onbuild-ran"), "{err}");
    let img = e.inspect("child");
    assert!(img["Config"]["OnBuild"].is_null(), "{}", img["Config"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("child", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("triggered.txt")).unwrap(),
        "from the child context\n"
    );
}

#[test]
fn a_stage_can_be_the_base_of_another_and_f_names_the_boxfile() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write(
        "build/Special.boxfile",
        "FROM busybox AS base\nENV FROM_BASE=yes\nRUN echo base > /base\n\
         FROM base AS derived\nRUN cat /base > /derived && echo $FROM_BASE >> /derived\n\
         MAINTAINER someone@example.com\n",
    );
    let f = e.ctx().join("build/Special.boxfile");
    let err = e.build_ok(&["-t", "derived", "-f", f.to_str().unwrap()]);
    assert!(err.contains("MaintainerDeprecated"), "{err}");
    let img = e.inspect("derived");
    assert_eq!(img["Author"], "someone@example.com");
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("derived", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("derived")).unwrap(),
        "base\nyes\n"
    );
}

#[test]
fn sources_follow_symlinks_only_inside_the_context_or_the_stage() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    std::os::unix::fs::symlink("/etc", e.ctx().join("etc-link")).unwrap();
    e.write("inside/file.txt", "inside\n");
    std::os::unix::fs::symlink("/inside/file.txt", e.ctx().join("abs-link")).unwrap();
    // A context symlink to /etc cannot bring the host's files into the image.
    e.boxfile("FROM busybox\nCOPY etc-link/hostname /leak\n");
    let o = e.build(&["-t", "leak"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("etc-link/hostname: not found"),
        "{}",
        stderr(&o)
    );
    // An absolute symlink resolves inside the context; an image's symlinks inside the image.
    e.boxfile(
        "FROM busybox\nCOPY abs-link /copied.txt\nCOPY --from=busybox /bin/sh /sh-from-image\n",
    );
    e.build_ok(&["-t", "scoped"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("scoped", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("copied.txt")).unwrap(),
        "inside\n"
    );
    let sh = std::fs::symlink_metadata(root.join("sh-from-image")).unwrap();
    assert!(
        sh.is_file(),
        "the symlink is followed to the image's busybox"
    );
    assert_eq!(
        std::fs::read(root.join("sh-from-image")).unwrap(),
        std::fs::read(root.join("bin/busybox")).unwrap()
    );
}

#[test]
fn from_scratch_with_a_platform_records_it_in_the_config() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write("f", "f\n");
    e.boxfile("FROM --platform=linux/arm64/v8 scratch\nCOPY f /f\n");
    e.build_ok(&["-t", "arm"]);
    let img = e.inspect("arm");
    assert_eq!(img["Architecture"], "arm64");
    assert_eq!(img["Os"], "linux");
}

/// `git daemon` serving bare repositories under `base` on 127.0.0.1.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &std::path::Path) -> GitDaemon {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_of_a_git_repository_checks_out_the_ref_without_dot_git_and_keys_on_the_commit() {
    let Some(who) = Who::root() else { return };
    if !common::have_tool("git") {
        return common::skip("git is not installed");
    }
    let e = Env::new(who);
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(t.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
    };
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::write(work.join("README"), "v1\n").unwrap();
    std::fs::write(work.join("docs/guide.txt"), "guide\n").unwrap();
    sh(
        "git -C work init -q -b main && git -C work add -A && git -C work commit -qm one \
        && git clone -q --bare work repo.git",
    );
    let daemon = GitDaemon::start(t.path());
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    e.boxfile(&format!(
        "FROM busybox\nADD {url}#main /src/\nADD {url}#main:docs /docs/\n"
    ));
    e.build_ok(&["-t", "git"]);
    let again = e.build_ok(&["-t", "git"]);
    assert_eq!(again.matches("CACHED").count(), 2, "{again}");
    std::fs::write(work.join("README"), "v2\n").unwrap();
    sh("git -C work commit -qam two && git -C work push -q ../repo.git main");
    let changed = e.build_ok(&["-t", "git"]);
    assert!(
        !changed.contains("CACHED ADD"),
        "a new commit must miss: {changed}"
    );
    let u = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("git", u.path());
    assert_eq!(
        std::fs::read_to_string(root.join("src/README")).unwrap(),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("docs/guide.txt")).unwrap(),
        "guide\n"
    );
    assert!(!root.join("src/.git").exists());
}

#[test]
fn context_files_named_like_remote_sources_are_copied_as_files() {
    // The engine once found ADD downloads and git checkouts again by the names "url:N" and
    // "git:N": a context file with such a name must still be an ordinary file.
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    e.write("url:0", "not a download\n");
    e.write("git:0", "not a checkout\n");
    e.boxfile("FROM scratch\nCOPY url:0 git:0 /dst/\nADD url:0 /added\n");
    e.build_ok(&["-t", "named"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("named", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("dst/url:0")).unwrap(),
        "not a download\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("dst/git:0")).unwrap(),
        "not a checkout\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("added")).unwrap(),
        "not a download\n"
    );
}

#[test]
fn progress_plain_breaks_each_run_step_down_into_run_diff_pack_and_commit() {
    let Some(root) = Who::root() else { return };
    let e = Env::new(root);
    e.boxfile("FROM busybox\nRUN echo made > /made\nRUN true\n");
    let plain = e.build_ok(&["--progress=plain", "--no-cache"]);
    let line = |n: &str| {
        plain
            .lines()
            .find(|l| l.starts_with(&format!("[{n}/3] time: run ")))
            .unwrap_or_else(|| panic!("no time line for step {n}:\n{plain}"))
            .to_string()
    };
    let made = line("2");
    for part in [", diff ", "ms, pack ", "ms, commit ", "ms"] {
        assert!(made.contains(part), "{made}");
    }
    // A step that changed nothing makes no layer.
    assert!(line("3").ends_with(", no layer"), "{}", line("3"));
    let auto = e.build_ok(&["--no-cache"]);
    assert!(!auto.contains("time: run "), "{auto}");
}

#[test]
fn same_size_rewrite_with_the_old_mtime_right_after_a_build_reruns_the_copy() {
    // A file rewritten within the second its hash was recorded, same size, mtime put back:
    // the stat index must not serve the old hash (racy timestamps). Root and rootless.
    for who in [Who::root(), Who::with_range()].into_iter().flatten() {
        let e = Env::new(who);
        for d in 0..20 {
            let dir = e.ctx().join(format!("src/d{d:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..50 {
                std::fs::write(dir.join(format!("f{i:02}")), format!("{d} {i}\n")).unwrap();
            }
        }
        // (boxfile() hands the whole context to the user.)
        e.boxfile("FROM busybox\nCOPY src /src\nRUN cat /src/d07/f33\n");
        let first = e.build_ok(&["-t", "r"]);
        assert!(first.contains("] 7 33"), "{first}");
        let p = e.ctx().join("src/d07/f33");
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::fs::write(&p, "7 34\n").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let second = e.build_ok(&["-t", "r"]);
        assert!(second.contains("] 7 34"), "the edit must be seen: {second}");
        assert_eq!(second.matches("CACHED").count(), 0, "{second}");
    }
}

#[test]
fn a_no_cache_rebuild_sets_its_duplicate_layer_aside_and_prune_removes_it() {
    // The rebuilt COPY layer is already cached: its new tree is not deleted on the build's
    // path but renamed aside in layers/, where the image never looks and `box prune` sweeps.
    for who in [Who::root(), Who::with_range()].into_iter().flatten() {
        let e = Env::new(who);
        e.write("f", "one\n");
        e.boxfile("FROM busybox\nCOPY f /f\nRUN cat /f\n");
        e.build_ok(&["-t", "a"]);
        let unused = || -> Vec<String> {
            std::fs::read_dir(e.store().join("layers"))
                .unwrap()
                .flatten()
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".unused-"))
                .collect()
        };
        assert!(unused().is_empty(), "{:?}", unused());
        let out = e.build_ok(&["--no-cache", "-t", "a"]);
        assert!(out.contains("one"), "{out}");
        assert!(
            !unused().is_empty(),
            "the duplicate COPY layer was set aside"
        );
        // The image still runs from the cached copy.
        let run = e.cmd("boxrun", &["--rm", "a", "cat", "/f"]);
        assert!(
            run.status.success() && stdout(&run).contains("one"),
            "{run:?}"
        );
        let p = e.box_cmd(&["prune"]);
        assert!(p.status.success(), "{p:?}");
        assert!(
            unused().is_empty(),
            "prune removes the set-aside trees: {:?}",
            unused()
        );
        let run = e.cmd("boxrun", &["--rm", "a", "cat", "/f"]);
        assert!(
            run.status.success() && stdout(&run).contains("one"),
            "{run:?}"
        );
    }
}
