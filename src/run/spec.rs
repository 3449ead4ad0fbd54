//! The sandbox's input: a plain description of one container run, with no knowledge of
//! Boxfiles, images or registries. Callers (boxbuild's RUN step, boxrun) fill it in; the
//! sandbox turns it into namespaces, mounts, cgroups and an exec.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("invalid size {0:?}: expected a number with an optional b, k, m or g suffix")]
    Size(String),
    #[error("invalid volume {0:?}: expected HOST:CONTAINER[:ro|rw] with absolute paths")]
    Volume(String),
    #[error("invalid network mode {0:?}: expected none, host or bridge")]
    Network(String),
    #[error("invalid user namespace mode {0:?}: expected \"\" (remap) or host")]
    Userns(String),
}

pub type Result<T> = std::result::Result<T, SpecError>;

/// Everything one container run needs.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Short unique name; used for the cgroup directory, the veth name and the default
    /// hostname. [`SandboxSpec::new`] makes a random one.
    pub id: String,
    pub rootfs: RootfsSource,
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries. PATH is added when absent, HOME from the user's passwd entry.
    pub env: Vec<String>,
    /// Working directory inside the container; created (as container root) when missing.
    pub cwd: Option<String>,
    /// `name|uid[:group|gid]`, resolved against the rootfs' /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// Extra supplementary groups (names or gids), as `docker run --group-add`.
    pub extra_groups: Vec<String>,
    /// Defaults to the first 12 characters of the id (the host's name with `--network host`).
    pub hostname: Option<String>,
    pub network: NetworkMode,
    /// Published ports (bridge mode only).
    pub ports: Vec<super::ports::PortMapping>,
    /// Told the published ports as bound (random host ports resolved) once the host side has
    /// bound them, before the command starts; the caller records them.
    pub on_published: Option<PublishedHook>,
    pub mounts: Vec<MountSpec>,
    pub read_only: bool,
    pub limits: Limits,
    /// Capability names with or without `CAP_`, any case; `ALL` is accepted.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privs: bool,
    /// The seccomp profile (`--security-opt seccomp=…`); boxkit's default unless changed.
    pub seccomp: super::seccomp::Seccomp,
    pub tty: bool,
    /// Keep boxkit's init as pid 1 and run the command as its child (`docker run --init`).
    /// Without it the command itself is pid 1.
    pub init: bool,
    pub userns: UsernsMode,
    /// Descriptors 3..3+N of the caller reach the command (podman's `--preserve-fds N`);
    /// every other one above 2 is closed before exec.
    pub preserve_fds: u32,
    /// How strongly the command is isolated: every namespace unless the environment takes
    /// some away (see [`super::isolation`]).
    pub isolation: super::isolation::Isolation,
    /// `docker run`'s /etc and process-limit flags: `--add-host`, `--dns*`, `--shm-size`,
    /// `--ulimit`.
    pub extras: Extras,
    /// The command's stdin, stdout and stderr; None (the default): the caller's own 0, 1
    /// and 2, inherited. boxbuild's RUN gives each step its own pipe, so that steps in
    /// several threads never touch the process's descriptors.
    pub stdio: Option<Stdio>,
}

/// Descriptors the container gets as 0, 1 and 2 (see [`SandboxSpec::stdio`]). They are the
/// caller's, kept open by it until [`super::run`] returns; close-on-exec is fine (the
/// container's copies are made inheritable).
#[derive(Debug, Clone)]
pub struct Stdio {
    pub stdin: std::sync::Arc<std::os::fd::OwnedFd>,
    pub stdout: std::sync::Arc<std::os::fd::OwnedFd>,
    pub stderr: std::sync::Arc<std::os::fd::OwnedFd>,
}

impl Stdio {
    /// Make these the calling process's 0, 1 and 2 (in the cloned child, before exec).
    pub fn install(&self) -> nix::Result<()> {
        // Each source is above 2 or already in its place, so no dup2 below overwrites a
        // source still to be copied.
        nix::unistd::dup2_stdin(&*self.stdin)?;
        nix::unistd::dup2_stdout(&*self.stdout)?;
        nix::unistd::dup2_stderr(&*self.stderr)?;
        Ok(())
    }
}

/// See [`SandboxSpec::extras`]. Empty: the defaults (host's resolv.conf, a 64 MiB /dev/shm,
/// the caller's rlimits). Serializable: a container's launch record keeps it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Extras {
    /// Lines added to /etc/hosts, `IP\tHOST`.
    pub hosts: Vec<String>,
    /// Replace resolv.conf's `nameserver`, `search` and `options` lines when not empty.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// Size of the /dev/shm tmpfs in bytes.
    pub shm_size: Option<u64>,
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit`: an RLIMIT_* resource and its limits (RLIM_INFINITY for unlimited).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

impl Extras {
    /// /etc/hosts: `base` plus the added hosts.
    pub fn hosts(&self, mut base: String) -> String {
        for h in &self.hosts {
            base.push_str(h);
            base.push('\n');
        }
        base
    }

    /// resolv.conf: `base` with the kinds of line given by a flag replaced by the flag's.
    pub fn resolv_conf(&self, base: &str) -> String {
        let kinds = [
            ("nameserver", &self.dns, false),
            ("search", &self.dns_search, true),
            ("options", &self.dns_options, true),
        ];
        let mut out: String = base
            .lines()
            .filter(|l| {
                let w = l.split_whitespace().next().unwrap_or("");
                !kinds.iter().any(|(k, v, _)| !v.is_empty() && w == *k)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for (k, v, one_line) in kinds {
            if v.is_empty() {
                continue;
            }
            // docker: `--dns-search .` means no search domains.
            let v: Vec<&str> = v.iter().map(String::as_str).filter(|x| *x != ".").collect();
            if one_line && !v.is_empty() {
                out.push_str(&format!("{k} {}\n", v.join(" ")));
            } else if !one_line {
                for x in v {
                    out.push_str(&format!("{k} {x}\n"));
                }
            }
        }
        out
    }

    /// Set the rlimits (in the container's pid 1, before exec; inherited by its children).
    pub fn apply_ulimits(&self) -> std::result::Result<(), String> {
        for u in &self.ulimits {
            let lim = libc::rlimit {
                rlim_cur: u.soft,
                rlim_max: u.hard,
            };
            // SAFETY: setrlimit reads the rlimit struct, which lives across the call.
            if unsafe { libc::setrlimit(u.resource as _, &lim) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!(
                    "--ulimit {}={}:{}: {e} (a hard limit cannot be raised above the caller's \
                     from a user namespace; lower it, or raise it for the user that runs boxkit)",
                    u.name, u.soft, u.hard
                ));
            }
        }
        Ok(())
    }
}

/// See [`SandboxSpec::on_published`]. Runs in the supervisor, which may be a forked copy of
/// the caller: it must record what it is told somewhere other processes see (a file).
#[derive(Clone)]
pub struct PublishedHook(pub std::sync::Arc<PublishedFn>);

pub type PublishedFn = dyn Fn(&[super::ports::PortMapping]) + Send + Sync;

impl std::fmt::Debug for PublishedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishedHook")
    }
}

/// Where the container's `/` comes from.
#[derive(Debug, Clone)]
pub enum RootfsSource {
    /// A plain directory, bind-mounted as the root (writes go to the directory itself).
    Dir(PathBuf),
    /// Overlay of unpacked layers. `lowerdirs` are in OCI manifest order: the BOTTOM layer
    /// FIRST, the topmost LAST.
    Overlay {
        lowerdirs: Vec<PathBuf>,
        upper: UpperDir,
    },
}

/// Where an overlay rootfs keeps its writes.
#[derive(Debug, Clone)]
pub enum UpperDir {
    /// A tmpfs private to the container's mount namespace: it vanishes with the container.
    Ephemeral,
    /// Caller-owned directories (a build step diffs `upper` afterwards). Both must be on the
    /// same filesystem and `work` must be empty.
    Dir { upper: PathBuf, work: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum NetworkMode {
    /// Own network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Own namespace joined to the host: bridge `box0` + veth + NAT as root, pasta rootless.
    Bridge,
}

impl std::str::FromStr for NetworkMode {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            "bridge" | "default" | "pasta" => Ok(Self::Bridge),
            _ => Err(SpecError::Network(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsernsMode {
    /// Container root is mapped to an unprivileged host id (the tool's user namespace).
    #[default]
    Remap,
    /// No id remapping: container root is host root (root only).
    Host,
}

impl std::str::FromStr for UsernsMode {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "remap" | "private" => Ok(Self::Remap),
            "host" => Ok(Self::Host),
            _ => Err(SpecError::Userns(s.to_string())),
        }
    }
}

/// Serializable (a container's launch record keeps its mounts): `{"type": "bind", …}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
    Tmpfs {
        target: PathBuf,
        /// Mount data such as `size=64m,mode=1777`.
        options: Option<String>,
    },
}

impl MountSpec {
    /// Parse docker's `-v HOST:CONTAINER[:ro|rw]` (bind form only).
    pub fn parse_volume(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [a, b] => (*a, *b, false),
            [a, b, "ro"] => (*a, *b, true),
            [a, b, "rw"] => (*a, *b, false),
            _ => return Err(SpecError::Volume(s.to_string())),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(SpecError::Volume(s.to_string()));
        }
        Ok(MountSpec::Bind {
            source: src.into(),
            target: dst.into(),
            read_only: ro,
        })
    }
}

/// Resource limits, applied through cgroups. `None` means "no limit asked".
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    /// Memory plus swap in bytes; -1 for unlimited swap. Unset with `memory` set means twice
    /// `memory`, as docker does.
    pub memory_swap: Option<i64>,
    pub pids: Option<i64>,
    /// CFS quota and period in microseconds (`--cpus 1.5` = 150000/100000).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// `--cpus N` as quota/period.
    pub fn set_cpus(&mut self, cpus: f64) {
        let period = 100_000u64;
        self.cpu_period = Some(period);
        self.cpu_quota = Some((cpus * period as f64).round() as i64);
    }
}

/// Parse docker's sizes: `32m`, `1g`, `512k`, `1048576`, `64mb`.
pub fn parse_size(s: &str) -> Result<u64> {
    crate::limits::parse_size(s).ok_or_else(|| SpecError::Size(s.to_string()))
}

impl SandboxSpec {
    /// A spec with defaults: network none, remapped user namespace, random id.
    pub fn new(rootfs: RootfsSource, argv: Vec<String>) -> Self {
        SandboxSpec {
            id: random_id(),
            rootfs,
            argv,
            env: Vec::new(),
            cwd: None,
            user: None,
            extra_groups: Vec::new(),
            hostname: None,
            network: NetworkMode::None,
            ports: Vec::new(),
            on_published: None,
            mounts: Vec::new(),
            read_only: false,
            limits: Limits::default(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            no_new_privs: false,
            seccomp: super::seccomp::Seccomp::Default,
            tty: false,
            init: false,
            userns: UsernsMode::Remap,
            preserve_fds: 0,
            isolation: super::isolation::Isolation::FULL,
            extras: Extras::default(),
            stdio: None,
        }
    }
}

/// 16 hex characters from the kernel's random pool.
pub fn random_id() -> String {
    crate::digest::random_hex(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_flags_replace_only_their_kind_of_resolv_conf_line() {
        let host = "# host\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch lan\noptions edns0\n";
        let e = Extras {
            dns: vec!["192.0.2.1".into()],
            dns_search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            e.resolv_conf(host),
            "# host\noptions edns0\nnameserver 192.0.2.1\n"
        );
        assert_eq!(Extras::default().resolv_conf(host), host);
        let e = Extras {
            dns_options: vec!["ndots:2".into(), "timeout:1".into()],
            hosts: vec!["10.1.1.1\tdb".into()],
            ..Default::default()
        };
        assert!(
            e.resolv_conf(host)
                .ends_with("search lan\noptions ndots:2 timeout:1\n")
        );
        assert_eq!(e.hosts("a\n".into()), "a\n10.1.1.1\tdb\n");
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn volumes_parse() {
        assert_eq!(
            MountSpec::parse_volume("/a:/b:ro").unwrap(),
            MountSpec::Bind {
                source: "/a".into(),
                target: "/b".into(),
                read_only: true
            }
        );
        assert!(MountSpec::parse_volume("a:/b").is_err());
        assert!(MountSpec::parse_volume("/a").is_err());
    }
}
