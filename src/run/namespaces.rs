//! Linux namespaces for a container.
//!
//! A namespace gives a process its own view of one kernel resource: mounts, pids, host name,
//! System V IPC, cgroup root, network stack, user ids. The container is created with
//! `clone(2)` and the `CLONE_NEW*` flags of [`order`], so that it is pid 1 of its new pid
//! namespace from the start. The user namespace always comes first — every other namespace
//! is owned by the user namespace its creator was in, which is what makes "root" inside able
//! to mount and configure them — and in boxkit it is the tool's namespace, entered once in
//! `main` (see [`super::userns`]), so the table below marks it as already present. As root the
//! tool's namespace also maps host ids, and the container gets a nested user namespace in the
//! same `clone(2)` (see [`super::idmap::IdMaps::container_maps`]), which then owns the others.

use thiserror::Error;

use super::isolation::Isolation;
use super::spec::NetworkMode;

#[derive(Debug, Error)]
pub enum NamespaceError {
    #[error("clone({flags}): {cause}")]
    Clone { flags: String, cause: nix::Error },
}

pub type Result<T> = std::result::Result<T, NamespaceError>;

/// One namespace kind and how boxkit obtains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    pub name: &'static str,
    pub flag: libc::c_int,
    pub how: How,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Entered once per process by `userns::enter_if_needed` (before threads exist).
    ToolProcess,
    /// New for every container, at clone.
    PerContainer,
    /// New per container unless the network mode is host.
    UnlessHostNetwork,
}

/// The order namespaces are set up in: user first, then the rest at clone.
pub const ORDER: [Namespace; 7] = [
    Namespace {
        name: "user",
        flag: libc::CLONE_NEWUSER,
        how: How::ToolProcess,
    },
    Namespace {
        name: "mnt",
        flag: libc::CLONE_NEWNS,
        how: How::PerContainer,
    },
    Namespace {
        name: "pid",
        flag: libc::CLONE_NEWPID,
        how: How::PerContainer,
    },
    Namespace {
        name: "uts",
        flag: libc::CLONE_NEWUTS,
        how: How::PerContainer,
    },
    Namespace {
        name: "ipc",
        flag: libc::CLONE_NEWIPC,
        how: How::PerContainer,
    },
    Namespace {
        name: "cgroup",
        flag: libc::CLONE_NEWCGROUP,
        how: How::PerContainer,
    },
    Namespace {
        name: "net",
        flag: libc::CLONE_NEWNET,
        how: How::UnlessHostNetwork,
    },
];

/// The namespaces a container of this network mode gets at clone, in table order.
pub fn for_container(network: NetworkMode) -> Vec<&'static Namespace> {
    ORDER
        .iter()
        .filter(|n| match n.how {
            How::ToolProcess => false,
            How::PerContainer => true,
            How::UnlessHostNetwork => network != NetworkMode::Host,
        })
        .collect()
}

/// The clone flags of a container with this network and isolation: none at all when it is
/// only chrooted, and no UTS namespace where the environment refuses sethostname.
pub fn clone_flags(network: NetworkMode, isolation: Isolation) -> libc::c_int {
    match isolation {
        Isolation::Namespaces { uts, .. } => for_container(network)
            .iter()
            .filter(|n| uts || n.flag != libc::CLONE_NEWUTS)
            .fold(0, |f, n| f | n.flag),
        Isolation::Chroot | Isolation::Bare => 0,
    }
}

fn describe(flags: libc::c_int) -> String {
    ORDER
        .iter()
        .filter(|n| flags & n.flag != 0)
        .map(|n| n.name)
        .collect::<Vec<_>>()
        .join("|")
}

/// `clone(2)` like fork, child in new namespaces. Returns 0 in the child, its pid in the
/// parent. The raw syscall (no stack argument: the child runs on a copy of ours) skips
/// glibc's fork handlers, so callers must be single-threaded; see `process::run`.
///
/// # Safety
/// Same contract as `fork(2)` in a single-threaded process.
pub unsafe fn clone_into(flags: libc::c_int) -> Result<libc::pid_t> {
    // SAFETY: no pointers are passed (a null stack means a copy of ours, as fork); the
    // caller keeps fork's contract (see above).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(NamespaceError::Clone {
            flags: describe(flags),
            cause: nix::Error::last(),
        });
    }
    Ok(r as libc::pid_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespace_comes_first() {
        assert_eq!(ORDER[0].name, "user");
        assert_eq!(ORDER[0].how, How::ToolProcess);
    }

    #[test]
    fn host_network_keeps_the_host_netns_and_nothing_else() {
        let host: Vec<_> = for_container(NetworkMode::Host)
            .iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(host, ["mnt", "pid", "uts", "ipc", "cgroup"]);
        assert_eq!(for_container(NetworkMode::None).last().unwrap().name, "net");
        assert_eq!(
            describe(clone_flags(NetworkMode::Host, Isolation::FULL)),
            "mnt|pid|uts|ipc|cgroup"
        );
    }

    #[test]
    fn degraded_isolation_drops_uts_or_every_namespace() {
        let no_uts = Isolation::Namespaces {
            uts: false,
            new_proc: false,
        };
        assert_eq!(
            describe(clone_flags(NetworkMode::None, no_uts)),
            "mnt|pid|ipc|cgroup|net"
        );
        assert_eq!(clone_flags(NetworkMode::None, Isolation::Chroot), 0);
    }
}
