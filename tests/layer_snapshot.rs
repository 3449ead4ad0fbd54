//! The copy snapshotter against the real overlayfs: the same change script run on an overlay
//! mount of some layer trees and on `materialize` + `diff` of the same trees gives the same
//! layer (diff_id under SOURCE_DATE_EPOCH). Run as root, and as an unprivileged user in a user
//! namespace (`unshare -Urm`, with and without a subordinate id range).
//!
//! The trees are made here with std::fs and nix, never with boxkit.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use boxkit::layer::{self, Compression, PackOptions, snapshot};

/// SOURCE_DATE_EPOCH for packing: later than the lower trees' times, earlier than now.
const SDE: i64 = 1_600_000_000;
/// The mtime of everything in the lower trees.
const OLD: i64 = 1_000_000_000;
/// What the sandbox mounts over; never reported.
const SKIP: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

fn lsetxattr(p: &Path, name: &str, value: &[u8]) {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let cn = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; the value slice is live.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn lgetxattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: `cp` is NUL-terminated; the buffer is owned and its length passed.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return vec![];
    }
    let mut out = vec![];
    for name in buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
    {
        let s = String::from_utf8_lossy(name).into_owned();
        if !(s.starts_with("user.") || s == "security.capability") || s.contains(".overlay.") {
            continue;
        }
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: as above, with an owned value buffer.
        let m =
            unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        v.truncate(m.max(0) as usize);
        out.push((s, v));
    }
    out.sort();
    out
}

fn file(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
}

fn whiteout(root: &Path, rel: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

/// Set every mtime and atime in the tree to OLD (children before their directory).
fn age(p: &Path) {
    let m = fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            age(&e.unwrap().path());
        }
    }
    let t = nix::sys::time::TimeSpec::new(OLD, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Three overlay-form layer trees, bottom first. `ids`: other owners than 0 can exist.
fn make_lowers(base: &Path, ids: bool) -> Vec<PathBuf> {
    let owner = if ids { 1000 } else { 0 };
    let l1 = base.join("l1");
    for (rel, c) in [
        ("etc/conf", "conf v1\n"),
        ("etc/conf2", "conf2\n"),
        ("usr/bin/tool", "#!/bin/sh\n"),
        ("usr/share/doc/readme", "doc\n"),
        ("opt/d/a", "a\n"),
        ("opt/d/sub/b", "b\n"),
        ("srv/owned", "owned\n"),
        ("srv/mode", "mode\n"),
        ("srv/old", "rename me\n"),
        ("var/xa", "xattr\n"),
        ("deep/a/b/c/d/file", "deep\n"),
        ("deep/a/b/keep", "keep\n"),
        ("keep/old", "untouched\n"),
        ("tmpdir/f", "f\n"),
        ("l1only/x", "hidden by l2\n"),
        ("l1only/y", "stays\n"),
        ("gone/inner/z", "whole dir hidden by l2\n"),
        ("opq/a", "hidden by opaque l2\n"),
        ("hl/one", "linked\n"),
        ("home/user/.profile", "profile\n"),
        ("lib/py/m", "py\n"),
        ("lib/py.d/n", "sorts between lib/py and lib/py/m\n"),
        ("lib/py-x/o", "and so does this\n"),
    ] {
        file(&l1, rel, c);
    }
    fs::hard_link(l1.join("hl/one"), l1.join("hl/two")).unwrap();
    symlink("conf", l1.join("etc/conf.link")).unwrap();
    fs::set_permissions(l1.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    lchown(l1.join("home/user"), Some(owner), Some(owner)).unwrap();
    lchown(l1.join("home/user/.profile"), Some(owner), Some(owner)).unwrap();
    fs::set_permissions(l1.join("home/user"), fs::Permissions::from_mode(0o750)).unwrap();
    lsetxattr(&l1.join("usr/share/doc/readme"), "user.lower", b"l1");
    let l2 = base.join("l2");
    file(&l2, "etc/conf", "conf v2 from l2\n");
    whiteout(&l2, "l1only/x");
    whiteout(&l2, "gone");
    file(&l2, "opq/c", "opaque content\n");
    lsetxattr(&l2.join("opq"), "user.overlay.opaque", b"y");
    fs::set_permissions(l2.join("etc"), fs::Permissions::from_mode(0o711)).unwrap();
    let l3 = base.join("l3");
    file(&l3, "usr/share/more", "more\n");
    lsetxattr(&l3.join("usr"), "user.dirattr", b"l3");
    let v = vec![l1, l2, l3];
    for l in &v {
        age(l);
    }
    v
}

/// A file capability: vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (13).
fn net_raw_cap() -> Vec<u8> {
    let mut cap = vec![];
    for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&w.to_le_bytes());
    }
    cap
}

/// The RUN step: every kind of change a layer can carry.
fn step_one(r: &Path, ids: bool) {
    let owner = if ids { 1000 } else { 0 };
    file(r, "new.txt", "new\n");
    file(r, "usr/share/doc/new", "new in a lower dir\n");
    fs::OpenOptions::new()
        .append(true)
        .open(r.join("etc/conf2"))
        .unwrap()
        .write_all(b"appended\n")
        .unwrap();
    fs::remove_file(r.join("usr/bin/tool")).unwrap();
    fs::remove_dir_all(r.join("opt/d")).unwrap();
    fs::create_dir(r.join("opt/d")).unwrap();
    file(r, "opt/d/x", "");
    lchown(r.join("srv/owned"), Some(owner), Some(owner)).unwrap();
    fs::set_permissions(r.join("srv/mode"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::rename(r.join("srv/old"), r.join("srv/new")).unwrap();
    fs::create_dir_all(r.join("app/sub/deeper")).unwrap();
    file(r, "app/sub/deeper/f", "new dir content\n");
    symlink("../etc/conf", r.join("app/link")).unwrap();
    file(r, "app/h1", "pair\n");
    fs::hard_link(r.join("app/h1"), r.join("app/h2")).unwrap();
    fs::hard_link(r.join("etc/conf2"), r.join("app/conf2-link")).unwrap();
    nix::unistd::mkfifo(
        &r.join("app/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    lsetxattr(&r.join("var/xa"), "user.step", b"one");
    // Changed in place, so only the walk order puts their directories in the layer.
    for f in ["lib/py/m", "lib/py.d/n", "lib/py-x/o"] {
        let mut w = fs::OpenOptions::new().append(true).open(r.join(f)).unwrap();
        w.write_all(b"appended\n").unwrap();
    }
    lsetxattr(
        &r.join("usr/share/doc/readme"),
        "security.capability",
        &net_raw_cap(),
    );
    fs::remove_dir_all(r.join("deep/a/b/c")).unwrap();
    file(r, "tmpdir/t", "temporary\n");
    fs::remove_file(r.join("tmpdir/t")).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(r.join("hl/one"))
        .unwrap()
        .write_all(b"only one name changes\n")
        .unwrap();
}

/// A second RUN after a COPY layer: it touches what the first made.
fn step_two(r: &Path) {
    fs::OpenOptions::new()
        .append(true)
        .open(r.join("app/h1"))
        .unwrap()
        .write_all(b"h1 only\n")
        .unwrap();
    fs::remove_file(r.join("new.txt")).unwrap();
    fs::remove_file(r.join("copied/one")).unwrap();
    file(r, "srv/new", "rewritten\n");
    fs::create_dir(r.join("made-by-two")).unwrap();
}

/// The COPY layer between the two steps.
fn copy_layer(base: &Path) -> PathBuf {
    let l = base.join("copy");
    file(&l, "copied/one", "1\n");
    file(&l, "copied/two", "2\n");
    file(&l, "etc/conf2", "replaced by COPY\n");
    age(&l);
    l
}

fn pack(dir: &Path) -> (String, String) {
    let opts = PackOptions {
        compression: Compression::None,
        source_date_epoch: Some(SDE),
        ..Default::default()
    };
    let mut tar = Vec::new();
    let r = layer::pack_dir(dir, &mut tar, &opts).unwrap();
    let mut listing = String::new();
    let mut ar = tar::Archive::new(&tar[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut pax = String::new();
        if let Ok(Some(x)) = e.pax_extensions() {
            for p in x.flatten() {
                pax.push_str(&format!(
                    " {}={:?}",
                    p.key().unwrap_or("?"),
                    p.value_bytes()
                ));
            }
        }
        listing.push_str(&format!(
            "{} {:?} {:o} {}:{} mtime={} size={} link={:?}{pax}\n",
            String::from_utf8_lossy(&e.path_bytes()),
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            h.size().unwrap(),
            e.link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
        ));
    }
    (r.diff_id.to_string(), listing)
}

fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) {
    for d in [upper, work, merged] {
        fs::create_dir_all(d).unwrap();
    }
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr,redirect_dir=nofollow,metacopy=off,index=off",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
}

fn umount(p: &Path) {
    nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// What a tree looks like to a program, for comparing a materialized tree with overlay's view.
/// mtimes are clamped as packing clamps them: the steps ran at different moments.
fn view(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(p.clone());
                String::new()
            } else if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().display().to_string()
            } else if m.is_file() {
                String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
            } else {
                format!("rdev {}", m.rdev())
            };
            let x = if m.file_type().is_symlink() {
                vec![]
            } else {
                lgetxattrs(&p)
            };
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} mtime={} {what:?} {x:?}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if m.is_dir() { 0 } else { m.mtime().min(SDE) }
                ),
            );
        }
    }
    out
}

fn assert_same_view(a: &Path, b: &Path) {
    let (va, vb) = (view(a), view(b));
    for (k, v) in &va {
        assert_eq!(
            Some(v),
            vb.get(k),
            "{k} in {} vs {}",
            a.display(),
            b.display()
        );
    }
    assert_eq!(
        va.len(),
        vb.len(),
        "{:?}",
        vb.keys()
            .filter(|k| !va.contains_key(*k))
            .collect::<Vec<_>>()
    );
}

fn assert_same_layer(what: &str, overlay_upper: &Path, copy_upper: &Path) {
    let (o, ol) = pack(overlay_upper);
    let (c, cl) = pack(copy_upper);
    if std::env::var_os("BOX_SNAPSHOT_SHOW").is_some() {
        eprintln!("--- {what}:\n{cl}");
    }
    assert_eq!(
        o, c,
        "{what}: diff_ids differ\n--- overlay upper:\n{ol}--- copy snapshotter:\n{cl}"
    );
}

/// The whole comparison, in `base` (a fresh directory this process can write). Needs to be
/// root of its user namespace, to mount overlay.
fn parity(base: &Path, ids: bool) {
    let lowers = make_lowers(base, ids);
    // (a) overlay, step one.
    let o1 = base.join("o1");
    let merged = base.join("merged");
    mount_overlay(&lowers, &o1.join("upper"), &o1.join("work"), &merged);
    let root = base.join("root");
    snapshot::materialize(&lowers, &root).unwrap();
    assert_same_view(&merged, &root);
    step_one(&merged, ids);
    umount(&merged);
    // (b) the copy snapshotter, step one.
    let before = snapshot::snapshot(&root).unwrap();
    step_one(&root, ids);
    let c1 = base.join("c1");
    fs::create_dir(&c1).unwrap();
    let after = snapshot::diff(&root, &before, &c1, &SKIP).unwrap();
    assert_same_layer("step one", &o1.join("upper"), &c1);

    // A COPY layer, then step two on both.
    let copy = copy_layer(base);
    let mut lowers2 = lowers.clone();
    lowers2.extend([o1.join("upper"), copy.clone()]);
    let o2 = base.join("o2");
    mount_overlay(&lowers2, &o2.join("upper"), &o2.join("work"), &merged);
    snapshot::apply_layer(&copy, &root).unwrap();
    assert_same_view(&merged, &root);
    step_two(&merged);
    umount(&merged);
    let before2 = snapshot::snapshot(&root).unwrap();
    assert!(before2.len() >= after.len());
    step_two(&root);
    let c2 = base.join("c2");
    fs::create_dir(&c2).unwrap();
    snapshot::diff(&root, &before2, &c2, &SKIP).unwrap();
    assert_same_layer("step two", &o2.join("upper"), &c2);
}

#[test]
fn same_diff_id_as_overlay_as_root() {
    if !common::is_root() {
        return common::skip(
            "mounting overlay needs root (the unprivileged cases run in a user namespace)",
        );
    }
    let t = tempfile::tempdir().unwrap();
    parity(t.path(), true);
}

/// Runs only as the child of the unprivileged tests below, as root of a user namespace.
#[test]
fn parity_child_in_userns() {
    let Ok(base) = std::env::var("BOX_SNAPSHOT_CHILD") else {
        return;
    };
    let ids = std::env::var("BOX_SNAPSHOT_IDS").is_ok_and(|v| v == "1");
    parity(Path::new(&base), ids);
}

fn run_child_as_user(map_auto: bool) {
    if !common::is_root() || !common::have_tool("setpriv") || !common::have_tool("unshare") {
        return common::skip("needs root, setpriv and unshare to become an unprivileged user");
    }
    let u = common::users::with_range();
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("base");
    fs::create_dir(&base).unwrap();
    lchown(&base, Some(u.uid), Some(u.gid)).unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--init-groups")
        .args(["--", "unshare", "--map-root-user", "--mount"]);
    if map_auto {
        c.arg("--map-auto");
    }
    let out = c
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "parity_child_in_userns",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("BOX_SNAPSHOT_CHILD", &base)
        .env("BOX_SNAPSHOT_IDS", if map_auto { "1" } else { "0" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn same_diff_id_as_overlay_unprivileged_single_id() {
    run_child_as_user(false);
}

#[test]
fn same_diff_id_as_overlay_unprivileged_with_subordinate_range() {
    run_child_as_user(true);
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn materialize_applies_whiteouts_and_opaque_directories() {
    let t = tempfile::tempdir().unwrap();
    let lowers = make_lowers(t.path(), common::is_root());
    let root = t.path().join("root");
    snapshot::materialize(&lowers, &root).unwrap();
    assert_eq!(read(&root.join("etc/conf")), "conf v2 from l2\n");
    assert!(
        !root.join("l1only/x").exists(),
        "a whiteout in l2 deletes l1's file"
    );
    assert_eq!(read(&root.join("l1only/y")), "stays\n");
    assert!(
        fs::symlink_metadata(root.join("gone")).is_err(),
        "a whiteout deletes a whole dir"
    );
    let opq: Vec<_> = fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(opq, ["c"], "an opaque dir hides what was below it");
    assert_eq!(
        lgetxattrs(&root.join("usr")),
        [("user.dirattr".to_string(), b"l3".to_vec())]
    );
    assert!(
        !lgetxattrs(&root.join("opq"))
            .iter()
            .any(|(n, _)| n.contains("overlay")),
        "overlay's own xattrs stay out of the merged view"
    );
    let m = fs::symlink_metadata(root.join("etc")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.mtime()),
        (0o711, OLD),
        "the top copy's attributes"
    );
    let (one, two) = (root.join("hl/one"), root.join("hl/two"));
    assert_eq!(read(&two), "linked\n");
    assert_ne!(
        fs::metadata(&one).unwrap().ino(),
        fs::metadata(&two).unwrap().ino(),
        "layer hardlinks are broken as overlay breaks them on copy-up"
    );
    assert_eq!(
        fs::read_link(root.join("etc/conf.link")).unwrap(),
        Path::new("conf")
    );
    if common::is_root() {
        assert_eq!(
            fs::metadata(root.join("home/user/.profile")).unwrap().uid(),
            1000
        );
    }
    // Never a link into the layer cache: writing the copy leaves the layer alone.
    fs::write(root.join("usr/share/more"), "changed").unwrap();
    assert_eq!(read(&lowers[2].join("usr/share/more")), "more\n");
}

#[test]
fn apply_layer_adds_one_layer_to_a_materialized_tree() {
    let t = tempfile::tempdir().unwrap();
    let lowers = make_lowers(t.path(), common::is_root());
    let all = t.path().join("all");
    snapshot::materialize(&lowers, &all).unwrap();
    let inc = t.path().join("inc");
    snapshot::materialize(&lowers[..2], &inc).unwrap();
    assert!(inc.join("opq/c").exists() && !inc.join("usr/share/more").exists());
    snapshot::apply_layer(&lowers[2], &inc).unwrap();
    assert_same_view(&all, &inc);
}

/// A step may leave a symlink where a later COPY layer has a directory; applying the layer
/// replaces the symlink and writes nothing through it.
#[test]
fn apply_layer_never_writes_through_a_symlink_the_step_planted() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    symlink(&outside, root.join("copied")).unwrap();
    symlink(outside.join("f"), root.join("file-link")).unwrap();
    let layer = copy_layer(t.path());
    file(&layer, "file-link", "plain file now\n");
    snapshot::apply_layer(&layer, &root).unwrap();
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside the root"
    );
    assert!(fs::symlink_metadata(root.join("copied")).unwrap().is_dir());
    assert_eq!(read(&root.join("copied/one")), "1\n");
    assert!(
        fs::symlink_metadata(root.join("file-link"))
            .unwrap()
            .is_file()
    );
}

/// Mount-point stubs a sandbox makes (and their parents, when that is all that changed in
/// them) are not part of the layer.
#[test]
fn skipped_paths_and_their_stub_parents_are_not_reported() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    file(&root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    age(&root);
    let before = snapshot::snapshot(&root).unwrap();
    for d in ["proc/1", "dev", "sys"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    file(&root, "etc/hosts", "127.0.0.1 localhost\n");
    file(&root, "etc/resolv.conf", "nameserver 10.0.2.3\n");
    let up = t.path().join("up");
    fs::create_dir(&up).unwrap();
    snapshot::diff(&root, &before, &up, &SKIP).unwrap();
    assert_eq!(fs::read_dir(&up).unwrap().count(), 0, "{:?}", view(&up));
    // A real change in etc is reported, with etc but without the stubs.
    let before = snapshot::snapshot(&root).unwrap();
    file(&root, "etc/motd", "hi\n");
    let up = t.path().join("up2");
    fs::create_dir(&up).unwrap();
    snapshot::diff(&root, &before, &up, &SKIP).unwrap();
    assert_eq!(view(&up).keys().collect::<Vec<_>>(), ["etc", "etc/motd"]);
}

/// Rewrites that keep size and mtime right after a snapshot are still seen (ctime, and the
/// racy-window guard for the same clock tick).
#[test]
fn a_same_size_rewrite_with_restored_mtime_is_seen() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    for i in 0..20 {
        file(&root, &format!("f{i}"), "aaaa");
    }
    age(&root);
    let mut before = snapshot::snapshot(&root).unwrap();
    for round in 0..5 {
        let name = format!("f{}", round * 3);
        let p = root.join(&name);
        fs::write(&p, "bbbb").unwrap();
        let t0 = nix::sys::time::TimeSpec::new(OLD, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &t0,
            &t0,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let up = t.path().join(format!("up{round}"));
        fs::create_dir(&up).unwrap();
        before = snapshot::diff(&root, &before, &up, &[]).unwrap();
        assert_eq!(
            view(&up).keys().collect::<Vec<_>>(),
            [&name],
            "round {round}"
        );
    }
}

/// File capabilities survive the copy into the upper dir, as overlay's copy-up keeps them.
#[test]
fn file_capabilities_are_copied() {
    if !common::is_root() {
        return common::skip("setting security.capability needs CAP_SETFCAP");
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    file(&root, "bin/ping", "elf");
    let before = snapshot::snapshot(&root).unwrap();
    let cap = net_raw_cap();
    lsetxattr(&root.join("bin/ping"), "security.capability", &cap);
    let up = t.path().join("up");
    fs::create_dir(&up).unwrap();
    snapshot::diff(&root, &before, &up, &[]).unwrap();
    assert_eq!(
        lgetxattrs(&up.join("bin/ping")),
        [("security.capability".to_string(), cap)]
    );
}

/// Timings for docs/arch-notes-snapshot.md on a debootstrap-sized tree (copies of host
/// directories; BOX_SNAPSHOT_BENCH_DIRS, colon-separated, overrides them). Run with
/// `cargo test --release --test layer_snapshot -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_materialize_snapshot_diff() {
    use std::time::Instant;
    let dirs = std::env::var("BOX_SNAPSHOT_BENCH_DIRS").unwrap_or_else(|_| {
        "/usr/lib/python3:/usr/lib/python3.11:/usr/share/perl:/usr/lib/x86_64-linux-gnu/perl:/usr/share/doc".into()
    });
    let t =
        tempfile::tempdir_in(std::env::var("BOX_SNAPSHOT_BENCH_TMP").unwrap_or("/var/tmp".into()))
            .unwrap();
    let layer = t.path().join("layer");
    for d in dirs.split(':') {
        let to = layer.join(d.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let st = Command::new("cp")
            .args(["-a", "--reflink=never", d])
            .arg(&to)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let n = view(&layer).len();
    let mb = Command::new("du")
        .args(["-sm"])
        .arg(&layer)
        .output()
        .unwrap();
    eprintln!(
        "tree: {n} entries, {} MB",
        String::from_utf8_lossy(&mb.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    let cp_root = t.path().join("cp");
    let t0 = Instant::now();
    assert!(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&layer)
            .arg(&cp_root)
            .status()
            .unwrap()
            .success()
    );
    eprintln!(
        "cp -a (reference):   {:>8.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let root = t.path().join("root");
    let t0 = Instant::now();
    snapshot::materialize(&[&layer], &root).unwrap();
    eprintln!(
        "materialize:         {:>8.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let t0 = Instant::now();
    let before = snapshot::snapshot(&root).unwrap();
    eprintln!(
        "snapshot:            {:>8.1} ms ({} paths)",
        t0.elapsed().as_secs_f64() * 1e3,
        before.len()
    );
    // A step: 200 files appended to, 200 deleted, one directory tree removed, 200 new files.
    let files: Vec<PathBuf> = view(&root)
        .keys()
        .map(|k| root.join(k))
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .collect();
    for p in files.iter().step_by(files.len() / 200).take(200) {
        fs::OpenOptions::new()
            .append(true)
            .open(p)
            .unwrap()
            .write_all(b"x")
            .unwrap();
    }
    for p in files.iter().skip(3).step_by(files.len() / 200).take(200) {
        let _ = fs::remove_file(p);
    }
    let _ = fs::remove_dir_all(root.join("usr/share/perl"));
    for i in 0..200 {
        file(&root, &format!("opt/new/{}/f{i}", i % 10), "new file\n");
    }
    let up = t.path().join("up");
    fs::create_dir(&up).unwrap();
    let t0 = Instant::now();
    let after = snapshot::diff(&root, &before, &up, &SKIP).unwrap();
    eprintln!(
        "diff (~800 changes): {:>8.1} ms ({} entries in the upper dir)",
        t0.elapsed().as_secs_f64() * 1e3,
        view(&up).len()
    );
    let up2 = t.path().join("up2");
    fs::create_dir(&up2).unwrap();
    let t0 = Instant::now();
    snapshot::diff(&root, &after, &up2, &SKIP).unwrap();
    eprintln!(
        "diff (no change):    {:>8.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
}
