//! Detached containers: `boxrun -d`, `box ps`, `logs [-f]`, `exec`, `stop [-t]`, `kill`,
//! `rm [-f]`, `inspect`, and a dead container's state, as root and rootless.

mod boxrun_common;
mod common;

use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, run_detached, stderr, stdout, unique};

/// Start a detached container; returns its id.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inspect(who: &Who, name: &str) -> serde_json::Value {
    let o = who.box_(&["inspect", "--type", "container", name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

#[test]
fn detached_container_shows_in_ps_logs_and_inspect_and_survives_boxrun() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("ps");
        let _c = Cleanup(&who, name.clone());
        let id = run_detached(
            &who,
            &name,
            &[
                "busybox",
                "sh",
                "-c",
                "echo hello-out; echo hello-err >&2; sleep 1000",
            ],
        );
        // boxrun has exited; the container runs on.
        let ps = stdout(&who.box_(&["ps"]));
        let line = ps.lines().find(|l| l.ends_with(&name)).unwrap_or_default();
        assert!(line.starts_with(&id[..12]), "{ps}");
        assert!(line.contains("Up "), "{ps}");
        assert!(stdout(&who.box_(&["ps", "-q"])).contains(&id[..12]));
        wait_for("logs", || {
            stdout(&who.box_(&["logs", &name])).contains("hello-err")
        });
        let logs = stdout(&who.box_(&["logs", &id[..12]]));
        assert!(
            logs.contains("hello-out\n") && logs.contains("hello-err\n"),
            "{logs}"
        );
        let j = inspect(&who, &name);
        assert_eq!(j["Id"], id);
        assert_eq!(j["Name"], format!("/{name}"));
        assert_eq!(j["State"]["Running"], true);
        assert!(j["State"]["Pid"].as_i64().unwrap() > 1);
        assert_eq!(j["Config"]["Cmd"][0], "sh");
        // A name is taken while the container exists.
        let o = who.boxrun(&["-d", "--name", &name, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
        // rm refuses a running container without -f.
        let o = who.box_(&["rm", &name]);
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("is running"), "{}", stderr(&o));
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        assert!(!stdout(&who.box_(&["ps", "-a"])).contains(&name));
    }
}

#[test]
fn logs_follow_ends_when_the_container_exits_and_the_exit_code_is_recorded() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("follow");
        let _c = Cleanup(&who, name.clone());
        run_detached(
            &who,
            &name,
            &[
                "busybox",
                "sh",
                "-c",
                "for i in 1 2 3; do echo line$i; sleep 0.2; done; exit 7",
            ],
        );
        let o = who.box_(&["logs", "-f", &name]);
        assert_eq!(stdout(&o), "line1\nline2\nline3\n");
        wait_for("exit recorded", || {
            inspect(&who, &name)["State"]["Status"] == "exited"
        });
        let j = inspect(&who, &name);
        assert_eq!(j["State"]["ExitCode"], 7);
        let ps = stdout(&who.box_(&["ps", "-a"]));
        assert!(
            ps.lines()
                .any(|l| l.ends_with(&name) && l.contains("Exited (7)")),
            "{ps}"
        );
        assert!(!stdout(&who.box_(&["ps"])).contains(&name));
        assert_eq!(who.box_(&["rm", &name]).status.code(), Some(0));
    }
}

#[test]
fn exec_sees_the_same_pid_namespace_filesystem_env_cwd_and_user() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("exec");
        let _c = Cleanup(&who, name.clone());
        run_detached(
            &who,
            &name,
            &[
                "-e",
                "FROM_RUN=yes",
                "-w",
                "/srv",
                "-u",
                "app",
                "busybox",
                "sh",
                "-c",
                "while [ ! -f /tmp/flag ]; do sleep 0.1; done; echo saw-flag; sleep 1000",
            ],
        );
        // Same pid namespace: pid 1 is the container's command.
        let o = who.box_(&["exec", &name, "cat", "/proc/1/cmdline"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).starts_with("sh\0-c\0while"), "{:?}", stdout(&o));
        // The container's env, cwd and user by default.
        let o = who.box_(&[
            "exec",
            &name,
            "sh",
            "-c",
            "echo $FROM_RUN; pwd; id -un; hostname",
        ]);
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(&lines[..3], ["yes", "/srv", "app"], "{out}");
        assert_eq!(lines[3].len(), 12);
        // Same filesystem: a file made by exec is seen by the container's command.
        let o = who.box_(&["exec", &name, "touch", "/tmp/flag"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        wait_for("the container to see the flag", || {
            stdout(&who.box_(&["logs", &name])).contains("saw-flag")
        });
        // Overrides, exit codes.
        let o = who.box_(&[
            "exec",
            "-u",
            "root",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            &name,
            "sh",
            "-c",
            "id -u; pwd; echo $X; exit 5",
        ]);
        assert_eq!(stdout(&o), "0\n/tmp\n1\n");
        assert_eq!(o.status.code(), Some(5));
        assert_eq!(who.box_(&["exec", &name, "nope"]).status.code(), Some(127));
        // -i passes stdin; without it the process reads nothing.
        let o = who.box_(&["exec", &name, "cat"]);
        assert_eq!(stdout(&o), "");
        who.box_(&["rm", "-f", &name]);
        let o = who.box_(&["exec", &name, "true"]);
        assert_ne!(o.status.code(), Some(0));
    }
}

#[test]
fn stop_sends_the_stop_signal_then_kills_after_the_timeout() {
    let Some(all) = Who::all() else { return };
    for who in all {
        // A container that handles SIGTERM exits by itself.
        let polite = unique("polite");
        let _c1 = Cleanup(&who, polite.clone());
        run_detached(
            &who,
            &polite,
            &[
                "busybox",
                "sh",
                "-c",
                "trap 'echo got-term; exit 3' TERM; while :; do sleep 0.1; done",
            ],
        );
        wait_for("the trap to be set", || {
            inspect(&who, &polite)["State"]["Running"] == true
        });
        std::thread::sleep(Duration::from_millis(300));
        let o = who.box_(&["stop", &polite]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{polite}\n"));
        let j = inspect(&who, &polite);
        assert_eq!(j["State"]["Status"], "exited");
        assert_eq!(j["State"]["ExitCode"], 3);
        assert!(stdout(&who.box_(&["logs", &polite])).contains("got-term"));
        // One that ignores it is killed after -t seconds.
        let stubborn = unique("stubborn");
        let _c2 = Cleanup(&who, stubborn.clone());
        run_detached(
            &who,
            &stubborn,
            &[
                "busybox",
                "sh",
                "-c",
                "trap '' TERM; while :; do sleep 0.1; done",
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        let o = who.box_(&["stop", "-t", "1", &stubborn]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let j = inspect(&who, &stubborn);
        assert_eq!(j["State"]["Status"], "exited");
        assert_eq!(j["State"]["ExitCode"], 137);
        // Stopping a stopped container is fine.
        assert_eq!(who.box_(&["stop", &stubborn]).status.code(), Some(0));
        // kill sends the signal asked for.
        let k = unique("kill");
        let _c3 = Cleanup(&who, k.clone());
        run_detached(
            &who,
            &k,
            &[
                "busybox",
                "sh",
                "-c",
                "trap 'exit 42' USR1; while :; do sleep 0.1; done",
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(who.box_(&["kill", "-s", "USR1", &k]).status.code(), Some(0));
        wait_for("exit after USR1", || {
            inspect(&who, &k)["State"]["Status"] == "exited"
        });
        assert_eq!(inspect(&who, &k)["State"]["ExitCode"], 42);
        assert_ne!(who.box_(&["kill", &k]).status.code(), Some(0));
        assert_ne!(
            who.box_(&["kill", "no-such-container-x"]).status.code(),
            Some(0)
        );
        for n in [&polite, &stubborn, &k] {
            assert_eq!(who.box_(&["rm", n]).status.code(), Some(0));
        }
    }
}

#[test]
fn a_detached_rm_container_removes_itself_and_failures_are_reported() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("selfrm");
        let _c = Cleanup(&who, name.clone());
        run_detached(&who, &name, &["--rm", "busybox", "sleep", "0.2"]);
        wait_for("self removal", || {
            !stdout(&who.box_(&["ps", "-a"])).contains(&name)
        });
        // A command that cannot start fails boxrun -d with docker's code (the container
        // stays, exited, as with docker).
        let failed = unique("nocmd");
        let _c2 = Cleanup(&who, failed.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &failed,
            "--network",
            "none",
            "busybox",
            "no-such-cmd",
        ]);
        assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("executable file not found"),
            "{}",
            stderr(&o)
        );
        let o = who.boxrun(&["-d", "--pull", "never", "no-such-image:2"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("no-such-image"), "{}", stderr(&o));
    }
}

#[test]
fn a_dead_containers_state_is_detected() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("dead");
        let _c = Cleanup(&who, name.clone());
        let id = run_detached(&who, &name, &["busybox", "sleep", "1000"]);
        // Kill every boxkit process of this container from the host, as a crash would.
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                boxrun_common::store(&who)
                    .join("containers")
                    .join(&id)
                    .join("state.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let sup = state["supervisor_pid"].as_i64().unwrap() as i32;
        let monitor = std::fs::read_to_string(format!("/proc/{sup}/stat"))
            .unwrap()
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<i32>()
            .unwrap();
        unsafe {
            libc::kill(monitor, libc::SIGKILL);
            libc::kill(sup, libc::SIGKILL);
        }
        wait_for("the supervisor to die", || {
            !std::path::Path::new(&format!("/proc/{sup}")).exists()
        });
        let ps = stdout(&who.box_(&["ps", "-a"]));
        assert!(
            ps.lines()
                .any(|l| l.ends_with(&name) && l.contains("Exited")),
            "{ps}"
        );
        let j = inspect(&who, &name);
        assert_eq!(j["State"]["Running"], false);
        assert!(!j["State"]["Error"].as_str().unwrap().is_empty());
        assert_eq!(who.box_(&["rm", &name]).status.code(), Some(0));
    }
}

#[test]
fn exec_joins_the_containers_cgroup_so_its_limits_apply() {
    let Some(who) = Who::root() else { return };
    let name = unique("execcg");
    let _c = Cleanup(&who, name.clone());
    run_detached(
        &who,
        &name,
        &["--pids-limit", "50", "busybox", "sleep", "1000"],
    );
    let o = who.box_(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let (mine, init) = out.split_once("--\n").unwrap();
    let pids = |s: &str| s.lines().find(|l| l.contains(":pids:")).map(String::from);
    assert!(pids(mine).is_some(), "{out}");
    assert_eq!(pids(mine), pids(init), "{out}");
}

#[test]
fn debian_detached_with_flags_exec_and_stop() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("deb");
        let _c = Cleanup(&who, name.clone());
        let vol = unique("debvol");
        let v = format!("{vol}:/data");
        run_detached(
            &who,
            &name,
            &[
                "--read-only",
                "-v",
                &v,
                "-e",
                "MODE=detached",
                "-w",
                "/data",
                "-u",
                "nobody",
                "--hostname",
                "deb1",
                "debian:bookworm",
                "bash",
                "-c",
                "echo \"$MODE $(id -un) $(pwd) $(hostname)\"; exec sleep 1000",
            ],
        );
        wait_for("log", || {
            stdout(&who.box_(&["logs", &name])).contains("detached")
        });
        assert_eq!(
            stdout(&who.box_(&["logs", &name])),
            "detached nobody /data deb1\n"
        );
        let o = who.box_(&[
            "exec", "-u", "root", &name, "bash", "-c",
            ". /etc/os-release; echo $ID; ps -o pid=,comm= 2>/dev/null || cat /proc/1/comm; touch /x 2>/dev/null || echo ro",
        ]);
        let out = stdout(&o);
        assert!(out.starts_with("debian\n"), "{out}");
        assert!(out.contains("sleep"), "{out}");
        assert!(out.ends_with("ro\n"), "{out}");
        let o = who.box_(&["stop", "-t", "1", &name]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // sleep as pid 1 has no SIGTERM handler: the kernel ignores TERM for it, so KILL ends it.
        assert_eq!(inspect(&who, &name)["State"]["ExitCode"], 137);
        assert_eq!(who.box_(&["rm", &name]).status.code(), Some(0));
        let _ = std::fs::remove_dir_all(boxrun_common::store(&who).join("volumes").join(&vol));
    }
}

/// `boxrun --rm --name NAME … busybox sleep 1000` in the foreground, once `box ps` lists it.
fn foreground_sleep(who: &Who, name: &str) -> std::process::Child {
    let child = who
        .cmd("boxrun")
        .args(["--rm", "--name", name, "--network", "none", "busybox"])
        .args(["sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the foreground container in ps", || {
        stdout(&who.box_(&["ps"]))
            .lines()
            .any(|l| l.ends_with(name))
    });
    child
}

#[test]
fn a_foreground_container_is_listed_and_reachable_while_it_runs() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("fg");
        let _c = Cleanup(&who, name.clone());
        let mut child = foreground_sleep(&who, &name);
        let o = who.box_(&["exec", &name, "cat", "/proc/1/comm"]);
        assert_eq!(stdout(&o), "sleep\n", "{}", stderr(&o));
        let st = inspect(&who, &name);
        assert_eq!(st["State"]["Status"], "running", "{st}");
        // A foreground --rm container's state is kept off the store's disk (a tmpfs run
        // directory), yet found above by name, as by id here.
        let id = st["Id"].as_str().unwrap().to_string();
        let store = boxrun_common::store(&who);
        assert!(!store.join("containers").join(&id).exists());
        let o = who.box_(&["inspect", "--format", "{{.Name}}", &id[..12]]);
        assert!(stdout(&o).contains(&name), "{}", stderr(&o));
        assert_eq!(who.box_(&["stop", "-t", "1", &name]).status.code(), Some(0));
        // sleep as pid 1 ignores SIGTERM: killed after the timeout, 137 to boxrun's caller.
        assert_eq!(child.wait().unwrap().code(), Some(137));
        assert!(!stdout(&who.box_(&["ps", "-a"])).contains(&name));
        // The same for box kill.
        let mut child = foreground_sleep(&who, &name);
        assert_eq!(who.box_(&["kill", &name]).status.code(), Some(0));
        assert_eq!(child.wait().unwrap().code(), Some(137));
        assert!(!stdout(&who.box_(&["ps", "-a"])).contains(&name));
    }
}

#[test]
fn exec_cp_and_top_right_after_a_foreground_run_is_listed_meet_its_command() {
    // A foreground run is listed (and found by name) before its pid 1 has built the
    // container's root. What meets the container then waits for its command: joined earlier,
    // pid 1's mount namespace still had the host's tree at its root (an exec failed with
    // "working directory / is outside the container's root", or ran the host's cat; a cp
    // would have written into the host's /tmp).
    let Some(all) = Who::all() else { return };
    use std::os::unix::fs::PermissionsExt;
    let src = tempfile::tempdir().unwrap();
    std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = src.path().join("early");
    std::fs::write(&file, "early\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for who in all {
        // A run alone (--network none) and one with the host agent (--network host).
        for (i, network) in ["none", "host"].iter().cycle().take(6).enumerate() {
            let name = unique("early");
            let _c = Cleanup(&who, name.clone());
            let mut child = who
                .cmd("boxrun")
                .args(["--rm", "--name", &name, "--network", network, "busybox"])
                .args(["sleep", "1000"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let target = format!("/tmp/{name}");
            let args: Vec<String> = match i % 3 {
                0 => vec![
                    "exec".into(),
                    name.clone(),
                    "cat".into(),
                    "/proc/1/comm".into(),
                ],
                1 => vec![
                    "cp".into(),
                    file.display().to_string(),
                    format!("{name}:{target}"),
                ],
                _ => vec!["top".into(), name.clone()],
            };
            // As soon as the name resolves.
            let end = Instant::now() + Duration::from_secs(20);
            let o = loop {
                let o = who.cmd("box").args(&args).output().unwrap();
                if !stderr(&o).contains("no such container") {
                    break o;
                }
                assert!(Instant::now() < end, "{name} never listed");
            };
            let what = format!("{} {network}: {args:?}", who.label());
            assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
            match i % 3 {
                0 => assert_eq!(stdout(&o), "sleep\n", "{what}"),
                1 => {
                    assert!(!std::path::Path::new(&target).exists(), "{what}");
                    let o = who.box_(&["exec", &name, "cat", &target]);
                    assert_eq!(stdout(&o), "early\n", "{what}: {}", stderr(&o));
                }
                _ => assert!(stdout(&o).contains("sleep 1000"), "{what}: {}", stdout(&o)),
            }
            assert_eq!(who.box_(&["kill", &name]).status.code(), Some(0));
            assert_eq!(child.wait().unwrap().code(), Some(137), "{what}");
        }
    }
}

#[test]
fn stop_right_after_a_foreground_run_is_listed_reaches_its_command() {
    // `box stop` as soon as a foreground run is listed: while pid 1 still builds the root it
    // drops a SIGTERM (the init of its pid namespace, with no handler), and the stop then
    // waited out its whole timeout for a SIGKILL (137). It waits for the command instead;
    // boxkit's init (--init) forwards the SIGTERM to `sleep`, which it ends (143).
    let Some(all) = Who::all() else { return };
    for who in all {
        for network in ["none", "host"].iter().cycle().take(4) {
            let name = unique("stopearly");
            let _c = Cleanup(&who, name.clone());
            let mut child = who
                .cmd("boxrun")
                .args(["--rm", "--init", "--name", &name, "--network", network])
                .args(["busybox", "sleep", "1000"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let end = Instant::now() + Duration::from_secs(20);
            let o = loop {
                let o = who
                    .cmd("box")
                    .args(["stop", "-t", "60", &name])
                    .output()
                    .unwrap();
                if !stderr(&o).contains("no such container") {
                    break o;
                }
                assert!(Instant::now() < end, "{name} never listed");
            };
            let what = format!("{} {network}", who.label());
            assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
            assert_eq!(child.wait().unwrap().code(), Some(143), "{what}");
        }
    }
}

#[test]
fn prune_keeps_the_layers_of_a_running_container_whose_image_was_removed() {
    let Some(_) = Who::root() else { return };
    // A store of its own: this test untags busybox.
    let dir = boxrun_common::tempdir();
    let store = dir.path().join("store");
    let box_ = |args: &[&str]| {
        let o = std::process::Command::new(common::bin("box"))
            .arg("--root")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "box {}: {:?} {}",
            args.join(" "),
            o.status.code(),
            stderr(&o)
        );
        o
    };
    let archive = common::fixtures::oci_archive(common::fixtures::Fixture::Busybox);
    assert!(
        box_(&["load", "-q", "-i", archive.to_str().unwrap()])
            .status
            .success()
    );
    let o = std::process::Command::new(common::bin("boxrun"))
        .arg("--root")
        .arg(&store)
        .args(["-d", "--network", "none", "busybox", "sleep", "1000"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert!(box_(&["rmi", "busybox"]).status.success());
    assert!(box_(&["prune"]).status.success());
    let layers = std::fs::read_dir(store.join("layers")).unwrap().count();
    assert!(layers > 0, "prune removed the running container's layers");
    let mount_points = boxkit::store::mountpoints::DIFF_ID.trim_start_matches("sha256:");
    assert!(
        store.join("layers").join(mount_points).is_dir(),
        "prune removed the mount points layer below a running container's image"
    );
    // The container is untouched.
    assert_eq!(box_(&["exec", &id, "true"]).status.code(), Some(0));
    assert_eq!(box_(&["rm", "-f", &id]).status.code(), Some(0));
    // Once it is gone, prune may take everything.
    assert!(box_(&["prune"]).status.success());
    assert_eq!(std::fs::read_dir(store.join("layers")).unwrap().count(), 0);
}

#[test]
fn a_running_containers_writable_layer_is_a_tmpfs_with_no_directory_on_the_host() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("upper");
        let _c = Cleanup(&who, name.clone());
        // --rm: a container that outlives its run keeps its writable layer on disk instead.
        let id = run_detached(
            &who,
            &name,
            &[
                "--rm",
                "busybox",
                "sh",
                "-c",
                "echo written > /new; sleep 1000",
            ],
        );
        wait_for("the write", || {
            stdout(&who.box_(&["exec", &name, "cat", "/new"])).contains("written")
        });
        // The overlay's upper is on a detached tmpfs: nothing under the host's temp dir.
        assert!(
            !std::path::Path::new(&format!("/tmp/boxkit-{id}")).exists(),
            "a scratch directory was made on the host for {id}"
        );
        let mounts = stdout(&who.box_(&["exec", &name, "cat", "/proc/mounts"]));
        let root = mounts.lines().find(|l| l.split(' ').nth(1) == Some("/"));
        assert!(
            root.is_some_and(|l| l.starts_with("none / overlay ") && l.contains("upperdir=")),
            "{mounts}"
        );
        let o = who.box_(&["rm", "-f", &name]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn the_scratch_directory_fallback_for_the_writable_layer_works_and_is_removed() {
    // Kernels before 6.15 refuse an overlay upper on a detached tmpfs: the upper then lives on
    // a tmpfs mounted at <tmp>/boxkit-<id> in the tool's private mount namespace.
    // BOX_DEBUG_SCRATCH_UPPER takes that path on this kernel.
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("scratch-upper");
        let _c = Cleanup(&who, name.clone());
        let mut c = match &who {
            Who::Root => std::process::Command::new("env"),
            Who::User(u) => common::users::command_as(u, std::path::Path::new("/usr/bin/env")),
        };
        let o = c
            .arg("BOX_DEBUG_SCRATCH_UPPER=1")
            .arg(common::bin("boxrun"))
            .arg("--root")
            .arg(boxrun_common::store(&who))
            // --rm: a container that outlives its run keeps its writable layer on disk instead.
            .args([
                "-d",
                "--rm",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
            ])
            .args(["sh", "-c", "echo written > /new; sleep 1000"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        wait_for("the write", || {
            stdout(&who.box_(&["exec", &name, "cat", "/new"])).contains("written")
        });
        // Named by the sandbox's id: the container id's first 16 characters.
        let scratch = std::path::PathBuf::from(format!("/tmp/boxkit-{}", &id[..16]));
        assert!(scratch.is_dir(), "the fallback was not taken for {id}");
        // The host sees an empty directory: the tmpfs is in the tool's mount namespace.
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
        let o = who.box_(&["rm", "-f", &name]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        wait_for("the scratch directory's removal", || !scratch.exists());
    }
}

#[test]
fn prune_keeps_the_layers_of_a_running_foreground_rm_container() {
    let Some(_) = Who::root() else { return };
    // A store of its own: this test untags busybox. The container's state lives in the
    // store's tmpfs run directory, which prune must scan as well.
    let dir = boxrun_common::tempdir();
    let store = dir.path().join("store");
    let cmd = |bin: &str| {
        let mut c = std::process::Command::new(common::bin(bin));
        c.arg("--root")
            .arg(&store)
            .stdin(std::process::Stdio::null());
        c
    };
    let box_ = |args: &[&str]| cmd("box").args(args).output().unwrap();
    let archive = common::fixtures::oci_archive(common::fixtures::Fixture::Busybox);
    let o = box_(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = unique("fg-prune");
    let mut child = cmd("boxrun")
        .args(["--rm", "--name", &name, "--network", "none", "busybox"])
        .args(["sleep", "1000"])
        .spawn()
        .unwrap();
    wait_for("the foreground container in ps", || {
        stdout(&box_(&["ps"])).lines().any(|l| l.ends_with(&name))
    });
    assert!(box_(&["rmi", "busybox"]).status.success());
    assert!(box_(&["prune"]).status.success());
    let layers = std::fs::read_dir(store.join("layers")).unwrap().count();
    assert!(layers > 0, "prune removed the running container's layers");
    assert_eq!(box_(&["exec", &name, "true"]).status.code(), Some(0));
    assert_eq!(box_(&["kill", &name]).status.code(), Some(0));
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(box_(&["prune"]).status.success());
    assert_eq!(std::fs::read_dir(store.join("layers")).unwrap().count(), 0);
}
