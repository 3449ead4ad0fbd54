//! `box history`, `box system df`, `box prune -a` / `box image prune` and
//! `box builder prune`, on images boxbuild makes from the busybox fixture, as root and as an
//! unprivileged user with a subordinate range, each in a private store.

mod boxrun_common;
mod common;
mod images_common;

use boxrun_common::{Who, stderr, stdout, tempdir};
use images_common::Private;

/// Build `boxfile` as `tag` in the private store; returns boxbuild's output.
fn build(s: &Private, tag: &str, boxfile: &str) {
    let ctx = tempdir();
    std::fs::write(ctx.path().join("Boxfile"), boxfile).unwrap();
    let dir = ctx.path().to_str().unwrap();
    let o = s.run("boxbuild", &["-q", "--network", "none", "-t", tag, dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

const TWO_STEPS: &str =
    "FROM busybox\nENV A=1\nRUN echo one > /one\nRUN head -c 3000 /dev/zero > /zeros\n";

#[test]
fn history_lists_steps_newest_first_with_layer_sizes() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        build(&s, "hist", TWO_STEPS);
        let out = s.ok(&["history", "hist"]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("IMAGE")
                && lines[0].contains("CREATED BY")
                && lines[0].ends_with("COMMENT"),
            "{out}"
        );
        // busybox's one step, then ENV and two RUNs: newest first.
        assert_eq!(lines.len(), 5, "{out}");
        let id = s.ok(&["images", "-q", "hist"]).trim().to_string();
        assert!(lines[1].starts_with(&id), "{out}");
        assert!(lines[1].contains("/zeros"), "{out}");
        assert!(
            lines[2].starts_with("<missing>") && lines[2].contains("/one"),
            "{out}"
        );
        assert!(
            lines[3].contains("A=1") && lines[3].contains(" 0B"),
            "{out}"
        );
        assert!(lines[4].contains("busybox-static rootfs"), "{out}");
        let q = s.ok(&["history", "-q", "hist"]);
        assert_eq!(q.lines().next(), Some(id.as_str()));
        assert_eq!(q.lines().filter(|l| *l == "<missing>").count(), 3, "{q}");
        let f = s.ok(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.Size}}",
            "hist",
        ]);
        assert!(f.lines().next().unwrap().starts_with("sha256:"), "{f}");
        // --human=false: sizes in bytes.
        let raw = s.ok(&["history", "--human=false", "--format", "{{.Size}}", "hist"]);
        assert!(raw.lines().all(|l| l.parse::<u64>().is_ok()), "{raw}");
        let o = s.run("box", &["history", "no-such-image"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("no such image"), "{}", stderr(&o));
        let _ = stdout(&o);
    }
}
