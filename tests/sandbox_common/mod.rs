//! Helpers shared by the sandbox tests: who runs boxkit (root, a user with a subordinate id
//! range, one without), busybox root filesystems owned by the right host ids, and lookups of
//! what a run leaves on the host.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, users};

/// Who runs `box sandbox-run`.
#[derive(Debug, Clone)]
pub enum Who {
    Root,
    WithRange(users::TestUser),
    WithoutRange(users::TestUser),
}

impl Who {
    /// Root and both unprivileged users; `None` (after a skip) when not root.
    pub fn all() -> Option<Vec<Who>> {
        Some(vec![
            Who::root()?,
            Who::with_range()?,
            Who::without_range()?,
        ])
    }
    pub fn root() -> Option<Who> {
        if !common::is_root() {
            common::skip("sandbox tests create users and subordinate ranges as root");
            return None;
        }
        users::ensure_root_range();
        Some(Who::Root)
    }
    pub fn with_range() -> Option<Who> {
        Who::root()?;
        Some(Who::WithRange(users::with_range()))
    }
    pub fn without_range() -> Option<Who> {
        Who::root()?;
        Some(Who::WithoutRange(users::without_range()))
    }
    pub fn label(&self) -> &'static str {
        match self {
            Who::Root => "root",
            Who::WithRange(_) => "user with subuid range",
            Who::WithoutRange(_) => "user without subuid range",
        }
    }
    /// Host uid and gid of container root.
    pub fn root_owner(&self) -> (u32, u32) {
        match self {
            Who::Root => (users::ROOT_RANGE.0, users::ROOT_RANGE.0),
            Who::WithRange(u) | Who::WithoutRange(u) => (u.uid, u.gid),
        }
    }
    /// Host uid of container uid 1000, when mapped.
    pub fn uid_1000(&self) -> Option<u32> {
        match self {
            Who::Root => Some(users::ROOT_RANGE.0 + 1000),
            Who::WithRange(_) => Some(3_000_000 + 999),
            Who::WithoutRange(_) => None,
        }
    }
    pub fn box_cmd(&self) -> Command {
        let b = common::bin("box");
        match self {
            Who::Root => Command::new(b),
            Who::WithRange(u) | Who::WithoutRange(u) => users::command_as(u, &b),
        }
    }
    /// `box sandbox-run ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .box_cmd()
            .arg("sandbox-run")
            .args(args)
            .output()
            .expect("spawn box");
        eprintln!(
            "[{}] box sandbox-run {}\n  status {:?}\n  stdout {}\n  stderr {}",
            self.label(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary directory everyone can traverse (tempfile makes 0700 ones).
pub fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("boxkit-test-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A busybox root filesystem with /etc/passwd (root, alice 1000) and /etc/group, owned by
/// `owner` (the host ids of container root), as an unpacked image would be.
pub struct Rootfs {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn busybox_rootfs(owner: (u32, u32)) -> Rootfs {
    let dir = open_tempdir();
    let root = dir.path().join("rootfs");
    for d in ["bin", "etc", "tmp", "root", "home/alice"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nalice:x:1000:\n").unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    chown_r(&root, owner);
    Rootfs {
        _dir: dir,
        path: root,
    }
}

pub fn chown_r(p: &Path, (uid, gid): (u32, u32)) {
    let st = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Cgroup directories named `id` anywhere under /sys/fs/cgroup.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, id: &str, depth: u32, out: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == id {
                    out.push(e.path());
                }
                walk(&e.path(), id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 6, &mut out);
    out
}

pub fn unique_id(tag: &str) -> String {
    format!("t{tag}{}", std::process::id())
}
