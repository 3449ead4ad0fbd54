//! CI job containers for issue 13's test matrix: a job root filesystem made here (no image
//! tooling, no boxkit), run by the test's own podman ([`super::podman::Podman`]) with the
//! security settings of each cell, on the host network so the job reaches the test registry
//! on 127.0.0.1.
//!
//! The job root holds what a slim CI image holds and nothing more: busybox as `sh` and the
//! usual applets, `/etc/passwd` with root and `user` (1000:1000, HOME /home/user), `/tmp`
//! 1777, **no CA bundle** (no /etc/ssl), `/etc/containers/registries.conf` naming the test
//! registry as the docker.io mirror (insecure, plain HTTP) — the file a CI image would carry,
//! so the job passes no flags — and boxkit's `box`, `boxbuild`, `boxrun` in /usr/local/bin.
//! With [`JobRoot::with_fuse`] also `/usr/bin/fuse-overlayfs` and its libraries.
//!
//! Which boxkit binaries: by default the ones cargo built for this test run
//! (`CARGO_BIN_EXE_*`), hard-linked into the root, plus the shared libraries `ldd` names.
//! That tests exactly the code under test, costs nothing, and needs no second build in a
//! fresh CI clone. `BOX_TEST_JOB_STATIC=1` instead runs `scripts/build-release.sh` once per
//! test process (thin-LTO release, ~3 min cold) and uses the statically linked binaries the
//! issue ships, with no library beside them — the exact artefact a user would copy into a
//! job; worth a run before a release, too slow for every `cargo test`.
//!
//! ```ignore
//! let root = JobRoot::new(&reg);              // reg: the test's Registry with fixtures
//! let out = Job::new(&pm, &root, Cell::E1)
//!     .context(&ctx)                          // bound read-only at /ctx, the working dir
//!     .env("SOURCE_DATE_EPOCH", "0")
//!     .run(&["boxbuild", "-t", "…", "--push", "."]);
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::podman::Podman;
use super::registry::Registry;

/// The job's unprivileged user, as in most CI images (`USER 1000`).
pub const JOB_UID: u32 = 1000;
pub const JOB_HOME: &str = "/home/user";
/// Where the job sees the build context.
pub const JOB_CONTEXT: &str = "/ctx";
/// A job that has not finished after this long is killed (podman included), so a hang fails
/// the test instead of holding the suite.
pub const JOB_TIMEOUT_SECS: u32 = 600;

/// The cells of issue 13's matrix, plus E2d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `--user 1000:1000`, default caps and seccomp, store on the container's root fs
    /// (overlayfs), no CA bundle.
    E1,
    /// `--user 0`, default caps (no CAP_SYS_ADMIN), no /etc/subuid entry.
    E2,
    /// E2 under docker's default seccomp profile (moby's, `src/run/seccomp/default.json`),
    /// which refuses `unshare`/`clone` of namespaces without CAP_SYS_ADMIN: no user
    /// namespace at all, the least-isolated case.
    E2d,
    /// Kubernetes `restricted`: `--user 1000 --cap-drop=all --security-opt
    /// no-new-privileges --read-only`, one writable volume as HOME (nothing else writable:
    /// no tmpfs on /tmp either, as in a pod with `readOnlyRootFilesystem`).
    E3,
    /// E1 plus `--device /dev/fuse` (and fuse-overlayfs in the job root).
    E4,
}

impl Cell {
    pub const ALL: [Cell; 5] = [Cell::E1, Cell::E2, Cell::E2d, Cell::E3, Cell::E4];

    /// "e1", "e2", "e2d", …: used in tags.
    pub fn tag(self) -> &'static str {
        match self {
            Cell::E1 => "e1",
            Cell::E2 => "e2",
            Cell::E2d => "e2d",
            Cell::E3 => "e3",
            Cell::E4 => "e4",
        }
    }

    /// Whether the job runs as root inside the container.
    pub fn is_root(self) -> bool {
        matches!(self, Cell::E2 | Cell::E2d)
    }

    /// Whether the container's root filesystem is read-only (the store then lives in HOME,
    /// a volume).
    pub fn read_only(self) -> bool {
        self == Cell::E3
    }

    /// The `podman run` flags that make this cell (after `run --rm --network host`).
    pub fn podman_flags(self) -> Vec<String> {
        let mut f: Vec<String> = match self {
            Cell::E1 | Cell::E4 => vec!["--user".into(), format!("{JOB_UID}:{JOB_UID}")],
            Cell::E2 => vec!["--user".into(), "0".into()],
            Cell::E2d => vec![
                "--user".into(),
                "0".into(),
                "--security-opt".into(),
                format!("seccomp={}", docker_seccomp_profile().display()),
            ],
            Cell::E3 => vec![
                "--user".into(),
                JOB_UID.to_string(),
                "--cap-drop=all".into(),
                "--security-opt".into(),
                "no-new-privileges".into(),
                "--read-only".into(),
                // podman adds tmpfs on /tmp, /var/tmp and /run to a read-only container; a
                // Kubernetes pod gets none of them.
                "--read-only-tmpfs=false".into(),
            ],
        };
        if self == Cell::E4 {
            f.extend(["--device".into(), "/dev/fuse".into()]);
        }
        f
    }
}

/// moby's default seccomp profile, as kept in this repository (the runtime's JSON format,
/// which podman reads as it is).
pub fn docker_seccomp_profile() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/run/seccomp/default.json")
}

/// A job root filesystem in a temporary directory.
pub struct JobRoot {
    dir: tempfile::TempDir,
}

impl JobRoot {
    /// A job root whose registries.conf makes `reg` the docker.io mirror.
    pub fn new(reg: &Registry) -> JobRoot {
        Self::build(reg, false)
    }

    /// [`JobRoot::new`] plus fuse-overlayfs (for E4).
    pub fn with_fuse(reg: &Registry) -> JobRoot {
        Self::build(reg, true)
    }

    /// The right root for `cell`.
    pub fn for_cell(reg: &Registry, cell: Cell) -> JobRoot {
        Self::build(reg, cell == Cell::E4)
    }

    fn build(reg: &Registry, fuse: bool) -> JobRoot {
        let dir = tempfile::Builder::new()
            .prefix("boxkit-job-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("rootfs");
        for (d, mode) in [
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc/containers", 0o755),
            ("home", 0o755),
            ("proc", 0o755),
            ("root", 0o700),
            ("run", 0o755),
            ("sys", 0o755),
            ("tmp", 0o1777),
            ("usr/bin", 0o755),
            ("usr/local/bin", 0o755),
            ("var/tmp", 0o1777),
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            set_mode(&root.join(d), mode);
        }
        set_mode(&root, 0o755);
        install_busybox(&root);
        std::fs::write(
            root.join("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/sh\n\
                 user:x:{JOB_UID}:{JOB_UID}:CI job user:{JOB_HOME}:/bin/sh\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            format!("root:x:0:\nuser:x:{JOB_UID}:\n"),
        )
        .unwrap();
        let home = root.join(JOB_HOME.trim_start_matches('/'));
        std::fs::create_dir(&home).unwrap();
        chown(&home, JOB_UID);
        // The mirror config a CI image carries at the system path; the tools read it with no
        // flag or variable set.
        std::fs::copy(
            reg.registries_conf(),
            root.join("etc/containers/registries.conf"),
        )
        .unwrap();
        for (name, from) in boxkit_binaries() {
            install_binary(&root, &from, &format!("usr/local/bin/{name}"));
        }
        if fuse {
            install_binary(&root, Path::new(FUSE_OVERLAYFS), "usr/bin/fuse-overlayfs");
        }
        assert!(
            !root.join("etc/ssl").exists(),
            "a job root must have no CA bundle"
        );
        JobRoot { dir }
    }

    /// The root filesystem directory (for `podman run --rootfs`).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A scratch directory beside the root, removed with it (volumes, contexts).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A fresh directory owned by the job user, for a writable HOME volume (E3).
    pub fn home_volume(&self, name: &str) -> PathBuf {
        let p = self.scratch(name);
        chown(&p, JOB_UID);
        set_mode(&p, 0o755);
        p
    }
}

pub const FUSE_OVERLAYFS: &str = "/usr/bin/fuse-overlayfs";

/// One `podman run` of a job.
pub struct Job<'a> {
    pm: &'a Podman,
    root: &'a JobRoot,
    cell: Cell,
    context: Option<PathBuf>,
    home: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl<'a> Job<'a> {
    pub fn new(pm: &'a Podman, root: &'a JobRoot, cell: Cell) -> Job<'a> {
        Job {
            pm,
            root,
            cell,
            context: None,
            home: None,
            env: vec![],
        }
    }

    /// Bind `dir` read-only at [`JOB_CONTEXT`] and start there.
    pub fn context(mut self, dir: &Path) -> Self {
        self.context = Some(dir.to_path_buf());
        self
    }

    /// Mount `dir` (owned by the job user) read-write as HOME: E3's one writable volume.
    pub fn home(mut self, dir: &Path) -> Self {
        self.home = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The full command line, unrun.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "10", &JOB_TIMEOUT_SECS.to_string()]);
        let podman = self.pm.cmd();
        c.arg(podman.get_program());
        c.args(podman.get_args());
        for (k, v) in podman.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.args(["run", "--rm", "--network", "host"]);
        c.args(self.cell.podman_flags());
        if let Some(ctx) = &self.context {
            c.arg("-v")
                .arg(format!("{}:{JOB_CONTEXT}:ro", ctx.display()))
                .args(["-w", JOB_CONTEXT]);
        }
        if let Some(home) = &self.home {
            c.arg("-v").arg(format!("{}:{JOB_HOME}:rw", home.display()));
        }
        for (k, v) in &self.env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        // `:O`: podman mounts the directory as the lower layer of an overlay with a private
        // upper dir, so the job's root filesystem is overlayfs (as an image's is) and every run
        // starts from the same clean root: a store on it is fresh in every job.
        c.arg("--rootfs")
            .arg(format!("{}:O", self.root.rootfs().display()));
        c.args(argv);
        c
    }

    pub fn run(&self, argv: &[&str]) -> Output {
        let mut c = self.command(argv);
        c.output()
            .unwrap_or_else(|e| panic!("spawn podman for {:?}: {e}", self.cell))
    }

    /// Run `script` with the job's `sh -c`.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["/bin/sh", "-c", script])
    }
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, id: u32) {
    std::os::unix::fs::chown(p, Some(id), Some(id)).unwrap();
}

/// /bin/busybox (busybox-static) and a symlink per applet, `sh` among them.
fn install_busybox(root: &Path) {
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    assert!(list.status.success(), "busybox --list: {list:?}");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
}

/// Put `from` at `root/rel` (a hard link where possible: the debug binaries are ~130 MB) and
/// the shared libraries `ldd` lists for it at their own paths. A static binary lists none.
fn install_binary(root: &Path, from: &Path, rel: &str) {
    let to = root.join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, &to).is_err() {
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    for lib in shared_libraries(from) {
        let dest = root.join(lib.strip_prefix("/").unwrap());
        if dest.exists() {
            continue;
        }
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
}

/// The absolute paths in `ldd`'s output (libraries and the loader), with symlinks resolved
/// to the file but kept under the name the binary asks for.
pub fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    // A static binary: ldd says "not a dynamic executable" and exits 1.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// (name, path) of box, boxbuild and boxrun: the test run's own binaries, or with
/// `BOX_TEST_JOB_STATIC=1` the static release build (built once per test process).
pub fn boxkit_binaries() -> Vec<(&'static str, PathBuf)> {
    let names = ["box", "boxbuild", "boxrun"];
    if std::env::var("BOX_TEST_JOB_STATIC").is_ok_and(|v| v == "1") {
        let dir = static_release_dir();
        names.iter().map(|n| (*n, dir.join(n))).collect()
    } else {
        names.iter().map(|n| (*n, super::bin(n))).collect()
    }
}

/// `scripts/build-release.sh` once per process; the directory it prints.
pub fn static_release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/build-release.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        for n in ["box", "boxbuild", "boxrun"] {
            assert!(
                shared_libraries(&dir.join(n)).is_empty(),
                "{n} in {} is not static",
                dir.display()
            );
        }
        dir
    })
}
