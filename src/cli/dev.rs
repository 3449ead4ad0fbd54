//! Hidden developer commands: the bare sandbox and the layer codec, for tests and benchmarks.
//! They are not part of the user-facing interface and may change without notice.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CmdResult;

/// `box sandbox-run`: the sandbox without images, for tests and benchmarks.
#[derive(Args, Debug)]
pub struct SandboxRunArgs {
    /// Plain directory to use as the root filesystem
    #[arg(long, conflicts_with = "lower")]
    pub rootfs: Option<PathBuf>,
    /// Overlay lower directory, bottom layer first (repeat; upper is an ephemeral tmpfs)
    #[arg(long)]
    pub lower: Vec<PathBuf>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// none, host or bridge
    #[arg(long, default_value = "none")]
    pub network: String,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(long)]
    pub userns: Option<String>,
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub init: bool,
    #[arg(long)]
    pub read_only: bool,
    /// Container id (names the cgroup directory)
    #[arg(long)]
    pub id: Option<String>,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn sandbox_run(a: SandboxRunArgs, tool: &crate::run::ToolContext) -> CmdResult {
    use crate::run::{self, MountSpec, RootfsSource, SandboxSpec, UpperDir};
    let rootfs = match a.rootfs {
        Some(d) => RootfsSource::Dir(d),
        None => RootfsSource::Overlay {
            lowerdirs: a.lower,
            upper: UpperDir::Ephemeral,
        },
    };
    let mut s = SandboxSpec::new(rootfs, a.command);
    if let Some(id) = a.id {
        s.id = id;
    }
    s.hostname = a.hostname;
    s.network = a.network.parse()?;
    s.userns = a.userns.as_deref().unwrap_or("").parse()?;
    s.user = a.user;
    s.env = a.env;
    s.cwd = a.workdir;
    s.tty = a.tty;
    s.init = a.init;
    s.read_only = a.read_only;
    s.limits.memory = a.memory.as_deref().map(run::parse_size).transpose()?;
    s.limits.memory_swap = match a.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(v) => Some(run::parse_size(v)? as i64),
        None => None,
    };
    s.limits.pids = a.pids_limit;
    if let Some(c) = a.cpus {
        s.limits.set_cpus(c);
    }
    for v in &a.volumes {
        s.mounts.push(MountSpec::parse_volume(v)?);
    }
    Ok(run::run(&s, tool)?.clamp(0, 255) as u8)
}

#[derive(Subcommand, Debug)]
pub enum LayerCommand {
    /// Pack DIR as a layer; prints `digest diff_id size`
    Pack {
        dir: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// gzip, zstd or none
        #[arg(long, default_value = "gzip")]
        compression: crate::layer::Compression,
        /// gzip level 1-9
        #[arg(long, default_value_t = crate::layer::pack::DEFAULT_GZIP_LEVEL)]
        gzip_level: u32,
    },
}

pub fn layer_command(c: LayerCommand) -> anyhow::Result<()> {
    match c {
        LayerCommand::Pack {
            dir,
            output,
            compression,
            gzip_level,
        } => {
            let out = std::fs::File::create(&output)?;
            let opts = crate::layer::PackOptions {
                compression,
                source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                    .ok()
                    .and_then(|v| v.parse().ok()),
                gzip_level,
                ..Default::default()
            };
            let r = crate::layer::pack_dir(
                &dir,
                std::io::BufWriter::with_capacity(1 << 20, out),
                &opts,
            )?;
            println!("{} {} {}", r.digest, r.diff_id, r.size);
            Ok(())
        }
    }
}
