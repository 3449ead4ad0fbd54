//! `-p HOST:CTR` with the bridge network: a server in the container answers on
//! 127.0.0.1:HOSTPORT (the agent's proxy to the container's bridge address; rootless, the
//! proxy works inside the keeper's network namespace), and the port is released when the
//! container goes. `-p CTR` (and `IP::CTR`) takes a random free host port and a host range
//! the first free port of the range; `box port`, `box inspect` and `box ps` show the port as
//! bound by the time `boxrun -d` returns.

mod boxrun_common;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use boxrun_common::{Cleanup, Who, stderr, stdout, unique};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn a_server_in_the_container_answers_on_the_published_localhost_port() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let name = unique("port");
        let _c = Cleanup(&who, name.clone());
        let port = free_port();
        let map = format!("127.0.0.1:{port}:8000");
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "-p",
            &map,
            "busybox",
            "sh",
            "-c",
            "mkdir -p /www && echo served-from-container > /www/index.html && \
             exec httpd -f -p 8000 -h /www",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let end = Instant::now() + Duration::from_secs(20);
        let body = loop {
            match http_get(port) {
                Some(b) if b.contains("served-from-container") => break b,
                _ => {
                    assert!(Instant::now() < end, "no answer on 127.0.0.1:{port}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        assert!(
            body.starts_with("HTTP/1.") && body.contains(" 200 "),
            "{body}"
        );
        let j: serde_json::Value =
            serde_json::from_slice(&who.box_(&["inspect", &name]).stdout).unwrap();
        assert_eq!(
            j[0]["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostPort"],
            port.to_string()
        );
        assert_eq!(
            j[0]["NetworkSettings"]["Ports"]["8000/tcp"][0],
            serde_json::json!({"HostIp": "127.0.0.1", "HostPort": port.to_string()})
        );
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        // The port is released with the container.
        await_closed(port);
    }
}

#[test]
fn publishing_needs_bridge_and_a_valid_free_port() {
    let Some(who) = Who::root() else { return };
    let o = who.boxrun(&[
        "--rm",
        "--network",
        "none",
        "-p",
        "8080:80",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("need --network bridge"),
        "{}",
        stderr(&o)
    );
    for bad in ["80/sctp", ":80", "8000-8002:80-81"] {
        let o = who.boxrun(&["--rm", "-p", bad, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
        assert!(
            stderr(&o).contains("invalid port mapping"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    // A port someone else holds fails the run before the container starts.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let map = format!("127.0.0.1:{port}:80");
    let o = who.boxrun(&["--rm", "-p", &map, "busybox", "echo", "ran"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains(&port.to_string()), "{}", stderr(&o));
}

/// Wait for the container's httpd to serve `marker` on 127.0.0.1:`port`.
/// Wait (up to 10 s) until nothing listens on 127.0.0.1:`port` any more.
fn await_closed(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "port {port} still open after rm");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn await_body(port: u16, marker: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(port) {
            Some(b) if b.contains(marker) => return,
            _ => {
                assert!(Instant::now() < end, "no answer on 127.0.0.1:{port}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn httpd(port: u16, marker: &str) -> String {
    format!("mkdir -p /www && echo {marker} > /www/index.html && exec httpd -f -p {port} -h /www")
}

#[test]
fn a_container_port_alone_is_published_on_a_random_host_port() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let name = unique("rport");
        let _c = Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "-p",
            "8000",
            "busybox",
            "sh",
            "-c",
            &httpd(8000, "random-port"),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // Recorded by the time `boxrun -d` returned.
        let o = who.box_(&["port", &name, "8000"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let addr = stdout(&o).trim().to_string();
        let port: u16 = addr
            .strip_prefix("0.0.0.0:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("box port printed {addr:?}"));
        assert_ne!(port, 0);
        assert_eq!(
            stdout(&who.box_(&["port", &name])),
            format!("8000/tcp -> 0.0.0.0:{port}\n")
        );
        let j: serde_json::Value =
            serde_json::from_slice(&who.box_(&["inspect", &name]).stdout).unwrap();
        assert_eq!(
            j[0]["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"],
            port.to_string()
        );
        // As asked: no host port.
        assert_eq!(
            j[0]["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostPort"],
            ""
        );
        let ps = stdout(&who.box_(&["ps"]));
        assert!(ps.lines().next().unwrap_or("").contains("PORTS"), "{ps}");
        assert!(
            ps.lines()
                .any(|l| l.contains(&name) && l.contains(&format!("0.0.0.0:{port}->8000/tcp"))),
            "{ps}"
        );
        await_body(port, "random-port");
        // A port that is not published.
        let o = who.box_(&["port", &name, "81/udp"]);
        assert_ne!(o.status.code(), Some(0));
        assert!(stderr(&o).contains("81/udp"), "{}", stderr(&o));
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        await_closed(port);
    }
}

/// In the foreground too, the port as bound is recorded while the container runs (and dropped
/// when it exits).
#[test]
fn a_foreground_container_records_its_random_port() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let name = unique("fport");
        let _c = Cleanup(&who, name.clone());
        let mut child = who
            .cmd("boxrun")
            .args(["--name", &name, "-p", "127.0.0.1::8000", "busybox"])
            .args(["sh", "-c", &httpd(8000, "foreground")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let o = who.box_(&["port", &name, "8000/tcp"]);
            if let Some(p) = stdout(&o)
                .trim()
                .strip_prefix("127.0.0.1:")
                .and_then(|p| p.parse::<u16>().ok())
            {
                break p;
            }
            if Instant::now() > end || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("no port recorded: {}", stderr(&out));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        await_body(port, "foreground");
        assert_eq!(who.box_(&["stop", "-t", "1", &name]).status.code(), Some(0));
        let _ = child.wait();
        assert_eq!(stdout(&who.box_(&["port", &name])), "");
        let j: serde_json::Value =
            serde_json::from_slice(&who.box_(&["inspect", &name]).stdout).unwrap();
        assert_eq!(j[0]["NetworkSettings"]["Ports"], serde_json::json!({}));
    }
}

/// `IP:FIRST-LAST:CTR` takes the first free port of the range; `IP:A-B:C-D` maps one to one.
#[test]
fn host_port_ranges_take_the_first_free_port_or_map_one_to_one() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let name = unique("range");
        let _c = Cleanup(&who, name.clone());
        // Three consecutive free ports; the first one held by us.
        let (held, first) = loop {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            if p < 65000
                && (1..=4).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok())
            {
                break (l, p);
            }
        };
        let ranged = format!("127.0.0.1:{first}-{}:8000", first + 2);
        let pair = format!("127.0.0.1:{}-{}:8001-8002", first + 3, first + 4);
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "-p",
            &ranged,
            "-p",
            &pair,
            "busybox",
            "sh",
            "-c",
            &format!(
                "httpd -p 8001 -h /etc && httpd -p 8002 -h /etc && {}",
                httpd(8000, "ranged")
            ),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&who.box_(&["port", &name, "8000/tcp"]));
        assert_eq!(out, format!("127.0.0.1:{}\n", first + 1));
        await_body(first + 1, "ranged");
        let all_ports = stdout(&who.box_(&["port", &name]));
        for (ctr, host) in [(8001, first + 3), (8002, first + 4)] {
            assert!(
                all_ports.contains(&format!("{ctr}/tcp -> 127.0.0.1:{host}")),
                "{all_ports}"
            );
            // busybox httpd serves /etc: its passwd file names root.
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                let mut s = TcpStream::connect(("127.0.0.1", host)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"GET /passwd HTTP/1.0\r\n\r\n").unwrap();
                let mut b = String::new();
                let _ = s.read_to_string(&mut b);
                if b.contains("root:") {
                    break;
                }
                assert!(Instant::now() < end, "no answer on 127.0.0.1:{host}: {b}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        drop(held);
    }
}

/// UDP through the same proxy, root and rootless.
#[test]
fn a_udp_server_in_the_container_answers_on_the_published_localhost_port() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let name = unique("udp");
        let _c = Cleanup(&who, name.clone());
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let map = format!("127.0.0.1:{port}:5000/udp");
        // Debian's perl-base has sockets; busybox has no UDP server.
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "-p",
            &map,
            "debian:bookworm",
            "perl",
            "-MIO::Socket::INET",
            "-e",
            "$s = IO::Socket::INET->new(LocalPort => 5000, Proto => 'udp') or die; \
             while ($s->recv($m, 1000)) { $s->send(\"echo:$m\") }",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 100];
        let reply = loop {
            let _ = c.send_to(b"ping", ("127.0.0.1", port));
            if let Ok((n, _)) = c.recv_from(&mut buf) {
                break String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            assert!(Instant::now() < end, "no UDP answer on 127.0.0.1:{port}");
        };
        assert_eq!(reply, "echo:ping");
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
    }
}

/// `boxrun --root STORE ARGS…` as `who` with extra environment variables.
fn boxrun_env(who: &Who, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = match who {
        Who::Root => {
            let mut c = std::process::Command::new(common::bin("boxrun"));
            c.envs(env.iter().copied());
            c
        }
        // setpriv --reset-env drops the caller's environment; env(1) sets ours.
        Who::User(u) => {
            let mut c = common::users::command_as(u, std::path::Path::new("/usr/bin/env"));
            c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
            c.arg(common::bin("boxrun"));
            c
        }
    };
    c.arg("--root")
        .arg(boxrun_common::store(who))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The pid holding the host's UDP socket bound to 127.0.0.1:`port` (the port proxy), found
/// through the socket's inode in /proc/net/udp.
fn udp_socket_owner(port: u16) -> (i32, String) {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let want = format!("0100007F:{port:04X}");
    let inode = table
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&want.as_str())).then(|| f[9].to_string())
        })
        .unwrap_or_else(|| panic!("nothing bound to 127.0.0.1:{port}/udp"));
    let link = format!("socket:[{inode}]");
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|f| std::fs::read_link(f.path()).is_ok_and(|t| t.to_string_lossy() == link))
        {
            return (pid, link);
        }
    }
    panic!("no process holds {link}");
}

/// Sockets `pid` holds besides `listener`: one per UDP flow.
fn flow_sockets(pid: i32, listener: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("socket:") && t != listener)
        .count()
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// Many UDP clients (distinct source ports) neither grow the proxy's threads nor its sockets
/// beyond the flow cap, every one of them is still answered (the least recently used flow
/// makes room), and flows that went idle are dropped: with the idle timeout and the cap
/// lowered for the test (`BOX_UDP_FLOW_TIMEOUT`, `BOX_UDP_MAX_FLOWS`).
#[test]
fn udp_flows_are_capped_and_dropped_once_idle() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    const CAP: usize = 8;
    const CLIENTS: usize = 40;
    for who in all {
        let name = unique("udpflows");
        let _c = Cleanup(&who, name.clone());
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let map = format!("127.0.0.1:{port}:5000/udp");
        let o = boxrun_env(
            &who,
            &[("BOX_UDP_FLOW_TIMEOUT", "2s"), ("BOX_UDP_MAX_FLOWS", "8")],
            &[
                "-d",
                "--name",
                &name,
                "-p",
                &map,
                "debian:bookworm",
                "perl",
                "-MIO::Socket::INET",
                "-e",
                "$s = IO::Socket::INET->new(LocalPort => 5000, Proto => 'udp') or die; \
                 while ($s->recv($m, 1000)) { $s->send(\"echo:$m\") }",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let (proxy, listener) = udp_socket_owner(port);
        std::thread::sleep(Duration::from_millis(300));
        let idle_threads = threads(proxy);
        let ask = |c: &std::net::UdpSocket, msg: &str, wait: Duration| {
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let end = Instant::now() + wait;
            let mut buf = [0u8; 100];
            loop {
                let _ = c.send_to(msg.as_bytes(), ("127.0.0.1", port));
                if let Ok((n, _)) = c.recv_from(&mut buf) {
                    return String::from_utf8_lossy(&buf[..n]).into_owned();
                }
                assert!(
                    Instant::now() < end,
                    "{}: no UDP answer to {msg}",
                    who.label()
                );
            }
        };
        // The first answer may wait for the server to start.
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let wait = Duration::from_secs(if i == 0 { 20 } else { 5 });
            assert_eq!(ask(&c, &format!("c{i}"), wait), format!("echo:c{i}"));
            // Kept open, so every client has its own source port.
            clients.push(c);
        }
        let busy = flow_sockets(proxy, &listener);
        assert!(
            busy <= CAP,
            "{}: {busy} flow sockets for {CLIENTS} clients, cap {CAP}",
            who.label()
        );
        assert!(
            threads(proxy) <= idle_threads,
            "{}: the proxy grew from {idle_threads} to {} threads",
            who.label(),
            threads(proxy)
        );
        // Idle past the timeout: every flow is dropped.
        let end = Instant::now() + Duration::from_secs(10);
        while flow_sockets(proxy, &listener) > 0 {
            assert!(
                Instant::now() < end,
                "{}: {} flows still held 10 s after the last datagram (timeout 2 s)",
                who.label(),
                flow_sockets(proxy, &listener)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(threads(proxy) <= idle_threads, "{}", who.label());
        // A forgotten client that comes back gets a new flow.
        assert_eq!(
            ask(&clients[0], "again", Duration::from_secs(5)),
            "echo:again"
        );
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
    }
}

/// `-P` publishes the image's EXPOSE ports and `--expose` ones, each on a random host port; a
/// port also given with `-p` keeps that mapping.
#[test]
fn publish_all_maps_every_exposed_port_to_a_random_host_port() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    for who in all {
        let tag = boxrun_common::build_image(
            &who,
            "exposed",
            "FROM busybox\nEXPOSE 8000\nEXPOSE 5353/udp\n",
        );
        let name = unique("pall");
        let _c = Cleanup(&who, name.clone());
        let fixed = free_port();
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "-P",
            "--expose",
            "8001",
            "-p",
            &format!("127.0.0.1:{fixed}:8001"),
            &tag,
            "sh",
            "-c",
            "mkdir -p /a /b && echo fixed > /a/index.html && echo from-expose > /b/index.html \
             && httpd -p 8001 -h /a && exec httpd -f -p 8000 -h /b",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let listed = stdout(&who.box_(&["port", &name]));
        let mut lines: Vec<&str> = listed.lines().collect();
        lines.sort();
        assert_eq!(lines.len(), 3, "{listed}");
        assert!(lines[0].starts_with("5353/udp -> 0.0.0.0:"), "{listed}");
        assert!(lines[1].starts_with("8000/tcp -> 0.0.0.0:"), "{listed}");
        assert_eq!(lines[2], format!("8001/tcp -> 127.0.0.1:{fixed}"));
        let port: u16 = lines[1].rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0);
        await_body(port, "from-expose");
        await_body(fixed, "fixed");
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        let _ = who.box_(&["rmi", &tag]);
    }
    // Without the bridge network there is nothing to publish on.
    let Some(root) = Who::root() else { return };
    let o = root.boxrun(&["--rm", "--network", "none", "-P", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--publish-all"), "{}", stderr(&o));
}
