//! The unpacked-layer cache: a dir without the completion marker is never used and is
//! replaced; a blob whose tar does not hash to the expected diff_id leaves nothing behind.

mod common;

use std::fs;
use std::path::Path;

use boxkit::digest::Digest;
use boxkit::layer::Confinement;
use boxkit::layer::{self, Compression, ExtractOptions};

/// A small layer tar made with the `tar` crate's builder (not boxkit's packer).
fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(6);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append_data(&mut h, "etc/hello", &b"hello\n"[..]).unwrap();
    b.into_inner().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn dir_without_marker_is_not_used_and_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = tmp.path().join("layers");
    let tar = layer_tar();
    let diff_id = Digest::of_bytes(&tar);
    // What a crash after the rename but before the marker would leave.
    let stale = layers.join(diff_id.hex()).join("diff");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("half-written"), "x").unwrap();
    assert_eq!(layer::cached_layer(&layers, &diff_id), None);

    let tree = layer::unpack_cached(
        &layers,
        &diff_id,
        file(&tar[..]),
        Compression::None,
        &ExtractOptions::default(),
        Confinement::InProcess,
    )
    .unwrap();
    assert_eq!(tree, layers.join(diff_id.hex()).join("diff"));
    assert_eq!(fs::read(tree.join("etc/hello")).unwrap(), b"hello\n");
    assert!(!tree.join("half-written").exists());
    assert_eq!(layer::cached_layer(&layers, &diff_id), Some(tree.clone()));
    // Only the final dir remains: no temporary dirs.
    assert_eq!(names(&layers), vec![diff_id.hex().to_string()]);

    // A second call is a cache hit and does not read the blob at all.
    let again = layer::unpack_cached(
        &layers,
        &diff_id,
        file(&b"not a tar"[..]),
        Compression::None,
        &ExtractOptions::default(),
        Confinement::InProcess,
    )
    .unwrap();
    assert_eq!(again, tree);
}

#[test]
fn diff_id_mismatch_fails_and_leaves_nothing_under_the_final_name() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = tmp.path().join("layers");
    let tar = layer_tar();
    let wrong = Digest::of_bytes(b"some other layer");
    let err = layer::unpack_cached(
        &layers,
        &wrong,
        file(&tar[..]),
        Compression::None,
        &ExtractOptions::default(),
        Confinement::InProcess,
    )
    .expect_err("mismatching diff_id accepted");
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains(&Digest::of_bytes(&tar).to_string()),
        "{msg}"
    );
    assert!(!layers.join(wrong.hex()).exists());
    assert_eq!(layer::cached_layer(&layers, &wrong), None);
    assert!(
        names(&layers).is_empty(),
        "left behind: {:?}",
        names(&layers)
    );
}

/// The bytes as a file, as the store hands a blob to the layer cache.
fn file(bytes: &[u8]) -> fs::File {
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    f
}

fn unpack(layers: &Path, diff_id: &Digest, tar: &[u8]) -> std::path::PathBuf {
    layer::unpack_cached(
        layers,
        diff_id,
        file(tar),
        Compression::None,
        &ExtractOptions::default(),
        Confinement::InProcess,
    )
    .unwrap()
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// The layer unpacked into a new cache: (temp dir, layers dir, tar, diff_id, tree), after
/// checking that its dir holds the tree and this boot's marker only.
fn unpacked_fresh() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<u8>,
    Digest,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().unwrap();
    let layers = tmp.path().join("layers");
    let tar = layer_tar();
    let diff_id = Digest::of_bytes(&tar);
    let tree = unpack(&layers, &diff_id, &tar);
    assert_eq!(
        names(&layers.join(diff_id.hex())),
        vec![format!("complete-boot-{}", boot_id()), "diff".to_string()]
    );
    (tmp, layers, tar, diff_id, tree)
}

#[test]
fn a_tree_is_published_unsynced_with_a_marker_that_names_this_boot() {
    let (_tmp, layers, _tar, diff_id, tree) = unpacked_fresh();
    assert_eq!(layer::cached_layer(&layers, &diff_id), Some(tree));
}

#[test]
fn after_a_restart_an_unsynced_tree_is_unpacked_again_from_its_blob() {
    let (_tmp, layers, tar, diff_id, tree) = unpacked_fresh();
    let dir = layers.join(diff_id.hex());
    // What the machine leaves after a restart: a marker of an earlier boot over a tree whose
    // unsynced writes may be lost (here: a file truncated).
    fs::rename(
        dir.join(format!("complete-boot-{}", boot_id())),
        dir.join("complete-boot-00000000-0000-0000-0000-000000000000"),
    )
    .unwrap();
    fs::write(tree.join("etc/hello"), "").unwrap();
    assert_eq!(layer::cached_layer(&layers, &diff_id), None);
    let again = unpack(&layers, &diff_id, &tar);
    assert_eq!(fs::read(again.join("etc/hello")).unwrap(), b"hello\n");
    assert_eq!(
        names(&dir),
        vec![format!("complete-boot-{}", boot_id()), "diff".to_string()]
    );
}

#[test]
fn a_synced_trees_plain_marker_counts_in_any_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = tmp.path().join("layers");
    let tar = layer_tar();
    let diff_id = Digest::of_bytes(&tar);
    // A layer published by an earlier version, which synced the tree: the plain marker.
    let dir = layers.join(diff_id.hex());
    fs::create_dir_all(dir.join("diff/etc")).unwrap();
    fs::write(dir.join("diff/etc/hello"), "hello\n").unwrap();
    fs::write(dir.join("complete"), "").unwrap();
    assert_eq!(
        layer::cached_layer(&layers, &diff_id),
        Some(dir.join("diff"))
    );
}
