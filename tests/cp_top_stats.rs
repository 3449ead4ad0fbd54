//! `box cp`, `box top` and `box stats` against the real binaries, as root and rootless.

mod boxrun_common;
mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use boxrun_common::{Cleanup, Who, stderr, stdout, unique};

fn start(who: &Who, name: &str, script: &str) {
    let o = who.boxrun(&[
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Wait until the script has set things up.
    for _ in 0..100 {
        let o = who.box_(&["exec", name, "test", "-e", "/ready"]);
        if o.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{name} never got ready");
}

fn exec(who: &Who, name: &str, cmd: &str) -> String {
    let o = who.box_(&["exec", name, "sh", "-c", cmd]);
    assert!(o.status.success(), "{}: {}", who.label(), stderr(&o));
    stdout(&o)
}

fn ok(who: &Who, args: &[&str]) -> Output {
    let o = who.box_(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}: {args:?}: {}",
        who.label(),
        stderr(&o)
    );
    o
}

/// A temp dir the user may write.
fn dir(who: &Who) -> tempfile::TempDir {
    let d = boxrun_common::tempdir();
    who.own_store(d.path());
    d
}

#[test]
fn cp_copies_files_and_directories_both_ways_by_docker_path_rules() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("cp-rules");
        let _c = Cleanup(&who, name.clone());
        start(
            &who,
            &name,
            "mkdir -p /data/sub; echo a > /data/a; echo b > /data/sub/b; \
             ln -s a /data/link; touch /ready; sleep 300",
        );
        let d = dir(&who);
        let p = |s: &str| d.path().join(s).to_str().unwrap().to_string();
        let c = |s: &str| format!("{name}:{s}");
        // A file to a missing name, and into an existing directory.
        ok(&who, &["cp", &c("/data/a"), &p("renamed")]);
        assert_eq!(std::fs::read_to_string(p("renamed")).unwrap(), "a\n");
        ok(&who, &["cp", &c("/data/a"), d.path().to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(p("a")).unwrap(), "a\n");
        // A directory: created under its own name, as DEST when missing, contents with /.
        ok(&who, &["cp", &c("/data"), d.path().to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(p("data/sub/b")).unwrap(), "b\n");
        assert_eq!(std::fs::read_link(p("data/link")).unwrap(), Path::new("a"));
        ok(&who, &["cp", &c("/data"), &p("newdir")]);
        assert_eq!(std::fs::read_to_string(p("newdir/sub/b")).unwrap(), "b\n");
        std::fs::create_dir(p("contents")).unwrap();
        who.own_store(&d.path().join("contents"));
        ok(&who, &["cp", &c("/data/."), &p("contents")]);
        assert_eq!(std::fs::read_to_string(p("contents/a")).unwrap(), "a\n");
        // -L copies what the link points at.
        ok(&who, &["cp", "-L", &c("/data/link"), &p("followed")]);
        assert!(std::fs::symlink_metadata(p("followed")).unwrap().is_file());
        // docker's refusals: a file as a directory, a directory onto a file.
        let o = who.box_(&["cp", &c("/data/a/"), &p("x")]);
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
        let o = who.box_(&["cp", &c("/data"), &p("renamed")]);
        assert!(
            stderr(&o).contains("cannot copy a directory to a file"),
            "{}",
            stderr(&o)
        );
        let o = who.box_(&["cp", &c("/nonexistent"), &p("y")]);
        assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));

        // Into the container: a file, a directory, owned by container root unless -a.
        let src = dir(&who);
        std::fs::write(src.path().join("f"), "host\n").unwrap();
        std::fs::create_dir(src.path().join("tree")).unwrap();
        std::fs::write(src.path().join("tree/g"), "g\n").unwrap();
        who.own_store(src.path());
        for f in ["f", "tree", "tree/g"] {
            let m = if f == "tree" { 0o755 } else { 0o644 };
            std::fs::set_permissions(src.path().join(f), std::fs::Permissions::from_mode(m))
                .unwrap();
        }
        let s = |x: &str| src.path().join(x).to_str().unwrap().to_string();
        ok(&who, &["cp", &s("f"), &c("/data/")]);
        ok(&who, &["cp", &s("f"), &c("/data/f2")]);
        ok(&who, &["cp", &s("tree"), &c("/data")]);
        ok(&who, &["cp", &s("tree"), &c("/newtree")]);
        let out = exec(
            &who,
            &name,
            "cat /data/f /data/f2 /data/tree/g /newtree/g; stat -c %u:%g /data/f /data/tree/g",
        );
        assert_eq!(out, "host\nhost\ng\ng\n0:0\n0:0\n", "{}", who.label());
        // -a keeps the file's ids (as container ids), rootless too where its range maps them.
        std::os::unix::fs::chown(s("f"), Some(1234), Some(1234)).unwrap();
        ok(&who, &["cp", "-a", &s("f"), &c("/data/owned")]);
        assert_eq!(
            exec(&who, &name, "stat -c %u:%g /data/owned"),
            "1234:1234\n"
        );
        // A missing directory on the way is an error, not created.
        let o = who.box_(&["cp", &s("f"), &c("/no/such/dir/")]);
        assert_ne!(o.status.code(), Some(0));
    }
}

fn box_with_stdin(who: &Who, args: &[&str], input: &[u8]) -> Output {
    let mut c = who.cmd("box");
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn cp_dash_streams_a_tar_both_ways() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("cp-tar");
        let _c = Cleanup(&who, name.clone());
        start(
            &who,
            &name,
            "mkdir -p /d/s; echo x > /d/s/x; mkdir /in; touch /ready; sleep 300",
        );
        // Out: a tar rooted at the source's name, read by the host's tar.
        let o = ok(&who, &["cp", &format!("{name}:/d"), "-"]);
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("out.tar"), &o.stdout).unwrap();
        let list = std::process::Command::new("tar")
            .arg("-tf")
            .arg(t.path().join("out.tar"))
            .output()
            .unwrap();
        let names = stdout(&list);
        assert!(names.lines().any(|l| l == "d/s/x"), "{names}");
        // In: a tar made by the host's tar, extracted into an existing directory.
        std::fs::create_dir_all(t.path().join("src/deep")).unwrap();
        std::fs::write(t.path().join("src/deep/file"), "from tar\n").unwrap();
        let tar = std::process::Command::new("tar")
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(t.path().join("src"))
            .arg("deep")
            .output()
            .unwrap();
        let o = box_with_stdin(&who, &["cp", "-", &format!("{name}:/in")], &tar.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(exec(&who, &name, "cat /in/deep/file"), "from tar\n");
        // A compressed stream too, as docker takes it.
        let gz = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -czf - -C {} deep",
                t.path().join("src").display()
            ))
            .output()
            .unwrap();
        let o = box_with_stdin(&who, &["cp", "-", &format!("{name}:/d")], &gz.stdout);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(exec(&who, &name, "cat /d/deep/file"), "from tar\n");
        // The destination of a stream must be an existing directory.
        let o = box_with_stdin(&who, &["cp", "-", &format!("{name}:/nope")], &tar.stdout);
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("must be a directory"), "{}", stderr(&o));
    }
}

#[test]
fn cp_works_on_a_container_that_is_not_running() {
    let Some(all) = Who::all() else { return };
    for who in all {
        // Out of a foreground container that exited: its image's files.
        let name = unique("cp-stopped");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&["--name", &name, "--network", "none", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let d = dir(&who);
        ok(
            &who,
            &[
                "cp",
                &format!("{name}:/etc/passwd"),
                d.path().to_str().unwrap(),
            ],
        );
        let passwd = std::fs::read_to_string(d.path().join("passwd")).unwrap();
        assert!(passwd.starts_with("root:"), "{passwd}");
        // In: refused while it keeps no writable layer (a foreground run's was a tmpfs).
        let f = d.path().join("passwd");
        let o = who.box_(&["cp", f.to_str().unwrap(), &format!("{name}:/tmp/")]);
        assert_ne!(o.status.code(), Some(0));
        assert!(
            stderr(&o).contains("keeps no writable layer"),
            "{}",
            stderr(&o)
        );

        // A detached container that exited keeps its writable layer (containers/<id>/upper):
        // a copy in lands there and a copy out sees it, with container ids.
        let kept = unique("cp-kept");
        let _k = Cleanup(&who, kept.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &kept,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo made > /made",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        ok(&who, &["wait", &kept]);
        let id = stdout(&ok(&who, &["inspect", "--format", "{{.Id}}", &kept]))
            .trim()
            .to_string();
        let upper = boxrun_common::store(&who)
            .join("containers")
            .join(&id)
            .join("upper");
        if !upper.exists() {
            // Before containers kept their layer, stand in for it as a start makes it.
            std::fs::create_dir(&upper).unwrap();
            let (u, g) = who.owner();
            std::os::unix::fs::chown(&upper, Some(u), Some(g)).unwrap();
        }
        ok(
            &who,
            &["cp", f.to_str().unwrap(), &format!("{kept}:/etc/copied")],
        );
        let m = std::fs::symlink_metadata(upper.join("etc/copied")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((m.uid(), m.gid()), who.owner(), "{}", who.label());
        let o = ok(&who, &["cp", &format!("{kept}:/etc/copied"), "-"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("root:"));
    }
}

fn pid_of(who: &Who, name: &str) -> i32 {
    let o = ok(who, &["inspect", "--format", "{{.State.Pid}}", name]);
    stdout(&o).trim().parse().unwrap()
}

#[test]
fn top_lists_the_container_processes_with_host_pids() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("top");
        let _c = Cleanup(&who, name.clone());
        start(&who, &name, "sleep 311 & touch /ready; sleep 312");
        let pid = pid_of(&who, &name);
        let o = ok(&who, &["top", &name]);
        let out = stdout(&o);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        let rows: Vec<&str> = lines.collect();
        assert!(rows.iter().any(|l| l.contains("sleep 311")), "{out}");
        assert!(rows.iter().any(|l| l.contains("sleep 312")), "{out}");
        // pids as the host sees them: pid 1 of the container is there under its host pid.
        assert!(
            rows.iter()
                .any(|l| l.split_whitespace().nth(1) == Some(&pid.to_string())),
            "{pid} not in {out}"
        );
        assert_eq!(rows.len(), 2, "{out}");
        // Other ps options go to the host's ps, filtered to the container.
        let o = ok(&who, &["top", &name, "-eo", "pid,args"]);
        let out = stdout(&o);
        assert!(out.starts_with("    PID") || out.contains("PID"), "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }
}

#[test]
fn stats_no_stream_reads_the_container_counters_once() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("stats");
        let _c = Cleanup(&who, name.clone());
        start(
            &who,
            &name,
            "sleep 300 & touch /ready; while true; do :; done",
        );
        let o = ok(&who, &["stats", "--no-stream", &name]);
        let out = stdout(&o);
        let mut lines = out.lines();
        let header = lines.next().unwrap();
        for h in [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ] {
            assert!(header.contains(h), "{header}");
        }
        let row = lines.next().unwrap();
        assert!(row.contains(&name), "{row}");
        assert!(lines.next().is_none(), "{out}");
        let o = ok(&who, &["stats", "--no-stream", "--format", "json", &name]);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["Name"], name.as_str());
        assert_eq!(v["PIDs"], "2", "{v}");
        // A busy loop uses CPU; its memory is counted.
        let cpu: f64 = v["CPUPerc"]
            .as_str()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(cpu > 5.0, "{v}");
        assert!(!v["MemUsage"].as_str().unwrap().starts_with("0B"), "{v}");
        let o = ok(
            &who,
            &[
                "stats",
                "--no-stream",
                "--format",
                "{{.Name}}: {{.PIDs}}",
                &name,
            ],
        );
        assert_eq!(stdout(&o), format!("{name}: 2\n"));
        // A memory limit is the limit shown.
        let limited = unique("stats-mem");
        let _l = Cleanup(&who, limited.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &limited,
            "--network",
            "none",
            "--memory",
            "64m",
            "busybox",
            "sleep",
            "300",
        ]);
        if o.status.code() == Some(0) {
            let o = ok(
                &who,
                &[
                    "stats",
                    "--no-stream",
                    "--format",
                    "{{.MemUsage}}",
                    &limited,
                ],
            );
            // On a failure, say what became of the container (a rare CI failure showed
            // "0B / 0B" after `-d` had succeeded rootless).
            let why = || {
                let st = who.box_(&["inspect", "--format", "{{json .State}}", &limited]);
                let logs = who.box_(&["logs", &limited]);
                format!("state {} logs {}", stdout(&st), stdout(&logs))
            };
            assert!(
                stdout(&o).trim().ends_with("/ 64MiB"),
                "{} ({})",
                stdout(&o),
                why()
            );
        } else {
            // Rootless without a delegated cgroup refuses limits (with the reason).
            assert!(matches!(who, Who::User(_)), "{}", stderr(&o));
        }
    }
}

#[test]
fn stats_streams_a_reading_every_second_until_stopped() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("stats-stream");
        let _c = Cleanup(&who, name.clone());
        start(&who, &name, "touch /ready; sleep 300");
        let mut c = who.cmd("box");
        c.args(["stats", "--format", "{{.Name}} {{.PIDs}}", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(3500));
        // As ^C would: the process ends with the signal.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let o = child.wait_with_output().unwrap();
        let out = stdout(&o);
        let n = out.lines().filter(|l| *l == format!("{name} 1")).count();
        assert!((2..=4).contains(&n), "{n} readings in 3.5 s: {out}");
    }
}

#[test]
fn cp_and_top_reach_a_container_whose_pid_1_is_boxkits_init() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let name = unique("cp-init");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--init",
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo inside > /f; touch /ready; sleep 300",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for _ in 0..100 {
            if who
                .box_(&["exec", &name, "test", "-e", "/ready"])
                .status
                .success()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let o = ok(&who, &["cp", &format!("{name}:/f"), "-"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("inside"));
        let d = dir(&who);
        let f = d.path().join("g");
        std::fs::write(&f, "g\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        ok(&who, &["cp", f.to_str().unwrap(), &format!("{name}:/g")]);
        assert_eq!(exec(&who, &name, "cat /g"), "g\n");
        let out = stdout(&ok(&who, &["top", &name]));
        assert!(out.contains("sleep 300"), "{out}");
    }
}
