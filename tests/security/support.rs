//! What every class in the suite needs: hostile images made by Python's tarfile and pushed
//! with skopeo, host canaries, and a check of the owners of everything boxkit stored.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build_common::{Env, Who};
use crate::common::{self, users};

/// Build the image described by `spec` (see tests/fixtures/images/hostile.py) and push it to
/// the Env's registry (the docker.io mirror) as `library/NAME:latest`; returns NAME, which
/// boxkit resolves to `docker.io/library/NAME:latest` through the mirror, as a user would.
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
    let dest = reg.docker_ref(&format!("library/{name}:latest"));
    common::fixtures::skopeo(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    name.to_string()
}

/// Write a plain tar of `entries` (hostile.py's entry format) to `path`.
pub fn hostile_tar(path: &Path, entries: serde_json::Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/hostile.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--tar")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        entries.to_string().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "hostile.py --tar failed");
}

/// The first id outside the container range of `who` (in the tool's namespace numbering):
/// root's containers hold 0…65535; a user with a subordinate range holds its own uid as 0 and
/// the 65536 ids of its range as 1…65536.
pub fn first_foreign_id(who: &Who) -> u32 {
    match who {
        Who::Root => 65536,
        Who::User(_) => 65537,
    }
}

/// Assert that `o` failed, with every one of `needles` in its stderr.
pub fn assert_failed_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected a failure, got success; stderr:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
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
            let mut shown = String::from_utf8_lossy(&content).into_owned();
            if shown.len() > 40 {
                shown = format!("{}… ({} bytes)", &shown[..40], content.len());
            }
            format!(
                "{} mode={:o} owner={}:{} size={} mtime={} content={shown:?}",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
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

    /// A canary owned by `who`: what a hostile container would aim at when boxkit runs as
    /// that user.
    pub fn plant_for(who: &Who) -> Canary {
        let mut c = Canary::plant();
        if let Who::User(u) = who {
            for p in [&c.dir, &c.file] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            }
            c.before = c.snapshot();
        }
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

/// The first /etc/subuid range of `name`, as boxkit reads it.
fn subuid_range(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/subuid")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?)))?
        })
}

/// The host ids container ids map to, for `who`: root's subordinate range, or the user's own
/// id plus its range.
#[allow(clippy::single_range_in_vec_init)] // a list of id ranges, not of ids
pub fn container_host_ids(who: &Who) -> Vec<std::ops::Range<u32>> {
    match who {
        Who::Root => {
            let (s, n) = users::ROOT_RANGE;
            vec![s..s + n]
        }
        Who::User(u) => {
            let mut v = vec![u.uid..u.uid + 1];
            if let Some((s, n)) = subuid_range(&u.name) {
                v.push(s..s + n.min(65536));
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
    // The store's own directories belong to whoever opened it first; what lies below them
    // is image content or container state.
    let mut stack: Vec<PathBuf> = ["layers", "containers", "volumes"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(store.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
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
