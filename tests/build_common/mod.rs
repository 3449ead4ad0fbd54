//! Helpers for the boxbuild tests: a private store and build context per test, owned by the
//! user who builds (root, a user with a subordinate range, one without), seeded with the
//! busybox fixture (made by independent tools) through `box load`, and ways to look at what a
//! build made: `box inspect`, umoci unpack, podman.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, fixtures, users};

#[derive(Debug, Clone)]
pub enum Who {
    Root,
    User(users::TestUser),
}

impl Who {
    /// Root, or None after a skip when the tests do not run as root.
    pub fn root() -> Option<Who> {
        if !common::is_root() {
            common::skip("boxbuild tests create users and run podman as root");
            return None;
        }
        users::ensure_root_range();
        Some(Who::Root)
    }
    pub fn with_range() -> Option<Who> {
        Who::root()?;
        Some(Who::User(users::with_range()))
    }
    pub fn without_range() -> Option<Who> {
        Who::root()?;
        Some(Who::User(users::without_range()))
    }
    pub fn label(&self) -> String {
        match self {
            Who::Root => "root".into(),
            Who::User(u) => u.name.clone(),
        }
    }
    fn command(&self, program: &Path, env: &[(&str, &str)]) -> Command {
        match self {
            Who::Root => {
                let mut c = Command::new(program);
                c.envs(env.iter().copied());
                c
            }
            Who::User(u) => {
                // setpriv --reset-env drops the caller's environment; env(1) sets ours.
                let mut c = users::command_as(u, Path::new("/usr/bin/env"));
                c.arg("PATH=/usr/local/bin:/usr/bin:/bin")
                    .arg(format!("HOME=/home/{}", u.name))
                    .arg(format!("USER={}", u.name));
                for (k, v) in env {
                    c.arg(format!("{k}={v}"));
                }
                c.arg(program);
                c
            }
        }
    }
    fn chown(&self, p: &Path) {
        if let Who::User(u) = self {
            let _ = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(p)
                .status();
        }
    }
}

/// One test's store and context.
pub struct Env {
    pub who: Who,
    pub dir: LowerTemp,
    /// With [`Env::with_registry`]: the local registry that mirrors docker.io.
    pub registry: Option<common::registry::Registry>,
}

/// A temporary directory whose path is all lower case; removed on drop.
pub struct LowerTemp(PathBuf);

impl LowerTemp {
    pub fn new() -> LowerTemp {
        let mut b = [0u8; 8];
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let p = PathBuf::from(format!("/tmp/boxkit-build-{}", hex::encode(b)));
        std::fs::create_dir(&p).unwrap();
        LowerTemp(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LowerTemp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Env {
    /// A fresh store holding busybox (as `busybox:latest`) and an empty context.
    pub fn new(who: Who) -> Env {
        // Lower case only: podman derives an image name from an `oci:` path.
        let dir = LowerTemp::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("ctx")).unwrap();
        let archive = dir.path().join("busybox.tar");
        std::fs::copy(fixtures::oci_archive(fixtures::Fixture::Busybox), &archive).unwrap();
        who.chown(dir.path());
        let e = Env {
            who,
            dir,
            registry: None,
        };
        let o = e.box_cmd(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert!(o.status.success(), "box load: {}", stderr(&o));
        e
    }

    /// An empty store and a local registry seeded with the fixtures that mirrors docker.io
    /// (`BOX_REGISTRIES_CONF`): `FROM busybox` pulls through it, the path a real user takes.
    pub fn with_registry(who: Who) -> Env {
        let dir = LowerTemp::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("ctx")).unwrap();
        let reg = common::registry::Registry::with_fixtures();
        std::fs::copy(reg.registries_conf(), dir.path().join("registries.conf")).unwrap();
        who.chown(dir.path());
        Env {
            who,
            dir,
            registry: Some(reg),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    /// Write a file in the context (parents created), owned by the builder.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        self.who.chown(&self.ctx());
    }

    pub fn boxfile(&self, text: &str) {
        self.write("Boxfile", text);
    }

    pub fn box_cmd(&self, args: &[&str]) -> Output {
        let mut c = self.who.command(&common::bin("box"), &[]);
        c.arg("--root").arg(self.store()).args(args);
        c.output().unwrap()
    }

    /// `boxbuild --root STORE ARGS… CTX`.
    pub fn build(&self, args: &[&str]) -> Output {
        self.build_env(args, &[])
    }

    pub fn build_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command("boxbuild", env);
        c.args(args).arg(self.ctx());
        c.output().unwrap()
    }

    /// `BIN --root STORE ARGS…` (box, boxbuild or boxrun) as the Env's user, through the
    /// registry mirror when there is one.
    pub fn cmd(&self, bin: &str, args: &[&str]) -> Output {
        self.cmd_env(bin, args, &[])
    }

    /// [`Env::cmd`] with extra environment variables.
    pub fn cmd_env(&self, bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(bin, env);
        c.args(args);
        c.output().unwrap()
    }

    /// The command [`Env::cmd`] runs, for callers that wrap it (e.g. in another namespace).
    pub fn command(&self, bin: &str, env: &[(&str, &str)]) -> Command {
        self.command_at(&common::bin(bin), env)
    }

    /// [`Env::cmd`]'s command, unrun, for `program` (one of boxkit's binaries, or a copy of
    /// one): the caller adds arguments and may pass descriptors or a timeout.
    pub fn command_at(&self, program: &Path, env: &[(&str, &str)]) -> Command {
        let conf = self.dir.path().join("registries.conf");
        let conf = conf.to_string_lossy().into_owned();
        let mut env = env.to_vec();
        if self.registry.is_some() {
            env.push(("BOX_REGISTRIES_CONF", conf.as_str()));
        }
        let mut c = self.who.command(program, &env);
        c.arg("--root").arg(self.store());
        c.current_dir(self.dir.path());
        c
    }

    /// Build and assert success; returns stderr.
    pub fn build_ok(&self, args: &[&str]) -> String {
        let o = self.build(args);
        assert!(
            o.status.success(),
            "{}: boxbuild {args:?} failed:\n{}",
            self.who.label(),
            stderr(&o)
        );
        stderr(&o)
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let o = self.box_cmd(&["inspect", name]);
        assert!(o.status.success(), "inspect {name}: {}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()[0].clone()
    }

    /// The OCI-layout reference of a tag in the store, for skopeo/podman/umoci.
    pub fn oci_ref(&self, name: &str) -> String {
        format!("{}:docker.io/library/{name}:latest", self.store().display())
    }

    /// Unpack the image with umoci (as root) and return the rootfs.
    pub fn umoci_unpack(&self, name: &str, into: &Path) -> PathBuf {
        let bundle = into.join(format!("bundle-{name}"));
        let o = Command::new("umoci")
            .args(["unpack", "--image", &self.oci_ref(name)])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci unpack: {}", stderr(&o));
        bundle.join("rootfs")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every path under `root` with type, mode, owner, size/content hash and symlink target;
/// timestamps left out. For comparing unpacked trees.
pub fn tree_listing(root: &Path) -> Vec<String> {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut out = vec![];
    fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                let data = std::fs::read(&p).unwrap();
                hex::encode(&sha2::Sha256::digest(&data)[..8])
            } else if m.is_dir() {
                "dir".into()
            } else {
                format!("special {:o}", m.mode() & libc::S_IFMT)
            };
            out.push(format!(
                "{r} {:o} {}:{} {what}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
            if m.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    walk(root, "", &mut out);
    out
}

/// Build the image described by `spec` (see tests/fixtures/images/hostile.py) and push it to
/// the Env's registry (the docker.io mirror) as `library/NAME:latest`; returns NAME, which
/// boxkit resolves to `docker.io/library/NAME:latest` through the mirror, as a user would.
pub fn hostile_image(env: &Env, name: &str, spec: serde_json::Value) -> String {
    let reg = env.registry.as_ref().expect("Env::with_registry");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/hostile.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&layout)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), spec.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "hostile.py failed");
    let src = format!("oci:{}:latest", layout.display());
    let dest = reg.docker_ref(&format!("library/{name}:latest"));
    crate::common::fixtures::skopeo(&["copy", "-q", "--dest-tls-verify=false", &src, &dest]);
    name.to_string()
}

/// `user.boxkit.owner` of `p` itself, if set.
pub fn owner_xattr(p: &Path) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a writable buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.boxkit.owner".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// A real `ssh-agent` running as the Env's user, holding one fresh ed25519 key; killed on
/// drop. For `boxbuild --ssh`.
pub struct SshAgent {
    pub socket: PathBuf,
    /// The private key file the agent holds (unencrypted).
    pub key: PathBuf,
    /// `ssh-keygen -l` of the key, as `ssh-add -l` prints it.
    pub fingerprint: String,
    child: std::process::Child,
}

impl SshAgent {
    pub fn start(e: &Env) -> SshAgent {
        let dir = e.dir.path().join("ssh");
        std::fs::create_dir(&dir).unwrap();
        e.who.chown(&dir);
        let socket = dir.join("agent.sock");
        let key = dir.join("id_ed25519");
        let run = |prog: &str, args: &[&str], env: &[(&str, &str)]| {
            let o = e
                .who
                .command(Path::new(prog), env)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{prog}: {}", stderr(&o));
            stdout(&o)
        };
        let k = key.to_str().unwrap();
        run(
            "/usr/bin/ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-f", k],
            &[],
        );
        let child = e
            .who
            .command(Path::new("/usr/bin/ssh-agent"), &[])
            .args(["-D", "-a", socket.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let sock = socket.to_str().unwrap();
        run("/usr/bin/ssh-add", &["-q", k], &[("SSH_AUTH_SOCK", sock)]);
        let fp = run(
            "/usr/bin/ssh-keygen",
            &["-l", "-f", &format!("{k}.pub")],
            &[],
        );
        SshAgent {
            socket,
            key,
            fingerprint: fp.split_whitespace().nth(1).unwrap().to_string(),
            child,
        }
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    /// The host's `ssh-add` and the libraries it loads, under `ctx/sshroot/` at their host
    /// paths, so that `COPY sshroot/ /` gives a busybox image a working `ssh-add`.
    pub fn ssh_add_in_context(&self) {
        let root = self.ctx().join("sshroot");
        let o = Command::new("ldd")
            .arg("/usr/bin/ssh-add")
            .output()
            .unwrap();
        let mut files = vec![PathBuf::from("/usr/bin/ssh-add")];
        for w in stdout(&o).split_whitespace() {
            if w.starts_with('/') {
                files.push(PathBuf::from(w));
            }
        }
        for f in files {
            let to = root.join(f.strip_prefix("/").unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&f, &to).unwrap();
        }
        self.who.chown(&self.ctx());
    }
}
