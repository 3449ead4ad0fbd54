//! Round trip through a real overlay mount: build a lower layer, change it through the merged
//! view, pack the upper dir, extract it (Flatten onto a copy of the lower layer, and Overlay
//! into its own dir mounted as a second lowerdir), and compare with the merged view.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use boxkit::digest::Digest;
use boxkit::layer::{
    self, Compression, ExtractMode, ExtractOptions, OverlayXattr, Ownership, PackOptions,
};

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

/// An overlay mount that is unmounted even when the test panics.
struct Mount(PathBuf);
impl Mount {
    fn overlay(target: &Path, opts: &str) -> Self {
        fs::create_dir_all(target).unwrap();
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                opts,
                target.to_str().unwrap(),
            ],
        );
        Mount(target.to_path_buf())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Option<PathBuf>,
    content: Option<Digest>,
    user_xattrs: Vec<(String, Vec<u8>)>,
}

/// Everything the round trip must preserve: per path, type, mode, owner, symlink target,
/// contents and user xattrs; plus which paths share an inode.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    nodes: BTreeMap<PathBuf, Node>,
    hardlinks: BTreeSet<Vec<PathBuf>>,
}

fn snapshot(root: &Path) -> Snapshot {
    let mut nodes = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    inodes.entry(m.ino()).or_default().push(rel.clone());
                }
                'f'
            } else if ft.is_fifo() {
                'p'
            } else {
                'c'
            };
            let user_xattrs = if kind == 'l' {
                Vec::new()
            } else {
                user_xattrs(&p)
            };
            nodes.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                    content: ft
                        .is_file()
                        .then(|| Digest::of_bytes(&fs::read(&p).unwrap())),
                    user_xattrs,
                },
            );
        }
    }
    let hardlinks = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Snapshot { nodes, hardlinks }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).unwrap();
    let r = unsafe {
        libc::lsetxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
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

/// `user.*` xattrs of `p` (overlay's own never show through a merged view).
fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = cpath(p);
    let mut list = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(n >= 0, "listxattr {}", p.display());
    let mut out = Vec::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| s.starts_with(b"user."))
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), v));
    }
    out.sort();
    out
}

fn chown(p: &Path, id: u32) {
    std::os::unix::fs::lchown(p, Some(id), Some(id)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn build_lower(lower: &Path) {
    fs::create_dir_all(lower.join("dir/sub")).unwrap();
    fs::write(lower.join("a.txt"), "lower a\n").unwrap();
    fs::write(lower.join("gone.txt"), "to be deleted\n").unwrap();
    fs::write(lower.join("dir/b.txt"), "lower b\n").unwrap();
    fs::write(lower.join("dir/sub/c.txt"), "lower c\n").unwrap();
    symlink("a.txt", lower.join("link")).unwrap();
    symlink("/etc/passwd", lower.join("abs-link")).unwrap();
    fs::write(lower.join("h1"), "hardlinked\n").unwrap();
    fs::hard_link(lower.join("h1"), lower.join("dir/h2")).unwrap();
    fs::write(lower.join("own1000"), "x").unwrap();
    chown(&lower.join("own1000"), 1000);
    fs::write(lower.join("own65534"), "y").unwrap();
    chown(&lower.join("own65534"), 65534);
    fs::write(lower.join("suid"), "#!/bin/sh\n").unwrap();
    chmod(&lower.join("suid"), 0o4755);
    fs::write(lower.join("secret"), "s").unwrap();
    chmod(&lower.join("secret"), 0o600);
    fs::create_dir_all(lower.join("opq/deep")).unwrap();
    fs::write(lower.join("opq/old.txt"), "hidden later\n").unwrap();
    fs::write(lower.join("opq/deep/old2.txt"), "hidden later\n").unwrap();
}

fn change_merged(m: &Path) {
    fs::write(m.join("new.txt"), "new in upper\n").unwrap();
    fs::write(m.join("a.txt"), "modified a\n").unwrap();
    fs::remove_file(m.join("gone.txt")).unwrap();
    fs::remove_dir_all(m.join("opq")).unwrap();
    fs::create_dir(m.join("opq")).unwrap();
    fs::write(m.join("opq/fresh.txt"), "fresh\n").unwrap();
    fs::create_dir(m.join("links")).unwrap();
    fs::write(m.join("links/n1"), "new pair\n").unwrap();
    fs::hard_link(m.join("links/n1"), m.join("links/n2")).unwrap();
    fs::write(m.join("dir/sub/owned"), "z").unwrap();
    chown(&m.join("dir/sub/owned"), 1000);
    chmod(&m.join("dir/sub/owned"), 0o640);
    set_xattr(&m.join("new.txt"), "user.test", b"hello");
    run("mkfifo", &[m.join("fifo").to_str().unwrap()]);
    let long = "l".repeat(120);
    fs::create_dir(m.join(&long)).unwrap();
    fs::write(m.join(&long).join("f".repeat(60)), "long name\n").unwrap();
}

#[test]
fn overlay_upper_round_trips_through_pack_and_both_extract_modes() {
    if !common::is_root() {
        return common::skip("mounting overlayfs needs root");
    }
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let t = tmp.path();
    let (lower, upper, work, merged) = (
        t.join("lower"),
        t.join("upper"),
        t.join("work"),
        t.join("merged"),
    );
    for d in [&lower, &upper, &work] {
        fs::create_dir(d).unwrap();
    }
    build_lower(&lower);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let expected = {
        let _m = Mount::overlay(&merged, &opts);
        change_merged(&merged);
        snapshot(&merged)
    };

    // The merged view shows what the comparisons below rely on.
    let has = |p: &str| expected.nodes.contains_key(Path::new(p));
    assert!(!has("gone.txt") && !has("opq/old.txt") && !has("opq/deep") && has("opq/fresh.txt"));
    assert!(
        expected
            .hardlinks
            .contains(&vec![PathBuf::from("dir/h2"), PathBuf::from("h1")])
    );
    assert!(
        expected
            .hardlinks
            .contains(&vec![PathBuf::from("links/n1"), PathBuf::from("links/n2")])
    );
    assert_eq!(expected.nodes[Path::new("suid")].mode, 0o4755);
    assert_eq!(expected.nodes[Path::new("own65534")].uid, 65534);
    assert_eq!(
        expected.nodes[Path::new("new.txt")].user_xattrs,
        vec![("user.test".to_string(), b"hello".to_vec())]
    );

    // The upper dir really is in overlay form, or this test would prove nothing.
    let gone = fs::symlink_metadata(upper.join("gone.txt")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(layer::whiteout::is_overlay_opaque(&upper.join("opq")).unwrap());

    let mut blob = Vec::new();
    let packed = layer::pack_dir(&upper, &mut blob, &PackOptions::default()).unwrap();
    assert_eq!(packed.digest, Digest::of_bytes(&blob));
    assert_eq!(packed.size, blob.len() as u64);

    // The tar, read by an independent reader, holds the OCI whiteouts.
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = listing.stdin.as_ref().unwrap();
        stdin.write_all(&blob).unwrap();
    }
    let out = listing.wait_with_output().unwrap();
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    assert!(names.lines().any(|l| l == ".wh.gone.txt"), "{names}");
    assert!(names.lines().any(|l| l == "opq/.wh..wh..opq"), "{names}");

    // Flatten onto a copy of the lower layer.
    let flat = t.join("flat");
    run(
        "cp",
        &["-a", lower.to_str().unwrap(), flat.to_str().unwrap()],
    );
    let report = layer::extract(
        &blob[..],
        Compression::Gzip,
        &flat,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(report.diff_id, packed.diff_id);
    assert_eq!(snapshot(&flat), expected);

    // Overlay form: the layer in its own dir, mounted above the lower layer.
    let own = t.join("own");
    fs::create_dir(&own).unwrap();
    let xopts = ExtractOptions {
        mode: ExtractMode::Overlay(OverlayXattr::Trusted),
        ownership: Ownership::Preserve,
        ..Default::default()
    };
    layer::extract(&blob[..], Compression::Gzip, &own, &xopts).unwrap();
    let merged2 = t.join("merged2");
    let _m = Mount::overlay(
        &merged2,
        &format!(
            "lowerdir={}:{},redirect_dir=off,metacopy=off,index=off",
            own.display(),
            lower.display()
        ),
    );
    assert_eq!(snapshot(&merged2), expected);
}
