//! CVE-2019-5736: /proc/self/exe, and box exec's joining process (issue item 7).
//!
//! runc's init re-entered the container as a process whose /proc/PID/exe was the host's runc
//! binary; the container opened it and overwrote runc. Two boxkit processes are in that
//! position: boxkit's own `--init` (pid 1 is a fork of boxkit that never execs) and the child
//! `box exec` forks inside the container before it execs the command. Both are now
//! non-dumpable, which closes /proc/PID/exe (and the rest of /proc/PID) to the container,
//! even with CAP_SYS_PTRACE, because their memory belongs to the host's user namespace.
//! `box exec` also resolves the user from the container's /etc/passwd before it joins, through
//! /proc/PID/root without following magic links and refusing anything but a small regular
//! file, so a FIFO there can neither hang it nor hold it inside the container.
//!
//! The binaries under attack are copies owned by the user who runs them: that is the case that
//! matters rootless, where container root is that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build_common::{Env, Who, stderr, stdout};
use crate::common;
use crate::support::{self, Detached, output_within, root_and_rootless, unique};

/// A copy of boxkit's binary `bin`, owned by the Env's user, in a directory of its own.
fn own_copy(env: &Env, bin: &str) -> PathBuf {
    let dir = env.dir.path().join(format!("own-{bin}"));
    std::fs::create_dir(&dir).unwrap();
    let copy = dir.join(bin);
    std::fs::copy(common::bin(bin), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Who::User(u) = &env.who {
        for p in [&dir, &copy] {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
        }
    }
    copy
}

/// The binary's hash, by coreutils (the tests' own sha2 is unoptimised, and these are big).
fn sha256(p: &Path) -> String {
    let o = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn init_pid1_exe_cannot_be_opened_from_the_container() {
    let probe = "echo \"link=$(readlink /proc/1/exe)\"; \
                 { true < /proc/1/exe; } 2>/dev/null && echo OPENED-R; \
                 { true >> /proc/1/exe; } 2>/dev/null && echo OPENED-W; \
                 echo done";
    for who in root_and_rootless() {
        let env = Env::new(who);
        let boxrun = own_copy(&env, "boxrun");
        let before = sha256(&boxrun);
        let mut c = env.command_at(&boxrun, &[]);
        c.args([
            "--rm",
            "--init",
            "--network",
            "none",
            "--cap-add",
            "SYS_PTRACE",
            "busybox",
            "sh",
            "-c",
            probe,
        ]);
        let o = c.output().unwrap();
        let what = format!("{}: boxrun --init", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("done"), "{what}: {out}");
        assert!(
            out.lines().any(|l| l == "link="),
            "{what}: /proc/1/exe is readable as a link:\n{out}"
        );
        assert!(
            !out.contains("OPENED"),
            "{what}: the container opened its init's executable:\n{out}"
        );
        assert_eq!(sha256(&boxrun), before, "{what}: the host binary changed");
    }
}

/// A container watches for any process whose /proc/PID/exe it can open and that is not one of
/// its own binaries, while `box exec` joins it: first with a FIFO for /etc/passwd (before the
/// fix that held the joining process inside the container indefinitely), then normally.
#[test]
fn exec_joining_process_exe_cannot_be_opened_from_the_container() {
    let watcher = "cp /etc/passwd /tmp/passwd.real; rm /etc/passwd; mkfifo /etc/passwd; \
                   echo ready; \
                   ( sleep 4; rm /etc/passwd; cp /tmp/passwd.real /etc/passwd; echo restored ) & \
                   while :; do for p in /proc/[0-9]*; do \
                     case $p in /proc/1|/proc/$$|/proc/self|/proc/thread-self) continue;; esac; \
                     { true < $p/exe; } 2>/dev/null || continue; \
                     l=$(readlink $p/exe); case $l in /bin/busybox|'') continue;; esac; \
                     { true >> $p/exe; } 2>/dev/null && w=W || w=-; \
                     echo \"OPENED-$w $p $l\"; \
                   done; usleep 2000; done";
    for who in root_and_rootless() {
        let env = Env::new(who);
        let boxbin = own_copy(&env, "box");
        let before = sha256(&boxbin);
        let name = unique("exejoin");
        let c = Detached::start(
            &env,
            &name,
            &[
                "--network",
                "none",
                "--cap-add",
                "SYS_PTRACE",
                "busybox",
                "sh",
                "-c",
                watcher,
            ],
        );
        let what = format!("{}: box exec", env.who.label());
        assert!(c.wait_log("ready").contains("ready"), "{what}: no watcher");
        let mut e = env.command_at(&boxbin, &[]);
        e.args(["exec", "-u", "someone", &name, "true"]);
        let t = output_within(e, Duration::from_secs(3));
        assert!(
            c.wait_log("restored").contains("restored"),
            "{what}: watcher"
        );
        for _ in 0..10 {
            let mut e = env.command_at(&boxbin, &[]);
            e.args(["exec", &name, "true"]);
            let o = e.output().unwrap();
            assert!(o.status.success(), "{what}: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(300));
        let log =
            String::from_utf8_lossy(&support::box_(&env, &["logs", &name]).stdout).into_owned();
        assert!(
            !log.contains("OPENED"),
            "{what}: the container opened the joining process's executable:\n{log}\n\
             (FIFO exec: {:?} {})",
            t.code,
            t.stderr
        );
        assert_eq!(sha256(&boxbin), before, "{what}: the host binary changed");
    }
}

/// A FIFO where the image's /etc/passwd should be: `boxrun -u` and `box exec -u` fail at once
/// with a message that says so, instead of hanging on the open.
#[test]
fn fifo_passwd_fails_promptly_in_run_and_exec() {
    for who in root_and_rootless() {
        let env = Env::with_registry(who);
        let image = support::hostile_image(
            &env,
            "fifo-passwd",
            serde_json::json!({
                "base": "busybox",
                "layers": [[{"name": "etc/passwd", "type": "fifo"}]],
            }),
        );
        let what = format!("{}: boxrun -u someone", env.who.label());
        // Pull first, so the time limit measures the run alone.
        let o = support::box_(&env, &["pull", "-q", &image]);
        assert!(o.status.success(), "{what}: pull: {}", stderr(&o));
        let mut c = env.command_at(&common::bin("boxrun"), &[]);
        c.args(["--rm", "--network", "none", "-u", "someone", &image, "true"]);
        let t = output_within(c, Duration::from_secs(20));
        assert_eq!(t.code, Some(125), "{what}: {:?}\n{}", t.code, t.stderr);
        assert!(
            t.stderr.contains("/etc/passwd") && t.stderr.contains("not a regular file"),
            "{what}: no clear error:\n{}",
            t.stderr
        );

        let name = unique("fifoexec");
        let c = Detached::start(
            &env,
            &name,
            &[
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "rm /etc/passwd; mkfifo /etc/passwd; echo ready; exec sleep 1000",
            ],
        );
        assert!(c.wait_log("ready").contains("ready"));
        let what = format!("{}: box exec -u someone", env.who.label());
        let mut e = env.command_at(&common::bin("box"), &[]);
        e.args(["exec", "-u", "someone", &name, "true"]);
        let t = output_within(e, Duration::from_secs(10));
        assert_eq!(t.code, Some(126), "{what}: {:?}\n{}", t.code, t.stderr);
        assert!(
            t.stderr.contains("/etc/passwd") && t.stderr.contains("not a regular file"),
            "{what}: no clear error:\n{}",
            t.stderr
        );
        assert!(
            t.elapsed < Duration::from_secs(5),
            "{what}: took {:?}",
            t.elapsed
        );
    }
}

/// The non-dumpable `--init` is closed to a rootless `box exec` too (it has no CAP_SYS_PTRACE
/// over the host's user namespace), which then joins the command's namespaces instead: exec
/// into an `--init` container keeps working, and still cannot read /proc/1/exe.
#[test]
fn exec_into_an_init_container_works_and_pid1_stays_closed() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let name = unique("execinit");
        let _c = Detached::start(
            &env,
            &name,
            &["--init", "--network", "none", "busybox", "sleep", "1000"],
        );
        let what = format!("{}: box exec into --init", env.who.label());
        let o = support::box_(
            &env,
            &[
                "exec",
                &name,
                "sh",
                "-c",
                "echo \"link=$(readlink /proc/1/exe)\"; cat /proc/1/comm; echo pid=$$",
            ],
        );
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.lines().any(|l| l == "link="), "{what}:\n{out}");
        // The exec'd process is in the container's pid namespace (pid 1 is the init).
        assert!(
            out.lines()
                .any(|l| l.starts_with("pid=") && l != "pid=1" && l.len() > 4),
            "{what}:\n{out}"
        );
    }
}
