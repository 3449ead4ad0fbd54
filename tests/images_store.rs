//! `box history`, `box system df`, `box prune -a` / `box image prune` and
//! `box builder prune`, on images boxbuild makes from the busybox fixture, as root and as an
//! unprivileged user with a subordinate range, each in a private store.

mod boxrun_common;
mod common;
mod images_common;

use boxrun_common::{Who, stderr, stdout, tempdir};
use images_common::Private;

/// Build `boxfile` as `tag` (untagged when empty) in the private store.
fn build(s: &Private, tag: &str, boxfile: &str) {
    let ctx = tempdir();
    std::fs::write(ctx.path().join("Boxfile"), boxfile).unwrap();
    let dir = ctx.path().to_str().unwrap();
    let mut args = vec!["-q", "--network", "none", dir];
    if !tag.is_empty() {
        args.extend(["-t", tag]);
    }
    let o = s.run("boxbuild", &args);
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

/// The summary row of `box system df` for `kind`, split in columns (TYPE may hold a space).
fn df_row(s: &Private, kind: &str) -> Vec<String> {
    let out = s.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
    ]);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{kind}|")))
        .unwrap_or_else(|| panic!("no {kind} in {out}"));
    line.split('|').map(String::from).collect()
}

#[test]
fn system_df_counts_images_containers_volumes_and_build_cache() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        let table = s.ok(&["system", "df"]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("TYPE") && lines[0].ends_with("RECLAIMABLE"),
            "{table}"
        );
        for (i, kind) in ["Images", "Containers", "Local Volumes", "Build Cache"]
            .iter()
            .enumerate()
        {
            assert!(lines[i + 1].starts_with(kind), "{table}");
        }
        assert_eq!(df_row(&s, "Images")[1..3], ["1", "0"]);
        assert!(df_row(&s, "Images")[4].ends_with("(100%)"));
        build(&s, "dfimg", TWO_STEPS);
        let o = s.run(
            "boxrun",
            &[
                "--name",
                "dfc",
                "--network",
                "none",
                "-v",
                "dfvol:/v",
                "busybox",
                "sh",
                "-c",
                "head -c 5000 /dev/zero > /v/z",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        s.ok(&["volume", "create", "idle"]);
        let img = df_row(&s, "Images");
        // busybox is used by the container: active, and its bytes not reclaimable.
        assert_eq!(img[1..3], ["2", "1"], "{img:?}");
        assert!(
            !img[4].ends_with("(100%)") && !img[4].starts_with("0B"),
            "{img:?}"
        );
        assert_eq!(df_row(&s, "Containers")[1..3], ["1", "0"]);
        let vols = df_row(&s, "Local Volumes");
        assert_eq!(vols[1..4], ["2", "1", "5kB"], "{vols:?}");
        assert_eq!(vols[4], "0B (0%)", "the used volume is not reclaimable");
        let cache = df_row(&s, "Build Cache");
        assert_eq!(cache[1], "2", "two RUN steps recorded: {cache:?}");
        // Its layers belong to the tagged image: the cache alone holds nothing.
        assert_eq!(cache[3], "0B", "{cache:?}");
        let v = s.ok(&["system", "df", "-v"]);
        for section in [
            "Images space usage:",
            "Containers space usage:",
            "Local Volumes space usage:",
            "Build cache usage:",
        ] {
            assert!(v.contains(section), "{v}");
        }
        assert!(v.lines().any(|l| l.starts_with("dfvol ")), "{v}");
        s.ok(&["rm", "dfc"]);
    }
}

#[test]
fn prune_takes_dangling_images_and_with_all_every_unused_one() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        build(&s, "keep", TWO_STEPS);
        build(&s, "other", "FROM busybox\nRUN echo other > /o\n");
        // A build without -t leaves a dangling image.
        build(&s, "", "FROM busybox\nRUN echo other2 > /o\n");
        let dangling = s.ok(&["images", "-q", "--filter", "dangling=true"]);
        assert_eq!(dangling.lines().count(), 1, "{dangling}");
        let o = s.run(
            "boxrun",
            &["--name", "user", "--network", "none", "keep", "true"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        let out = s.ok(&["prune"]);
        assert!(
            out.starts_with("Deleted Images:\ndeleted: sha256:"),
            "{out}"
        );
        assert!(!out.contains("untagged:"), "no tag goes without -a: {out}");
        assert_eq!(s.ok(&["images", "-q", "--filter", "dangling=true"]), "");
        let names = s.ok(&["images", "--format", "{{.Repository}}"]);
        assert_eq!(names.lines().count(), 3, "{names}");

        let out = s.ok(&["image", "prune", "-a", "-f"]);
        assert!(out.contains("untagged: other:latest"), "{out}");
        assert!(out.contains("untagged: busybox:latest"), "{out}");
        assert!(!out.contains("keep"), "the container's image stays: {out}");
        assert_eq!(s.ok(&["images", "--format", "{{.Repository}}"]), "keep\n");
        // The container still runs from its image's layers.
        let o = s.run("box", &["rm", "user"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = s.ok(&["image", "prune", "--all"]);
        assert!(out.contains("untagged: keep:latest"), "{out}");
        assert_eq!(s.ok(&["images", "-q"]), "");
    }
}

#[test]
fn builder_prune_removes_unused_cache_oldest_first_down_to_keep_storage() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let s = Private::new(&who);
        // Three cached steps whose image is then removed: all dangling cache.
        build(
            &s,
            "c1",
            "FROM busybox\nRUN head -c 20000 /dev/urandom > /a\n",
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        build(
            &s,
            "c2",
            "FROM busybox\nRUN head -c 20000 /dev/urandom > /b\n",
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        build(
            &s,
            "c3",
            "FROM busybox\nRUN head -c 20000 /dev/urandom > /c\n",
        );
        let rec_dir = s.root.join("cache/build");
        let records = || std::fs::read_dir(&rec_dir).map_or(0, |d| d.count());
        assert_eq!(records(), 3);
        // In use by their images: builder prune without -a keeps them.
        let out = s.ok(&["builder", "prune", "-f"]);
        assert!(!out.contains("Deleted build cache objects"), "{out}");
        assert_eq!(records(), 3);
        s.ok(&["rmi", "c1", "c2", "c3"]);
        let cache = df_row(&s, "Build Cache");
        assert_eq!(cache[1], "3");
        // Keep about two layers' worth: only the oldest goes.
        let out = s.ok(&["builder", "prune", "--keep-storage", "45k"]);
        assert!(out.starts_with("Deleted build cache objects:\n"), "{out}");
        assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 1, "{out}");
        assert_eq!(records(), 2);
        // The oldest build's step is a miss now; the newest still hits.
        let ctx = tempdir();
        std::fs::write(
            ctx.path().join("Boxfile"),
            "FROM busybox\nRUN head -c 20000 /dev/urandom > /c\n",
        )
        .unwrap();
        let o = s.run(
            "boxbuild",
            &[
                "--progress",
                "plain",
                "--network",
                "none",
                "-t",
                "c3",
                ctx.path().to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let log = format!("{}{}", stdout(&o), stderr(&o));
        assert!(log.contains("CACHED"), "{log}");
        s.ok(&["rmi", "c3"]);
        let out = s.ok(&["builder", "prune", "-a"]);
        assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
        assert_eq!(records(), 0);
        assert_eq!(df_row(&s, "Build Cache")[1..4], ["0", "0", "0B"]);
    }
}
