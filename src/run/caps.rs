//! Linux capabilities of the container process.
//!
//! Root's power is split into ~41 capabilities held in per-thread sets: the bounding set caps
//! what can ever be gained (also through setuid/file-capability execs), permitted/effective
//! are what the process has, inheritable and ambient what survives execve. Docker gives
//! containers a fixed default set; we drop everything else from the bounding set
//! (prctl PR_CAPBSET_DROP, needs CAP_SETPCAP, so before the final capset), and after the id
//! switch capset permitted = effective = the set for root, nothing for other users (a setuid
//! away from root already emptied those), as Docker does, while the bounding set keeps the
//! limit. Inheritable and ambient are always empty (CVE-2022-29162: runc once gave the
//! inheritable set, so a non-root user who executed a program with inheritable file
//! capabilities gained them). Entering a user namespace empties both, but `--userns=host`
//! containers and `box exec` into them start from the caller's sets, so the capset clears
//! them explicitly.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CapsError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("{op}: {cause}")]
    Sys { op: String, cause: nix::Error },
}

pub type Result<T> = std::result::Result<T, CapsError>;

/// Capability names by number (linux/capability.h).
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn number(name: &str) -> Result<u32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    NAMES
        .iter()
        .position(|c| *c == n)
        .map(|i| i as u32)
        .ok_or_else(|| CapsError::Unknown(name.to_string()))
}

/// The set (bit mask) from Docker's default plus `add` minus `drop`; "ALL" works in both.
pub fn resolve(add: &[String], drop: &[String]) -> Result<u64> {
    let all = |v: &[String]| v.iter().any(|s| s.eq_ignore_ascii_case("all"));
    let mut set = if all(drop) {
        0
    } else {
        DOCKER_DEFAULT
            .iter()
            .try_fold(0u64, |s, n| Ok(s | 1 << number(n)?))?
    };
    if all(add) {
        set = (1u64 << NAMES.len()) - 1;
    }
    for a in add.iter().filter(|s| !s.eq_ignore_ascii_case("all")) {
        set |= 1 << number(a)?;
    }
    for d in drop.iter().filter(|s| !s.eq_ignore_ascii_case("all")) {
        set &= !(1 << number(d)?);
    }
    Ok(set)
}

/// Names in a set, for messages and tests.
pub fn names(set: u64) -> Vec<&'static str> {
    (0..NAMES.len())
        .filter(|i| set & (1 << i) != 0)
        .map(|i| NAMES[i])
        .collect()
}

fn last_cap() -> u32 {
    crate::procfs::read("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop from the bounding set everything outside `set`, and clear the ambient set.
pub fn limit_bounding(set: u64) -> Result<()> {
    clear_ambient()?;
    for c in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        if set & (1 << c) == 0 && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c, 0, 0, 0) } < 0 {
            let e = nix::Error::last();
            if e != nix::Error::EINVAL {
                return Err(CapsError::Sys {
                    op: format!(
                        "drop CAP_{} from the bounding set",
                        NAMES.get(c as usize).unwrap_or(&"?")
                    ),
                    cause: e,
                });
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// This process's effective set (`CapEff` of /proc/self/status).
pub fn effective() -> std::io::Result<u64> {
    let status = crate::procfs::read("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapEff line in /proc/self/status"))
}

/// Set permitted = effective = `set`; inheritable and ambient empty.
pub fn set_process(set: u64) -> Result<()> {
    let h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let lo = set as u32;
    let hi = (set >> 32) as u32;
    let d = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data structs of the v3 layout, both alive.
    if unsafe { libc::syscall(libc::SYS_capset, &h, d.as_ptr()) } < 0 {
        return Err(CapsError::Sys {
            op: "capset".into(),
            cause: nix::Error::last(),
        });
    }
    clear_ambient()
}

/// Empty the ambient set (it would survive execve).
fn clear_ambient() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(CapsError::Sys {
            op: "clear the ambient capability set".into(),
            cause: nix::Error::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_with_add_and_drop() {
        let s = resolve(&["net_admin".into()], &["CAP_MKNOD".into()]).unwrap();
        let n = names(s);
        assert!(n.contains(&"NET_ADMIN") && !n.contains(&"MKNOD") && n.contains(&"CHOWN"));
        assert_eq!(n.len(), 14);
        assert_eq!(resolve(&[], &["all".into()]).unwrap(), 0);
        assert!(resolve(&["nope".into()], &[]).is_err());
    }
}
