//! The host-side agent: work that needs the caller's real credentials outside the tool's
//! user namespace.
//!
//! Inside the tool's user namespace the process is "root" only over its own namespaces;
//! creating cgroups in the host hierarchy or veth devices in the host network namespace needs
//! the original credentials. So the process that entered the namespace stays outside as a
//! small single-threaded agent, connected by a SOCK_SEQPACKET socket: the sandbox asks it to
//! set up a container's cgroup and network by pid and to release them when the container has
//! exited. The agent records everything it made and removes whatever is still held when the
//! socket closes — so cleanup happens even when the container (or the tool) is SIGKILLed.
//! Without an agent (a process that did not enter a namespace, e.g. root with
//! `--userns=host`) the same code runs in-process.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::cgroups::{self, Cgroup};
use super::network::{self, Address, Attachment};
use super::ports::{self, PortMapping};
use super::rootless_net;
use super::spec::{Limits, NetworkMode};

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("host agent: {0}")]
    Host(String),
    #[error("talk to host agent: {0}")]
    Io(nix::Error),
    #[error("host agent sent a malformed reply: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, AgentError>;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Setup {
        id: String,
        pid: i32,
        limits: Limits,
        network: NetworkMode,
        #[serde(default)]
        ports: Vec<PortMapping>,
        /// Put the container under docker's device rules (`--userns=host`; see
        /// cgroups::device_filter_applies).
        #[serde(default)]
        devices: bool,
    },
    Release {
        id: String,
    },
    /// Write container `id` to `path`, a `--cidfile` of the caller's command line, with the
    /// caller's credentials (see [`super::cidfile`]).
    Cidfile {
        path: std::path::PathBuf,
        id: String,
    },
    /// The tool has finished (everything it made is released, its output flushed) and exits
    /// with `code`: the agent returns it at once instead of waiting for the tool's exit, whose
    /// namespace teardown (a millisecond) then overlaps with the caller going on. No reply.
    Exit {
        code: u8,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Ok {
        address: Option<Address>,
        /// The published ports as bound (random and ranged host ports resolved).
        #[serde(default)]
        ports: Vec<PortMapping>,
    },
    Err(String),
}

/// What the host side set up for a container.
#[derive(Debug, Default)]
pub struct Granted {
    /// The container's bridge address (bridge mode).
    pub address: Option<Address>,
    /// The published ports as bound.
    pub ports: Vec<PortMapping>,
}

#[derive(Default)]
struct Held {
    cgroup: Option<Cgroup>,
    net: Option<Attachment>,
    /// The published-ports proxy (root, bridge).
    proxy: Option<i32>,
}

/// The host-side state: what each container holds.
#[derive(Default)]
pub struct HostSide {
    held: HashMap<String, Held>,
    /// The keeper whose network namespace holds the rootless bridge (unprivileged users).
    keeper: Option<i32>,
}

impl HostSide {
    pub fn new(keeper: Option<i32>) -> HostSide {
        HostSide {
            held: HashMap::new(),
            keeper,
        }
    }

    pub fn handle(&mut self, req: Request) -> Reply {
        match req {
            Request::Setup {
                id,
                pid,
                limits,
                network,
                ports,
                devices,
            } => {
                let mut h = Held::default();
                let r = (|| -> std::result::Result<Granted, String> {
                    if devices {
                        cgroups::filter_devices(pid).map_err(|e| e.to_string())?;
                    }
                    h.cgroup = cgroups::create(&id, &limits, pid).map_err(|e| e.to_string())?;
                    if network == NetworkMode::Bridge {
                        let keeper = self.keeper;
                        let (att, addr) = if nix::unistd::geteuid().is_root() {
                            network::attach_bridge(pid)
                        } else {
                            let k = keeper.ok_or(
                                "rootless bridge networking needs the user namespace keeper, \
                                 which did not start (see the warning above); use --network \
                                 none or host",
                            )?;
                            rootless_net::attach_rootless_bridge(k, pid)
                        }
                        .map_err(|e| e.to_string())?;
                        h.net = Some(att);
                        let (proxy, bound) = ports::start_proxy(&ports, &addr.ip, keeper)
                            .map_err(|e| e.to_string())?;
                        h.proxy = proxy;
                        return Ok(Granted {
                            address: Some(addr),
                            ports: bound,
                        });
                    }
                    Ok(Granted::default())
                })();
                match r {
                    Ok(g) => {
                        self.held.insert(id, h);
                        Reply::Ok {
                            address: g.address,
                            ports: g.ports,
                        }
                    }
                    Err(e) => {
                        release(h);
                        Reply::Err(e)
                    }
                }
            }
            Request::Release { id } => {
                if let Some(h) = self.held.remove(&id) {
                    release(h);
                }
                Reply::Ok {
                    address: None,
                    ports: Vec::new(),
                }
            }
            Request::Cidfile { path, id } => {
                let args: Vec<String> = std::env::args().collect();
                match super::cidfile::write(&path, &id, &super::cidfile::asked(&args)) {
                    Ok(()) => Reply::Ok {
                        address: None,
                        ports: Vec::new(),
                    },
                    Err(e) => Reply::Err(e),
                }
            }
            // In process there is nobody to tell; across the socket `serve` takes it.
            Request::Exit { .. } => {
                self.release_all();
                Reply::Ok {
                    address: None,
                    ports: Vec::new(),
                }
            }
        }
    }

    /// Release everything still held.
    pub fn release_all(&mut self) {
        for (_, h) in self.held.drain() {
            release(h);
        }
    }
}

fn release(h: Held) {
    if let Some(p) = h.proxy {
        ports::stop_proxy(p);
    }
    // Network first: the veth dies with the namespace anyway; the cgroup must be empty.
    if let Some(n) = h.net {
        network::release(n);
    }
    if let Some(c) = h.cgroup {
        c.remove();
    }
}

/// The largest request or reply on the agent's socket.
const MESSAGE_MAX: usize = 64 * 1024;

/// Receive one message of the agent's socket into `buf` (whose capacity is the largest
/// message), replacing its contents; returns its length (0: the other end closed). Read into
/// the vector's spare capacity (`procfs::read_spare`): the agent waits here at every start.
fn recv_message(fd: RawFd, buf: &mut Vec<u8>) -> nix::Result<usize> {
    buf.clear();
    crate::procfs::read_spare(fd, buf)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Serve requests on `fd` until the other side closes it or says it exits; returns with
/// everything released, and the tool's exit code when it sent one ([`Request::Exit`]).
/// `keeper` is the keeper the tool process joined (rootless bridge networking needs it).
pub fn serve(fd: RawFd, keeper: Option<i32>) -> Option<u8> {
    let mut host = HostSide::new(keeper);
    let mut buf = Vec::with_capacity(MESSAGE_MAX);
    loop {
        match recv_message(fd, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => break,
        }
        let reply = match serde_json::from_slice::<Request>(&buf) {
            Ok(Request::Exit { code }) => {
                host.release_all();
                return Some(code);
            }
            Ok(req) => host.handle(req),
            Err(e) => Reply::Err(format!("bad request: {e}")),
        };
        let out = serde_json::to_vec(&reply).unwrap_or_default();
        let _ = nix::sys::socket::send(fd, &out, nix::sys::socket::MsgFlags::MSG_NOSIGNAL);
    }
    host.release_all();
    None
}

/// The tool's end of the agent's socket, shared by every sandbox of the process (it lives in
/// the [`super::context::ToolContext`]).
#[derive(Debug, Clone)]
pub struct AgentSocket {
    fd: RawFd,
    /// One request/reply at a time on the shared socket (boxbuild may run steps from several
    /// threads).
    turn: Arc<Mutex<()>>,
}

impl AgentSocket {
    pub fn new(fd: RawFd) -> AgentSocket {
        AgentSocket {
            fd,
            turn: Arc::default(),
        }
    }
}

impl AgentSocket {
    /// Tell the agent that the tool exits with `code` (see [`Request::Exit`]); sent last, with
    /// nothing expected back.
    ///
    /// Then waits until the agent has gone (its end of the socket closes as it exits; the
    /// parent-death signal may end this process first): this process's own exit tears down
    /// its namespaces, and done at once it would take the CPU the agent is woken on, between
    /// the caller and its exit code. For the same reason it drops to SCHED_IDLE first: woken
    /// by the agent's close, it would otherwise preempt the agent before the agent's exit.
    pub fn exiting(&self, code: u8) {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(out) = serde_json::to_vec(&Request::Exit { code }) else {
            return;
        };
        use nix::sys::socket::{MsgFlags, recv, send};
        // From here on this process only waits and exits: as SCHED_IDLE it never preempts
        // the agent (nor the caller the agent's exit wakes) on the CPU they share, and its
        // teardown runs where a CPU is free. Best effort.
        let idle = libc::sched_param { sched_priority: 0 };
        // SAFETY: a valid sched_param for pid 0 (this thread); lowering one's own policy
        // needs no privilege and changes nothing else.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
        if send(self.fd, &out, MsgFlags::MSG_NOSIGNAL).is_err() {
            return;
        }
        let mut b = [0u8; 1];
        while let Err(nix::Error::EINTR) | Ok(1..) = recv(self.fd, &mut b, MsgFlags::empty()) {}
    }
}

/// One request/reply at a time among the processes sharing the socket: a sandbox calls the
/// agent from a helper forked off the tool, and boxbuild forks one per platform thread, so the
/// threads' mutex (copied into each fork) does not order them. A POSIX record lock on the
/// socket itself does: it belongs to the process, so forks exclude each other, and it goes
/// when the guard drops or the process dies.
struct ProcessTurn(RawFd);

impl ProcessTurn {
    fn take(fd: RawFd) -> Result<ProcessTurn> {
        set_lock(fd, libc::F_WRLCK as i16, true)?;
        Ok(ProcessTurn(fd))
    }
}

impl Drop for ProcessTurn {
    fn drop(&mut self) {
        let _ = set_lock(self.0, libc::F_UNLCK as i16, false);
    }
}

fn set_lock(fd: RawFd, kind: i16, wait: bool) -> Result<()> {
    // SAFETY: an all-zero flock is valid (whole file, from offset 0).
    let mut lk: libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = kind;
    lk.l_whence = libc::SEEK_SET as i16;
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    loop {
        // SAFETY: `lk` is a valid flock that outlives the call; `fd` is the open socket.
        if unsafe { libc::fcntl(fd, cmd, &lk) } == 0 {
            return Ok(());
        }
        match nix::Error::last() {
            nix::Error::EINTR => continue,
            e => return Err(AgentError::Io(e)),
        }
    }
}

/// The sandbox's handle on the host side: the agent across a socket, or in-process (see
/// [`super::context::ToolContext::host_link`]).
pub enum HostLink {
    Agent(AgentSocket),
    Local(Box<HostSide>),
}

impl HostLink {
    pub fn call(&mut self, req: Request) -> Result<Granted> {
        let reply = match self {
            HostLink::Local(h) => h.handle(req),
            HostLink::Agent(AgentSocket { fd, turn }) => {
                let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
                let _process_turn = ProcessTurn::take(*fd)?;
                let out =
                    serde_json::to_vec(&req).map_err(|e| AgentError::Protocol(e.to_string()))?;
                nix::sys::socket::send(*fd, &out, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
                    .map_err(AgentError::Io)?;
                let mut buf = Vec::with_capacity(MESSAGE_MAX);
                while let Err(e) = recv_message(*fd, &mut buf) {
                    if e != nix::Error::EINTR {
                        return Err(AgentError::Io(e));
                    }
                }
                serde_json::from_slice(&buf).map_err(|e| AgentError::Protocol(e.to_string()))?
            }
        };
        match reply {
            Reply::Ok { address, ports } => Ok(Granted { address, ports }),
            Reply::Err(e) => Err(AgentError::Host(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::{AsRawFd, OwnedFd};

    /// The agent's end and the tool's end of a socket like the one `enter_if_needed` makes.
    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn serve_returns_the_exit_code_the_tool_sends_and_stops_serving() {
        let (agent, tool) = pair();
        let server = std::thread::spawn(move || serve(agent.as_raw_fd(), None));
        let sock = AgentSocket::new(tool.as_raw_fd());
        // A request is still answered before the exit.
        let mut link = HostLink::Agent(sock.clone());
        assert!(link.call(Request::Release { id: "none".into() }).is_ok());
        sock.exiting(7);
        assert_eq!(server.join().unwrap(), Some(7));
        drop(tool);
    }

    #[test]
    fn a_forked_process_waits_for_the_turn_another_process_holds() {
        let (_agent, tool) = pair();
        let fd = tool.as_raw_fd();
        let turn = ProcessTurn::take(fd).unwrap();
        // What a second sandbox helper would do while this one waits for its reply: the
        // thread mutex, copied by fork, would let it through; the record lock does not.
        let try_in_child = || {
            // SAFETY: the child only makes one fcntl call and _exits.
            let forked = unsafe { nix::unistd::fork() }.unwrap();
            match forked {
                nix::unistd::ForkResult::Child => {
                    let got = set_lock(fd, libc::F_WRLCK as i16, false).is_ok();
                    // SAFETY: ends the forked child without running the test harness's exit.
                    unsafe { libc::_exit(i32::from(got)) }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    match nix::sys::wait::waitpid(child, None).unwrap() {
                        nix::sys::wait::WaitStatus::Exited(_, code) => code == 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
        };
        assert!(
            !try_in_child(),
            "another process took the turn this one holds"
        );
        drop(turn);
        assert!(
            try_in_child(),
            "the turn stayed taken after its guard dropped"
        );
    }

    #[test]
    fn serve_returns_no_code_when_the_tool_just_closes_its_end() {
        let (agent, tool) = pair();
        drop(tool);
        assert_eq!(serve(agent.as_raw_fd(), None), None);
    }
}
