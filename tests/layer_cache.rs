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
