//! umoci/containerd extraction: traversal, symlink and hardlink escapes, whiteouts of `..`,
//! decompression bombs — through `box pull` of images that Python's tarfile made and skopeo
//! pushed, as root and rootless; plus a property test of the extractor itself over 10,000
//! random archives.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::build_common::{Env, stderr};
use crate::support::{
    Canary, assert_failed_with, assert_store_owners, box_, envs_with_registry, hostile_image,
};

/// No half-extracted layer may be left behind: every layer dir is complete.
fn assert_layers_complete(env: &Env) {
    for e in std::fs::read_dir(env.store().join("layers"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        // The marker of a synced tree, or of one unpacked in this boot (layer::cache).
        let marked = std::fs::read_dir(&p).is_ok_and(|d| {
            d.flatten().any(|m| {
                let n = m.file_name().to_string_lossy().into_owned();
                n == "complete" || n.starts_with("complete-boot-")
            })
        });
        assert!(
            marked,
            "{}: incomplete layer dir {}",
            env.who.label(),
            p.display()
        );
    }
}

#[test]
fn hostile_layers_are_refused_on_pull_and_nothing_leaves_the_store() {
    for env in envs_with_registry() {
        let canary = Canary::plant_for(&env.who);
        let dir = canary.dir.to_string_lossy().into_owned();
        let file = canary.file.to_string_lossy().into_owned();
        let up = format!("../../../../../../../..{file}");
        let f = |name: &str| json!({"name": name, "type": "file", "data": "pwned\n"});
        let cases: Vec<(&str, Value, &str)> = vec![
            ("traversal", json!([[f(&up)]]), "`..` component"),
            ("absolute", json!([[f(&file)]]), "absolute path"),
            (
                "symlink-then-through",
                json!([[{"name": "a", "type": "symlink", "link": dir}, f("a/file")]]),
                "created by this same layer",
            ),
            (
                "hardlink-out",
                json!([[{"name": "h", "type": "hardlink", "link": up}]]),
                "outside the layer root",
            ),
            (
                "hardlink-absolute",
                json!([[{"name": "h", "type": "hardlink", "link": "/etc/passwd"}]]),
                "outside the layer root",
            ),
            (
                "whiteout-dotdot",
                json!([[{"name": "etc/.wh...", "type": "file"}]]),
                "names no deletable entry",
            ),
        ];
        for (name, layers, needle) in cases {
            let img = hostile_image(
                &env,
                &format!("x-{name}"),
                json!({"base": "busybox", "layers": layers}),
            );
            let o = box_(&env, &["pull", &img]);
            assert_failed_with(&o, &[needle]);
            canary.assert_untouched();
        }
        // A symlink to the host in one layer, written through by the next: each layer is
        // extracted into its own directory, resolved inside it, so this is harmless.
        let img = hostile_image(
            &env,
            "x-two-layers",
            json!({"base": "busybox", "layers": [
                [{"name": "a", "type": "symlink", "link": dir}],
                [f("a/file"), {"name": "a/.wh.file2", "type": "file"}, {"name": "a/.wh..wh..opq", "type": "file"}]
            ]}),
        );
        let o = box_(&env, &["pull", &img]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        canary.assert_untouched();
        assert_store_owners(&env);
        assert_layers_complete(&env);
    }
}

#[test]
fn a_decompression_bomb_stops_at_the_layer_size_limit() {
    for env in envs_with_registry() {
        let zeros = "\0".repeat(4 << 20);
        let img = hostile_image(
            &env,
            "bomb",
            json!({"base": null, "layers": [[{"name": "zeros", "type": "file", "data": zeros}]]}),
        );
        let o = env.cmd_env("box", &["pull", &img], &[("BOX_MAX_LAYER_SIZE", "1m")]);
        assert_failed_with(
            &o,
            &["exceeds the limit of 1048576 bytes", "BOX_MAX_LAYER_SIZE"],
        );
        assert_layers_complete(&env);
        assert!(
            std::fs::read_dir(env.store().join("layers"))
                .unwrap()
                .next()
                .is_none(),
            "a layer was stored"
        );
    }
}

// ---- the extractor, property-tested -----------------------------------------------------

const NAMES: &[&str] = &[
    "a",
    "b",
    "a/b",
    "a/b/c",
    "b/a",
    "..",
    "../x",
    "a/../..",
    "/",
    "/etc/x",
    "./a",
    "a//b",
    ".wh.a",
    "a/.wh.b",
    ".wh..wh..opq",
    "a/.wh..wh..opq",
    ".wh...",
    "c/d/e/f",
];
const TARGETS: &[&str] = &[
    "a",
    "a/b",
    "..",
    "../../..",
    "/",
    "/etc",
    "/etc/passwd",
    "b/../..",
    "c",
];
const IDS: &[u64] = &[0, 1, 1000, 65534, 65535, 65536, 66536, 4_294_967_000];

#[derive(Debug, Clone)]
struct E {
    kind: u8,
    name: &'static str,
    target: &'static str,
    uid: u64,
    gid: u64,
    mode: u32,
}

fn entry() -> impl Strategy<Value = E> {
    (
        0u8..8,
        prop::sample::select(NAMES),
        prop::sample::select(TARGETS),
        prop::sample::select(IDS),
        prop::sample::select(IDS),
        0u32..0o10000,
    )
        .prop_map(|(kind, name, target, uid, gid, mode)| E {
            kind,
            name,
            target,
            uid,
            gid,
            mode,
        })
}

fn put(field: &mut [u8], v: &str) {
    field[..v.len()].copy_from_slice(v.as_bytes());
}

/// A tar with names and ids written byte for byte (the tar crate's raw header API).
fn raw_tar(entries: &[E]) -> Vec<u8> {
    use tar::EntryType::*;
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let kind = [
            Regular, Directory, Symlink, Link, Fifo, Char, Block, Regular,
        ][e.kind as usize];
        let gnu = h.as_gnu_mut().unwrap();
        put(&mut gnu.name, e.name);
        if matches!(kind, Symlink | Link) {
            put(&mut gnu.linkname, e.target);
        }
        h.set_entry_type(kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(1_700_000_000);
        if matches!(kind, Char | Block) {
            h.set_device_major(8).unwrap();
            h.set_device_minor(1).unwrap();
        }
        let data: &[u8] = if kind == Regular { b"data" } else { b"" };
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Everything under `p`: path → (type bits, mode, uid, gid, rdev, size).
/// /dev/shm when it is a writable tmpfs (it takes user xattrs since Linux 6.6, which the
/// overlay form writes), else the target's temp directory.
fn scratch_base() -> &'static Path {
    static BASE: std::sync::OnceLock<&'static Path> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let ok = tempfile::tempdir_in(shm).is_ok_and(|d| {
            let f = d.path().join("x");
            std::fs::write(&f, b"").is_ok() && xattr_ok(&f)
        });
        if ok {
            shm
        } else {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
        }
    })
}

fn xattr_ok(f: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(f.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated path and name, a one-byte value that outlives the call.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"user.boxkit-test".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        ) == 0
    }
}

fn listing(p: &Path) -> BTreeMap<String, (u32, u32, u32, u64, u64)> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, (u32, u32, u32, u64, u64)>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, (m.mode(), m.uid(), m.gid(), m.rdev(), m.size()));
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    walk(p, p, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Random entries — names with `..`, absolute names, whiteouts, symlinks and hardlinks
    /// aimed out of the root, devices, ids inside and outside the range, any mode — in both
    /// layer forms: nothing outside the target changes, nothing inside it gets an owner
    /// outside the container range, and no device node is created (only overlay's 0/0
    /// whiteouts).
    #[test]
    fn random_archives_never_escape_and_never_store_a_foreign_owner(
        entries in prop::collection::vec(entry(), 0..10),
        overlay in any::<bool>(),
    ) {
        if !nix::unistd::geteuid().is_root() {
            crate::common::skip("extraction with real owners needs root");
            return Ok(());
        }
        // On a tmpfs: each case creates and deletes a few files, and on the CI machine's disk
        // (ext4 without a journal, which re-reads inode tables to skip recently freed inodes)
        // ten thousand cases cost 84 s, mostly I/O wait, against 14 s here: the extractor's
        // syscalls and checks are the same.
        let base = tempfile::tempdir_in(scratch_base()).unwrap();
        let target = base.path().join("target");
        std::fs::create_dir(&target).unwrap();
        // Siblings of the target: a directory and a file any escape would reach first.
        std::fs::create_dir(base.path().join("etc")).unwrap();
        std::fs::File::create(base.path().join("etc/passwd")).unwrap().write_all(b"root\n").unwrap();
        std::fs::write(base.path().join("x"), b"x").unwrap();
        let before = listing(base.path());

        let opts = boxkit::layer::ExtractOptions {
            mode: if overlay {
                boxkit::layer::ExtractMode::Overlay(boxkit::layer::OverlayXattr::User)
            } else {
                boxkit::layer::ExtractMode::Flatten
            },
            ..Default::default()
        };
        let _ = boxkit::layer::extract(&raw_tar(&entries)[..], boxkit::layer::Compression::None, &target, &opts);

        let after = listing(base.path());
        let outside = |m: &BTreeMap<String, _>| -> BTreeMap<String, (u32, u32, u32, u64, u64)> {
            m.iter().filter(|(k, _)| !k.starts_with("target")).map(|(k, v)| (k.clone(), *v)).collect()
        };
        prop_assert_eq!(outside(&before), outside(&after));
        for (path, (mode, uid, gid, rdev, _)) in listing(&target) {
            prop_assert!(uid < 65536 && gid < 65536, "{} owned by {}:{}", path, uid, gid);
            let ft = mode & libc::S_IFMT;
            prop_assert!(ft != libc::S_IFBLK, "block device {}", path);
            prop_assert!(ft != libc::S_IFCHR || (overlay && rdev == 0), "char device {}", path);
        }
        let _ = std::fs::FileType::is_fifo;
    }
}
