//! Everything a run creates on the host goes away when it ends — also when the container's
//! init is SIGKILLed from the host.

mod common;
mod sandbox_common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ended, parent_of};
use sandbox_common::{Who, busybox_rootfs, cgroup_dirs, unique_id};

#[test]
fn sigkill_of_container_init_leaves_no_cgroup_veth_lease_or_scratch_dir() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let id = unique_id("kill");
    let mut child = who
        .box_cmd()
        .args([
            "sandbox-run",
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--id",
            &id,
        ])
        .args([
            "--network",
            "bridge",
            "--pids-limit",
            "100",
            "--",
            "sleep",
            "1000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The container's host pid is the one in its cgroup. Poll for setup to finish (this is a
    // wait, not a timed assertion).
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        let procs = cgroup_dirs(&id)
            .first()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .unwrap_or_default();
        if let Some(p) = procs.lines().next().and_then(|l| l.parse::<i32>().ok()) {
            // Wait until the init has exec'd sleep, i.e. setup is complete.
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let veth = format!("bx{pid:x}");
    assert!(std::path::Path::new("/sys/class/net").join(&veth).exists());
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
    // The kernel removes the veth pair with the container's network namespace, from a
    // worker thread shortly after the last process in it is gone.
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new("/sys/class/net").join(&veth).exists() {
        assert!(Instant::now() < gone, "{veth} still exists 10 s after exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!std::path::Path::new(&format!("/tmp/boxkit-{id}")).exists());
    let leases: Vec<String> = std::fs::read_dir("/run/boxkit/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == pid.to_string()))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
}

/// The pid of the first process named `comm` among the descendants of `ancestor`.
fn descendant_named(ancestor: u32, comm: &str) -> Option<i32> {
    let ancestor = ancestor as i32;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if c.trim() != comm {
            return None;
        }
        let mut p = parent_of(pid)?;
        for _ in 0..8 {
            if p == ancestor {
                return Some(pid);
            }
            p = parent_of(p)?;
        }
        None
    })
}

/// `box sandbox-run --network NETWORK -- sleep 1000` as `who`, once the container's
/// `sleep` runs: the command, the container's host pid, and its root filesystem (kept alive).
// The child is handed to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn start_sleeper(who: &Who, network: &str) -> (std::process::Child, i32, sandbox_common::Rootfs) {
    let rfs = busybox_rootfs(who.root_owner());
    let mut child = who
        .box_cmd()
        .args(["sandbox-run", "--rootfs", rfs.path.to_str().unwrap()])
        .args(["--network", network, "--", "sleep", "1000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = descendant_named(child.id(), "sleep") {
            return (child, p, rfs);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("[{}] the container did not start within 30 s", who.label());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rootless: the veth pair lives in the keeper's network namespace and the lease in the
/// user's runtime directory; both go when the container's init is SIGKILLed.
#[test]
fn rootless_sigkill_of_container_init_leaves_no_veth_or_lease() {
    let Some(who) = Who::with_range() else { return };
    let Who::WithRange(user) = &who else {
        unreachable!("with_range gives WithRange")
    };
    common::users::open_tun();
    let (mut child, pid, _rfs) = start_sleeper(&who, "bridge");
    let run_dir = format!("/tmp/boxkit-{}", user.uid);
    let keeper = std::fs::read_to_string(format!("{run_dir}/keeper.pid")).unwrap();
    let veth = format!("bx{pid:x}");
    let links = || {
        let o = std::process::Command::new("nsenter")
            .args(["-t", keeper.trim(), "-n", "ip", "-o", "link"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let lease_of_pid = || {
        std::fs::read_dir(format!("{run_dir}/net"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("lease-")
                    && std::fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == pid.to_string())
            })
    };
    assert!(links().contains(&veth), "{veth} in the keeper's netns");
    assert!(lease_of_pid());
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(!lease_of_pid(), "the lease goes with the container");
    let gone = Instant::now() + Duration::from_secs(10);
    while links().contains(&veth) {
        assert!(Instant::now() < gone, "{veth} still exists 10 s after exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL of the command's host-side process (the agent, which owns the run's cgroups and
/// network) ends the tool process and the container with it: nothing runs on unowned.
fn agent_sigkill_ends_tool_and_container(who: &Who) {
    let (mut child, sleep, _rfs) = start_sleeper(who, "none");
    let tool = parent_of(sleep).expect("the container's parent, the tool");
    let agent = parent_of(tool).expect("the tool's parent, the agent");
    unsafe { libc::kill(agent, libc::SIGKILL) };
    let gone = Instant::now() + Duration::from_secs(10);
    while !(ended(tool) && ended(sleep)) {
        assert!(
            Instant::now() < gone,
            "[{}] 10 s after the agent's SIGKILL: tool {tool} ended {}, container {sleep} ended {}",
            who.label(),
            ended(tool),
            ended(sleep)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
}

#[test]
fn sigkill_of_the_host_process_ends_the_tool_and_the_container_root() {
    let Some(who) = Who::root() else { return };
    agent_sigkill_ends_tool_and_container(&who);
}

#[test]
fn sigkill_of_the_host_process_ends_the_tool_and_the_container_rootless() {
    let Some(who) = Who::with_range() else { return };
    agent_sigkill_ends_tool_and_container(&who);
}
