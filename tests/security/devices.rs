//! Devices: nodev everywhere but the bound nodes, and a device filter (issue item 6).
//!
//! With `--userns=host` the container has CAP_MKNOD in the initial user namespace, so it can
//! make any device node; what keeps it from opening one is, first, that every filesystem it
//! can write to is mounted `nodev` (the rootfs overlay, /dev, /dev/shm, /dev/mqueue, tmpfs
//! mounts, volumes and bind mounts; only the bound /dev/null, zero, full, random, urandom, tty
//! and devpts allow devices), and second the cgroup v1 devices controller with docker's/runc's
//! rules (deny all; mknod of anything; read/write only the standard nodes). In a user
//! namespace (root's default, rootless) mknod of a device is refused by the kernel outright,
//! so there `nodev` alone guards the nodes that exist (rootless could not use the devices
//! controller anyway). Device nodes in image layers are never created (the extractor's
//! business; see extraction.rs).
//!
//! A nodev mount refuses the open with EACCES (the kernel checks it before the device filter,
//! which says EPERM). Note on this machine: opening *any* block device fails with EPERM even
//! for host root (the VM forbids it), so the block-device half passes regardless here; the
//! character device (1:3, /dev/null's numbers under another name) is what tells nodev apart.

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, assert_store_owners, boxrun};

/// Major and minor of a real block device of the host (its first disk), "254 0" style.
fn host_block_device() -> String {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().replace(':', " "))
        .next()
        .unwrap_or_else(|| "7 0".into())
}

/// For each writable place and each of a character and a block device: make the node and try
/// to open it; one line `DIR|TYPE|RESULT` each.
const PROBE: &str = r#"
for d in /dev /tmp /dev/shm /t /v /h; do
  for n in "c 1 3" "b $BLK"; do
    p=$d/boxkit-dev-probe
    rm -f $p
    if ! mknod $p $n 2>/dev/null; then echo "$d|$n|mknod-refused"; continue; fi
    err=$( (: < $p) 2>&1 ) && err=opened
    echo "$d|$n|$err"
    rm -f $p
  done
done
echo x > /dev/null && echo null-ok
head -c 4 /dev/zero | wc -c
head -c 4 /dev/urandom | wc -c
head -c 4 /dev/random | wc -c
(echo x > /dev/full) 2>&1
(exec 3<>/dev/ptmx) && echo ptmx-ok
(: < /dev/tty) 2>&1
true
"#;

fn probe(env: &Env, userns_host: bool, hostdir: &std::path::Path) -> String {
    let bind = format!("{}:/h", hostdir.display());
    let script = format!("BLK='{}'\n{PROBE}", host_block_device());
    let mut args = vec!["--rm"];
    if userns_host {
        args.push("--userns=host");
    }
    args.extend([
        "-v",
        &bind,
        "-v",
        "devvol:/v",
        "--mount",
        "type=tmpfs,target=/t",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let o = boxrun(env, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn a_device_node_made_in_a_container_cannot_be_opened_and_the_bound_nodes_work() {
    let Some(root) = Who::root() else { return };
    let user = Who::with_range().unwrap();
    for (who, userns_host) in [(root.clone(), false), (root, true), (user, false)] {
        let label = format!(
            "{}{}",
            who.label(),
            if userns_host { " --userns=host" } else { "" }
        );
        let env = Env::with_registry(who.clone());
        let canary = Canary::plant();
        // A host directory on a filesystem that allows devices, writable by container root.
        let hostdir = tempfile::Builder::new()
            .prefix("boxkit-devbind-")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(hostdir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = probe(&env, userns_host, hostdir.path());
        let lines: Vec<&str> = out.lines().collect();
        let nodes: Vec<&&str> = lines.iter().filter(|l| l.contains('|')).collect();
        assert_eq!(nodes.len(), 12, "{label}: {out}");
        for l in nodes {
            if userns_host {
                // CAP_MKNOD in the initial namespace: the node is made, but never opens —
                // EACCES from a nodev mount (checked first), EPERM from the device filter.
                assert!(
                    l.ends_with("Permission denied") || l.ends_with("Operation not permitted"),
                    "{label}: {l} (all: {out})"
                );
            } else {
                // In a user namespace the kernel refuses mknod of a device altogether.
                assert!(l.ends_with("|mknod-refused"), "{label}: {l}");
            }
        }
        let rest: Vec<&str> = lines.into_iter().filter(|l| !l.contains('|')).collect();
        assert_eq!(
            &rest[..6],
            &[
                "null-ok",
                "4",
                "4",
                "4",
                "sh: write error: No space left on device",
                "ptmx-ok"
            ],
            "{label}: the bound nodes work: {out}"
        );
        assert!(
            rest[6].contains("No such device or address"),
            "{label}: /dev/tty opens (no terminal, ENXIO — not EPERM): {out}"
        );
        canary.assert_untouched();
        if !userns_host {
            // With --userns=host container ids are host ids by design: nothing to check.
            assert_store_owners(&env);
        }
    }
}

/// The rules docker's default spec and runc give a container (cgroup v1 devices syntax).
const EXPECTED_RULES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Host pids whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn with_userns_host_the_container_runs_under_dockers_device_rules() {
    let Some(root) = Who::root() else { return };
    let v1 = std::path::Path::new("/sys/fs/cgroup/devices");
    if !v1.join("devices.list").exists() {
        // cgroup v2 only: no device filter yet (docs/security/mounts-and-devices.md), nodev holds.
        return crate::common::skip("no cgroup v1 devices hierarchy on this host");
    }
    let env = Env::with_registry(root);
    let secs = "7.31";
    let args = ["--rm", "--userns=host", "busybox", "sleep", secs];
    let mut c = env.command("boxrun", &[]);
    let mut child = c
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pid = None;
    for _ in 0..200 {
        if let Some(p) = pids_running(&["sleep", secs]).first() {
            pid = Some(*p);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let pid = pid.expect("the container's sleep shows up");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| l.split_once(":devices:").map(|(_, p)| p.to_string()))
        .expect("a devices line");
    let list = std::fs::read_to_string(v1.join(path.trim_start_matches('/')).join("devices.list"))
        .unwrap();
    let mut got: Vec<&str> = list.lines().collect();
    got.sort();
    let mut want = EXPECTED_RULES.to_vec();
    want.sort();
    assert_eq!(got, want, "cgroup {path}");
    assert!(child.wait().unwrap().success());
}
