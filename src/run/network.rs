//! Container networking.
//!
//! Every mode but `host` gives the container its own network namespace, which starts with
//! only a down loopback device; we bring `lo` up with the SIOCSIFFLAGS ioctl from inside.
//! `bridge` as root connects that namespace to the host the classic way: a Linux bridge
//! `box0` holding 10.89.7.1/24 (podman's default is 10.88.0.0/16, so the two coexist), one
//! veth pair per container (host end `bx<pid hex>` enslaved to the bridge, peer created
//! directly in the container's namespace as `eth0`), a default route via the bridge address
//! and an iptables MASQUERADE rule for traffic leaving the subnet. All link, address and route
//! changes go over rtnetlink ([`super::netlink`]), no `ip` processes: the host agent makes the
//! veth pair, the container's pid 1 gives `eth0` its address and route itself before it drops
//! its capabilities (it receives them on its start pipe).
//!
//! `box0` and its NAT rule are host infrastructure, like docker's `docker0`: made once, on
//! first use, and kept when the last container leaves, so a run pays only for its veth pair.
//! A state file under /run/boxkit/net/ records the bridge's ifindex once the bridge is
//! configured and the rule is in place; while it matches the live bridge nothing is checked
//! again (if `box0` is deleted by hand, the next run rebuilds both). Addresses are leased as
//! files in the same directory (no daemon) and dropped when the container exits, also after
//! SIGKILL (the agent does it); the veth pair dies with the container's namespace. Rootless `bridge` uses pasta
//! (passt), which connects the namespace through a tap device from user space.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::netlink::{self, Netlink, NetlinkError};

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("{cmd}: {cause}")]
    Command { cmd: String, cause: String },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("bad container address {0:?}")]
    BadAddress(String),
    #[error("bring up lo: {0}")]
    Loopback(nix::Error),
    #[error("no free address left in {SUBNET}.0/24")]
    Exhausted,
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "rootless bridge networking needs pasta (package passt) or slirp4netns; neither is \
         installed (use --network none or host)"
    )]
    NoUserModeNet,
}

pub type Result<T> = std::result::Result<T, NetworkError>;

pub const BRIDGE: &str = "box0";
/// The first three octets of the bridge subnet.
pub const SUBNET: &str = "10.89.7";
const STATE_DIR: &str = "/run/boxkit/net";
/// The state file saying `box0` (by ifindex) is configured and its NAT rule is in place.
const INFRA: &str = "bridge";
/// The MASQUERADE rule, as iptables arguments after `-t nat -A|-C|-D`.
const NAT_RULE: [&str; 8] = [
    "POSTROUTING",
    "-s",
    "10.89.7.0/24",
    "!",
    "-o",
    BRIDGE,
    "-j",
    "MASQUERADE",
];

/// The container's side of an attachment, for /etc/hosts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Address {
    pub ip: String,
    pub gateway: String,
}

/// What one container holds on the host; dropped by [`release`].
#[derive(Debug)]
pub enum Attachment {
    Veth { host_if: String, lease: PathBuf },
    Pasta { pid: Option<i32> },
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let desc = || format!("{cmd} {}", args.join(" "));
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| NetworkError::Command {
        cmd: desc(),
        cause: e.to_string(),
    })?;
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        let _ = i.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::Command {
            cmd: desc(),
            cause: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Command {
            cmd: desc()
                + stdin
                    .map(|s| format!(" <<< {s:?}"))
                    .as_deref()
                    .unwrap_or(""),
            cause: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Bring `lo` up in the calling process's network namespace.
pub fn loopback_up() -> Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    use std::os::fd::AsRawFd;
    let s = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NetworkError::Loopback)?;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *c as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(NetworkError::Loopback(nix::Error::last()));
    }
    Ok(())
}

/// Holds the flock while alive.
struct Lock(#[allow(dead_code)] std::fs::File);
impl Lock {
    fn take() -> Result<Lock> {
        let io = |cause| NetworkError::Io {
            path: STATE_DIR.into(),
            cause,
        };
        std::fs::create_dir_all(STATE_DIR).map_err(io)?;
        let f = std::fs::File::create(Path::new(STATE_DIR).join("lock")).map_err(io)?;
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
        Ok(Lock(f))
    }
}

fn leases() -> Vec<(u8, PathBuf)> {
    std::fs::read_dir(STATE_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("lease-")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect()
}

/// `box0` with its address, up, and its NAT rule: made on first use, then kept (see the
/// module documentation). Cheap when the state file matches the live bridge: two small reads.
fn ensure_bridge() -> Result<()> {
    let live = || {
        std::fs::read_to_string(Path::new("/sys/class/net").join(BRIDGE).join("ifindex"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let state = Path::new(STATE_DIR).join(INFRA);
    let record = |i: &str| format!("{BRIDGE} ifindex {i}, address and NAT rule in place\n");
    if let Some(i) = live()
        && std::fs::read_to_string(&state).ok() == Some(record(&i))
    {
        return Ok(());
    }
    let mut nl = Netlink::open()?;
    if live().is_none() {
        match nl.create_bridge(BRIDGE) {
            Err(e) if !netlink::exists(&e) => return Err(e.into()),
            _ => {}
        }
    }
    let idx = netlink::index(BRIDGE)?;
    match nl.add_address(idx, BRIDGE, gateway(), 24) {
        Err(e) if !netlink::exists(&e) => return Err(e.into()),
        _ => {}
    }
    nl.set_up(idx, BRIDGE)?;
    let nat = |op: &'static str| {
        let mut v = vec!["-w", "-t", "nat", op];
        v.extend(NAT_RULE);
        v
    };
    if run("iptables", &nat("-C"), None).is_err() {
        run("iptables", &nat("-A"), None)?;
    }
    std::fs::write(&state, record(&idx.to_string())).map_err(|cause| NetworkError::Io {
        path: state.clone(),
        cause,
    })
}

fn gateway() -> std::net::Ipv4Addr {
    format!("{SUBNET}.1")
        .parse()
        .expect("the bridge address is valid")
}

/// Bridge mode as root: bridge (once), lease, veth pair with its peer in `pid`'s namespace.
/// The container configures its side itself ([`configure_eth0`]).
pub fn attach_bridge(pid: i32) -> Result<(Attachment, Address)> {
    let _lock = Lock::take()?;
    ensure_bridge()?;
    // Cheap, and containers cannot reach beyond the host without it.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    // Lease: reclaim entries whose owner is gone, then take the lowest free host number.
    let taken = leases();
    for (_, p) in &taken {
        let owner = std::fs::read_to_string(p).unwrap_or_default();
        if owner
            .trim()
            .parse::<i32>()
            .is_ok_and(|o| !Path::new(&format!("/proc/{o}")).exists())
        {
            let _ = std::fs::remove_file(p);
        }
    }
    let taken: Vec<u8> = leases().into_iter().map(|(n, _)| n).collect();
    let n = (2..=254u8)
        .find(|n| !taken.contains(n))
        .ok_or(NetworkError::Exhausted)?;
    let lease = Path::new(STATE_DIR).join(format!("lease-{n}"));
    std::fs::write(&lease, pid.to_string()).map_err(|cause| NetworkError::Io {
        path: lease.clone(),
        cause,
    })?;
    let host_if = format!("bx{pid:x}");
    let ip = format!("{SUBNET}.{n}");
    let gw = format!("{SUBNET}.1");
    // The MAC follows from the address (as docker does), so neighbour caches on the bridge
    // and in other containers stay right when an address is leased again. The kernel makes
    // the pair atomically: on error nothing is left to delete.
    let mac = [0x02, 0x42, 10, 89, 7, n];
    let r = Netlink::open().and_then(|mut nl| {
        let master = netlink::index(BRIDGE)?;
        nl.create_veth(&host_if, master, "eth0", mac, pid)
    });
    let att = Attachment::Veth { host_if, lease };
    if let Err(e) = r {
        release(att);
        return Err(e.into());
    }
    Ok((att, Address { ip, gateway: gw }))
}

/// In the container's network namespace (its pid 1, before dropping capabilities): give
/// `eth0` the leased address, bring it up, route everything via the bridge.
pub fn configure_eth0(addr: &Address) -> Result<()> {
    let ip: std::net::Ipv4Addr = addr
        .ip
        .parse()
        .map_err(|_| NetworkError::BadAddress(addr.ip.clone()))?;
    let gw: std::net::Ipv4Addr = addr
        .gateway
        .parse()
        .map_err(|_| NetworkError::BadAddress(addr.gateway.clone()))?;
    let mut nl = Netlink::open()?;
    let eth0 = netlink::index("eth0")?;
    nl.add_address(eth0, "eth0", ip, 24)?;
    nl.set_up(eth0, "eth0")?;
    nl.add_default_route(eth0, "eth0", gw)?;
    Ok(())
}

/// Bridge mode rootless: pasta copies the host's addresses and routes into the namespace.
pub fn attach_pasta(
    pid: i32,
    run_dir: &Path,
    ports: &[super::ports::PortMapping],
) -> Result<(Attachment, Option<Address>)> {
    let have = |t: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
    };
    if have("pasta") {
        let pidfile = run_dir.join(format!("pasta-{pid}.pid"));
        let pf = pidfile.to_string_lossy().to_string();
        let netns = format!("/proc/{pid}/ns/net");
        let userns = format!("/proc/{pid}/ns/user");
        let mut args: Vec<String> = [
            "--config-net",
            "--quiet",
            "--pid",
            &pf,
            "--netns",
            &netns,
            "--userns",
            &userns,
        ]
        .map(String::from)
        .to_vec();
        // Published ports; without any, pasta forwards none (never the host's whole range).
        if ports.is_empty() {
            args.extend(["-t", "none", "-u", "none"].map(String::from));
        }
        for p in ports {
            args.extend(p.pasta_args());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("pasta", &args, None)?;
        let ppid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let _ = std::fs::remove_file(&pidfile);
        return Ok((Attachment::Pasta { pid: ppid }, None));
    }
    if !ports.is_empty() {
        return Err(NetworkError::Command {
            cmd: "publish ports".into(),
            cause: "publishing ports rootless needs pasta (package passt)".into(),
        });
    }
    if have("slirp4netns") {
        let child = Command::new("slirp4netns")
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                &pid.to_string(),
                "tap0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| NetworkError::Command {
                cmd: "slirp4netns".into(),
                cause: e.to_string(),
            })?;
        // Give it a moment to configure the tap device before the container starts.
        std::thread::sleep(std::time::Duration::from_millis(50));
        return Ok((
            Attachment::Pasta {
                pid: Some(child.id() as i32),
            },
            None,
        ));
    }
    Err(NetworkError::NoUserModeNet)
}

/// Undo an attachment. Errors are ignored.
pub fn release(att: Attachment) {
    match att {
        Attachment::Veth { lease, .. } => {
            // The veth pair goes with the container's network namespace: once its last
            // process has exited, the kernel unregisters every device in it, the peer's
            // host end included, from a worker thread. Deleting the host end here instead
            // would block for an RCU barrier (~15–20 ms measured: most of the bridge's cost
            // per run) and gain nothing. The lease can go at once: whoever gets the address
            // next gets the same MAC. The lock keeps a concurrent attach from re-leasing it
            // in between. box0 and its NAT rule stay (host infrastructure, see above).
            let Ok(_lock) = Lock::take() else { return };
            let _ = std::fs::remove_file(&lease);
        }
        Attachment::Pasta { pid } => {
            if let Some(p) = pid {
                unsafe { libc::kill(p, libc::SIGTERM) };
            }
        }
    }
}

/// /etc/resolv.conf for the container: the host's, minus loopback nameservers (they do not
/// exist in a private namespace); docker's public fallbacks if nothing is left.
pub fn resolv_conf(host: &str, private_netns: bool) -> String {
    if !private_netns {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for l in host.lines() {
        let mut w = l.split_whitespace();
        if w.next() == Some("nameserver") {
            let ip = w.next().unwrap_or("");
            if ip.starts_with("127.") || ip == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(l);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// /etc/hosts for the container.
pub fn hosts(hostname: &str, addr: Option<&Address>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    match addr {
        Some(a) => s.push_str(&format!("{}\t{hostname}\n", a.ip)),
        None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers_in_private_netns() {
        let host = "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n";
        assert_eq!(resolv_conf(host, true), "search lan\nnameserver 10.0.0.1\n");
        assert_eq!(resolv_conf(host, false), host);
        assert!(resolv_conf("nameserver 127.0.0.1\n", true).contains("8.8.8.8"));
    }

    #[test]
    fn nat_rule_covers_the_bridge_subnet() {
        assert_eq!(NAT_RULE[2], format!("{SUBNET}.0/24"));
        assert_eq!(gateway().to_string(), format!("{SUBNET}.1"));
    }

    #[test]
    fn hosts_names_the_container() {
        let a = Address {
            ip: "10.89.7.2".into(),
            gateway: "10.89.7.1".into(),
        };
        assert!(hosts("c1", Some(&a)).contains("10.89.7.2\tc1\n"));
        assert!(hosts("c1", None).contains("127.0.1.1\tc1\n"));
    }
}
