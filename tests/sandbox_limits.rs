//! cgroup limits on the real kernel: enforced as root, refused with a reason where no
//! writable cgroup exists, and always cleaned up.

mod common;
mod sandbox_common;

use sandbox_common::{Who, busybox_rootfs, cgroup_dirs, stderr, unique_id};

#[test]
fn fork_bomb_with_pids_limit_64_fails_the_container_and_cleans_its_cgroup() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let id = unique_id("pids");
    // 500 background sleeps would all run without the limit; with it fork fails, the shell
    // (pid 1) gives up, and the pid namespace takes the rest down with it.
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--id",
        &id,
        "--pids-limit",
        "64",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 500 ]; do sleep 1000 & i=$((i+1)); done; echo all-forked",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("all-forked"));
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
}

#[test]
fn memory_32m_with_a_256m_allocation_is_oom_killed_as_137_and_cleans_its_cgroup() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let id = unique_id("mem");
    // dd allocates (and fills) one 256 MiB buffer.
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--id",
        &id,
        "--memory",
        "32m",
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=256M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
}

#[test]
fn limits_without_a_writable_cgroup_are_refused_with_the_reason() {
    for who in [Who::with_range(), Who::without_range()]
        .into_iter()
        .flatten()
    {
        let rfs = busybox_rootfs(who.root_owner());
        let o = who.run(&[
            "--rootfs",
            rfs.path.to_str().unwrap(),
            "--memory",
            "32m",
            "--",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(125), "{}", who.label());
        let e = stderr(&o);
        assert!(
            e.contains("cannot apply --memory") && e.contains("not writable"),
            "{}: {e}",
            who.label()
        );
    }
}
