//! `box volume create | ls | inspect | rm | prune` with the volumes `boxrun -v` mounts, as
//! root and as an unprivileged user with a subordinate range, each in a private store (prune
//! must not see other tests' volumes).

mod boxrun_common;
mod common;
mod images_common;

use std::path::{Path, PathBuf};

use boxrun_common::{Who, stderr, stdout};
use images_common::Private;

#[test]
fn create_ls_inspect_and_a_container_sees_the_volume() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        assert_eq!(
            s.ok(&["volume", "create", "--label", "tier=db", "data"])
                .trim(),
            "data"
        );
        let random = s.ok(&["volume", "create"]).trim().to_string();
        assert_eq!(random.len(), 64, "{random}");
        let mut want = vec!["data".to_string(), random.clone()];
        want.sort();
        assert_eq!(s.names(), want);
        let table = s.ok(&["volume", "ls"]);
        assert!(table.starts_with("DRIVER"), "{table}");
        assert!(table.contains("VOLUME NAME"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("local") && l.ends_with(" data")),
            "{table}"
        );
        let f = s.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
        ]);
        assert!(f.lines().any(|l| l == "data local tier=db"), "{f}");
        assert_eq!(
            s.ok(&["volume", "ls", "-q", "--filter", "label=tier=db"])
                .trim(),
            "data"
        );
        let j: serde_json::Value =
            serde_json::from_str(&s.ok(&["volume", "inspect", "data"])).unwrap();
        let v = &j[0];
        assert_eq!(v["Name"], "data");
        assert_eq!(v["Driver"], "local");
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["Labels"]["tier"], "db");
        assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{v}");
        let mp = PathBuf::from(v["Mountpoint"].as_str().unwrap());
        assert_eq!(mp, s.root.join("volumes/data/_data"));
        // A container writes into the volume; the file is at the mountpoint.
        let o = s.run(
            "boxrun",
            &[
                "--rm",
                "--network",
                "none",
                "-v",
                "data:/d",
                "busybox",
                "sh",
                "-c",
                "echo hi > /d/f",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(std::fs::read_to_string(mp.join("f")).unwrap(), "hi\n");
        // A missing volume: exit 1, the others still printed.
        let o = s.run(
            "box",
            &["volume", "inspect", "--format", "{{.Name}}", "data", "nope"],
        );
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stdout(&o).trim(), "data");
        assert!(
            stderr(&o).contains("no such volume: nope"),
            "{}",
            stderr(&o)
        );
        let o = s.run("box", &["volume", "create", "../x"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("invalid volume name"), "{}", stderr(&o));
    }
}

/// The volumes and anonymous volumes of a container that stays (no --rm).
fn keep_container(s: &Private, name: &str, args: &[&str]) {
    let mut v = vec!["--name", name, "--network", "none"];
    v.extend_from_slice(args);
    let o = s.run("boxrun", &v);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

fn file_count(p: &Path) -> usize {
    std::fs::read_dir(p).map_or(0, |d| d.count())
}

#[test]
fn rm_refuses_a_volume_in_use_and_prune_takes_anonymous_ones_unless_all() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        // Files of a non-root container user: rootless, a subordinate id owns them.
        keep_container(
            &s,
            "user",
            &[
                "-v",
                "used:/d",
                "busybox",
                "sh",
                "-c",
                "mkdir /d/x; echo x > /d/x/f; chown -R 1000:1000 /d/x; chmod 500 /d/x",
            ],
        );
        s.ok(&["volume", "create", "unused"]);
        let o = s.run("box", &["volume", "rm", "used"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
        // docker refuses a volume in use even with -f; -f only forgives a missing one.
        let o = s.run("box", &["volume", "rm", "-f", "used", "missing"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("missing"), "{}", stderr(&o));
        assert!(s.names().contains(&"used".to_string()));
        assert_eq!(
            s.ok(&["volume", "ls", "-q", "-f", "dangling=true"]),
            "unused\n"
        );

        // Anonymous volumes: one held by a container, one whose container is gone.
        keep_container(&s, "anon-held", &["-v", "/a", "busybox", "true"]);
        keep_container(
            &s,
            "anon-gone",
            &["-v", "/a", "busybox", "sh", "-c", "echo 12345 > /a/f"],
        );
        let before = s.names();
        assert_eq!(before.len(), 4, "{before:?}");
        s.ok(&["rm", "anon-gone"]);
        // The container is gone but its anonymous volume stays (no --rm), as docker's does.
        assert_eq!(s.names(), before);
        let out = s.ok(&["volume", "prune", "-f"]);
        assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
        assert!(out.contains("Total reclaimed space: 6B"), "{out}");
        let after = s.names();
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(after.contains(&"unused".to_string()), "{after:?}");

        // -a: every unused volume, named ones too; in-use ones stay.
        s.ok(&["rm", "user"]);
        let out = s.ok(&["volume", "prune", "-a", "-f"]);
        assert!(out.contains("unused\n") && out.contains("used\n"), "{out}");
        assert_eq!(s.names().len(), 1, "the held anonymous volume stays");
        s.ok(&["rm", "anon-held"]);
        let held = s.names();
        let out = s.ok(&["volume", "prune"]);
        assert_eq!(
            out,
            format!(
                "Deleted Volumes:\n{}\n\nTotal reclaimed space: 0B\n",
                held[0]
            )
        );
        assert_eq!(file_count(&s.root.join("volumes")), 0);
    }
}
