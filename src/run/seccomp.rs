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

#[rustfmt::skip]
mod default_rules;
mod syscalls;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use serde::Deserialize;
use thiserror::Error;

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

// ---- docker's JSON ---------------------------------------------------------------------------

// Names borrow from the text where they can.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile<'a> {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<RawArch>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    #[serde(borrow)]
    syscalls: Option<Vec<RawSyscall<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArch {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSyscall<'a> {
    name: Option<String>,
    #[serde(borrow)]
    names: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    action: Cow<'a, str>,
    errno_ret: Option<u32>,
    args: Option<Vec<RawArg>>,
    includes: Option<RawCondition>,
    excludes: Option<RawCondition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCondition {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

// ---- the validated profile -------------------------------------------------------------------

/// What a filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Log,
    Allow,
}

impl Action {
    fn to_seccompiler(self) -> SeccompAction {
        match self {
            Action::KillProcess => SeccompAction::KillProcess,
            Action::KillThread => SeccompAction::KillThread,
            Action::Trap => SeccompAction::Trap,
            Action::Errno(e) => SeccompAction::Errno(e.into()),
            Action::Log => SeccompAction::Log,
            Action::Allow => SeccompAction::Allow,
        }
    }

    /// The kernel's return value.
    pub fn ret(self) -> u32 {
        self.to_seccompiler().into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == datum`: docker's `value` is the mask, `valueTwo` the datum.
    MaskedEq,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cond {
    index: u8,
    op: Op,
    value: u64,
    value_two: u64,
}

/// A rule's `includes` or `excludes`.
#[derive(Debug, Clone, Default, PartialEq)]
struct When {
    /// Capability bits (see [`super::caps::NAMES`]).
    caps: u64,
    arches: Vec<String>,
    min_kernel: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    /// Native syscall numbers (names of other architectures already dropped).
    nrs: Vec<u32>,
    action: Action,
    conds: Vec<Cond>,
    includes: Option<When>,
    excludes: Option<When>,
}

/// A validated profile in docker's format.
#[derive(Debug, Clone)]
pub struct Profile {
    origin: String,
    text: String,
    /// No default action and no rules: docker takes that as "no filter".
    disabled: bool,
    default: Action,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    flags: libc::c_ulong,
    rules: Vec<Rule>,
}

/// The architecture names docker's `includes`/`excludes` use (Go's names, via libseccomp's).
const NATIVE_ARCH: &str = "amd64";

fn action(name: &str, errno: Option<u32>, what: &str) -> std::result::Result<Action, String> {
    let errno_of = |e: Option<u32>| -> std::result::Result<u16, String> {
        match e {
            None => Ok(libc::EPERM as u16),
            Some(n) if n <= 4095 => Ok(n as u16),
            Some(n) => Err(format!("{what}: errno {n} is out of range (0..4095)")),
        }
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno_of(errno)?),
        // libseccomp's SCMP_ACT_KILL is KILL_THREAD.
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_NOTIFY" | "SCMP_ACT_TRACE" => {
            return Err(format!(
                "{what}: {name} is not supported: it needs a seccomp agent or a tracer, which \
                 boxkit does not run; use SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP \
                 or SCMP_ACT_LOG"
            ));
        }
        "" => return Err(format!("{what}: the action is missing")),
        other => {
            return Err(format!(
                "{what}: unknown action {other:?} (expected SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, \
                 SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP or \
                 SCMP_ACT_LOG)"
            ));
        }
    })
}

fn op(name: &str, what: &str) -> std::result::Result<Op, String> {
    Ok(match name {
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        other => {
            return Err(format!(
                "{what}: unknown comparison {other:?} (expected SCMP_CMP_EQ, SCMP_CMP_NE, \
                 SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ)"
            ));
        }
    })
}

/// `"4.8"` → (4, 8), as docker reads minKernel (kernel and major revision only).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    let v = (a.parse().ok()?, b.parse().ok()?);
    (v != (0, 0)).then_some(v)
}

fn cap_bit(name: &str) -> Option<u64> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    super::caps::NAMES
        .iter()
        .position(|c| *c == n)
        .map(|i| 1u64 << i)
}

/// A syscall name: its native number, None for a name of another architecture, Err if no
/// architecture has it.
fn resolve(name: &str) -> std::result::Result<Option<u32>, ()> {
    if let Ok(i) = syscalls::X86_64.binary_search_by(|(n, _)| (*n).cmp(name)) {
        return Ok(Some(syscalls::X86_64[i].1));
    }
    if syscalls::OTHER_ARCHES.binary_search(&name).is_ok() {
        return Ok(None);
    }
    Err(())
}

fn when(raw: &RawCondition, what: &str) -> std::result::Result<When, String> {
    let mut w = When::default();
    for c in raw.caps.iter().flatten() {
        w.caps |= cap_bit(c).ok_or_else(|| format!("{what}: unknown capability {c:?}"))?;
    }
    w.arches = raw.arches.clone().unwrap_or_default();
    if let Some(k) = raw.min_kernel.as_deref().filter(|k| !k.is_empty()) {
        w.min_kernel = Some(parse_kernel(k).ok_or_else(|| {
            format!("{what}: invalid minKernel {k:?}: expected \"<kernel>.<major>\", e.g. \"4.8\"")
        })?);
    }
    Ok(w)
}

impl Profile {
    /// Parse and validate docker's JSON. `origin` names the profile in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let raw: RawProfile = serde_json::from_str(text).map_err(|cause| SeccompError::Json {
            origin: origin.to_string(),
            cause,
        })?;
        Self::validate(raw, text, origin).map_err(|what| SeccompError::Invalid {
            origin: origin.to_string(),
            what,
        })
    }

    /// boxkit's default profile (default.json, already validated, in its Rust form).
    pub fn default_profile() -> Profile {
        Profile {
            origin: DEFAULT_ORIGIN.to_string(),
            text: String::new(),
            disabled: false,
            default: default_rules::DEFAULT,
            flags: 0,
            rules: default_rules::rules(),
        }
    }

    fn validate(
        raw: RawProfile<'_>,
        text: &str,
        origin: &str,
    ) -> std::result::Result<Profile, String> {
        let mut p = Profile {
            origin: origin.to_string(),
            text: text.to_string(),
            disabled: false,
            default: Action::Allow,
            flags: 0,
            rules: Vec::new(),
        };
        let syscalls = raw.syscalls.unwrap_or_default();
        if raw.default_action.is_empty() && syscalls.is_empty() {
            p.disabled = true;
            return Ok(p);
        }
        if raw.listener_path.as_deref().is_some_and(|l| !l.is_empty()) {
            return Err("listenerPath is not supported: boxkit runs no seccomp agent".into());
        }
        p.default = action(&raw.default_action, raw.default_errno_ret, "defaultAction")?;
        if raw.architectures.as_ref().is_some_and(|a| !a.is_empty())
            && raw.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err("both 'architectures' and 'archMap' are given; use one of them".into());
        }
        let arches =
            raw.architectures
                .iter()
                .flatten()
                .chain(raw.arch_map.iter().flatten().flat_map(|a| {
                    std::iter::once(&a.architecture).chain(a.sub_architectures.iter().flatten())
                }));
        for a in arches {
            if !a.starts_with("SCMP_ARCH_") {
                return Err(format!("unknown architecture {a:?} (expected SCMP_ARCH_*)"));
            }
        }
        for f in raw.flags.iter().flatten() {
            p.flags |= match f.as_str() {
                "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                "SECCOMP_FILTER_FLAG_TSYNC" => 0, // one thread: nothing to synchronise
                other => {
                    return Err(format!(
                        "unsupported flag {other:?} (boxkit supports SECCOMP_FILTER_FLAG_LOG \
                         and SECCOMP_FILTER_FLAG_SPEC_ALLOW)"
                    ));
                }
            };
        }
        for (i, s) in syscalls.into_iter().enumerate() {
            let what = format!("syscalls[{i}]");
            let names = match (s.name, s.names) {
                (Some(_), Some(n)) if !n.is_empty() => {
                    return Err(format!("{what}: both 'name' and 'names' are given"));
                }
                (Some(n), _) => vec![Cow::Owned(n)],
                (None, Some(n)) => n,
                (None, None) => Vec::new(),
            };
            if names.is_empty() {
                return Err(format!("{what}: no syscall names"));
            }
            let mut nrs = Vec::new();
            for n in &names {
                match resolve(n) {
                    Ok(Some(nr)) => nrs.push(nr),
                    Ok(None) => {}
                    Err(()) => {
                        return Err(format!(
                            "{what}: unknown syscall {n:?} (not a Linux system call on any \
                             architecture)"
                        ));
                    }
                }
            }
            let action = action(&s.action, s.errno_ret, &what)?;
            let mut conds = Vec::new();
            for (j, a) in s.args.iter().flatten().enumerate() {
                let w = format!("{what}.args[{j}]");
                if a.index > 5 {
                    return Err(format!(
                        "{w}: argument index {} is out of range (0..5)",
                        a.index
                    ));
                }
                conds.push(Cond {
                    index: a.index as u8,
                    op: op(&a.op, &w)?,
                    value: a.value,
                    value_two: a.value_two,
                });
            }
            let includes = s
                .includes
                .as_ref()
                .map(|c| when(c, &format!("{what}.includes")))
                .transpose()?;
            let excludes = s
                .excludes
                .as_ref()
                .map(|c| when(c, &format!("{what}.excludes")))
                .transpose()?;
            p.rules.push(Rule {
                nrs,
                action,
                conds,
                includes,
                excludes,
            });
        }
        Ok(p)
    }
}

/// The running kernel's version as docker compares it: (kernel, major revision).
fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| {
            let r = u.release().to_string_lossy().into_owned();
            let mut it = r.split(|c: char| !c.is_ascii_digit());
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .unwrap_or((0, 0))
}

impl Rule {
    /// Whether the rule applies to a container with `caps` on a kernel `kernel`, by docker's
    /// rules: `excludes` drops it when any of its conditions holds (an arch listed, any cap
    /// listed held, kernel at least minKernel); `includes` keeps it only when all hold (arch
    /// listed, every cap listed held, kernel at least minKernel).
    fn applies(&self, caps: u64, kernel: (u32, u32)) -> bool {
        if let Some(x) = &self.excludes
            && (x.arches.iter().any(|a| a == NATIVE_ARCH)
                || x.caps & caps != 0
                || x.min_kernel.is_some_and(|m| kernel >= m))
        {
            return false;
        }
        if let Some(i) = &self.includes
            && ((!i.arches.is_empty() && !i.arches.iter().any(|a| a == NATIVE_ARCH))
                || i.caps & caps != i.caps
                || i.min_kernel.is_some_and(|m| kernel < m))
        {
            return false;
        }
        true
    }

    /// The rule as seccompiler rules (alternatives); `None` = matches unconditionally,
    /// `Some(vec![])` = can never match.
    fn alternatives(&self) -> Option<Vec<SeccompRule>> {
        if self.conds.is_empty() {
            return None;
        }
        let cond = |c: &Cond| -> Option<SeccompCondition> {
            let (op, value) = match c.op {
                Op::Eq => (SeccompCmpOp::Eq, c.value),
                Op::Ne => (SeccompCmpOp::Ne, c.value),
                Op::Lt => (SeccompCmpOp::Lt, c.value),
                Op::Le => (SeccompCmpOp::Le, c.value),
                Op::Gt => (SeccompCmpOp::Gt, c.value),
                Op::Ge => (SeccompCmpOp::Ge, c.value),
                // seccompiler compares (arg & mask) with (datum & mask); a datum with bits
                // outside the mask can never equal (arg & mask), so that comparison is false.
                Op::MaskedEq if c.value_two & !c.value != 0 => return None,
                Op::MaskedEq => (SeccompCmpOp::MaskedEq(c.value), c.value_two),
            };
            // Index ≤ 5 was checked when parsing; the 64-bit compare is libseccomp's.
            SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, value).ok()
        };
        let mut seen = [0u8; 6];
        for c in &self.conds {
            seen[c.index as usize] += 1;
        }
        let rules = if seen.iter().any(|n| *n > 1) {
            // runc: the same argument compared twice → each comparison is its own rule.
            self.conds
                .iter()
                .filter_map(cond)
                .filter_map(|c| SeccompRule::new(vec![c]).ok())
                .collect()
        } else {
            match self.conds.iter().map(cond).collect::<Option<Vec<_>>>() {
                Some(all) => SeccompRule::new(all).into_iter().collect(),
                None => Vec::new(),
            }
        };
        Some(rules)
    }
}

// ---- compiling ---------------------------------------------------------------------------------

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

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscalls are x86_64's audit architecture with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const BPF_MAXINSNS: usize = 4096;

/// Per syscall number: None = some rule matches it unconditionally, else the alternatives.
type RuleMap = BTreeMap<u32, Option<Vec<SeccompRule>>>;

fn add(map: &mut RuleMap, nr: u32, alts: Option<Vec<SeccompRule>>) {
    match (map.get_mut(&nr), alts) {
        (Some(slot), None) => *slot = None,
        (Some(Some(v)), Some(mut more)) => v.append(&mut more),
        (Some(None), Some(_)) => {}
        (None, a) => {
            map.insert(nr, a);
        }
    }
}

/// At most this many ranges go into a filter's range dispatch (its jumps to the shared
/// returns must fit the 8-bit offsets of conditional jumps: about two instructions per range).
const MAX_RANGES: usize = 100;

/// Where a dispatch jump goes: over `n` instructions, to the shared return of action `i`, or
/// past the dispatch to seccompiler's code.
#[derive(Clone, Copy)]
enum To {
    Skip(usize),
    Ret(usize),
    Body,
}

/// A binary search over sorted, disjoint ranges `(lo, hi, return index)`, for numbers with
/// `hi(before) < nr <= hi(last)`: inner nodes split on a range's upper end, a leaf checks its
/// range's lower end.
fn range_tree(r: &[(u32, u32, usize)]) -> Vec<(u16, u32, To, To)> {
    if let [(lo, _, ret)] = r {
        return vec![(JGE, *lo, To::Ret(*ret), To::Body)];
    }
    let m = r.len() / 2;
    let (left, right) = (range_tree(&r[..m]), range_tree(&r[m..]));
    let mut v = vec![(JGT, r[m - 1].1, To::Skip(left.len()), To::Skip(0))];
    v.extend(left);
    v.extend(right);
    v
}

/// Code that answers the calls in `fixed` with their action and lets anything else through.
fn range_dispatch(fixed: &BTreeMap<u32, Action>) -> Vec<libc::sock_filter> {
    let mut rets: Vec<Action> = Vec::new();
    let mut ranges: Vec<(u32, u32, usize)> = Vec::new();
    for (&nr, &a) in fixed {
        let i = rets.iter().position(|r| *r == a).unwrap_or_else(|| {
            rets.push(a);
            rets.len() - 1
        });
        match ranges.last_mut() {
            Some((_, hi, r)) if *hi + 1 == nr && *r == i => *hi = nr,
            _ => ranges.push((nr, nr, i)),
        }
    }
    let last = ranges.last().map_or(0, |r| r.1);
    let mut code = vec![(JGT, last, To::Body, To::Skip(0))];
    code.extend(range_tree(&ranges));
    // Layout: ld nr, the jumps, one ret per action; seccompiler's code follows.
    let ret_at = code.len();
    let offset = |i: usize, t: To| -> u8 {
        let n = match t {
            To::Skip(n) => n,
            To::Ret(r) => ret_at + r - i - 1,
            To::Body => ret_at + rets.len() - i - 1,
        };
        u8::try_from(n).expect("MAX_RANGES keeps jumps short")
    };
    let mut ins = vec![LD_NR];
    for (i, (op, k, jt, jf)) in code.iter().enumerate() {
        ins.push(jump(*op, *k, offset(i, *jt), offset(i, *jf)));
    }
    ins.extend(rets.iter().map(|a| stmt(RET, a.ret())));
    ins
}

/// The number of ranges of consecutive numbers with one action in `fixed`.
fn count_ranges(fixed: &BTreeMap<u32, Action>) -> usize {
    let mut prev: Option<(u32, Action)> = None;
    let mut n = 0;
    for (&nr, &a) in fixed {
        if prev != Some((nr.wrapping_sub(1), a)) {
            n += 1;
        }
        prev = Some((nr, a));
    }
    n
}

/// One seccompiler filter: `on_match` for the calls in `map`, `otherwise` for the rest.
fn to_bpf(
    map: RuleMap,
    on_match: Action,
    otherwise: Action,
    origin: &str,
) -> Result<Vec<libc::sock_filter>> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = map
        .into_iter()
        .filter(|(_, alts)| alts.as_ref().is_none_or(|v| !v.is_empty()))
        .map(|(nr, alts)| (i64::from(nr), alts.unwrap_or_default()))
        .collect();
    let err = |e: seccompiler::BackendError| SeccompError::Compile {
        origin: origin.to_string(),
        what: e.to_string(),
    };
    let f = SeccompFilter::new(
        rules,
        otherwise.to_seccompiler(),
        on_match.to_seccompiler(),
        seccompiler::TargetArch::x86_64,
    )
    .map_err(err)?;
    let prog: seccompiler::BpfProgram = f.try_into().map_err(err)?;
    Ok(prog
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

/// Insert instructions after seccompiler's architecture check (its first three instructions:
/// load arch, jump over the kill when it is x86_64, kill). No jump crosses that point except
/// the one landing on it, so the program's other offsets stay valid.
fn insert_after_arch_check(prog: &mut Vec<libc::sock_filter>, ins: Vec<libc::sock_filter>) {
    debug_assert!(prog.len() >= 3 && prog[1].k == AUDIT_ARCH_X86_64 && prog[1].jt == 1);
    prog.splice(3..3, ins);
}

const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
const LD_NR: libc::sock_filter = stmt(
    (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
    0, // offsetof(struct seccomp_data, nr)
);
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Boxkit's checks in front of a filter: kill x32 calls, and with `newest` (the newest
/// syscall the profile names) answer ENOSYS to newer calls.
fn checks(newest: Option<u32>) -> Vec<libc::sock_filter> {
    let mut ins = vec![
        LD_NR,
        // An x32 number: kill, as seccompiler does for other ABIs. -1 (a call a tracer
        // skipped) also has the bit; it goes on to the rules.
        jump(JSET, X32_SYSCALL_BIT, 0, 2),
        jump(JEQ, u32::MAX, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if let Some(n) = newest {
        ins.push(jump(JGT, n, 0, 1));
        ins.push(stmt(RET, Action::Errno(libc::ENOSYS as u16).ret()));
    }
    ins
}

/// The kernel's order of restrictiveness (lower wins).
fn severity(a: Action) -> i32 {
    (a.ret() & libc::SECCOMP_RET_ACTION_FULL) as i32
}

/// Compile `p` for a container holding `caps` on kernel version `kernel`.
///
/// Calls that only unconditional rules name have one answer whatever their arguments: the
/// most restrictive action of those rules (on a tie the first rule's). The last filter
/// answers them directly, by a binary search over ranges of consecutive numbers in front of
/// seccompiler's code. Only calls with argument rules go through the stack described in the
/// module documentation; for docker's default profile that is `socket`, `personality` and
/// `clone`, so it compiles to one filter of ~150 instructions (seccompiler's linear code for
/// all ~370 calls would be ~1,600, and the kernel emulates a filter for every syscall number
/// when it is attached, which would cost hundreds of microseconds per container start).
pub fn compile(p: &Profile, caps: u64, kernel: (u32, u32)) -> Result<Filter> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::Arch);
    }
    if p.disabled {
        return Ok(Filter::default());
    }
    let active: Vec<&Rule> = p.rules.iter().filter(|r| r.applies(caps, kernel)).collect();
    // runc: the ENOSYS stub covers calls above the newest one the (active) rules name.
    let newest = active.iter().flat_map(|r| r.nrs.iter().copied()).max();
    let rules: Vec<&&Rule> = active.iter().filter(|r| r.action != p.default).collect();
    let conditional: std::collections::BTreeSet<u32> = rules
        .iter()
        .filter(|r| !r.conds.is_empty())
        .flat_map(|r| r.nrs.iter().copied())
        .collect();
    let mut fixed: BTreeMap<u32, Action> = BTreeMap::new();
    for r in &rules {
        for nr in r.nrs.iter().filter(|nr| !conditional.contains(nr)) {
            let a = fixed.entry(*nr).or_insert(r.action);
            if severity(r.action) < severity(*a) {
                *a = r.action;
            }
        }
    }
    // Too many ranges for the dispatch: the rest take the stacked path.
    let mut stacked = conditional;
    while count_ranges(&fixed) > MAX_RANGES {
        if let Some((nr, _)) = fixed.pop_last() {
            stacked.insert(nr);
        }
    }
    let mut base = RuleMap::new();
    // Non-ALLOW actions in order of first appearance.
    let mut actions: Vec<(Action, RuleMap)> = Vec::new();
    for r in &rules {
        let nrs: Vec<u32> = r
            .nrs
            .iter()
            .copied()
            .filter(|n| stacked.contains(n))
            .collect();
        if nrs.is_empty() {
            continue;
        }
        let alts = r.alternatives();
        if p.default != Action::Allow {
            for &nr in &nrs {
                add(&mut base, nr, alts.clone());
            }
        }
        if r.action == Action::Allow {
            continue;
        }
        let i = match actions.iter().position(|(a, _)| *a == r.action) {
            Some(i) => i,
            None => {
                actions.push((r.action, RuleMap::new()));
                actions.len() - 1
            }
        };
        for &nr in &nrs {
            add(&mut actions[i].1, nr, alts.clone());
        }
    }
    let mut programs = Vec::new();
    // Reverse: on an errno tie the newest filter wins, and it should be the earliest rule.
    for (a, map) in actions.into_iter().rev() {
        programs.push(to_bpf(map, a, Action::Allow, &p.origin)?);
    }
    // The last filter: fixed answers, then the base (rules → ALLOW, else the default).
    let enosys = match p.default {
        Action::Allow | Action::Log => None,
        Action::Errno(e) if i32::from(e) == libc::ENOSYS => None,
        _ => newest,
    };
    let mut last = if p.default == Action::Allow {
        to_bpf(
            RuleMap::new(),
            Action::KillProcess,
            Action::Allow,
            &p.origin,
        )?
    } else {
        to_bpf(base, Action::Allow, p.default, &p.origin)?
    };
    let mut front = checks(enosys);
    if !fixed.is_empty() {
        front.extend(range_dispatch(&fixed));
    }
    insert_after_arch_check(&mut last, front);
    programs.push(last);
    if let Some(n) = programs.iter().map(Vec::len).find(|n| *n > BPF_MAXINSNS) {
        return Err(SeccompError::Compile {
            origin: p.origin.clone(),
            what: format!(
                "a filter needs {n} BPF instructions, more than the kernel's {BPF_MAXINSNS}"
            ),
        });
    }
    let f = Filter {
        programs,
        flags: p.flags,
    };
    // Each filter but the first is installed with seccomp(2) under the ones before it.
    for k in 1..f.programs.len() {
        let call = Data {
            nr: libc::SYS_seccomp as u32,
            arch: AUDIT_ARCH_X86_64,
            args: [
                u64::from(libc::SECCOMP_SET_MODE_FILTER),
                f.flags,
                0,
                0,
                0,
                0,
            ],
        };
        let verdict = verdict(&f.programs[..k], &call);
        // Signed, as the kernel compares: KILL_PROCESS is 0x80000000.
        if ((verdict & libc::SECCOMP_RET_ACTION_FULL) as i32) < libc::SECCOMP_RET_LOG as i32 {
            return Err(SeccompError::Compile {
                origin: p.origin.clone(),
                what: "the profile denies seccomp(2) itself, which boxkit needs to install \
                       the profile's filters (one per action); allow seccomp"
                    .into(),
            });
        }
    }
    Ok(f)
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

// ---- a classic-BPF evaluator, as the kernel runs filters ----------------------------------------

/// The part of `struct seccomp_data` filters look at (the instruction pointer never matters).
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0,
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let a = self.args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => 0,
        }
    }
}

/// Run one program on `d` (the instructions seccompiler and [`add_checks`] emit).
fn run_one(prog: &[libc::sock_filter], d: &Data) -> u32 {
    let (mut pc, mut acc) = (0usize, 0u32);
    while let Some(i) = prog.get(pc) {
        let code = u32::from(i.code);
        pc += 1;
        match code & 0x07 {
            libc::BPF_LD => acc = d.word(i.k),
            libc::BPF_ALU if code & 0xf0 == libc::BPF_AND => acc &= i.k,
            libc::BPF_JMP => {
                let taken = match code & 0xf0 {
                    libc::BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    libc::BPF_JEQ => acc == i.k,
                    libc::BPF_JGT => acc > i.k,
                    libc::BPF_JGE => acc >= i.k,
                    libc::BPF_JSET => acc & i.k != 0,
                    _ => return libc::SECCOMP_RET_KILL_PROCESS,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            libc::BPF_RET => return i.k,
            _ => return libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
    libc::SECCOMP_RET_KILL_PROCESS
}

/// What the kernel decides for `d` with `installed` (oldest first): seccomp_run_filters runs
/// them newest first and keeps a result only when its action is strictly more restrictive.
pub fn verdict(installed: &[Vec<libc::sock_filter>], d: &Data) -> u32 {
    let action_only = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for p in installed.iter().rev() {
        let cur = run_one(p, d);
        if action_only(cur) < action_only(ret) {
            ret = cur;
        }
    }
    ret
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
