//! `box create | start | restart | attach` and `boxrun --restart` against the real binaries,
//! as root and rootless.

mod boxrun_common;
mod common;

use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, run_detached, stderr, stdout, unique};

fn inspect(who: &Who, name: &str, format: &str) -> String {
    let o = who.box_(&["inspect", "--format", format, name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// Call `probe` every 50 ms until it gives a value; after `secs`, fail with its last reason.
fn poll<T>(secs: u64, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < end, "{why}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `inspect --format` until `ok` holds (or fail after `secs`).
fn wait_for(who: &Who, name: &str, format: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    poll(secs, || {
        // The container may not exist yet (a foreground boxrun still preparing it).
        let o = who.box_(&["inspect", "--format", format, name]);
        let v = stdout(&o).trim().to_string();
        if o.status.success() && ok(&v) {
            Ok(v)
        } else {
            Err(format!("{}: {name}: {format} is still {v:?}", who.label()))
        }
    })
}

#[test]
fn create_leaves_a_created_container_that_start_runs_and_a_second_start_sees_its_files() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("create");
        let _c = Cleanup(&who, n.clone());
        let script = "echo run; cat /data 2>/dev/null; echo kept >> /data; exit 3";
        let o = who.box_(&[
            "create",
            "--name",
            &n,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let id = stdout(&o).trim().to_string();
        assert_eq!(id.len(), 64, "{id:?}");
        // Created: listed by ps -a with docker's status text, not by ps.
        let o = who.box_(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={n}"),
            "--format",
            "{{.Status}}",
        ]);
        assert_eq!(stdout(&o).trim(), "Created", "{}", stderr(&o));
        let o = who.box_(&["ps", "-q", "--filter", &format!("name={n}")]);
        assert_eq!(stdout(&o).trim(), "");
        assert_eq!(inspect(&who, &n, "{{.State.Status}}"), "created");
        // start -a: the output, and the container's exit code.
        let o = who.box_(&["start", "-a", &n]);
        assert_eq!(o.status.code(), Some(3), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "run\n");
        // Started again: the file the first run wrote is still there (its writable layer).
        let o = who.box_(&["start", "-a", &id[..12]]);
        assert_eq!(o.status.code(), Some(3), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "run\nkept\n");
        // Without -a: detached, the name printed; the exit is recorded as usual.
        let o = who.box_(&["start", &n]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), format!("{n}\n"));
        let o = who.box_(&["wait", &n]);
        assert_eq!(stdout(&o), "3\n", "{}", stderr(&o));
        let o = who.box_(&["logs", &n]);
        assert_eq!(stdout(&o), "run\nrun\nkept\nrun\nkept\nkept\n");
        // Starting a missing container is an error for it (exit 1).
        let o = who.box_(&["start", "no-such-container-x"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("no such container"), "{}", stderr(&o));
    }
}

#[test]
fn start_of_a_running_container_is_refused_and_start_a_takes_one_container() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("start-run");
        let _c = Cleanup(&who, n.clone());
        run_detached(&who, &n, &["busybox", "sleep", "60"]);
        let o = who.box_(&["start", &n]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains("already running"), "{}", stderr(&o));
        let o = who.box_(&["start", "-a", &n, &n]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("multiple"), "{}", stderr(&o));
    }
}

#[test]
fn restart_stops_and_starts_again_with_a_new_start_time_and_the_same_layer() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("restart");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &[
                "busybox",
                "sh",
                "-c",
                "echo x >> /runs; trap 'exit 0' TERM; sleep 60 & wait",
            ],
        );
        wait_for(&who, &n, "{{.State.Status}}", 10, |s| s == "running");
        let first = inspect(&who, &n, "{{.State.StartedAt}}");
        let o = who.box_(&["restart", "-t", "5", &n]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), format!("{n}\n"));
        assert_eq!(inspect(&who, &n, "{{.State.Status}}"), "running");
        assert_ne!(inspect(&who, &n, "{{.State.StartedAt}}"), first);
        let o = who.box_(&["exec", &n, "cat", "/runs"]);
        assert_eq!(stdout(&o), "x\nx\n", "{}", stderr(&o));
        // An exited container is simply started.
        let o = who.box_(&["stop", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.box_(&["restart", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(inspect(&who, &n, "{{.State.Status}}"), "running");
    }
}

#[test]
fn restart_on_failure_retries_at_most_n_times_and_counts_them() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("onfail");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &[
                "--restart",
                "on-failure:2",
                "busybox",
                "sh",
                "-c",
                "echo try; exit 2",
            ],
        );
        // Three runs (100 ms, then 200 ms of back-off between them), then it stays exited.
        let o = who.box_(&["wait", &n]);
        assert_eq!(stdout(&o), "2\n", "{}", stderr(&o));
        wait_for(&who, &n, "{{.RestartCount}} {{.State.Status}}", 20, |s| {
            s == "2 exited"
        });
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            inspect(&who, &n, "{{.RestartCount}} {{.State.ExitCode}}"),
            "2 2"
        );
        let o = who.box_(&["logs", &n]);
        assert_eq!(stdout(&o), "try\ntry\ntry\n");
        assert_eq!(
            inspect(&who, &n, "{{json .HostConfig.RestartPolicy}}"),
            r#"{"MaximumRetryCount":2,"Name":"on-failure"}"#
        );
        // A success is not a failure.
        let m = unique("onfail-ok");
        let _m = Cleanup(&who, m.clone());
        run_detached(&who, &m, &["--restart", "on-failure", "busybox", "true"]);
        let o = who.box_(&["wait", &m]);
        assert_eq!(stdout(&o), "0\n");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            inspect(&who, &m, "{{.RestartCount}} {{.State.Status}}"),
            "0 exited"
        );
    }
}

#[test]
fn restart_always_runs_again_with_back_off_until_box_stop_ends_it() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("always");
        let _c = Cleanup(&who, n.clone());
        let t = Instant::now();
        run_detached(
            &who,
            &n,
            &["--restart", "always", "busybox", "sh", "-c", "exit 1"],
        );
        // Back-off 100, 200, 400, 800 ms…: within ~2 s a handful of restarts, not dozens.
        std::thread::sleep(Duration::from_millis(2000).saturating_sub(t.elapsed()));
        let count: u32 = inspect(&who, &n, "{{.RestartCount}}").parse().unwrap();
        assert!(
            (1..=5).contains(&count),
            "{}: {count} restarts in 2 s",
            who.label()
        );
        // Between runs, ps says so as docker does.
        let f = format!("name={n}");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let o = who.box_(&[
                "ps",
                "-a",
                "--filter",
                &f,
                "--format",
                "{{.Status}}|{{.State}}",
            ]);
            let s = stdout(&o);
            if s.starts_with("Restarting (1) ") && s.trim_end().ends_with("|restarting") {
                break;
            }
            assert!(
                Instant::now() < end,
                "{}: never seen restarting: {s}",
                who.label()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A restart is never taken for a lost exit: no error, and the state says so.
        let s = inspect(&who, &n, "{{.State.Status}}|{{.State.Error}}");
        assert!(
            s == "running|" || s == "restarting|" || s == "exited|",
            "{s}"
        );
        let o = who.box_(&["stop", "-t", "1", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let after = inspect(&who, &n, "{{.RestartCount}}");
        std::thread::sleep(Duration::from_millis(2000));
        assert_eq!(
            inspect(&who, &n, "{{.RestartCount}} {{.State.Status}}"),
            format!("{after} exited")
        );
        // A long-running one restarted by the policy runs with a new start time.
        let m = unique("always-run");
        let _m = Cleanup(&who, m.clone());
        run_detached(
            &who,
            &m,
            &["--restart", "always", "busybox", "sh", "-c", "sleep 0.5"],
        );
        let first = inspect(&who, &m, "{{.State.StartedAt}}");
        let s = wait_for(&who, &m, "{{.RestartCount}} {{.State.Status}}", 10, |s| {
            s.starts_with("1 ") && s.ends_with("running")
        });
        assert_eq!(s, "1 running");
        assert_ne!(inspect(&who, &m, "{{.State.StartedAt}}"), first);
        // box kill ends the policy as well (as podman).
        let o = who.box_(&["kill", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.box_(&["wait", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(inspect(&who, &m, "{{.State.Status}}"), "exited");
        // box start clears the stop and counts from 0 again.
        let o = who.box_(&["start", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(inspect(&who, &m, "{{.RestartCount}}"), "0");
        let o = who.box_(&["rm", "-f", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn restart_with_rm_and_a_bad_policy_are_refused() {
    let Some(who) = Who::root() else { return };
    let o = who.boxrun(&["--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--restart and --rm"), "{}", stderr(&o));
    let o = who.boxrun(&["-d", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("invalid --restart"), "{}", stderr(&o));
    // --rm with --restart no is fine, as with docker.
    let o = who.boxrun(&[
        "--rm",
        "--restart",
        "no",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn attach_follows_the_output_from_now_and_returns_the_exit_code() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("attach");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &[
                "busybox",
                "sh",
                "-c",
                "echo early; sleep 2; echo late; exit 4",
            ],
        );
        wait_for(&who, &n, "{{.State.Status}}", 10, |s| s == "running");
        std::thread::sleep(Duration::from_millis(300));
        let o = who.box_(&["attach", "--no-stdin", &n]);
        assert_eq!(o.status.code(), Some(4), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "late\n");
        let o = who.box_(&["attach", &n]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("stopped container"), "{}", stderr(&o));
    }
}

#[test]
fn rm_removes_a_kept_writable_layer_with_files_of_non_root_container_users() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("rm-layer");
        let _c = Cleanup(&who, n.clone());
        // A read-only directory of container uid 1000: outside the user namespace, a
        // rootless user can neither write into it nor remove it.
        run_detached(
            &who,
            &n,
            &[
                "-u",
                "1000:1000",
                "busybox",
                "sh",
                "-c",
                "mkdir -p /tmp/d/e && echo x > /tmp/d/e/f && chmod 555 /tmp/d/e",
            ],
        );
        let o = who.box_(&["wait", &n]);
        assert_eq!(stdout(&o), "0\n", "{}", stderr(&o));
        let id = inspect(&who, &n, "{{.Id}}");
        let dir = boxrun_common::store(&who).join("containers").join(&id);
        assert!(dir.join("upper/tmp/d/e/f").exists(), "{}", dir.display());
        let o = who.box_(&["rm", &n]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert!(!dir.exists(), "{}: {} is left", who.label(), dir.display());
        // The same for a running one, with -f.
        let m = unique("rm-layer-f");
        let _m = Cleanup(&who, m.clone());
        run_detached(
            &who,
            &m,
            &[
                "-u",
                "1000:1000",
                "busybox",
                "sh",
                "-c",
                "mkdir -p /tmp/d/e && chmod 555 /tmp/d/e && sleep 60",
            ],
        );
        let id = inspect(&who, &m, "{{.Id}}");
        wait_for(&who, &m, "{{.State.Status}}", 10, |s| s == "running");
        let o = who.box_(&["rm", "-f", &m]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let dir = boxrun_common::store(&who).join("containers").join(&id);
        assert!(!dir.exists(), "{}: {} is left", who.label(), dir.display());
    }
}

#[test]
fn start_ai_runs_the_container_in_the_foreground_with_stdin_and_keeps_its_log() {
    use std::io::Write;
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("start-ai");
        let _c = Cleanup(&who, n.clone());
        let o = who.box_(&[
            "create",
            "-i",
            "--name",
            &n,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "read l; echo got $l; exit 7",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let mut child = who
            .cmd("box")
            .args(["start", "-ai", &n])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(7), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "got hello\n");
        assert_eq!(
            inspect(&who, &n, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 7"
        );
        // Its output is in the log too.
        let o = who.box_(&["logs", &n]);
        assert_eq!(stdout(&o), "got hello\n", "{}: {}", who.label(), stderr(&o));
    }
}

#[test]
fn a_foreground_run_keeps_its_output_in_the_log_and_still_passes_it_on() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("fg-log");
        let _c = Cleanup(&who, n.clone());
        let o = who.boxrun(&[
            "--name",
            &n,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; echo more; exit 4",
        ]);
        // The caller still gets stdout and stderr apart, and the exit code.
        assert_eq!(o.status.code(), Some(4), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "out\nmore\n");
        assert!(stderr(&o).ends_with("err\n"), "{}", stderr(&o));
        // The log has both, with times.
        let o = who.box_(&["logs", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = stdout(&o);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(lines, ["err", "more", "out"]);
        let o = who.box_(&["logs", "-t", "--tail", "1", &n]);
        assert!(
            stdout(&o).trim_end().ends_with("Z more") || stdout(&o).trim_end().ends_with("Z err"),
            "{}",
            stdout(&o)
        );
        assert!(!inspect(&who, &n, "{{.LogPath}}").is_empty());
        // A -t run keeps what its terminal showed, as docker's log of a TTY container: the
        // pty's bytes, `\r\n` line ends included.
        let m = unique("fg-ttylog");
        let _m = Cleanup(&who, m.clone());
        let o = who.boxrun(&[
            "--name",
            &m,
            "-t",
            "--network",
            "none",
            "busybox",
            "echo",
            "tty-out",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "tty-out\r\n", "{}", who.label());
        let o = who.box_(&["logs", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "tty-out\r\n", "{}", who.label());
    }
}

#[test]
fn a_running_foreground_container_can_be_attached() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("fg-attach");
        let _c = Cleanup(&who, n.clone());
        let child = who
            .cmd("boxrun")
            .args([
                "--name",
                &n,
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "sleep 2; echo late; exit 6",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&who, &n, "{{.State.Status}}", 10, |s| s == "running");
        let o = who.box_(&["attach", &n]);
        assert_eq!(o.status.code(), Some(6), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "late\n");
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
    }
}

#[test]
fn a_restarted_container_publishes_its_ports_again() {
    use std::io::{Read, Write};
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("restart-port");
        let _c = Cleanup(&who, n.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &n,
            "--restart",
            "on-failure:1",
            "-p",
            "127.0.0.1::8080",
            "busybox",
            "sh",
            "-c",
            "echo hi > /tmp/i; httpd -f -p 8080 -h /tmp & sleep 2; exit 1",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        wait_for(&who, &n, "{{.RestartCount}} {{.State.Status}}", 15, |s| {
            s == "1 running"
        });
        // The supervisor records "running" as it starts and the bound ports a few
        // milliseconds later, before the command runs (`boxrun -d` returns after both on a
        // first start; a restart has nobody waiting).
        let addr = poll(5, || {
            let o = who.box_(&["port", &n, "8080"]);
            let addr = stdout(&o).trim().to_string();
            if addr.starts_with("127.0.0.1:") {
                Ok(addr)
            } else {
                Err(format!("{}: {addr:?} {}", who.label(), stderr(&o)))
            }
        });
        let end = Instant::now() + Duration::from_secs(5);
        let body = loop {
            let r = std::net::TcpStream::connect(&addr).and_then(|mut s| {
                s.write_all(b"GET /i HTTP/1.0\r\n\r\n")?;
                let mut b = String::new();
                s.read_to_string(&mut b)?;
                Ok(b)
            });
            match r {
                Ok(b) if b.ends_with("hi\n") => break b,
                _ if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
                r => panic!("{}: {addr}: {r:?}", who.label()),
            }
        };
        assert!(body.starts_with("HTTP/1."), "{body}");
    }
}

#[test]
fn restart_unless_stopped_restarts_a_failing_container_until_box_stop() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("unless");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &[
                "--restart",
                "unless-stopped",
                "busybox",
                "sh",
                "-c",
                "exit 2",
            ],
        );
        wait_for(&who, &n, "{{.RestartCount}}", 10, |c| {
            c.parse::<u32>().is_ok_and(|c| c >= 1)
        });
        assert_eq!(
            inspect(&who, &n, "{{.HostConfig.RestartPolicy.Name}}"),
            "unless-stopped"
        );
        let o = who.box_(&["stop", "-t", "1", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let after = inspect(&who, &n, "{{.RestartCount}}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            inspect(&who, &n, "{{.RestartCount}} {{.State.Status}}"),
            format!("{after} exited")
        );
    }
}

#[test]
fn a_file_copied_into_a_created_container_is_there_when_it_starts() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("create-cp");
        let _c = Cleanup(&who, n.clone());
        let o = who.box_(&[
            "create",
            "--name",
            &n,
            "--network",
            "none",
            "busybox",
            "cat",
            "/copied",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let dir = boxrun_common::tempdir();
        let src = dir.path().join("file");
        std::fs::write(&src, "copied before start\n").unwrap();
        who.own(dir.path());
        // A missing directory named with a trailing slash is refused, as docker does.
        let o = who.box_(&["cp", src.to_str().unwrap(), &format!("{n}:/nodir/")]);
        assert_ne!(o.status.code(), Some(0));
        let o = who.box_(&["cp", src.to_str().unwrap(), &format!("{n}:/copied")]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.box_(&["start", "-a", &n]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "copied before start\n");
    }
}

/// `box attach ARGS… NAME` running, with piped stdin, stdout and stderr.
fn spawn_attach(who: &Who, args: &[&str], name: &str) -> std::process::Child {
    use std::process::Stdio;
    who.cmd("box")
        .arg("attach")
        .args(args)
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Poll `box logs NAME` until it contains `what` (or fail after `secs`).
fn wait_log(who: &Who, name: &str, what: &str, secs: u64) -> String {
    poll(secs, || {
        let log = stdout(&who.box_(&["logs", name]));
        if log.contains(what) {
            Ok(log)
        } else {
            Err(format!(
                "{}: {name}: the log lacks {what:?}: {log:?}",
                who.label()
            ))
        }
    })
}

#[test]
fn attach_feeds_its_stdin_to_a_detached_i_container_and_returns_its_exit_code() {
    use std::io::Write;
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("attach-i");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &["-i", "busybox", "sh", "-c", "read x; echo got:$x; exit 5"],
        );
        wait_for(&who, &n, "{{.State.Status}}", 10, |s| s == "running");
        assert_eq!(inspect(&who, &n, "{{.Config.OpenStdin}}"), "true");
        let mut a = spawn_attach(&who, &[], &n);
        a.stdin.take().unwrap().write_all(b"hello\n").unwrap();
        let o = a.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(5), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "got:hello\n", "{}", who.label());
        assert_eq!(stdout(&who.box_(&["logs", &n])), "got:hello\n");
        // The FIFO goes with the monitor.
        let id = inspect(&who, &n, "{{.Id}}");
        let fifo = boxrun_common::store(&who)
            .join("containers")
            .join(&id)
            .join("stdin");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !fifo.exists(),
            "{}: {} is left",
            who.label(),
            fifo.display()
        );

        // The same for `box create -i` + `box start` (detached) + attach.
        let m = unique("attach-ci");
        let _m = Cleanup(&who, m.clone());
        let o = who.box_(&[
            "create",
            "-i",
            "--name",
            &m,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "read x; echo created:$x",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.box_(&["start", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let mut a = spawn_attach(&who, &[], &m);
        a.stdin.take().unwrap().write_all(b"there\n").unwrap();
        let o = a.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "created:there\n");
    }
}

#[test]
fn no_stdin_feeds_nothing_and_stdin_stays_open_across_two_attaches() {
    use std::io::Write;
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("attach-two");
        let _c = Cleanup(&who, n.clone());
        let script = "echo ready; read x; echo one:$x; read y; echo two:$y; exit 3";
        run_detached(&who, &n, &["-i", "busybox", "sh", "-c", script]);
        wait_log(&who, &n, "ready", 10);
        // --no-stdin: what it is given never reaches the container.
        let mut quiet = spawn_attach(&who, &["--no-stdin"], &n);
        let _ = quiet.stdin.take().unwrap().write_all(b"nope\n");
        std::thread::sleep(Duration::from_millis(800));
        assert!(quiet.try_wait().unwrap().is_none(), "{}", who.label());
        quiet.kill().unwrap();
        let _ = quiet.wait();
        assert_eq!(stdout(&who.box_(&["logs", &n])), "ready\n");
        // A first attach sends one line and reaches its EOF: the container's stdin stays
        // open (docker's -d -i), so the second read waits instead of reading EOF.
        let mut first = spawn_attach(&who, &[], &n);
        first.stdin.take().unwrap().write_all(b"a\n").unwrap();
        wait_log(&who, &n, "one:a", 10);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(inspect(&who, &n, "{{.State.Status}}"), "running");
        assert!(first.try_wait().unwrap().is_none(), "{}", who.label());
        // A second attach at the same time feeds the next line; both see the output from
        // when they attached, and both end with the container's code.
        let mut second = spawn_attach(&who, &[], &n);
        second.stdin.take().unwrap().write_all(b"b\n").unwrap();
        let o2 = second.wait_with_output().unwrap();
        let o1 = first.wait_with_output().unwrap();
        assert_eq!(
            o2.status.code(),
            Some(3),
            "{}: {}",
            who.label(),
            stderr(&o2)
        );
        assert_eq!(stdout(&o2), "two:b\n");
        assert_eq!(
            o1.status.code(),
            Some(3),
            "{}: {}",
            who.label(),
            stderr(&o1)
        );
        assert_eq!(stdout(&o1), "one:a\ntwo:b\n");
    }
}

#[test]
fn attach_passes_sigterm_on_to_the_container_unless_sig_proxy_is_false() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("attach-sig");
        let _c = Cleanup(&who, n.clone());
        let script = "trap 'echo trapped; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
        run_detached(&who, &n, &["busybox", "sh", "-c", script]);
        wait_log(&who, &n, "ready", 10);
        // --sig-proxy=false: SIGTERM ends the attach, and the container runs on.
        let plain = spawn_attach(&who, &["--sig-proxy=false"], &n);
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(plain.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let o = plain.wait_with_output().unwrap();
        assert_eq!(o.status.code(), None, "{}: {}", who.label(), stderr(&o));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(inspect(&who, &n, "{{.State.Status}}"), "running");
        // The default: the container gets it, and the attach ends with its code.
        let a = spawn_attach(&who, &[], &n);
        let end = Instant::now() + Duration::from_secs(10);
        while !common::blocks(a.id(), libc::SIGTERM) {
            assert!(
                Instant::now() < end,
                "{}: SIGTERM never blocked",
                who.label()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(a.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let o = a.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(7), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "trapped\n");
        assert_eq!(
            inspect(&who, &n, "{{.State.Status}} {{.State.ExitCode}}"),
            "exited 7"
        );
    }
}

#[test]
fn a_container_run_without_i_reads_eof_at_once_and_attach_says_it_has_no_stdin() {
    use std::io::Write;
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("no-i");
        let _c = Cleanup(&who, n.clone());
        run_detached(
            &who,
            &n,
            &[
                "busybox",
                "sh",
                "-c",
                "read x; echo read:$?; sleep 2; echo done",
            ],
        );
        wait_log(&who, &n, "read:1", 10);
        assert_eq!(inspect(&who, &n, "{{.Config.OpenStdin}}"), "false");
        let mut a = spawn_attach(&who, &[], &n);
        let _ = a.stdin.take().unwrap().write_all(b"ignored\n");
        let o = a.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "done\n");
        assert!(
            stderr(&o).contains("started without -i"),
            "{}: {}",
            who.label(),
            stderr(&o)
        );
        assert_eq!(stdout(&who.box_(&["logs", &n])), "read:1\ndone\n");
    }
}

#[test]
fn a_foreground_run_exits_with_its_code_and_its_restart_policy_runs_it_again_detached() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("fg-onfail");
        let _c = Cleanup(&who, n.clone());
        let o = who.boxrun(&[
            "--name",
            &n,
            "--network",
            "none",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "echo run; exit 3",
        ]);
        // The first run's output and code, as docker's client prints them.
        assert_eq!(o.status.code(), Some(3), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "run\n");
        assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
        // Then two restarts in the background, and it stays exited.
        wait_for(&who, &n, "{{.RestartCount}} {{.State.Status}}", 20, |s| {
            s == "2 exited"
        });
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(
            inspect(
                &who,
                &n,
                "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}"
            ),
            "2 exited 3"
        );
        assert_eq!(stdout(&who.box_(&["logs", &n])), "run\nrun\nrun\n");

        // always: up again after the foreground run, until box stop ends it for good.
        let m = unique("fg-always");
        let _m = Cleanup(&who, m.clone());
        let o = who.boxrun(&[
            "--name",
            &m,
            "--network",
            "none",
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "echo up; sleep 1",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        wait_for(&who, &m, "{{.RestartCount}} {{.State.Status}}", 20, |s| {
            s.ends_with(" running") && !s.starts_with("0 ")
        });
        let o = who.box_(&["stop", "-t", "1", &m]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let after = inspect(&who, &m, "{{.RestartCount}}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            inspect(&who, &m, "{{.RestartCount}} {{.State.Status}}"),
            format!("{after} exited")
        );
    }
}

#[test]
fn a_foreground_run_stopped_with_ctrl_c_is_not_restarted() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let n = unique("fg-int");
        let _c = Cleanup(&who, n.clone());
        let script = "trap 'exit 9' INT; echo ready; while :; do sleep 0.1; done";
        let child = who
            .cmd("boxrun")
            .args(["--name", &n, "--network", "none", "--restart", "always"])
            .args(["busybox", "sh", "-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_log(&who, &n, "ready", 20);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(9), "{}: {}", who.label(), stderr(&o));
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            inspect(&who, &n, "{{.RestartCount}} {{.State.Status}}"),
            "0 exited"
        );
    }
}
