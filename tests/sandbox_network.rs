//! Network modes on the real kernel.

mod common;
mod sandbox_common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use sandbox_common::{Who, busybox_rootfs, stderr, stdout};

#[test]
fn none_has_only_loopback_and_it_is_up() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--network",
            "none",
            "--",
            "ls",
            "/sys/class/net",
        ]);
        assert_eq!(stdout(&o), "lo\n", "{}", who.label());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--",
            "ping",
            "-c1",
            "-W1",
            "127.0.0.1",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}: lo is up", who.label());
    }
}

#[test]
fn host_network_sees_the_host_interfaces() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let host_ifaces = || -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = host_ifaces();
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--network",
        "host",
        "--",
        "ls",
        "/sys/class/net",
    ]);
    // Tests running beside this one add and remove veth devices: only interfaces that
    // existed before and after the run must show.
    let after = host_ifaces();
    for i in before.into_iter().filter(|i| after.contains(i)) {
        assert!(
            stdout(&o).lines().any(|l| l == i),
            "{i} missing: {}",
            stdout(&o)
        );
    }
}

/// `sh -c SCRIPT` in a bridged sandbox on `rootfs`.
fn bridged_sh(who: &Who, rootfs: &str, script: &str) -> std::process::Output {
    who.run(&[
        "--rootfs",
        rootfs,
        "--network",
        "bridge",
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// Root: on the host's `box0`. Rootless (with and without a subordinate range): on the `box0`
/// in the user's keeper network namespace, so rootless containers reach each other too.
#[test]
fn bridge_containers_ping_each_other_by_address() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let rfs = busybox_rootfs(who.root_owner());
        let r = rfs.path.to_str().unwrap();
        // A prints its address and waits for stdin to close.
        let mut a = who
            .box_cmd()
            .args(["sandbox-run", "--rootfs", r, "--network", "bridge", "--"])
            .args(["sh", "-c", "ip -4 -o addr show eth0; read x; exit 0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(a.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_suffix("/24"))
            .unwrap_or_else(|| panic!("{}: no address in {line:?}", who.label()))
            .to_string();
        assert!(addr.starts_with("10.89.7."), "{addr}");
        let ping = format!("ip -4 -o addr show eth0; ping -c1 -W2 {addr}");
        let o = bridged_sh(&who, r, &ping);
        drop(a.stdin.take());
        let sa = a.wait().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert!(stdout(&o).contains("1 packets received"), "{}", who.label());
        assert!(
            !stdout(&o).contains(&format!("inet {addr}/")),
            "{}: B has its own address",
            who.label()
        );
        assert!(sa.success());
    }
}

/// Rootless bridge: the keeper's network namespace reaches the host through pasta, which maps
/// the namespace's gateway address to the host's loopback; pasta starts once, not per run.
#[test]
fn rootless_bridge_reaches_the_host_through_pasta_started_once() {
    let Some(who) = Who::with_range() else { return };
    if !common::have_tool("pasta") {
        return common::skip("pasta (passt) is not installed");
    }
    common::users::open_tun();
    // pasta copies the host's default route into the namespace.
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    let Some(gw) = route.split_whitespace().skip_while(|w| *w != "via").nth(1) else {
        return common::skip("the host has no IPv4 default route for pasta to copy");
    };
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in server.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut &c, b"hello-from-host\n");
        }
    });
    let rfs = busybox_rootfs(who.root_owner());
    let r = rfs.path.to_str().unwrap();
    // nc is ended by the script: through pasta, whether a half-closed connection ever sees
    // the server's FIN depends on pasta's version.
    let script = format!("ip route; nc {gw} {port} & sleep 2; kill $! 2>/dev/null; true");
    let Who::WithRange(user) = &who else {
        unreachable!("with_range gives WithRange")
    };
    let state = format!("/tmp/boxkit-{}/net/user-mode-net", user.uid);
    let mut pastas = Vec::new();
    for _ in 0..2 {
        let o = bridged_sh(&who, r, &script);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("default via 10.89.7.1 dev eth0"), "{out}");
        assert!(out.contains("hello-from-host"), "{out}");
        let p = std::fs::read_to_string(&state)
            .unwrap_or_default()
            .split_whitespace()
            .nth(1)
            .map(String::from)
            .expect("the user-mode network state names pasta's pid");
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        // pasta is passt in another mode (its comm is e.g. "passt.avx2").
        assert!(
            comm.starts_with("pasta") || comm.starts_with("passt"),
            "pid {p} is {comm:?}"
        );
        pastas.push(p);
    }
    assert_eq!(pastas[0], pastas[1], "one pasta serves both runs");
}

#[test]
fn bridge_eth0_routes_via_box0_which_stays_with_its_nat_rule_after_the_container_exits() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--network",
        "bridge",
        "--",
        "sh",
        "-c",
        "ip -o link show eth0; ip route; ping -c1 -W2 10.89.7.1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(",UP"), "eth0 is up: {out}");
    assert!(
        out.contains("link/ether 02:42:0a:59:07:"),
        "the MAC follows from the address: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("default via 10.89.7.1 dev eth0")),
        "default route via the bridge: {out}"
    );
    assert!(out.contains("1 packets received"), "gateway answers: {out}");
    // Host infrastructure, like docker0: kept after the last container leaves.
    assert!(std::path::Path::new("/sys/class/net/box0").exists());
    let rule = std::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-C", "POSTROUTING", "-s", "10.89.7.0/24"])
        .args(["!", "-o", "box0", "-j", "MASQUERADE"])
        .status()
        .unwrap();
    assert!(rule.success(), "the MASQUERADE rule is still there");
}
