//! Published ports (`-p [IP:]HOST:CONTAINER[/tcp|udp]`).
//!
//! As root the container sits behind the `box0` bridge; a small userspace proxy (as
//! docker-proxy does for loopback traffic, which DNAT cannot reach without
//! `route_localnet`) listens on the host address and relays each TCP connection, and each UDP
//! client's datagrams (one upstream socket per client address), to the container's address. The agent binds the listeners itself, so a port already in use fails
//! the run before the container starts, then forks the proxy, which dies with the agent
//! (`PR_SET_PDEATHSIG`) or on release. Rootless the same proxy serves, joined to the keeper's
//! network namespace where the rootless bridge lives (rootlesskit's port driver does the same).

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PortError {
    #[error(
        "invalid port mapping {0:?}: expected [IP:]HOST-PORT:CONTAINER-PORT[/tcp|/udp] with ports 1-65535"
    )]
    Parse(String),
    #[error("publish {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("start the port proxy: {0}")]
    Fork(nix::Error),
}

pub type Result<T> = std::result::Result<T, PortError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; docker's default is every address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Parse docker's `-p` forms: `HOST:CTR`, `IP:HOST:CTR`, each with an optional `/tcp` or
    /// `/udp`. (`-p CTR` alone, a random host port, is not supported.)
    pub fn parse(s: &str) -> Result<PortMapping> {
        let bad = || PortError::Parse(s.to_string());
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let (ip, host, ctr) = match spec.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
            [c, h] => ("0.0.0.0", *h, *c),
            [c, h, ip] => (*ip, *h, *c),
            _ => return Err(bad()),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        Ok(PortMapping {
            host_ip: ip.parse().map_err(|_| bad())?,
            host_port: port(host)?,
            container_port: port(ctr)?,
            proto,
        })
    }
}

/// Bind every listener, then fork the proxy that relays them to `container_ip`. Returns the
/// proxy's pid (None when there is nothing to publish). Rootless, the container's bridge is in
/// the network namespace of `keeper` (see [`super::keeper`]): the proxy joins it after binding,
/// so it listens on the host and connects inside.
pub fn start_proxy(
    ports: &[PortMapping],
    container_ip: &str,
    keeper: Option<i32>,
) -> Result<Option<i32>> {
    if ports.is_empty() {
        return Ok(None);
    }
    let mut listeners = Vec::new();
    for p in ports {
        let addr = SocketAddr::new(p.host_ip, p.host_port);
        let bind_err = |cause| PortError::Bind { addr, cause };
        let l = match p.proto {
            Proto::Tcp => Listener::Tcp(TcpListener::bind(addr).map_err(bind_err)?),
            Proto::Udp => Listener::Udp(UdpSocket::bind(addr).map_err(bind_err)?),
        };
        let target: SocketAddr = format!("{container_ip}:{}", p.container_port)
            .parse()
            .map_err(|_| PortError::Parse(container_ip.to_string()))?;
        listeners.push((l, target));
    }
    // The agent is single-threaded, so the child may start threads of its own.
    match unsafe { nix::unistd::fork() }.map_err(PortError::Fork)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => {
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // Still single-threaded: the only moment a user namespace can be changed.
            if let Some(k) = keeper
                && let Err(e) = super::keeper::join_net(k)
            {
                eprintln!("boxkit: port proxy: join the keeper's network namespace: {e}");
                unsafe { libc::_exit(1) }
            }
            // Keep only the listeners (the agent's socket and the rest must not stay open).
            let keep: Vec<i32> = listeners.iter().map(|(l, _)| l.raw_fd()).collect();
            for fd in 3..1024 {
                if !keep.contains(&fd) {
                    unsafe { libc::close(fd) };
                }
            }
            let mut handles = Vec::new();
            for (l, target) in listeners {
                handles.push(std::thread::spawn(move || match l {
                    Listener::Tcp(l) => serve(l, target),
                    Listener::Udp(s) => serve_udp(s, target),
                }));
            }
            for h in handles {
                let _ = h.join();
            }
            unsafe { libc::_exit(0) }
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn raw_fd(&self) -> i32 {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// UDP: datagrams from each client go out through a socket of their own (so replies can be
/// told apart), and whatever comes back on it is sent to that client from the host port.
fn serve_udp(sock: UdpSocket, target: SocketAddr) {
    let mut upstreams: std::collections::HashMap<SocketAddr, UdpSocket> = Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let up = match upstreams.get(&client) {
            Some(u) => u,
            None => {
                let bind: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .expect("literal address");
                let Ok(u) = UdpSocket::bind(bind) else {
                    continue;
                };
                if u.connect(target).is_err() {
                    continue;
                }
                let (Ok(back), Ok(reply)) = (u.try_clone(), sock.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    loop {
                        match back.recv(&mut b) {
                            Ok(m) => {
                                let _ = reply.send_to(&b[..m], client);
                            }
                            // A datagram sent before the server bound its port comes back
                            // as ICMP "port unreachable"; later ones may well be answered.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                            Err(_) => break,
                        }
                    }
                });
                upstreams.entry(client).or_insert(u)
            }
        };
        let _ = up.send(&buf[..n]);
    }
}

fn serve(l: TcpListener, target: SocketAddr) {
    for conn in l.incoming() {
        let Ok(client) = conn else { continue };
        std::thread::spawn(move || {
            // The container may still be starting its server: retry briefly.
            let mut upstream = None;
            for _ in 0..50 {
                if let Ok(s) = TcpStream::connect(target) {
                    upstream = Some(s);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let Some(up) = upstream else { return };
            relay(client, up);
        });
    }
}

fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || copy_then_shutdown(a2, b2));
    copy_then_shutdown(b, a);
    let _ = t.join();
}

fn copy_then_shutdown(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Stop a proxy started by [`start_proxy`].
pub fn stop_proxy(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_parse_like_docker() {
        let p = PortMapping::parse("8080:80").unwrap();
        assert_eq!(p.host_ip.to_string(), "0.0.0.0");
        assert_eq!(
            (p.host_port, p.container_port, p.proto),
            (8080, 80, Proto::Tcp)
        );
        let p = PortMapping::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip.to_string(), "127.0.0.1");
        assert_eq!(p.proto, Proto::Udp);
        for bad in ["80", "0:80", "a:80", "80:80/sctp", "x:1:2", "70000:1"] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }
}
