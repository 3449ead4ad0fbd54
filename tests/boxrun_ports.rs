//! `-p HOST:CTR` with the bridge network: a server in the container answers on
//! 127.0.0.1:HOSTPORT (the agent's proxy to the container's bridge address; rootless, the
//! proxy works inside the keeper's network namespace), and the port is released when the
//! container goes.

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
            j[0]["HostConfig"]["PortBindings"][0]["HostPort"],
            port.to_string()
        );
        assert_eq!(who.box_(&["rm", "-f", &name]).status.code(), Some(0));
        // The port is released with the container.
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(Instant::now() < end, "port {port} still open after rm");
            std::thread::sleep(Duration::from_millis(50));
        }
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
        stderr(&o).contains("needs --network bridge"),
        "{}",
        stderr(&o)
    );
    let o = who.boxrun(&["--rm", "-p", "80", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("invalid port mapping"),
        "{}",
        stderr(&o)
    );
    // A port someone else holds fails the run before the container starts.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let map = format!("127.0.0.1:{port}:80");
    let o = who.boxrun(&["--rm", "-p", &map, "busybox", "echo", "ran"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains(&port.to_string()), "{}", stderr(&o));
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
