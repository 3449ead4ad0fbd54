//! CVE-2021-30465: a symlink race on mount targets; targets resolve inside the container root
//! (issue item 5).
//!
//! runc resolved a volume's target path once and later let the kernel walk the string again,
//! so a second container sharing a volume could swap a directory on that path for a symlink
//! in between and have the mount land on the host. boxkit never hands the kernel a target
//! string to walk: every target is opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
//! on a descriptor of the mounted container root, missing mount points are created relative to
//! descriptors, and the mount goes onto the opened descriptor. A symlink swapped in at any
//! moment therefore resolves inside the container's root (or the run fails), and nothing on
//! the host is created or covered. The plan also used to be computed against the host's
//! `/tmp/root` before the container's scratch tmpfs covered it, so symlinks any local user can
//! plant there decided where masks and mounts went: the second test plants them.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, assert_store_owners, boxrun};

fn whos() -> Vec<Who> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![root, Who::with_range().unwrap()]
}

/// Swaps two names in `dir` with renameat2(RENAME_EXCHANGE) until dropped: the path is always
/// there, alternately a directory and a symlink, as in the published exploit.
struct Racer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Racer {
    fn start(dir: &Path, a: &str, b: &str) -> Racer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cpath = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let (a, b) = (cpath(&dir.join(a)), cpath(&dir.join(b)));
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: two valid NUL-terminated paths; no memory is handed to the kernel.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
                n += 1;
            }
            n
        });
        Racer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let n = t.join().unwrap();
            assert!(n > 0, "the racer never swapped");
        }
    }
}

#[test]
fn a_volume_path_swapped_for_a_symlink_never_mounts_or_creates_outside_the_root() {
    for who in whos() {
        let env = Env::with_registry(who.clone());
        let canary = Canary::plant_writable();
        // A victim mounts `other` below a path inside the shared volume that a racer (standing
        // in for a second container sharing it) keeps swapping between a directory and a
        // symlink: to the host canary (a string walk would create `c` there) and to `/`.
        for (link, target) in [
            (canary.dir.display().to_string(), "/a/b/c"),
            ("/".to_string(), "/a/b"),
        ] {
            let setup = format!(
                "rm -rf /a/b /a/b.swap && mkdir /a/b && ln -s {link} /a/b.swap && \
                 echo other-marker > /o/marker"
            );
            let o = boxrun(
                &env,
                &[
                    "--rm",
                    "-v",
                    "shared:/a",
                    "-v",
                    "other:/o",
                    "busybox",
                    "sh",
                    "-c",
                    &setup,
                ],
            );
            assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
            let data = env.store().join("volumes/shared/_data");
            let racer = Racer::start(&data, "b", "b.swap");
            let (mut ok, mut failed) = (0, 0);
            let mut why = std::collections::BTreeSet::new();
            for _ in 0..12 {
                let o = boxrun(
                    &env,
                    &[
                        "--rm",
                        "-v",
                        "shared:/a",
                        "-v",
                        &format!("other:{target}"),
                        "busybox",
                        "cat",
                        &format!("{target}/marker"),
                    ],
                );
                if o.status.success() {
                    assert_eq!(stdout(&o), "other-marker\n", "{}", who.label());
                    ok += 1;
                } else {
                    failed += 1;
                    why.insert(stderr(&o).lines().last().unwrap_or_default().to_string());
                }
                canary.assert_untouched();
            }
            drop(racer);
            eprintln!(
                "{}: {target} with a symlink to {link}: {ok} runs mounted inside, {failed} \
                 failed: {why:?}",
                who.label()
            );
        }
        canary.assert_untouched();
        assert_store_owners(&env);
    }
}

/// Run `args` with boxrun in a private mount namespace whose /tmp holds `root/<name> ->
/// <target>` for each of `plant` — what any local user can create in the host's /tmp — and
/// otherwise only what the run needs (the Env's directory, the canary, a rootless user's
/// runtime directory). Nothing changes on the host's /tmp.
fn with_planted_tmp_root(
    env: &Env,
    keep: &[&Path],
    plant: &[(&str, String)],
    args: &[&str],
) -> Output {
    let p = tempfile::Builder::new()
        .prefix("boxkit-plant-")
        .tempdir_in("/tmp")
        .unwrap();
    // World-writable and sticky like the /tmp it stands in for.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(p.path().join("root")).unwrap();
    for (name, target) in plant {
        std::os::unix::fs::symlink(target, p.path().join("root").join(name)).unwrap();
    }
    let mut names = vec![];
    for k in keep.iter().chain([&env.dir.path()]) {
        let rel = k.strip_prefix("/tmp").expect("kept paths are under /tmp");
        std::fs::create_dir(p.path().join(rel)).unwrap();
        names.push(rel.to_string_lossy().into_owned());
    }
    if let Who::User(u) = &env.who {
        let rt = format!("boxkit-{}", u.uid);
        if Path::new("/tmp").join(&rt).is_dir() {
            std::fs::create_dir(p.path().join(&rt)).unwrap();
            names.push(rt);
        }
    }
    let mut inner = env.command("boxrun", &[]);
    inner.args(args);
    // A checkout under /tmp (CI may clone there): its binaries must stay reachable too.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_boxrun"))
        .parent()
        .expect("boxrun's directory")
        .to_path_buf();
    if let Ok(rel) = bin_dir.strip_prefix("/tmp") {
        std::fs::create_dir_all(p.path().join(rel)).unwrap();
        names.push(rel.to_string_lossy().into_owned());
    }
    let script = r#"set -e
p="$1"; n="$2"; shift 2
i=0
while [ "$i" -lt "$n" ]; do mount --rbind "/tmp/$1" "$p/$1"; shift; i=$((i+1)); done
mount --rbind "$p" /tmp
exec "$@""#;
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(p.path())
        .arg(names.len().to_string())
        .args(&names)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(env.dir.path());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

#[test]
fn symlinks_planted_under_the_hosts_tmp_root_redirect_nothing() {
    for who in whos() {
        let env = Env::with_registry(who.clone());
        let canary = Canary::plant();
        // Pull the image and start a rootless user's keeper outside the planted /tmp.
        let o = boxrun(&env, &["--rm", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let c = canary.dir.display().to_string();
        let plant = [
            ("etc", c.clone()),
            ("proc", format!("{c}/proc")),
            ("dev", format!("{c}/dev")),
            ("sys", format!("{c}/sys")),
        ];
        let o = with_planted_tmp_root(
            &env,
            &[&canary.dir],
            &plant,
            &[
                "--rm",
                "--hostname",
                "planted-host",
                "busybox",
                "sh",
                "-c",
                "cat /etc/hostname; grep -c ^Pid: /proc/1/status; wc -c < /proc/interrupts; \
                 ls /sys/firmware | wc -l; echo x > /dev/null && echo null-ok; ls -a /tmp",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("planted-host\n1\n0\n0\nnull-ok\n"),
            "{}: generated files, /proc, its masks, /sys and /dev must be where the image \
             expects them: {out}",
            who.label()
        );
        let name = canary
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !out.contains(&name),
            "{}: nothing was redirected into the container's /tmp: {out}",
            who.label()
        );
        canary.assert_untouched();
        assert_store_owners(&env);
    }
}
