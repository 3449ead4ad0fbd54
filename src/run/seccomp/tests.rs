//! The parser, the compiler and the stacking, evaluated with the same rule the kernel's
//! seccomp_run_filters applies (see [`super::verdict`]); no kernel needed.

use super::bpf::*;
use super::profile::*;
use super::*;

const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap_or_else(|| panic!("{name} is not an x86_64 syscall"))
}

fn profile(json: &str) -> Profile {
    Profile::parse(json, "test.json").unwrap()
}

fn caps(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| cap_bit(n).unwrap())
        .fold(0, |a, b| a | b)
}

fn docker_default_caps() -> u64 {
    crate::run::caps::resolve(&[], &[]).unwrap()
}

fn default_filter(caps: u64) -> Filter {
    compile(
        &Profile::parse(DEFAULT_JSON, DEFAULT_ORIGIN).unwrap(),
        caps,
        (6, 1),
    )
    .unwrap()
}

fn call(f: &Filter, name: &str, args: &[u64]) -> u32 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    f.decide(nr(name), a)
}

#[test]
fn syscall_tables_are_sorted_and_disjoint() {
    assert!(syscalls::X86_64.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(syscalls::OTHER_ARCHES.windows(2).all(|w| w[0] < w[1]));
    for (n, _) in syscalls::X86_64 {
        assert!(
            syscalls::OTHER_ARCHES.binary_search(n).is_err(),
            "{n} in both"
        );
    }
    assert_eq!(nr("read"), 0);
    assert_eq!(nr("keyctl"), 250);
    assert_eq!(nr("clone3"), 435);
    assert_eq!(
        syscalls::X86_64.iter().map(|e| e.1).max(),
        Some(syscalls::X86_64_MAX)
    );
}

#[test]
fn default_profile_denies_keyctl_and_namespaces_with_eperm() {
    let f = default_filter(docker_default_caps());
    for s in [
        "keyctl",
        "add_key",
        "request_key",
        "unshare",
        "setns",
        "mount",
        "umount2",
    ] {
        assert_eq!(call(&f, s, &[]), EPERM, "{s}");
    }
    for s in [
        "read",
        "write",
        "execve",
        "mkdir",
        "setresuid",
        "capset",
        "prctl",
        "close_range",
    ] {
        assert_eq!(call(&f, s, &[]), ALLOW, "{s}");
    }
}

#[test]
fn default_profile_clone_needs_no_namespace_flags_and_clone3_is_enosys() {
    let f = default_filter(docker_default_caps());
    let fork_flags = (libc::SIGCHLD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(call(&f, "clone", &[fork_flags]), ALLOW);
    let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
    assert_eq!(call(&f, "clone", &[thread]), ALLOW);
    for ns in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
    ] {
        assert_eq!(call(&f, "clone", &[fork_flags | ns as u64]), EPERM);
    }
    assert_eq!(call(&f, "clone3", &[]), ENOSYS);
}

#[test]
fn cap_sys_admin_unlocks_what_docker_unlocks() {
    let f = default_filter(docker_default_caps() | caps(&["SYS_ADMIN"]));
    for s in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "sethostname",
        "clone3",
        "fsopen",
    ] {
        assert_eq!(call(&f, s, &[]), ALLOW, "{s}");
    }
    assert_eq!(call(&f, "clone", &[libc::CLONE_NEWUSER as u64]), ALLOW);
    // Still no keyring and no modules.
    assert_eq!(call(&f, "keyctl", &[]), EPERM);
    assert_eq!(call(&f, "init_module", &[]), EPERM);
}

#[test]
fn other_capabilities_unlock_their_calls() {
    let base = docker_default_caps();
    for (cap, calls) in [
        (
            "SYS_PTRACE",
            &["kcmp", "pidfd_getfd", "process_madvise"][..],
        ),
        ("SYS_BOOT", &["reboot"]),
        (
            "SYS_MODULE",
            &["init_module", "finit_module", "delete_module"],
        ),
        ("SYS_TIME", &["settimeofday", "clock_settime"]),
        ("SYS_RAWIO", &["iopl", "ioperm"]),
        ("SYS_PACCT", &["acct"]),
        ("SYS_NICE", &["mbind", "set_mempolicy"]),
        ("SYSLOG", &["syslog"]),
        ("BPF", &["bpf"]),
        ("PERFMON", &["perf_event_open"]),
        ("DAC_READ_SEARCH", &["open_by_handle_at"]),
        ("SYS_TTY_CONFIG", &["vhangup"]),
    ] {
        let without = default_filter(base & !caps(&[cap]));
        let with = default_filter(base | caps(&[cap]));
        for c in calls {
            assert_eq!(call(&without, c, &[]), EPERM, "{c} without {cap}");
            assert_eq!(call(&with, c, &[]), ALLOW, "{c} with {cap}");
        }
    }
    // chroot is in docker's default set; dropping it takes chroot away.
    assert_eq!(call(&default_filter(base), "chroot", &[]), ALLOW);
    assert_eq!(
        call(
            &default_filter(base & !caps(&["SYS_CHROOT"])),
            "chroot",
            &[]
        ),
        EPERM
    );
}

#[test]
fn ptrace_depends_on_the_kernel_version() {
    let p = Profile::parse(DEFAULT_JSON, DEFAULT_ORIGIN).unwrap();
    let old = compile(&p, docker_default_caps(), (4, 4)).unwrap();
    let new = compile(&p, docker_default_caps(), (4, 8)).unwrap();
    assert_eq!(call(&old, "ptrace", &[]), EPERM);
    assert_eq!(call(&new, "ptrace", &[]), ALLOW);
}

#[test]
fn default_profile_argument_rules() {
    let f = default_filter(docker_default_caps());
    // socket: every family but AF_ALG (38) and AF_VSOCK (40).
    for fam in [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
        39,
        41,
        44,
    ] {
        assert_eq!(call(&f, "socket", &[fam as u64]), ALLOW, "family {fam}");
    }
    assert_eq!(call(&f, "socket", &[libc::AF_ALG as u64]), EPERM);
    assert_eq!(call(&f, "socket", &[libc::AF_VSOCK as u64]), EPERM);
    // personality: only the listed values.
    for v in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(call(&f, "personality", &[v]), ALLOW, "personality {v:#x}");
    }
    assert_eq!(call(&f, "personality", &[0x0040000]), EPERM); // ADDR_NO_RANDOMIZE
}

#[test]
fn other_abis_are_killed_and_new_calls_get_enosys() {
    let f = default_filter(docker_default_caps());
    // x32's mkdir (83 | bit 30) and any other x32 number: killed.
    assert_eq!(
        f.decide(X32_SYSCALL_BIT | nr("mkdir"), [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    // i386: another audit architecture.
    let i386 = Data {
        nr: 39,
        arch: 0x4000_0003,
        args: [0; 6],
    };
    assert_eq!(verdict(&f.programs, &i386), libc::SECCOMP_RET_KILL_PROCESS);
    // Newer than anything the profile names: ENOSYS, so libc falls back.
    assert_eq!(f.decide(syscalls::X86_64_MAX + 10, [0; 6]), ENOSYS);
    // An unused number below that: the default action.
    assert_eq!(f.decide(400, [0; 6]), EPERM);
}

#[test]
fn x32_is_denied_even_when_the_default_allows() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    let f = compile(&p, 0, (6, 1)).unwrap();
    assert_eq!(call(&f, "mkdir", &[]), libc::SECCOMP_RET_ERRNO | 13);
    assert_eq!(call(&f, "rmdir", &[]), ALLOW);
    assert_eq!(
        f.decide(X32_SYSCALL_BIT | nr("mkdir"), [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    // No ENOSYS stub under a permissive default: new calls are allowed.
    assert_eq!(f.decide(syscalls::X86_64_MAX + 1, [0; 6]), ALLOW);
    // Even an empty default-allow profile guards the other ABIs.
    let f = compile(&profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#), 0, (6, 1)).unwrap();
    assert_eq!(f.lengths().len(), 1);
    assert_eq!(call(&f, "mkdir", &[]), ALLOW);
    assert_eq!(
        f.decide(X32_SYSCALL_BIT | 1, [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
}

#[test]
fn every_comparison_operator() {
    let rule = |op: &str, v: u64, v2: u64| {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {{"names":["read"],"action":"SCMP_ACT_ALLOW"}},
                {{"names":["write"],"action":"SCMP_ACT_ALLOW",
                  "args":[{{"index":2,"value":{v},"valueTwo":{v2},"op":"{op}"}}]}}]}}"#
        ));
        compile(&p, 0, (6, 1)).unwrap()
    };
    let w = |f: &Filter, a: u64| call(f, "write", &[1, 0, a]) == ALLOW;
    let big = 0x1_0000_0005u64; // the upper half must count: 64-bit comparisons
    let f = rule("SCMP_CMP_EQ", big, 0);
    assert!(w(&f, big) && !w(&f, 5) && !w(&f, big + 1));
    let f = rule("SCMP_CMP_NE", 5, 0);
    assert!(!w(&f, 5) && w(&f, 4) && w(&f, big));
    let f = rule("SCMP_CMP_LT", big, 0);
    assert!(w(&f, 5) && w(&f, big - 1) && !w(&f, big) && !w(&f, big + 1));
    let f = rule("SCMP_CMP_LE", big, 0);
    assert!(w(&f, big) && !w(&f, big + 1));
    let f = rule("SCMP_CMP_GT", big, 0);
    assert!(w(&f, big + 1) && w(&f, 0x2_0000_0000) && !w(&f, big) && !w(&f, 6));
    let f = rule("SCMP_CMP_GE", big, 0);
    assert!(w(&f, big) && !w(&f, big - 1));
    // MASKED_EQ: value is the mask, valueTwo the datum.
    let f = rule("SCMP_CMP_MASKED_EQ", 0xf0, 0x30);
    assert!(w(&f, 0x30) && w(&f, 0x13f) && !w(&f, 0x20) && !w(&f, 0x0));
    let f = rule("SCMP_CMP_MASKED_EQ", 0xff_0000_0000, 0);
    assert!(w(&f, 0xffff_ffff) && !w(&f, 0x1_0000_0000));
    // A datum outside the mask never matches (libseccomp's (arg & mask) == datum).
    let f = rule("SCMP_CMP_MASKED_EQ", 0xf0, 0x31);
    assert!(!w(&f, 0x31) && !w(&f, 0x30) && !w(&f, 0x0));
    // The unconditional rule is untouched.
    assert_eq!(call(&f, "read", &[]), ALLOW);
}

#[test]
fn args_of_one_rule_must_all_hold_unless_one_argument_repeats() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[
                {"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":2,"value":10,"op":"SCMP_CMP_LT"}]},
            {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[
                {"index":0,"value":3,"op":"SCMP_CMP_EQ"},{"index":0,"value":4,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let f = compile(&p, 0, (6, 1)).unwrap();
    assert_eq!(call(&f, "write", &[1, 0, 5]), ALLOW);
    assert_eq!(call(&f, "write", &[1, 0, 50]), EPERM);
    assert_eq!(call(&f, "write", &[2, 0, 5]), EPERM);
    // runc: the same index twice means either.
    assert_eq!(call(&f, "read", &[3]), ALLOW);
    assert_eq!(call(&f, "read", &[4]), ALLOW);
    assert_eq!(call(&f, "read", &[5]), EPERM);
}

#[test]
fn stacked_actions_follow_the_kernels_rule() {
    // Unconditional rules are answered directly by one filter; with an (always true)
    // argument comparison each action gets its own stacked filter. Same answers either way.
    for (cond, filters) in [
        ("", 1),
        (r#","args":[{"index":5,"value":0,"op":"SCMP_CMP_GE"}]"#, 6),
    ] {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
                {{"names":["read","write","unlink"],"action":"SCMP_ACT_ALLOW"{cond}}},
                {{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13{cond}}},
                {{"names":["rmdir"],"action":"SCMP_ACT_KILL_PROCESS"{cond}}},
                {{"names":["chdir"],"action":"SCMP_ACT_TRAP"{cond}}},
                {{"names":["getpid"],"action":"SCMP_ACT_LOG"{cond}}},
                {{"names":["gettid"],"action":"SCMP_ACT_KILL"{cond}}}]}}"#
        ));
        let f = compile(&p, 0, (6, 1)).unwrap();
        // One filter per non-ALLOW action, plus the base.
        assert_eq!(f.lengths().len(), filters, "{cond}");
        assert_eq!(call(&f, "read", &[]), ALLOW);
        assert_eq!(call(&f, "unlink", &[]), ALLOW);
        assert_eq!(call(&f, "mkdir", &[]), libc::SECCOMP_RET_ERRNO | 13);
        assert_eq!(call(&f, "rmdir", &[]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(call(&f, "chdir", &[]), libc::SECCOMP_RET_TRAP);
        assert_eq!(call(&f, "getpid", &[]), libc::SECCOMP_RET_LOG);
        assert_eq!(call(&f, "gettid", &[]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(call(&f, "open", &[]), EPERM);
    }
}

#[test]
fn overlapping_rules_most_restrictive_wins_and_errno_ties_go_to_the_first_rule() {
    for cond in ["", r#","args":[{"index":5,"value":0,"op":"SCMP_CMP_GE"}]"#] {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {{"names":["mkdir","rmdir"],"action":"SCMP_ACT_ALLOW"}},
                {{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13{cond}}},
                {{"names":["mkdir","rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":28{cond}}},
                {{"names":["rmdir"],"action":"SCMP_ACT_LOG"}}]}}"#
        ));
        let f = compile(&p, 0, (6, 1)).unwrap();
        assert_eq!(
            call(&f, "mkdir", &[]),
            libc::SECCOMP_RET_ERRNO | 13,
            "{cond}"
        );
        assert_eq!(
            call(&f, "rmdir", &[]),
            libc::SECCOMP_RET_ERRNO | 28,
            "{cond}"
        );
    }
}

#[test]
fn rules_with_the_default_action_are_skipped_as_runc_does() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
            {"names":["mkdir"],"action":"SCMP_ACT_LOG"}]}"#,
    );
    let f = compile(&p, 0, (6, 1)).unwrap();
    assert_eq!(call(&f, "mkdir", &[]), libc::SECCOMP_RET_LOG);
}

#[test]
fn includes_and_excludes() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN","CAP_NET_ADMIN"]}},
            {"names":["write"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN","CAP_NET_ADMIN"]}},
            {"names":["open"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm64"]}},
            {"names":["close"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
            {"names":["stat"],"action":"SCMP_ACT_ALLOW","excludes":{"arches":["amd64"]}},
            {"names":["fstat"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"5.10"}},
            {"names":["lstat"],"action":"SCMP_ACT_ALLOW","excludes":{"minKernel":"5.10"}}]}"#,
    );
    let check = |caps_: u64, kernel, want: &[(&str, bool)]| {
        let f = compile(&p, caps_, kernel).unwrap();
        for (s, allowed) in want {
            assert_eq!(
                call(&f, s, &[]) == ALLOW,
                *allowed,
                "{s} caps={caps_:#x} {kernel:?}"
            );
        }
    };
    let both = caps(&["SYS_ADMIN", "NET_ADMIN"]);
    let one = caps(&["SYS_ADMIN"]);
    // includes.caps: all of them; excludes.caps: any of them.
    check(both, (6, 1), &[("read", true), ("write", false)]);
    check(one, (6, 1), &[("read", false), ("write", false)]);
    check(0, (6, 1), &[("read", false), ("write", true)]);
    check(
        0,
        (6, 1),
        &[("open", false), ("close", true), ("stat", false)],
    );
    check(0, (5, 10), &[("fstat", true), ("lstat", false)]);
    check(0, (5, 4), &[("fstat", false), ("lstat", true)]);
}

#[test]
fn names_of_other_architectures_are_skipped_and_unknown_names_refused() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["chown32","_llseek","socketcall","read"],"action":"SCMP_ACT_ALLOW"},
            {"name":"write","action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let f = compile(&p, 0, (6, 1)).unwrap();
    assert_eq!(call(&f, "read", &[]), ALLOW);
    assert_eq!(call(&f, "write", &[]), ALLOW);
    let e = Profile::parse(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","mkdri"],"action":"SCMP_ACT_ALLOW"}]}"#,
        "p.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("p.json") && e.contains("syscalls[0]") && e.contains("\"mkdri\""),
        "{e}"
    );
}

#[test]
fn bad_profiles_are_refused_with_the_reason() {
    let bad = |json: &str, want: &str| {
        let e = Profile::parse(json, "p.json").unwrap_err().to_string();
        assert!(e.contains(want), "{json}: {e}");
    };
    bad("{", "not valid JSON");
    bad(
        r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#,
        "unknown action \"SCMP_ACT_MAYBE\"",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#,
        "SCMP_ACT_NOTIFY is not supported",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_TRACE"}]}"#,
        "SCMP_ACT_TRACE is not supported",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        "argument index 6",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}"#,
        "unknown comparison",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_FLY"]}}]}"#,
        "unknown capability",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}]}"#,
        "invalid minKernel",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"]}]}"#,
        "action is missing",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
        "both 'architectures' and 'archMap'",
    );
    bad(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","listenerPath":"/run/agent.sock"}"#,
        "listenerPath",
    );
    bad(
        r#"{"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        "defaultAction",
    );
}

#[test]
fn an_empty_profile_means_no_filter_as_with_docker() {
    let f = compile(&profile("{}"), 0, (6, 1)).unwrap();
    assert!(f.is_empty());
}

#[test]
fn a_profile_that_denies_seccomp_itself_cannot_be_stacked() {
    // Conditional rules need stacked filters; installing the base filter needs seccomp(2),
    // which an earlier per-action filter denies here.
    let cond = r#","args":[{"index":5,"value":0,"op":"SCMP_CMP_GE"}]"#;
    for action in [
        r#""SCMP_ACT_ERRNO","errnoRet":13"#,
        // KILL_PROCESS (0x80000000) is the most restrictive action, not the least.
        r#""SCMP_ACT_KILL_PROCESS""#,
    ] {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {{"names":["read"],"action":"SCMP_ACT_ALLOW"}},
                {{"names":["seccomp","mkdir"],"action":{action}{cond}}}]}}"#
        ));
        let e = compile(&p, 0, (6, 1)).unwrap_err().to_string();
        assert!(e.contains("denies seccomp(2)"), "{e}");
    }
    // Unconditional rules are one filter: denying seccomp is then no obstacle.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW"},
            {"names":["seccomp","mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    let f = compile(&p, 0, (6, 1)).unwrap();
    assert_eq!(call(&f, "seccomp", &[]), libc::SECCOMP_RET_ERRNO | 13);
    // Omitting seccomp from an allowlist is fine: the base filter goes in last.
    let p = profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {{"names":["read"],"action":"SCMP_ACT_ALLOW"}},
            {{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13{cond}}}]}}"#
    ));
    assert_eq!(compile(&p, 0, (6, 1)).unwrap().lengths().len(), 2);
}

#[test]
fn default_profile_allows_what_boxkit_calls_after_installing_it() {
    // child_setup after install: bounding set, groups, ids, capset, no_new_privs, chdir,
    // pdeathsig, exec; --init: fork, sigwait, wait4, kill; error paths: write, exit_group.
    let f = default_filter(docker_default_caps());
    for s in [
        "prctl",
        "openat",
        "read",
        "close",
        "setgroups",
        "setresgid",
        "setresuid",
        "capset",
        "capget",
        "chdir",
        "brk",
        "mmap",
        "munmap",
        "execve",
        "rt_sigprocmask",
        "rt_sigtimedwait",
        "wait4",
        "kill",
        "write",
        "exit_group",
        "seccomp",
        "close_range",
        "fcntl",
        "getpid",
    ] {
        assert_eq!(
            call(&f, s, &[libc::SECCOMP_SET_MODE_FILTER as u64]),
            ALLOW,
            "{s}"
        );
    }
    // glibc's fork().
    let fork_flags = (libc::SIGCHLD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(call(&f, "clone", &[fork_flags]), ALLOW);
    // Even with every capability dropped.
    let none = default_filter(0);
    for s in ["setresuid", "capset", "prctl", "execve", "seccomp"] {
        assert_eq!(call(&none, s, &[]), ALLOW, "{s} without capabilities");
    }
}

#[test]
fn default_profile_fits_the_kernels_limits() {
    let all = (1u64 << crate::run::caps::NAMES.len()) - 1;
    for c in [0, docker_default_caps(), all] {
        let f = default_filter(c);
        assert!(
            f.lengths().iter().all(|n| *n <= BPF_MAXINSNS),
            "{:?}",
            f.lengths()
        );
    }
    // clone3's ENOSYS has no argument rule: answered directly, one filter in every case.
    assert_eq!(default_filter(all).lengths().len(), 1);
    assert_eq!(default_filter(docker_default_caps()).lengths().len(), 1);
    assert_eq!(default_filter(0).lengths().len(), 1);
}

#[test]
fn records_round_trip_for_box_exec() {
    assert!(matches!(
        Seccomp::from_record(&Seccomp::Unconfined.record()).unwrap(),
        Seccomp::Unconfined
    ));
    assert!(matches!(
        Seccomp::from_record(&SeccompRecord::default()).unwrap(),
        Seccomp::Default
    ));
    let p = Seccomp::Custom(Arc::new(profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )));
    let r = p.record();
    let json = serde_json::to_string(&r).unwrap();
    let back: SeccompRecord = serde_json::from_str(&json).unwrap();
    let f = Seccomp::from_record(&back).unwrap().compile(0).unwrap();
    assert_eq!(call(&f, "mkdir", &[]), EPERM);
}

#[test]
fn security_opt_values() {
    assert!(matches!(
        Seccomp::from_opt("unconfined").unwrap(),
        Seccomp::Unconfined
    ));
    assert!(matches!(
        Seccomp::from_opt("builtin").unwrap(),
        Seccomp::Default
    ));
    let e = Seccomp::from_opt("/nonexistent/profile.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("read seccomp profile /nonexistent/profile.json"),
        "{e}"
    );
}

mod generated;
