//! Helpers for the boxrun tests: a store per user (root, a user with a subordinate range)
//! seeded once with `box load` from the fixture archives (busybox and the debootstrap Debian,
//! made by tools independent of boxkit), and runners for `boxrun` and `box` as that user.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::common::{self, fixtures, fixtures::Fixture, users};

/// Who runs boxrun.
#[derive(Debug, Clone)]
pub enum Who {
    Root,
    User(users::TestUser),
}

impl Who {
    /// Root and the unprivileged user with a subordinate range; None after a skip.
    pub fn all() -> Option<Vec<Who>> {
        if !common::is_root() {
            common::skip("boxrun tests create users and subordinate ranges as root");
            return None;
        }
        users::ensure_root_range();
        Some(vec![Who::Root, Who::User(users::with_range())])
    }
    pub fn root() -> Option<Who> {
        Some(Self::all()?.remove(0))
    }
    pub fn label(&self) -> &'static str {
        match self {
            Who::Root => "root",
            Who::User(_) => "rootless",
        }
    }
    /// Host ids of container root.
    pub fn owner(&self) -> (u32, u32) {
        match self {
            Who::Root => (users::ROOT_RANGE.0, users::ROOT_RANGE.0),
            Who::User(u) => (u.uid, u.gid),
        }
    }
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = self.cmd_at(bin);
        c.arg("--root").arg(store(self));
        c
    }
    fn cmd_at(&self, bin: &str) -> Command {
        let b = common::bin(bin);
        match self {
            Who::Root => Command::new(b),
            Who::User(u) => users::command_as(u, &b),
        }
    }
    /// `boxrun --root STORE ARGS…` with stdin from /dev/null.
    pub fn boxrun(&self, args: &[&str]) -> Output {
        self.output("boxrun", args, None)
    }
    /// `box --root STORE ARGS…`.
    pub fn box_(&self, args: &[&str]) -> Output {
        self.output("box", args, None)
    }
    pub fn boxrun_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.output("boxrun", args, Some(stdin))
    }
    fn output(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = self.cmd(bin);
        c.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn boxkit");
        if let Some(s) = stdin {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            // A process that reads no stdin (boxrun without -i) may be gone before the write:
            // a broken pipe then is the test's expected outcome, not the harness's failure.
            let _ = i.write_all(s.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "[{}] {bin} {}\n  status {:?}\n  stdout {}\n  stderr {}",
            self.label(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }
    /// Make `p` (a temp dir) owned by container root, so it can be bind-mounted writable.
    pub fn own(&self, p: &Path) {
        let (u, g) = self.owner();
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{u}:{g}"))
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }
    /// Make `p` owned by the user who runs boxkit (root stays root).
    pub fn own_store(&self, p: &Path) {
        if let Who::User(_) = self {
            self.own(p);
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where the per-user test stores live, kept between runs (the images are loaded once and their
/// layers unpacked once).
pub const STORES_DIR: &str = "/var/cache/boxkit-test/boxrun-stores";

/// The user's store under [`STORES_DIR`], owned by the user.
pub fn store(who: &Who) -> PathBuf {
    static STORES: OnceLock<Mutex<HashMap<&'static str, PathBuf>>> = OnceLock::new();
    let m = STORES.get_or_init(Default::default);
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = m.get(who.label()) {
        return p.clone();
    }
    // Next to the Debian fixture cache, outside the checkout: a rootless user may not be able
    // to traverse the directory the repository was cloned into (e.g. under /root).
    let base = PathBuf::from(STORES_DIR);
    std::fs::create_dir_all(&base).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755));
    }
    let p = base.join(who.label());
    std::fs::create_dir_all(&p).unwrap();
    // Only the directory itself (made here, by root): what is inside was made by the user's
    // own boxkit, and test binaries running at the same time add and remove containers in
    // it, which a `chown -R` walking the tree trips over (a vanished file fails it).
    if let Who::User(u) = who {
        std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
    }
    // Still holding the lock: no test may use the store before its images are in.
    for f in [Fixture::Busybox, Fixture::Debian] {
        let name = format!("{}:{}", f.short(), f.tag());
        let have = who
            .cmd_at("box")
            .arg("--root")
            .arg(&p)
            .args(["inspect", "--type", "image", &name])
            .output()
            .unwrap();
        if !have.status.success() {
            // Through stdin: the archive lives in the checkout, which the user may not reach.
            let archive = std::fs::File::open(fixtures::oci_archive(f)).unwrap();
            let o = who
                .cmd_at("box")
                .arg("--root")
                .arg(&p)
                .args(["load", "-q"])
                .stdin(archive)
                .output()
                .unwrap();
            assert!(o.status.success(), "load {name}: {}", stderr(&o));
        }
    }
    m.insert(who.label(), p.clone());
    p
}

/// A temp directory everyone can traverse.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::Builder::new()
        .prefix("boxrun-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// `boxrun -d --name NAME --network none ARGS...`: asserts it started and returns the id.
pub fn run_detached(who: &Who, name: &str, args: &[&str]) -> String {
    let mut v = vec!["-d", "--name", name, "--network", "none"];
    v.extend_from_slice(args);
    let o = who.boxrun(&v);
    assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    id
}

/// `boxbuild -q -t TAG` (as `who`, into its store) of a context holding only `boxfile`;
/// asserts it built and returns the tag (`tag` made unique).
pub fn build_image(who: &Who, tag: &str, boxfile: &str) -> String {
    let ctx = tempdir();
    std::fs::write(ctx.path().join("Boxfile"), boxfile).unwrap();
    who.own(ctx.path());
    let tag = unique(tag);
    let o = who
        .cmd("boxbuild")
        .args(["-q", "-t", &tag])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
    tag
}

/// A unique container name for this test process.
pub fn unique(tag: &str) -> String {
    format!("t-{tag}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> String {
    let mut b = [0u8; 4];
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Removes a container (force) when dropped, so failed tests leave nothing running.
pub struct Cleanup<'a>(pub &'a Who, pub String);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .cmd("box")
            .args(["rm", "-f", &self.1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
