//! Container lifecycle commands against the real binaries, as root and rootless: `box wait`,
//! `box rename`, and `box logs --tail | --since | -t`.

mod boxrun_common;
mod common;

use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, run_detached, stderr, stdout, unique};

#[test]
fn wait_blocks_until_each_container_exits_and_prints_the_codes_in_order() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let (a, b) = (unique("wait-a"), unique("wait-b"));
        let _ca = Cleanup(&who, a.clone());
        let _cb = Cleanup(&who, b.clone());
        run_detached(&who, &a, &["busybox", "sh", "-c", "sleep 1; exit 3"]);
        run_detached(&who, &b, &["busybox", "sh", "-c", "exit 0"]);
        let t = Instant::now();
        let o = who.box_(&["wait", &a, &b]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "3\n0\n");
        assert!(
            t.elapsed() >= Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        // An exited container answers at once; a missing one is an error (exit 1) while the
        // others are still waited for.
        let o = who.box_(&["wait", "no-such-container-x", &a]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stdout(&o), "3\n");
        assert!(stderr(&o).contains("no such container"), "{}", stderr(&o));
        // A --rm container is gone once it exits; its code is still given.
        let c = unique("wait-rm");
        let _cc = Cleanup(&who, c.clone());
        run_detached(
            &who,
            &c,
            &["--rm", "busybox", "sh", "-c", "sleep 2; exit 5"],
        );
        let o = who.box_(&["wait", &c]);
        assert_eq!(stdout(&o), "5\n", "{}", stderr(&o));
        // A --rm run nobody waits on leaves no exit record behind.
        let dir = tempfile::tempdir().unwrap();
        let cid = dir.path().join("cid");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let o = who.boxrun(&[
            "--rm",
            "--cidfile",
            cid.to_str().unwrap(),
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let id = std::fs::read_to_string(&cid).unwrap();
        let record = boxrun_common::store(&who)
            .join("containers/exits")
            .join(id.trim());
        assert!(!record.exists(), "{} was kept", record.display());
    }
}

#[test]
fn rename_moves_the_name_and_refuses_a_name_in_use() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let (a, b, new) = (unique("ren-a"), unique("ren-b"), unique("ren-new"));
        let _ca = Cleanup(&who, a.clone());
        let _cb = Cleanup(&who, b.clone());
        let _cn = Cleanup(&who, new.clone());
        let id = run_detached(&who, &a, &["busybox", "sleep", "100"]);
        run_detached(&who, &b, &["busybox", "true"]);
        let o = who.box_(&["rename", &a, &b]);
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
        let o = who.box_(&["rename", &a, &new]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.box_(&["inspect", "--format", "{{.Name}} {{.Id}}", &new]);
        assert_eq!(stdout(&o).trim(), format!("/{new} {id}"));
        assert_ne!(who.box_(&["inspect", &a]).status.code(), Some(0));
        // The running container keeps its new name through its exit.
        assert_eq!(who.box_(&["stop", "-t", "0", &new]).status.code(), Some(0));
        let ps = stdout(&who.box_(&["ps", "-a", "--format", "{{.Names}}"]));
        assert!(ps.lines().any(|l| l == new), "{ps}");
        // The old name is free again.
        run_detached(&who, &a, &["busybox", "true"]);
    }
}

#[test]
fn logs_tail_since_and_timestamps_select_and_stamp_lines() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("logs");
        let _c = Cleanup(&who, name.clone());
        run_detached(
            &who,
            &name,
            &[
                "busybox",
                "sh",
                "-c",
                "echo one; echo two; sleep 2; echo three; printf four",
            ],
        );
        assert_eq!(stdout(&who.box_(&["wait", &name])), "0\n");
        // Without flags: the bytes as written.
        let all = who.box_(&["logs", &name]);
        assert_eq!(stdout(&all), "one\ntwo\nthree\nfour");
        assert_eq!(
            stdout(&who.box_(&["logs", "--tail", "2", &name])),
            "three\nfour"
        );
        assert_eq!(stdout(&who.box_(&["logs", "-n", "0", &name])), "");
        assert_eq!(
            stdout(&who.box_(&["logs", "--tail", "all", &name])),
            "one\ntwo\nthree\nfour"
        );
        // -t: docker's RFC 3339 nanosecond stamp and a space before each line.
        let t = stdout(&who.box_(&["logs", "-t", &name]));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        let mut stamps = Vec::new();
        for (l, want) in lines.iter().zip(["one", "two", "three", "four"]) {
            let (ts, rest) = l.split_once(' ').unwrap();
            assert_eq!(rest, want);
            assert_eq!(ts.len(), 30, "{ts}");
            assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
            stamps.push(ts.to_string());
        }
        // --since the third line's time (RFC 3339) and as a duration.
        let o = who.box_(&["logs", "--since", &stamps[2], &name]);
        assert_eq!(stdout(&o), "three\nfour");
        let o = who.box_(&["logs", "--since", "1h", &name]);
        assert_eq!(stdout(&o), "one\ntwo\nthree\nfour");
        let o = who.box_(&["logs", "--since", "2099-01-01T00:00:00Z", &name]);
        assert_eq!(stdout(&o), "");
        // --until the second line's time: the lines up to it.
        let o = who.box_(&["logs", "--until", &stamps[1], &name]);
        assert_eq!(stdout(&o), "one\ntwo\n");
        // Lines written together may share a time: only bounds that cannot split them.
        let o = who.box_(&["logs", "--since", &stamps[0], "--until", &stamps[1], &name]);
        assert_eq!(stdout(&o), "one\ntwo\n");
        let o = who.box_(&["logs", "--until", "2000-01-01", &name]);
        assert_eq!(stdout(&o), "");
        let o = who.box_(&["logs", "--since", "yesterday", &name]);
        assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
        let o = who.box_(&["logs", "-t", "--tail", "1", "-f", &name]);
        assert_eq!(stdout(&o), format!("{} four", stamps[3]));
    }
}
