//! The sandbox on the real kernel, as root, as a user with a subordinate id range and as one
//! without: what the container sees, who owns what it writes, exit codes, deep overlays.

mod common;
mod sandbox_common;

use sandbox_common::{Who, busybox_rootfs, open_tempdir, stderr, stdout};

#[test]
fn command_is_pid_1_with_given_hostname_and_sees_only_container_processes() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--hostname",
            "box-test-host",
            "--",
            "sh",
            "-c",
            "echo $$; hostname; cd /proc && echo [0-9]*",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1", "{}: the command is pid 1", who.label());
        assert_eq!(lines[1], "box-test-host", "{}", who.label());
        // Only sh (pid 1) itself: `echo` is a builtin. Never the host's processes.
        assert_eq!(lines[2], "1", "{}: /proc lists {}", who.label(), lines[2]);
    }
}

#[test]
fn container_root_is_uid_0_and_image_users_resolve_by_name() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let r = rfs.path.to_str().unwrap();
        let o = who.run(&["--rootfs", r, "--", "id"]);
        assert_eq!(o.status.code(), Some(0), "{}", who.label());
        assert!(
            stdout(&o).starts_with("uid=0(root) gid=0(root)"),
            "{}",
            who.label()
        );
        let o = who.run(&[
            "--rootfs",
            r,
            "-u",
            "alice",
            "--",
            "sh",
            "-c",
            "id; echo $HOME",
        ]);
        if who.uid_1000().is_some() {
            assert_eq!(o.status.code(), Some(0), "{}", who.label());
            assert!(
                stdout(&o).starts_with("uid=1000(alice) gid=1000(alice)"),
                "{}",
                who.label()
            );
            assert!(stdout(&o).contains("/home/alice"), "{}", who.label());
        } else {
            // Only container root is mapped without a range: a clear refusal, not a wrong id.
            assert_eq!(o.status.code(), Some(125), "{}", who.label());
            assert!(stderr(&o).contains("mapped"), "{}", who.label());
        }
        let o = who.run(&["--rootfs", r, "-u", "nobody-here", "--", "id"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("unable to find user nobody-here"));
    }
}

#[test]
fn file_created_by_container_root_is_owned_by_the_mapped_uid_not_host_root() {
    use std::os::unix::fs::MetadataExt;
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let data = open_tempdir();
        sandbox_common::chown_r(data.path(), who.root_owner());
        let vol = format!("{}:/data", data.path().display());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "-v",
            &vol,
            "--",
            "touch",
            "/data/made-inside",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", who.label());
        let m = std::fs::metadata(data.path().join("made-inside")).unwrap();
        assert_eq!(m.uid(), who.root_owner().0, "{}", who.label());
        assert_ne!(
            m.uid(),
            0,
            "{}: container root must not be host root",
            who.label()
        );
    }
}

#[test]
fn container_root_cannot_write_a_root_owned_host_dir_bound_read_write() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let data = open_tempdir(); // owned by host root, 0755
        let vol = format!("{}:/data:rw", data.path().display());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "-v",
            &vol,
            "--",
            "touch",
            "/data/x",
        ]);
        assert_ne!(o.status.code(), Some(0), "{}", who.label());
        assert!(stderr(&o).contains("Permission denied"), "{}", who.label());
        assert!(!data.path().join("x").exists());
    }
}

#[test]
fn root_binds_a_private_host_dir_that_container_root_still_cannot_read() {
    // As root the tool itself may open anything (it prepares the mounts), but the container
    // runs in a nested user namespace where host root's files belong to nobody.
    let Some(who) = Who::root() else { return };
    let outer = open_tempdir();
    std::fs::set_permissions(
        outer.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let rfs = busybox_rootfs(who.root_owner());
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(data.join("secret"), "s").unwrap();
    let vol = format!("{}:/data", data.display());
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "-v",
        &vol,
        "--",
        "sh",
        "-c",
        "cat /proc/self/uid_map; ls /data; cat /data/secret; touch /data/x; echo done",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    // Only the container range is mapped inside the container.
    let maps: Vec<&str> = out.lines().take_while(|l| !l.contains("done")).collect();
    assert_eq!(
        maps[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "65536"]
    );
    assert!(out.contains("done"));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert!(!data.join("x").exists());
}

#[test]
fn exit_codes_map_like_docker() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let r = rfs.path.to_str().unwrap();
    assert_eq!(
        who.run(&["--rootfs", r, "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    let o = who.run(&["--rootfs", r, "--", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("executable file not found in $PATH"));
    let o = who.run(&["--rootfs", r, "--", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126));
    // Death by signal n is 128+n (with --init the command is not pid 1, so it can be
    // killed by a signal it does not handle).
    let o = who.run(&["--rootfs", r, "--init", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(o.status.code(), Some(143));
}

#[test]
fn hundred_layer_overlay_mounts_and_runs() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let layers = open_tempdir();
        let mut args = vec!["--lower".to_string(), rfs.path.display().to_string()];
        for i in 1..=100 {
            let d = layers.path().join(format!("l{i:03}"));
            std::fs::create_dir_all(d.join("stack")).unwrap();
            std::fs::write(d.join("stack").join(format!("{i}")), "").unwrap();
            std::fs::write(d.join("top"), format!("{i}\n")).unwrap();
            args.extend(["--lower".to_string(), d.display().to_string()]);
        }
        sandbox_common::chown_r(layers.path(), who.root_owner());
        args.extend(
            [
                "--",
                "sh",
                "-c",
                "cat /top; ls /stack | wc -l; echo w > /top && cat /top",
            ]
            .map(String::from),
        );
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = who.run(&a);
        assert_eq!(o.status.code(), Some(0), "{}", who.label());
        // The last lower is the topmost layer; writes go to the (ephemeral) upper.
        assert_eq!(stdout(&o), "100\n100\nw\n", "{}", who.label());
        assert_eq!(
            std::fs::read_to_string(layers.path().join("l100/top")).unwrap(),
            "100\n"
        );
    }
}

#[test]
fn kernel_paths_are_masked_or_read_only_and_sys_is_read_only() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
             echo 1 > /proc/sysrq-trigger && echo wrote-sysrq; touch /sys/x && echo wrote-sys; \
             grep -c ' /proc/sys proc ro' /proc/mounts",
        ]);
        let out = stdout(&o);
        assert!(out.starts_with("0\n0\n"), "{}: {out}", who.label());
        assert!(!out.contains("wrote-"), "{}: {out}", who.label());
        assert!(out.ends_with("1\n"), "{}: {out}", who.label());
    }
}

/// docker's default masked paths (moby daemon/pkg/oci/defaults.go), plus the per-CPU
/// thermal_throttle directories it adds when they exist.
fn docker_masked_paths() -> Vec<String> {
    let mut v: Vec<String> = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/devices/virtual/powercap",
        "/sys/firmware",
    ]
    .map(String::from)
    .to_vec();
    for e in std::fs::read_dir("/sys/devices/system/cpu")
        .unwrap()
        .flatten()
    {
        let p = e.path().join("thermal_throttle");
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("cpu") && n[3..].parse::<u32>().is_ok() && p.is_dir() {
            v.push(p.display().to_string());
        }
    }
    v
}

const DOCKER_READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[test]
fn every_docker_masked_path_reads_empty_and_every_read_only_path_is_a_read_only_mount() {
    let Some(all) = Who::all() else { return };
    let mut script = String::new();
    let mut expect = vec![];
    for p in docker_masked_paths() {
        // Only what this kernel has; a missing path has nothing to hide.
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            script.push_str(&format!("echo \"{p} $(ls -A {p} | wc -l)\"\n"));
        } else {
            script.push_str(&format!("echo \"{p} $(wc -c < {p})\"\n"));
        }
        expect.push(format!("{p} 0"));
    }
    for p in DOCKER_READ_ONLY {
        if std::fs::metadata(p).is_err() {
            continue;
        }
        script.push_str(&format!(
            "echo \"{p} $(awk '$5 == \"{p}\" {{ split($6, o, \",\"); print o[1] }}' /proc/self/mountinfo)\"\n"
        ));
        expect.push(format!("{p} ro"));
    }
    assert!(expect.iter().any(|e| e.starts_with("/proc/interrupts")));
    let runs: Vec<(Who, bool)> = all
        .into_iter()
        .flat_map(|w| {
            let host = matches!(w, Who::Root);
            std::iter::once((w.clone(), false)).chain(host.then_some((w, true)))
        })
        .collect();
    for (who, userns_host) in runs {
        let rfs = busybox_rootfs(who.root_owner());
        let mut args = vec![];
        if userns_host {
            args.push("--userns=host");
        }
        args.extend([
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let o = who.run(&args);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let got: Vec<String> = stdout(&o).lines().map(String::from).collect();
        assert_eq!(got, expect, "{} (userns host {userns_host})", who.label());
    }
}

#[test]
fn read_only_rootfs_refuses_writes_and_workdir_is_created() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let r = rfs.path.to_str().unwrap();
    let o = who.run(&["--rootfs", r, "--read-only", "--", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Read-only file system"));
    let o = who.run(&["--rootfs", r, "-w", "/made/here", "--", "pwd"]);
    assert_eq!(stdout(&o), "/made/here\n");
}

#[test]
fn sigterm_to_boxkit_is_forwarded_to_the_command() {
    use std::io::{BufRead, BufReader};
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let mut c = who
        .box_cmd()
        .args(["sandbox-run", "--rootfs", rfs.path.to_str().unwrap(), "--"])
        .args([
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert_eq!(c.wait().unwrap().code(), Some(5));
}

#[test]
fn user_without_range_gets_one_warning_with_the_usermod_fix() {
    let Some(who) = Who::without_range() else {
        return;
    };
    let rfs = busybox_rootfs(who.root_owner());
    let o = who.run(&["--rootfs", rfs.path.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert_eq!(e.matches("warning:").count(), 1, "{e}");
    // The suggested range is one no one in /etc/subuid or /etc/subgid has (boxkit-sub holds
    // 100000-165535 here, so not that one).
    let (a, b) = boxkit::run::subid_hint::free_range(
        &std::fs::read_to_string("/etc/subuid").unwrap(),
        &std::fs::read_to_string("/etc/subgid").unwrap(),
    );
    assert!(
        e.contains(&format!(
            "usermod --add-subuids {a}-{b} --add-subgids {a}-{b} boxkit-nosub"
        )),
        "{e}"
    );
}
