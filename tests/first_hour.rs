//! A new user's first hour, scripted (issue 15): install with `cargo install --locked --path .
//! --root DIR`, then, with the INSTALLED binaries only and a clean HOME: `box info`, pull,
//! build a small Boxfile, run detached, wait, logs, stop, rm, prune. As root and as an
//! unprivileged user with a subordinate id range; each step checks its output and exit code.
//!
//! The install is the documented command itself, a release build. On a fresh CI clone that
//! takes minutes, so scripts/test.sh starts `cargo build --release --locked --offline --bins`
//! in the background, at the lowest priority, into the target directory the install then uses
//! (`BOX_INSTALL_TARGET_DIR`, default /var/cache/boxkit-test/install-target), and runs this
//! test last: the install finds every unit built and only copies the binaries. Run alone, the
//! test builds them itself. `--offline`: every locked crate is already in `CARGO_HOME` after
//! the suite's own build, and the test must not depend on the network.
//!
//! The unprivileged user cannot run that cargo: the toolchain and the crate cache are root's
//! (`/root` is 0700), as they are on CI. So root installs into the user's clean HOME
//! (`--root $HOME/.local`, the user's own prefix) and hands the files over, and everything after
//! the install runs as the user. Root keeps its store off the machine's `/var/lib/boxkit`
//! with `BOX_ROOT`; the user's is the default one under its clean HOME, and the registry mirror
//! is the user's own `~/.config/containers/registries.conf`, as a new user would write it.

mod build_common;
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use build_common::{LowerTemp, Who, stderr, stdout};
use common::{registry::Registry, users};

const BOXFILE: &str = "FROM busybox\n\
RUN echo built-by-boxbuild > /built.txt\n\
COPY hello.sh /hello.sh\n\
CMD [\"sh\", \"/hello.sh\"]\n";

const HELLO: &str = "echo hello from the first hour\ncat /built.txt\n";

struct Hour {
    who: Who,
    dir: LowerTemp,
    _registry: Registry,
}

impl Hour {
    fn new(who: Who) -> Hour {
        let dir = LowerTemp::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let registry = Registry::with_fixtures();
        let h = Hour {
            who,
            dir,
            _registry: registry,
        };
        let conf = h.home().join(".config/containers");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::copy(h._registry.registries_conf(), conf.join("registries.conf")).unwrap();
        let ctx = h.ctx();
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Boxfile"), BOXFILE).unwrap();
        std::fs::write(ctx.join("hello.sh"), HELLO).unwrap();
        h
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn ctx(&self) -> PathBuf {
        self.home().join("hello")
    }
    fn prefix(&self) -> PathBuf {
        self.home().join(".local")
    }
    /// Where the store is: root's `BOX_ROOT`, else the default under the clean HOME.
    fn store(&self) -> PathBuf {
        match self.who {
            Who::Root => self.home().join("boxkit-store"),
            Who::User(_) => self.home().join(".local/share/boxkit"),
        }
    }

    /// `cargo install --locked --path . --root PREFIX` (release), in the target directory
    /// scripts/test.sh builds ahead.
    fn install(&self) {
        let target = std::env::var_os("BOX_INSTALL_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/boxkit-test/install-target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let t = std::time::Instant::now();
        // The two tests (root, user) share the target directory: cargo's own lock on it
        // serialises them.
        let o = Command::new(cargo)
            .args(["install", "--locked", "--offline", "--path"])
            .arg(env!("CARGO_MANIFEST_DIR"))
            .arg("--root")
            .arg(self.prefix())
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(o.status.success(), "cargo install: {}", stderr(&o));
        assert!(
            stderr(&o).contains("Installed package `boxkit"),
            "{}",
            stderr(&o)
        );
        for b in ["box", "boxbuild", "boxrun"] {
            let p = self.prefix().join("bin").join(b);
            assert!(p.is_file(), "{} was not installed", p.display());
        }
        eprintln!("{}: installed in {:?}", self.who.label(), t.elapsed());
        if let Who::User(u) = &self.who {
            let o = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(self.home())
                .output()
                .unwrap();
            assert!(o.status.success(), "chown: {}", stderr(&o));
        }
    }

    /// An installed binary with a clean environment: HOME, USER, PATH with the install first.
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let home = self.home();
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.prefix().join("bin").display()
        );
        let mut c = match &self.who {
            Who::Root => {
                let mut c = Command::new("/usr/bin/env");
                c.env_clear()
                    .arg(format!("BOX_ROOT={}", self.store().display()))
                    .arg("USER=root");
                c
            }
            Who::User(u) => {
                let mut c = users::command_as(u, Path::new("/usr/bin/env"));
                c.arg(format!("USER={}", u.name));
                c
            }
        };
        c.arg(format!("HOME={}", home.display()))
            .arg(format!("PATH={path}"))
            .arg(bin)
            .args(args)
            .current_dir(&home);
        c.output().unwrap()
    }

    /// Run, assert exit 0, return stdout.
    fn ok(&self, bin: &str, args: &[&str]) -> String {
        let o = self.run(bin, args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {bin} {args:?}:\n{}\n{}",
            self.who.label(),
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }
}

/// Removes the containers a failed step may leave running.
struct Cleanup<'a>(&'a Hour, &'a [&'a str]);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for n in self.1 {
            let _ = self.0.run("box", &["rm", "-f", n]);
        }
    }
}

fn first_hour(who: Who) {
    let h = Hour::new(who);
    let label = h.who.label();
    h.install();
    let (job, server) = ("first-hour-job", "first-hour-server");
    let _cleanup = Cleanup(&h, &[job, server]);

    // box info: the store it will use; what the first hour needs passes, and a probe that
    // fails (cgroup limits for a user without systemd delegation, here) says how to fix it.
    let info: serde_json::Value =
        serde_json::from_str(&h.ok("box", &["info", "--format", "json"])).unwrap();
    assert_eq!(info["StoreRoot"], h.store().to_str().unwrap(), "{label}");
    for c in info["Checks"].as_array().unwrap() {
        let name = c["Name"].as_str().unwrap();
        if [
            "user-namespace",
            "mount-namespace",
            "subordinate-ids",
            "seccomp",
        ]
        .contains(&name)
        {
            assert_eq!(c["Ok"], true, "{label}: {c}");
        } else if c["Ok"] != true {
            assert!(
                c["Fix"].as_str().is_some_and(|f| !f.is_empty()),
                "{label}: no fix: {c}"
            );
        }
    }
    let text = h.ok("box", &["info"]);
    assert!(
        text.contains(&format!("store: {}", h.store().display())),
        "{text}"
    );

    // Pull through the mirror the user's registries.conf names.
    let out = h.ok("box", &["pull", "busybox"]);
    assert!(
        out.contains("docker.io/library/busybox:latest"),
        "{label}: {out}"
    );
    let images = h.ok("box", &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "busybox:latest", "{label}");

    // Build the Boxfile in ~/hello.
    let ctx = h.ctx();
    h.ok("boxbuild", &["-t", "hello", ctx.to_str().unwrap()]);
    let images = h.ok("box", &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = images.lines().collect();
    names.sort();
    assert_eq!(names, ["busybox:latest", "hello:latest"], "{label}");

    // Run it detached: the ID comes back at once; wait gives its exit code; logs its output.
    let id = h.ok("boxrun", &["-d", "--name", job, "hello"]);
    let id = id.trim();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{label}: boxrun -d printed {id:?}"
    );
    assert_eq!(h.ok("box", &["wait", job]), "0\n", "{label}");
    let logs = h.ok("box", &["logs", job]);
    assert_eq!(
        logs, "hello from the first hour\nbuilt-by-boxbuild\n",
        "{label}"
    );
    // A long-running one: ps shows it, stop ends it (sh as pid 1 ignores SIGTERM: SIGKILL
    // after the timeout, 137), and ps no longer does.
    h.ok(
        "boxrun",
        &["-d", "--name", server, "busybox", "sleep", "600"],
    );
    let ps = h.ok("box", &["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.lines().any(|l| l.starts_with(&format!("{server} Up"))),
        "{label}: {ps}"
    );
    cp_step(&h, job, server);
    assert_eq!(
        h.ok("box", &["stop", "-t", "1", server]).trim(),
        server,
        "{label}"
    );
    assert_eq!(h.ok("box", &["wait", server]), "137\n", "{label}");
    let ps = h.ok("box", &["ps", "-q"]);
    assert!(ps.trim().is_empty(), "{label}: still running: {ps}");

    // rm both; ps -a is empty.
    let out = h.ok("box", &["rm", job, server]);
    assert_eq!(out, format!("{job}\n{server}\n"), "{label}");
    let ps = h.ok("box", &["ps", "-a", "-q"]);
    assert!(ps.trim().is_empty(), "{label}: left: {ps}");

    // prune -a: no container uses an image any more, so every image goes; the build cache
    // keeps the layers its steps made until builder prune, as docker's does.
    let out = h.ok("box", &["prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{label}: {out}");
    assert_eq!(h.ok("box", &["images", "-q"]).trim(), "", "{label}");
    let out = h.ok("box", &["builder", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{label}: {out}");
    let blobs = std::fs::read_dir(h.store().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        blobs, 0,
        "{label}: prune -a and builder prune -a left blobs"
    );
}

/// `box cp` out of the exited job (a file its image's RUN step made; what its command wrote
/// went with its writable layer, a tmpfs) and both ways with the running server.
fn cp_step(h: &Hour, job: &str, server: &str) {
    let label = h.who.label();
    let home = h.home();
    h.ok("box", &["cp", &format!("{job}:/built.txt"), "built.txt"]);
    assert_eq!(
        std::fs::read_to_string(home.join("built.txt")).unwrap(),
        "built-by-boxbuild\n",
        "{label}"
    );
    h.ok(
        "box",
        &["cp", "hello/hello.sh", &format!("{server}:/copied-in.sh")],
    );
    h.ok(
        "box",
        &["cp", &format!("{server}:/copied-in.sh"), "copied-back.sh"],
    );
    assert_eq!(
        std::fs::read_to_string(home.join("copied-back.sh")).unwrap(),
        HELLO,
        "{label}"
    );
}

#[test]
fn first_hour_as_root() {
    let Some(who) = Who::root() else { return };
    first_hour(who);
}

#[test]
fn first_hour_as_an_unprivileged_user() {
    let Some(who) = Who::with_range() else { return };
    first_hour(who);
}
