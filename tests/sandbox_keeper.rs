//! Rootless commands join one long-lived user namespace, the keeper's, instead of making one
//! with newuidmap/newgidmap every time; a change of the user's subordinate ranges, or
//! `box system migrate`, replaces it (and stops the pasta serving its network namespace).

mod common;
mod sandbox_common;

use std::os::unix::fs::PermissionsExt;

use common::users;
use sandbox_common::{Who, busybox_rootfs, stderr, stdout};

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Wait (up to 10 s) for `pid` to be gone.
fn wait_gone(pid: &str, what: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alive(pid) {
        assert!(std::time::Instant::now() < end, "{what} ({pid}) still runs");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn rootless_runs_share_the_keepers_namespace_until_the_ranges_change_or_migrate() {
    if !common::is_root() {
        return common::skip("keeper tests create a user and subordinate ranges as root");
    }
    let name = "boxkit-keep";
    let u = users::with_exact_range(name, (4_000_000, 65536));
    let who = Who::WithRange(u.clone());
    let migrate = || {
        let o = who.box_cmd().args(["system", "migrate"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    migrate();
    let pid_file = format!("/tmp/boxkit-{}/keeper.pid", u.uid);
    let keeper = || {
        std::fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let rfs = busybox_rootfs((u.uid, u.gid));
    let r = rfs.path.to_str().unwrap();
    let probe = || {
        let o = who.run(&[
            "--rootfs",
            r,
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "readlink /proc/self/ns/user; cat /proc/self/uid_map",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };

    let a = probe();
    let b = probe();
    let ns = a.lines().next().unwrap().to_string();
    assert_eq!(b.lines().next(), Some(ns.as_str()), "{a}\n{b}");
    assert!(a.contains("4000000"), "{a}");
    let k1 = keeper();
    assert!(alive(&k1), "keeper {k1:?} runs");
    assert_eq!(
        std::fs::read_link(format!("/proc/{k1}/ns/user"))
            .unwrap()
            .to_string_lossy(),
        ns,
        "the container runs in the keeper's user namespace"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{k1}/comm"))
            .unwrap()
            .trim(),
        "box-keeper"
    );

    // New ranges: the next command gets a new keeper with the new maps.
    users::with_exact_range(name, (4_100_000, 65536));
    let c = probe();
    assert!(c.contains("4100000"), "{c}");
    assert_ne!(c.lines().next(), Some(ns.as_str()));
    let k2 = keeper();
    assert_ne!(k1, k2);
    wait_gone(&k1, "the old keeper");

    // A bridged run connects the keeper's network namespace with pasta (if installed).
    common::users::open_tun();
    let o = who.run(&["--rootfs", r, "--network", "bridge", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let net_state = format!("/tmp/boxkit-{}/net/user-mode-net", u.uid);
    let helper = std::fs::read_to_string(&net_state)
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .map(String::from)
        .expect("the user-mode network helper is recorded");
    assert!(alive(&helper));

    // `box system migrate` stops the keeper and its pasta.
    migrate();
    assert_eq!(keeper(), "");
    wait_gone(&k2, "the keeper after migrate");
    wait_gone(&helper, "the keeper's pasta after migrate");

    // Without pasta or slirp4netns on PATH, a bridged run fails and says what to install.
    let bin = sandbox_common::open_tempdir();
    for t in ["newuidmap", "newgidmap"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{t}"), bin.path().join(t)).unwrap();
    }
    let o = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={}", u.uid),
            format!("--regid={}", u.gid),
            "--init-groups".into(),
            "--reset-env".into(),
            "--".into(),
            "/usr/bin/env".into(),
            format!("PATH={}", bin.path().display()),
        ])
        .arg(common::bin("box"))
        .args([
            "sandbox-run",
            "--rootfs",
            r,
            "--network",
            "bridge",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs pasta"), "{}", stderr(&o));
    migrate();

    // A runtime directory others could write is refused with a clear warning; the command
    // still runs, in a user namespace of its own.
    let run_dir = format!("/tmp/boxkit-{}", u.uid);
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = who.run(&["--rootfs", r, "--network", "none", "--", "true"]);
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("must be a directory owned by uid")
            && stderr(&o).contains("of this command's own"),
        "{}",
        stderr(&o)
    );
    assert_eq!(keeper(), "", "no keeper from an unsafe runtime directory");
}
