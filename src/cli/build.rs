//! `boxbuild` / `box build` arguments.

use std::path::PathBuf;

use clap::Args;

use super::{CmdResult, Global, not_implemented};

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Name and optionally a tag (NAME[:TAG]); may be given more than once
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Name of the Boxfile (default: CONTEXT/Boxfile, Dockerfile or Containerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build-time variable
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// Build up to this stage
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Pull policy for base images
    #[arg(long, value_parser = ["missing", "always", "never"], default_value = "missing",
          num_args = 0..=1, default_missing_value = "always", require_equals = true)]
    pub pull: String,
    /// Target platform, e.g. linux/amd64
    #[arg(long)]
    pub platform: Option<String>,
    /// Set a label on the image
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Push the image after building
    #[arg(long)]
    pub push: bool,
    /// Progress output: auto, plain or quiet
    #[arg(long, value_parser = ["auto", "plain", "quiet", "tty"], default_value = "auto")]
    pub progress: String,
    /// Suppress build output and print the image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Network mode for RUN steps
    #[arg(long, value_parser = ["host", "none", "default"], default_value = "host")]
    pub network: String,
    /// Secret to expose to RUN --mount=type=secret (id=…,src=…)
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    pub secrets: Vec<String>,
    /// Image format to write
    #[arg(long, value_parser = ["oci", "docker"], default_value = "oci")]
    pub format: String,
    /// Import build cache from a registry reference
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<String>,
    /// Export build cache to a registry reference
    #[arg(long = "cache-to", value_name = "REF")]
    pub cache_to: Vec<String>,
    /// Parse and lint the Boxfile without building (`--check=strict` fails on warnings too)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = ["true", "strict"])]
    pub check: Option<String>,
    /// Build context directory, or `-` to read the Boxfile from stdin with no context
    #[arg(default_value = ".")]
    pub context: String,
}

pub fn run(_g: &Global, a: BuildArgs) -> CmdResult {
    if let Some(mode) = &a.check {
        // Parse and lint only: no pulls, no context reads beyond the Boxfile.
        let report = crate::boxfile::check::check(&a.context, a.file.as_deref())?;
        eprint!("{}", report.render());
        return Ok(report.exit_code(mode == "strict"));
    }
    Err(not_implemented("boxbuild"))
}
