//! The rootless bridge: the user-mode network helper of the keeper's network namespace, and
//! attaching a container to the bridge inside it.
//!
//! Rootless `bridge` is the bridge of [`super::network`] one level down, as rootless docker
//! has it: `box0`, its NAT rule and the leases live in the network namespace of the user's
//! keeper ([`super::keeper`]), and pasta (passt; else slirp4netns) connects that namespace to the
//! host through a tap device from user space — started once, when the first rootless bridge
//! container needs it, and kept for as long as the keeper lives. A run pays for a veth pair,
//! not for starting pasta, and rootless containers reach each other by address.
//!
//! Host loopback. pasta by default maps the namespace's gateway address to the host's
//! loopback, and slirp4netns offers the host's loopback at 10.0.2.2 unless told otherwise:
//! either would let every rootless container reach every service bound to the host's
//! 127.0.0.1 (databases, admin ports, other users' dev servers), which a rootful container
//! behind `box0` cannot (the kernel drops 127.0.0.0/8 arriving on another interface). So the
//! helper runs with `--no-map-gw` (pasta) or `--disable-host-loopback` (slirp4netns) unless
//! `BOX_ROOTLESS_ALLOW_HOST_LOOPBACK=true` asks otherwise, as rootless docker's
//! `DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false` and podman's
//! `slirp4netns:allow_host_loopback=true` do. One helper serves all the keeper's containers,
//! so the setting belongs to the keeper, not to one run: it is recorded with the helper, a run
//! asking for the other setting restarts the helper when no bridged container uses it, and
//! fails with an explanation when some do.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::network::{
    Address, Attachment, HostLoopback, Lock, NetworkError, Result, ensure_bridge, find_tool,
    lease_and_link, leases, run, state_dir,
};

/// Bridge mode rootless: the same bridge, inside the keeper's network namespace, which pasta
/// (or slirp4netns) connects to the host once. A short-lived child joins the keeper's user
/// and network namespaces (the agent itself must stay outside) and makes the veth pair; its
/// answer comes back on a pipe.
pub fn attach_rootless_bridge(keeper: i32, pid: i32) -> Result<(Attachment, Address)> {
    let dir = state_dir()?;
    let loopback = HostLoopback::from_env()?;
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetworkError::Command {
            cmd: "pipe".into(),
            cause: e.to_string(),
        })?;
    // The agent is single-threaded, so the child may change its user namespace.
    // SAFETY: single-threaded caller (the agent), so the child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(|e| NetworkError::Command {
        cmd: "fork".into(),
        cause: e.to_string(),
    })? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let res = (|| -> Result<(Attachment, Address)> {
                let _lock = Lock::take(&dir)?;
                ensure_user_mode_net(&dir, keeper, loopback)?;
                super::nsenter::join_net(keeper).map_err(|e| NetworkError::Command {
                    cmd: format!("join the network namespace of keeper {keeper}"),
                    cause: e.to_string(),
                })?;
                ensure_bridge(&dir)?;
                lease_and_link(&dir, pid)
            })();
            let msg = match res {
                Ok((Attachment { lease }, a)) => {
                    format!("ok {} {} {}", a.ip, a.gateway, lease.display())
                }
                Err(e) => format!("err {e}"),
            };
            let mut f = std::fs::File::from(w);
            let _ = f.write_all(msg.as_bytes());
            drop(f);
            // Child path after fork: end without running the agent's exit handlers.
            // SAFETY: _exit only ends this process.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut msg);
            let _ = nix::sys::wait::waitpid(child, None);
            let fail = |cause: String| NetworkError::Command {
                cmd: "rootless bridge".into(),
                cause,
            };
            if let Some(e) = msg.strip_prefix("err ") {
                return Err(fail(e.to_string()));
            }
            let mut f = msg.strip_prefix("ok ").unwrap_or("").splitn(3, ' ');
            match (f.next(), f.next(), f.next()) {
                (Some(ip), Some(gw), Some(lease)) => Ok((
                    Attachment {
                        lease: lease.into(),
                    },
                    Address {
                        ip: ip.into(),
                        gateway: gw.into(),
                    },
                )),
                _ => Err(fail(format!(
                    "the helper ended without an answer ({msg:?})"
                ))),
            }
        }
    }
}

/// The state file naming the keeper network namespace's inode and its pasta/slirp4netns pid.
const USER_MODE_NET: &str = "user-mode-net";

/// Stop the user-mode network helper recorded under `run_dir/net/` when it is still the
/// caller's pasta or slirp4netns. The keeper calls it when it is stopped or replaced: pasta
/// (Debian 12's) does not notice that the process holding its namespace exited.
pub fn stop_user_mode_net(run_dir: &Path) {
    let state = run_dir.join("net").join(USER_MODE_NET);
    let pid = read_state(&state).map(|s| s.pid);
    let _ = std::fs::remove_file(&state);
    if let Some(pid) = pid {
        stop_helper(pid);
    }
}

/// What the state file records: the namespace's inode, the helper's pid, and its host
/// loopback setting (None in files written before the setting existed).
struct UserModeNet {
    ino: u64,
    pid: i32,
    loopback: Option<HostLoopback>,
}

fn read_state(state: &Path) -> Option<UserModeNet> {
    let s = std::fs::read_to_string(state).ok()?;
    let mut w = s.split_whitespace();
    let ino = w.next()?.parse().ok()?;
    let pid = w.next()?.parse().ok().filter(|p| *p > 0)?;
    let loopback = match w.next() {
        Some(x) if x == HostLoopback::Allowed.word() => Some(HostLoopback::Allowed),
        Some(x) if x == HostLoopback::Denied.word() => Some(HostLoopback::Denied),
        _ => None,
    };
    Some(UserModeNet { ino, pid, loopback })
}

/// The comm of `pid` when it is the caller's pasta or slirp4netns.
fn helper_comm(pid: i32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata(format!("/proc/{pid}"))
        .is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let helper = ["pasta", "passt", "slirp4netns"]
        .iter()
        .any(|n| comm.starts_with(n));
    (ours && helper).then_some(comm)
}

/// SIGTERM the helper `pid` if it is ours, and wait (up to 2 s) until it has gone, so a new
/// one can configure the namespace.
fn stop_helper(pid: i32) {
    if helper_comm(pid).is_none() {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while helper_comm(pid).is_some() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The keeper's network namespace connected to the host by pasta (else slirp4netns), once
/// per namespace and host loopback setting: a state file records which namespace (by inode),
/// which helper pid and which setting. A helper with the other setting is replaced when no
/// bridged container uses it (the caller holds the lock, so none can attach meanwhile).
fn ensure_user_mode_net(dir: &Path, keeper: i32, loopback: HostLoopback) -> Result<()> {
    let netns = format!("/proc/{keeper}/ns/net");
    let userns = format!("/proc/{keeper}/ns/user");
    let ino = std::fs::metadata(&netns)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .map_err(|cause| NetworkError::Io {
            path: netns.clone().into(),
            cause,
        })?;
    let state = dir.join(USER_MODE_NET);
    if let Some(rec) = read_state(&state)
        && rec.ino == ino
        && Path::new(&format!("/proc/{}", rec.pid)).exists()
    {
        // Before the setting was recorded, pasta always mapped the gateway to the host's
        // loopback and slirp4netns never offered it.
        let have = rec.loopback.unwrap_or_else(|| {
            if helper_comm(rec.pid).is_some_and(|c| c.starts_with("slirp4netns")) {
                HostLoopback::Denied
            } else {
                HostLoopback::Allowed
            }
        });
        if have == loopback {
            return Ok(());
        }
        let containers = live_leases(dir);
        if containers > 0 {
            return Err(NetworkError::HostLoopbackInUse {
                have,
                want: loopback,
                containers,
            });
        }
        let _ = std::fs::remove_file(&state);
        stop_helper(rec.pid);
    }
    let helper_pid = if let Some(pasta) = find_tool("pasta") {
        let pidfile = dir.join("pasta.pid");
        let pf = pidfile.to_string_lossy();
        // No port forwarding by pasta: published ports go through boxkit's proxy
        // (super::ports), which reaches the containers' bridge addresses.
        let mut args = vec![
            "--config-net",
            "--quiet",
            "--pid",
            &pf,
            "--netns",
            &netns,
            "--userns",
            &userns,
            "-t",
            "none",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
        ];
        if loopback == HostLoopback::Denied {
            args.push("--no-map-gw");
        }
        run(&pasta.to_string_lossy(), &args, None)?;
        let p = std::fs::read_to_string(&pidfile).unwrap_or_default();
        let _ = std::fs::remove_file(&pidfile);
        p.trim().to_string()
    } else if let Some(slirp) = find_tool("slirp4netns") {
        start_slirp4netns(&slirp, &netns, &userns, loopback)?.to_string()
    } else {
        return Err(NetworkError::NoUserModeNet);
    };
    std::fs::write(&state, format!("{ino} {helper_pid} {}\n", loopback.word()))
        .map_err(|cause| NetworkError::Io { path: state, cause })
}

/// Leases in `dir` whose container still runs (the bridged containers of this namespace).
fn live_leases(dir: &Path) -> usize {
    leases(dir)
        .iter()
        .filter(|(_, p)| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|o| o.trim().parse::<i32>().ok())
                .is_some_and(|o| Path::new(&format!("/proc/{o}")).exists())
        })
        .count()
}

/// slirp4netns in its own session (it serves the namespace for as long as it lives); returns
/// once it reports the tap device configured.
fn start_slirp4netns(
    slirp: &Path,
    netns: &str,
    userns: &str,
    loopback: HostLoopback,
) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let fail = |cause: String| NetworkError::Command {
        cmd: "slirp4netns".into(),
        cause,
    };
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(e.to_string()))?;
    let wfd = std::os::fd::AsRawFd::as_raw_fd(&w);
    let mut c = Command::new(slirp);
    c.args(["--configure", "--mtu=65520"]);
    if loopback == HostLoopback::Denied {
        c.arg("--disable-host-loopback");
    }
    c.args([
        &format!("--ready-fd={wfd}"),
        &format!("--userns-path={userns}"),
        "--netns-type=path",
        netns,
        "tap0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: the hook runs in the forked child before exec and only makes
    // async-signal-safe calls (setsid, fcntl) that allocate nothing.
    unsafe {
        c.pre_exec(move || {
            libc::setsid();
            // Keep the ready pipe open across exec.
            let fl = libc::fcntl(wfd, libc::F_GETFD);
            libc::fcntl(wfd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let child = c.spawn().map_err(|e| fail(e.to_string()))?;
    drop(w);
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut std::fs::File::from(r), &mut b) {
        Ok(1) if b[0] == b'1' => Ok(child.id()),
        _ => Err(fail("exited before configuring the namespace".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_records_the_setting_and_reads_old_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, "12 34 host-loopback=deny\n").unwrap();
        let s = read_state(&p).unwrap();
        assert_eq!(
            (s.ino, s.pid, s.loopback),
            (12, 34, Some(HostLoopback::Denied))
        );
        std::fs::write(&p, "12 34\n").unwrap();
        assert_eq!(read_state(&p).unwrap().loopback, None);
    }
}
