//! What every class in the suite needs: hostile images made by Python's tarfile and pushed
//! with skopeo, host canaries, and a check of the owners of everything boxkit stored.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build_common::{Env, Who};
use crate::common::users;

/// A store with the docker.io mirror for root and for the user with a subordinate range (none
/// after a skip when the tests do not run as root).
pub fn envs_with_registry() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![
        Env::with_registry(root),
        Env::with_registry(Who::with_range().unwrap()),
    ]
}

pub use crate::build_common::hostile_image;

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

// ---- processes and descriptors (fd_leak, proc_exe, inheritable_caps) ---------------------

/// Root, then the unprivileged user with a subordinate range; empty after a skip when the
/// tests do not run as root.
pub fn root_and_rootless() -> Vec<Who> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![root, Who::User(users::with_range())]
}

impl Canary {
    /// A canary whose directory is world-writable, so that a container reaching it (through a
    /// leaked descriptor, say) could change it whatever ids it runs with.
    pub fn plant_open() -> Canary {
        use std::os::unix::fs::PermissionsExt;
        let mut c = Canary::plant();
        std::fs::set_permissions(&c.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        c.before = c.snapshot();
        c
    }
}

/// Open `path` (a directory too) for reading, as a shell's `exec 7<path` does.
pub fn open_for_passing(path: &Path) -> std::os::fd::OwnedFd {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // Far above anything a child could be asked to receive, so the dup2s below never clobber
    // a source.
    let fd = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(200)).unwrap();
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// Make the child of `c` start with each `(target, fd)`'s descriptor open as `target` (not
/// close-on-exec), as a caller's shell would hand it down.
pub fn pass_fds(c: &mut Command, fds: Vec<(i32, std::os::fd::OwnedFd)>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let pairs: Vec<(i32, i32)> = fds.iter().map(|(t, f)| (*t, f.as_raw_fd())).collect();
    // SAFETY: the closure only calls dup2, which is async-signal-safe, on descriptors that
    // stay open in the parent (the closure owns them) until the child has exec'd.
    unsafe {
        c.pre_exec(move || {
            let _keep = &fds;
            for (target, src) in &pairs {
                if libc::dup2(*src, *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// What a command did within a time limit.
pub struct Timed {
    /// None when it was killed at the limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: std::time::Duration,
}

/// Run `c` with stdout and stderr in files (so descendants that keep them open cannot make
/// us wait) and SIGKILL its process group after `limit`.
pub fn output_within(mut c: Command, limit: std::time::Duration) -> Timed {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    c.stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .process_group(0);
    let start = std::time::Instant::now();
    let mut child = c.spawn().expect("spawn");
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Timed {
        code,
        stdout: std::fs::read_to_string(&o).unwrap_or_default(),
        stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// A detached container (`boxrun -d --name NAME ARGS…`), removed with `box rm -f` on drop.
pub struct Detached<'a> {
    pub env: &'a Env,
    pub name: String,
}

impl<'a> Detached<'a> {
    pub fn start(env: &'a Env, name: &str, args: &[&str]) -> Detached<'a> {
        let mut a = vec!["-d", "--name", name];
        a.extend_from_slice(args);
        let o = boxrun(env, &a);
        assert!(
            o.status.success(),
            "{}: boxrun {a:?}: {}",
            env.who.label(),
            String::from_utf8_lossy(&o.stderr)
        );
        Detached {
            env,
            name: name.to_string(),
        }
    }

    /// `box logs NAME`, polled until it contains `what` (or 20 s passed).
    pub fn wait_log(&self, what: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let o = box_(self.env, &["logs", &self.name]);
            let log = String::from_utf8_lossy(&o.stdout).into_owned();
            if log.contains(what) || start.elapsed() > std::time::Duration::from_secs(20) {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = box_(self.env, &["rm", "-f", &self.name]);
    }
}

/// A name no other test uses.
pub fn unique(tag: &str) -> String {
    let mut b = [0u8; 5];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    format!("{tag}-{}", hex::encode(b))
}
