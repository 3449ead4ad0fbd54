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

#[test]
fn bridge_containers_ping_each_other_by_address() {
    let Some(who) = Who::root() else { return };
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
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(addr.starts_with("10.89.7."), "{addr}");
    let ping = format!("ip -4 -o addr show eth0; ping -c1 -W2 {addr}");
    let o = who.run(&[
        "--rootfs",
        r,
        "--network",
        "bridge",
        "--",
        "sh",
        "-c",
        &ping,
    ]);
    drop(a.stdin.take());
    let sa = a.wait().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 packets received"));
    assert!(
        !stdout(&o).contains(&format!("inet {addr}/")),
        "B has its own address"
    );
    assert!(sa.success());
}

#[test]
fn rootless_bridge_uses_pasta() {
    let Some(who) = Who::with_range() else { return };
    if !common::have_tool("pasta") {
        return common::skip("pasta (passt) is not installed");
    }
    common::users::open_tun();
    let rfs = busybox_rootfs(who.root_owner());
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--network",
        "bridge",
        "--",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).lines().count() >= 2,
        "an interface besides lo: {}",
        stdout(&o)
    );
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
