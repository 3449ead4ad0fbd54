//! `docker run` flags against the real binaries, as root and rootless: --cidfile, --label,
//! --label-file, --add-host, --dns*, --shm-size, --tmpfs, --ulimit, --stop-signal,
//! --stop-timeout, and the refusal of --privileged.

mod boxrun_common;
mod common;

use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, stderr, stdout, tempdir, unique};

#[test]
fn etc_and_limit_flags_reach_the_container() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--add-host",
            "db.example:10.1.2.3",
            "--add-host",
            "v6host:fd00::5",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "corp.example",
            "--dns-option",
            "ndots:3",
            "--shm-size",
            "8m",
            "--tmpfs",
            "/scratch:size=1m,mode=700",
            "--ulimit",
            "nofile=100:200",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf; df -k /dev/shm /scratch; stat -c %a /scratch; \
             ulimit -n; ulimit -Hn",
        ]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let l: Vec<&str> = out.lines().collect();
        assert!(l.contains(&"10.1.2.3\tdb.example"), "{out}");
        assert!(l.contains(&"fd00::5\tv6host"), "{out}");
        // The flags replace the host's lines of their kind.
        let ns: Vec<&&str> = l.iter().filter(|l| l.starts_with("nameserver")).collect();
        assert_eq!(ns, [&"nameserver 192.0.2.53"], "{out}");
        assert!(l.contains(&"search corp.example"), "{out}");
        assert!(l.contains(&"options ndots:3"), "{out}");
        let size = |mnt: &str| {
            l.iter()
                .find(|x| x.ends_with(mnt))
                .and_then(|x| x.split_whitespace().nth(1))
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(size("/dev/shm"), "8192", "{out}");
        assert_eq!(size("/scratch"), "1024", "{out}");
        assert_eq!(&l[l.len() - 3..], ["700", "100", "200"], "{out}");
    }
}

#[test]
fn bad_flag_values_are_refused_before_anything_runs() {
    let Some(who) = Who::root() else { return };
    for bad in [
        ["--add-host", "nohost"],
        ["--add-host", "h:not-an-ip"],
        ["--dns", "dns.example"],
        ["--ulimit", "nofiles=1"],
        ["--ulimit", "nofile=10:5"],
        ["--tmpfs", "relative"],
        ["--shm-size", "lots"],
        ["--shm-size", "0"],
        ["--dns-search", "a b"],
        ["--dns-option", "ndots:1\nnameserver 1.2.3.4"],
        ["--label", "=v"],
        ["--stop-signal", "SIGNOPE"],
    ] {
        let o = who.boxrun(&[bad[0], bad[1], "--rm", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn privileged_is_refused_with_what_to_use_instead() {
    let Some(who) = Who::root() else { return };
    let o = who.boxrun(&["--privileged", "--rm", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(e.contains("--privileged is not supported"), "{e}");
    assert!(e.contains("--cap-add"), "{e}");
}

#[test]
fn cidfile_gets_the_id_and_an_existing_one_is_refused() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let d = tempdir();
        who.own_store(d.path());
        let cid = d.path().join("cid");
        let cid_s = cid.to_str().unwrap();
        let name = unique("cid");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--cidfile",
            cid_s,
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let id = stdout(&o).trim().to_string();
        assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
        // docker: an existing file is refused, and no container is made.
        let o = who.boxrun(&["--rm", "--cidfile", cid_s, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(
            stderr(&o).contains("container ID file found"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    }
}

#[test]
fn labels_show_in_inspect_and_filter_ps() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let d = tempdir();
        let lf = d.path().join("labels");
        std::fs::write(&lf, "# team labels\nteam=core\ntier=low\n").unwrap();
        let name = unique("label");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--label-file",
            lf.to_str().unwrap(),
            "--label",
            "tier=high",
            "-l",
            "empty",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let o = who.box_(&["inspect", "--format", "{{json .Config.Labels}}", &name]);
        let j: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"team": "core", "tier": "high", "empty": ""})
        );
        let ps =
            |f: &str| stdout(&who.box_(&["ps", "-a", "--filter", f, "--format", "{{.Names}}"]));
        assert!(ps("label=tier=high").lines().any(|l| l == name));
        assert!(ps("label=team").lines().any(|l| l == name));
        assert!(!ps("label=tier=low").lines().any(|l| l == name));
    }
}

#[test]
fn stop_uses_the_stop_signal_and_the_stop_timeout() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let (a, b) = (unique("stopsig"), unique("stoptime"));
        let _ca = Cleanup(&who, a.clone());
        let _cb = Cleanup(&who, b.clone());
        let run = |name: &str, flags: &[&str], script: &str| {
            let mut v = vec!["-d", "--name", name, "--network", "none"];
            v.extend_from_slice(flags);
            v.extend_from_slice(&["busybox", "sh", "-c", script]);
            let o = who.boxrun(&v);
            assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        };
        run(
            &a,
            &["--stop-signal", "USR1"],
            "trap 'exit 42' USR1; echo ready; while :; do sleep 0.1; done",
        );
        // pid 1 ignores SIGTERM (no handler), so only the timeout's SIGKILL ends it.
        run(
            &b,
            &["--stop-timeout", "1"],
            "echo ready; while :; do sleep 0.1; done",
        );
        for n in [&a, &b] {
            let end = Instant::now() + Duration::from_secs(20);
            while !stdout(&who.box_(&["logs", n])).contains("ready") {
                assert!(Instant::now() < end, "{n} never got ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let o = who.box_(&["inspect", "--format", "{{.Config.StopSignal}}", &a]);
        assert_eq!(stdout(&o).trim(), "10");
        assert_eq!(who.box_(&["stop", &a]).status.code(), Some(0));
        assert_eq!(stdout(&who.box_(&["wait", &a])), "42\n");
        let t = Instant::now();
        assert_eq!(who.box_(&["stop", &b]).status.code(), Some(0));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(6),
            "{took:?}"
        );
        assert_eq!(stdout(&who.box_(&["wait", &b])), "137\n");
    }
}

#[test]
fn box_run_takes_the_same_flags() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let o = who.box_(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--add-host",
            "x.example:10.9.9.9",
            "--ulimit",
            "nofile=50",
            "busybox",
            "sh",
            "-c",
            "grep x.example /etc/hosts; ulimit -n; ulimit -Hn",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert_eq!(stdout(&o), "10.9.9.9\tx.example\n50\n50\n");
        let o = who.box_(&["run", "--privileged", "--rm", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
    }
}
