//! `box attach` and the stdin of a detached `-i` container (a FIFO its monitor holds in the
//! container's directory, see src/container/stdin.rs): no other local user may write into a
//! container's stdin, and nothing found at the FIFO's path is followed, neither by the
//! monitor that makes it nor by an attach that opens it.
//!
//! The path is `containers/<id>/stdin`, beside the state and outside the container's root:
//! the container writes only into `containers/<id>/upper` (its writable layer), so a symlink
//! it makes named `/stdin` lands in `upper/stdin` and never here. What could be planted at
//! the path is planted by the test itself (as the store's owner), as a leftover or a
//! mistake would be.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;

use crate::build_common::{Env, Who, stderr, stdout};
use crate::common::users;
use crate::support::{Canary, Detached, assert_failed_with, box_, output_within, unique};

fn envs() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![Env::new(root), Env::new(Who::with_range().unwrap())]
}

fn fifo(env: &Env, name: &str) -> PathBuf {
    let o = box_(env, &["inspect", "--format", "{{.Id}}", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    env.store()
        .join("containers")
        .join(stdout(&o).trim())
        .join("stdin")
}

/// `box attach NAME` with `input` on its stdin, until the container exits.
fn attach(env: &Env, name: &str, input: &[u8]) -> std::process::Output {
    let mut c = env.command("box", &[]);
    c.args(["attach", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn another_local_user_cannot_write_into_a_containers_stdin() {
    let other = users::without_range();
    for env in envs() {
        let d = Detached::start(
            &env,
            &unique("stdin-priv"),
            &[
                "-i",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "echo ready; read x; echo got:$x",
            ],
        );
        d.wait_log("ready");
        let p = fifo(&env, &d.name);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let dir = std::fs::metadata(p.parent().unwrap()).unwrap();
        assert!(m.file_type().is_fifo(), "{}", p.display());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{}", p.display());
        assert_eq!(dir.permissions().mode() & 0o7777, 0o700);
        assert_eq!(
            m.uid(),
            dir.uid(),
            "the FIFO is owned as the container's state"
        );
        assert_ne!(m.uid(), other.uid);
        // The other user cannot open it (the directory alone stops it), so it cannot feed it.
        let mut c = users::command_as(&other, std::path::Path::new("/bin/sh"));
        c.arg("-c").arg(format!("echo evil > {}", p.display()));
        let t = output_within(c, std::time::Duration::from_secs(10));
        assert_ne!(t.code, Some(0), "{}: the other user wrote", env.who.label());
        assert!(t.stderr.contains("Permission denied"), "{}", t.stderr);
        // Its owner can.
        let o = attach(&env, &d.name, b"good\n");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "got:good\n");
        assert!(!d.wait_log("got:good").contains("evil"));
    }
}

#[test]
fn a_symlink_planted_at_the_stdin_path_is_not_followed() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        // Planted before the monitor makes the FIFO: it is replaced, never opened.
        let name = unique("stdin-link");
        let o = box_(
            &env,
            &[
                "create",
                "-i",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "echo ready; read x; echo got:$x",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let d = Detached {
            env: &env,
            name: name.clone(),
        };
        let p = fifo(&env, &name);
        std::os::unix::fs::symlink(&canary.file, &p).unwrap();
        let o = box_(&env, &["start", &name]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        d.wait_log("ready");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_fifo(), "{}: not replaced", env.who.label());
        canary.assert_untouched();
        // Planted while it runs (the FIFO swapped for a symlink): attach refuses it.
        let held = p.with_extension("held");
        std::fs::rename(&p, &held).unwrap();
        std::os::unix::fs::symlink(&canary.file, &p).unwrap();
        let mut c = env.command("box", &[]);
        c.args(["attach", &name]);
        let t = output_within(c, std::time::Duration::from_secs(20));
        assert_ne!(t.code, Some(0), "{}: {}", env.who.label(), t.stdout);
        assert!(
            t.stderr.contains("not the container's stdin pipe"),
            "{}: {}",
            env.who.label(),
            t.stderr
        );
        canary.assert_untouched();
        // Put back, the real FIFO still works.
        std::fs::remove_file(&p).unwrap();
        std::fs::rename(&held, &p).unwrap();
        let o = attach(&env, &name, b"fine\n");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "got:fine\n");
        canary.assert_untouched();
        assert_failed_with(
            &box_(&env, &["attach", "no-such-container-x"]),
            &["no such"],
        );
    }
}
