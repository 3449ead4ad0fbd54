//! The tool's context: where entering the tool's user namespace left this process.
//!
//! [`super::userns::enter_if_needed`] returns a [`ToolContext`]; the CLI passes it down to
//! whatever depends on it: the sandbox (is the process remapped, where is the host agent),
//! layer extraction and builds (which owners content may have: [`ToolContext::content_policy`]).
//! Nothing reads it from a process-wide global, so a library caller (a test running as real
//! root) states its situation with [`ToolContext::not_entered`].

use std::os::fd::RawFd;

use super::agent::{AgentSocket, HostLink, HostSide};
use super::idmap::IdMaps;
use crate::layer::{Confinement, ContentPolicy, DEFAULT_MAX_ID, Ownership};

/// Where the calling process stands after [`super::userns::enter_if_needed`].
#[derive(Debug, Clone)]
pub enum ToolUserns {
    /// In the tool's user namespace with these maps.
    Remapped(IdMaps),
    /// Root with `--userns=host`: a private mount namespace, host ids.
    HostIds,
    /// Not entered; `reason` says why a remapped sandbox cannot run.
    NotEntered { reason: String },
}

/// What entering the tool's user namespace produced, passed down explicitly.
#[derive(Debug, Clone)]
pub struct ToolContext {
    userns: ToolUserns,
    /// The socket to the host agent (the process that stayed outside), when there is one.
    agent: Option<AgentSocket>,
    /// The pid of the keeper whose namespaces this command joined (unprivileged users; see
    /// [`super::keeper`]).
    keeper: Option<i32>,
    /// The helper a foreground run started as it entered the namespace, until the run takes
    /// it ([`ToolContext::take_prestart`]).
    prestart: std::sync::Arc<std::sync::Mutex<Option<super::prestart::Prestart>>>,
    /// The process entered the namespace itself, with no host agent, for a run that needs
    /// none ([`ToolContext::is_alone`]).
    alone: bool,
}

impl ToolContext {
    /// A process that did not enter the tool's user namespace; `reason` says why (it is
    /// shown when a remapped sandbox is asked for).
    pub fn not_entered(reason: impl Into<String>) -> ToolContext {
        ToolContext {
            userns: ToolUserns::NotEntered {
                reason: reason.into(),
            },
            agent: None,
            keeper: None,
            prestart: Default::default(),
            alone: false,
        }
    }

    /// The context of a process that entered (or chose not to enter) the namespace.
    pub(crate) fn new(userns: ToolUserns, agent: Option<RawFd>, keeper: Option<i32>) -> Self {
        ToolContext {
            userns,
            agent: agent.map(AgentSocket::new),
            keeper,
            prestart: Default::default(),
            alone: false,
        }
    }

    /// The context of a process that entered the namespace itself and kept no host agent
    /// ([`super::userns::enter_if_needed`]'s `alone`).
    pub(crate) fn alone(userns: ToolUserns, keeper: Option<i32>) -> Self {
        ToolContext {
            alone: true,
            ..ToolContext::new(userns, None, keeper)
        }
    }

    /// Whether this process entered the namespace by itself, with no host agent: it has no
    /// credentials of the host left, so nothing that needs them (cgroups, the host network,
    /// a `--cidfile`) can be done, and it ends through [`super::linger::exit`].
    pub fn is_alone(&self) -> bool {
        self.alone
    }

    /// Keep the helper that [`super::userns::enter_if_needed`] started for the run.
    pub(crate) fn keep_prestart(&self, pre: Option<super::prestart::Prestart>) {
        if let Ok(mut p) = self.prestart.lock() {
            *p = pre;
        }
    }

    /// The helper started for this run, if any (once).
    pub fn take_prestart(&self) -> Option<super::prestart::Prestart> {
        self.prestart.lock().ok()?.take()
    }

    pub fn userns(&self) -> &ToolUserns {
        &self.userns
    }

    /// Whether the process runs in the tool's user namespace with remapped ids.
    pub fn is_remapped(&self) -> bool {
        matches!(self.userns, ToolUserns::Remapped(_))
    }

    /// Whether only the caller's own id is mapped (no subordinate range).
    pub fn single_mapping(&self) -> bool {
        matches!(&self.userns, ToolUserns::Remapped(m) if m.single)
    }

    /// The keeper this command joined, if any.
    pub fn keeper_pid(&self) -> Option<i32> {
        self.keeper
    }

    /// The sandbox's handle on the host side: the agent across its socket, or in-process.
    pub fn host_link(&self) -> HostLink {
        // A process alone in its namespace has no host credentials for the in-process side
        // to use: the CLI sends every run that needs them through the agent
        // (`cli::runs_alone`); the supervisor refuses the rest.
        match &self.agent {
            Some(a) => HostLink::Agent(a.clone()),
            None => HostLink::Local(Box::new(HostSide::new(self.keeper))),
        }
    }

    /// Write a container's id to a `--cidfile` of the command line, as the real caller (the
    /// host agent when there is one): see [`super::cidfile`].
    pub fn write_cidfile(&self, path: &std::path::Path, id: &str) -> super::agent::Result<()> {
        if self.alone {
            return Err(super::agent::AgentError::Host(
                "--cidfile needs the host agent, which this run did not start; please report \
                 this as a bug"
                    .into(),
            ));
        }
        self.host_link()
            .call(super::agent::Request::Cidfile {
                path: path.to_path_buf(),
                id: id.to_string(),
            })
            .map(|_| ())
    }

    /// The command is done: its output is flushed and the host agent (when there is one) is
    /// told the exit code, so that the caller gets it without waiting for this process's
    /// namespaces to be torn down. Call it last, after everything the command made (state,
    /// scratch mounts, store locks) is released.
    pub fn exiting(&self, code: u8) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        if let Some(a) = &self.agent {
            a.exiting(code);
        }
    }

    /// How this process may create image content (owners it may give, and where extraction
    /// runs). Extraction entry points take it as a parameter.
    pub fn content_policy(&self) -> ContentPolicy {
        let limits = crate::limits::Limits::from_env().unwrap_or_else(|e| {
            eprintln!("boxkit: warning: {e}; using the default limits");
            crate::limits::Limits::DEFAULT
        });
        policy_for(&self.userns, Some(limits.max_layer_size))
    }
}

/// The content policy of a process standing at `userns`.
fn policy_for(userns: &ToolUserns, max_bytes: Option<u64>) -> ContentPolicy {
    match userns {
        ToolUserns::Remapped(m) => ContentPolicy {
            // Only the caller's own id is mapped: the kernel can give no other owner, so an
            // owner other than root is recorded in an xattr that packing turns back into the
            // tar header (lossless, unlike podman's ignore_chown_errors), within the usual
            // container range.
            ownership: if m.single {
                Ownership::Xattr
            } else {
                Ownership::Preserve
            },
            max_id: if m.single {
                DEFAULT_MAX_ID
            } else {
                m.container
            },
            // Root's tool namespace maps host ids above the container range: content is
            // created in a nested namespace that maps the container range alone.
            confinement: if m.container_maps().is_some() {
                Confinement::Nested { ids: m.container }
            } else {
                Confinement::InProcess
            },
            max_bytes,
        },
        // --userns=host: image ids are host ids, by the user's choice.
        ToolUserns::HostIds => ContentPolicy {
            ownership: Ownership::Preserve,
            max_id: u32::MAX,
            confinement: Confinement::InProcess,
            max_bytes,
        },
        // A library caller that never entered (tests as real root): the usual range.
        ToolUserns::NotEntered { .. } => ContentPolicy {
            ownership: Ownership::Preserve,
            max_id: DEFAULT_MAX_ID,
            confinement: Confinement::InProcess,
            max_bytes,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_did_not_enter_preserves_owners_in_the_usual_range() {
        let ctx = ToolContext::not_entered("test");
        let p = policy_for(ctx.userns(), None);
        assert_eq!(p.ownership, Ownership::Preserve);
        assert_eq!(p.max_id, DEFAULT_MAX_ID);
        assert_eq!(p.confinement, Confinement::InProcess);
        assert!(!ctx.is_remapped());
        assert!(ctx.keeper_pid().is_none());
    }

    #[test]
    fn the_host_side_runs_in_process_without_an_agent_and_across_the_socket_with_one() {
        let outside = ToolContext::not_entered("test");
        assert!(matches!(outside.host_link(), HostLink::Local(_)));
        let entered = ToolContext::new(ToolUserns::HostIds, Some(7), Some(42));
        assert!(matches!(entered.host_link(), HostLink::Agent(_)));
        assert_eq!(entered.keeper_pid(), Some(42));
    }

    #[test]
    fn only_root_mapped_records_owners_in_the_xattr_within_the_usual_range() {
        let m = crate::run::idmap::IdMaps {
            uids: vec![],
            gids: vec![],
            single: true,
            needs_helpers: false,
            container: 1,
        };
        let p = policy_for(&ToolUserns::Remapped(m), None);
        assert_eq!(p.ownership, Ownership::Xattr);
        assert_eq!(p.max_id, DEFAULT_MAX_ID);
        assert_eq!(p.confinement, Confinement::InProcess);
    }

    #[test]
    fn host_ids_allow_any_owner() {
        let p = policy_for(&ToolUserns::HostIds, Some(7));
        assert_eq!((p.max_id, p.max_bytes), (u32::MAX, Some(7)));
    }
}
