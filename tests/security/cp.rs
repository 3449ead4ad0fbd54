//! `box cp` against a hostile container (CVE-2018-15664 and kin): symlinks it plants or swaps
//! while the copy runs, hostile tar streams on stdin, and the owners of what crosses. Every
//! container path must resolve inside the container's root, a copy out must never write
//! outside DEST nor read a host path, and files copied in get container ids only.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, Detached, assert_failed_with, box_, hostile_tar, unique};

fn envs() -> Vec<Env> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![Env::new(root), Env::new(Who::with_range().unwrap())]
}

/// A directory the Env's user may write (copies out land there).
fn dest_dir(env: &Env) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("boxkit-cp-dest-")
        .tempdir_in("/tmp")
        .unwrap();
    if let Who::User(u) = &env.who {
        std::os::unix::fs::chown(d.path(), Some(u.uid), Some(u.gid)).unwrap();
    }
    d
}

fn start<'a>(env: &'a Env, tag: &str, script: &str) -> Detached<'a> {
    let d = Detached::start(
        env,
        &unique(tag),
        &["--network", "none", "busybox", "sh", "-c", script],
    );
    d.wait_log("ready");
    d
}

fn exec(env: &Env, name: &str, cmd: &str) -> String {
    let o = box_(env, &["exec", name, "sh", "-c", cmd]);
    assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
    stdout(&o)
}

/// `box cp - NAME:DEST` with `tar` on stdin.
fn cp_stdin(env: &Env, tar: &[u8], dest: &str) -> Output {
    let mut c = env.command("box", &[]);
    c.args(["cp", "-", dest])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(tar);
    child.wait_with_output().unwrap()
}

/// Every regular file below `dir` (symlinks not followed) with its content.
fn files_below(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.is_file() {
            v.push((e.display().to_string(), std::fs::read(&e).unwrap()));
        }
    }
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            out.extend(walk(&p));
        }
    }
    out
}

#[test]
fn cp_out_resolves_container_symlinks_inside_the_container_never_on_the_host() {
    for env in envs() {
        let canary = Canary::plant_for(&env.who);
        let c = start(
            &env,
            "cp-links",
            &format!(
                "mkdir /data; ln -s {dir} /data/hostdir; ln -s {file} /data/hostfile; \
                 ln -s /etc /data/etc; echo ready; sleep 300",
                dir = canary.dir.display(),
                file = canary.file.display()
            ),
        );
        let dest = dest_dir(&env);
        let d = dest.path().to_str().unwrap();
        // Through a planted link: resolved in the container, where the host path is missing.
        let o = box_(&env, &["cp", &format!("{}:/data/hostdir/file", c.name), d]);
        assert_failed_with(&o, &["no such file"]);
        let o = box_(
            &env,
            &["cp", "-L", &format!("{}:/data/hostfile", c.name), d],
        );
        assert_failed_with(&o, &["no such file"]);
        // The directory: its links are copied as links, never followed.
        let o = box_(&env, &["cp", &format!("{}:/data", c.name), d]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        let link = dest.path().join("data/hostfile");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        for (p, content) in files_below(dest.path()) {
            assert_ne!(content, b"canary\n", "host content copied into {p}");
        }
        // /etc through a link is the container's /etc: its hostname, not the host's.
        let o = box_(
            &env,
            &["cp", &format!("{}:/data/etc/hostname", c.name), "-"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let tar = String::from_utf8_lossy(&o.stdout);
        let theirs = exec(&env, &c.name, "cat /etc/hostname");
        assert!(tar.contains(theirs.trim()), "{tar}");
        assert!(host.trim().is_empty() || !tar.contains(host.trim()) || host == theirs);
        canary.assert_untouched();
    }
}

#[test]
fn symlinks_swapped_while_cp_runs_never_redirect_it_to_the_host() {
    for env in envs() {
        let canary = Canary::plant_writable();
        // The container flips /box/sub between a directory and a link to the host canary,
        // as fast as it can, while the copies run both ways (CVE-2018-15664).
        let c = start(
            &env,
            "cp-swap",
            &format!(
                "mkdir -p /box/real; echo inside > /box/real/f; echo ready; \
                 while true; do ln -sfn {dir} /box/sub.l; mv -T /box/sub.l /box/sub; \
                 rm -f /box/sub; mkdir -p /box/sub; echo x > /box/sub/f; \
                 rm -rf /box/sub; done",
                dir = canary.dir.display()
            ),
        );
        let src = tempfile::Builder::new()
            .prefix("boxkit-cp-src-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(src.path().join("planted"), "from host\n").unwrap();
        std::fs::set_permissions(
            src.path().join("planted"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        for i in 0..30 {
            let dest = dest_dir(&env);
            let d = dest.path().join("out");
            let _ = box_(
                &env,
                &["cp", &format!("{}:/box", c.name), d.to_str().unwrap()],
            );
            for (p, content) in files_below(dest.path()) {
                assert_ne!(content, b"canary\n", "round {i}: host content in {p}");
            }
            let planted = src.path().join("planted");
            let _ = box_(
                &env,
                &[
                    "cp",
                    planted.to_str().unwrap(),
                    &format!("{}:/box/sub/", c.name),
                ],
            );
            canary.assert_untouched();
        }
        drop(c);
        canary.assert_untouched();
    }
}

#[test]
fn hostile_tar_streams_copied_in_cannot_leave_the_destination() {
    for env in envs() {
        let canary = Canary::plant_writable();
        let c = start(&env, "cp-tar", "mkdir -p /in; echo ready; sleep 300");
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            serde_json::json!([{"name": "../../../escape-dotdot", "data": "x"}]),
            serde_json::json!([{"name": format!("{}/abs", canary.dir.display()), "data": "x"}]),
            serde_json::json!([
                {"name": "l", "type": "symlink", "link": canary.dir.display().to_string()},
                {"name": "l/through", "data": "x"}
            ]),
            serde_json::json!([
                {"name": "up", "type": "symlink", "link": "../../../../.."},
                {"name": "up/escape-up", "data": "x"}
            ]),
            serde_json::json!([{"name": "hl", "type": "hardlink", "link": "../../etc/passwd"}]),
        ];
        for (i, entries) in cases.iter().enumerate() {
            let t = dir.path().join(format!("{i}.tar"));
            hostile_tar(&t, entries.clone());
            let tar = std::fs::read(&t).unwrap();
            let o = cp_stdin(&env, &tar, &format!("{}:/in", c.name));
            // An absolute name is refused; so is `..`, and whatever goes through a link the
            // same stream planted.
            assert!(!o.status.success(), "case {i} was accepted");
            canary.assert_untouched();
        }
        let left = exec(
            &env,
            &c.name,
            "ls /escape-dotdot /escape-up /abs 2>&1; find / -xdev -name through 2>/dev/null; true",
        );
        assert!(!left.contains("through"), "{left}");
        assert!(
            left.lines().all(|l| l.contains("No such file")),
            "an entry escaped /in: {left}"
        );
        canary.assert_untouched();
    }
}

/// Host ids the container's root maps to, from the container's pid 1 as the host sees it.
fn host_owner_of(env: &Env, name: &str, path: &str) -> (u32, u32) {
    let o = box_(env, &["inspect", "--format", "{{.State.Pid}}", name]);
    let pid = stdout(&o).trim().to_string();
    let m = std::fs::symlink_metadata(format!("/proc/{pid}/root{path}")).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn files_copied_in_get_container_ids_and_copies_out_lose_setuid() {
    for env in envs() {
        let c = start(
            &env,
            "cp-ids",
            "mkdir /in; cp /bin/busybox /in/suid; chmod 4755 /in/suid; echo ready; sleep 300",
        );
        // A host file owned by host root: copied in without -a, it is the container root's.
        let src = tempfile::Builder::new()
            .prefix("boxkit-cp-ids-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = src.path().join("f");
        std::fs::write(&f, "hello\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = box_(
            &env,
            &["cp", f.to_str().unwrap(), &format!("{}:/in/", c.name)],
        );
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        assert_eq!(exec(&env, &c.name, "stat -c %u:%g /in/f"), "0:0\n");
        let host = host_owner_of(&env, &c.name, "/in/f");
        let root_host = match &env.who {
            Who::Root => crate::common::users::ROOT_RANGE.0,
            Who::User(u) => u.uid,
        };
        assert_eq!(host, (root_host, root_host), "{}", env.who.label());
        assert_ne!(host.0, 0, "a file copied in is owned by host root");
        // With -a, an id the container does not map is refused, never given as a host id.
        std::os::unix::fs::chown(&f, Some(70000), Some(70000)).unwrap();
        let o = box_(
            &env,
            &[
                "cp",
                "-a",
                f.to_str().unwrap(),
                &format!("{}:/in/g", c.name),
            ],
        );
        assert!(
            !o.status.success(),
            "{}: id 70000 was accepted",
            env.who.label()
        );
        assert!(exec(&env, &c.name, "ls /in/g 2>&1 || true").contains("No such"));
        // A setuid binary copied out is the caller's and not setuid.
        let dest = dest_dir(&env);
        let out = dest.path().join("suid");
        let o = box_(
            &env,
            &["cp", &format!("{}:/in/suid", c.name), out.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let m = std::fs::metadata(&out).unwrap();
        assert_eq!(m.mode() & 0o6000, 0, "mode {:o}", m.mode());
        let caller = match &env.who {
            Who::Root => 0,
            Who::User(u) => u.uid,
        };
        assert_eq!(m.uid(), caller);
    }
}

#[test]
fn a_stopped_container_s_planted_symlinks_resolve_inside_it_too() {
    for env in envs() {
        let canary = Canary::plant_writable();
        let name = unique("cp-stopped-links");
        let o = crate::support::boxrun(
            &env,
            &[
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
                "true",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let _gone = Detached {
            env: &env,
            name: name.clone(),
        };
        let o = box_(&env, &["wait", &name]);
        assert!(o.status.success(), "{}", stderr(&o));
        let id = stdout(&box_(&env, &["inspect", "--format", "{{.Id}}", &name]))
            .trim()
            .to_string();
        // Its writable layer holds links to the host canary, as the container would have
        // left them (made here directly where the layer is not kept yet).
        let upper = env.store().join("containers").join(&id).join("upper");
        let (uid, gid) = match &env.who {
            Who::Root => (
                crate::common::users::ROOT_RANGE.0,
                crate::common::users::ROOT_RANGE.0,
            ),
            Who::User(u) => (u.uid, u.gid),
        };
        if !upper.exists() {
            std::fs::create_dir(&upper).unwrap();
            std::os::unix::fs::chown(&upper, Some(uid), Some(gid)).unwrap();
        }
        std::os::unix::fs::symlink(&canary.dir, upper.join("hostdir")).unwrap();
        std::os::unix::fs::symlink(&canary.file, upper.join("hostfile")).unwrap();
        for l in ["hostdir", "hostfile"] {
            std::os::unix::fs::lchown(upper.join(l), Some(uid), Some(gid)).unwrap();
        }
        let dest = dest_dir(&env);
        let d = dest.path().to_str().unwrap();
        let o = box_(&env, &["cp", &format!("{name}:/hostdir/file"), d]);
        assert_failed_with(&o, &["no such file"]);
        let o = box_(&env, &["cp", "-L", &format!("{name}:/hostfile"), d]);
        assert_failed_with(&o, &["no such file"]);
        for (p, content) in files_below(dest.path()) {
            assert_ne!(content, b"canary\n", "host content copied into {p}");
        }
        // Writes through the links stay inside: the canary's path does not exist there.
        let src = dest.path().join("src");
        std::fs::write(&src, "x\n").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = box_(
            &env,
            &["cp", src.to_str().unwrap(), &format!("{name}:/hostdir/")],
        );
        assert!(!o.status.success(), "{}", stderr(&o));
        let o = box_(
            &env,
            &["cp", src.to_str().unwrap(), &format!("{name}:/hostfile")],
        );
        // Replaces the link in the container (docker's rule for an existing destination that
        // resolves nowhere): the host file is never written.
        let _ = o;
        canary.assert_untouched();
    }
}
