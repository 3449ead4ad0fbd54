//! CVE-2024-21626: host file descriptors and a working directory outside the container root.
//!
//! runc leaked a descriptor of the host's /sys/fs/cgroup into the container's init; a
//! WORKDIR of /proc/self/fd/7 then made the container's cwd a host directory. The same holds
//! for any descriptor boxkit's caller leaves open: a shell's `exec 7<…` reached the container
//! as fd 7. Now the container's process starts with 0, 1 and 2 only (plus 3..3+N with
//! `--preserve-fds N`, podman's flag), in `boxrun`, `box exec` and RUN steps, and its working
//! directory is resolved inside its root without magic links and checked after the chdir.

use std::path::Path;

use crate::build_common::{Env, stderr, stdout};
use crate::common;
use crate::support::{Canary, Detached, open_for_passing, pass_fds, root_and_rootless, unique};

/// `(fd, target)` for each entry of busybox's `ls -l /proc/self/fd` in `out` (lines may carry
/// a prefix, as RUN output does).
fn fd_listing(out: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let i = t.iter().position(|w| {
                w.len() == 10 && w.starts_with('l') && w[1..].chars().all(|c| "rwx-".contains(c))
            })?;
            let fd = t.get(i + 8)?.parse().ok()?;
            let target = match t.get(i + 9) {
                Some(&"->") => t[i + 10..].join(" "),
                _ => String::new(),
            };
            Some((fd, target))
        })
        .collect();
    // ls sorts names as text (10 before 2).
    v.sort();
    v
}

/// The listing shows 0, 1, 2 and ls's own directory descriptor (3), and nothing of the
/// caller's fd 7.
fn assert_only_stdio(out: &str, what: &str) {
    let fds = fd_listing(out);
    let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        vec![0, 1, 2, 3],
        "{what}: descriptors other than stdio reached the container:\n{out}"
    );
    assert!(
        !out.contains("hostname"),
        "{what}: the caller's fd 7 (/etc/hostname) reached the container:\n{out}"
    );
}

fn fd7_hostname() -> Vec<(i32, std::os::fd::OwnedFd)> {
    vec![(7, open_for_passing(Path::new("/etc/hostname")))]
}

#[test]
fn run_gets_only_stdio_not_the_callers_fd_7() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let mut c = env.command_at(&common::bin("boxrun"), &[]);
        c.args([
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "-l",
            "/proc/self/fd",
        ]);
        pass_fds(&mut c, fd7_hostname());
        let o = c.output().unwrap();
        let what = format!("{}: boxrun", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert_only_stdio(&stdout(&o), &what);
    }
}

/// Host pids of the processes whose command line is exactly `argv`.
fn host_pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// The descriptors a host process has open (read as root from the host).
fn host_fds(pid: i32) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let t = std::fs::read_link(e.path()).ok()?;
            Some((n, t.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// Under `--init`, both boxkit's init (pid 1, which never execs) and the command start with
/// stdio only. Read from the host: the init is not dumpable, so the container cannot list it.
#[test]
fn init_and_its_command_get_only_stdio() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let name = unique("fdinit");
        let secs = format!("{}", 900_000 + std::process::id() % 90_000);
        let mut c = env.command_at(&common::bin("boxrun"), &[]);
        c.args([
            "-d",
            "--name",
            &name,
            "--init",
            "--network",
            "none",
            "busybox",
            "sleep",
            &secs,
        ]);
        pass_fds(&mut c, fd7_hostname());
        let o = c.output().unwrap();
        let what = format!("{}: boxrun -d --init", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let _c = Detached {
            env: &env,
            name: name.clone(),
        };
        let cmd = host_pids_running(&["sleep", &secs]);
        assert_eq!(cmd.len(), 1, "{what}: the command's pid: {cmd:?}");
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", cmd[0])).unwrap();
        let init: i32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for (who, pid) in [("init", init), ("command", cmd[0])] {
            let fds = host_fds(pid);
            let numbers: Vec<u32> = fds.iter().map(|f| f.0).collect();
            assert_eq!(
                numbers,
                vec![0, 1, 2],
                "{what}: the {who}'s descriptors: {fds:?}"
            );
        }
    }
}

#[test]
fn exec_gets_only_stdio_not_the_callers_fd_7() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let name = unique("fdexec");
        let _c = Detached::start(
            &env,
            &name,
            &["--network", "none", "busybox", "sleep", "1000"],
        );
        let mut c = env.command_at(&common::bin("box"), &[]);
        c.args(["exec", &name, "ls", "-l", "/proc/self/fd"]);
        pass_fds(&mut c, fd7_hostname());
        let o = c.output().unwrap();
        let what = format!("{}: box exec", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert_only_stdio(&stdout(&o), &what);
    }
}

/// With `-t` the container's stdio is the slave of a pty made in its own devpts: the master
/// and the socket that carried it to the supervisor are gone before the command runs.
#[test]
fn tty_run_and_exec_get_only_the_terminal() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let name = unique("fdtty");
        let _c = Detached::start(
            &env,
            &name,
            &["--network", "none", "busybox", "sleep", "1000"],
        );
        for (bin, args) in [
            ("boxrun", vec!["--rm", "-t", "--network", "none", "busybox"]),
            ("box", vec!["exec", "-t", &name]),
        ] {
            let mut c = env.command_at(&common::bin(bin), &[]);
            c.args(&args).args(["ls", "-l", "/proc/self/fd"]);
            c.stdin(std::process::Stdio::null());
            pass_fds(&mut c, fd7_hostname());
            let o = c.output().unwrap();
            let what = format!("{}: {bin} -t", env.who.label());
            assert!(o.status.success(), "{what}: {}", stderr(&o));
            let out = stdout(&o);
            assert_only_stdio(&out, &what);
            let fds = fd_listing(&out);
            assert!(
                fds[..3].iter().all(|(_, t)| t.starts_with("/dev/pts/")),
                "{what}: stdio is not the pty:\n{out}"
            );
        }
    }
}

#[test]
fn run_step_gets_only_stdio_not_the_callers_fd_7() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        env.boxfile("FROM busybox\nRUN ls -l /proc/self/fd\n");
        let mut c = env.command_at(&common::bin("boxbuild"), &[]);
        c.args(["-t", "fdleak", "--progress=plain"]).arg(env.ctx());
        pass_fds(&mut c, fd7_hostname());
        let o = c.output().unwrap();
        let what = format!("{}: RUN", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert_only_stdio(&format!("{}{}", stdout(&o), stderr(&o)), &what);
    }
}

#[test]
fn preserve_fds_1_passes_fd_3_and_nothing_else() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let marker = unique("preserved");
        let file = env.dir.path().join("passed");
        std::fs::write(&file, format!("{marker}\n")).unwrap();
        let script = "cat <&3; ls -l /proc/self/fd";
        let name = unique("fdkeep");
        let _c = Detached::start(
            &env,
            &name,
            &["--network", "none", "busybox", "sleep", "1000"],
        );
        for (bin, args) in [
            (
                "boxrun",
                vec![
                    "--rm",
                    "--network",
                    "none",
                    "--preserve-fds",
                    "1",
                    "busybox",
                    "sh",
                    "-c",
                    script,
                ],
            ),
            (
                "box",
                vec!["exec", "--preserve-fds", "1", &name, "sh", "-c", script],
            ),
        ] {
            let mut c = env.command_at(&common::bin(bin), &[]);
            c.args(&args);
            pass_fds(
                &mut c,
                vec![
                    (3, open_for_passing(&file)),
                    (7, open_for_passing(Path::new("/etc/hostname"))),
                ],
            );
            let o = c.output().unwrap();
            let what = format!("{}: {bin} --preserve-fds 1", env.who.label());
            assert!(o.status.success(), "{what}: {}", stderr(&o));
            let out = stdout(&o);
            assert!(out.contains(&marker), "{what}: fd 3 not readable:\n{out}");
            let fds = fd_listing(&out);
            let numbers: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
            // 0-2, the passed fd 3, and ls's own directory descriptor.
            assert_eq!(numbers, vec![0, 1, 2, 3, 4], "{what}:\n{out}");
            assert!(fds[3].1.ends_with("passed"), "{what}: fd 3 is {:?}", fds[3]);
            assert!(!out.contains("hostname"), "{what}: fd 7 leaked:\n{out}");
        }
    }
}

#[test]
fn preserve_fds_refuses_a_descriptor_the_caller_did_not_pass() {
    let Some(who) = root_and_rootless().into_iter().next() else {
        return;
    };
    let env = Env::new(who);
    let mut c = env.command_at(&common::bin("boxrun"), &[]);
    c.args([
        "--rm",
        "--network",
        "none",
        "--preserve-fds",
        "2",
        "busybox",
        "true",
    ]);
    pass_fds(
        &mut c,
        vec![(3, open_for_passing(Path::new("/etc/hostname")))],
    );
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("file descriptor 4 is not open"),
        "{}",
        stderr(&o)
    );
}

/// The CVE's trick: a working directory of /proc/self/fd/N, where N is a directory
/// descriptor of the host (the caller's, or one passed on purpose), must fail before the
/// command runs, and the host directory must stay as it was.
#[test]
fn workdir_through_a_host_descriptor_fails_and_leaves_the_host_alone() {
    // The marker is computed, so an error message quoting the command does not contain it.
    let attack = "touch pwned; ls; echo ESC$((1+1))APED";
    for who in root_and_rootless() {
        let env = Env::new(who);
        let canary = Canary::plant_open();
        let dir = canary.dir.clone();
        let name = unique("fdcwd");
        let _c = Detached::start(
            &env,
            &name,
            &["--network", "none", "busybox", "sleep", "1000"],
        );
        env.boxfile(&format!(
            "FROM busybox\nWORKDIR /proc/self/fd/7\nRUN {attack}\n"
        ));
        let ctx = env.ctx().to_string_lossy().into_owned();
        let cases: Vec<(&str, Vec<&str>, i32, Option<i32>)> = vec![
            (
                "boxrun",
                vec![
                    "--rm",
                    "--network",
                    "none",
                    "-w",
                    "/proc/self/fd/7",
                    "busybox",
                    "sh",
                    "-c",
                    attack,
                ],
                7,
                Some(125),
            ),
            (
                "box",
                vec!["exec", "-w", "/proc/self/fd/7", &name, "sh", "-c", attack],
                7,
                Some(126),
            ),
            // A descriptor passed on purpose still cannot become the working directory.
            (
                "boxrun",
                vec![
                    "--rm",
                    "--network",
                    "none",
                    "--preserve-fds",
                    "1",
                    "-w",
                    "/proc/self/fd/3",
                    "busybox",
                    "sh",
                    "-c",
                    attack,
                ],
                3,
                Some(125),
            ),
            (
                "boxbuild",
                vec!["-t", "fdcwd", "--progress=plain", &ctx],
                7,
                None,
            ),
        ];
        for (bin, args, fd, code) in cases {
            let mut c = env.command_at(&common::bin(bin), &[]);
            c.args(&args);
            pass_fds(&mut c, vec![(fd, open_for_passing(&dir))]);
            let o = c.output().unwrap();
            let what = format!("{}: {bin} {args:?}", env.who.label());
            let (out, err) = (stdout(&o), stderr(&o));
            assert!(!o.status.success(), "{what} succeeded:\n{out}{err}");
            if let Some(code) = code {
                assert_eq!(o.status.code(), Some(code), "{what}:\n{err}");
            }
            assert!(
                err.contains("working directory"),
                "{what}: no clear error:\n{err}"
            );
            assert!(
                !out.contains("ESC2APED") && !err.contains("ESC2APED"),
                "{what}: the command ran:\n{out}{err}"
            );
            canary.assert_untouched();
        }
    }
}
