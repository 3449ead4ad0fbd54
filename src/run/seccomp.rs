//! Seccomp: which system calls a container may make.
//!
//! A seccomp filter is a classic-BPF program that the kernel runs at every system call entry
//! of a task, on a `seccomp_data` (syscall number, audit architecture, instruction pointer,
//! six raw 64-bit arguments); its return value is an action (ALLOW, ERRNO with a 16-bit
//! errno, KILL_PROCESS, KILL_THREAD, TRAP, LOG, and TRACE/USER_NOTIF, which need a tracer or
//! a supervisor and which boxkit does not offer). Filters stack and are inherited over fork and
//! execve and can never be removed. Installing one needs CAP_SYS_ADMIN in the task's user
//! namespace, or no_new_privs.
//!
//! Profiles use docker's JSON format (a default action, then rules: syscall names, an action,
//! argument comparisons, and conditions on the container's capabilities, the architecture
//! and the kernel version). [`Profile::parse`] validates one completely, so a bad profile is an
//! error before anything starts; [`compile`] turns it, for one capability set, into BPF with
//! the `seccompiler` crate; [`install`] loads the result in the container's first process,
//! after its mounts and before the id switch and capability drop (what runc does without
//! no_new_privs), so every syscall boxkit itself makes after that point must be allowed.
//!
//! **Several actions, stacked filters.** A seccompiler filter has one match action and one
//! mismatch action, and a profile may have many. The kernel's `seccomp_run_filters` runs
//! every installed filter, newest first, and keeps the result whose action is the most
//! restrictive (`ACTION_ONLY(cur) < ACTION_ONLY(ret)`, signed, errno data ignored; order
//! KILL_PROCESS < KILL_THREAD < TRAP < ERRNO < USER_NOTIF < TRACE < LOG < ALLOW), so on a
//! tie the newest filter's result stands. A profile therefore compiles to:
//! - one filter per action other than ALLOW: the rules with that action → the action,
//!   anything else → ALLOW;
//! - last (newest), unless the default action is ALLOW: every rule → ALLOW, anything else →
//!   the default action.
//!
//! A call that matches no rule gets ALLOW from the per-action filters and the default action
//! from the base filter: the default action. A call that matches rules gets ALLOW from the
//! base filter and the most restrictive action of the rules it matches from the others. Only
//! ERRNO actions with different errno values can tie; the per-action filters are installed
//! in reverse order of first appearance, so the rule that comes first in the profile wins.
//! (libseccomp, which docker uses, refuses some overlaps and resolves others by rule
//! specificity; boxkit's "most restrictive wins" is the same for every profile without
//! overlapping rules of different actions, docker's default among them.) As runc does, rules
//! whose action equals the default action are skipped, a syscall name that does not exist
//! on this architecture is skipped, and when a rule compares the same argument twice its
//! comparisons are alternatives (separate rules) instead of all having to hold.
//!
//! **Other ABIs.** seccompiler's filters kill the process when a syscall comes through another
//! audit architecture (i386's `int 0x80`), where docker's profile allows the i386 and x32 ABIs.
//! boxkit adds the x32 case, which shares the x86_64 audit architecture and is told apart by
//! bit 30 of the syscall number: without that check a default-ALLOW profile that denies
//! `mkdir` could be bypassed through x32's `mkdir`. Like runc, the base filter answers ENOSYS
//! instead of the default action for syscalls newer than any the profile names, so that libc
//! falls back from calls it does not know the container may not make. A profile whose
//! earlier filters would stop the installation of its later ones (a rule that denies
//! `seccomp` itself) is refused when it is compiled.
//!
//! **Start-up cost.** When a filter is attached, the kernel emulates it for every syscall
//! number to build its always-allowed cache, so its length and the path each number takes
//! count at every container start. Calls a rule matches unconditionally are therefore
//! dispatched by a binary search over ranges of consecutive numbers in front of seccompiler's
//! code, which then only handles calls with argument rules: the default profile is ~150
//! instructions instead of ~1,600. The default profile is also not parsed from JSON at run
//! time: `seccomp/default_rules.rs` is its validated form as Rust (syscall numbers, capability
//! masks), plus the filter compiled for docker's default capability set, which the usual
//! container installs as is; it is generated from `seccomp/default.json` and kept equal to
//! it (and to what compiling gives) by a unit test.
//!
//! Files: `profile` (docker's JSON, validated into [`Profile`]), `bpf` ([`compile`]: range
//! dispatch and stacked seccompiler filters), `eval` (a classic-BPF evaluator, as the kernel
//! runs filters, for [`Filter::decide`] and the compile-time checks), `syscalls` (the x86_64
//! table), `default_rules` (generated).

mod bpf;
#[rustfmt::skip]
mod default_rules;
mod eval;
mod profile;
mod syscalls;

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

pub use bpf::compile;
pub use eval::{Data, verdict};
pub use profile::{Action, Profile};

use bpf::AUDIT_ARCH_X86_64;
use profile::{kernel_version, resolve};

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("read seccomp profile {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("seccomp profile {origin}: not valid JSON: {cause}")]
    Json {
        origin: String,
        cause: serde_json::Error,
    },
    #[error("seccomp profile {origin}: {what}")]
    Invalid { origin: String, what: String },
    #[error("seccomp profile {origin}: {what}")]
    Compile { origin: String, what: String },
    #[error(
        "seccomp profiles can only be compiled for x86_64 hosts; use --security-opt seccomp=unconfined"
    )]
    Arch,
    #[error("install the seccomp filter: {0}")]
    Install(nix::Error),
}

pub type Result<T> = std::result::Result<T, SeccompError>;

/// boxkit's default profile (docker's semantics; see the comments in the file).
#[cfg(test)]
const DEFAULT_JSON: &str = include_str!("seccomp/default.json");
const DEFAULT_ORIGIN: &str = "(boxkit's default)";

/// The container's seccomp setting: `--security-opt seccomp=…`.
#[derive(Debug, Clone, Default)]
pub enum Seccomp {
    /// boxkit's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile the user gave (`seccomp=PATH`), already validated.
    Custom(Arc<Profile>),
}

/// What the container's state records, so that `box exec` applies the same filter: the choice,
/// and for a custom profile its text as it was read when the container started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompRecord {
    #[default]
    Default,
    Unconfined,
    Profile {
        origin: String,
        json: String,
    },
}

impl Seccomp {
    /// The value of docker's `--security-opt seccomp=VALUE`: `unconfined`, `builtin` (the
    /// default profile) or the path of a profile in docker's JSON format, read and validated
    /// now.
    pub fn from_opt(value: &str) -> Result<Seccomp> {
        match value {
            "unconfined" => Ok(Seccomp::Unconfined),
            "builtin" | "default" => Ok(Seccomp::Default),
            path => {
                let text = std::fs::read_to_string(path).map_err(|cause| SeccompError::Read {
                    path: path.into(),
                    cause,
                })?;
                Ok(Seccomp::Custom(Arc::new(Profile::parse(&text, path)?)))
            }
        }
    }

    pub fn record(&self) -> SeccompRecord {
        match self {
            Seccomp::Default => SeccompRecord::Default,
            Seccomp::Unconfined => SeccompRecord::Unconfined,
            Seccomp::Custom(p) => SeccompRecord::Profile {
                origin: p.origin.clone(),
                json: p.text.clone(),
            },
        }
    }

    pub fn from_record(r: &SeccompRecord) -> Result<Seccomp> {
        Ok(match r {
            SeccompRecord::Default => Seccomp::Default,
            SeccompRecord::Unconfined => Seccomp::Unconfined,
            SeccompRecord::Profile { origin, json } => {
                Seccomp::Custom(Arc::new(Profile::parse(json, origin)?))
            }
        })
    }

    /// The filter for a container whose processes hold the capabilities in `caps` (bit mask,
    /// see [`super::caps`]). Runs in the supervisor, before the container is cloned.
    pub fn compile(&self, caps: u64) -> Result<Filter> {
        match self {
            Seccomp::Unconfined => Ok(Filter::default()),
            Seccomp::Default => Self::default_filter(caps, kernel_version()),
            Seccomp::Custom(p) => compile(p, caps, kernel_version()),
        }
    }

    /// The default profile for `caps` on `kernel`: for docker's default capability set
    /// (the usual case) precompiled, which saves the compile and the first touch of its code
    /// at every start.
    fn default_filter(caps: u64, kernel: (u32, u32)) -> Result<Filter> {
        if caps == default_rules::PRECOMPILED_CAPS && kernel >= (4, 8) {
            return Ok(Filter {
                programs: vec![default_rules::PRECOMPILED.to_vec()],
                flags: 0,
            });
        }
        compile(&Profile::default_profile(), caps, kernel)
    }

    /// For `inspect`'s SecurityOpt, as docker shows it (nothing for the default).
    pub fn security_opt(r: &SeccompRecord) -> Option<String> {
        match r {
            SeccompRecord::Default => None,
            SeccompRecord::Unconfined => Some("seccomp=unconfined".into()),
            SeccompRecord::Profile { json, .. } => Some(format!("seccomp={json}")),
        }
    }
}

/// A compiled filter: BPF programs in the order they are installed (empty = unconfined).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    programs: Vec<Vec<libc::sock_filter>>,
    flags: libc::c_ulong,
}

impl Filter {
    /// No filter at all (`seccomp=unconfined`).
    pub const EMPTY: Filter = Filter {
        programs: Vec::new(),
        flags: 0,
    };

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }
    /// Instructions per program, for tests and the notes.
    pub fn lengths(&self) -> Vec<usize> {
        self.programs.iter().map(Vec::len).collect()
    }
}

/// Load `f` into the calling thread (no-op when empty). Needs CAP_SYS_ADMIN in the current
/// user namespace or no_new_privs; runs in the container's first process, so it allocates
/// nothing.
pub fn install(f: &Filter) -> Result<()> {
    for p in &f.programs {
        let prog = libc::sock_fprog {
            len: p.len() as u16,
            filter: p.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `p.len()` initialised instructions that outlive the call;
        // the kernel copies them and keeps no pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                f.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(nix::Error::last()));
        }
    }
    Ok(())
}

impl Filter {
    /// The kernel's decision for a native call `nr` with `args`, once this filter is installed.
    pub fn decide(&self, nr: u32, args: [u64; 6]) -> u32 {
        verdict(
            &self.programs,
            &Data {
                nr,
                arch: AUDIT_ARCH_X86_64,
                args,
            },
        )
    }
}

/// A syscall's native number by name (for tests and messages).
pub fn syscall_number(name: &str) -> Option<u32> {
    resolve(name).ok().flatten()
}

#[cfg(test)]
mod tests;
