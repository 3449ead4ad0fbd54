//! Published ports (`-p [IP:][HOST[-END]:]CONTAINER[-END][/tcp|udp]`).
//!
//! As root the container sits behind the `box0` bridge; a small userspace proxy (as
//! docker-proxy does for loopback traffic, which DNAT cannot reach without
//! `route_localnet`) listens on the host address and relays each TCP connection, and each UDP
//! client's datagrams (one upstream socket per client address, a "flow"), to the container's
//! address. UDP has no end of connection, so a flow is dropped after it has been idle for
//! [`Limits::udp_flow_timeout`] (docker-proxy's 90 s), and at most [`Limits::udp_max_flows`]
//! are held per port (the least recently used one makes room): one thread per published UDP
//! port polls the listener and all its flows, so no client can make the proxy grow threads
//! or descriptors without bound. The agent binds the listeners itself, so a port already in use fails
//! the run before the container starts, then forks the proxy, which dies with the agent
//! (`PR_SET_PDEATHSIG`) or on release. Rootless the same proxy serves, joined to the keeper's
//! network namespace where the rootless bridge lives (rootlesskit's port driver does the same).
//!
//! A mapping without a host port (`-p 80`, `-p 127.0.0.1::80`) binds port 0, so the kernel
//! picks a free one; a host range mapped to one container port (`-p 8000-8010:80`) takes the
//! first port of the range that binds. [`start_proxy`] returns the mappings as bound, which the
//! caller records (`box port`, `box ps`, `box inspect`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{Limits, LimitsError};

#[derive(Debug, Error)]
pub enum PortError {
    #[error(
        "invalid port mapping {0:?}: expected [IP:][HOST-PORT[-END]:]CONTAINER-PORT[-END][/tcp|/udp] with ports 1-65535"
    )]
    Parse(String),
    #[error(
        "invalid port mapping {0:?}: a host port range maps to one container port, or one to one to a container range of the same length"
    )]
    Ranges(String),
    #[error("publish {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error(
        "publish {ip} ports {first}-{last}: every port of the range is in use; choose another range"
    )]
    RangeInUse { ip: IpAddr, first: u16, last: u16 },
    #[error("start the port proxy: {0}")]
    Fork(nix::Error),
    #[error("start the port proxy: {0}")]
    Limits(#[from] LimitsError),
}

pub type Result<T> = std::result::Result<T, PortError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; docker's default is every address.
    pub host_ip: IpAddr,
    /// 0: any free port (the kernel picks one when the proxy binds).
    pub host_port: u16,
    /// With a host range (`8000-8010:80`): its last port; the first port of
    /// `host_port..=host_port_end` that binds is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMapping {
    /// Parse docker's `-p` forms: `CTR`, `HOST:CTR`, `IP:HOST:CTR` and `IP::CTR`, each with an
    /// optional `/tcp` or `/udp`; HOST and CTR may be ranges (`8000-8010:80` takes the first
    /// free host port of the range, `8000-8001:80-81` maps one to one, `80-81` publishes both
    /// on random ports). One flag may thus give several mappings.
    pub fn parse(s: &str) -> Result<Vec<PortMapping>> {
        let bad = || PortError::Parse(s.to_string());
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some(_) => return Err(bad()),
            None => (s, Proto::Tcp),
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        let range = |r: &str| -> Result<(u16, u16)> {
            match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if a > b {
                        return Err(bad());
                    }
                    Ok((a, b))
                }
                None => port(r).map(|p| (p, p)),
            }
        };
        let (ip, host, ctr) = match spec.rsplitn(3, ':').collect::<Vec<_>>().as_slice() {
            [c] => ("0.0.0.0", "", *c),
            // `:80` names neither a host port nor an address.
            [_, ""] => return Err(bad()),
            [c, h] => ("0.0.0.0", *h, *c),
            [c, h, ip] => (*ip, *h, *c),
            _ => return Err(bad()),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        let host_ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let (c0, c1) = range(ctr)?;
        let one = |host_port, host_port_end, container_port| PortMapping {
            host_ip,
            host_port,
            host_port_end,
            container_port,
            proto,
        };
        if host.is_empty() {
            return Ok((c0..=c1).map(|c| one(0, None, c)).collect());
        }
        let (h0, h1) = range(host)?;
        if c0 == c1 {
            return Ok(vec![one(h0, (h1 > h0).then_some(h1), c0)]);
        }
        if h1 - h0 != c1 - c0 {
            return Err(PortError::Ranges(s.to_string()));
        }
        Ok((c0..=c1).map(|c| one(h0 + (c - c0), None, c)).collect())
    }

    /// `80/tcp`, the key docker uses for a container port.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

/// Bind every listener, then fork the proxy that relays them to `container_ip`. Returns the
/// proxy's pid (None when there is nothing to publish) and the mappings as bound: each with
/// the host port it got (a random or ranged host port resolved). Rootless, the container's
/// bridge is in the network namespace of `keeper` (see [`super::keeper`]): the proxy joins it
/// after binding, so it listens on the host and connects inside.
pub fn start_proxy(
    ports: &[PortMapping],
    container_ip: &str,
    keeper: Option<i32>,
) -> Result<(Option<i32>, Vec<PortMapping>)> {
    if ports.is_empty() {
        return Ok((None, Vec::new()));
    }
    let limits = Limits::from_env()?;
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for p in ports {
        let (l, port) = bind(p)?;
        let target: SocketAddr = format!("{container_ip}:{}", p.container_port)
            .parse()
            .map_err(|_| PortError::Parse(container_ip.to_string()))?;
        listeners.push((l, target));
        bound.push(PortMapping {
            host_port: port,
            host_port_end: None,
            ..p.clone()
        });
    }
    // The agent is single-threaded, so the child may start threads of its own.
    // SAFETY: single-threaded caller (the agent), so the child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(PortError::Fork)? {
        nix::unistd::ForkResult::Parent { child } => Ok((Some(child.as_raw()), bound)),
        nix::unistd::ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // Still single-threaded: the only moment a user namespace can be changed.
            if let Some(k) = keeper
                && let Err(e) = super::nsenter::join_net(k)
            {
                eprintln!("boxkit: port proxy: join the keeper's network namespace: {e}");
                // Child path after fork: end without running the agent's exit handlers.
                // SAFETY: _exit only ends this process.
                unsafe { libc::_exit(1) }
            }
            // Keep only the listeners (the agent's socket and the rest must not stay open).
            let keep: Vec<i32> = listeners.iter().map(|(l, _)| l.raw_fd()).collect();
            // Raw closes are fine here: this child never returns to code that owns them.
            for fd in 3..1024 {
                if !keep.contains(&fd) {
                    let _ = nix::unistd::close(fd);
                }
            }
            // Up to udp_max_flows sockets per UDP port: allow as many descriptors as the hard
            // limit does (raising the soft limit up to it needs no privilege).
            if let Ok((_, hard)) = nix::sys::resource::getrlimit(NOFILE) {
                let _ = nix::sys::resource::setrlimit(NOFILE, hard, hard);
            }
            let mut handles = Vec::new();
            for (l, target) in listeners {
                handles.push(std::thread::spawn(move || match l {
                    Listener::Tcp(l) => serve(l, target),
                    Listener::Udp(s) => serve_udp(s, target, &limits),
                }));
            }
            for h in handles {
                let _ = h.join();
            }
            // Child path after fork: end without running the agent's exit handlers.
            // SAFETY: _exit only ends this process.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Bind one mapping's listener: its host port, any free one (port 0), or the first free one of
/// its range. Returns the listener and the port it holds.
fn bind(p: &PortMapping) -> Result<(Listener, u16)> {
    let try_port = |port| {
        let addr = SocketAddr::new(p.host_ip, port);
        let l = match p.proto {
            Proto::Tcp => TcpListener::bind(addr).map(Listener::Tcp),
            Proto::Udp => UdpSocket::bind(addr).map(Listener::Udp),
        };
        l.and_then(|l| Ok((l.local_port()?, l)))
            .map(|(port, l)| (l, port))
            .map_err(|cause| PortError::Bind { addr, cause })
    };
    let Some(last) = p.host_port_end else {
        return try_port(p.host_port);
    };
    for port in p.host_port..=last {
        match try_port(port) {
            Err(PortError::Bind { cause, .. }) if cause.kind() == std::io::ErrorKind::AddrInUse => {
            }
            r => return r,
        }
    }
    Err(PortError::RangeInUse {
        ip: p.host_ip,
        first: p.host_port,
        last,
    })
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    fn local_port(&self) -> std::io::Result<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Udp(s) => s.local_addr(),
        }
        .map(|a| a.port())
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Udp(s) => s.as_raw_fd(),
        }
    }
}

const NOFILE: nix::sys::resource::Resource = nix::sys::resource::Resource::RLIMIT_NOFILE;

/// One UDP client of a published port: its datagrams go out through a socket of their own
/// (so replies can be told apart), and what comes back is sent to the client from the host
/// port.
struct Flow {
    upstream: UdpSocket,
    last: Instant,
}

/// Serve one published UDP port on the calling thread: poll the listener and every flow's
/// upstream socket; drop flows idle for `udp_flow_timeout`, hold at most `udp_max_flows`.
fn serve_udp(sock: UdpSocket, target: SocketAddr, limits: &Limits) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    let timeout = limits.udp_flow_timeout;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let order: Vec<SocketAddr> = flows.keys().copied().collect();
        // Wake up when the oldest flow expires (u16 milliseconds at most: a longer wait
        // just loops once more).
        let wait = flows
            .values()
            .map(|f| (f.last + timeout).saturating_duration_since(Instant::now()))
            .min()
            .map(|d| PollTimeout::from(d.as_millis().clamp(1, u16::MAX as u128) as u16))
            .unwrap_or(PollTimeout::NONE);
        let ready: Vec<bool> = {
            let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                order
                    .iter()
                    .map(|c| PollFd::new(flows[c].upstream.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, wait) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                // Nothing here can make poll fail for good; do not spin if it does.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let now = Instant::now();
        // Replies from the container, to their clients.
        for (client, _) in order.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            let Some(f) = flows.get_mut(client) else {
                continue;
            };
            let mut broken = false;
            loop {
                match f.upstream.recv(&mut buf) {
                    Ok(n) => {
                        let _ = sock.send_to(&buf[..n], client);
                        f.last = now;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // A datagram sent before the server bound its port comes back as ICMP
                    // "port unreachable"; later ones may well be answered.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                flows.remove(client);
            }
        }
        // Datagrams from clients, each to its flow (made on first contact).
        if ready[0] {
            loop {
                let (n, client) = match sock.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                if !flows.contains_key(&client) {
                    if flows.len() >= limits.udp_max_flows
                        && let Some(oldest) =
                            flows.iter().min_by_key(|(_, f)| f.last).map(|(c, _)| *c)
                    {
                        flows.remove(&oldest);
                    }
                    let Some(upstream) = connect_udp(target) else {
                        continue;
                    };
                    flows.insert(
                        client,
                        Flow {
                            upstream,
                            last: now,
                        },
                    );
                }
                if let Some(f) = flows.get_mut(&client) {
                    let _ = f.upstream.send(&buf[..n]);
                    f.last = now;
                }
            }
        }
        flows.retain(|_, f| now.duration_since(f.last) < timeout);
    }
}

/// A non-blocking socket connected to `target`, for one flow.
fn connect_udp(target: SocketAddr) -> Option<UdpSocket> {
    let any: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let u = UdpSocket::bind(any).ok()?;
    u.connect(target).ok()?;
    u.set_nonblocking(true).ok()?;
    Some(u)
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
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortMapping {
        let v = PortMapping::parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}: {v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn port_mappings_parse_like_docker() {
        let p = one("8080:80");
        assert_eq!(p.host_ip.to_string(), "0.0.0.0");
        assert_eq!(
            (p.host_port, p.host_port_end, p.container_port, p.proto),
            (8080, None, 80, Proto::Tcp)
        );
        let p = one("127.0.0.1:5353:53/udp");
        assert_eq!(p.host_ip.to_string(), "127.0.0.1");
        assert_eq!(p.proto, Proto::Udp);
        let p = one("[::1]:8080:80");
        assert_eq!(p.host_ip.to_string(), "::1");
        for bad in [
            "0:80",
            "a:80",
            "80:80/sctp",
            "x:1:2",
            "70000:1",
            ":80",
            "0",
            "::80",
            "80-",
            "81-80",
            "1:2:3:4",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_container_port_alone_gets_a_random_host_port() {
        let p = one("80");
        assert_eq!(p.host_ip.to_string(), "0.0.0.0");
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = one("53/udp");
        assert_eq!(
            (p.host_port, p.container_port, p.proto),
            (0, 53, Proto::Udp)
        );
        let p = one("127.0.0.1::80");
        assert_eq!(p.host_ip.to_string(), "127.0.0.1");
        assert_eq!(
            (p.host_port, p.host_port_end, p.container_port),
            (0, None, 80)
        );
        let p = one("[::1]::80/tcp");
        assert_eq!((p.host_ip.to_string(), p.host_port), ("::1".into(), 0));
        let v = PortMapping::parse("80-82").unwrap();
        assert_eq!(
            v.iter()
                .map(|p| (p.host_port, p.container_port))
                .collect::<Vec<_>>(),
            [(0, 80), (0, 81), (0, 82)]
        );
    }

    #[test]
    fn host_port_ranges_map_to_one_port_or_one_to_one() {
        let p = one("8000-8010:80");
        assert_eq!(
            (p.host_port, p.host_port_end, p.container_port),
            (8000, Some(8010), 80)
        );
        let p = one("127.0.0.1:8000-8000:80/udp");
        assert_eq!((p.host_port, p.host_port_end), (8000, None));
        let v = PortMapping::parse("127.0.0.1:8000-8001:80-81").unwrap();
        assert_eq!(
            v.iter()
                .map(|p| (p.host_port, p.host_port_end, p.container_port))
                .collect::<Vec<_>>(),
            [(8000, None, 80), (8001, None, 81)]
        );
        assert!(v.iter().all(|p| p.host_ip.to_string() == "127.0.0.1"));
        for bad in ["8000-8002:80-81", "8000:80-81"] {
            assert!(
                matches!(PortMapping::parse(bad), Err(PortError::Ranges(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn binding_resolves_random_and_ranged_host_ports() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any = PortMapping {
            host_ip: lo,
            host_port: 0,
            host_port_end: None,
            container_port: 80,
            proto: Proto::Tcp,
        };
        let (l, port) = bind(&any).unwrap();
        assert_ne!(port, 0);
        assert_eq!(l.local_port().unwrap(), port);
        // A range whose first port is taken: the next one.
        let held = TcpListener::bind((lo, 0)).unwrap();
        let first = held.local_addr().unwrap().port();
        let Some(last) = first.checked_add(20) else {
            return;
        };
        let ranged = PortMapping {
            host_port: first,
            host_port_end: Some(last),
            ..any.clone()
        };
        let (_l2, got) = bind(&ranged).unwrap();
        assert!(
            got > first && got <= last,
            "{got} not in {first}+1..={last}"
        );
        // A range with every port taken.
        let full = PortMapping {
            host_port: first,
            host_port_end: Some(first),
            ..any
        };
        assert!(matches!(bind(&full), Err(PortError::RangeInUse { .. })));
    }
}
