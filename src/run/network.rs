//! Container networking.
//!
//! Every mode but `host` gives the container its own network namespace, which starts with
//! only a down loopback device; we bring `lo` up with the SIOCSIFFLAGS ioctl from inside.
//! `bridge` as root connects that namespace to the host the classic way: a Linux bridge
//! `box0` holding 10.89.7.1/24 (podman's default is 10.88.0.0/16, so the two coexist), one
//! veth pair per container (host end enslaved to the bridge, peer moved into the container
//! namespace and renamed eth0), a default route via the bridge address and an iptables
//! MASQUERADE rule for traffic leaving the subnet. Addresses are leased as files under
//! /run/boxkit/net/ (no daemon); the veth, the lease, and — when the last lease goes — the
//! bridge and the NAT rule are removed on exit. This first version drives the kernel with
//! iproute2's `ip` and `iptables` rather than raw netlink. Rootless `bridge` uses pasta
//! (passt), which connects the namespace through a tap device from user space.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("{cmd}: {cause}")]
    Command { cmd: String, cause: String },
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

/// Bridge mode as root: bridge (once), lease, veth into `pid`'s namespace, address, route.
pub fn attach_bridge(pid: i32) -> Result<(Attachment, Address)> {
    let _lock = Lock::take()?;
    if !Path::new("/sys/class/net").join(BRIDGE).exists() {
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link add {BRIDGE} type bridge\naddr add {SUBNET}.1/24 dev {BRIDGE}\nlink set {BRIDGE} up\n"
            )),
        )?;
    }
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    let nat = [
        "-t",
        "nat",
        "POSTROUTING",
        "-s",
        &format!("{SUBNET}.0/24"),
        "!",
        "-o",
        BRIDGE,
        "-j",
        "MASQUERADE",
    ];
    let rule = |op: &'static str| -> Vec<String> {
        let mut v: Vec<String> = vec!["-w".into(), nat[0].into(), nat[1].into(), op.into()];
        v.extend(nat[2..].iter().map(|s| s.to_string()));
        v
    };
    let check: Vec<String> = rule("-C");
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    if run("iptables", &check, None).is_err() {
        let add = rule("-A");
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        run("iptables", &add, None)?;
    }
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
    let r = (|| {
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link add {host_if} type veth peer name eth0 netns {pid}\n\
                 link set {host_if} master {BRIDGE} up\n"
            )),
        )?;
        let netns = format!("--net=/proc/{pid}/ns/net");
        run(
            "nsenter",
            &[&netns, "ip", "-batch", "-"],
            Some(&format!(
                "addr add {ip}/24 dev eth0\nlink set eth0 up\nroute add default via {gw}\n"
            )),
        )
    })();
    let att = Attachment::Veth { host_if, lease };
    if let Err(e) = r {
        release(att);
        return Err(e);
    }
    Ok((att, Address { ip, gateway: gw }))
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

/// Undo an attachment. Errors are ignored: the namespace may already be gone, taking the
/// veth with it.
pub fn release(att: Attachment) {
    match att {
        Attachment::Veth { host_if, lease } => {
            let Ok(_lock) = Lock::take() else { return };
            let _ = run("ip", &["link", "del", &host_if], None);
            let _ = std::fs::remove_file(&lease);
            if leases().is_empty() {
                let _ = run("ip", &["link", "del", BRIDGE], None);
                let _ = run(
                    "iptables",
                    &[
                        "-w",
                        "-t",
                        "nat",
                        "-D",
                        "POSTROUTING",
                        "-s",
                        &format!("{SUBNET}.0/24"),
                        "!",
                        "-o",
                        BRIDGE,
                        "-j",
                        "MASQUERADE",
                    ],
                    None,
                );
            }
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
    fn hosts_names_the_container() {
        let a = Address {
            ip: "10.89.7.2".into(),
            gateway: "10.89.7.1".into(),
        };
        assert!(hosts("c1", Some(&a)).contains("10.89.7.2\tc1\n"));
        assert!(hosts("c1", None).contains("127.0.1.1\tc1\n"));
    }
}
