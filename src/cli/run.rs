//! `boxrun` / `box run` arguments.

use anyhow::{Context, bail};
use clap::Args;

use super::store::open_store;
use super::{CmdResult, Global};
use crate::container::{self, RunOptions, config, config::Overrides, detach, mounts, runflags};
use crate::registry::PullOptions;
use crate::run::{self, Limits, NetworkMode, ToolContext, ports::PortMapping};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Print help (docker uses -h for --hostname, so help is --help only)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Run an init inside the container (boxkit's PID 1 always reaps and forwards signals)
    #[arg(long)]
    pub init: bool,
    /// Pull policy
    #[arg(long, value_parser = ["missing", "always", "never"], default_value = "missing")]
    pub pull: String,
    /// Platform to pick when pulling
    #[arg(long)]
    pub platform: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Bind mount a volume (host:ctr[:ro] or name:ctr)
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Attach a filesystem mount (type=bind|tmpfs,…)
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Network mode: none, host or bridge
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Publish a container's port(s) to the host ([ip:][hostPort[-end]:]ctr[-end][/proto];
    /// without hostPort, a random free one)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every exposed port (the image's EXPOSE and --expose) to a random host port
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports (PORT[-END][/PROTO]); published with -P
    #[arg(long = "expose", value_name = "PORT")]
    pub expose: Vec<String>,
    /// Memory limit (e.g. 32m)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit, -1 for unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Tune the container's pids limit
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options: no-new-privileges, seccomp=unconfined, seccomp=PROFILE.json (docker's
    /// format; default: boxkit's profile)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// User namespace mode: "" (remap, the default) or host
    #[arg(long)]
    pub userns: Option<String>,
    /// Pass N additional file descriptors to the container's command: 3 to 2+N, which must be
    /// open (every other descriptor above 2 is closed)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Write the container ID to the file (which must not exist)
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<String>,
    /// Set metadata on the container (shown by inspect, matched by ps --filter label=)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_files: Vec<String>,
    /// Add a line to /etc/hosts (HOST:IP)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Set the DNS servers of the container's resolv.conf
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Set DNS search domains ("." for none)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Set resolv.conf options
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    pub dns_options: Vec<String>,
    /// Seconds `box stop` waits before SIGKILL (default 10)
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Signal `box stop` sends first (default: the image's STOPSIGNAL, else SIGTERM)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Size of /dev/shm (e.g. 128m; default 64m)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Mount a tmpfs (PATH[:OPTIONS], e.g. /run:size=16m,mode=755)
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Set a resource limit (NAME=SOFT[:HARD], e.g. nofile=1024:2048)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Restart policy when the container exits: no, on-failure[:MAX-RETRIES], always or
    /// unless-stopped (kept by the detached container's monitor, no daemon; a foreground run
    /// is handed to one when it ends)
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Not supported: boxkit never gives a container every capability and device
    #[arg(long, hide = true)]
    pub privileged: bool,
    /// Image to run, then the command and its arguments. One list, so that everything after
    /// the image belongs to the container (`boxrun busybox ls -l` passes `-l` to ls), as with
    /// docker.
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

impl RunArgs {
    pub fn image(&self) -> &str {
        self.image_and_command.first().map_or("", String::as_str)
    }
    pub fn command(&self) -> &[String] {
        self.image_and_command.get(1..).unwrap_or_default()
    }

    /// The library's options from the flags (everything that can fail on bad input fails
    /// here, before any container exists).
    /// `--network` and the `-p` mappings, which only the bridge network can publish.
    fn network_and_ports(&self) -> anyhow::Result<(NetworkMode, Vec<PortMapping>)> {
        let network: NetworkMode = self.network.parse()?;
        if (!self.publish.is_empty() || self.publish_all) && network != NetworkMode::Bridge {
            bail!(
                "-p/--publish and -P/--publish-all need --network bridge (the network is {})",
                self.network
            );
        }
        let ports = self
            .publish
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        Ok((network, ports))
    }

    pub fn options(&self, g: &Global) -> anyhow::Result<RunOptions> {
        // The image list accepts hyphens (for the command); the image itself never starts
        // with one, so this is a flag clap did not know.
        if self.image().starts_with('-') {
            bail!("unknown flag: {} (see boxrun --help)", self.image());
        }
        if self.privileged {
            bail!(
                "--privileged is not supported: boxkit does not give a container every \
                 capability, all host devices and no seccomp or masked paths. Ask for what \
                 the command needs instead: --cap-add NAME, --security-opt seccomp=unconfined, \
                 -v /dev/NAME:/dev/NAME for a device node"
            );
        }
        let mut env_files = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("read env file {f}"))?;
            env_files.push((f.clone(), text));
        }
        let mut mounts = Vec::new();
        for v in &self.volumes {
            mounts.push(mounts::parse_volume(v)?);
        }
        for m in &self.mounts {
            mounts.push(mounts::parse_mount(m)?);
        }
        for t in &self.tmpfs {
            mounts.push(runflags::tmpfs(t)?);
        }
        let (network, ports) = self.network_and_ports()?;
        let mut limits = Limits {
            memory: self.memory.as_deref().map(run::parse_size).transpose()?,
            memory_swap: match self.memory_swap.as_deref() {
                Some("-1") => Some(-1),
                Some(v) => Some(run::parse_size(v)? as i64),
                None => None,
            },
            pids: self.pids_limit.filter(|p| *p > 0),
            cpuset_cpus: self.cpuset_cpus.clone(),
            ..Default::default()
        };
        if limits.memory_swap.is_some() && limits.memory.is_none() {
            bail!(
                "--memory-swap needs --memory as well (docker: \"You should always set the Memory limit when using Memoryswap limit\")"
            );
        }
        if let (Some(m), Some(s)) = (limits.memory, limits.memory_swap)
            && s >= 0
            && (s as u64) < m
        {
            bail!("--memory-swap ({s} bytes) must be at least --memory ({m} bytes)");
        }
        super::check_preserved_fds(self.preserve_fds)?;
        let security = container::parse_security_opts(&self.security_opt)?;
        // Compile a custom profile once for the container's capabilities, so that a profile
        // the kernel could not take fails here too.
        if let run::seccomp::Seccomp::Custom(_) = &security.seccomp
            && let Ok(caps) = run::caps::resolve(&self.cap_add, &self.cap_drop)
        {
            security.seccomp.compile(caps)?;
        }
        if let Some(c) = self.cpus {
            if c.is_nan() || c <= 0.0 {
                bail!("--cpus must be a positive number, got {c}");
            }
            limits.set_cpus(c);
        }
        let extras = self.extras()?;
        Ok(RunOptions {
            image: self.image().to_string(),
            pull: PullOptions {
                policy: self.pull.parse().map_err(anyhow::Error::msg)?,
                platform: self.platform.clone(),
                ..Default::default()
            },
            overrides: Overrides {
                entrypoint: self.entrypoint.clone(),
                command: self.command().to_vec(),
                env_files,
                env: self.env.clone(),
                workdir: self.workdir.clone(),
                user: self.user.clone(),
            },
            mounts,
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            network,
            ports,
            publish_all: self.publish_all,
            expose: self
                .expose
                .iter()
                .map(|e| runflags::expose(e))
                .collect::<Result<_, _>>()?,
            limits,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            no_new_privs: security.no_new_privs,
            seccomp: security.seccomp,
            read_only: self.read_only,
            tty: self.tty,
            interactive: self.interactive,
            init: self.init,
            auto_remove: self.rm,
            detach: self.detach,
            userns: self.userns.as_deref().unwrap_or("").parse()?,
            preserve_fds: self.preserve_fds,
            isolation: job_isolation(g),
            extras,
            labels: self.labels()?,
            cidfile: self.cidfile()?,
            stop_timeout: self.stop_timeout,
            stop_signal: self
                .stop_signal
                .as_deref()
                .map(config::parse_signal)
                .transpose()?,
            restart: self.restart_policy()?,
        })
    }

    fn restart_policy(&self) -> anyhow::Result<container::restart::Policy> {
        let restart: container::restart::Policy = self.restart.parse()?;
        if self.rm && restart != container::restart::Policy::No {
            // docker: "Conflicting options: --restart and --rm".
            bail!(
                "conflicting options: --restart and --rm (a removed container cannot be \
                 restarted)"
            );
        }
        Ok(restart)
    }

    fn labels(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let mut files = Vec::new();
        for f in &self.label_files {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read label file {f}"))?;
            files.push((f.clone(), text));
        }
        Ok(runflags::labels(&files, &self.labels)?)
    }

    /// The cid file as an absolute path (the container is recorded from another process),
    /// refused when it exists, as docker does.
    fn cidfile(&self) -> anyhow::Result<Option<std::path::PathBuf>> {
        let Some(f) = &self.cidfile else {
            return Ok(None);
        };
        let p = std::path::absolute(f).with_context(|| format!("--cidfile {f}"))?;
        runflags::check_cidfile(&p)?;
        Ok(Some(p))
    }

    fn extras(&self) -> anyhow::Result<run::spec::Extras> {
        for d in &self.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow::anyhow!("invalid --dns {d:?}: not an IP address"))?;
        }
        for v in self.dns_search.iter().chain(&self.dns_options) {
            if v.is_empty() || v.contains(char::is_whitespace) {
                bail!("invalid --dns-search/--dns-option {v:?}: one word, no spaces");
            }
        }
        let shm_size = self.shm_size.as_deref().map(run::parse_size).transpose()?;
        if shm_size == Some(0) {
            // A tmpfs of size 0 has no limit at all.
            bail!("invalid --shm-size 0: give a size such as 64m");
        }
        Ok(run::spec::Extras {
            hosts: self
                .add_hosts
                .iter()
                .map(|h| runflags::add_host(h))
                .collect::<Result<_, _>>()?,
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_options.clone(),
            shm_size,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| runflags::ulimit(u))
                .collect::<Result<_, _>>()?,
        })
    }
}

pub fn run(g: &Global, a: RunArgs, tool: &ToolContext) -> CmdResult {
    // A foreground container's namespaces and /dev are made on another CPU while this one
    // parses, checks the environment and reads the store (run::prestart): the helper started
    // as the tool entered its namespace. Its flags are checked at the clone (a different
    // isolation only leaves it unused); a detached or host-network run ends it here.
    let pre = match a.network.parse() {
        Ok(crate::run::spec::NetworkMode::Host) | Err(_) => None,
        Ok(_) if a.detach => None,
        Ok(_) => tool.take_prestart(),
    };
    let r = run_inner(g, &a, tool, pre);
    if let Err(e) = &r
        && detach::pending()
    {
        // `boxrun -d` waits for this message; our stderr is /dev/null.
        detach::report_failure(&format!("{e:#}"), i32::from(super::EXIT_TOOL_FAILED));
    }
    r
}

/// Inside a CI job container, the namespaces it allows (probed once per environment, a
/// few milliseconds, and kept beside the store; never on a host, where every one is there). boxrun needs namespaces: without a user
/// namespace it fails as before, saying why.
pub(super) fn job_isolation(g: &Global) -> crate::run::isolation::Isolation {
    use crate::run::isolation::{self, Isolation, IsolationChoice};
    if !crate::run::idmap::in_job_container() {
        return Isolation::FULL;
    }
    let probe = &crate::run::probe::namespaces_in(&probe_file(g));
    match isolation::choose(IsolationChoice::Userns, probe, false) {
        Ok(i) => i,
        Err(_) => Isolation::FULL,
    }
}

/// Where the probe's result is kept between runs: beside the store it is for.
pub(super) fn probe_file(g: &Global) -> std::path::PathBuf {
    g.root
        .clone()
        .unwrap_or_else(crate::store::Store::default_root)
        .join("probe")
}

fn run_inner(
    g: &Global,
    a: &RunArgs,
    tool: &ToolContext,
    pre: Option<crate::run::prestart::Prestart>,
) -> CmdResult {
    let o = a.options(g)?;
    let store = open_store(g)?;
    let code = if o.detach {
        container::run_detached(store, &o, tool)?
    } else {
        container::run_foreground(store, &o, tool, pre)?
    };
    Ok(code.clamp(0, 255) as u8)
}
