//! Unpacking with the file-creating worker pool (`ExtractOptions::workers`) gives exactly the
//! tree a serial unpack gives — types, contents, owners, modes, xattrs, mtimes (directories'
//! included) and hardlink groups — on the real Debian layer and on archives whose entries
//! replace, link to and white out files the pool may still be writing; and an unpack that
//! fails halfway, with workers busy, publishes nothing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use boxkit::digest::Digest;
use boxkit::layer::{
    self, Compression, Confinement, ExtractMode, ExtractOptions, OverlayXattr, Ownership,
};
use common::tarbuild::{Meta, Tar};
use tar::EntryType;

/// Everything the result of an unpack is compared on, for one path.
#[derive(Debug, PartialEq)]
struct Node {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    rdev: u64,
    content: Option<Digest>,
    link: Option<String>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The first path (in sorted order) of this node's hardlink group.
    group: String,
}

/// Every xattr of `p` (a symlink itself), sorted by name.
fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut list = vec![0u8; 64 << 10];
    // SAFETY: `c` is a NUL-terminated path and `list` a buffer of the length passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n >= 0, "listxattr {}", p.display());
    let mut out = BTreeMap::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
    {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 64 << 10];
        // SAFETY: both names are NUL-terminated and `v` is a buffer of the length passed.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0, "getxattr {}", p.display());
        v.truncate(m as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), v);
    }
    out
}

/// The tree under `root`: relative path -> node. Symlinks are not followed.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    // The root itself is the caller's directory, dated when it was made: not compared.
    paths.sort();
    let mut first_of_inode: HashMap<u64, String> = HashMap::new();
    let mut out = BTreeMap::new();
    for p in paths {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = p.symlink_metadata().unwrap();
        let group = first_of_inode
            .entry(m.ino())
            .or_insert_with(|| rel.clone())
            .clone();
        let content = m.is_file().then(|| {
            let mut f = fs::File::open(&p).unwrap();
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap();
            Digest::of_bytes(&buf)
        });
        let link = m
            .file_type()
            .is_symlink()
            .then(|| fs::read_link(&p).unwrap().to_string_lossy().into_owned());
        let node = Node {
            kind: m.mode() & libc::S_IFMT,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            // An overlay whiteout (0/0 char device) is dated when it was made.
            mtime: if m.file_type().is_char_device() {
                0
            } else {
                m.mtime()
            },
            rdev: m.rdev(),
            content,
            link,
            xattrs: xattrs(&p),
            group,
        };
        out.insert(rel, node);
    }
    out
}

fn opts(workers: usize) -> ExtractOptions {
    ExtractOptions {
        mode: ExtractMode::Overlay(OverlayXattr::User),
        ownership: Ownership::Preserve,
        workers: Some(workers),
        ..ExtractOptions::default()
    }
}

/// Unpack `tar` with `workers` workers into a new dir; its tree.
fn unpack(tar: &[u8], workers: usize) -> (tempfile::TempDir, BTreeMap<String, Node>) {
    let t = tempfile::tempdir().unwrap();
    let r = layer::extract(tar, Compression::None, t.path(), &opts(workers)).unwrap();
    assert!(r.entries > 0);
    let tr = tree(t.path());
    (t, tr)
}

fn assert_same(serial: &BTreeMap<String, Node>, parallel: &BTreeMap<String, Node>, what: &str) {
    assert_eq!(
        serial.keys().collect::<Vec<_>>(),
        parallel.keys().collect::<Vec<_>>(),
        "{what}: different paths"
    );
    for (k, v) in serial {
        assert_eq!(Some(v), parallel.get(k), "{what}: {k} differs");
    }
}

fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("BOX_TEST_STRICT").is_none(),
        "needs root (owners from the archive, the Debian fixture)"
    );
    eprintln!("skipped: needs root");
    false
}

#[test]
fn parallel_unpack_of_the_debian_layer_equals_the_serial_one() {
    if !root_or_skip() {
        return;
    }
    let tar = fs::read(common::fixtures::debian_rootfs_tar()).unwrap();
    let (_a, serial) = unpack(&tar, 0);
    assert!(serial.len() > 5000, "only {} paths", serial.len());
    assert!(
        serial.iter().any(|(k, n)| n.group != *k),
        "the fixture has no hardlinks to compare"
    );
    let (_b, parallel) = unpack(&tar, 2);
    assert_same(&serial, &parallel, "2 workers");
}

/// This file's files: mode `mode`, dated 1_100_000, owned by `uid:uid+1`.
fn owned(mode: u32, uid: u64) -> Meta {
    Meta {
        mode,
        mtime: 1_100_000,
        uid,
        gid: uid + 1,
    }
}

/// Directories: mode `mode`, dated `mtime`, owned by 7:8.
fn dated(mode: u32, mtime: u64) -> Meta {
    Meta {
        mode,
        mtime,
        uid: 7,
        gid: 8,
    }
}

/// Links: dated 1_200_000, owned by 0:1.
const LINK: Meta = Meta {
    mode: 0o777,
    mtime: 1_200_000,
    uid: 0,
    gid: 1,
};

/// Entries that touch what the pool may still be writing: a file written twice, a file
/// replaced by a directory and a directory by a file, hardlinks to just-written files,
/// whiteouts of them, a file too large for the pool between small ones, and directories
/// listed before their content with mtimes and modes that must survive it.
fn tricky_tar() -> Vec<u8> {
    let mut t = Tar::new().dir("a", dated(0o751, 1_000_001));
    for i in 0..200 {
        t = t.file(&format!("a/f{i}"), format!("file {i}\n"), owned(0o640, i));
    }
    t.file("a/f2", b"written again\n", owned(0o600, 3))
        .link(EntryType::Link, "a/h3", "a/f3", LINK)
        .link(EntryType::Link, "a/h4", "a/f4", LINK)
        .file("a/f4", b"replaced after being linked\n", owned(0o644, 4))
        .file("a/setuid", b"#!/bin/true\n", owned(0o4755, 0))
        .file("big", vec![7u8; 3 << 20], owned(0o644, 0))
        .file("b", b"a file first\n", owned(0o644, 0))
        .dir("b", dated(0o700, 1_000_002))
        .file("b/x", b"in b\n", owned(0o644, 0))
        .dir("c", dated(0o755, 1_000_003))
        .file("c/y", b"in c\n", owned(0o644, 0))
        .file("c", b"c is a file now\n", owned(0o644, 0))
        .file("a/.wh.f5", b"", owned(0o644, 0))
        .dir("d/e/f", dated(0o555, 1_000_004))
        .file("d/e/f/g", b"under a read-only dir\n", owned(0o444, 9))
        .link(EntryType::Symlink, "d/s", "../a/f6", LINK)
        .file("a/.wh..wh..opq", b"", owned(0o644, 0))
        .dir("a", dated(0o751, 1_000_005))
        // The implicit parents made for d/e/f, dated after their content.
        .dir("d/e", dated(0o755, 1_000_006))
        .dir("d", dated(0o755, 1_000_007))
        .bytes()
}

#[test]
fn parallel_unpack_orders_entries_that_touch_pending_files_as_serial() {
    if !root_or_skip() {
        return;
    }
    let tar = tricky_tar();
    let (_a, serial) = unpack(&tar, 0);
    assert_eq!(serial["a"].mtime, 1_000_005, "dir mtime set last");
    assert_eq!(
        serial["a/f4"].content,
        Some(Digest::of_bytes(b"replaced after being linked\n"))
    );
    assert_eq!(serial["a/h3"].group, "a/f3");
    assert_eq!(serial["b"].kind, libc::S_IFDIR);
    assert_eq!(serial["c"].kind, libc::S_IFREG);
    assert_eq!(serial["a/f5"].kind, libc::S_IFCHR, "overlay whiteout");
    assert_eq!(serial["a/setuid"].mode, 0o4755);
    for workers in [1, 2, 4] {
        for _ in 0..3 {
            let (_b, parallel) = unpack(&tar, workers);
            assert_same(&serial, &parallel, &format!("{workers} workers"));
        }
    }
}

#[test]
fn an_unpack_that_fails_with_workers_busy_publishes_nothing() {
    let tar = tricky_tar();
    // Cut inside the large file, after the pool got many small ones.
    let cut = &tar[..tar.len() / 2];
    let diff_id = Digest::of_bytes(&tar);
    let tmp = tempfile::tempdir().unwrap();
    let layers = tmp.path().join("layers");
    let mut f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut f, cut).unwrap();
    std::io::Seek::rewind(&mut f).unwrap();
    let o = ExtractOptions {
        ownership: Ownership::Ignore,
        ..opts(2)
    };
    let err = layer::unpack_cached(
        &layers,
        &diff_id,
        f,
        Compression::None,
        &o,
        Confinement::InProcess,
    )
    .expect_err("a truncated layer was accepted");
    assert!(
        err.to_string().contains("corrupt or truncated") || err.to_string().contains("read"),
        "{err}"
    );
    assert_eq!(layer::cached_layer(&layers, &diff_id), None);
    let left: Vec<_> = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
