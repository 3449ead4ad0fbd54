//! `--ssh default[=SOCKET]` and `RUN --mount=type=ssh`: the caller's SSH agent, reachable
//! from one RUN step only, never part of its layer.
//!
//! The host's agent socket is not bound into the step itself: the step runs as container
//! ids, which may not connect to the caller's socket, and OpenSSH's agent refuses any peer
//! whose uid is not its owner's (or root's). So for each `type=ssh` mount the build listens
//! on a socket of its own, in the step's scratch directory outside the layer, owned by the
//! mount's `uid`/`gid` (default 0:0, container root) with its `mode` (default 0600), and
//! binds that into the step at `target` (default `/run/buildkit/ssh_agent.N`, as BuildKit),
//! with `SSH_AUTH_SOCK` pointing at it. Each connection is relayed to the agent over a new
//! connection made as the caller ([`Caller::connect`]), so the agent sees the user it serves.
//! `--ssh ID=KEY[,KEY]` starts an `ssh-agent` of the build's own ([`KeyAgents`]) holding
//! those keys, reached the same way (as this process: that agent runs as it). The relay
//! stops when the step ends; the mount point the sandbox created is removed from
//! the upper directory with the other stubs, and the target is resolved inside the root by
//! the sandbox like every mount target.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::caller::Caller;
use super::engine::Engine;
use super::error::{StepErrorKind, StepResult};
use super::fsview;
use crate::boxfile::Mount;
use crate::run::MountSpec;

/// What `--ssh ID=…` forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSource {
    /// A running agent's socket (`$SSH_AUTH_SOCK` when none is given).
    Agent(PathBuf),
    /// Private key files, loaded into an `ssh-agent` of the build's own ([`KeyAgents`]).
    Keys(Vec<PathBuf>),
}

/// Parse `--ssh ID[=SOCKET|KEY[,KEY…]]`, as buildx: no value is `$SSH_AUTH_SOCK`
/// (`auth_sock`), a socket is an agent, anything else a list of key files.
pub fn parse_ssh(s: &str, auth_sock: Option<&str>) -> Result<(String, SshSource), String> {
    use std::os::unix::fs::FileTypeExt;
    let (id, paths) = s.split_once('=').unwrap_or((s, ""));
    if id.is_empty() {
        return Err(format!(
            "invalid --ssh {s:?}: expected ID[=SOCKET|KEY[,KEY]], e.g. default"
        ));
    }
    if paths.is_empty() {
        let sock = auth_sock.filter(|v| !v.is_empty()).ok_or_else(|| {
            format!(
                "--ssh {s}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); \
                 ssh-add) or give a socket or key file (--ssh {id}=~/.ssh/id_ed25519)"
            )
        })?;
        return match std::fs::metadata(sock) {
            Ok(m) if m.file_type().is_socket() => Ok((id.into(), SshSource::Agent(sock.into()))),
            _ => Err(format!(
                "--ssh {s}: SSH_AUTH_SOCK={sock} is not an agent socket; is the agent running?"
            )),
        };
    }
    let list: Vec<PathBuf> = paths.split(',').map(PathBuf::from).collect();
    let mut keys = vec![];
    for p in &list {
        match std::fs::metadata(p) {
            Ok(m) if m.file_type().is_socket() && list.len() == 1 => {
                return Ok((id.into(), SshSource::Agent(p.clone())));
            }
            Ok(m) if m.is_file() => keys.push(p.clone()),
            Ok(_) => {
                return Err(format!(
                    "--ssh {s}: {} is neither an agent socket nor a key file",
                    p.display()
                ));
            }
            Err(e) => return Err(format!("--ssh {s}: {}: {e}", p.display())),
        }
    }
    Ok((id.into(), SshSource::Keys(keys)))
}

/// The `ssh-agent`s a build starts for `--ssh ID=KEY` (one per id), stopped when dropped.
#[derive(Default)]
pub struct KeyAgents {
    agents: std::collections::BTreeMap<String, (PathBuf, std::process::Child)>,
    _dir: Option<tempfile::TempDir>,
}

impl KeyAgents {
    /// Start an agent for every id of `ssh` given key files, in a new directory in `tmp`,
    /// and load the keys with `ssh-add` (a key with a passphrase fails: there is no prompt).
    pub fn start(
        ssh: &std::collections::BTreeMap<String, SshSource>,
        tmp: &Path,
    ) -> Result<KeyAgents, String> {
        let mut ka = KeyAgents::default();
        for (id, src) in ssh {
            let SshSource::Keys(keys) = src else { continue };
            if ka._dir.is_none() {
                let d = tempfile::Builder::new()
                    .prefix("ssh-")
                    .tempdir_in(tmp)
                    .map_err(|e| {
                        format!("--ssh {id}: create a directory in {}: {e}", tmp.display())
                    })?;
                ka._dir = Some(d);
            }
            let dir = ka._dir.as_ref().expect("made above").path();
            let sock = dir.join(format!("agent-{}", ka.agents.len()));
            let child = std::process::Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&sock)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!("--ssh {id}: start ssh-agent (install openssh-client): {e}")
                })?;
            ka.agents.insert(id.clone(), (sock.clone(), child));
            for _ in 0..500 {
                if sock.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let out = std::process::Command::new("ssh-add")
                .args(keys)
                .env("SSH_AUTH_SOCK", &sock)
                .env_remove("SSH_ASKPASS")
                .env_remove("DISPLAY")
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("--ssh {id}: run ssh-add: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "--ssh {id}: ssh-add could not load the key(s): {} (a key with a passphrase \
                     must be loaded into your own agent: ssh-add KEY, then --ssh {id})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(ka)
    }

    /// The socket of the agent started for `id`.
    pub fn socket(&self, id: &str) -> Option<&Path> {
        self.agents.get(id).map(|(s, _)| s.as_path())
    }
}

impl Drop for KeyAgents {
    fn drop(&mut self) {
        for (_, (_, child)) in self.agents.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A listening socket relaying to an agent while the step runs; stopped when dropped.
pub struct AgentProxy {
    /// Closing it wakes the accept loop, which then ends.
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentProxy {
    /// Listen at `at` and relay every connection to `upstream`, connecting as `caller`.
    pub fn start(at: &Path, upstream: PathBuf, caller: Caller) -> io::Result<AgentProxy> {
        let listener = UnixListener::bind(at)?;
        let (wake_r, wake_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let thread = std::thread::Builder::new()
            .name("ssh-agent-relay".into())
            .spawn(move || accept_loop(listener, wake_r, upstream, caller))?;
        Ok(AgentProxy {
            stop: Some(wake_w),
            thread: Some(thread),
        })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: UnixListener, wake: OwnedFd, upstream: PathBuf, caller: Caller) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        // The write end closed: the step is over.
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let Ok((client, _)) = listener.accept() else {
            continue;
        };
        let up = upstream.clone();
        let _ = std::thread::Builder::new()
            .name("ssh-agent-conn".into())
            .spawn(move || {
                if let Ok(agent) = caller.connect(&up) {
                    relay(client, agent);
                }
            });
    }
}

/// Copy both ways until either side closes.
fn relay(client: UnixStream, agent: UnixStream) {
    let (Ok(c2), Ok(a2)) = (client.try_clone(), agent.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || {
        let _ = io::copy(&mut &a2, &mut &c2);
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut &client, &mut &agent);
    let _ = agent.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}

impl Engine<'_> {
    /// `type=ssh`, the `n`th of its RUN: a relay socket bound at the target (None when the
    /// id was not forwarded and the mount is not `required`), and `SSH_AUTH_SOCK` for the
    /// first one.
    pub(super) fn ssh_mount(
        &self,
        m: &Mount,
        n: usize,
        env: &mut Vec<String>,
        work: &tempfile::TempDir,
    ) -> StepResult<Option<(MountSpec, AgentProxy)>> {
        let id = m.id.clone().unwrap_or_else(|| "default".into());
        let Some(src) = self.opts.ssh.get(&id) else {
            if m.required == Some(true) {
                return Err(StepErrorKind::Invalid(format!(
                    "RUN --mount=type=ssh,id={id},required: no SSH agent forwarded as {id:?} \
                     (pass --ssh {id})"
                )));
            }
            return Ok(None);
        };
        let target = m
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}"));
        let dir = work.path().join(format!("ssh-{n}"));
        std::fs::create_dir(&dir).map_err(fsview::io_err("create", &dir))?;
        let sock = dir.join("S");
        // The caller's agent is reached as the caller; the build's own agent (key files) runs
        // as this process, and OpenSSH's agent accepts only its own uid (or root).
        let (upstream, caller) = match src {
            SshSource::Agent(p) => (p.clone(), super::caller::Caller::of(self.tool)),
            SshSource::Keys(_) => {
                let p = self.key_agents.socket(&id).expect("an agent per key id");
                (p.to_path_buf(), super::caller::Caller::this_process())
            }
        };
        let proxy = AgentProxy::start(&sock, upstream, caller)
            .map_err(fsview::io_err("listen on", &sock))?;
        // The socket is the container's (its root's unless uid=/gid=), as BuildKit's.
        let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
        let policy = self.tool.content_policy();
        policy
            .check_ids("RUN --mount=type=ssh", owner.0, owner.1)
            .map_err(|e| StepErrorKind::Invalid(e.to_string()))?;
        if owner != (0, 0) && policy.ownership == crate::layer::Ownership::Preserve {
            std::os::unix::fs::lchown(&sock, Some(owner.0), Some(owner.1))
                .map_err(fsview::io_err("chown", &sock))?;
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(m.mode.unwrap_or(0o600));
        std::fs::set_permissions(&sock, mode).map_err(fsview::io_err("chmod", &sock))?;
        if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
            env.push(format!("SSH_AUTH_SOCK={target}"));
        }
        let spec = MountSpec::Bind {
            source: sock,
            target: target.into(),
            read_only: false,
        };
        Ok(Some((spec, proxy)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_flags_name_an_agent_socket_or_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let s = sock.to_str().unwrap();
        let agent = |id: &str| (id.to_string(), SshSource::Agent(sock.clone()));
        assert_eq!(parse_ssh("default", Some(s)).unwrap(), agent("default"));
        assert_eq!(parse_ssh(&format!("gh={s}"), None).unwrap(), agent("gh"));
        assert!(
            parse_ssh("default", None)
                .unwrap_err()
                .contains("SSH_AUTH_SOCK")
        );
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "k").unwrap();
        let k = format!("default={},{}", key.display(), key.display());
        assert_eq!(
            parse_ssh(&k, None).unwrap(),
            (
                "default".into(),
                SshSource::Keys(vec![key.clone(), key.clone()])
            )
        );
        assert!(parse_ssh("=x", None).is_err());
        assert!(parse_ssh("default=/nonexistent", None).is_err());
    }
}
