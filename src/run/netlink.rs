//! A minimal synchronous rtnetlink client: the handful of requests bridge networking needs.
//!
//! The kernel's routing netlink family (`NETLINK_ROUTE`) is a datagram socket on which a
//! process sends requests — a `nlmsghdr`, a fixed per-family header (`ifinfomsg`,
//! `ifaddrmsg`, `rtmsg`) and a list of type-length-value attributes, some nested — and reads
//! back one `NLMSG_ERROR` acknowledgement per request (error 0 means done). That is what
//! iproute2's `ip` does; doing it here costs a few system calls instead of a fork and exec per
//! step. Requests act on the network namespace of the calling thread, so the host agent uses
//! it in the host namespace (bridge, veth pair with the peer created directly in the
//! container's namespace by pid via `IFLA_NET_NS_PID`) and the container's pid 1 uses it
//! inside its own namespace before it drops capabilities (address, link up, default route). Only five fixed message shapes are needed, so they are encoded by
//! hand (layouts from `linux/netlink.h`, `linux/rtnetlink.h`, `linux/if_link.h`,
//! `linux/veth.h`) rather than pulling in a general netlink crate and its dependencies.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("open a routing netlink socket: {0}")]
    Socket(io::Error),
    #[error("{op}: {cause}")]
    Request { op: String, cause: io::Error },
    #[error("{op}: malformed netlink reply")]
    Reply { op: String },
    #[error("network interface {0} does not exist")]
    NoSuchLink(String),
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

// linux/rtnetlink.h message types.
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
// linux/netlink.h.
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_HDRLEN: usize = 16;
// linux/if_link.h.
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
// linux/veth.h.
const VETH_INFO_PEER: u16 = 1;
// linux/if_addr.h.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
// linux/rtnetlink.h route attributes and rtmsg values.
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = libc::IFF_UP as u32;

/// One request being encoded: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Msg { buf }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Self {
        self.buf
            .extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Opens a nested attribute; returns its offset for [`Msg::end`].
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// A routing netlink socket in the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| NetlinkError::Socket(e.into()))?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement.
    fn call(&mut self, msg: Msg, op: impl Fn() -> String) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let out = msg.finish(seq);
        let fail = |cause| NetlinkError::Request { op: op(), cause };
        send(self.fd.as_raw_fd(), &out, MsgFlags::MSG_NOSIGNAL).map_err(|e| fail(e.into()))?;
        let mut buf = [0u8; 8192];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(fail(e.into())),
            };
            let mut rest = &buf[..n];
            while rest.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                let rseq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if len < NLMSG_HDRLEN || len > rest.len() {
                    return Err(NetlinkError::Reply { op: op() });
                }
                if kind == NLMSG_ERROR && rseq == seq {
                    let Some(code) = rest.get(16..20) else {
                        return Err(NetlinkError::Reply { op: op() });
                    };
                    let code = i32::from_ne_bytes(code.try_into().unwrap());
                    return match code {
                        0 => Ok(()),
                        c => Err(fail(io::Error::from_raw_os_error(-c))),
                    };
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
    }

    /// Creates a Linux bridge named `name` (down, no address).
    pub fn create_bridge(&mut self, name: &str) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        let li = m.begin(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"bridge");
        m.end(li);
        self.call(m, || format!("create bridge {name}"))
    }

    /// Creates a veth pair: `host` in this namespace, enslaved to `master` and up; `peer`
    /// with hardware address `peer_mac` directly in the network namespace of process
    /// `peer_pid`, down.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_pid: i32,
    ) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, IFF_UP, IFF_UP)
            .attr_str(IFLA_IFNAME, host)
            .attr_u32(IFLA_MASTER, master);
        let li = m.begin(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        let data = m.begin(IFLA_INFO_DATA);
        let p = m.begin(VETH_INFO_PEER);
        m.ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, peer)
            .attr(IFLA_ADDRESS, &peer_mac)
            .attr_u32(IFLA_NET_NS_PID, peer_pid as u32);
        m.end(p);
        m.end(data);
        m.end(li);
        self.call(m, || {
            format!("create veth pair {host} / {peer} (in process {peer_pid}'s network namespace)")
        })
    }

    /// Sets the interface with index `index` up.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, IFF_UP, IFF_UP);
        self.call(m, || format!("set {name} up"))
    }

    /// Adds `addr/prefix` to interface `index`.
    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.buf
            .extend_from_slice(&[libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.buf.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets());
        self.call(m, || format!("add address {addr}/{prefix} to {name}"))
    }

    /// Adds a default route via `gateway` on interface `index` to the main table.
    pub fn add_default_route(&mut self, index: u32, name: &str, gateway: Ipv4Addr) -> Result<()> {
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            libc::AF_INET as u8,
            0, // dst_len: default route
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
        m.attr(RTA_GATEWAY, &gateway.octets())
            .attr_u32(RTA_OIF, index);
        self.call(m, || format!("add default route via {gateway} on {name}"))
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn index(name: &str) -> Result<u32> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(i) if i != 0 => Ok(i),
        _ => Err(NetlinkError::NoSuchLink(name.into())),
    }
}

/// True when `e` says the object already exists (EEXIST).
pub fn exists(e: &NetlinkError) -> bool {
    matches!(e, NetlinkError::Request { cause, .. } if cause.raw_os_error() == Some(libc::EEXIST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_sized_and_padded() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, "box0");
        let li = m.begin(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"bridge");
        m.end(li);
        let b = m.finish(7);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // header 16 + ifinfomsg 16 + IFNAME (4 + "box0\0" → 12) + LINKINFO (4 + KIND 4+6 → 12)
        assert_eq!(b.len(), 16 + 16 + 12 + 16);
        let li = &b[44..];
        assert_eq!(u16::from_ne_bytes(li[0..2].try_into().unwrap()), 16);
        assert_eq!(
            u16::from_ne_bytes(li[2..4].try_into().unwrap()),
            IFLA_LINKINFO
        );
        assert_eq!(&li[8..14], b"bridge");
    }
}
