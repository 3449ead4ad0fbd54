//! `box info` (issue 13): the probe of what this environment lets boxkit use, run as the
//! caller, on the real kernel — as root, as a user with and without a subordinate range, and
//! in an environment that has lost user namespaces (the per-namespace limit set to 0, as a
//! runtime's seccomp profile or sysctl takes them away in a CI job container).
mod common;

use std::process::{Command, Output};

use common::users;

const CHECKS: [&str; 7] = [
    "user-namespace",
    "mount-namespace",
    "tmpfs",
    "overlay",
    "uts-namespace",
    "pid-namespace-proc",
    "fuse-overlayfs",
];

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The state (`yes`/`no`) and the rest of `name`'s line.
fn line<'a>(out: &'a str, name: &str) -> (&'a str, &'a str) {
    let l = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"));
    let mut parts = l.split_whitespace();
    parts.next();
    let state = parts.next().unwrap();
    (state, l)
}

fn assert_all_available(out: &str, who: &str) {
    for c in CHECKS {
        assert_eq!(line(out, c).0, "yes", "{who}: {c} should work here:\n{out}");
    }
}

#[test]
fn every_feature_is_reported_available_as_root_and_as_users() {
    users::ensure_root_range();
    let o = Command::new(common::bin("box"))
        .arg("info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert_all_available(&out, "root");
    assert_eq!(line(&out, "subordinate-ids").0, "yes", "{out}");
    assert!(
        out.contains("boxbuild would use: isolation userns, snapshotter overlay\n"),
        "{out}"
    );

    let u = users::with_range();
    let o = users::command_as(&u, &common::bin("box"))
        .arg("info")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert_all_available(&out, &u.name);
    let (state, l) = line(&out, "subordinate-ids");
    assert!(state == "yes" && l.contains("65536 ids from"), "{out}");

    let n = users::without_range();
    let o = users::command_as(&n, &common::bin("box"))
        .arg("info")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_all_available(&out, &n.name);
    assert_eq!(line(&out, "subordinate-ids").0, "no", "{out}");
}

#[test]
fn without_user_namespaces_the_probe_names_the_failing_call_and_skips_the_rest() {
    // max_user_namespaces is per user namespace: 0 in a private one takes new user
    // namespaces away for everything inside it, and nothing outside changes.
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" info")
        .arg(common::bin("box"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let (state, l) = line(&out, "user-namespace");
    assert_eq!(state, "no", "{out}");
    assert!(l.contains("unshare(CLONE_NEWUSER): ENOSPC"), "{out}");
    for c in ["mount-namespace", "tmpfs", "overlay", "pid-namespace-proc"] {
        let (state, l) = line(&out, c);
        assert_eq!(state, "no", "{out}");
        assert!(l.contains("not tried"), "{c}: {out}");
    }
}

/// A rootfs for `podman run --rootfs`: busybox, `box` and the shared libraries it links.
fn job_rootfs(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "tmp", "proc", "dev", "sys", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    let bin = common::bin("box");
    std::fs::copy(&bin, root.join("box")).unwrap();
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let to = root.join(word.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(word, &to).unwrap();
        }
    }
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    root
}

#[test]
fn in_a_podman_job_container_the_probe_names_what_the_runtime_takes_away() {
    // E1 of issue 13: a CI job container with `--user 1000:1000`, podman's default
    // capabilities and seccomp profile, its masked /proc, no /dev/fuse.
    let Some(pm) = common::podman::Podman::new_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = job_rootfs(dir.path());
    let o = pm
        .cmd()
        .args(["run", "--rm", "--user", "1000:1000", "--rootfs"])
        .arg(&root)
        .args(["/box", "info"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(line(&out, "user-namespace").0, "yes", "{out}");
    assert_eq!(line(&out, "overlay").0, "yes", "{out}");
    let (state, l) = line(&out, "uts-namespace");
    assert!(state == "no" && l.contains("sethostname: EPERM"), "{out}");
    let (state, l) = line(&out, "pid-namespace-proc");
    assert!(
        state == "no" && l.contains("mount proc") && l.contains("EPERM"),
        "{out}"
    );
    let (state, l) = line(&out, "fuse-overlayfs");
    assert!(state == "no" && l.contains("/dev/fuse"), "{out}");
    assert_eq!(line(&out, "subordinate-ids").0, "no", "{out}");
    assert!(
        out.lines().any(|l| l
            == "boxbuild would use: isolation userns (no uts namespace, /proc bound \
                read-only), snapshotter overlay"),
        "{out}"
    );
}
