//! boxbuild as unprivileged users, reproducibility with SOURCE_DATE_EPOCH, RUN mounts, and the
//! same tree as `buildah bud`.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout, tree_listing};

const CHOWNING: &str = "FROM busybox\nCOPY --chown=1000:1000 f /home/app/f\n\
RUN chown 1000:1000 /home/app && touch /made-by-root && echo ok\nUSER app\nRUN id -u > /tmp/who\n";

#[test]
fn user_with_a_subordinate_range_builds_everything_including_chown() {
    let Some(who) = Who::with_range() else { return };
    let e = Env::with_registry(who);
    e.write("f", "data\n");
    e.boxfile(CHOWNING);
    e.build_ok(&["-t", "rl"]);
    let again = e.build_ok(&["-t", "rl"]);
    assert_eq!(again.matches("CACHED").count(), 3, "{again}");
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("rl", t.path());
    let listing = tree_listing(&root).join("\n");
    assert!(listing.contains("home/app/f 644 1000:1000"), "{listing}");
    assert!(listing.contains("made-by-root 644 0:0"), "{listing}");
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/who")).unwrap(),
        "1000\n"
    );
}

#[test]
fn user_without_a_range_builds_with_chown_and_gets_the_usermod_hint_for_other_users() {
    let Some(who) = Who::without_range() else {
        return;
    };
    let e = Env::new(who);
    e.write("f", "data\n");
    e.boxfile("FROM busybox\nCOPY f /f\nRUN echo built > /built\nCMD [\"cat\", \"/built\"]\n");
    e.build_ok(&["-t", "plain"]);
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("plain", t.path());
    assert_eq!(
        std::fs::read_to_string(root.join("built")).unwrap(),
        "built\n"
    );

    // Owners other than root are kept (recorded in an xattr, emulated chown; see
    // tests/build_owners.rs), so these build as with a range.
    e.boxfile("FROM busybox\nCOPY --chown=1000 f /f\nRUN touch /x && chown 1000 /x\n");
    e.build_ok(&["-t", "chowned"]);
    let root = e.umoci_unpack("chowned", t.path());
    let listing = tree_listing(&root).join("\n");
    assert!(listing.contains("\nf 644 1000:1000"), "{listing}");
    assert!(listing.contains("\nx 644 1000:0"), "{listing}");

    // Running as another user cannot be emulated.
    e.boxfile("FROM busybox\nUSER app\nRUN id\n");
    let o = e.build(&["-t", "other-user"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Boxfile:3") && err.contains("exit code"),
        "{err}"
    );
    assert!(err.contains("usermod --add-subuids"), "{err}");
}

#[test]
fn same_inputs_in_different_directories_and_stores_give_the_same_digest_with_source_date_epoch() {
    let Some(root) = Who::root() else { return };
    let Some(user) = Who::with_range() else {
        return;
    };
    let boxfile = "FROM busybox\nCOPY app /app\nRUN echo generated > /app/gen && mkdir /var/x\n\
                   WORKDIR /work\nENV A=1\nCMD [\"sh\"]\n";
    let mut ids = vec![];
    for who in [root.clone(), root, user] {
        let e = Env::new(who);
        e.boxfile(boxfile);
        e.write("app/main.txt", "main\n");
        e.write("app/lib/x.txt", "x\n");
        let o = e.build_env(&["-t", "repro"], &[("SOURCE_DATE_EPOCH", "1700000000")]);
        assert!(o.status.success(), "{}", stderr(&o));
        let img = e.inspect("repro");
        assert_eq!(img["Created"], "2023-11-14T22:13:20Z");
        ids.push((
            stdout(&o).trim().to_string(),
            img["Manifest"]["Digest"].clone(),
        ));
        // Keep the first build's files' mtimes different from the next one's.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(ids[0], ids[1], "two builds as root differ");
    assert_eq!(ids[0], ids[2], "root and rootless builds differ");
}

#[test]
fn cache_mounts_persist_between_builds_and_secrets_never_reach_a_layer_or_the_history() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    let secret = e.dir.path().join("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    e.boxfile(
        "FROM busybox\n\
         RUN --mount=type=cache,target=/cache echo run1 >> /cache/log && cat /cache/log | wc -l > /count1\n\
         RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok | wc -c > /secret-len\n\
         RUN --mount=type=secret,id=tok,env=TOKEN test ${#TOKEN} = 12 && echo env-ok > /env-ok\n\
         RUN --mount=type=bind,source=.,target=/ctx cat /ctx/Boxfile | head -1 > /bound \\\n\
           && (test -e /ctx/ignored.txt && echo visible || echo hidden) > /ignored-in-bind\n\
         RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && echo tmpfs-ok > /tmpfs-ok\n\
         RUN --mount=type=bind,target=/rw,rw echo scribble > /rw/Boxfile && cat /rw/Boxfile > /rw-ok\n",
    );
    e.write(".boxignore", "ignored.txt\n");
    e.write("ignored.txt", "not part of the context\n");
    let secret_arg = format!("id=tok,src={}", secret.display());
    e.build_ok(&["-t", "mounts", "--secret", &secret_arg]);
    // A second build with no cache appends to the same cache mount.
    e.build_ok(&["-t", "mounts", "--secret", &secret_arg, "--no-cache"]);
    // What a bind mount shows is part of the RUN's key: editing the context reruns it.
    let before = e.build_ok(&["-t", "mounts", "--secret", &secret_arg]);
    assert!(
        before.contains("CACHED RUN --mount=type=bind,source=."),
        "{before}"
    );
    e.write("extra.txt", "changes the bound context\n");
    let after = e.build_ok(&["-t", "mounts", "--secret", &secret_arg]);
    assert!(
        !after.contains("CACHED RUN --mount=type=bind,source=."),
        "{after}"
    );
    let t = tempfile::tempdir().unwrap();
    let root = e.umoci_unpack("mounts", t.path());
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("count1").trim(), "2");
    assert_eq!(read("secret-len").trim(), "12");
    assert_eq!(read("env-ok"), "env-ok\n");
    assert_eq!(read("bound"), "FROM busybox\n");
    assert_eq!(
        read("ignored-in-bind"),
        "hidden\n",
        ".boxignore applies to bind mounts"
    );
    assert_eq!(read("tmpfs-ok"), "tmpfs-ok\n");
    assert_eq!(read("rw-ok"), "scribble\n");
    assert!(
        std::fs::read_to_string(e.ctx().join("Boxfile"))
            .unwrap()
            .starts_with("FROM busybox"),
        "a rw bind mount must not write to the context"
    );
    for stub in ["cache", "run/secrets", "ctx", "scratch", "rw"] {
        assert!(
            !root.join(stub).exists(),
            "mount point /{stub} leaked into a layer"
        );
    }
    // The secret's value is nowhere in the store's blobs (layers, config, history).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for b in {}/blobs/sha256/*; do (zcat -f \"$b\" 2>/dev/null || cat \"$b\") | grep -q s3cr3t-value && echo \"$b\"; done; true",
            e.store().display()
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "", "the secret reached a blob");
    // A required secret that is missing fails clearly (when the step runs: a cache hit
    // needs no secret, as in BuildKit).
    let o = e.build(&["-t", "mounts", "--no-cache"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("secret \"tok\""), "{}", stderr(&o));
}

#[test]
fn unpacked_tree_equals_buildah_bud_of_the_same_boxfile() {
    let Some(who) = Who::root() else { return };
    if !common::have_tool("buildah") {
        return common::skip("buildah is not installed");
    }
    if !common::registry::available() {
        return common::skip("docker-registry is not installed");
    }
    let e = Env::new(who);
    e.boxfile(
        "FROM busybox\n\
         COPY files/ /opt/files/\n\
         COPY --chmod=0755 tool.sh /usr/local/bin/tool\n\
         ADD pkg.tar /opt/pkg/\n\
         RUN mkdir -p /srv/data && echo made > /srv/data/made && ln -s made /srv/data/link \\\n\
          && rm /etc/group && rm -rf /home/app && mkdir /home/app && touch /home/app/new\n\
         RUN chown -R 1000:1000 /srv/data && chmod 0700 /srv/data\n\
         ENV PATH=/usr/local/bin:/usr/bin:/bin\n\
         WORKDIR /srv\n\
         CMD [\"tool\"]\n",
    );
    e.write("files/a.txt", "a\n");
    e.write("files/sub/b.txt", "b\n");
    e.write("tool.sh", "#!/bin/sh\necho tool\n");
    let stage = e.dir.path().join("pkgsrc");
    std::fs::create_dir_all(stage.join("d")).unwrap();
    std::fs::write(stage.join("d/in-tar"), "t\n").unwrap();
    let st = std::process::Command::new("tar")
        .args(["--owner=0", "--group=0", "-cf"])
        .arg(e.ctx().join("pkg.tar"))
        .arg("-C")
        .arg(&stage)
        .arg("d")
        .status()
        .unwrap();
    assert!(st.success());
    e.build_ok(&["-t", "cmp"]);
    let t = tempfile::tempdir().unwrap();
    let ours = e.umoci_unpack("cmp", t.path());

    // buildah, with its own storage, pulling busybox from a local registry mirror.
    let reg = common::registry::Registry::with_fixtures();
    let bdir = t.path().join("buildah");
    let buildah = |args: &[&str]| {
        let o = std::process::Command::new("buildah")
            .env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
            .env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(bdir.join("root"))
            .arg("--runroot")
            .arg(bdir.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "buildah {args:?}: {}", stderr(&o));
        o
    };
    let ctx = e.ctx();
    buildah(&[
        "bud",
        "--format",
        "oci",
        "-f",
        ctx.join("Boxfile").to_str().unwrap(),
        "-t",
        "cmp",
        ctx.to_str().unwrap(),
    ]);
    let layout = t.path().join("buildah-layout");
    buildah(&[
        "push",
        "localhost/cmp:latest",
        &format!("oci:{}:cmp", layout.display()),
    ]);
    let bundle = t.path().join("buildah-bundle");
    let o = std::process::Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:cmp", layout.display())])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "umoci: {}", stderr(&o));
    let theirs = bundle.join("rootfs");
    let a = tree_listing(&ours);
    // buildah's chroot isolation leaves its mount points in the layer (empty /etc/hosts and
    // /etc/resolv.conf, an empty /run) where the base image had none; BuildKit and boxbuild
    // remove them. Only exactly those empty stubs are left out of the comparison.
    let stubs = [
        "etc/hosts 755 0:0 e3b0c44298fc1c14",
        "etc/resolv.conf 755 0:0 e3b0c44298fc1c14",
        "run 755 0:0 dir",
    ];
    let b: Vec<String> = tree_listing(&theirs)
        .into_iter()
        .filter(|l| !stubs.contains(&l.as_str()) || a.contains(l))
        .collect();
    let only_ours: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_theirs: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "trees differ:\nonly boxbuild: {only_ours:#?}\nonly buildah: {only_theirs:#?}"
    );
}
