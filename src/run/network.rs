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
//! SIGKILL (the agent does it); the veth pair dies with the container's namespace.
//!
//! Rootless `bridge` is the same bridge one level down, in the network namespace of the
//! user's keeper: see [`super::rootless_net`], which also explains the host loopback setting
//! ([`HostLoopback`]).

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
    #[error("{HOST_LOOPBACK_VAR}={0:?}: expected true or false")]
    BadHostLoopback(String),
    #[error(
        "the rootless network of your keeper runs with host loopback {have}, and {containers} \
         running container(s) share it; this run asks for host loopback {want} \
         ({HOST_LOOPBACK_VAR}). The setting is the keeper's: stop those containers (or run \
         `box system migrate`) to change it, or run with the setting they use"
    )]
    HostLoopbackInUse {
        have: HostLoopback,
        want: HostLoopback,
        containers: usize,
    },
}

/// Whether rootless bridged containers may reach the host's loopback through the user-mode
/// network helper (see the module documentation). Denied unless [`HOST_LOOPBACK_VAR`] says
/// `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostLoopback {
    #[default]
    Denied,
    Allowed,
}

pub const HOST_LOOPBACK_VAR: &str = "BOX_ROOTLESS_ALLOW_HOST_LOOPBACK";

impl HostLoopback {
    /// The setting this process's environment asks for.
    pub fn from_env() -> Result<HostLoopback> {
        Self::parse(std::env::var(HOST_LOOPBACK_VAR).ok().as_deref())
    }

    fn parse(v: Option<&str>) -> Result<HostLoopback> {
        match v.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "0" | "false" | "no") => Ok(HostLoopback::Denied),
            Some("1" | "true" | "yes") => Ok(HostLoopback::Allowed),
            Some(_) => Err(NetworkError::BadHostLoopback(v.unwrap_or("").to_string())),
        }
    }

    /// As recorded in the state file.
    pub(super) fn word(self) -> &'static str {
        match self {
            HostLoopback::Denied => "host-loopback=deny",
            HostLoopback::Allowed => "host-loopback=allow",
        }
    }
}

impl std::fmt::Display for HostLoopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostLoopback::Denied => "access denied",
            HostLoopback::Allowed => "access allowed",
        })
    }
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

/// What one container holds on the host: its address lease; dropped by [`release`].
#[derive(Debug)]
pub struct Attachment {
    /// The address lease file (the veth pair dies with the container's namespace).
    pub(super) lease: PathBuf,
}

pub(super) fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
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
    // SAFETY: ifreq is plain data (a name array and a union of integers and addresses), for
    // which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *c as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    // SAFETY: SIOCSIFFLAGS reads one ifreq from the pointer, which points at `req` (name
    // NUL-terminated above); `s` is an open socket for the duration of the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(NetworkError::Loopback(nix::Error::last()));
    }
    Ok(())
}

/// Where the bridge's state (lock, infrastructure record, leases) lives: /run/boxkit/net as
/// root; rootless, `net/` in the caller's runtime directory (its bridge is in the keeper's
/// network namespace, see [`super::keeper`]).
pub(super) fn state_dir() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from(STATE_DIR));
    }
    super::rundir::runtime_dir()
        .map(|d| d.join("net"))
        .map_err(|e| NetworkError::Command {
            cmd: "rootless bridge".into(),
            cause: e.to_string(),
        })
}

/// Holds the flock on `DIR/lock` while alive.
pub(super) struct Lock(#[allow(dead_code)] std::fs::File);
impl Lock {
    pub(super) fn take(dir: &Path) -> Result<Lock> {
        let io = |cause| NetworkError::Io {
            path: dir.into(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let f = std::fs::File::create(dir.join("lock")).map_err(io)?;
        // A failed flock is not fatal (as before): the lock only orders concurrent attaches.
        // SAFETY: flock takes no pointers; `f` is open for the duration of the call.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
        Ok(Lock(f))
    }
}

pub(super) fn leases(dir: &Path) -> Vec<(u8, PathBuf)> {
    std::fs::read_dir(dir)
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

/// A tool from the sbin directories too (an unprivileged user's PATH often lacks them).
pub(super) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `box0` with its address, up, forwarding on, and its NAT rule, in the calling thread's
/// network namespace: made on first use, then kept (see the module documentation). Cheap
/// when the state file matches the live bridge: one ioctl and one small read.
pub(super) fn ensure_bridge(dir: &Path) -> Result<()> {
    let live = || netlink::index(BRIDGE).ok().map(|i| i.to_string());
    let state = dir.join(INFRA);
    let record = |i: &str| format!("{BRIDGE} ifindex {i}, address and NAT rule in place\n");
    // Containers cannot reach beyond the bridge without forwarding (cheap to re-assert).
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    if let Some(i) = live()
        && std::fs::read_to_string(&state).ok() == Some(record(&i))
    {
        let _ = std::fs::write(fwd, "1");
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
    std::fs::write(fwd, "1").map_err(|cause| NetworkError::Io {
        path: fwd.into(),
        cause,
    })?;
    let iptables = find_tool("iptables").ok_or_else(|| NetworkError::Command {
        cmd: "iptables".into(),
        cause: "not installed (package iptables); it sets up NAT for the bridge".into(),
    })?;
    let iptables = iptables.to_string_lossy();
    let nat = |op: &'static str| {
        let mut v = vec!["-w", "-t", "nat", op];
        v.extend(NAT_RULE);
        v
    };
    if run(&iptables, &nat("-C"), None).is_err() {
        run(&iptables, &nat("-A"), None)?;
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
    let dir = state_dir()?;
    let _lock = Lock::take(&dir)?;
    ensure_bridge(&dir)?;
    lease_and_link(&dir, pid)
}

/// Lease an address in `dir` and make the veth pair (bridge `box0` of the calling thread's
/// network namespace) with its peer in `pid`'s namespace. The caller holds the lock.
pub(super) fn lease_and_link(dir: &Path, pid: i32) -> Result<(Attachment, Address)> {
    // Lease: reclaim entries whose owner is gone, then take the lowest free host number.
    let taken = leases(dir);
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
    let taken: Vec<u8> = leases(dir).into_iter().map(|(n, _)| n).collect();
    let n = (2..=254u8)
        .find(|n| !taken.contains(n))
        .ok_or(NetworkError::Exhausted)?;
    let lease = dir.join(format!("lease-{n}"));
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
    if let Err(e) = r {
        let _ = std::fs::remove_file(&lease);
        return Err(e.into());
    }
    Ok((Attachment { lease }, Address { ip, gateway: gw }))
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

/// Undo an attachment. Errors are ignored.
pub fn release(att: Attachment) {
    // The veth pair goes with the container's network namespace: once its last process has
    // exited, the kernel unregisters every device in it, the peer's host end included, from a
    // worker thread. Deleting the host end here instead would block for an RCU barrier
    // (~15–20 ms measured: most of the bridge's cost per run) and gain nothing. The lease can
    // go at once: whoever gets the address next gets the same MAC. The lock keeps a
    // concurrent attach from re-leasing it in between. box0 and its NAT rule stay (host
    // infrastructure, see above).
    let Some(dir) = att.lease.parent() else {
        return;
    };
    let Ok(_lock) = Lock::take(dir) else { return };
    let _ = std::fs::remove_file(&att.lease);
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
    fn host_loopback_is_denied_unless_asked_for() {
        assert_eq!(HostLoopback::parse(None).unwrap(), HostLoopback::Denied);
        assert_eq!(HostLoopback::parse(Some("")).unwrap(), HostLoopback::Denied);
        assert_eq!(
            HostLoopback::parse(Some("false")).unwrap(),
            HostLoopback::Denied
        );
        assert_eq!(
            HostLoopback::parse(Some("TRUE")).unwrap(),
            HostLoopback::Allowed
        );
        assert_eq!(
            HostLoopback::parse(Some("1")).unwrap(),
            HostLoopback::Allowed
        );
        assert!(HostLoopback::parse(Some("maybe")).is_err());
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
