//! The default profile's generated Rust form (default_rules.rs) and the range dispatch,
//! checked against default.json and against the rules themselves.

use super::*;

/// The expected answer for every syscall number, straight from the rules.
fn reference(p: &Profile, caps: u64, nr: u32) -> Option<u32> {
    let active: Vec<&Rule> = p.rules.iter().filter(|r| r.applies(caps, (6, 1))).collect();
    let rules: Vec<&&Rule> = active.iter().filter(|r| r.nrs.contains(&nr)).collect();
    if rules.iter().any(|r| !r.conds.is_empty()) {
        return None; // argument rules: covered by the tests above
    }
    let newest = active
        .iter()
        .flat_map(|r| r.nrs.iter().copied())
        .max()
        .unwrap();
    Some(match rules.first() {
        Some(r) => r.action.ret(),
        None if nr > newest && p.default != Action::Allow => ENOSYS,
        None => p.default.ret(),
    })
}

#[test]
fn range_dispatch_gives_every_syscall_number_its_rules_answer() {
    let p = Profile::parse(DEFAULT_JSON, DEFAULT_ORIGIN).unwrap();
    for c in [0, docker_default_caps(), caps(&["SYS_ADMIN", "SYS_PTRACE"])] {
        let f = compile(&p, c, (6, 1)).unwrap();
        for nr in 0..=syscalls::X86_64_MAX + 20 {
            if let Some(want) = reference(&p, c, nr) {
                assert_eq!(f.decide(nr, [0; 6]), want, "nr {nr} caps {c:#x}");
            }
        }
    }
    // More ranges than the dispatch takes: every other syscall allowed.
    let names: Vec<String> = syscalls::X86_64
        .iter()
        .filter(|(_, nr)| nr % 2 == 0)
        .map(|(n, _)| format!("{n:?}"))
        .collect();
    let p = profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":[{}],"action":"SCMP_ACT_ALLOW"}}]}}"#,
        names.join(",")
    ));
    let f = compile(&p, 0, (6, 1)).unwrap();
    for nr in 0..=syscalls::X86_64_MAX + 20 {
        assert_eq!(Some(f.decide(nr, [0; 6])), reference(&p, 0, nr), "nr {nr}");
    }
}

#[test]
fn the_default_profile_compiles_small() {
    // Ranges keep the filter short, which keeps the kernel's work at attach time small.
    let f = default_filter(docker_default_caps());
    let total: usize = f.lengths().iter().sum();
    assert!(total < 300, "{:?}", f.lengths());
}

/// default_rules.rs as it must be for default.json.
fn default_rules_source() -> String {
    use std::fmt::Write;
    let p = Profile::parse(DEFAULT_JSON, DEFAULT_ORIGIN).unwrap();
    assert!(!p.disabled && p.flags == 0);
    let action = |a: Action| match a {
        Action::Errno(e) => format!("Action::Errno({e})"),
        a => format!("Action::{a:?}"),
    };
    let when = |w: &Option<When>| match w {
        None => "None".to_string(),
        Some(w) => format!(
            "Some(StaticWhen {{ caps: {:#x}, arches: &[{}], min_kernel: {:?} }})",
            w.caps,
            w.arches
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            w.min_kernel
        ),
    };
    let mut o = String::new();
    o += "// @generated from default.json (x86_64): after editing it, run\n";
    o += "// `BOXKIT_BLESS=1 cargo test --lib run::seccomp::tests::generated::default_rules_match_default_json`.\n";
    o += "// The default profile validated, as Rust: starting a container parses no JSON and looks up\n";
    o += "// no syscall names. Each rule keeps its place (and its comment) from default.json.\n\n";
    o += "use super::profile::{Action, Cond, Op, StaticRule, StaticWhen};\n\n";
    writeln!(
        o,
        "pub(super) const DEFAULT: Action = {};\n",
        action(p.default)
    )
    .unwrap();
    o += "/// The rules, in default.json's order.\n";
    o += "pub(super) const RULES: &[StaticRule] = &[\n";
    let raw: serde_json::Value = serde_json::from_str(DEFAULT_JSON).unwrap();
    for (i, r) in p.rules.iter().enumerate() {
        if let Some(c) = raw["syscalls"][i]["comment"].as_str() {
            writeln!(o, "    // {c}").unwrap();
        }
        o += "    StaticRule {\n";
        let nrs: Vec<String> = r.nrs.iter().map(|n| n.to_string()).collect();
        o += "        nrs: &[";
        for (j, chunk) in nrs.chunks(20).enumerate() {
            if j > 0 {
                o += "\n            ";
            }
            o += &chunk.join(", ");
            o += ",";
        }
        o += "],\n";
        writeln!(o, "        action: {},", action(r.action)).unwrap();
        o += "        conds: &[";
        for c in &r.conds {
            write!(
                o,
                "Cond {{ index: {}, op: Op::{:?}, value: {:#x}, value_two: {:#x} }}, ",
                c.index, c.op, c.value, c.value_two
            )
            .unwrap();
        }
        o += "],\n";
        writeln!(o, "        includes: {},", when(&r.includes)).unwrap();
        writeln!(o, "        excludes: {},", when(&r.excludes)).unwrap();
        o += "    },\n";
    }
    o += "];\n\n";
    // The common case compiled ahead: docker's default capabilities on a kernel >= 4.8.
    let caps = docker_default_caps();
    let f = compile(&p, caps, (6, 1)).unwrap();
    assert_eq!(f.programs.len(), 1);
    o += "/// The capability set the precompiled filter is for (docker's default set).\n";
    writeln!(o, "pub(super) const PRECOMPILED_CAPS: u64 = {caps:#x};\n").unwrap();
    o += "/// The profile compiled for PRECOMPILED_CAPS on a kernel >= 4.8 (its only minKernel).\n";
    o += "pub(super) const PRECOMPILED: &[libc::sock_filter] = &[\n";
    for i in &f.programs[0] {
        writeln!(
            o,
            "    libc::sock_filter {{ code: {:#06x}, jt: {}, jf: {}, k: {:#010x} }},",
            i.code, i.jt, i.jf, i.k
        )
        .unwrap();
    }
    o += "];\n";
    o
}

#[test]
fn default_rules_match_default_json() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/run/seccomp/default_rules.rs"
    );
    let want = default_rules_source();
    if std::env::var_os("BOXKIT_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap();
    assert!(
        have == want,
        "src/run/seccomp/default_rules.rs is stale: run BOXKIT_BLESS=1 cargo test --lib \
         run::seccomp::tests::generated::default_rules_match_default_json"
    );
    // And what it builds is what the JSON says.
    let p = Profile::parse(DEFAULT_JSON, DEFAULT_ORIGIN).unwrap();
    let d = Profile::default_profile();
    assert_eq!((d.default, &d.rules), (p.default, &p.rules));
    // The precompiled filter is what compiling gives, and is used only where it applies.
    let caps = docker_default_caps();
    assert_eq!(default_rules::PRECOMPILED_CAPS, caps);
    let f = compile(&p, caps, (4, 8)).unwrap();
    assert_eq!(
        Seccomp::default_filter(caps, (4, 8)).unwrap().programs,
        f.programs
    );
    let g = Seccomp::default_filter(caps, (4, 4)).unwrap();
    assert_eq!(g.programs, compile(&p, caps, (4, 4)).unwrap().programs);
    assert_ne!(g.programs, f.programs);
    let h = Seccomp::default_filter(caps | cap_bit("SYS_ADMIN").unwrap(), (6, 1)).unwrap();
    assert_ne!(h.programs, f.programs);
}
