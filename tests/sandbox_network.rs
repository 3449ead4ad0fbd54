//! Network modes on the real kernel.

mod common;
mod sandbox_common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::users::TestUser;
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

/// Rootless bridge: the keeper's network namespace is connected by pasta, started once, not per
/// run; by default pasta does not map the namespace's gateway address to the host's loopback
/// (`--no-map-gw`), so a service on the host's 127.0.0.1 is not reachable through it.
#[test]
fn rootless_bridge_uses_one_pasta_that_keeps_host_loopback_closed() {
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
        assert!(
            !out.contains("hello-from-host"),
            "the host's loopback answered through the gateway: {out}"
        );
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

/// A server on the host's 127.0.0.1 that greets every connection; returns its port.
fn host_loopback_greeter() -> u16 {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in server.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut &c, b"hello-from-host\n");
        }
    });
    port
}

/// A script that connects to ADDR:PORT and prints what it gets. nc is ended by the script:
/// through pasta, whether a half-closed connection ever sees the server's FIN depends on
/// pasta's version.
fn nc_script(addr: &str, port: u16) -> String {
    format!("nc {addr} {port} & sleep 2; kill $! 2>/dev/null; true")
}

/// The host's IPv4 default gateway, which pasta copies into the keeper's namespace.
fn host_gateway() -> Option<String> {
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    route
        .split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(String::from)
}

/// `box sandbox-run ARGS…` as `u` with extra environment variables (PATH among them).
fn sandbox_run_env(u: &TestUser, env: &[(&str, &str)], args: &[&str]) -> std::process::Command {
    let mut c = common::users::command_as(u, std::path::Path::new("/usr/bin/env"));
    c.args(env.iter().map(|(k, v)| format!("{k}={v}")))
        .arg(common::bin("box"))
        .arg("sandbox-run")
        .args(args);
    c
}

/// Rootless: the host's loopback is closed to bridged containers by default, with pasta
/// (`--no-map-gw`) and with slirp4netns (`--disable-host-loopback`), and open with
/// BOX_ROOTLESS_ALLOW_HOST_LOOPBACK=true. The helper is shared by every container of the
/// keeper, so the setting is the keeper's: it changes only while no bridged container runs,
/// and a run asking for the other setting meanwhile fails and says why. A user of its own, so
/// no other test's containers share its keeper.
#[test]
fn rootless_host_loopback_is_closed_by_default_and_opened_per_keeper_on_request() {
    let Some(_) = Who::root() else { return };
    for t in ["pasta", "slirp4netns"] {
        if !common::have_tool(t) {
            return common::skip(&format!("{t} is not installed"));
        }
    }
    let Some(gw) = host_gateway() else {
        return common::skip("the host has no IPv4 default route for pasta to copy");
    };
    common::users::open_tun();
    let u = common::users::with_exact_range("boxkit-loopbk", (4_300_000, 65536));
    let migrate = || {
        let o = Who::WithRange(u.clone())
            .box_cmd()
            .args(["system", "migrate"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    migrate();
    let port = host_loopback_greeter();
    let rfs = busybox_rootfs((u.uid, u.gid));
    let r = rfs.path.to_str().unwrap();
    // PATH without pasta: the slirp4netns fallback (newuidmap and friends are in /usr/bin).
    let slirp_bin = sandbox_common::open_tempdir();
    for t in ["newuidmap", "newgidmap", "slirp4netns"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{t}"), slirp_bin.path().join(t)).unwrap();
    }
    let slirp_path = slirp_bin.path().display().to_string();
    let allow = ("BOX_ROOTLESS_ALLOW_HOST_LOOPBACK", "true");
    let state = format!("/tmp/boxkit-{}/net/user-mode-net", u.uid);
    let reach = |env: &[(&str, &str)], addr: &str| -> String {
        let o = sandbox_run_env(
            &u,
            env,
            &[
                "--rootfs",
                r,
                "--network",
                "bridge",
                "--",
                "sh",
                "-c",
                &nc_script(addr, port),
            ],
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(0), "{env:?}: {}", stderr(&o));
        stdout(&o)
    };
    for (helper, path, addr) in [
        ("pasta", None, gw.as_str()),
        ("slirp4netns", Some(slirp_path.as_str()), "10.0.2.2"),
    ] {
        let mut env: Vec<(&str, &str)> = path.map(|p| ("PATH", p)).into_iter().collect();
        let out = reach(&env, addr);
        assert!(
            !out.contains("hello-from-host"),
            "{helper}: host loopback reachable by default: {out}"
        );
        assert!(
            std::fs::read_to_string(&state)
                .unwrap()
                .contains("host-loopback=deny"),
            "{helper}"
        );
        env.push(allow);
        let out = reach(&env, addr);
        assert!(
            out.contains("hello-from-host"),
            "{helper}: host loopback not reachable with {allow:?}: {out}"
        );
        assert!(
            std::fs::read_to_string(&state)
                .unwrap()
                .contains("host-loopback=allow"),
            "{helper}"
        );
        migrate();
    }

    // While a container uses the keeper's network, the setting cannot change under it.
    let mut held = sandbox_run_env(
        &u,
        &[allow],
        &[
            "--rootfs",
            r,
            "--network",
            "bridge",
            "--",
            "sh",
            "-c",
            "echo up; read x; exit 0",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(held.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "up\n");
    let o = sandbox_run_env(
        &u,
        &[],
        &["--rootfs", r, "--network", "bridge", "--", "true"],
    )
    .output()
    .unwrap();
    drop(held.stdin.take());
    assert!(held.wait().unwrap().success());
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("BOX_ROOTLESS_ALLOW_HOST_LOOPBACK")
            && stderr(&o).contains("1 running container"),
        "{}",
        stderr(&o)
    );
    // Once it has gone, the default applies again.
    let out = reach(&[], &gw);
    assert!(!out.contains("hello-from-host"), "{out}");
    migrate();
}

/// Root: the bridge has no path to the host's loopback at all. Traffic from `box0` to the
/// host's addresses arrives on the bridge, never on `lo`, and the kernel drops packets for
/// 127.0.0.0/8 that come in on another interface (route_localnet is off), so a service bound
/// to 127.0.0.1 answers neither at the bridge address nor at the host's own address.
#[test]
fn root_bridge_has_no_path_to_host_loopback() {
    let Some(who) = Who::root() else { return };
    let port = host_loopback_greeter();
    let host_ip = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "1.1.1.1"])
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.split_whitespace()
                .skip_while(|w| *w != "src")
                .nth(1)
                .map(String::from)
        });
    let rfs = busybox_rootfs(who.root_owner());
    let mut addrs = vec!["10.89.7.1".to_string()];
    addrs.extend(host_ip);
    for addr in addrs {
        let o = bridged_sh(&who, rfs.path.to_str().unwrap(), &nc_script(&addr, port));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            !stdout(&o).contains("hello-from-host"),
            "{addr}: {}",
            stdout(&o)
        );
    }
}
