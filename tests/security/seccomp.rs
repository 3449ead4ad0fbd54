//! The default seccomp profile and --security-opt seccomp=… (issue item 4).
//!
//! A container could call keyctl and create user namespaces (which reopen kernel attack
//! surface such as nf_tables to an unprivileged process). Docker's default profile denies
//! both with EPERM; so does boxkit's, in `boxrun`, `box exec` and boxbuild's RUN steps, as
//! root and rootless. The probe is a tiny static C program compiled with gcc at test time and
//! bind-mounted read-only (busybox has no keyctl, and its applets hide errno values). The
//! filter runs inside the container only, so no host canary can change; each test still checks
//! one, as every test of the suite does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, box_, boxrun};

/// The probe binary's directory (mode 0755, readable by the rootless test users). One fixed
/// directory, so runs leave nothing new behind; the binary is built beside it and renamed in.
fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let dir = PathBuf::from("/tmp/boxkit-seccomp-probe");
        // Only a directory of our own: anything else (a symlink, another user's) goes.
        if let Ok(m) = std::fs::symlink_metadata(&dir)
            && (!m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw())
        {
            let _ = std::fs::remove_file(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::create_dir(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/seccomp_probe.c");
        let tmp = dir.join(format!("probe.{}", std::process::id()));
        let o = std::process::Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("gcc (scripts/install-deps.sh installs it)");
        assert!(
            o.status.success(),
            "gcc: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&tmp, dir.join("probe")).unwrap();
        dir
    })
}

fn probe_mount() -> String {
    format!("{}:/p:ro", probe_dir().display())
}

/// Root, and a rootless user with a subordinate range (None after a skip).
fn everyone() -> Option<Vec<Who>> {
    Some(vec![Who::root()?, Who::with_range()?])
}

/// `boxrun --rm --network none -v PROBE:/p:ro [extra…] busybox sh -c SCRIPT`.
fn run(env: &Env, extra: &[&str], script: &str) -> Output {
    let m = probe_mount();
    let mut args = vec!["--rm", "--network", "none", "-v", &m];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    boxrun(env, &args)
}

fn out(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A profile file in the Env's directory (readable by its user).
fn write_profile(env: &Env, name: &str, json: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, json).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

#[test]
fn default_container_denies_keyctl_user_namespaces_and_mount() {
    let Some(mut all) = everyone() else { return };
    // Also a rootless user without a subordinate range (one id mapped, setgroups denied).
    all.extend(Who::without_range());
    for who in all {
        let label = who.label();
        let canary = Canary::plant();
        let env = Env::new(who);
        let o = run(
            &env,
            &[],
            "/p/probe keyctl add_key unshare-user clone3; unshare -U true; echo unshare=$?; \
             mkdir /tmp/m; mount -t tmpfs none /tmp/m 2>&1 | sed s/^/mount:/; /p/probe getpid",
        );
        let text = out(&o);
        assert!(text.contains("keyctl: errno 1 "), "{label}: {text}");
        assert!(text.contains("add_key: errno 1 "), "{label}: {text}");
        assert!(text.contains("unshare-user: errno 1 "), "{label}: {text}");
        // clone3 answers ENOSYS, so libc falls back to clone (docker does the same).
        assert!(text.contains("clone3: errno 38 "), "{label}: {text}");
        assert!(text.contains("Operation not permitted"), "{label}: {text}");
        assert!(text.contains("unshare=1"), "{label}: {text}");
        assert!(
            text.contains("mount:") && text.contains("Operation not permitted"),
            "{label}: {text}"
        );
        assert!(text.contains("getpid: ok"), "{label}: {text}");
        canary.assert_untouched();
    }
}

#[test]
fn unconfined_allows_user_namespaces() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        let o = run(
            &env,
            &["--security-opt", "seccomp=unconfined"],
            "unshare -U true && echo unshare=ok; /p/probe keyctl",
        );
        let text = out(&o);
        assert!(text.contains("unshare=ok"), "{label}: {text}");
        assert!(text.contains("keyctl: ok"), "{label}: {text}");
    }
}

#[test]
fn custom_profile_denies_mkdir_with_its_errno_and_nothing_else() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        // EDQUOT (122): an errno nothing else here would produce.
        let p = write_profile(
            &env,
            "no-mkdir.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 122}]}"#,
        );
        let opt = format!("seccomp={p}");
        let o = run(
            &env,
            &["--security-opt", &opt],
            "/p/probe mkdir /tmp/a mkdir-raw /tmp/b; mkdir /tmp/c; echo mkdir=$?; \
             touch /tmp/f && rm /tmp/f && echo touch=ok; /p/probe keyctl unshare-user",
        );
        let text = out(&o);
        assert!(text.contains("mkdir: errno 122 "), "{label}: {text}");
        assert!(text.contains("mkdir-raw: errno 122 "), "{label}: {text}");
        assert!(text.contains("mkdir=1"), "{label}: {text}");
        assert!(text.contains("touch=ok"), "{label}: {text}");
        // The profile replaces the default one: what it does not deny is allowed.
        assert!(text.contains("keyctl: ok"), "{label}: {text}");
        assert!(text.contains("unshare-user: ok"), "{label}: {text}");
    }
}

#[test]
fn cap_add_sys_admin_unlocks_what_dockers_profile_unlocks() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        let o = run(
            &env,
            &["--cap-add", "SYS_ADMIN"],
            "/p/probe unshare-user keyctl; mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mount=ok",
        );
        let text = out(&o);
        assert!(text.contains("unshare-user: ok"), "{label}: {text}");
        assert!(text.contains("mount=ok"), "{label}: {text}");
        // CAP_SYS_ADMIN does not unlock the keyring in docker's profile either.
        assert!(text.contains("keyctl: errno 1 "), "{label}: {text}");
    }
}

#[test]
fn x32_syscalls_kill_the_container() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        let m = probe_mount();
        let o = boxrun(
            &env,
            &[
                "--rm",
                "--network",
                "none",
                "-v",
                &m,
                "busybox",
                "/p/probe",
                "x32-getpid",
            ],
        );
        // SIGSYS (31): 128 + 31.
        assert_eq!(o.status.code(), Some(159), "{label}: {}", out(&o));
    }
}

#[test]
fn box_exec_applies_the_containers_profile() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        let m = probe_mount();
        for (opt, want) in [
            (None, "keyctl: errno 1 "),
            (Some("seccomp=unconfined"), "keyctl: ok"),
        ] {
            let mut args = vec!["-d", "--network", "none", "-v", &m];
            if let Some(o) = opt {
                args.extend_from_slice(&["--security-opt", o]);
            }
            args.extend_from_slice(&["busybox", "sleep", "60"]);
            let o = boxrun(&env, &args);
            assert!(o.status.success(), "{label}: {}", out(&o));
            let id = stdout(&o).trim().to_string();
            let e = box_(&env, &["exec", &id, "/p/probe", "keyctl", "unshare-user"]);
            let text = out(&e);
            let inspect = stdout(&box_(&env, &["inspect", &id]));
            let _ = box_(&env, &["rm", "-f", &id]);
            // inspect shows a non-default choice, as docker's HostConfig.SecurityOpt does.
            assert_eq!(
                inspect.contains("seccomp=unconfined"),
                opt.is_some(),
                "{label} {opt:?}: {inspect}"
            );
            assert!(text.contains(want), "{label} {opt:?}: {text}");
            let unshare = if opt.is_none() {
                "unshare-user: errno 1 "
            } else {
                "unshare-user: ok"
            };
            assert!(text.contains(unshare), "{label} {opt:?}: {text}");
        }
    }
}

#[test]
fn build_run_steps_are_filtered() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let canary = Canary::plant();
        let env = Env::new(who);
        env.boxfile("FROM busybox\nRUN unshare -U true\n");
        let o = env.build(&["-t", "nested-userns"]);
        assert!(
            !o.status.success(),
            "{label}: a RUN step made a user namespace"
        );
        assert!(
            stderr(&o).contains("Operation not permitted"),
            "{label}: {}",
            stderr(&o)
        );
        // The filter allows what ordinary steps do.
        env.boxfile("FROM busybox\nRUN mkdir -p /x/y && echo ok > /x/y/f && chown 1000 /x/y/f\n");
        env.build_ok(&["-t", "ordinary"]);
        canary.assert_untouched();
    }
}

#[test]
fn bad_profiles_fail_before_anything_starts_with_exit_125() {
    let Some(who) = Who::root() else { return };
    let env = Env::new(who);
    let bad_json = write_profile(&env, "bad.json", "{\"defaultAction\": ");
    let unknown_call = write_profile(
        &env,
        "typo.json",
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","mkdri"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let unknown_action = write_profile(
        &env,
        "action.json",
        r#"{"defaultAction":"SCMP_ACT_PERHAPS"}"#,
    );
    let notify = write_profile(
        &env,
        "notify.json",
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    );
    for (path, want) in [
        (
            "/nonexistent/profile.json".to_string(),
            "read seccomp profile /nonexistent/profile.json",
        ),
        (bad_json.clone(), "not valid JSON"),
        (unknown_call, "unknown syscall \"mkdri\""),
        (unknown_action, "unknown action \"SCMP_ACT_PERHAPS\""),
        (notify, "SCMP_ACT_NOTIFY is not supported"),
    ] {
        let opt = format!("seccomp={path}");
        let o = boxrun(
            &env,
            &["--name", "never", "--security-opt", &opt, "busybox", "true"],
        );
        assert_eq!(o.status.code(), Some(125), "{path}: {}", out(&o));
        assert!(stderr(&o).contains(want), "{path}: {}", stderr(&o));
        // Nothing was created.
        let ps = box_(&env, &["ps", "-a", "-q"]);
        assert_eq!(stdout(&ps).trim(), "", "{path}: a container was created");
    }
    let o = boxrun(&env, &["--security-opt", "seccomp", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", out(&o));
}

#[test]
fn init_containers_still_run_and_reap() {
    let Some(all) = everyone() else { return };
    for who in all {
        let label = who.label();
        let env = Env::new(who);
        // An orphan (the subshell's sleep) is reparented to boxkit's init, which must reap
        // it; the command's exit code comes back.
        let o = run(
            &env,
            &["--init"],
            "(sleep 0.2 &); sleep 0.6; /p/probe keyctl; \
             zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l); \
             echo zombies=$zombies; exit 3",
        );
        let text = out(&o);
        assert_eq!(o.status.code(), Some(3), "{label}: {text}");
        assert!(text.contains("keyctl: errno 1 "), "{label}: {text}");
        assert!(text.contains("zombies=0"), "{label}: {text}");
    }
}
