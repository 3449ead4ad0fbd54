//! How strongly a sandbox is isolated, and the choice of it from what the environment allows
//! (issue 13). On a host every kernel feature is there and the sandbox is the full set of
//! namespaces. In a CI job container the runtime's seccomp profile, dropped capabilities, a
//! masked /proc or a missing user namespace take parts away; the [`super::probe`] finds out
//! which, and [`choose`] picks the strongest isolation left:
//!
//! 1. **userns**: a user namespace mapping the container range, with mount, pid, ipc, cgroup
//!    (and, unless the host network is used, net) namespaces, pivot_root into the image. Two
//!    parts degrade on their own: without a UTS namespace (sethostname refused) the container
//!    keeps the job's host name; without a new /proc (a masked /proc cannot be mounted again)
//!    the job's /proc is bound read-only, as buildah's chroot isolation does.
//! 2. **chroot**: no namespace can be made (docker's seccomp profile refuses unshare without
//!    CAP_SYS_ADMIN), but root in the job has CAP_SYS_CHROOT: the step runs chrooted into a
//!    plain copy of the image, as the job's own ids, with docker's default capability set.
//! 3. **none**: chrooted, and nothing else: the job's capabilities are kept.
//!
//! In chroot and none the job container is the isolation boundary, as with kaniko.

use super::probe::Probe;

/// The isolation a user asks for (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationChoice {
    #[default]
    Auto,
    Userns,
    Chroot,
    None,
}

impl std::str::FromStr for IsolationChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "userns" | "rootless" | "oci" => Ok(Self::Userns),
            "chroot" => Ok(Self::Chroot),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "invalid isolation {s:?}: expected auto, userns, chroot or none"
            )),
        }
    }
}

/// How the sandbox isolates a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces (see the module text), possibly without a UTS namespace or a new /proc.
    Namespaces { uts: bool, new_proc: bool },
    /// chroot(2) into a plain directory root; docker's default capabilities.
    Chroot,
    /// chroot(2) only; the job's capabilities are kept.
    Bare,
}

impl Default for Isolation {
    fn default() -> Self {
        Self::FULL
    }
}

impl Isolation {
    /// Every namespace, a new /proc: the sandbox on a host.
    pub const FULL: Isolation = Isolation::Namespaces {
        uts: true,
        new_proc: true,
    };

    /// Whether the sandbox makes namespaces (and so can mount).
    pub fn namespaced(self) -> bool {
        matches!(self, Self::Namespaces { .. })
    }

    /// The mode's name and what it leaves out, for the build's mode line.
    pub fn describe(self) -> String {
        match self {
            Self::Namespaces { uts, new_proc } => {
                let mut missing = vec![];
                if !uts {
                    missing.push("no uts namespace");
                }
                if !new_proc {
                    missing.push("/proc bound read-only");
                }
                if missing.is_empty() {
                    "userns".into()
                } else {
                    format!("userns ({})", missing.join(", "))
                }
            }
            Self::Chroot => "chroot".into(),
            Self::Bare => "none".into(),
        }
    }

    /// The one warning the least-isolated modes print: what is not isolated.
    pub fn warning(self) -> Option<String> {
        let what = match self {
            Self::Namespaces { .. } => return None,
            Self::Chroot => "capabilities are bounded to docker's default set",
            Self::Bare => "the job's capabilities are kept",
        };
        Some(format!(
            "warning: isolation {}: RUN steps run chrooted as the job's own ids, in the job's \
             network, pid, ipc and UTS namespaces, with no /proc, /sys or /dev of their own; \
             {what}. The job container is the isolation boundary: build only Boxfiles you trust \
             here",
            self.describe()
        ))
    }
}

/// Why no isolation the user asked for (or any, for auto) can run here.
#[derive(Debug, thiserror::Error)]
#[error(
    "{asked}: {why}. Run the job as root (CAP_SYS_CHROOT) for chroot isolation, or allow user \
     namespaces (podman's default seccomp profile does; docker needs \
     --security-opt seccomp=unconfined or a profile allowing unshare)"
)]
pub struct NoIsolation {
    pub asked: String,
    pub why: String,
}

/// The strongest isolation `probe` allows, or the forced one if it can run.
pub fn choose(asked: IsolationChoice, probe: &Probe, root: bool) -> Result<Isolation, NoIsolation> {
    let ns = probe.ok("user-namespace") && probe.ok("mount-namespace");
    let namespaces = Isolation::Namespaces {
        uts: probe.ok("uts-namespace"),
        new_proc: probe.ok("pid-namespace-proc"),
    };
    let refused = |asked: &str| NoIsolation {
        asked: asked.into(),
        why: probe
            .checks
            .iter()
            .find(|c| !c.ok && (c.name == "user-namespace" || c.name == "mount-namespace"))
            .map_or_else(
                || "chroot(2) needs root".to_string(),
                |c| format!("{} failed: {}", c.name, c.detail),
            ),
    };
    match asked {
        IsolationChoice::Userns if ns => Ok(namespaces),
        IsolationChoice::Userns => Err(refused("isolation userns")),
        IsolationChoice::Chroot | IsolationChoice::None if !root => Err(NoIsolation {
            asked: "isolation chroot".into(),
            why: "chroot(2) needs root (CAP_SYS_CHROOT)".into(),
        }),
        IsolationChoice::Chroot => Ok(Isolation::Chroot),
        IsolationChoice::None => Ok(Isolation::Bare),
        IsolationChoice::Auto if ns => Ok(namespaces),
        IsolationChoice::Auto if root => Ok(Isolation::Chroot),
        IsolationChoice::Auto => Err(refused("no isolation is possible")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::probe::with_failing as probe;

    #[test]
    fn auto_takes_the_strongest_mode_the_probe_allows() {
        let a = IsolationChoice::Auto;
        assert_eq!(choose(a, &probe(&[]), false).unwrap(), Isolation::FULL);
        let job = probe(&["uts-namespace", "pid-namespace-proc"]);
        let got = choose(a, &job, false).unwrap();
        assert_eq!(
            got.describe(),
            "userns (no uts namespace, /proc bound read-only)"
        );
        assert!(got.warning().is_none());
        let no_userns = probe(&["user-namespace", "mount-namespace"]);
        assert_eq!(choose(a, &no_userns, true).unwrap(), Isolation::Chroot);
        let e = choose(a, &no_userns, false).unwrap_err().to_string();
        assert!(e.contains("user-namespace failed: EPERM"), "{e}");
    }

    #[test]
    fn a_forced_mode_runs_only_where_it_can() {
        let no_userns = probe(&["user-namespace"]);
        assert!(choose(IsolationChoice::Userns, &no_userns, true).is_err());
        assert_eq!(
            choose(IsolationChoice::None, &probe(&[]), true).unwrap(),
            Isolation::Bare
        );
        assert!(choose(IsolationChoice::Chroot, &probe(&[]), false).is_err());
        let w = Isolation::Chroot.warning().unwrap();
        assert!(w.contains("job container is the isolation boundary"), "{w}");
    }
}
