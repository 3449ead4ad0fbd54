//! CVE-2022-29162: inheritable capabilities.
//!
//! runc gave the container process a non-empty inheritable set, so a non-root user who
//! executed a program with inheritable file capabilities gained them. Docker (and boxkit) now
//! start every container process with empty inheritable and ambient sets, whatever the user,
//! in `boxrun`, `box exec` and RUN steps. A user namespace clears both when it is entered, so
//! the case that reaches boxkit's own code is `--userns=host` (root), where the container
//! shares the caller's namespace and so, before the fix, the caller's inheritable set.

use std::process::Command;

use crate::build_common::{Env, Who, stderr, stdout};
use crate::common;
use crate::support::{Detached, root_and_rootless, unique};

const PROBE: &str = "grep -E '^Cap(Inh|Amb):' /proc/self/status";

/// Every CapInh/CapAmb line in `out` (prefixes allowed), as (name, hex).
fn cap_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let i = l.find("CapInh:").or_else(|| l.find("CapAmb:"))?;
            let (k, v) = l[i..].split_once(':')?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn assert_empty_sets(out: &str, expected_lines: usize, what: &str) {
    let caps = cap_lines(out);
    assert_eq!(caps.len(), expected_lines, "{what}: probe output:\n{out}");
    for (k, v) in &caps {
        assert_eq!(v, "0000000000000000", "{what}: {k} is not empty:\n{out}");
    }
}

#[test]
fn run_exec_and_run_step_have_empty_inheritable_and_ambient_sets() {
    for who in root_and_rootless() {
        let env = Env::new(who);
        let name = unique("capinh");
        let _c = Detached::start(
            &env,
            &name,
            &["--network", "none", "busybox", "sleep", "1000"],
        );
        for user in ["0", "1000:1000"] {
            let what = format!("{}: user {user}", env.who.label());
            let o = env.cmd(
                "boxrun",
                &[
                    "--rm",
                    "--network",
                    "none",
                    "-u",
                    user,
                    "busybox",
                    "sh",
                    "-c",
                    PROBE,
                ],
            );
            assert!(o.status.success(), "{what}: boxrun: {}", stderr(&o));
            assert_empty_sets(&stdout(&o), 2, &format!("{what}: boxrun"));
            let o = env.cmd("box", &["exec", "-u", user, &name, "sh", "-c", PROBE]);
            assert!(o.status.success(), "{what}: box exec: {}", stderr(&o));
            assert_empty_sets(&stdout(&o), 2, &format!("{what}: box exec"));
        }
        env.boxfile(&format!(
            "FROM busybox\nRUN {PROBE}\nUSER 1000:1000\nRUN {PROBE}\n"
        ));
        let o = env.build(&["-t", "capinh", "--progress=plain"]);
        let what = format!("{}: RUN", env.who.label());
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        assert_empty_sets(&format!("{}{}", stdout(&o), stderr(&o)), 4, &what);
    }
}

/// `setpriv` gives boxkit's caller inheritable and ambient capabilities; with
/// `--userns=host` nothing clears them on the way, so boxkit itself must.
#[test]
fn callers_inheritable_caps_do_not_reach_a_host_userns_container() {
    let Some(who) = Who::root() else {
        return;
    };
    let env = Env::new(who);
    let with_caps = |bin: &str| {
        let mut c = Command::new("setpriv");
        c.args([
            "--inh-caps=+net_raw,+sys_admin,+sys_ptrace",
            "--ambient-caps=+net_raw",
            "--",
        ])
        .arg(common::bin(bin))
        .arg("--root")
        .arg(env.store());
        c
    };
    let name = unique("capinhhost");
    let _c = Detached::start(
        &env,
        &name,
        &[
            "--userns=host",
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    for user in ["0", "1000:1000"] {
        let what = format!("--userns=host, user {user}");
        let o = with_caps("boxrun")
            .args([
                "--rm",
                "--userns=host",
                "--network",
                "none",
                "-u",
                user,
                "busybox",
                "sh",
                "-c",
                PROBE,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: boxrun: {}", stderr(&o));
        assert_empty_sets(&stdout(&o), 2, &format!("{what}: boxrun"));
        let o = with_caps("box")
            .args(["exec", "-u", user, &name, "sh", "-c", PROBE])
            .output()
            .unwrap();
        assert!(o.status.success(), "{what}: box exec: {}", stderr(&o));
        assert_empty_sets(&stdout(&o), 2, &format!("{what}: box exec"));
    }
}
