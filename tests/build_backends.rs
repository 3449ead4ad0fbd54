//! Issue 13: every isolation × snapshotter backend gives the same image for the same Boxfile
//! and context (SOURCE_DATE_EPOCH set): deletions of base files (whiteouts), a replaced
//! directory (opaque), `RUN chown`, `COPY --chown`, links and a multi-stage `COPY --from`.
//! Each backend is forced with `--isolation`/`--snapshotter` and must say so in its mode line;
//! root and an unprivileged user with a subordinate range must agree too.

mod build_common;
mod common;

use build_common::{Env, Who, stderr, stdout, tree_listing};

const SAME: &str = "FROM busybox AS base\n\
RUN mkdir -p /data/sub && echo a > /data/sub/a && chown -R 1000:1000 /data\n\
FROM busybox\n\
COPY --chown=1000:1000 f /home/app/f\n\
RUN rm /bin/vi && chown 1000:1000 /home/app && mkdir -p /opq/deep && touch /opq/old /opq/deep/x\n\
RUN rm -rf /opq && mkdir /opq && touch /opq/new && ln -s /opq/new /link && ln /home/app/f /hard\n\
RUN chmod 4755 /opq/new && mkdir /fresh && echo n > /fresh/n && chown 1000:1000 /fresh/n\n\
COPY --from=base /data /data\n\
CMD [\"cat\", \"/home/app/f\"]\n";

/// (isolation, snapshotter, the mode line's words).
const BACKENDS: [(&str, &str, &str); 5] = [
    ("userns", "overlay", "isolation userns, snapshotter overlay"),
    (
        "userns",
        "fuse",
        "isolation userns, snapshotter fuse-overlayfs",
    ),
    ("userns", "copy", "isolation userns, snapshotter copy"),
    ("chroot", "copy", "isolation chroot, snapshotter copy"),
    ("none", "copy", "isolation none, snapshotter copy"),
];

/// Build SAME with each of `backends` in `e`; returns (backend, image ID) pairs.
fn ids(e: &Env, backends: &[(&str, &str, &str)]) -> Vec<(String, String)> {
    e.write("f", "data\n");
    e.boxfile(SAME);
    backends
        .iter()
        .map(|(iso, snap, line)| {
            let o = e.build_env(
                &["--no-cache", "--isolation", iso, "--snapshotter", snap],
                &[("SOURCE_DATE_EPOCH", "0")],
            );
            let err = stderr(&o);
            assert!(
                o.status.success(),
                "{}: {iso}/{snap} failed:\n{err}",
                e.who.label()
            );
            assert!(
                err.lines().any(|l| l == format!("boxbuild: {line}")),
                "{iso}/{snap}: no mode line {line:?}:\n{err}"
            );
            (format!("{iso}/{snap}"), stdout(&o).trim().to_string())
        })
        .collect()
}

fn assert_all_equal(ids: &[(String, String)], who: &str) {
    let first = &ids[0].1;
    assert!(first.starts_with("sha256:"), "{ids:?}");
    for (b, id) in ids {
        assert_eq!(id, first, "{who}: {b} differs from {}: {ids:?}", ids[0].0);
    }
}

#[test]
fn every_backend_gives_the_same_image_as_root_and_as_a_user_with_a_range() {
    let Some(root) = Who::root() else { return };
    let e = Env::with_registry(root);
    let root_ids = ids(&e, &BACKENDS);
    assert_all_equal(&root_ids, "root");

    // The content is what the Boxfile says, checked with an independent unpacker.
    e.build_env(&["-t", "same"], &[("SOURCE_DATE_EPOCH", "0")]);
    let t = tempfile::tempdir().unwrap();
    let tree = e.umoci_unpack("same", t.path());
    let listing = tree_listing(&tree).join("\n");
    for want in [
        "home/app 755 1000:1000",
        "home/app/f 644 1000:1000",
        "opq/new 4755 0:0",
        "fresh/n 644 1000:1000",
        "data/sub/a 644 ",
    ] {
        assert!(listing.contains(want), "{want}:\n{listing}");
    }
    for gone in ["bin/vi", "opq/old", "opq/deep"] {
        assert!(!tree.join(gone).exists(), "{gone} should be deleted");
    }

    let Some(user) = Who::with_range() else {
        return;
    };
    let e = Env::with_registry(user);
    let user_ids = ids(&e, &BACKENDS);
    assert_all_equal(&user_ids, "user");
    assert_eq!(user_ids[0].1, root_ids[0].1, "root and user builds differ");
}

/// A user without a subordinate range (a CI job as uid 1000): only container root is mapped,
/// other owners are recorded and chown emulated, and the image is still root's. Its namespaced
/// backends only: chroot isolation is for a job's real root.
#[test]
fn every_namespaced_backend_gives_roots_image_to_a_user_without_a_range() {
    let (Some(root), Some(user)) = (Who::root(), Who::without_range()) else {
        return;
    };
    let reference = ids(&Env::with_registry(root), &BACKENDS[..1]);
    let got = ids(&Env::with_registry(user), &BACKENDS[..3]);
    assert_all_equal(&got, "user without a range");
    assert_eq!(
        got[0].1, reference[0].1,
        "single-id build differs from root's"
    );
}

#[test]
fn a_forced_backend_that_cannot_run_is_an_error_naming_why() {
    let Some(root) = Who::root() else { return };
    let e = Env::new(root);
    e.boxfile("FROM busybox\nRUN true\n");
    let o = e.build(&["--isolation", "chroot", "--snapshotter", "overlay"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("use --snapshotter copy"),
        "{}",
        stderr(&o)
    );
    let o = e.build(&["--isolation", "sideways"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("expected auto, userns, chroot or none"));
}
