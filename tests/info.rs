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
