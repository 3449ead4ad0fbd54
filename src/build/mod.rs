//! boxbuild: Boxfile → stages → steps → layers and an image config.
//!
//! [`build`] is the entry point the CLI calls. The work is split by concern:
//! - `engine`: walks the stages that the target needs, expands each instruction, and either
//!   reuses a cached layer or executes the step; attaches a failed step's location;
//! - `plan`: which stages are needed, platform ARGs, and what each cache key covers
//!   (returning the typed sources a COPY/ADD fetched for its key);
//! - [`backends`]: the isolation and snapshotter RUN steps use, chosen by probing;
//! - `cache`: cache records, `--cache-from` import and `--cache-to` export;
//! - `step_run`: RUN and its mounts; `step_copy`: COPY, ADD and WORKDIR;
//! - `image_out`: config, manifest, tags, history entries;
//! - [`copy`], [`dest`], [`owner`]: selecting sources, the tar stream a COPY writes, and owners
//!   and modes (no container);
//! - [`fsview`]: read-only views of a stack of unpacked layers (lookups, merged mounts) and
//!   committing a layer directory into the store and the unpacked-layer cache;
//! - [`output`]: `[n/N]` lines and RUN output streaming;
//! - [`config`]: the image config and the metadata instructions;
//! - [`context`]: content hashes of the build context behind a stat index.
//! - [`export`]: `-o` outputs (image, `type=local`, `type=tar`) and `--metadata-file`;
//!   [`caller`]: files written for the user get the caller's ids;
//! - [`named`]: `--build-context`; [`ssh`]: `--ssh` and `RUN --mount=type=ssh`;
//! - [`multi`]: `--platform a,b`: one engine build per platform, one index over them.

pub mod backends;
pub mod cache;
pub mod caller;
pub mod config;
pub mod context;
pub mod copy;
pub mod dest;
mod engine;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fsview;
pub mod git;
mod image_out;
pub mod multi;
pub mod named;
pub mod output;
pub mod owner;
mod plan;
pub mod progress;
mod progress_json;
mod progress_tty;
pub mod ssh;
mod step_copy;
mod step_root;
mod step_run;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::registry::PullPolicy;
use crate::run::NetworkMode;

pub use engine::build;
pub use error::{BuildError, StepError, StepErrorKind};

/// Which manifest and config media types the image gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    #[default]
    Oci,
    Docker,
}

/// How much the build prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// `[n/N]` lines and RUN output (prefixed with the step) on stderr.
    #[default]
    Plain,
    /// Nothing but errors.
    Quiet,
    /// A live view redrawn in place (a terminal): running steps with their last output
    /// lines and transfer bars; finished steps collapse to one line (`progress_tty.rs`).
    Tty,
    /// One JSON object per line, the shape of BuildKit's rawjson (`progress_json.rs`).
    RawJson,
}

/// Where the Boxfile text comes from.
#[derive(Debug, Clone)]
pub struct BoxfileInput {
    /// Shown in messages (`Boxfile:3`); `-` for stdin.
    pub path: PathBuf,
    pub text: String,
}

/// A `--secret id=ID,src=PATH` or `id=ID,env=VAR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Everything one build needs; the CLI fills it from the flags.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory; `None` when the Boxfile came on stdin with no context.
    pub context: Option<PathBuf>,
    pub boxfile: BoxfileInput,
    /// `-t` values, normalised when tagging.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: PullPolicy,
    /// The target platform of this build (`--platform` with one value).
    pub platform: Option<String>,
    /// `--platform` with two or more platforms: [`multi::build`] builds each (with
    /// `platform` set) and writes one index; empty otherwise.
    pub platforms: Vec<crate::image::Platform>,
    pub labels: BTreeMap<String, String>,
    /// Default network of RUN steps (`RUN --network` overrides).
    pub network: NetworkMode,
    pub secrets: BTreeMap<String, SecretSource>,
    pub format: ImageFormat,
    pub output: OutputMode,
    /// `SOURCE_DATE_EPOCH`: clamps layer mtimes and sets every `created`.
    pub source_date_epoch: Option<i64>,
    /// `--iidfile`: written with the image ID on success.
    pub iidfile: Option<PathBuf>,
    /// `--cache-from`: registry references whose build cache is imported first.
    pub cache_from: Vec<String>,
    /// `--cache-to`: registry references the build's cache is exported to.
    pub cache_to: Vec<String>,
    /// Isolation and snapshotter of RUN steps ([`backends::choose`] picks them from the
    /// environment probe; the default is a host's full set).
    pub backends: backends::Backends,
    /// cgroup limits of RUN steps (`--memory`, `--cpu-quota`, …), as `docker build`.
    pub limits: crate::run::Limits,
    /// Print where each RUN step's time went (`--progress=plain`).
    pub step_times: bool,
    /// `-o/--output`: where the result goes; empty means the image in the store.
    pub outputs: Vec<export::Export>,
    /// `--metadata-file`: written with buildx's keys on success.
    pub metadata_file: Option<PathBuf>,
    /// `--add-host`: lines (`IP\tHOST`) added to every RUN's /etc/hosts, never to the image.
    pub add_hosts: Vec<String>,
    /// `--build-context NAME=…`, by lower-case name.
    pub build_contexts: BTreeMap<String, named::NamedContext>,
    /// `--ssh ID[=SOCKET|KEY…]`: what each id forwards to `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, ssh::SshSource>,
    /// Set by a multi-platform build on each platform's build ([`multi::Member`]): its tag
    /// on progress lines and what it shares with the builds running beside it. None for an
    /// ordinary build.
    pub member: Option<multi::Member>,
}

impl BuildOptions {
    pub fn new(context: Option<PathBuf>, boxfile: BoxfileInput) -> BuildOptions {
        BuildOptions {
            context,
            boxfile,
            tags: vec![],
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            pull: PullPolicy::Missing,
            platform: None,
            platforms: vec![],
            labels: BTreeMap::new(),
            network: NetworkMode::Host,
            secrets: BTreeMap::new(),
            format: ImageFormat::Oci,
            output: OutputMode::Plain,
            source_date_epoch: None,
            iidfile: None,
            cache_from: vec![],
            cache_to: vec![],
            backends: backends::Backends::default(),
            limits: crate::run::Limits::default(),
            step_times: false,
            outputs: vec![],
            metadata_file: None,
            add_hosts: vec![],
            build_contexts: BTreeMap::new(),
            ssh: BTreeMap::new(),
            member: None,
        }
    }
}

/// What a successful build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image ID (config digest).
    pub image_id: Digest,
    /// The manifest's descriptor.
    pub manifest: crate::image::Descriptor,
    /// Whether the image was stored (no `-o`, or an image output among them).
    pub stored: bool,
    /// The names it was tagged with, normalised (`docker.io/library/app:latest`).
    pub names: Vec<String>,
    /// Steps executed and steps served from the cache.
    pub executed: usize,
    pub cached: usize,
}

/// Parse `--secret id=ID,src=PATH` (also `source=`, `env=`, `type=file|env`).
pub fn parse_secret(s: &str) -> Result<(String, SecretSource), String> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid --secret {s:?}: {part:?} is not KEY=VALUE"))?;
        match k {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            _ => return Err(format!("invalid --secret {s:?}: unknown key {k:?}")),
        }
    }
    let source = match (kind.as_deref(), src, env) {
        (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
        (None | Some("file"), Some(p), None) => SecretSource::File(PathBuf::from(p)),
        (_, None, None) => {
            let id = id
                .clone()
                .ok_or_else(|| format!("invalid --secret {s:?}: id= is required"))?;
            SecretSource::Env(id)
        }
        _ => return Err(format!("invalid --secret {s:?}: give either src= or env=")),
    };
    let id = id.ok_or_else(|| format!("invalid --secret {s:?}: id= is required"))?;
    Ok((id, source))
}

/// `--add-host HOST:IP` (also `HOST=IP`; an IPv6 address may be bracketed) as the /etc/hosts
/// line `IP\tHOST`.
pub fn parse_add_host(s: &str) -> Result<String, String> {
    let bad =
        || format!("invalid --add-host {s:?}: expected HOST:IP, e.g. db:10.0.0.5 or db=[fd00::5]");
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(bad)?;
    if ip == "host-gateway" {
        return Err(format!(
            "invalid --add-host {s:?}: host-gateway is not supported by boxbuild (RUN steps use \
             the host's network, where the host is 127.0.0.1)"
        ));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    Ok(format!("{ip}\t{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_takes_ipv4_ipv6_and_equals() {
        assert_eq!(parse_add_host("db:10.0.0.5").unwrap(), "10.0.0.5\tdb");
        assert_eq!(parse_add_host("db=10.0.0.5").unwrap(), "10.0.0.5\tdb");
        assert_eq!(parse_add_host("v6:fd00::5").unwrap(), "fd00::5\tv6");
        assert_eq!(parse_add_host("v6=[fd00::5]").unwrap(), "fd00::5\tv6");
        for bad in [
            "db",
            "db:notanip",
            ":1.2.3.4",
            "a b:1.2.3.4",
            "h:host-gateway",
        ] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_parse_like_buildkit() {
        assert_eq!(
            parse_secret("id=tok,src=/run/x").unwrap(),
            ("tok".into(), SecretSource::File("/run/x".into()))
        );
        assert_eq!(
            parse_secret("id=tok,env=TOKEN").unwrap(),
            ("tok".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            parse_secret("id=TOKEN").unwrap(),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        assert!(parse_secret("src=/x").is_err());
        assert!(parse_secret("id=a,what=b").is_err());
    }
}
