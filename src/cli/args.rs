//! The arguments of the `box` subcommands that have no module of their own (images,
//! registry and container commands).

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image name, e.g. busybox, docker.io/library/alpine:3, host:5000/x/y@sha256:…
    pub name: String,
    /// Platform to pick from a multi-platform image, e.g. linux/arm64
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress progress output
    #[arg(short, long)]
    pub quiet: bool,
    /// Read registry credentials from this file only
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Only download; leave extracting layers to the first run (benchmarks)
    #[arg(long, hide = true)]
    pub no_unpack: bool,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Local image name
    pub name: String,
    /// Destination reference (default: NAME)
    pub destination: Option<String>,
    /// Suppress progress output (print only the manifest digest)
    #[arg(short, long)]
    pub quiet: bool,
    /// Read registry credentials from this file only
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Compress the image's uncompressed (built) layers with gzip, zstd or none (buildah's
    /// flag); layers already compressed, e.g. a pulled base's, are kept as they are
    #[arg(long, value_name = "FORMAT", default_value = "gzip")]
    pub compression_format: crate::layer::Compression,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the image even if containers use it
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling (untagged) ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation (prune never prompts; accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from an archive file instead of stdin: a docker archive (`docker save`,
    /// `podman save`) or an OCI archive; the format is detected
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (the default, as `docker save` and `podman save` write: layers as
    /// uncompressed tars) or oci-archive (a tar of an OCI image layout)
    #[arg(long, value_name = "FORMAT", default_value = "docker-archive")]
    pub format: crate::store::archive::ArchiveFormat,
    /// oci-archive only: compress the image's uncompressed (built) layers with gzip (the
    /// default), zstd or none (buildah's flag); layers already compressed, e.g. a pulled
    /// base's, are kept as they are
    #[arg(long, value_name = "COMPRESSION")]
    pub compression_format: Option<crate::layer::Compression>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry, e.g. quay.io or 127.0.0.1:5000 (default: docker.io)
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible in the process list; prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Write the credentials to this file (default: $REGISTRY_AUTH_FILE, else
    /// ${XDG_RUNTIME_DIR}/containers/auth.json)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry (default: docker.io)
    pub server: Option<String>,
    /// Remove the credentials of every registry
    #[arg(short, long, conflicts_with = "server")]
    pub all: bool,
    /// Edit this auth file (default: as box login)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    /// Container name or ID
    pub container: String,
    /// Only this container port: PRIVATE_PORT[/PROTO] (tcp when no protocol is given)
    pub private_port: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep STDIN open
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables (K=V), on top of the container's
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's)
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]; default: the container's)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Pass N additional file descriptors to the command: 3 to 2+N, which must be open
    /// (every other descriptor above 2 is closed)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container name or ID
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Force the removal of a running container
    #[arg(short, long)]
    pub force: bool,
}
