//! Compiling a [`Profile`] into classic BPF: unconditional calls answered by a binary search
//! over ranges in front of seccompiler's code, the rest as stacked seccompiler filters (see
//! the module documentation of [`super`]).

use std::collections::BTreeMap;

use seccompiler::{SeccompFilter, SeccompRule};

use super::eval::{Data, verdict};
use super::profile::{Action, Profile, Rule};
use super::{Filter, Result, SeccompError};

pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscalls are x86_64's audit architecture with this bit set in the number.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;
pub(super) const BPF_MAXINSNS: usize = 4096;

/// Per syscall number: None = some rule matches it unconditionally, else the alternatives.
pub(super) type RuleMap = BTreeMap<u32, Option<Vec<SeccompRule>>>;

pub(super) fn add(map: &mut RuleMap, nr: u32, alts: Option<Vec<SeccompRule>>) {
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
pub(super) const MAX_RANGES: usize = 100;

/// Where a dispatch jump goes: over `n` instructions, to the shared return of action `i`, or
/// past the dispatch to seccompiler's code.
#[derive(Clone, Copy)]
pub(super) enum To {
    Skip(usize),
    Ret(usize),
    Body,
}

/// A binary search over sorted, disjoint ranges `(lo, hi, return index)`, for numbers with
/// `hi(before) < nr <= hi(last)`: inner nodes split on a range's upper end, a leaf checks its
/// range's lower end.
pub(super) fn range_tree(r: &[(u32, u32, usize)]) -> Vec<(u16, u32, To, To)> {
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
pub(super) fn range_dispatch(fixed: &BTreeMap<u32, Action>) -> Vec<libc::sock_filter> {
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
pub(super) fn count_ranges(fixed: &BTreeMap<u32, Action>) -> usize {
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
pub(super) fn to_bpf(
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
pub(super) fn insert_after_arch_check(
    prog: &mut Vec<libc::sock_filter>,
    ins: Vec<libc::sock_filter>,
) {
    debug_assert!(prog.len() >= 3 && prog[1].k == AUDIT_ARCH_X86_64 && prog[1].jt == 1);
    prog.splice(3..3, ins);
}

pub(super) const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
pub(super) const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}
pub(super) const LD_NR: libc::sock_filter = stmt(
    (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
    0, // offsetof(struct seccomp_data, nr)
);
pub(super) const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
pub(super) const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
pub(super) const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
pub(super) const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
pub(super) const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Boxkit's checks in front of a filter: kill x32 calls, and with `newest` (the newest
/// syscall the profile names) answer ENOSYS to newer calls.
pub(super) fn checks(newest: Option<u32>) -> Vec<libc::sock_filter> {
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
pub(super) fn severity(a: Action) -> i32 {
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
    let rules: Vec<&Rule> = active
        .into_iter()
        .filter(|r| r.action != p.default)
        .collect();
    let (fixed, stacked) = split_fixed(&rules);
    let (base, actions) = stacked_maps(p, &rules, &stacked);
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
    check_stackable(&f, &p.origin)?;
    Ok(f)
}

/// The calls only unconditional rules name, with their one answer (the range dispatch), and
/// the calls left to the stacked filters (argument rules, and what does not fit the dispatch).
fn split_fixed(rules: &[&Rule]) -> (BTreeMap<u32, Action>, std::collections::BTreeSet<u32>) {
    let conditional: std::collections::BTreeSet<u32> = rules
        .iter()
        .filter(|r| !r.conds.is_empty())
        .flat_map(|r| r.nrs.iter().copied())
        .collect();
    let mut fixed: BTreeMap<u32, Action> = BTreeMap::new();
    for r in rules {
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
    (fixed, stacked)
}

/// The rules for the `stacked` calls: the base filter's (every rule → ALLOW; empty when the
/// default is ALLOW) and one map per non-ALLOW action, in order of first appearance.
fn stacked_maps(
    p: &Profile,
    rules: &[&Rule],
    stacked: &std::collections::BTreeSet<u32>,
) -> (RuleMap, Vec<(Action, RuleMap)>) {
    let mut base = RuleMap::new();
    let mut actions: Vec<(Action, RuleMap)> = Vec::new();
    for r in rules {
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
    (base, actions)
}

/// Each filter but the first is installed with seccomp(2) under the ones before it: refuse a
/// profile whose earlier filters would stop that.
fn check_stackable(f: &Filter, origin: &str) -> Result<()> {
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
                origin: origin.to_string(),
                what: "the profile denies seccomp(2) itself, which boxkit needs to install \
                       the profile's filters (one per action); allow seccomp"
                    .into(),
            });
        }
    }
    Ok(())
}
