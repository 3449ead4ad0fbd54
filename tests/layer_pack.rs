//! Packing: determinism under SOURCE_DATE_EPOCH, and output that independent tools accept.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use boxkit::layer::{self, Compression, PackOptions};

fn touch_time(p: &Path, secs: i64) {
    let st = Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// One step of building a test tree.
type Step = Box<dyn Fn(&Path)>;

/// The same tree, created in forward or reverse order, with different mtimes.
fn make_tree(root: &Path, reverse: bool, mtime: i64) {
    let mut steps: Vec<Step> = vec![
        Box::new(|r| fs::create_dir_all(r.join("a/b")).unwrap()),
        Box::new(|r| fs::create_dir_all(r.join("z")).unwrap()),
        Box::new(|r| fs::create_dir_all(r.join("m")).unwrap()),
    ];
    let files: Vec<Step> = vec![
        Box::new(|r| fs::write(r.join("a/b/one"), "one\n").unwrap()),
        Box::new(|r| fs::write(r.join("z/two"), vec![7u8; 300_000]).unwrap()),
        Box::new(|r| fs::write(r.join("m/three"), "three\n").unwrap()),
        Box::new(|r| fs::write(r.join("a/0first"), "first\n").unwrap()),
        Box::new(|r| symlink("../a/b/one", r.join("z/link")).unwrap()),
        Box::new(|r| fs::write(r.join("m").join("n".repeat(150)), "long\n").unwrap()),
    ];
    if reverse {
        steps.reverse();
    }
    for s in &steps {
        s(root);
    }
    let mut files = files;
    if reverse {
        files.reverse();
    }
    for f in &files {
        f(root);
    }
    fs::hard_link(root.join("a/b/one"), root.join("m/one-again")).unwrap();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            touch_time(&p, mtime);
        }
    }
}

fn pack(dir: &Path, compression: Compression, epoch: Option<i64>) -> (layer::PackResult, Vec<u8>) {
    let mut out = Vec::new();
    let opts = PackOptions {
        compression,
        source_date_epoch: epoch,
        ..Default::default()
    };
    let r = layer::pack_dir(dir, &mut out, &opts).unwrap();
    (r, out)
}

#[test]
fn same_tree_packs_to_the_same_digest_with_source_date_epoch() {
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (d1, d2) = (t1.path().join("one"), t2.path().join("elsewhere/two"));
    fs::create_dir_all(&d1).unwrap();
    fs::create_dir_all(&d2).unwrap();
    make_tree(&d1, false, 1_700_000_000);
    make_tree(&d2, true, 1_600_000_000);
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (a, _) = pack(&d1, c, Some(0));
        let (b, _) = pack(&d1, c, Some(0));
        let (other, _) = pack(&d2, c, Some(0));
        assert_eq!(a, b, "{c:?}: packing twice differs");
        assert_eq!(
            a, other,
            "{c:?}: same tree in another place and order differs"
        );
    }
    // Without clamping the differing mtimes show.
    let (a, _) = pack(&d1, Compression::Gzip, None);
    let (b, _) = pack(&d2, Compression::Gzip, None);
    assert_ne!(a.diff_id, b.diff_id);
}

fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn packed_gzip_and_zstd_streams_are_accepted_by_gzip_zstd_and_gnu_tar() {
    let t = tempfile::tempdir().unwrap();
    make_tree(t.path(), false, 1_700_000_000);
    // Big enough for many parallel gzip blocks.
    fs::write(
        t.path().join("big"),
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (r, gz) = pack(t.path(), Compression::Gzip, None);
    assert_eq!(r.size, gz.len() as u64);
    assert!(pipe("gzip", &["-t"], &gz).0, "gzip -t rejects the stream");
    let (ok, listing) = pipe("tar", &["-tvzf", "-", "--numeric-owner"], &gz);
    assert!(ok);
    let long = format!("m/{}", "n".repeat(150));
    assert!(listing.lines().any(|l| l.ends_with(&long)), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.contains("m/one-again link to a/b/one")),
        "{listing}"
    );
    assert!(
        listing.lines().any(|l| l.contains("z/link -> ../a/b/one")),
        "{listing}"
    );
    // diff_id is the digest of what gunzip produces.
    let (ok, _) = pipe("gzip", &["-t"], &gz);
    assert!(ok);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    assert_eq!(r.diff_id, boxkit::digest::Digest::of_bytes(&raw));

    let (rz, zs) = pack(t.path(), Compression::Zstd, None);
    assert_eq!(rz.diff_id, r.diff_id);
    assert!(
        pipe("zstd", &["-t", "-q"], &zs).0,
        "zstd -t rejects the stream"
    );
}
