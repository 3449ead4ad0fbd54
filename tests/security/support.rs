//! What every class in the suite needs: hostile images made by Python's tarfile and pushed
//! with skopeo, host canaries, and a check of the owners of everything boxkit stored.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build_common::{Env, Who};
use crate::common::{self, users};

/// Build the image described by `spec` (see tests/fixtures/images/hostile.py) and push it to
/// the Env's registry as `name:latest`; returns the name to pull (`REGISTRY/name`).
pub fn hostile_image(env: &Env, name: &str, spec: serde_json::Value) -> String {
    let reg = env.registry.as_ref().expect("Env::with_registry");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/hostile.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&layout)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), spec.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "hostile.py failed");
    let src = format!("oci:{}:latest", layout.display());
    let dest = reg.docker_ref(name);
    common::fixtures::skopeo(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    reg.image(name)
}

/// A host file and directory whose stat and content must survive the test unchanged.
pub struct Canary {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub file: PathBuf,
    before: Vec<String>,
}

fn describe(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            let content = if m.is_file() {
                std::fs::read(p).unwrap_or_default()
            } else {
                vec![]
            };
            format!(
                "{} mode={:o} owner={}:{} size={} mtime={} content={:?}",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                String::from_utf8_lossy(&content)
            )
        }
        Err(e) => format!("{}: {e}", p.display()),
    }
}

impl Canary {
    /// A fresh canary directory under /tmp (world-traversable, as /tmp is) holding `file`.
    pub fn plant() -> Canary {
        let d = tempfile::Builder::new()
            .prefix("boxkit-canary-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = d.path().to_path_buf();
        let file = dir.join("file");
        std::fs::write(&file, "canary\n").unwrap();
        let mut c = Canary {
            _dir: d,
            dir,
            file,
            before: vec![],
        };
        c.before = c.snapshot();
        c
    }

    /// Like [`Canary::plant`], but in /var/tmp and world-writable and sticky (mode 1777, as
    /// /tmp is), so that a write escaping from a container — whose root is an unprivileged
    /// host id — would land there and show. Not under /tmp: a container's own mount namespace
    /// covers /tmp with its scratch tmpfs while it is set up, which would hide a /tmp canary
    /// from exactly the escapes it is meant to catch.
    pub fn plant_writable() -> Canary {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::Builder::new()
            .prefix("boxkit-canary-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let dir = d.path().to_path_buf();
        let file = dir.join("file");
        std::fs::write(&file, "canary\n").unwrap();
        let mut c = Canary {
            _dir: d,
            dir,
            file,
            before: vec![],
        };
        c.before = c.snapshot();
        c
    }

    fn snapshot(&self) -> Vec<String> {
        let mut v = vec![describe(&self.dir), describe(&self.file)];
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        v.push(format!("entries={names:?}"));
        v
    }

    pub fn assert_untouched(&self) {
        assert_eq!(self.snapshot(), self.before, "a host canary changed");
    }
}

/// The host ids container ids map to, for `who`: root's subordinate range, or the user's own
/// id plus its range.
#[allow(clippy::single_range_in_vec_init)] // a list of ranges that may hold one
pub fn container_host_ids(who: &Who) -> Vec<std::ops::Range<u32>> {
    match who {
        Who::Root => {
            let (s, n) = users::ROOT_RANGE;
            vec![s..s + n]
        }
        Who::User(u) => {
            // useradd may have given the user a range of its own before users::with_range()
            // ran, so read the one it really has.
            let mut v = vec![u.uid..u.uid + 1];
            let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
            for l in subuid.lines() {
                let f: Vec<&str> = l.split(':').collect();
                if let [name, s, n] = f[..]
                    && name == u.name
                    && let (Ok(s), Ok(n)) = (s.parse::<u32>(), n.parse::<u32>())
                {
                    v.push(s..s + n);
                }
            }
            v
        }
    }
}

/// Every file under the store's image content (unpacked layers, container and volume data)
/// whose owner or group is outside `ranges`, or which is setuid/setgid to such an id.
pub fn foreign_owners(store: &Path, ranges: &[std::ops::Range<u32>]) -> Vec<String> {
    let inside = |id: u32| ranges.iter().any(|r| r.contains(&id));
    let mut bad = vec![];
    let mut stack: Vec<PathBuf> = ["layers", "containers", "volumes"]
        .iter()
        .map(|d| store.join(d))
        .filter(|p| p.exists())
        .collect();
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !inside(m.uid()) || !inside(m.gid()) {
            bad.push(format!(
                "{} owner {}:{} mode {:o}",
                p.display(),
                m.uid(),
                m.gid(),
                m.mode()
            ));
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(e.path());
            }
        }
    }
    bad
}

/// Assert that nothing boxkit stored for `env` belongs to a host id outside the container
/// range.
pub fn assert_store_owners(env: &Env) {
    let bad = foreign_owners(&env.store(), &container_host_ids(&env.who));
    assert!(
        bad.is_empty(),
        "stored files with foreign owners:\n{}",
        bad.join("\n")
    );
}

/// `boxrun --root STORE ARGS…` as the Env's user, through its registry mirror.
pub fn boxrun(env: &Env, args: &[&str]) -> Output {
    env.cmd("boxrun", args)
}

/// `box --root STORE ARGS…` as the Env's user, through its registry mirror.
pub fn box_(env: &Env, args: &[&str]) -> Output {
    env.cmd("box", args)
}
