//! Fixture images, made by tools independent of boxkit: `tests/fixtures/images/build.py`
//! (Python's tarfile/gzip/hashlib/json) writes OCI layouts, skopeo pushes them into a real
//! registry and writes OCI archives, debootstrap makes the Debian root filesystem.
//!
//! Everything is built once and cached, keyed by a hash of its inputs (the build script, the
//! busybox binaries, the Debian tarball): the small images under
//! `target/tmp/boxkit-fixtures/<key>/`, the multi-arch busybox under
//! `target/tmp/boxkit-fixtures/multiarch-<key>/` (its arm64 binary downloaded once per machine
//! into `/var/cache/boxkit-test/`), the Debian image under `/var/cache/boxkit-test/`
//! (it takes a minute to make, so once per machine). For each image the cache also keeps a
//! *registry storage template*: the storage directory of a real `docker-registry` after skopeo
//! pushed the image into it. [`seed`] copies that template into a test's registry (blobs are
//! hardlinked), which takes milliseconds instead of a skopeo push per image per test.
//!
//! ```ignore
//! let reg = Registry::start();
//! fixtures::seed(&reg, &[Fixture::Busybox, Fixture::Layered, Fixture::Multi]);
//! let archive = fixtures::oci_archive(Fixture::Busybox); // for `box load`
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::registry::Registry;

/// Bump to invalidate every cached fixture when this file changes what it builds.
const HARNESS_VERSION: &str = "boxkit-fixtures-1";
const BUSYBOX: &str = "/bin/busybox";
const DEBIAN_CACHE: &str = "/var/cache/boxkit-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fixture {
    /// `library/busybox:latest`: Docker schema2 manifest, one gzip layer with busybox-static and
    /// its applet symlinks in /bin, /etc/passwd (root, app 1000, nobody 65534), /etc/group,
    /// /tmp 1777, /root 0700, /home/app owned by 1000; Cmd ["sh"], PATH; linux/amd64.
    Busybox,
    /// `library/layered:latest`: OCI manifest, two gzip layers. Layer 1 = the busybox tree plus
    /// /etc/kept.txt, /etc/kept-hardlink.txt (hardlink), /etc/removed.txt, /data/{a.txt,
    /// link-to-a -> a.txt, sub/b.txt}; layer 2 = /etc/.wh.removed.txt, /etc/added.txt,
    /// /data/.wh..wh..opq, /data/new.txt. Merged: /data holds only new.txt.
    Layered,
    /// `library/multi:latest`: OCI image index with linux/amd64 and linux/arm64 (variant v8);
    /// each image has one layer with a file /platform containing "linux/amd64\n" or
    /// "linux/arm64\n" (no shell: not runnable).
    Multi,
    /// `library/busybox:multiarch`: OCI image index with linux/amd64 and linux/arm64 (variant
    /// v8), each the busybox tree of [`Fixture::Busybox`] with that architecture's Debian
    /// busybox-static binary (the same package version). Runnable: amd64 natively, arm64 under
    /// QEMU (qemu-user-static + the binfmt entry of `scripts/host-setup.sh`). Its arm64 binary
    /// comes from `tests/fixtures/images/get-busybox.sh` (root and the Debian mirror the first
    /// time), so it is not in [`Fixture::SMALL`].
    BusyboxMultiarch,
    /// `library/debian:bookworm`: Docker schema2, one gzip layer = the debootstrap minbase
    /// rootfs ([`debian_rootfs_tar`], ~120 MB unpacked, ~40 MB compressed); Cmd ["bash"].
    Debian,
}

impl Fixture {
    /// The small images, cheap enough to seed into every registry.
    pub const SMALL: &'static [Fixture] = &[Fixture::Busybox, Fixture::Layered, Fixture::Multi];
    pub const ALL: &'static [Fixture] = &[
        Fixture::Busybox,
        Fixture::Layered,
        Fixture::Multi,
        Fixture::BusyboxMultiarch,
        Fixture::Debian,
    ];

    /// Repository and tag inside a registry, e.g. "library/busybox:latest". Through the
    /// docker.io mirror config this is `docker.io/library/busybox:latest` (short: `busybox`).
    pub fn name(self) -> &'static str {
        match self {
            Fixture::Busybox => "library/busybox:latest",
            Fixture::Layered => "library/layered:latest",
            Fixture::Multi => "library/multi:latest",
            Fixture::BusyboxMultiarch => "library/busybox:multiarch",
            Fixture::Debian => "library/debian:bookworm",
        }
    }

    pub fn repository(self) -> &'static str {
        self.name().split_once(':').unwrap().0
    }

    pub fn tag(self) -> &'static str {
        self.name().split_once(':').unwrap().1
    }

    /// "busybox", "layered", "multi", "busybox-multiarch", "debian": the name of its layout,
    /// template and archive in the cache.
    pub fn short(self) -> &'static str {
        match self {
            Fixture::BusyboxMultiarch => "busybox-multiarch",
            _ => self.repository().rsplit('/').next().unwrap(),
        }
    }

    /// The manifest media type the registry serves for [`Fixture::name`].
    pub fn media_type(self) -> &'static str {
        match self {
            Fixture::Busybox | Fixture::Debian => {
                "application/vnd.docker.distribution.manifest.v2+json"
            }
            Fixture::Layered => "application/vnd.oci.image.manifest.v1+json",
            Fixture::Multi | Fixture::BusyboxMultiarch => "application/vnd.oci.image.index.v1+json",
        }
    }

    /// skopeo flags that give the registry copy its media type.
    fn push_flags(self) -> &'static [&'static str] {
        match self {
            Fixture::Busybox | Fixture::Debian => &["--format", "v2s2"],
            Fixture::Layered => &["--format", "oci"],
            Fixture::Multi | Fixture::BusyboxMultiarch => &["--all"],
        }
    }

    fn cache(self) -> &'static Path {
        match self {
            Fixture::Debian => debian_cache(),
            Fixture::BusyboxMultiarch => multiarch_cache(),
            _ => small_cache(),
        }
    }
}

/// The OCI image layout of a fixture (as build.py wrote it; all media types OCI), tagged
/// "latest". Use as `oci:{path}:latest` with skopeo/umoci.
pub fn layout(f: Fixture) -> PathBuf {
    f.cache().join("layouts").join(f.short())
}

/// An OCI archive (tar of an OCI layout) made by `skopeo copy … oci-archive:PATH:NAME`, with the
/// image named `<short>:<tag>` (e.g. "busybox:latest"), for `box load` tests. Multi keeps its
/// index (so does BusyboxMultiarch). Shared and cached: do not modify it.
pub fn oci_archive(f: Fixture) -> PathBuf {
    f.cache()
        .join("archives")
        .join(format!("{}.tar", f.short()))
}

/// Put fixture images into a running (or not yet started) registry by copying the cached
/// registry storage templates: blobs hardlinked (the registry only ever creates, renames and
/// deletes blob files, never rewrites them), repository metadata copied (the registry rewrites
/// link files in place). Works for registries with auth too.
pub fn seed(reg: &Registry, fixtures: &[Fixture]) {
    let dest = reg.storage_dir();
    for &f in fixtures {
        let template = f.cache().join("templates").join(f.short());
        merge_tree(&template, &dest).unwrap_or_else(|e| panic!("seed {f:?}: {e}"));
    }
}

/// Push a fixture with skopeo to another name in `reg` (a real push, e.g. for push-over or
/// permission tests), with the registry's credentials if it has them.
pub fn push(reg: &Registry, f: Fixture, dest_name: &str) {
    let src = format!("oci:{}:latest", layout(f).display());
    let dest = reg.docker_ref(dest_name);
    let mut args = vec!["copy", "-q", "--dest-tls-verify=false"];
    args.extend_from_slice(f.push_flags());
    let creds;
    if let Some((u, p)) = reg.credentials() {
        creds = format!("{u}:{p}");
        args.extend(["--dest-creds", creds.as_str()]);
    }
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(&args);
}

/// The debootstrap Debian fixture: a bookworm minbase root filesystem as a plain tar, made
/// once per machine by `tests/fixtures/images/make-debian.sh` (needs root and the Debian
/// mirror the first time; ~1 minute) and cached at `/var/cache/boxkit-test/debian-minbase.tar`
/// (override: `BOX_DEBIAN_FIXTURE`).
pub fn debian_rootfs_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(images_dir().join("make-debian.sh"))
            .output()
            .expect("run make-debian.sh");
        assert!(
            out.status.success(),
            "make-debian.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        if start.elapsed().as_secs() > 2 {
            eprintln!("fixtures: debian rootfs made in {:?}", start.elapsed());
        }
        path
    })
    .clone()
}

/// The arm64 busybox-static binary of [`Fixture::BusyboxMultiarch`], downloaded once per machine
/// by `tests/fixtures/images/get-busybox.sh` (root and the Debian mirror the first time; it adds
/// the arm64 dpkg architecture) to `/var/cache/boxkit-test/busybox-static-arm64/bin/busybox`.
pub fn busybox_arm64() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(images_dir().join("get-busybox.sh"))
            .arg("arm64")
            .output()
            .expect("run get-busybox.sh");
        assert!(
            out.status.success(),
            "get-busybox.sh arm64 failed (run scripts/install-deps.sh as root):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// Run skopeo; panics with its stderr on failure, returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `skopeo inspect --raw` of an image in `reg`, parsed.
pub fn raw_manifest(reg: &Registry, name: &str) -> serde_json::Value {
    let r = reg.docker_ref(name);
    let creds;
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some((u, p)) = reg.credentials() {
        creds = format!("{u}:{p}");
        args.extend(["--creds", creds.as_str()]);
    }
    args.push(&r);
    serde_json::from_str(&skopeo(&args)).expect("manifest JSON")
}

fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

fn small_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(HARNESS_VERSION);
        h.update(fs::read(images_dir().join("build.py")).unwrap());
        h.update(fs::read(BUSYBOX).unwrap_or_else(|e| {
            panic!("{BUSYBOX}: {e} (install the Debian package busybox-static)")
        }));
        let key = hex::encode(&h.finalize()[..8]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("boxkit-fixtures")
            .join(key);
        cached(&dir, |tmp| {
            python(&[
                "small",
                tmp.join("layouts").to_str().unwrap(),
                "--busybox",
                BUSYBOX,
            ]);
            for &f in Fixture::SMALL {
                finish(tmp, f);
            }
        });
        dir
    })
}

fn multiarch_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let arm64 = busybox_arm64();
        let mut h = Sha256::new();
        h.update(HARNESS_VERSION);
        h.update(fs::read(images_dir().join("build.py")).unwrap());
        for bin in [Path::new(BUSYBOX), arm64.as_path()] {
            h.update(fs::read(bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display())));
        }
        let key = hex::encode(&h.finalize()[..8]);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("boxkit-fixtures")
            .join(format!("multiarch-{key}"));
        cached(&dir, |tmp| {
            let layouts = tmp.join("layouts");
            python(&[
                "multiarch",
                layouts.to_str().unwrap(),
                BUSYBOX,
                arm64.to_str().unwrap(),
            ]);
            finish(tmp, Fixture::BusyboxMultiarch);
        });
        dir
    })
}

fn debian_cache() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tar = debian_rootfs_tar();
        let meta = fs::metadata(&tar).unwrap();
        let mut h = Sha256::new();
        h.update(HARNESS_VERSION);
        h.update(fs::read(images_dir().join("build.py")).unwrap());
        // Size and mtime stand in for the content: hashing 120 MB in a debug build is slow.
        h.update(format!("{} {:?}", meta.len(), meta.modified().unwrap()));
        let key = hex::encode(&h.finalize()[..8]);
        let dir = Path::new(DEBIAN_CACHE).join(format!("debian-image-{key}"));
        cached(&dir, |tmp| {
            fs::create_dir_all(tmp.join("layouts")).unwrap();
            let out = tmp.join("layouts").join("debian");
            python(&["debian", tar.to_str().unwrap(), out.to_str().unwrap()]);
            finish(tmp, Fixture::Debian);
        });
        dir
    })
}

/// Registry template and OCI archive of one fixture whose layout exists under `dir/layouts`.
fn finish(dir: &Path, f: Fixture) {
    let src = format!(
        "oci:{}:latest",
        dir.join("layouts").join(f.short()).display()
    );
    let reg = Registry::start();
    let dest = reg.docker_ref(f.name());
    let mut args = vec!["copy", "-q", "--dest-tls-verify=false"];
    args.extend_from_slice(f.push_flags());
    args.extend([src.as_str(), dest.as_str()]);
    skopeo(&args);
    let template = dir.join("templates").join(f.short());
    merge_tree(&reg.storage_dir(), &template).unwrap();
    drop(reg);

    fs::create_dir_all(dir.join("archives")).unwrap();
    let archive = format!(
        "oci-archive:{}:{}:{}",
        dir.join("archives")
            .join(format!("{}.tar", f.short()))
            .display(),
        f.short(),
        f.tag()
    );
    let mut args = vec!["copy", "-q"];
    if matches!(f, Fixture::Multi | Fixture::BusyboxMultiarch) {
        args.push("--all");
    }
    args.extend([src.as_str(), archive.as_str()]);
    skopeo(&args);
}

fn python(args: &[&str]) {
    let out = Command::new("python3")
        .arg(images_dir().join("build.py"))
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "build.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Build `dir` once: under an flock (other test processes may want it at the same time), into a
/// temp dir beside it, renamed into place when complete.
fn cached(dir: &Path, build: impl FnOnce(&Path)) {
    // Threads of one test process serialise here; processes on the flock below.
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    if dir.is_dir() {
        return;
    }
    let parent = dir.parent().unwrap();
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let lock_path = dir.with_extension("lock");
    let lock_file = fs::File::create(&lock_path).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock fixture cache");
    if dir.is_dir() {
        return;
    }
    let start = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .unwrap();
    build(tmp.path());
    fs::rename(tmp.keep(), dir).unwrap();
    eprintln!("fixtures: built {} in {:?}", dir.display(), start.elapsed());
}

/// Copy the tree `src` into `dest` (merging with what is there). Files under a `blobs/`
/// directory are hardlinked when possible and kept if already present; others are copied.
fn merge_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dest)?;
    let in_blobs = src.components().any(|c| c.as_os_str() == "blobs");
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            merge_tree(&from, &to)?;
        } else if in_blobs {
            if !to.exists() && fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
        } else {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}
