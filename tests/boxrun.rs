//! `boxrun IMAGE [CMD…]` in the foreground, against busybox and the debootstrap Debian image,
//! as root and as an unprivileged user with a subordinate range: the image config rules, every
//! process, storage, network, limit and security flag, and docker's exit codes.

mod boxrun_common;
mod common;

use boxrun_common::{Who, stderr, stdout, tempdir, unique};

#[test]
fn image_cmd_entrypoint_and_arguments_combine_like_docker() {
    let Some(all) = Who::all() else { return };
    for who in all {
        // busybox's Cmd is ["sh"]: with stdin empty it exits 0.
        let o = who.boxrun(&["--rm", "--network", "none", "busybox"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "echo", "a", "b"]);
        assert_eq!(stdout(&o), "a b\n");
        // Everything after the image is the container's, flags included (docker's rule).
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "echo", "-n", "-d"]);
        assert_eq!(stdout(&o), "-d");
        // --entrypoint replaces the image's Entrypoint and drops its Cmd.
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "echo",
            "busybox",
            "x",
        ]);
        assert_eq!(stdout(&o), "x\n");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "echo",
            "busybox",
        ]);
        assert_eq!(stdout(&o), "\n");
    }
}

#[test]
fn debian_image_runs_its_own_userland_with_its_default_cmd() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "debian:bookworm",
            "bash",
            "-c",
            "cat /etc/debian_version; id -un; echo $PATH; ls /proc | grep -c '^[0-9]'",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("12"), "{out}");
        assert_eq!(lines[1], "root");
        assert!(lines[2].contains("/usr/bin"), "{out}");
        // Only the container's processes: bash and ls/grep.
        assert!(lines[3].parse::<u32>().unwrap() <= 4, "{out}");
        // Default Cmd is bash, which reads the script from stdin.
        let o = who.boxrun_stdin(
            &["--rm", "-i", "--network", "none", "debian:bookworm"],
            "echo from-stdin $BASH_VERSION\n",
        );
        assert!(stdout(&o).starts_with("from-stdin 5."), "{}", stdout(&o));
        // Debian's users resolve from its own /etc/passwd.
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-u",
            "nobody",
            "debian:bookworm",
            "id",
        ]);
        assert_eq!(
            stdout(&o),
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n"
        );
    }
}

#[test]
fn env_env_file_workdir_user_and_hostname_flags() {
    let Some(all) = Who::all() else { return };
    let d = tempdir();
    let envf = d.path().join("env");
    std::fs::write(&envf, "# comment\nFROM_FILE=f\nBOTH=file\n\nHOST_VAR\n").unwrap();
    for who in all {
        let mut c = vec![
            "--rm",
            "--network",
            "none",
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "BOTH=flag",
            "-e",
            "SPACED=a b",
            "-w",
            "/srv/app",
            "-u",
            "app",
            "--hostname",
            "myhost",
            "busybox",
            "sh",
            "-c",
            "echo $FROM_FILE $BOTH $SPACED; echo ${HOST_VAR-unset}; pwd; id -un; hostname; echo $HOME",
        ];
        let o = who.boxrun(&c);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // HOST_VAR is not set for boxrun (setpriv --reset-env / no such variable): dropped.
        assert_eq!(
            stdout(&o),
            "f flag a b\nunset\n/srv/app\napp\nmyhost\n/home/app\n"
        );
        // -u uid:gid needs no passwd entry.
        c.truncate(0);
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-u",
            "1234:5678",
            "busybox",
            "id",
        ]);
        assert_eq!(stdout(&o), "uid=1234 gid=5678 groups=5678\n");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-u",
            "nobody-here",
            "busybox",
            "id",
        ]);
        assert_eq!(o.status.code(), Some(125));
        assert!(
            stderr(&o).contains("unable to find user nobody-here"),
            "{}",
            stderr(&o)
        );
        let o = who.boxrun(&["--rm", "--network", "none", "-w", "rel", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        // The default hostname is the first 12 characters of the container id.
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "hostname"]);
        let h = stdout(&o);
        assert_eq!(h.trim().len(), 12);
        assert!(h.trim().chars().all(|c| c.is_ascii_hexdigit()));
    }
}

#[test]
fn exit_codes_are_the_containers_own_and_docker_s_125_126_127() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let run = |args: &[&str]| {
            let mut v = vec!["--rm", "--network", "none", "busybox"];
            v.extend_from_slice(args);
            who.boxrun(&v)
        };
        assert_eq!(run(&["sh", "-c", "exit 3"]).status.code(), Some(3));
        // Death by signal n is 128+n (under --init the shell is not pid 1, which ignores it).
        let o = who.boxrun(&[
            "--rm",
            "--init",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "kill -9 $$",
        ]);
        assert_eq!(o.status.code(), Some(137));
        let o = run(&["no-such-command"]);
        assert_eq!(o.status.code(), Some(127));
        assert!(
            stderr(&o).contains("executable file not found"),
            "{}",
            stderr(&o)
        );
        assert_eq!(run(&["/etc/passwd"]).status.code(), Some(126));
        assert_eq!(run(&["/etc"]).status.code(), Some(126));
        // A PATH search goes past a file nobody may execute (/etc/hostname) and a directory
        // (/etc) to the command further on, and reports them, as execvp does, when nothing
        // further on is found: 126, "permission denied".
        let searched = |path: &str, cmd: &str| {
            let env = format!("PATH={path}");
            who.boxrun(&["--rm", "--network", "none", "-e", &env, "busybox", cmd])
        };
        let o = searched("/etc:/bin", "hostname");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for (path, cmd) in [("/etc", "hostname"), ("/:/nowhere", "etc")] {
            let o = searched(path, cmd);
            assert_eq!(o.status.code(), Some(126), "{path} {cmd}: {}", stderr(&o));
            assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
        }
        let o = who.boxrun(&["--rm", "--pull", "never", "no-such-image:1"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("no-such-image"), "{}", stderr(&o));
        let o = who.boxrun(&["--rm", "--bogus-flag", "busybox"]);
        assert!(
            stderr(&o).contains("unknown flag: --bogus-flag"),
            "{}",
            stderr(&o)
        );
        assert_eq!(o.status.code(), Some(125));
        let o = who.boxrun(&["--rm", "--memory", "lots", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        let o = who.boxrun(&["--rm", "--security-opt", "seccomp=x", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        // An image with neither Entrypoint nor Cmd, emptied by --entrypoint "".
        let o = who.boxrun(&["--rm", "--entrypoint", "", "busybox"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(
            stderr(&o).contains("no command specified"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn bind_volumes_named_volumes_mounts_and_read_only_root() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let d = tempdir();
        let rw = d.path().join("rw");
        let ro = d.path().join("ro");
        std::fs::create_dir_all(&rw).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ro.join("f"), "host file\n").unwrap();
        who.own(d.path());
        let vol = unique("vol");
        let v_rw = format!("{}:/rw", rw.display());
        let v_ro = format!("{}:/ro:ro", ro.display());
        let v_named = format!("{vol}:/data");
        let created = d.path().join("created-by-v");
        let v_new = format!("{}:/new", created.display());
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-v",
            &v_rw,
            "-v",
            &v_ro,
            "-v",
            &v_named,
            "-v",
            &v_new,
            "busybox",
            "sh",
            "-c",
            "echo written > /rw/out; cat /ro/f; touch /ro/x 2>/dev/null && echo ro-writable; \
             echo kept > /data/v; touch /new/ok",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "host file\n");
        assert_eq!(
            std::fs::read_to_string(rw.join("out")).unwrap(),
            "written\n"
        );
        assert!(
            created.join("ok").exists(),
            "-v creates a missing host directory"
        );
        // The named volume outlives the container.
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-v",
            &v_named,
            "busybox",
            "cat",
            "/data/v",
        ]);
        assert_eq!(stdout(&o), "kept\n");
        let m_vol = format!("type=volume,source={vol},target=/m,readonly");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--mount",
            &m_vol,
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1m",
            "--mount",
            &format!("type=bind,source={},target=/b,readonly", ro.display()),
            "busybox",
            "sh",
            "-c",
            "cat /m/v; touch /m/y 2>/dev/null && echo vol-writable; \
             grep ' /scratch ' /proc/mounts | cut -d' ' -f3; \
             head -c 2000000 /dev/zero > /scratch/big 2>/dev/null || echo tmpfs-full; \
             cat /b/f",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "kept\ntmpfs\ntmpfs-full\nhost file\n");
        // --mount refuses a missing bind source instead of creating it.
        let missing = format!("type=bind,source={}/nope,target=/x", d.path().display());
        let o = who.boxrun(&["--rm", "--mount", &missing, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
        // --read-only: the root is read-only, volumes stay writable.
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--read-only",
            "-v",
            &v_named,
            "busybox",
            "sh",
            "-c",
            "touch /etc/x 2>/dev/null && echo root-writable; echo w > /data/w && echo vol-ok",
        ]);
        assert_eq!(stdout(&o), "vol-ok\n");
        // An anonymous volume goes with a --rm container.
        let vols = boxrun_common::store(&who).join("volumes");
        let before = std::fs::read_dir(&vols).unwrap().count();
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "-v",
            "/anon",
            "busybox",
            "touch",
            "/anon/f",
        ]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(std::fs::read_dir(&vols).unwrap().count(), before);
        let _ = std::fs::remove_dir_all(vols.join(&vol));
    }
}

/// docker's volume population: an empty volume mounted over an image directory gets that
/// directory's files (owners kept) before the command runs; a volume with content, or one
/// mounted with `nocopy`, is left alone.
#[test]
fn a_new_volume_is_filled_from_the_image_once_unless_nocopy() {
    use std::os::unix::fs::MetadataExt;
    let Some(all) = Who::all() else { return };
    for who in all {
        let sh = |volume: &str, script: &str| {
            who.boxrun(&[
                "--rm",
                "--network",
                "none",
                "-v",
                volume,
                "busybox",
                "sh",
                "-c",
                script,
            ])
        };
        let vol = unique("fill");
        let v = format!("{vol}:/etc");
        let o = sh(
            &v,
            "head -1 /etc/passwd; rm /etc/group; echo mine > /etc/mine",
        );
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        assert!(stdout(&o).starts_with("root:"), "{}", stdout(&o));
        let vols = boxrun_common::store(&who).join("volumes");
        let data = vols.join(&vol).join("_data");
        let m = std::fs::metadata(data.join("passwd")).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            who.owner(),
            "owned by container root's host ids"
        );
        // Not empty any more: the next run sees the volume as the last one left it.
        let o = sh(
            &v,
            "cat /etc/mine; test -e /etc/group && echo refilled; true",
        );
        assert_eq!(stdout(&o), "mine\n", "{}", stderr(&o));
        let bare = unique("nocopy");
        let o = sh(
            &format!("{bare}:/etc:nocopy"),
            "test -e /etc/passwd && echo copied; true",
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "");
        let _ = std::fs::remove_dir_all(vols.join(&vol));
        let _ = std::fs::remove_dir_all(vols.join(&bare));
    }
}

#[test]
fn network_none_host_and_bridge() {
    let Some(all) = Who::all() else { return };
    common::users::open_tun();
    let host_ifs = std::fs::read_dir("/sys/class/net").unwrap().count();
    for who in all {
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net",
        ]);
        assert_eq!(stdout(&o), "lo\n");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "host",
            "busybox",
            "ls",
            "/sys/class/net",
        ]);
        // Other tests add and remove veths concurrently: compare loosely.
        let n = stdout(&o).lines().count();
        assert!(n >= 2 && n.abs_diff(host_ifs) < 20, "{}", stdout(&o));
        // bridge is the default.
        let o = who.boxrun(&[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ip -4 route | grep -c default",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "1\n");
        let o = who.boxrun(&["--rm", "--network", "bogus", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
    }
}

/// The host pid of the process whose environment has `marker` (a container's pid 1).
fn pid_with_env(marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// `lsns` of one process: (type, namespace, owning user namespace) per namespace.
///
/// lsns before util-linux 2.40.3 exits 1 with no message when any process of the host exits
/// while it scans /proc (util-linux#2799, an ESRCH it did not ignore); other tests start and
/// end containers meanwhile, so such a silent failure is tried again, a few times.
fn namespaces_of(pid: u32) -> Vec<(String, String, String)> {
    let run = || {
        std::process::Command::new("lsns")
            .args(["-n", "-r", "-o", "TYPE,NS,ONS", "-p", &pid.to_string()])
            .output()
            .expect("run lsns")
    };
    let mut o = run();
    for _ in 0..5 {
        if o.status.success() || !o.stderr.is_empty() {
            break;
        }
        o = run();
    }
    assert!(
        o.status.success(),
        "lsns -p {pid}: {:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

/// A foreground container's network namespace is made ahead by a helper, and its pid 1 joins
/// it (run::prestart): the result must be what one clone gives, every namespace of the
/// container owned by the container's own user namespace (root in it may mount, ping,
/// configure its network), and a user namespace that is not the tool's.
#[test]
fn a_foreground_containers_namespaces_are_all_owned_by_its_own_user_namespace() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let marker = format!("BOXKIT_NS_TEST={}", unique("ns"));
        let mut c = who.cmd("boxrun");
        c.args([
            "--rm",
            "--network",
            "none",
            "-e",
            &marker,
            "busybox",
            "sleep",
            "60",
        ])
        .stdin(std::process::Stdio::null());
        let mut child = c.spawn().expect("spawn boxrun");
        let mut pid = None;
        for _ in 0..200 {
            pid = pid_with_env(&marker);
            if pid.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = pid.expect("the container's pid 1");
        let ns = namespaces_of(pid);
        let own = |t: &str| ns.iter().find(|n| n.0 == t).cloned().expect(t);
        let user = own("user").1;
        let tool = namespaces_of(child.id());
        let tool_user = tool.iter().find(|n| n.0 == "user").unwrap().1.clone();
        for t in ["mnt", "net", "ipc", "uts", "cgroup", "pid"] {
            let (_, n, owner) = own(t);
            assert_eq!(owner, user, "[{}] {t} namespace {n}: {ns:?}", who.label());
            let host = tool.iter().find(|x| x.0 == t).unwrap().1.clone();
            assert_ne!(n, host, "[{}] {t} namespace is the caller's", who.label());
        }
        if let Who::Root = who {
            // Root's container gets a nested user namespace with only the container range.
            assert_ne!(user, tool_user, "{ns:?}");
        }
        // It works as one: loopback up, pid 1 the command, root may ping.
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cat /sys/class/net/lo/operstate; echo $$; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), "unknown\n1\nping\n");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(137), "[{}]", who.label());
    }
}

#[test]
fn limits_apply_as_root_and_are_refused_with_a_reason_rootless() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--memory",
            "32m",
            "--memory-swap",
            "32m",
            "busybox",
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}",
        ]);
        if let Who::User(_) = who {
            // No writable cgroup for this user here: a clear refusal, never silence.
            assert_eq!(o.status.code(), Some(125));
            assert!(
                stderr(&o).contains("cannot apply --memory"),
                "{}",
                stderr(&o)
            );
            continue;
        }
        assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--pids-limit",
            "10",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do sleep 100 & i=$((i+1)); done; echo all-forked",
        ]);
        assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
        assert!(!stdout(&o).contains("all-forked"));
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--cpuset-cpus",
            "0",
            "busybox",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ]);
        assert_eq!(
            stdout(&o).split_whitespace().last(),
            Some("0"),
            "{}",
            stderr(&o)
        );
        // --cpus: the quota is visible in the container's cgroup while it runs.
        let name = unique("cpus");
        let _c = boxrun_common::Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--cpus",
            "0.5",
            "busybox",
            "sleep",
            "100",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        let dirs = cgroup_dirs(&id[..16]);
        let quota: Vec<String> = dirs
            .iter()
            .filter_map(|d| {
                std::fs::read_to_string(d.join("cpu.max"))
                    .or_else(|_| std::fs::read_to_string(d.join("cpu.cfs_quota_us")))
                    .ok()
            })
            .collect();
        assert!(
            quota.iter().any(|q| q.starts_with("50000")),
            "{dirs:?} {quota:?}"
        );
        let o = who.boxrun(&["--rm", "--cpus", "-1", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
    }
}

fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, id: &str, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        if depth == 0 {
            return;
        }
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name() == id {
                    out.push(e.path());
                }
                walk(&e.path(), id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), id, 6, &mut out);
    out
}

fn cap_eff(out: &str) -> u64 {
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn capabilities_and_no_new_privileges() {
    let Some(all) = Who::all() else { return };
    const CHOWN: u64 = 1 << 0;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_ADMIN: u64 = 1 << 21;
    for who in all {
        let status = |extra: &[&str]| {
            let mut v = vec!["--rm", "--network", "none"];
            v.extend_from_slice(extra);
            v.extend_from_slice(&["busybox", "cat", "/proc/self/status"]);
            let o = who.boxrun(&v);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            stdout(&o)
        };
        let default = cap_eff(&status(&[]));
        assert_ne!(default & CHOWN, 0);
        assert_eq!(default & (NET_ADMIN | SYS_ADMIN), 0);
        let changed = cap_eff(&status(&["--cap-add", "NET_ADMIN", "--cap-drop", "chown"]));
        assert_eq!(changed, (default | NET_ADMIN) & !CHOWN);
        assert_eq!(cap_eff(&status(&["--cap-drop", "ALL"])), 0);
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--cap-drop",
            "CHOWN",
            "busybox",
            "chown",
            "app",
            "/tmp",
        ]);
        assert_ne!(o.status.code(), Some(0));
        let nnp = |s: &str| s.lines().any(|l| l == "NoNewPrivs:\t1");
        assert!(!nnp(&status(&[])));
        assert!(nnp(&status(&["--security-opt", "no-new-privileges"])));
        let o = who.boxrun(&["--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
    }
}

#[test]
fn init_interactive_rm_and_names() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo $$",
        ]);
        assert_eq!(stdout(&o), "1\n");
        let o = who.boxrun(&[
            "--rm",
            "--init",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo $$",
        ]);
        assert_ne!(stdout(&o), "1\n");
        assert_eq!(o.status.code(), Some(0));
        // Without -i the container reads nothing; with it, our stdin.
        let o = who.boxrun_stdin(&["--rm", "--network", "none", "busybox", "cat"], "in\n");
        assert_eq!(stdout(&o), "");
        let o = who.boxrun_stdin(
            &["--rm", "-i", "--network", "none", "busybox", "cat"],
            "in\n",
        );
        assert_eq!(stdout(&o), "in\n");
        // Without --rm the exited container stays, under its name, until box rm.
        let name = unique("keep");
        let _c = boxrun_common::Cleanup(&who, name.clone());
        let o = who.boxrun(&[
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 4",
        ]);
        assert_eq!(o.status.code(), Some(4));
        let o = who.box_(&["ps", "-a"]);
        let line = stdout(&o)
            .lines()
            .find(|l| l.ends_with(&name))
            .map(String::from)
            .unwrap_or_default();
        assert!(line.contains("Exited (4)"), "{}", stdout(&o));
        let o = who.boxrun(&["--name", &name, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
        assert_eq!(who.box_(&["rm", &name]).status.code(), Some(0));
        assert!(!stdout(&who.box_(&["ps", "-a"])).contains(&name));
        // --rm leaves nothing behind.
        let name = unique("gone");
        let o = who.boxrun(&[
            "--rm",
            "--name",
            &name,
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0));
        assert!(!stdout(&who.box_(&["ps", "-a"])).contains(&name));
        // --platform and --pull never with the image present are accepted.
        let o = who.boxrun(&[
            "--rm",
            "--pull",
            "never",
            "--platform",
            "linux/amd64",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn layers_are_unpacked_once_and_shared_by_later_runs() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let layers = boxrun_common::store(&who).join("layers");
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(0));
        let snapshot = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            let mut v: Vec<(String, i64)> = std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        m.ctime_nsec() + m.ctime() * 1_000_000_000,
                    )
                })
                .collect();
            v.sort();
            v
        };
        let before = snapshot(&layers);
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "touch", "/bin/new"]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            snapshot(&layers),
            before,
            "a run re-extracted or changed a layer"
        );
        // Writes went to the container's own upper layer, not the shared lower one.
        let o = who.boxrun(&["--rm", "--network", "none", "busybox", "ls", "/bin/new"]);
        assert_ne!(o.status.code(), Some(0));
    }
}

/// An image with nothing but a binary (no /proc, /sys, /dev or /etc) runs: its mount points
/// come from the store's mount points layer below the image (an /etc of the container's root,
/// 0755, dated 0, as that layer has it), not from pid 1 writing them into the container's
/// writable layer; /etc stays writable, and the generated files are bound over the layer's.
#[test]
fn an_image_without_mount_points_gets_them_from_the_mount_points_layer() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let tag = boxrun_common::build_image(
            &who,
            "bare",
            "FROM busybox AS b\nFROM scratch\nCOPY --from=b /bin/busybox /bin/busybox\n",
        );
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "--hostname",
            "bare-host",
            &tag,
            "/bin/busybox",
            "sh",
            "-c",
            "busybox stat -c '%u:%g %a %Y' /etc && busybox cat /etc/hostname \
             && busybox head -c 5 /proc/self/stat >/dev/null && busybox test -d /sys/kernel \
             && busybox test -c /dev/null && busybox touch /etc/new && echo ok",
        ]);
        assert_eq!(
            stdout(&o),
            "0:0 755 0\nbare-host\nok\n",
            "{}: {}",
            who.label(),
            stderr(&o)
        );
        let layer = boxrun_common::store(&who)
            .join("layers")
            .join(boxkit::store::mountpoints::DIFF_ID.trim_start_matches("sha256:"));
        assert!(layer.join("diff/etc/hosts").is_file(), "{}", who.label());
        assert_eq!(who.box_(&["rmi", &tag]).status.code(), Some(0));
    }
}

#[test]
fn a_user_without_a_subordinate_range_runs_images_with_one_warning_and_files_owned_by_root() {
    if !common::is_root() {
        return common::skip("creating the test user needs root");
    }
    let user = common::users::without_range();
    let dir = tempdir();
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
    let store = dir.path().join("store");
    let archive = std::fs::File::open(common::fixtures::oci_archive(
        common::fixtures::Fixture::Busybox,
    ))
    .unwrap();
    let o = common::users::command_as(&user, &common::bin("box"))
        .arg("--root")
        .arg(&store)
        .args(["load", "-q"])
        .stdin(archive)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // busybox has /home/app owned by uid 1000, which a single mapping cannot represent: the
    // layers are unpacked ignoring ownership (podman's ignore_chown_errors), so the image runs,
    // every file belongs to container root, and the user is told once how to fix it.
    let o = common::users::command_as(&user, &common::bin("boxrun"))
        .arg("--root")
        .arg(&store)
        .args([
            "--rm",
            "--network",
            "none",
            "busybox",
            "stat",
            "-c",
            "%u",
            "/home/app",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    assert_eq!(err.matches("usermod --add-subuids").count(), 1, "{err}");
}

#[test]
fn debian_with_the_remaining_flags() {
    let Some(all) = Who::all() else { return };
    let d = tempdir();
    let envf = d.path().join("env");
    std::fs::write(&envf, "FROM_FILE=deb\n").unwrap();
    for who in all {
        let mut args = vec![
            "--rm",
            "--network",
            "none",
            "--init",
            "--entrypoint",
            "/bin/bash",
            "--env-file",
            envf.to_str().unwrap(),
            "--mount",
            "type=tmpfs,target=/scratch",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
        ];
        if let Who::Root = who {
            args.extend_from_slice(&["--memory", "64m", "--pids-limit", "20", "--cpus", "1"]);
        }
        args.extend_from_slice(&[
            "debian:bookworm",
            "-c",
            "echo $FROM_FILE; echo $$; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
             touch /scratch/ok && echo tmpfs-ok; touch /etc/x 2>/dev/null || echo ro; exit 9",
        ]);
        let o = who.boxrun(&args);
        assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "deb");
        assert_ne!(lines[1], "1", "--init: bash is not pid 1");
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.ends_with("tmpfs-ok\nro\n"), "{out}");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "debian:bookworm",
            "ls",
            "/sys/class/net",
        ]);
        assert_eq!(stdout(&o), "lo\n", "{}", stderr(&o));
        // bridge: lo plus one interface (eth0 as root; rootless pasta copies the host's name).
        let o = who.boxrun(&["--rm", "debian:bookworm", "ls", "/sys/class/net"]);
        let ifs = stdout(&o);
        assert_eq!(ifs.lines().count(), 2, "{ifs} {}", stderr(&o));
        assert!(ifs.lines().any(|l| l == "lo"), "{ifs}");
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "debian:bookworm",
            "no-such-tool",
        ]);
        assert_eq!(o.status.code(), Some(127));
        let o = who.boxrun(&[
            "--rm",
            "--network",
            "none",
            "debian:bookworm",
            "/etc/hostname",
        ]);
        assert_eq!(o.status.code(), Some(126));
    }
}

#[test]
fn an_rm_containers_name_and_state_are_gone_as_soon_as_boxrun_returns() {
    let Some(all) = Who::all() else { return };
    for who in all {
        // boxrun returns when the tool reports its exit code, before the tool's namespaces are
        // torn down: everything a user can see must already be removed by then.
        let name = unique("again");
        for i in 0..10 {
            let o = who.boxrun(&[
                "--rm",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "exit 3",
            ]);
            assert_eq!(o.status.code(), Some(3), "run {i}: {}", stderr(&o));
        }
        let ps = stdout(&who.box_(&["ps", "-a"]));
        assert!(!ps.contains(&name), "{ps}");
    }
}

/// A foreground run's /dev is built ahead by a helper and attached by pid 1 (run::prestart);
/// a run whose /dev/shm size is not the default gets pid 1's own /dev. Both must be the same
/// tree: the same entries, owners, modes and mounts with the same types, sources and options
/// (but the sizes).
#[test]
fn a_helper_that_gives_up_leaves_the_same_container_to_the_plain_clone_and_to_pid_1() {
    // BOX_TEST_PRESTART (run::prestart::TEST_STOP_VAR): "none" stops the helper before it
    // makes anything, "no-dev" once it has sent the namespaces; the fallbacks must give the
    // container the same ids, namespaces, /dev, hostname and mount table (each mount's
    // point, options, propagation, type, source and superblock options; numbers masked,
    // and sorted, as mountinfo lists mounts by id: pid 1 joins the helper's mount namespace,
    // or with "none" copies the tool's), and never hang.
    let Some(all) = Who::all() else { return };
    let script = "cat /proc/self/uid_map /proc/self/gid_map; ls /sys/class/net; \
                  hostname | wc -c; cat /proc/self/cgroup; \
                  ls -ln /dev | awk 'NR>1 {print $1, $3, $4, $NF}'; \
                  awk '$5 ~ \"^/dev\" {print $5, $6, $8, $9, $10}' /proc/self/mountinfo; \
                  awk '{o=\"\"; for (i = 7; $i != \"-\"; i++) o = o \" \" $i; \
                        print $5, $6, o, $(i+1), $(i+2), $(i+3)}' /proc/self/mountinfo \
                  | sed -e 's/[0-9][0-9]*/N/g' | sort; \
                  echo x > /dev/shm/x && cat /dev/shm/x";
    for who in all {
        let run = |stop: Option<&str>| {
            let mut c = match &who {
                Who::Root => std::process::Command::new("env"),
                Who::User(u) => common::users::command_as(u, std::path::Path::new("/usr/bin/env")),
            };
            if let Some(s) = stop {
                c.arg(format!("BOX_TEST_PRESTART={s}"));
            }
            let o = c
                .arg(common::bin("boxrun"))
                .arg("--root")
                .arg(boxrun_common::store(&who))
                .args(["--rm", "--network", "none", "busybox", "sh", "-c", script])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "[{}] {stop:?}: {}",
                who.label(),
                stderr(&o)
            );
            stdout(&o)
        };
        let ahead = run(None);
        assert!(
            ahead.contains("\nlo\n") && ahead.contains("/dev/shm "),
            "[{}] {ahead}",
            who.label()
        );
        for stop in ["none", "no-dev"] {
            assert_eq!(run(Some(stop)), ahead, "[{}] {stop}", who.label());
        }
    }
}

#[test]
fn the_dev_built_ahead_is_the_same_tree_as_the_one_pid_1_builds() {
    let Some(all) = Who::all() else { return };
    // Entries (mode, owner, name), then each mount under /dev (mount point, options, type,
    // source, superblock options; sizes masked), then a write to /dev/shm and /dev/pts.
    let script = "ls -ln /dev | awk 'NR>1 {print $1, $3, $4, $NF}'; \
                  awk '$5 ~ \"^/dev\" {print $5, $6, $8, $9, $10}' /proc/self/mountinfo \
                  | sed 's/size=[0-9]*k/size=N/'; \
                  echo x > /dev/shm/x && cat /dev/shm/x; ls /dev/pts";
    for who in all {
        let run = |shm: &[&str]| {
            let mut args = vec!["--rm", "--network", "none"];
            args.extend_from_slice(shm);
            args.extend(["busybox", "sh", "-c", script]);
            let o = who.boxrun(&args);
            assert_eq!(o.status.code(), Some(0), "[{}] {}", who.label(), stderr(&o));
            stdout(&o)
        };
        let ahead = run(&[]);
        let by_pid_1 = run(&["--shm-size", "65m"]);
        assert_eq!(ahead, by_pid_1, "[{}]", who.label());
        for want in [
            " devpts devpts ",
            " mqueue mqueue ",
            " tmpfs shm ",
            "/dev/null ",
        ] {
            assert!(ahead.contains(want), "[{}] no {want}: {ahead}", who.label());
        }
    }
}

/// Spawn `boxrun ARGS…` with a unique `-e` marker and return it with its container's pid 1.
fn spawn_marked(who: &Who, flags: &[&str], cmd: &[&str]) -> (std::process::Child, u32) {
    let marker = format!("BOXKIT_ALONE_TEST={}", unique("alone"));
    let mut args = vec!["-e", &marker];
    args.extend_from_slice(flags);
    args.push("busybox");
    args.extend_from_slice(cmd);
    let mut child = who
        .cmd("boxrun")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn boxrun");
    for _ in 0..400 {
        if let Some(pid) = pid_with_env(&marker) {
            return (child, pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = child.kill();
    panic!(
        "[{}] no container with {marker}: {:?}",
        who.label(),
        child.wait_with_output()
    );
}

/// Wait up to 10 s for `pid` to end.
fn wait_ended(who: &Who, pid: i32, what: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !common::ended(pid) {
        assert!(
            std::time::Instant::now() < end,
            "[{}] {what} {pid} still runs 10 s later",
            who.label()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_run_that_needs_no_host_side_is_one_process_with_the_same_exit_codes_and_signals() {
    let Some(all) = Who::all() else { return };
    for who in all {
        let l = who.label();
        // `--network none` and nothing of the host side: the process the caller started is the
        // tool itself, the parent of the container's pid 1 (no host agent in between).
        let none = ["--rm", "--network", "none"];
        let (mut alone, pid1) = spawn_marked(&who, &none, &["sleep", "60"]);
        assert_eq!(
            common::parent_of(pid1 as i32),
            Some(alone.id() as i32),
            "[{l}] pid 1's parent"
        );
        // It holds no host credentials: its ids are container root's host ids (root's
        // subordinate range, or the user's own uid), in a user namespace of its own, and the
        // map writer (root) is gone: its children are pid 1 and the child that will hold its
        // teardown (run::linger), which has its credentials.
        let tool = alone.id() as i32;
        let uids = |pid: i32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            line.split_whitespace()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let owner = who.owner().0.to_string();
        assert_eq!(uids(tool), vec![owner.clone(); 4], "[{l}]");
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
        assert_ne!(ns(&tool.to_string()), ns("self"), "[{l}]");
        let list = || -> Vec<i32> {
            std::fs::read_to_string(format!("/proc/{tool}/task/{tool}/children"))
                .unwrap()
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect()
        };
        // The helper that made pid 1's namespaces is reaped right after pid 1's exec.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut children = list();
        while children.len() > 2 && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
            children = list();
        }
        assert!(children.contains(&(pid1 as i32)), "[{l}] {children:?}");
        assert!(children.len() <= 2, "[{l}] {children:?}");
        for c in children.iter().filter(|c| **c != pid1 as i32) {
            assert_eq!(uids(*c), vec![owner.clone(); 4], "[{l}] child {c}");
            assert_eq!(ns(&c.to_string()), ns(&tool.to_string()), "[{l}] child {c}");
        }
        // SIGKILL of that process ends the container with it, and leaves no process behind.
        unsafe { libc::kill(tool, libc::SIGKILL) };
        let st = alone.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        wait_ended(&who, pid1 as i32, "the container's pid 1");

        // The same run with `--cidfile` (which the host agent writes, as the caller) keeps the
        // agent: the tool is its child.
        let dir = tempdir();
        let cid = dir.path().join("cid");
        if let Who::User(u) = &who {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
        }
        let cid_s = cid.to_str().unwrap();
        let flags = ["--rm", "--network", "none", "--cidfile", cid_s];
        let (mut agent, pid1) = spawn_marked(&who, &flags, &["sleep", "60"]);
        let tool = common::parent_of(pid1 as i32).expect("pid 1's parent");
        assert_ne!(
            tool,
            agent.id() as i32,
            "[{l}] --cidfile ran without the agent"
        );
        assert_eq!(common::parent_of(tool), Some(agent.id() as i32), "[{l}]");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid1 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(agent.wait().unwrap().code(), Some(137), "[{l}]");
        assert_eq!(std::fs::read_to_string(&cid).unwrap().len(), 64, "[{l}]");

        // Exit codes: the container's own, and docker's 125 and 127.
        for (cmd, code) in [
            (&["sh", "-c", "exit 7"][..], 7),
            (&["true"][..], 0),
            (&["no-such-command"][..], 127),
        ] {
            let mut args = none.to_vec();
            args.push("busybox");
            args.extend_from_slice(cmd);
            let o = who.boxrun(&args);
            assert_eq!(o.status.code(), Some(code), "[{l}] {cmd:?}: {}", stderr(&o));
        }
        let o = who.boxrun(&["--rm", "--network", "none", "no-such-image-here"]);
        assert_eq!(o.status.code(), Some(125), "[{l}] {}", stderr(&o));

        // SIGTERM sent to the caller's process reaches the container, and the run ends with
        // the container's code; its output is all there.
        let script = "trap 'echo trapped; exit 3' TERM; echo ready; while :; do sleep 0.1; done";
        let (run, _) = spawn_marked(&who, &none, &["sh", "-c", script]);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !common::blocks(run.id(), libc::SIGTERM) {
            assert!(
                std::time::Instant::now() < end,
                "[{l}] SIGTERM never blocked"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
        let o = run.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(3), "[{l}] {}", stderr(&o));
        assert_eq!(stdout(&o), "ready\ntrapped\n", "[{l}]");
    }
}
