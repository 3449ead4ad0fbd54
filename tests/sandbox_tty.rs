//! Terminal handling: `-t` gives the container a pty of its own devpts; without it stdout
//! and stderr stay separate.

mod common;
mod sandbox_common;

use std::process::Command;

use sandbox_common::{Who, busybox_rootfs, stderr, stdout};

#[test]
fn tty_is_a_pty_inside_the_container_with_the_callers_window_size() {
    let Some(who) = Who::root() else { return };
    if !common::have_tool("script") {
        return common::skip("script (util-linux) is needed to provide a terminal");
    }
    let rfs = busybox_rootfs(who.root_owner());
    let cmd = format!(
        "stty cols 123 rows 45; {} sandbox-run --rootfs {} -t -- sh -c 'tty; stty size; exit 7'",
        common::bin("box").display(),
        rfs.path.display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0\r\n"), "{out:?}");
    assert!(out.contains("45 123\r\n"), "{out:?}");
    assert_eq!(o.status.code(), Some(7));
}

#[test]
fn without_tty_stdout_and_stderr_stay_separate() {
    let Some(who) = Who::root() else { return };
    let rfs = busybox_rootfs(who.root_owner());
    let o = who.run(&[
        "--rootfs",
        rfs.path.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o).lines().last(), Some("err"));
}
