//! `boxbuild` / `box build` arguments.

use std::path::PathBuf;

use clap::Args;

use super::{CmdResult, Global};

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
    /// Target platform, e.g. linux/amd64; a comma-separated list (or the flag repeated)
    /// builds each platform and tags one image index over them
    #[arg(long, value_name = "OS/ARCH[/VARIANT][,…]")]
    pub platform: Vec<String>,
    /// Set a label on the image
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Output destination: type=local,dest=DIR (or just DIR), type=tar,dest=FILE (`-`:
    /// stdout), type=image; without it the image is stored
    #[arg(short = 'o', long = "output", value_name = "TYPE=…,DEST=…")]
    pub outputs: Vec<String>,
    /// Store the image as well (shorthand for --output=type=docker)
    #[arg(long)]
    pub load: bool,
    /// Add a custom host-to-IP mapping to RUN steps' /etc/hosts (HOST:IP)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Additional named context for FROM and --from: NAME=DIR or NAME=docker-image://REF
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// SSH agent socket or keys to expose to RUN --mount=type=ssh: default (SSH_AUTH_SOCK),
    /// ID=SOCKET or ID=KEY[,KEY]
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY[,KEY]]")]
    pub ssh: Vec<String>,
    /// Write the build's result (image digest, config digest, names) to this JSON file
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Push the image after building
    #[arg(long)]
    pub push: bool,
    /// With --push: compress the built layers with gzip, zstd or none (buildah push's flag)
    #[arg(long, value_name = "FORMAT", default_value = "gzip")]
    pub compression_format: crate::layer::Compression,
    /// Progress output: auto (tty on a terminal, else plain), plain, tty (a live view),
    /// quiet (none is the same) or rawjson (JSON lines, BuildKit's shape)
    #[arg(long, value_parser = ["auto", "plain", "tty", "quiet", "none", "rawjson"],
          default_value = "auto", env = "BUILDKIT_PROGRESS")]
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
    /// Memory limit of RUN steps (e.g. 512m)
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit of RUN steps (-1: unlimited swap)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CFS quota of RUN steps in microseconds per --cpu-period
    #[arg(long, value_name = "US")]
    pub cpu_quota: Option<i64>,
    /// CFS period of RUN steps in microseconds (default 100000)
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPUs RUN steps may use (0-3, 0,1)
    #[arg(long, value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Isolation of RUN steps: auto (the strongest this environment allows), userns, chroot
    /// (root in a job container without user namespaces) or none
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub isolation: crate::run::isolation::IsolationChoice,
    /// How RUN steps' layers are made: auto, overlay, fuse (fuse-overlayfs) or copy (no mounts)
    #[arg(long, value_name = "NAME", default_value = "auto")]
    pub snapshotter: crate::build::backends::SnapshotterChoice,
    /// Build context directory, or `-` to read the Boxfile from stdin with no context
    #[arg(default_value = ".")]
    pub context: String,
}

pub fn run(g: &Global, a: BuildArgs, tool: &crate::run::ToolContext) -> CmdResult {
    let start = std::time::Instant::now();
    if let Some(mode) = &a.check {
        // Parse and lint only: no pulls, no context reads beyond the Boxfile.
        let report = crate::boxfile::check::check(&a.context, a.file.as_deref())?;
        eprint!("{}", report.render());
        return Ok(report.exit_code(mode == "strict"));
    }
    let mut opts = options(&a)?;
    let store = crate::store::Store::open(
        g.root
            .clone()
            .unwrap_or_else(crate::store::Store::default_root),
    )?;
    // Probed here, while the process is still single-threaded.
    opts.backends = crate::build::backends::choose(
        a.isolation,
        a.snapshotter,
        crate::run::probe::cached_in(Some(&store.root().join("probe"))),
        nix::unistd::geteuid().is_root(),
        &store.tmp_dir(),
    )?;
    if opts.platforms.len() > 1 {
        return run_multi(&a, &store, &opts, tool, start);
    }
    let quiet = opts.output == crate::build::OutputMode::Quiet;
    // rawjson keeps stderr to JSON lines until the build's end (an error is still printed).
    let json = opts.output == crate::build::OutputMode::RawJson;
    match crate::build::build(&store, &opts, tool) {
        Ok(r) => {
            if !quiet && !json {
                eprintln!(
                    "built in {:.2}s ({} steps run, {} cached)",
                    start.elapsed().as_secs_f64(),
                    r.executed,
                    r.cached
                );
                for t in &r.names {
                    eprintln!("Successfully tagged {t}");
                }
            }
            if a.push || pushes(&opts) {
                for t in &r.names {
                    let progress = push_progress(opts.output);
                    let po = crate::registry::PushOptions {
                        progress,
                        authfile: None,
                        compression: a.compression_format,
                    };
                    crate::registry::push_with(&store, t, None, &po)
                        .map_err(|e| anyhow::anyhow!("push {t}: {e}"))?;
                }
            }
            if !tar_on_stdout(&opts) {
                println!("{}", r.image_id);
            }
            Ok(0)
        }
        Err(e) => {
            // docker build exits 1 when the build fails.
            eprintln!("boxbuild: error: {e}");
            Ok(1)
        }
    }
}

/// A build for several platforms: one index, its digest printed as the build's ID (as
/// buildx's `--iidfile` and `-q` give it), each platform's image ID on stderr.
fn run_multi(
    a: &BuildArgs,
    store: &crate::store::Store,
    opts: &crate::build::BuildOptions,
    tool: &crate::run::ToolContext,
    start: std::time::Instant,
) -> CmdResult {
    let chatty = !matches!(
        opts.output,
        crate::build::OutputMode::Quiet | crate::build::OutputMode::RawJson
    );
    let r = match crate::build::multi::build(store, opts, &opts.platforms, tool) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boxbuild: error: {e}");
            return Ok(1);
        }
    };
    if chatty {
        eprintln!(
            "built {} platforms in {:.2}s ({} steps run, {} cached)",
            r.platforms.len(),
            start.elapsed().as_secs_f64(),
            r.executed,
            r.cached
        );
        for (p, b) in &r.platforms {
            eprintln!("{p}: image {} (manifest {})", b.image_id, b.manifest.digest);
        }
        let kind = if opts.format == crate::build::ImageFormat::Docker {
            "manifest list"
        } else {
            "index"
        };
        eprintln!("{kind} {}", r.index.digest);
        for t in &r.names {
            eprintln!("Successfully tagged {t}");
        }
    }
    if a.push || pushes(opts) {
        for t in &r.names {
            let po = crate::registry::PushOptions {
                progress: push_progress(opts.output),
                authfile: None,
                compression: a.compression_format,
            };
            crate::registry::push_with(store, t, None, &po)
                .map_err(|e| anyhow::anyhow!("push {t}: {e}"))?;
        }
    }
    println!("{}", r.index.digest);
    Ok(0)
}

/// How `--push` after the build reports: bars after the TTY view, plain lines after plain
/// output, nothing in quiet and rawjson modes.
fn push_progress(mode: crate::build::OutputMode) -> crate::registry::Progress {
    use crate::build::OutputMode;
    use crate::registry::Progress;
    match mode {
        OutputMode::Quiet | OutputMode::RawJson => Progress::Quiet,
        OutputMode::Tty => Progress::Auto,
        OutputMode::Plain => Progress::Plain,
    }
}

/// `--progress` and `-q`: auto is the TTY view when stderr is a terminal, else plain.
fn output_mode(a: &BuildArgs) -> crate::build::OutputMode {
    use crate::build::OutputMode;
    use std::io::IsTerminal;
    match a.progress.as_str() {
        _ if a.quiet => OutputMode::Quiet,
        "quiet" | "none" => OutputMode::Quiet,
        "tty" => OutputMode::Tty,
        "rawjson" => OutputMode::RawJson,
        "auto" if std::io::stderr().is_terminal() => OutputMode::Tty,
        _ => OutputMode::Plain,
    }
}

/// Whether an `-o type=registry` (or `push=true`) output asks for a push.
fn pushes(o: &crate::build::BuildOptions) -> bool {
    use crate::build::export::Export;
    o.outputs
        .iter()
        .any(|e| matches!(e, Export::Image { push: true, .. }))
}

/// The `-o -` output.
const STDOUT_TAR: crate::build::export::Export =
    crate::build::export::Export::Tar(crate::build::export::TarDest::Stdout);

/// Whether stdout carries the `-o -` tar stream (so nothing else may be printed there).
fn tar_on_stdout(o: &crate::build::BuildOptions) -> bool {
    o.outputs.contains(&STDOUT_TAR)
}

/// `--cache-from`/`--cache-to` take a reference, or BuildKit's `type=registry,ref=REF`.
fn cache_ref(s: &str) -> String {
    s.split(',')
        .find_map(|p| p.strip_prefix("ref="))
        .unwrap_or(s)
        .to_string()
}

/// `--memory` and friends: the cgroup limits of RUN steps.
fn build_limits(a: &BuildArgs) -> anyhow::Result<crate::run::Limits> {
    use crate::run::spec::parse_size;
    let mut l = crate::run::Limits::default();
    if let Some(m) = &a.memory {
        l.memory = Some(parse_size(m)?);
    }
    if let Some(s) = &a.memory_swap {
        l.memory_swap = Some(if s == "-1" { -1 } else { parse_size(s)? as i64 });
    }
    if let Some(q) = a.cpu_quota {
        l.cpu_quota = Some(q);
        l.cpu_period = Some(a.cpu_period.unwrap_or(100_000));
    }
    l.cpuset_cpus = a.cpuset_cpus.clone();
    Ok(l)
}

/// The library's build options from the flags.
fn options(a: &BuildArgs) -> anyhow::Result<crate::build::BuildOptions> {
    use crate::build::{BoxfileInput, BuildOptions, ImageFormat};
    use anyhow::Context as _;
    let (context, boxfile) = if a.context == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("read the Boxfile from stdin")?;
        (
            None,
            BoxfileInput {
                path: "-".into(),
                text,
            },
        )
    } else {
        let ctx = std::path::PathBuf::from(&a.context);
        if !ctx.is_dir() {
            anyhow::bail!("build context {} is not a directory", ctx.display());
        }
        let path = crate::boxfile::find_boxfile(&ctx, a.file.as_deref())?;
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        (Some(ctx), BoxfileInput { path, text })
    };
    let mut o = BuildOptions::new(context, boxfile);
    o.tags = a.tags.clone();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => o.build_args.insert(k.to_string(), v.to_string()),
            // `--build-arg NAME` takes the value from the environment, as docker does.
            None => match std::env::var(kv) {
                Ok(v) => o.build_args.insert(kv.clone(), v),
                Err(_) => None,
            },
        };
    }
    for kv in &a.labels {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        o.labels.insert(k.to_string(), v.to_string());
    }
    for s in &a.secrets {
        let (id, src) = crate::build::parse_secret(s).map_err(anyhow::Error::msg)?;
        o.secrets.insert(id, src);
    }
    o.target = a.target.clone();
    o.no_cache = a.no_cache;
    o.pull = a.pull.parse().map_err(anyhow::Error::msg)?;
    o.platforms = crate::build::multi::parse_platforms(&a.platform)?;
    // One platform builds as it always did, with the value as given.
    o.platform = match (a.platform.as_slice(), o.platforms.as_slice()) {
        (_, []) => None,
        ([one], [_]) if !one.contains(',') => Some(one.clone()),
        (_, [p]) => Some(p.to_string()),
        _ => None,
    };
    o.network = match a.network.as_str() {
        "none" => crate::run::NetworkMode::None,
        _ => crate::run::NetworkMode::Host,
    };
    o.format = if a.format == "docker" {
        ImageFormat::Docker
    } else {
        ImageFormat::Oci
    };
    o.output = output_mode(a);
    o.source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        _ => None,
    };
    o.iidfile = a.iidfile.clone();
    o.limits = build_limits(a)?;
    o.step_times = a.progress == "plain";
    o.cache_from = a.cache_from.iter().map(|r| cache_ref(r)).collect();
    o.cache_to = a.cache_to.iter().map(|r| cache_ref(r)).collect();
    for out in &a.outputs {
        o.outputs
            .push(crate::build::export::parse_output(out).map_err(anyhow::Error::msg)?);
    }
    if a.load {
        o.outputs.push(crate::build::export::Export::Image {
            names: vec![],
            push: false,
        });
    }
    if o.outputs.iter().filter(|e| **e == STDOUT_TAR).count() > 1 {
        anyhow::bail!("only one --output may write to stdout");
    }
    let image_out = o.outputs.is_empty()
        || o.outputs
            .iter()
            .any(|e| matches!(e, crate::build::export::Export::Image { .. }));
    if a.push && !image_out {
        anyhow::bail!("--push needs an image: add --load or -o type=image next to the other -o");
    }
    o.metadata_file = a.metadata_file.clone();
    for c in &a.build_contexts {
        let (name, ctx) =
            crate::build::named::parse_build_context(c).map_err(anyhow::Error::msg)?;
        o.build_contexts.insert(name, ctx);
    }
    let auth_sock = std::env::var("SSH_AUTH_SOCK").ok();
    for s in &a.ssh {
        let (id, sock) =
            crate::build::ssh::parse_ssh(s, auth_sock.as_deref()).map_err(anyhow::Error::msg)?;
        o.ssh.insert(id, sock);
    }
    for h in &a.add_hosts {
        o.add_hosts
            .push(crate::build::parse_add_host(h).map_err(anyhow::Error::msg)?);
    }
    Ok(o)
}
