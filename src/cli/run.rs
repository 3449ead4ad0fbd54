//! `boxrun` / `box run` arguments.

use clap::Args;

use super::{CmdResult, Global, not_implemented};

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
    /// Publish a container's port to the host (host:ctr[/proto])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
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
    /// Security options (no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// User namespace mode: "" (remap, the default) or host
    #[arg(long)]
    pub userns: Option<String>,
    /// Image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(_g: &Global, _a: RunArgs) -> CmdResult {
    Err(not_implemented("boxrun"))
}
