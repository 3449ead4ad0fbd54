//! Hostile and broken layers. The archives are built with the `tar` crate's raw header API
//! (never with boxkit's packer), so names the packer would never write can be tried. Each
//! must be rejected with an error that names the offending entry, in both extraction modes,
//! and nothing may appear outside the target: a sentinel dir beside it must stay as it was.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use boxkit::layer::{self, Compression, ExtractMode, ExtractOptions, OverlayXattr};
use tar::{EntryType, Header};

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn put_raw(field: &mut [u8], v: &str) {
    field[..v.len()].copy_from_slice(v.as_bytes());
}

/// A tar with names copied byte for byte into the header, bypassing all path checks.
fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = Header::new_ustar();
        let (name, kind, link, data): (&str, EntryType, Option<&str>, &[u8]) = match e {
            E::File(n, d) => (n, EntryType::Regular, None, d),
            E::Dir(n) => (n, EntryType::Directory, None, b""),
            E::Symlink(n, t) => (n, EntryType::Symlink, Some(t), b""),
            E::Hardlink(n, t) => (n, EntryType::Link, Some(t), b""),
        };
        let u = h.as_ustar_mut().unwrap();
        put_raw(&mut u.name, name);
        if let Some(l) = link {
            put_raw(&mut u.linkname, l);
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `base/target` (extracted into) and `base/sentinel` (must never change).
struct Scene {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    target: PathBuf,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = tmp.path().to_path_buf();
    let target = base.join("target");
    fs::create_dir(&target).unwrap();
    fs::create_dir(base.join("sentinel")).unwrap();
    fs::write(base.join("sentinel/file"), "untouched").unwrap();
    Scene {
        _tmp: tmp,
        base,
        target,
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn modes() -> [ExtractOptions; 3] {
    [
        ExtractOptions::default(),
        ExtractOptions {
            mode: ExtractMode::Overlay(OverlayXattr::Trusted),
            ..Default::default()
        },
        ExtractOptions {
            mode: ExtractMode::Overlay(OverlayXattr::User),
            ..Default::default()
        },
    ]
}

/// Extract `tar` in every mode into a fresh scene; each must fail naming `entry`, and leave
/// the sentinel and the scene's base exactly as they were.
fn assert_rejected(tar: &[u8], entry: &str, outside: &[&Path]) {
    for opts in modes() {
        let s = scene();
        let before = listing(&s.base);
        let err = layer::extract(tar, Compression::None, &s.target, &opts)
            .expect_err("hostile layer was accepted");
        let msg = err.to_string();
        assert!(
            msg.contains(entry),
            "error {msg:?} does not name entry {entry:?}"
        );
        assert_eq!(
            listing(&s.base),
            before,
            "something appeared beside the target"
        );
        assert_eq!(
            listing(&s.base.join("sentinel")),
            vec![s.base.join("sentinel/file")]
        );
        assert_eq!(
            fs::read(s.base.join("sentinel/file")).unwrap(),
            b"untouched"
        );
        for p in outside {
            assert!(
                !p.exists(),
                "{} was created outside the target",
                p.display()
            );
        }
    }
}

fn host_path() -> String {
    format!("etc/boxkit-hostile-{}", std::process::id())
}

#[test]
fn dotdot_entry_is_rejected() {
    let tar = raw_tar(&[E::File("../x", b"pwned")]);
    assert_rejected(&tar, "../x", &[]);
    let tar = raw_tar(&[E::File("a/../../sentinel/x", b"pwned")]);
    assert_rejected(&tar, "a/../../sentinel/x", &[]);
}

#[test]
fn absolute_entry_is_rejected() {
    let name = format!("/{}", host_path());
    let tar = raw_tar(&[E::File(&name, b"pwned")]);
    assert_rejected(&tar, &name, &[Path::new(&name)]);
}

#[test]
fn write_through_planted_symlink_to_root_is_rejected() {
    let name = format!("a/{}", host_path());
    let tar = raw_tar(&[E::Symlink("a", "/"), E::File(&name, b"pwned")]);
    let host = format!("/{}", host_path());
    assert_rejected(&tar, &name, &[Path::new(&host)]);
}

#[test]
fn write_through_planted_symlink_to_parent_is_rejected() {
    let tar = raw_tar(&[
        E::Symlink("up", ".."),
        E::File("up/sentinel/pwned", b"pwned"),
    ]);
    assert_rejected(&tar, "up/sentinel/pwned", &[]);
    // The same through a directory the archive made first.
    let tar = raw_tar(&[
        E::Dir("d"),
        E::Symlink("d/up", "../.."),
        E::File("d/up/pwned", b"pwned"),
    ]);
    assert_rejected(&tar, "d/up/pwned", &[]);
}

#[test]
fn hardlink_to_host_file_is_rejected() {
    let tar = raw_tar(&[E::Hardlink("h", "/etc/shadow")]);
    assert_rejected(&tar, "h", &[]);
    let tar = raw_tar(&[E::Hardlink("h", "../sentinel/file")]);
    assert_rejected(&tar, "h", &[]);
    // A hardlink through a symlink, even one that stays inside, is refused.
    let tar = raw_tar(&[E::Symlink("s", "/"), E::Hardlink("h", "s/etc/shadow")]);
    assert_rejected(&tar, "h", &[]);
}

#[test]
fn whiteout_of_dotdot_is_rejected() {
    assert_rejected(&raw_tar(&[E::File(".wh...", b"")]), ".wh...", &[]);
    assert_rejected(
        &raw_tar(&[E::Dir("dir"), E::File("dir/.wh...", b"")]),
        "dir/.wh...",
        &[],
    );
}

#[test]
fn symlink_from_lower_layer_stays_inside_the_root() {
    // A lower layer's absolute symlink is resolved as if the target were `/`: the write lands
    // inside the target, never on the host.
    let s = scene();
    std::os::unix::fs::symlink("/", s.target.join("lowerlink")).unwrap();
    let name = format!("lowerlink/{}", host_path());
    let tar = raw_tar(&[E::File(&name, b"inside")]);
    layer::extract(
        &tar[..],
        Compression::None,
        &s.target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert!(!Path::new(&format!("/{}", host_path())).exists());
    assert_eq!(fs::read(s.target.join(host_path())).unwrap(), b"inside");
}

#[test]
fn corrupt_gzip_is_an_error() {
    let s = scene();
    let mut blob = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    blob.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let err = layer::extract(
        &blob[..],
        Compression::Gzip,
        &s.target,
        &ExtractOptions::default(),
    );
    assert!(err.is_err());
    // A valid gzip stream with a flipped byte in its middle fails too (CRC or deflate error).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw_tar(&[E::File("f", &[b'x'; 5000])]))
        .unwrap();
    let mut blob = gz.finish().unwrap();
    let mid = blob.len() / 2;
    blob[mid] ^= 0x55;
    let s = scene();
    assert!(
        layer::extract(
            &blob[..],
            Compression::Gzip,
            &s.target,
            &ExtractOptions::default()
        )
        .is_err()
    );
}

#[test]
fn truncated_tar_is_an_error() {
    let tar = raw_tar(&[E::File("big", &[b'y'; 10_000])]);
    for cut in [100, 512, 700, 5000] {
        let s = scene();
        let err = layer::extract(
            &tar[..cut],
            Compression::None,
            &s.target,
            &ExtractOptions::default(),
        )
        .expect_err("truncated tar accepted");
        if cut > 512 {
            assert!(err.to_string().contains("big"), "{err}");
        }
    }
}

/// Found by the property test in tests/security/extraction.rs: a file where a later entry
/// needs a parent directory was a panic (a crashed pull); it is an error naming the entry.
#[test]
fn a_file_in_the_way_of_a_parent_directory_is_an_error_not_a_panic() {
    let tar = raw_tar(&[E::File("a", b"x"), E::File("a/b", b"y")]);
    assert_rejected(&tar, "a/b", &[]);
}
