// @generated from default.json (x86_64): after editing it, run
// `BOXKIT_BLESS=1 cargo test --lib run::seccomp::tests::generated::default_rules_match_default_json`.
// The default profile validated, as Rust: starting a container parses no JSON and looks up
// no syscall names. Each rule keeps its place (and its comment) from default.json.

use super::profile::{Action, Cond, Op, StaticRule, StaticWhen};

pub(super) const DEFAULT: Action = Action::Errno(1);

/// The rules, in default.json's order.
pub(super) const RULES: &[StaticRule] = &[
    // Files, directories and their metadata
    StaticRule {
        nrs: &[21, 451, 80, 90, 92, 3, 436, 85, 32, 33, 292, 269, 439, 221, 285, 81, 91, 268, 452, 93,
            260, 72, 75, 73, 5, 138, 74, 77, 261, 79, 78, 217, 94, 86, 265, 458, 8, 6, 83, 258,
            133, 259, 303, 262, 2, 257, 437, 187, 89, 267, 82, 264, 316, 84, 4, 137, 457, 332, 88, 266,
            162, 277, 306, 76, 95, 87, 263, 132, 280, 235,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Reading and writing data
    StaticRule {
        nrs: &[326, 16, 22, 293, 17, 295, 327, 18, 296, 328, 0, 19, 40, 275, 276, 278, 1, 20,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Extended attributes
    StaticRule {
        nrs: &[193, 196, 199, 190, 191, 464, 192, 194, 465, 195, 198, 189, 197, 466, 188, 463,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Waiting for events: poll, epoll, inotify, fanotify marks, eventfd, signalfd, timerfd, Linux AIO
    StaticRule {
        nrs: &[213, 291, 233, 214, 281, 441, 232, 215, 284, 290, 301, 254, 253, 294, 255, 210, 207, 208, 333, 206,
            209, 7, 271, 270, 23, 282, 289, 283, 287, 286,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Memory
    StaticRule {
        nrs: &[12, 28, 453, 324, 319, 447, 27, 149, 325, 151, 9, 10, 25, 462, 26, 150, 152, 11, 330, 331,
            329, 216,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Processes, threads and scheduling (clone is below: only without namespace flags)
    StaticRule {
        nrs: &[125, 126, 59, 322, 60, 231, 57, 202, 456, 455, 449, 454, 274, 211, 309, 121, 111, 39, 110, 140,
            318, 97, 98, 124, 186, 252, 251, 445, 444, 446, 434, 157, 302, 448, 219, 334, 146, 147, 204, 315,
            143, 145, 148, 203, 314, 142, 144, 24, 317, 273, 205, 218, 109, 141, 160, 112, 99, 100, 63, 335,
            58, 61, 247,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Signals and timers that deliver them
    StaticRule {
        nrs: &[37, 36, 62, 34, 424, 13, 127, 14, 129, 15, 130, 128, 297, 38, 131, 234, 222, 226, 225, 224,
            223, 200,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // User and group ids (the kernel still checks CAP_SETUID/CAP_SETGID)
    StaticRule {
        nrs: &[108, 107, 104, 115, 120, 118, 102, 123, 122, 106, 116, 114, 119, 117, 113, 105,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Clocks (reading them; setting needs CAP_SYS_TIME, below). adjtimex and clock_adjtime only set with that capability
    StaticRule {
        nrs: &[159, 305, 229, 228, 230, 96, 35, 201,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // Sockets (socket itself is below: not every address family)
    StaticRule {
        nrs: &[43, 288, 49, 42, 52, 51, 55, 50, 45, 299, 47, 307, 46, 44, 54, 48, 53,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // System V and POSIX IPC (namespaced by the container's IPC namespace)
    StaticRule {
        nrs: &[245, 244, 240, 243, 242, 241, 71, 68, 70, 69, 66, 64, 65, 220, 30, 31, 67, 29,],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // The same calls under the names other architectures use (32-bit ids, 64-bit file offsets, time64). Not present on x86_64, so ignored there
    StaticRule {
        nrs: &[],
        action: Action::Allow,
        conds: &[],
        includes: None,
        excludes: None,
    },
    // ptrace and cross-process memory access: harmless since kernel 4.8 closed the seccomp bypass through ptrace
    StaticRule {
        nrs: &[101, 310, 311,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &[], min_kernel: Some((4, 8)) }),
        excludes: None,
    },
    // socket: every address family but 38 (AF_ALG) and 40 (AF_VSOCK): below 38
    StaticRule {
        nrs: &[41,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Lt, value: 0x26, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // socket: 39 (AF_NFC)
    StaticRule {
        nrs: &[41,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0x27, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // socket: above 40
    StaticRule {
        nrs: &[41,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Gt, value: 0x28, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // personality: only PER_LINUX (0)
    StaticRule {
        nrs: &[135,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0x0, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // personality: only UNAME26 (8)
    StaticRule {
        nrs: &[135,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0x8, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // personality: only PER_LINUX32 (131072)
    StaticRule {
        nrs: &[135,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0x20000, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // personality: only PER_LINUX32|UNAME26 (131080)
    StaticRule {
        nrs: &[135,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0x20008, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // personality: only query the current persona (4294967295)
    StaticRule {
        nrs: &[135,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::Eq, value: 0xffffffff, value_two: 0x0 }, ],
        includes: None,
        excludes: None,
    },
    // x86: arch_prctl (FS/GS base) and modify_ldt
    StaticRule {
        nrs: &[158,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["amd64", "x32"], min_kernel: None }),
        excludes: None,
    },
    // x86: modify_ldt
    StaticRule {
        nrs: &[154,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["amd64", "x32", "x86"], min_kernel: None }),
        excludes: None,
    },
    // arm
    StaticRule {
        nrs: &[],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["arm", "arm64"], min_kernel: None }),
        excludes: None,
    },
    // ppc64le
    StaticRule {
        nrs: &[],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["ppc64le"], min_kernel: None }),
        excludes: None,
    },
    // s390
    StaticRule {
        nrs: &[],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["s390", "s390x"], min_kernel: None }),
        excludes: None,
    },
    // riscv64
    StaticRule {
        nrs: &[],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x0, arches: &["riscv64"], min_kernel: None }),
        excludes: None,
    },
    // clone without any namespace flag (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET = 0x7e020000) unless CAP_SYS_ADMIN
    StaticRule {
        nrs: &[56,],
        action: Action::Allow,
        conds: &[Cond { index: 0, op: Op::MaskedEq, value: 0x7e020000, value_two: 0x0 }, ],
        includes: None,
        excludes: Some(StaticWhen { caps: 0x200000, arches: &["s390", "s390x"], min_kernel: None }),
    },
    // s390 passes clone's flags second
    StaticRule {
        nrs: &[56,],
        action: Action::Allow,
        conds: &[Cond { index: 1, op: Op::MaskedEq, value: 0x7e020000, value_two: 0x0 }, ],
        includes: Some(StaticWhen { caps: 0x0, arches: &["s390", "s390x"], min_kernel: None }),
        excludes: Some(StaticWhen { caps: 0x200000, arches: &[], min_kernel: None }),
    },
    // clone3 passes its flags in memory, where no filter can look: fail it with ENOSYS so that libc falls back to clone
    StaticRule {
        nrs: &[435,],
        action: Action::Errno(38),
        conds: &[],
        includes: None,
        excludes: Some(StaticWhen { caps: 0x200000, arches: &[], min_kernel: None }),
    },
    // With CAP_SYS_ADMIN: namespaces, mounts, and the rest of what CAP_SYS_ADMIN guards
    StaticRule {
        nrs: &[321, 56, 435, 300, 431, 432, 430, 433, 212, 459, 461, 460, 165, 442, 429, 428, 298, 179, 443, 171,
            170, 308, 103, 166, 272,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x200000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_DAC_READ_SEARCH: open_by_handle_at (the 'shocker' escape needs it)
    StaticRule {
        nrs: &[304,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x4, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_BOOT: reboot (in a pid namespace it only ends the container)
    StaticRule {
        nrs: &[169,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x400000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_CHROOT: chroot
    StaticRule {
        nrs: &[161,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x40000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_MODULE: kernel modules
    StaticRule {
        nrs: &[176, 175, 313,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x10000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_PACCT: process accounting
    StaticRule {
        nrs: &[163,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x100000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_PTRACE: tracing other processes
    StaticRule {
        nrs: &[312, 438, 440, 310, 311, 101,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x80000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_RAWIO: I/O ports
    StaticRule {
        nrs: &[172, 173,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x20000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_TIME: setting the clock
    StaticRule {
        nrs: &[164, 227,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x2000000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_TTY_CONFIG: vhangup
    StaticRule {
        nrs: &[153,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x4000000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYS_NICE: NUMA memory policy
    StaticRule {
        nrs: &[239, 237, 238, 450,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x800000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_SYSLOG: the kernel log
    StaticRule {
        nrs: &[103,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x400000000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_BPF: eBPF
    StaticRule {
        nrs: &[321,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x8000000000, arches: &[], min_kernel: None }),
        excludes: None,
    },
    // With CAP_PERFMON: perf events
    StaticRule {
        nrs: &[298,],
        action: Action::Allow,
        conds: &[],
        includes: Some(StaticWhen { caps: 0x4000000000, arches: &[], min_kernel: None }),
        excludes: None,
    },
];

/// The capability set the precompiled filter is for (docker's default set).
pub(super) const PRECOMPILED_CAPS: u64 = 0xa80425fb;

/// The profile compiled for PRECOMPILED_CAPS on a kernel >= 4.8 (its only minKernel).
pub(super) const PRECOMPILED: &[libc::sock_filter] = &[
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000004 },
    libc::sock_filter { code: 0x0015, jt: 1, jf: 0, k: 0xc000003e },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x80000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0045, jt: 0, jf: 2, k: 0x40000000 },
    libc::sock_filter { code: 0x0015, jt: 1, jf: 0, k: 0xffffffff },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x80000000 },
    libc::sock_filter { code: 0x0025, jt: 0, jf: 1, k: 0x000001d2 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050026 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0025, jt: 67, jf: 0, k: 0x000001d2 },
    libc::sock_filter { code: 0x0025, jt: 31, jf: 0, k: 0x00000116 },
    libc::sock_filter { code: 0x0025, jt: 15, jf: 0, k: 0x000000a2 },
    libc::sock_filter { code: 0x0025, jt: 7, jf: 0, k: 0x00000085 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x00000037 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x00000028 },
    libc::sock_filter { code: 0x0035, jt: 59, jf: 61, k: 0x00000000 },
    libc::sock_filter { code: 0x0035, jt: 58, jf: 60, k: 0x0000002a },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x00000066 },
    libc::sock_filter { code: 0x0035, jt: 56, jf: 58, k: 0x00000039 },
    libc::sock_filter { code: 0x0035, jt: 55, jf: 57, k: 0x00000068 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x00000098 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x0000008a },
    libc::sock_filter { code: 0x0035, jt: 52, jf: 54, k: 0x00000089 },
    libc::sock_filter { code: 0x0035, jt: 51, jf: 53, k: 0x0000008c },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x0000009a },
    libc::sock_filter { code: 0x0035, jt: 49, jf: 51, k: 0x0000009a },
    libc::sock_filter { code: 0x0035, jt: 48, jf: 50, k: 0x0000009d },
    libc::sock_filter { code: 0x0025, jt: 7, jf: 0, k: 0x000000f5 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x000000e2 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000000d3 },
    libc::sock_filter { code: 0x0035, jt: 44, jf: 46, k: 0x000000ba },
    libc::sock_filter { code: 0x0035, jt: 43, jf: 45, k: 0x000000d5 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000000eb },
    libc::sock_filter { code: 0x0035, jt: 41, jf: 43, k: 0x000000e4 },
    libc::sock_filter { code: 0x0035, jt: 40, jf: 42, k: 0x000000f0 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x000000ff },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000000f7 },
    libc::sock_filter { code: 0x0035, jt: 37, jf: 39, k: 0x000000f7 },
    libc::sock_filter { code: 0x0035, jt: 36, jf: 38, k: 0x000000fb },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x0000010f },
    libc::sock_filter { code: 0x0035, jt: 34, jf: 36, k: 0x00000101 },
    libc::sock_filter { code: 0x0035, jt: 33, jf: 35, k: 0x00000111 },
    libc::sock_filter { code: 0x0025, jt: 15, jf: 0, k: 0x0000014f },
    libc::sock_filter { code: 0x0025, jt: 7, jf: 0, k: 0x00000133 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x0000012b },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x00000129 },
    libc::sock_filter { code: 0x0035, jt: 28, jf: 30, k: 0x00000118 },
    libc::sock_filter { code: 0x0035, jt: 27, jf: 29, k: 0x0000012b },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x0000012f },
    libc::sock_filter { code: 0x0035, jt: 25, jf: 27, k: 0x0000012d },
    libc::sock_filter { code: 0x0035, jt: 24, jf: 26, k: 0x00000131 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x0000013f },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x00000137 },
    libc::sock_filter { code: 0x0035, jt: 21, jf: 23, k: 0x00000135 },
    libc::sock_filter { code: 0x0035, jt: 20, jf: 22, k: 0x0000013a },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x00000142 },
    libc::sock_filter { code: 0x0035, jt: 18, jf: 20, k: 0x00000142 },
    libc::sock_filter { code: 0x0035, jt: 17, jf: 19, k: 0x00000144 },
    libc::sock_filter { code: 0x0025, jt: 7, jf: 0, k: 0x000001b5 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x000001b2 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000001a8 },
    libc::sock_filter { code: 0x0035, jt: 13, jf: 15, k: 0x000001a8 },
    libc::sock_filter { code: 0x0035, jt: 12, jf: 14, k: 0x000001b2 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000001b3 },
    libc::sock_filter { code: 0x0035, jt: 11, jf: 12, k: 0x000001b3 },
    libc::sock_filter { code: 0x0035, jt: 9, jf: 11, k: 0x000001b4 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x000001b9 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000001b7 },
    libc::sock_filter { code: 0x0035, jt: 6, jf: 8, k: 0x000001b7 },
    libc::sock_filter { code: 0x0035, jt: 5, jf: 7, k: 0x000001b9 },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000001c1 },
    libc::sock_filter { code: 0x0035, jt: 3, jf: 5, k: 0x000001bc },
    libc::sock_filter { code: 0x0025, jt: 1, jf: 0, k: 0x000001ca },
    libc::sock_filter { code: 0x0035, jt: 1, jf: 3, k: 0x000001c3 },
    libc::sock_filter { code: 0x0035, jt: 0, jf: 2, k: 0x000001ce },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050026 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000029 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000007 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0025, jt: 4, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 2, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0035, jt: 1, jf: 0, k: 0x00000026 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000027 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000007 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0025, jt: 3, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0025, jt: 0, jf: 1, k: 0x00000028 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050001 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000038 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000008 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0054, jt: 0, jf: 0, k: 0x00000000 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 4, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0054, jt: 0, jf: 0, k: 0x7e020000 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050001 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000087 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00000008 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00020000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0x00020008 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000001 },
    libc::sock_filter { code: 0x0005, jt: 0, jf: 0, k: 0x00000006 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000014 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 3, k: 0x00000000 },
    libc::sock_filter { code: 0x0020, jt: 0, jf: 0, k: 0x00000010 },
    libc::sock_filter { code: 0x0015, jt: 0, jf: 1, k: 0xffffffff },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x7fff0000 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050001 },
    libc::sock_filter { code: 0x0006, jt: 0, jf: 0, k: 0x00050001 },
];
