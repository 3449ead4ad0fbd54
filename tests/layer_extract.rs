//! Extraction details beyond safety: type replacement, implicit parents, directory mtimes,
//! whiteouts in both modes, ownership options. Archives come from the `tar` crate's builder
//! (tests/common/tarbuild.rs).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use boxkit::layer::{self, Compression, ExtractMode, ExtractOptions, OverlayXattr, Ownership};
use common::tarbuild::{Meta, Tar};
use tar::EntryType;

/// This file's entries: files mode 0640, dated 1_000_000, owned by `uid:uid`.
fn owned(uid: u64) -> Meta {
    Meta {
        mode: 0o640,
        mtime: 1_000_000,
        uid,
        gid: uid,
    }
}

/// Directories: mode 0750, root's, dated `mtime`.
fn dated(mtime: u64) -> Meta {
    Meta {
        mode: 0o750,
        mtime,
        uid: 0,
        gid: 0,
    }
}

/// Symlinks: root's, dated 1_000_000.
const LINK: Meta = Meta {
    mode: 0o777,
    mtime: 1_000_000,
    uid: 0,
    gid: 0,
};

fn extract(tar: &[u8], target: &Path, opts: &ExtractOptions) -> layer::ExtractReport {
    layer::extract(tar, Compression::None, target, opts).unwrap()
}

#[test]
fn entries_replace_existing_paths_of_another_type() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("was-dir/inner")).unwrap();
    fs::write(r.join("was-dir/inner/f"), "x").unwrap();
    fs::write(r.join("was-file"), "x").unwrap();
    std::os::unix::fs::symlink("/nowhere", r.join("was-link")).unwrap();
    let tar = Tar::new()
        .file("was-dir", "now a file", owned(0))
        .link(EntryType::Symlink, "was-file", "was-dir", LINK)
        .dir("was-link", dated(1_000_000))
        .file("was-link/child", "c", owned(0))
        .bytes();
    extract(&tar, r, &ExtractOptions::default());
    assert_eq!(fs::read_to_string(r.join("was-dir")).unwrap(), "now a file");
    assert_eq!(
        fs::read_link(r.join("was-file")).unwrap(),
        Path::new("was-dir")
    );
    assert!(fs::symlink_metadata(r.join("was-link")).unwrap().is_dir());
    assert_eq!(fs::read_to_string(r.join("was-link/child")).unwrap(), "c");
}

#[test]
fn missing_parents_are_created_and_dir_mtimes_survive_their_content() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let tar = Tar::new()
        .dir("d", dated(12345))
        .file("d/f", "f", owned(0))
        .file("implicit/deeper/g", "g", owned(0))
        .bytes();
    extract(&tar, r, &ExtractOptions::default());
    let d = fs::metadata(r.join("d")).unwrap();
    assert_eq!(
        d.mtime(),
        12345,
        "writing d/f after d must not leave d's mtime at now"
    );
    assert_eq!(d.mode() & 0o7777, 0o750);
    assert_eq!(
        fs::read_to_string(r.join("implicit/deeper/g")).unwrap(),
        "g"
    );
    assert!(fs::metadata(r.join("implicit")).unwrap().is_dir());
}

#[test]
fn flatten_whiteouts_delete_and_opaque_keeps_only_this_layers_entries() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("o/sub")).unwrap();
    fs::write(r.join("o/old"), "lower").unwrap();
    fs::write(r.join("o/sub/old"), "lower").unwrap();
    fs::create_dir_all(r.join("gone-dir/x")).unwrap();
    fs::write(r.join("gone-file"), "lower").unwrap();
    let tar = Tar::new()
        // Sorts before the marker: written by this layer, so it must survive.
        .file("o/-new", "mine", owned(0))
        .file("o/.wh..wh..opq", "", owned(0))
        .file("o/zz", "mine too", owned(0))
        .file(".wh.gone-dir", "", owned(0))
        .file(".wh.gone-file", "", owned(0))
        .bytes();
    extract(&tar, r, &ExtractOptions::default());
    let mut names: Vec<_> = fs::read_dir(r.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec!["-new", "zz"]);
    assert!(!r.join("gone-dir").exists() && !r.join("gone-file").exists());
    assert!(!r.join(".wh.gone-file").exists());
}

#[test]
fn overlay_mode_writes_overlay_whiteouts_and_opaque_xattr() {
    let t = tempfile::tempdir().unwrap();
    for kind in [OverlayXattr::Trusted, OverlayXattr::User] {
        let r = t.path().join(format!("{kind:?}"));
        fs::create_dir(&r).unwrap();
        let tar = Tar::new()
            .dir("o", dated(1))
            .file("o/.wh..wh..opq", "", owned(0))
            .file("d/.wh.gone", "", owned(0))
            .bytes();
        let opts = ExtractOptions {
            mode: ExtractMode::Overlay(kind),
            ..Default::default()
        };
        extract(&tar, &r, &opts);
        let wh = fs::symlink_metadata(r.join("d/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(layer::whiteout::is_overlay_opaque(&r.join("o")).unwrap());
        assert!(!r.join("o/.wh..wh..opq").exists());
    }
}

#[test]
fn ownership_is_preserved_or_ignored_as_asked() {
    if !common::is_root() {
        return common::skip("chown to other users needs root");
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Tar::new().file("f", "x", owned(1234)).bytes();
    let keep = t.path().join("keep");
    let ignore = t.path().join("ignore");
    fs::create_dir(&keep).unwrap();
    fs::create_dir(&ignore).unwrap();
    extract(&tar, &keep, &ExtractOptions::default());
    assert_eq!(fs::metadata(keep.join("f")).unwrap().uid(), 1234);
    let opts = ExtractOptions {
        ownership: Ownership::Ignore,
        ..Default::default()
    };
    extract(&tar, &ignore, &opts);
    assert_eq!(
        fs::metadata(ignore.join("f")).unwrap().uid(),
        nix::unistd::geteuid().as_raw()
    );
}

/// Runs only as the child of the test below, as an unprivileged user.
#[test]
fn chown_child_unprivileged() {
    let Ok(target) = std::env::var("BOX_LAYER_CHOWN_CHILD") else {
        return;
    };
    let tar = Tar::new().file("owned-by-1234", "x", owned(1234)).bytes();
    let err = layer::extract(
        &tar[..],
        Compression::None,
        Path::new(&target),
        &ExtractOptions::default(),
    )
    .expect_err("chown to another user succeeded unprivileged");
    let msg = err.to_string();
    assert!(
        msg.contains("owned-by-1234")
            && msg.contains("chown to 1234:1234")
            && msg.contains("Ignore"),
        "{msg}"
    );
    let opts = ExtractOptions {
        ownership: Ownership::Ignore,
        ..Default::default()
    };
    let sub = Path::new(&target).join("ignored");
    fs::create_dir(&sub).unwrap();
    layer::extract(&tar[..], Compression::None, &sub, &opts).unwrap();
}

#[test]
fn preserve_without_privilege_fails_with_a_clear_message() {
    if !common::is_root() || !common::have_tool("setpriv") {
        return common::skip("needs root and setpriv to become an unprivileged user");
    }
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("t");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "chown_child_unprivileged", "--test-threads=1"])
        .env("BOX_LAYER_CHOWN_CHILD", &target)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
