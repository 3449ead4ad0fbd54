// @generated from default.json: after editing it, run
// `BOXKIT_BLESS=1 cargo test --lib run::seccomp::tests::default_rules_match_default_json`.
// The default profile as Rust, so that starting a container does not parse JSON.

use super::*;

fn names(n: &[&'static str]) -> Option<Vec<Cow<'static, str>>> {
    Some(n.iter().map(|s| Cow::Borrowed(*s)).collect())
}

pub(super) fn raw() -> RawProfile<'static> {
    RawProfile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(1),
        architectures: None,
        arch_map: Some(vec![
            RawArch { architecture: "SCMP_ARCH_X86_64".into(), sub_architectures: Some(vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()]) },
            RawArch { architecture: "SCMP_ARCH_AARCH64".into(), sub_architectures: Some(vec!["SCMP_ARCH_ARM".into()]) },
            RawArch { architecture: "SCMP_ARCH_RISCV64".into(), sub_architectures: None },
            RawArch { architecture: "SCMP_ARCH_S390X".into(), sub_architectures: Some(vec!["SCMP_ARCH_S390".into()]) },
        ]),
        flags: None,
        listener_path: None,
        syscalls: Some(vec![
            RawSyscall {
                name: None,
                names: names(&[
                    "access", "cachestat", "chdir", "chmod", "chown", "close", "close_range", "creat",
                    "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir",
                    "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "flock",
                    "fstat", "fstatfs", "fsync", "ftruncate", "futimesat", "getcwd", "getdents", "getdents64",
                    "lchown", "link", "linkat", "listmount", "lseek", "lstat", "mkdir", "mkdirat",
                    "mknod", "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "readahead",
                    "readlink", "readlinkat", "rename", "renameat", "renameat2", "rmdir", "stat", "statfs",
                    "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "truncate",
                    "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "copy_file_range", "ioctl", "pipe", "pipe2", "pread64", "preadv", "preadv2", "pwrite64",
                    "pwritev", "pwritev2", "read", "readv", "sendfile", "splice", "tee", "vmsplice",
                    "write", "writev",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat", "lgetxattr", "listxattr",
                    "listxattrat", "llistxattr", "lremovexattr", "lsetxattr", "removexattr", "removexattrat", "setxattr", "setxattrat",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
                    "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
                    "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit", "poll", "ppoll", "pselect6",
                    "select", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_settime",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mlock",
                    "mlock2", "mlockall", "mmap", "mprotect", "mremap", "mseal", "msync", "munlock",
                    "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect", "remap_file_pages",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex",
                    "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list", "get_thread_area", "getcpu", "getpgid",
                    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getrlimit", "getrusage", "getsid",
                    "gettid", "ioprio_get", "ioprio_set", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open", "prctl",
                    "prlimit64", "process_mrelease", "restart_syscall", "rseq", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
                    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
                    "seccomp", "set_robust_list", "set_thread_area", "set_tid_address", "setpgid", "setpriority", "setrlimit", "setsid",
                    "sysinfo", "times", "uname", "uretprobe", "vfork", "wait4", "waitid",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "alarm", "getitimer", "kill", "pause", "pidfd_send_signal", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
                    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "setitimer", "sigaltstack", "tgkill",
                    "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "tkill",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "getegid", "geteuid", "getgid", "getgroups", "getresgid", "getresuid", "getuid", "setfsgid",
                    "setfsuid", "setgid", "setgroups", "setregid", "setresgid", "setresuid", "setreuid", "setuid",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "adjtimex", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "gettimeofday", "nanosleep", "time",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
                    "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown",
                    "socketpair",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "msgctl", "msgget",
                    "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat", "shmctl",
                    "shmdt", "shmget",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "_llseek", "_newselect", "chown32", "clock_adjtime64", "clock_getres_time64", "clock_gettime64", "clock_nanosleep_time64", "fadvise64_64",
                    "fchown32", "fcntl64", "fstat64", "fstatat64", "fstatfs64", "ftruncate64", "futex_time64", "getegid32",
                    "geteuid32", "getgid32", "getgroups32", "getresgid32", "getresuid32", "getuid32", "io_pgetevents_time64", "ipc",
                    "lchown32", "lstat64", "mmap2", "mq_timedreceive_time64", "mq_timedsend_time64", "ppoll_time64", "pselect6_time64", "recv",
                    "recvmmsg_time64", "riscv_hwprobe", "rt_sigtimedwait_time64", "sched_rr_get_interval_time64", "semtimedop_time64", "send", "sendfile64", "setfsgid32",
                    "setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32", "setresuid32", "setreuid32", "setuid32",
                    "sigprocmask", "sigreturn", "socketcall", "stat64", "statfs64", "timer_gettime64", "timer_settime64", "timerfd_gettime64",
                    "timerfd_settime64", "truncate64", "ugetrlimit", "utimensat_time64", "waitpid",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "ptrace", "process_vm_readv", "process_vm_writev",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: None, min_kernel: Some("4.8".into()) }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "socket",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 38, value_two: 0, op: "SCMP_CMP_LT".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "socket",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 39, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "socket",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 40, value_two: 0, op: "SCMP_CMP_GT".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "personality",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 0, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "personality",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 8, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "personality",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 131072, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "personality",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 131080, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "personality",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 4294967295, value_two: 0, op: "SCMP_CMP_EQ".into() },
                ]),
                includes: None,
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "arch_prctl",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["amd64".into(), "x32".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "modify_ldt",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["amd64".into(), "x32".into(), "x86".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["arm".into(), "arm64".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "sync_file_range2", "swapcontext",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["ppc64le".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["s390".into(), "s390x".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "riscv_flush_icache",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: None, arches: Some(vec!["riscv64".into()]), min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "clone",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 0, value: 2114060288, value_two: 0, op: "SCMP_CMP_MASKED_EQ".into() },
                ]),
                includes: None,
                excludes: Some(RawCondition { caps: Some(vec!["CAP_SYS_ADMIN".into()]), arches: Some(vec!["s390".into(), "s390x".into()]), min_kernel: None }),
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "clone",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: Some(vec![
                    RawArg { index: 1, value: 2114060288, value_two: 0, op: "SCMP_CMP_MASKED_EQ".into() },
                ]),
                includes: Some(RawCondition { caps: None, arches: Some(vec!["s390".into(), "s390x".into()]), min_kernel: None }),
                excludes: Some(RawCondition { caps: Some(vec!["CAP_SYS_ADMIN".into()]), arches: None, min_kernel: None }),
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "clone3",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ERRNO"),
                errno_ret: Some(38),
                args: None,
                includes: None,
                excludes: Some(RawCondition { caps: Some(vec!["CAP_SYS_ADMIN".into()]), arches: None, min_kernel: None }),
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                    "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount", "mount_setattr", "move_mount", "open_tree",
                    "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                    "umount2", "unshare",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_ADMIN".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "open_by_handle_at",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_DAC_READ_SEARCH".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "reboot",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_BOOT".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "chroot",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_CHROOT".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "delete_module", "init_module", "finit_module",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_MODULE".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "acct",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_PACCT".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_PTRACE".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "iopl", "ioperm",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_RAWIO".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "settimeofday", "stime", "clock_settime", "clock_settime64",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_TIME".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "vhangup",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_TTY_CONFIG".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYS_NICE".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "syslog",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_SYSLOG".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "bpf",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_BPF".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
            RawSyscall {
                name: None,
                names: names(&[
                    "perf_event_open",
                ]),
                action: Cow::Borrowed("SCMP_ACT_ALLOW"),
                errno_ret: None,
                args: None,
                includes: Some(RawCondition { caps: Some(vec!["CAP_PERFMON".into()]), arches: None, min_kernel: None }),
                excludes: None,
            },
        ]),
    }
}
