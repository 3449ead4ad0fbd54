//! The run flags of issue 15 as an attack surface: `--tmpfs` targets inside a hostile image,
//! `--add-host` / `--dns*` values that would add lines of their own to the container's /etc
//! files, and `--cidfile`, the one flag that makes boxkit write a host file of the user's
//! choosing (it must be written with the caller's credentials, never a container-range id, and
//! never through a symlink).

use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, assert_failed_with, boxrun, hostile_image};

fn both() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![
        Env::with_registry(root),
        Env::with_registry(Who::with_range().unwrap()),
    ]
}

/// The host path a mount at `p` would show in this (the host's) mount table.
fn mounted_at(p: &std::path::Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = p.to_string_lossy();
    table
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&*want)))
}

#[test]
fn a_tmpfs_target_through_an_image_symlink_stays_inside_the_container() {
    for env in both() {
        let canary = Canary::plant_for(&env.who);
        let dir = canary.dir.to_string_lossy().into_owned();
        let depth = "../".repeat(12);
        let img = hostile_image(
            &env,
            "tmpfs-links",
            json!({"base": "busybox", "layers": [[
                {"name": "abs", "type": "symlink", "link": dir},
                {"name": "rel", "type": "symlink", "link": format!("{depth}{}", &dir[1..])},
            ]]}),
        );
        for target in ["/abs/sub", "/rel/sub", "/abs"] {
            let o = boxrun(
                &env,
                &[
                    "--rm",
                    "--network",
                    "none",
                    "--tmpfs",
                    target,
                    &img,
                    "sh",
                    "-c",
                    &format!("touch {target}/planted && echo in"),
                ],
            );
            // Either the tmpfs lands inside the container (the link resolved in its root) or
            // the run is refused; the host directory gets neither a mount nor a file.
            if o.status.success() {
                assert_eq!(stdout(&o).trim(), "in", "{}", stderr(&o));
            }
            canary.assert_untouched();
            assert!(!mounted_at(&canary.dir), "a mount appeared on the host");
        }
    }
}

#[test]
fn add_host_and_dns_values_cannot_add_lines_of_their_own() {
    for env in both() {
        for (flag, value) in [
            ("--add-host", "ok:1.2.3.4\n6.6.6.6 bank.example"),
            ("--add-host", "bank.example\t6.6.6.6:1.2.3.4"),
            ("--dns", "1.1.1.1\nnameserver 6.6.6.6"),
            ("--dns-search", "lan\nnameserver 6.6.6.6"),
            ("--dns-option", "ndots:1\nnameserver 6.6.6.6"),
        ] {
            let o = boxrun(
                &env,
                &["--rm", "--network", "none", flag, value, "busybox", "true"],
            );
            assert_eq!(o.status.code(), Some(125), "{flag} {value:?} was taken");
            assert_failed_with(&o, &["invalid"]);
        }
        // The valid forms add exactly their own line.
        let o = boxrun(
            &env,
            &[
                "--rm",
                "--network",
                "none",
                "--add-host",
                "db.example:192.0.2.7",
                "--dns-search",
                "corp.example",
                "busybox",
                "sh",
                "-c",
                "grep -c 192.0.2.7 /etc/hosts; grep -c 6.6.6.6 /etc/hosts /etc/resolv.conf; \
                 grep ^search /etc/resolv.conf",
            ],
        );
        let out = stdout(&o);
        assert!(out.starts_with("1\n"), "{out}{}", stderr(&o));
        assert!(out.contains("search corp.example"), "{out}");
        assert!(!out.contains("6.6.6.6"), "{out}");
    }
}

#[test]
fn the_cidfile_belongs_to_the_caller_and_is_never_written_through_a_symlink() {
    for env in both() {
        let (uid, gid) = match &env.who {
            Who::User(u) => (u.uid, u.gid),
            Who::Root => (0, 0),
        };
        // A directory only the caller may enter: a container-range id could not write there.
        let d = tempfile::Builder::new()
            .prefix("boxkit-cid-")
            .tempdir_in("/tmp")
            .unwrap();
        std::os::unix::fs::chown(d.path(), Some(uid), Some(gid)).unwrap();
        let run_with = |cidfile: &std::path::Path| {
            let f = cidfile.to_str().unwrap();
            boxrun(
                &env,
                &[
                    "--rm",
                    "--network",
                    "none",
                    "--cidfile",
                    f,
                    "busybox",
                    "true",
                ],
            )
        };
        let cid = d.path().join("cid");
        let o = run_with(&cid);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        let m = std::fs::symlink_metadata(&cid).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "the cidfile's owner");
        assert_eq!(std::fs::read_to_string(&cid).unwrap().len(), 64);
        // A symlink at the path (a dangling one aimed at a host file) is an existing file.
        let canary = Canary::plant_for(&env.who);
        let link = d.path().join("link");
        let victim = canary.dir.join("victim");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let o = run_with(&link);
        assert_failed_with(&o, &["container ID file found"]);
        assert!(!victim.exists());
        canary.assert_untouched();
    }
}
