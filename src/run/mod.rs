//! The sandbox: run one process in fresh namespaces on an overlay (or plain) root filesystem,
//! inside the tool's user namespace so that container root is never host root.
//!
//! Used by boxbuild's RUN steps and by boxrun; it knows nothing about Boxfiles or registries.
//! The input is a [`SandboxSpec`]; [`run`] returns the container's exit code mapped the way
//! `docker run` does (exit n → n, killed by signal n → 128+n, 126 cannot execute, 127 not
//! found). Binaries call [`userns::enter_if_needed`] first thing in `main`; the
//! [`ToolContext`] it returns is passed to [`run`].
//!
//! Process layout for one run:
//! ```text
//! host agent (caller's real ids; cgroups, veth/pasta, cleanup)       userns::enter_if_needed
//!  └─ tool process (uid 0 of the tool's user ns; supervisor)          run()
//!      └─ container pid 1 (new mnt/pid/uts/ipc/cgroup[/net] ns)       process::child
//! ```
//! One file per kernel concern: [`namespaces`], [`idmap`], [`userns`], [`rootfs`] (with
//! [`inroot`] for paths inside the container root), [`cgroups`], [`network`] (rootless:
//! [`rootless_net`]), [`caps`], [`seccomp`], [`process`] (supervisor, child, tty, wait);
//! [`user`] resolves USER, [`finalize`] becomes it (for pid 1, `--init`'s command and
//! `box exec` alike), [`exec`] is `box exec`'s join-and-fork, [`agent`] is the host side,
//! [`keeper`] holds a rootless user's namespaces, [`context`] is what entering the tool
//! namespace returns; [`binfmt`] says whether a foreign platform's programs can run here.

pub mod agent;
pub mod binfmt;
pub mod caps;
pub mod cgroups;
pub mod chown_notify;
pub mod cidfile;
pub mod context;
pub mod exec;
pub mod finalize;
pub mod idmap;
pub mod inroot;
pub mod isolation;
pub mod keeper;
pub mod linger;
pub mod namespaces;
pub mod netlink;
pub mod network;
pub mod nsenter;
pub mod ports;
pub mod prestart;
pub mod probe;
pub mod process;
pub mod rootfs;
pub mod rootless_net;
pub mod rundir;
pub mod seccomp;
pub mod selfmap;
pub mod spec;
pub mod subid_hint;
pub mod user;
pub mod userns;

pub use context::{ToolContext, ToolUserns};
pub use spec::{
    Limits, MountSpec, NetworkMode, RootfsSource, SandboxSpec, UpperDir, UsernsMode, parse_size,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("user namespace remapping is not available: {0}")]
    NoUserns(String),
    #[error(
        "--userns=host must be decided when the process starts (pass it on the command line \
         or set BOX_USERNS=host): this process already runs in the tool's user namespace"
    )]
    AlreadyRemapped,
    #[error("--userns=host needs root")]
    HostNeedsRoot,
    #[error(
        "chroot isolation needs root (CAP_SYS_CHROOT); as another user, allow user namespaces \
         for userns isolation"
    )]
    ChrootNeedsRoot,
    #[error(transparent)]
    Process(#[from] process::ProcessError),
}

pub type Result<T> = std::result::Result<T, SandboxError>;

/// Run `spec` to completion and return its exit code. `tool` says where entering the tool's
/// user namespace left this process (and where its host agent is).
pub fn run(spec: &SandboxSpec, tool: &ToolContext) -> Result<i32> {
    run_with(spec, tool, false, None)
}

/// [`run`] for a run that is the calling process's last act (a foreground `boxrun`): the
/// container's mount namespace is then released by this process's exit, after the host agent
/// has the exit code, instead of by pid 1's exit, which the exit status waits for (unmounting
/// the overlay, /proc, /sys, /dev and the rest is ≈ 40 mounts on the start path's clock).
/// Nothing of the container is reachable meanwhile: its pid 1 is gone, its state is removed
/// by the caller as before, and only this process holds the namespace. `pre`: the container's
/// namespaces, when the caller had them made ahead ([`prestart`]).
pub fn run_last(
    spec: &SandboxSpec,
    tool: &ToolContext,
    pre: Option<prestart::Prestart>,
) -> Result<i32> {
    run_with(spec, tool, true, pre)
}

fn run_with(
    spec: &SandboxSpec,
    tool: &ToolContext,
    last: bool,
    pre: Option<prestart::Prestart>,
) -> Result<i32> {
    if !spec.isolation.namespaced() {
        // chroot isolation: the job's own ids, no namespace to be in (and no device filter:
        // the job's device cgroup is what applies).
        if !nix::unistd::geteuid().is_root() {
            return Err(SandboxError::ChrootNeedsRoot);
        }
        return Ok(process::run(
            spec,
            true,
            tool,
            process::Last { last, pre: None },
        )?);
    }
    let in_userns = match (spec.userns, tool.userns()) {
        (UsernsMode::Remap, ToolUserns::Remapped(_)) => true,
        (UsernsMode::Remap, ToolUserns::HostIds) => {
            return Err(SandboxError::NoUserns(
                "the process was started with --userns=host".into(),
            ));
        }
        (UsernsMode::Remap, ToolUserns::NotEntered { reason }) => {
            return Err(SandboxError::NoUserns(reason.clone()));
        }
        (UsernsMode::Host, ToolUserns::Remapped(_)) => {
            return Err(SandboxError::AlreadyRemapped);
        }
        (UsernsMode::Host, _) => {
            if !nix::unistd::geteuid().is_root() {
                return Err(SandboxError::HostNeedsRoot);
            }
            false
        }
    };
    Ok(process::run(
        spec,
        in_userns,
        tool,
        process::Last { last, pre },
    )?)
}
