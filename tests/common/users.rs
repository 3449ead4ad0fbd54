//! Unprivileged test users, created as root and idempotently: one WITH a /etc/subuid and
//! /etc/subgid range and one WITHOUT; plus root's own range for remapping. Commands run as
//! them through `setpriv`.

use std::path::Path;
use std::process::Command;

/// A local account used by tests.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub const WITH_RANGE: &str = "boxkit-sub";
pub const WITHOUT_RANGE: &str = "boxkit-nosub";
/// Root's subordinate range (used to remap container root when boxkit runs as root).
pub const ROOT_RANGE: (u32, u32) = (2_000_000, 65536);

/// Serialises edits of /etc/passwd, /etc/subuid and /etc/subgid across test processes.
struct Lock(#[allow(dead_code)] std::fs::File);
fn lock() -> Lock {
    let f = std::fs::File::create("/tmp/boxkit-test-users.lock").expect("lock file");
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    Lock(f)
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn has_line(file: &str, name: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")))
}

fn drop_lines(file: &str, name: &str) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{name}:")))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept != text {
        // Whole or not at all: boxkit processes of other tests (test binaries run two at once)
        // read this file at any moment, and an in-place rewrite shows them a truncated one, in
        // which root has no range.
        let tmp = format!("{file}.boxkit-test-tmp");
        std::fs::write(&tmp, kept).expect("write subid file copy");
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod subid file copy");
        std::fs::rename(&tmp, file).expect("replace subid file");
    }
}

/// Whether `name`'s only lines in both subid files give exactly `range`.
fn has_exactly(name: &str, (start, count): (u32, u32)) -> bool {
    ["/etc/subuid", "/etc/subgid"].iter().all(|file| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .collect();
        mine == [format!("{name}:{start}:{count}")]
    })
}

fn ensure(name: &str, range: Option<(u32, u32)>) -> TestUser {
    assert!(crate::common::is_root(), "creating test users needs root");
    let _l = lock();
    if nix::unistd::User::from_name(name).ok().flatten().is_none() {
        sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", name]));
    }
    match range {
        Some((start, count)) => {
            for (file, flag) in [
                ("/etc/subuid", "--add-subuids"),
                ("/etc/subgid", "--add-subgids"),
            ] {
                if !has_line(file, name) {
                    let r = format!("{start}-{}", start + count - 1);
                    sh(Command::new("usermod").args([flag, &r, name]));
                }
            }
        }
        None => {
            drop_lines("/etc/subuid", name);
            drop_lines("/etc/subgid", name);
        }
    }
    let u = nix::unistd::User::from_name(name).unwrap().unwrap();
    TestUser {
        name: name.into(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }
}

/// The unprivileged user with a subordinate id range.
pub fn with_range() -> TestUser {
    ensure(WITH_RANGE, Some((3_000_000, 65536)))
}

/// User `name` with exactly this subordinate range (replacing any other it had, such as the
/// one useradd may add by itself).
pub fn with_exact_range(name: &str, range: (u32, u32)) -> TestUser {
    let exact = {
        let _l = lock();
        nix::unistd::User::from_name(name).ok().flatten().is_some() && has_exactly(name, range)
    };
    if !exact {
        ensure(name, None);
    }
    ensure(name, Some(range))
}

/// The unprivileged user without one.
pub fn without_range() -> TestUser {
    ensure(WITHOUT_RANGE, None)
}

/// Give root a subordinate range so boxkit can remap container root (idempotent).
pub fn ensure_root_range() {
    let _l = lock();
    let (start, count) = ROOT_RANGE;
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        if !has_line(file, "root") {
            let r = format!("{start}-{}", start + count - 1);
            sh(Command::new("usermod").args([flag, &r, "root"]));
        }
    }
}

/// A command that runs `program` as `u` (real and effective ids, its groups, a clean env).
pub fn command_as(u: &TestUser, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .arg("--init-groups")
        .arg("--reset-env")
        .arg("--")
        .arg(program);
    c
}

/// Make /dev/net/tun usable by unprivileged users (udev would make it 0666; this VM has 0600).
pub fn open_tun() {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o666));
}
