//! docker's seccomp JSON, and the validated profile it becomes ([`Profile`]): syscall names
//! resolved to native numbers, actions, argument comparisons, and the capability,
//! architecture and kernel conditions of `includes` and `excludes`.

use std::borrow::Cow;

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use serde::Deserialize;

use super::{DEFAULT_ORIGIN, Result, SeccompError, default_rules, syscalls};

// ---- docker's JSON ---------------------------------------------------------------------------

// Names borrow from the text where they can.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawProfile<'a> {
    #[serde(default)]
    pub(super) default_action: String,
    pub(super) default_errno_ret: Option<u32>,
    pub(super) architectures: Option<Vec<String>>,
    pub(super) arch_map: Option<Vec<RawArch>>,
    pub(super) flags: Option<Vec<String>>,
    pub(super) listener_path: Option<String>,
    #[serde(borrow)]
    pub(super) syscalls: Option<Vec<RawSyscall<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawArch {
    pub(super) architecture: String,
    pub(super) sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSyscall<'a> {
    pub(super) name: Option<String>,
    #[serde(borrow)]
    pub(super) names: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    pub(super) action: Cow<'a, str>,
    pub(super) errno_ret: Option<u32>,
    pub(super) args: Option<Vec<RawArg>>,
    pub(super) includes: Option<RawCondition>,
    pub(super) excludes: Option<RawCondition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawArg {
    pub(super) index: u32,
    pub(super) value: u64,
    #[serde(default)]
    pub(super) value_two: u64,
    pub(super) op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawCondition {
    pub(super) caps: Option<Vec<String>>,
    pub(super) arches: Option<Vec<String>>,
    pub(super) min_kernel: Option<String>,
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
    pub(super) fn to_seccompiler(self) -> SeccompAction {
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
pub(super) enum Op {
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
pub(super) struct Cond {
    pub(super) index: u8,
    pub(super) op: Op,
    pub(super) value: u64,
    pub(super) value_two: u64,
}

/// A rule's `includes` or `excludes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct When {
    /// Capability bits (see [`crate::run::caps::NAMES`]).
    pub(super) caps: u64,
    pub(super) arches: Vec<String>,
    pub(super) min_kernel: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rule {
    /// Native syscall numbers (names of other architectures already dropped).
    pub(super) nrs: Vec<u32>,
    pub(super) action: Action,
    pub(super) conds: Vec<Cond>,
    pub(super) includes: Option<When>,
    pub(super) excludes: Option<When>,
}

/// A rule as constant data: the generated default profile (`default_rules.rs`) is a table
/// of these, made into [`Rule`]s when a container needs the profile compiled.
pub(super) struct StaticRule {
    pub(super) nrs: &'static [u32],
    pub(super) action: Action,
    pub(super) conds: &'static [Cond],
    pub(super) includes: Option<StaticWhen>,
    pub(super) excludes: Option<StaticWhen>,
}

/// [`When`] as constant data.
pub(super) struct StaticWhen {
    pub(super) caps: u64,
    pub(super) arches: &'static [&'static str],
    pub(super) min_kernel: Option<(u32, u32)>,
}

impl StaticWhen {
    fn to_when(&self) -> When {
        When {
            caps: self.caps,
            arches: self.arches.iter().map(|a| a.to_string()).collect(),
            min_kernel: self.min_kernel,
        }
    }
}

impl StaticRule {
    pub(super) fn to_rule(&self) -> Rule {
        Rule {
            nrs: self.nrs.to_vec(),
            action: self.action,
            conds: self.conds.to_vec(),
            includes: self.includes.as_ref().map(StaticWhen::to_when),
            excludes: self.excludes.as_ref().map(StaticWhen::to_when),
        }
    }
}

/// A validated profile in docker's format.
#[derive(Debug, Clone)]
pub struct Profile {
    pub(super) origin: String,
    pub(super) text: String,
    /// No default action and no rules: docker takes that as "no filter".
    pub(super) disabled: bool,
    pub(super) default: Action,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    pub(super) flags: libc::c_ulong,
    pub(super) rules: Vec<Rule>,
}

/// The architecture names docker's `includes`/`excludes` use (Go's names, via libseccomp's).
pub(super) const NATIVE_ARCH: &str = "amd64";

pub(super) fn action(
    name: &str,
    errno: Option<u32>,
    what: &str,
) -> std::result::Result<Action, String> {
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

pub(super) fn op(name: &str, what: &str) -> std::result::Result<Op, String> {
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
pub(super) fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    let v = (a.parse().ok()?, b.parse().ok()?);
    (v != (0, 0)).then_some(v)
}

pub(super) fn cap_bit(name: &str) -> Option<u64> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    crate::run::caps::NAMES
        .iter()
        .position(|c| *c == n)
        .map(|i| 1u64 << i)
}

/// A syscall name: its native number, None for a name of another architecture, Err if no
/// architecture has it.
pub(super) fn resolve(name: &str) -> std::result::Result<Option<u32>, ()> {
    if let Ok(i) = syscalls::X86_64.binary_search_by(|(n, _)| (*n).cmp(name)) {
        return Ok(Some(syscalls::X86_64[i].1));
    }
    if syscalls::OTHER_ARCHES.binary_search(&name).is_ok() {
        return Ok(None);
    }
    Err(())
}

pub(super) fn when(raw: &RawCondition, what: &str) -> std::result::Result<When, String> {
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
            rules: default_rules::RULES
                .iter()
                .map(StaticRule::to_rule)
                .collect(),
        }
    }

    pub(super) fn validate(
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
pub(super) fn kernel_version() -> (u32, u32) {
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
    pub(super) fn applies(&self, caps: u64, kernel: (u32, u32)) -> bool {
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
    pub(super) fn alternatives(&self) -> Option<Vec<SeccompRule>> {
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
