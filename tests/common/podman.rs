//! podman as an independent reference runtime for interop tests, isolated from the host: its
//! own `--root`/`--runroot` in a temp dir (vfs storage: no mounts left behind), cgroupfs
//! (no systemd here), events to a file, and the host quirks handled (see
//! `scripts/host-setup.sh`).
//!
//! ```ignore
//! let Some(pm) = Podman::new_or_skip() else { return };
//! let out = pm.cmd().env("CONTAINERS_REGISTRIES_CONF", reg.registries_conf())
//!     .args(["run", "--rm", "docker.io/library/busybox", "true"]).output().unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        host_setup();
        let dir = tempfile::Builder::new()
            .prefix("boxkit-podman-")
            .tempdir()
            .unwrap();
        // Root lacks CAP_SYS_RESOURCE here, so podman's default rlimits for root (nofile
        // 1048576, nproc 4194304) make crun's setrlimit fail with EPERM. Pin them low instead.
        // (nproc fails well below the hard limit too, hence the fixed small value.)
        let nofile = hard_limit("Max open files").min(16384);
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=16384:16384\"]\n\
             [engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n"
        );
        std::fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Podman { dir }
    }

    /// `Podman::new()`, or `None` after [`super::skip`] when podman is missing or not root.
    pub fn new_or_skip() -> Option<Podman> {
        if !super::have_tool("podman") {
            super::skip("podman is not installed");
            return None;
        }
        if !super::is_root() {
            super::skip("the podman interop helper runs podman as root");
            return None;
        }
        Some(Self::new())
    }

    /// `podman --root … --runroot … --storage-driver vfs` with `CONTAINERS_CONF` set; add the
    /// subcommand and set `CONTAINERS_REGISTRIES_CONF` as needed.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"));
        c
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers left by a failed test hold nothing mounted with vfs, but podman's state
        // would keep conmon processes around; ask it to clean up before the dir goes.
        let _ = self
            .cmd()
            .args(["rm", "--all", "--force", "--time", "0"])
            .output();
    }
}

fn hard_limit(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l[name.len()..].split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// Run `scripts/host-setup.sh` once per process (as root; idempotent), so that podman tests also
/// pass under a bare `cargo test`, not only under `scripts/test.sh`.
pub fn host_setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !super::is_root() {
            return;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/host-setup.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}
