//! boxbuild's outputs and build-wide flags, as buildx has them, on the real kernel as root and
//! as an unprivileged user: `-o type=local|tar` (and the short forms), `--metadata-file`,
//! `--add-host`, `--build-context`, `--ssh`.

mod build_common;
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use build_common::{Env, SshAgent, Who, stderr, stdout};

fn whos() -> Vec<Who> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![root, Who::with_range().unwrap()]
}

/// The host uid and gid of the user who ran the build.
fn caller(who: &Who) -> (u32, u32) {
    match who {
        Who::Root => (0, 0),
        Who::User(u) => (u.uid, u.gid),
    }
}

/// Every path under `dir` (itself excluded) with its owner, sorted.
fn owners(dir: &Path) -> Vec<(String, u32, u32)> {
    let mut v = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            v.push((rel, m.uid(), m.gid()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    v.sort();
    v
}

const TWO_STAGES: &str = "FROM busybox AS b\n\
RUN mkdir -p /out/sub && echo built > /out/sub/made.txt && chown 1000:1000 /out/sub/made.txt \
 && ln -s sub/made.txt /out/link && chmod 0750 /out/sub\n\
FROM scratch\nCOPY --from=b --chown=1000:1000 /out/ /\nCOPY ctxfile /ctxfile\n";

#[test]
fn local_output_writes_the_final_stage_as_the_callers_files_and_stores_no_image() {
    let mut all = whos();
    // Only container root mapped: owners are recorded in an xattr, the export still the caller's.
    all.extend(Who::without_range());
    for who in all {
        let e = Env::new(who.clone());
        e.write("ctxfile", "from the context\n");
        e.boxfile(TWO_STAGES);
        let out = e.dir.path().join("out");
        let err = e.build_ok(&[
            "-t",
            "notstored",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ]);
        let l = who.label();
        assert_eq!(
            std::fs::read_to_string(out.join("sub/made.txt")).unwrap(),
            "built\n"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("ctxfile")).unwrap(),
            "from the context\n"
        );
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("sub/made.txt")
        );
        let m = std::fs::metadata(out.join("sub")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750, "{l}: the image's mode");
        // Every file is the caller's, whatever the image said (made.txt is 1000:1000 there).
        let (uid, gid) = caller(&who);
        for (p, u, g) in owners(&out) {
            assert_eq!((u, g), (uid, gid), "{l}: {p} is not the caller's");
        }
        // An explicit -o replaces the default image output, as with buildx.
        let o = e.box_cmd(&["inspect", "notstored"]);
        assert!(!o.status.success(), "{l}: an image was stored:\n{err}");
        // The short form, into an existing directory: files are replaced, others kept.
        std::fs::write(out.join("mine"), "kept\n").unwrap();
        e.write("ctxfile", "changed\n");
        e.build_ok(&["-o", out.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(out.join("ctxfile")).unwrap(),
            "changed\n"
        );
        assert_eq!(std::fs::read_to_string(out.join("mine")).unwrap(), "kept\n");
        // With an image output as well, both happen.
        let both = e.dir.path().join("both");
        e.build_ok(&["-t", "stored", "-o", both.to_str().unwrap(), "--load"]);
        assert!(both.join("ctxfile").exists());
        assert!(e.box_cmd(&["inspect", "stored"]).status.success(), "{l}");
    }
}

/// `tar tvf` of `tar` as (mode string, owner, name) lines.
fn tar_listing(tar: &Path) -> String {
    let o = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(tar)
        .output()
        .unwrap();
    assert!(o.status.success(), "tar: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn tar_output_goes_to_a_file_or_stdout_with_the_images_owners() {
    for who in whos() {
        let l = who.label();
        let e = Env::new(who.clone());
        e.write("ctxfile", "x\n");
        e.boxfile(TWO_STAGES);
        let file = e.dir.path().join("rootfs.tar");
        e.build_ok(&["-o", &format!("type=tar,dest={}", file.display())]);
        let listing = tar_listing(&file);
        let line = listing
            .lines()
            .find(|l| l.ends_with("sub/made.txt") && !l.contains(" -> "))
            .unwrap_or_else(|| panic!("{l}: no made.txt in\n{listing}"));
        // In the tar the image's owner stays (1000:1000), as BuildKit's tar exporter.
        assert!(line.contains("1000/1000"), "{l}: {line}");
        assert!(listing.contains("link -> sub/made.txt"), "{l}: {listing}");
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            caller(&who),
            "{l}: the tar file's owner"
        );
        // `-o -`: the tar is all stdout carries (no image ID after it).
        let o = e.build(&["-o", "-"]);
        assert!(o.status.success(), "{l}: {}", stderr(&o));
        let piped = e.dir.path().join("piped.tar");
        std::fs::write(&piped, &o.stdout).unwrap();
        assert_eq!(tar_listing(&piped), listing, "{l}: stdout is the same tar");
        // Bad outputs are usage errors before any work.
        for bad in ["type=local", "type=zip,dest=x", "type=local,dest=-"] {
            let o = e.build(&["-o", bad]);
            assert_eq!(o.status.code(), Some(125), "{l}: -o {bad}: {}", stderr(&o));
        }
    }
}

#[test]
fn metadata_file_has_buildx_keys_and_belongs_to_the_caller() {
    for who in whos() {
        let l = who.label();
        let e = Env::new(who.clone());
        e.boxfile("FROM busybox\nRUN echo hi > /hi\n");
        let meta = e.dir.path().join("meta.json");
        e.build_ok(&[
            "-t",
            "meta",
            "-t",
            "other:v1",
            "--metadata-file",
            meta.to_str().unwrap(),
        ]);
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        let img = e.inspect("meta");
        assert_eq!(m["containerimage.config.digest"], img["Id"], "{l}: {m}");
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.store().join("index.json")).unwrap()).unwrap();
        let entry = idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                d["annotations"]["org.opencontainers.image.ref.name"]
                    == "docker.io/library/meta:latest"
            })
            .unwrap()
            .clone();
        assert_eq!(m["containerimage.digest"], entry["digest"], "{l}: {m}");
        assert_eq!(m["containerimage.descriptor"]["digest"], entry["digest"]);
        assert_eq!(m["containerimage.descriptor"]["size"], entry["size"]);
        assert_eq!(
            m["containerimage.descriptor"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            m["image.name"], "docker.io/library/meta:latest,docker.io/library/other:v1",
            "{l}"
        );
        let st = std::fs::metadata(&meta).unwrap();
        assert_eq!((st.uid(), st.gid()), caller(&who), "{l}: the file's owner");
    }
}

#[test]
fn add_host_reaches_run_steps_and_never_the_image() {
    for who in whos() {
        let l = who.label();
        let e = Env::new(who);
        e.boxfile("FROM busybox\nRUN grep -E 'db|v6' /etc/hosts > /seen\n");
        let out = e.dir.path().join("out");
        e.build_ok(&[
            "--add-host",
            "db:10.9.8.7",
            "--add-host",
            "v6=[fd00::7]",
            "-o",
            out.to_str().unwrap(),
        ]);
        let seen = std::fs::read_to_string(out.join("seen")).unwrap();
        assert!(seen.contains("10.9.8.7\tdb"), "{l}: {seen}");
        assert!(seen.contains("fd00::7\tv6"), "{l}: {seen}");
        // /etc/hosts was the step's own mount: the image keeps what it had (busybox: none).
        let hosts = std::fs::read_to_string(out.join("etc/hosts")).unwrap_or_default();
        assert!(
            !hosts.contains("10.9.8.7"),
            "{l}: the image got the host: {hosts}"
        );
        // Another mapping is another RUN (not a cache hit of the first).
        let err = e.build_ok(&["--add-host", "db:10.9.8.8", "-o", out.to_str().unwrap()]);
        assert!(!err.contains("CACHED RUN"), "{l}: {err}");
        let seen = std::fs::read_to_string(out.join("seen")).unwrap();
        assert!(seen.contains("10.9.8.8\tdb"), "{l}: {seen}");
        let o = e.build(&["--add-host", "nocolon"]);
        assert_eq!(o.status.code(), Some(125), "{l}: {}", stderr(&o));
    }
}

/// Make `p` (recursively) the builder's, as the Env's own files are.
fn give(who: &Who, p: &Path) {
    if let Who::User(u) = who {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", u.uid, u.gid))
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

#[test]
fn build_contexts_name_directories_and_images_for_from_copy_and_mounts() {
    for who in whos() {
        let l = who.label();
        let e = Env::new(who.clone());
        let extra = e.dir.path().join("extra");
        std::fs::create_dir_all(extra.join("sub")).unwrap();
        std::fs::write(extra.join("data.txt"), "from extra\n").unwrap();
        std::fs::write(extra.join("sub/deep.txt"), "deep\n").unwrap();
        give(&who, &extra);
        let src = format!("src={}", extra.display());
        // A named directory replaces the placeholder stage of the same name, for COPY --from
        // and for a bind mount's from=; an image context pins `FROM alpine` to busybox.
        e.boxfile(
            "FROM scratch AS src\nFROM alpine\nCOPY --from=src data.txt /data.txt\n\
             RUN --mount=type=bind,from=src,target=/m cat /m/sub/deep.txt > /seen\n",
        );
        let out = e.dir.path().join("out");
        let args = [
            "--build-context",
            src.as_str(),
            "--build-context",
            "alpine=docker-image://busybox",
            "-o",
            out.to_str().unwrap(),
        ];
        e.build_ok(&args);
        assert_eq!(
            std::fs::read_to_string(out.join("data.txt")).unwrap(),
            "from extra\n"
        );
        assert_eq!(std::fs::read_to_string(out.join("seen")).unwrap(), "deep\n");
        assert!(
            out.join("bin/busybox").exists(),
            "{l}: not busybox's filesystem"
        );
        // The directory's content keys the steps that read it.
        std::fs::write(extra.join("data.txt"), "changed\n").unwrap();
        let err = e.build_ok(&args);
        assert!(!err.contains("CACHED COPY"), "{l}: {err}");
        assert_eq!(
            std::fs::read_to_string(out.join("data.txt")).unwrap(),
            "changed\n"
        );
        // FROM a directory: its files are the stage's filesystem.
        e.boxfile("FROM src\n");
        let root = e.dir.path().join("root");
        e.build_ok(&["--build-context", &src, "-o", root.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(root.join("sub/deep.txt")).unwrap(),
            "deep\n"
        );
        // Without the context, `FROM alpine` is alpine (not in this store: a pull error).
        e.boxfile("FROM alpine\n");
        let o = e.build(&["--pull=never"]);
        assert!(!o.status.success(), "{l}: built without the context");
        let o = e.build(&["--build-context", "x=https://example.com/r.git"]);
        assert_eq!(o.status.code(), Some(125), "{l}: {}", stderr(&o));
    }
}

#[test]
fn ssh_forwards_the_callers_agent_into_run_steps_only() {
    for who in whos() {
        let l = who.label();
        let e = Env::new(who.clone());
        let agent = SshAgent::start(&e);
        e.ssh_add_in_context();
        e.boxfile(
            "FROM busybox\nCOPY sshroot/ /\n\
             RUN --mount=type=ssh ssh-add -l > /keys && echo \"$SSH_AUTH_SOCK\" > /sock\n\
             USER 1000\n\
             RUN --mount=type=ssh,id=other,target=/tmp/o.sock,uid=1000 \
                 SSH_AUTH_SOCK=/tmp/o.sock ssh-add -l > /tmp/keys1000\n\
             USER root\n\
             RUN --mount=type=ssh,id=absent echo \"${SSH_AUTH_SOCK:-unset}\" > /absent\n\
             RUN --mount=type=ssh,id=keys ssh-add -l > /fromkey\n",
        );
        let sock = agent.socket.to_str().unwrap();
        let other = format!("other={sock}");
        // A key file instead of an agent: the build loads it into an agent of its own.
        let keys = format!("keys={}", agent.key.display());
        let out = e.dir.path().join("out");
        let o = e.build_env(
            &[
                "--ssh",
                "default",
                "--ssh",
                &other,
                "--ssh",
                &keys,
                "-t",
                "ssh",
                "--load",
                "-o",
                out.to_str().unwrap(),
            ],
            &[("SSH_AUTH_SOCK", sock)],
        );
        assert!(o.status.success(), "{l}: {}", stderr(&o));
        let keys = std::fs::read_to_string(out.join("keys")).unwrap();
        assert!(keys.contains(&agent.fingerprint), "{l}: {keys}");
        let keys = std::fs::read_to_string(out.join("tmp/keys1000")).unwrap();
        assert!(
            keys.contains(&agent.fingerprint),
            "{l}: as uid 1000: {keys}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("sock")).unwrap(),
            "/run/buildkit/ssh_agent.0\n"
        );
        // An id not forwarded, not required: the step runs without an agent.
        assert_eq!(
            std::fs::read_to_string(out.join("absent")).unwrap(),
            "unset\n"
        );
        // Neither the socket nor the variable is in the image.
        assert!(
            !out.join("run/buildkit").exists(),
            "{l}: the mount point stayed"
        );
        assert!(
            !out.join("tmp/o.sock").exists(),
            "{l}: the mount point stayed"
        );
        let env = e.inspect("ssh")["Config"]["Env"].to_string();
        assert!(!env.contains("SSH_AUTH_SOCK"), "{l}: {env}");
        // required: a missing agent fails the step, naming the flag.
        e.boxfile("FROM busybox\nRUN --mount=type=ssh,required=true true\n");
        let o = e.build(&[]);
        assert_eq!(o.status.code(), Some(1), "{l}: {}", stderr(&o));
        assert!(stderr(&o).contains("--ssh default"), "{l}: {}", stderr(&o));
        // --ssh without an agent is a usage error.
        let o = e.build(&["--ssh", "default"]);
        assert_eq!(o.status.code(), Some(125), "{l}: {}", stderr(&o));
        assert!(stderr(&o).contains("SSH_AUTH_SOCK"), "{l}: {}", stderr(&o));
    }
}
