//! Executing RUN: the stage's unpacked layers as overlay lowerdirs, a fresh upper/work dir in
//! the store's `tmp/`, a `SandboxSpec` with the config's env, user, cwd, SHELL and the
//! `--mount`s; stdout/stderr go to a pipe of the step's own ([`super::output::Capture`]),
//! streamed with the `[n/N]` prefix. Afterwards the mount-point
//! stubs the sandbox created are removed from the upper dir ([`remove_stubs`]), which is then
//! committed as the step's layer (none when the step changed nothing).

use std::fs;
use std::path::{Path, PathBuf};

use super::SecretSource;
use super::copy::{self, Filter};
use super::engine::{Engine, StageRun};
use super::error::{StepErrorKind, StepResult};
use super::fsview::{self, LayerRef, Lowers, MergedMount};
use super::owner;
use crate::boxfile::{self, Command, Mount, MountType, RunInstr};
use crate::digest::Digest;
use crate::image::ContainerConfig;
use crate::run::{self, MountSpec, NetworkMode, RootfsSource, SandboxSpec};

/// A RUN mount for the sandbox (none: nothing to mount, e.g. a secret only in the env), and
/// what must live until the command has run (a merged view of another stage).
type MountOut = (Option<MountSpec>, Vec<MergedMount>);

/// Paths the sandbox itself mounts over, so it may create them in the upper dir.
const SANDBOX_STUBS: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

impl Engine<'_> {
    pub(super) fn exec_run(
        &mut self,
        sr: &mut StageRun,
        r: &RunInstr,
    ) -> StepResult<Option<LayerRef>> {
        if r.security.as_deref() == Some("insecure") {
            // Extra privileges (BuildKit's entitlement) are never granted in this sandbox.
            return Err(StepErrorKind::Unsupported("RUN --security=insecure".into()));
        }
        let work = self.new_layer_dir("run-")?;
        let mut root = self.step_root(sr, &work)?;
        let mut spec = self.run_spec(sr, r, root.source.clone())?;
        let mut stubs: Vec<String> = SANDBOX_STUBS.iter().map(|s| s.to_string()).collect();
        let mut mounts_keep = vec![];
        let mut agents = vec![];
        let mut ssh_n = 0;
        for m in &r.mounts {
            let (spec_m, keep) = if m.kind == MountType::Ssh {
                ssh_n += 1;
                match self.ssh_mount(m, ssh_n - 1, &mut spec.env, &work)? {
                    Some((sm, proxy)) => {
                        agents.push(proxy);
                        (Some(sm), vec![])
                    }
                    None => (None, vec![]),
                }
            } else {
                self.run_mount(m, &mut spec.env, &work)?
            };
            if let Some(sm) = spec_m {
                let t = match &sm {
                    MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => {
                        target.to_string_lossy().trim_start_matches('/').to_string()
                    }
                };
                stubs.push(t);
                spec.mounts.push(sm);
            }
            mounts_keep.extend(keep);
        }
        let started = std::time::Instant::now();
        let code = {
            let cap = self
                .printer
                .capture()
                .map_err(fsview::io_err("make the output pipe of", Path::new("RUN")))?;
            spec.stdio = Some(cap.stdio());
            let code = run::run(&spec, self.tool);
            // Our copies of the pipe's write end go before the reader is told to stop.
            spec.stdio = None;
            code
        }
        .map_err(StepErrorKind::Sandbox)?;
        let ran = started.elapsed();
        drop(agents);
        drop(mounts_keep);
        if code != 0 {
            return Err(StepErrorKind::Run {
                command: command_text(r),
                code,
                hint: unmapped_hint(self.tool),
            });
        }
        let upper = root.upper(sr, &work, &stubs)?;
        // A step that changed nothing adds no layer (history `empty_layer`), as BuildKit
        // drops empty diffs.
        if fs::read_dir(&upper).map_or(true, |mut d| d.next().is_none()) {
            self.step_times(ran, started.elapsed() - ran, None);
            return Ok(None);
        }
        let sde = self.opts.source_date_epoch;
        let diffed = started.elapsed() - ran;
        let (layer, times) = fsview::commit_dir_timed(self.store, &upper, sde)?;
        root.committed(sr, Some(&layer.diff_id));
        self.step_times(ran, diffed, Some(times));
        Ok(Some(layer))
    }

    /// `--progress=plain`: where a RUN step's time went (run, the snapshotter's diff, pack,
    /// commit).
    fn step_times(
        &self,
        run: std::time::Duration,
        diff: std::time::Duration,
        commit: Option<fsview::CommitTimes>,
    ) {
        if !self.opts.step_times {
            return;
        }
        let ms = |d: std::time::Duration| format!("{:.0}ms", d.as_secs_f64() * 1000.0);
        let layer = match commit {
            Some(c) => format!("pack {}, commit {}", ms(c.pack), ms(c.commit)),
            None => "no layer".to_string(),
        };
        self.printer.line(&format!(
            "{} time: run {}, diff {}, {layer}",
            self.printer.prefix(),
            ms(run),
            ms(diff)
        ));
    }

    /// The sandbox for a RUN on `rootfs` (mounts still to add).
    fn run_spec(
        &self,
        sr: &StageRun,
        r: &RunInstr,
        rootfs: RootfsSource,
    ) -> StepResult<SandboxSpec> {
        let cfg = &sr.out.config.config;
        let mut spec = SandboxSpec::new(rootfs, run_argv(cfg, r));
        spec.env = cfg.env.clone();
        for (k, v) in sr.env.run_args() {
            if cfg.env_get(&k).is_none() {
                spec.env.push(format!("{k}={v}"));
            }
        }
        spec.cwd = Some(if cfg.working_dir.is_empty() {
            "/".into()
        } else {
            cfg.working_dir.clone()
        });
        if !cfg.user.is_empty() {
            spec.user = Some(cfg.user.clone());
        }
        spec.network = match r.network.as_deref() {
            Some(n) => n.parse().map_err(|_| {
                StepErrorKind::Invalid(format!("RUN --network={n}: expected default, none or host"))
            })?,
            None => self.opts.network,
        };
        if spec.network == NetworkMode::Bridge {
            // RUN's "default" network is the host's, as with rootless BuildKit.
            spec.network = NetworkMode::Host;
        }
        spec.isolation = self.opts.backends.isolation;
        spec.limits = self.run_limits.clone();
        // The sandbox writes /etc/hosts for the step (a mount, never part of the layer).
        spec.extras.hosts = self.opts.add_hosts.clone();
        Ok(spec)
    }

    /// The sandbox mount for one `RUN --mount`, plus anything that must live until the
    /// command has run. A secret may add to `env`.
    fn run_mount(
        &mut self,
        m: &Mount,
        env: &mut Vec<String>,
        work: &tempfile::TempDir,
    ) -> StepResult<MountOut> {
        let needs_target = |kind: &str| {
            m.target.clone().ok_or_else(|| {
                StepErrorKind::Invalid(format!("RUN --mount=type={kind} needs target="))
            })
        };
        match m.kind {
            MountType::Cache => Ok((Some(self.cache_mount(m, needs_target("cache")?)?), vec![])),
            MountType::Tmpfs => {
                let options = m.size.as_ref().map(|s| format!("size={s}"));
                let target = needs_target("tmpfs")?.into();
                Ok((Some(MountSpec::Tmpfs { target, options }), vec![]))
            }
            MountType::Bind => self.bind_mount(m, needs_target("bind")?, work),
            MountType::Secret => self.secret_mount(m, env, work),
            MountType::Ssh => unreachable!("exec_run handles type=ssh"),
        }
    }

    /// `type=cache`: a directory under the store's `cache/mounts/`, by id (or target), made
    /// with its owner and mode the first time and kept between builds.
    fn cache_mount(&self, m: &Mount, target: String) -> StepResult<MountSpec> {
        let id = m.id.clone().unwrap_or_else(|| target.clone());
        let dir = self
            .store
            .cache_dir()
            .join("mounts")
            .join(&Digest::of_bytes(id.as_bytes()).hex()[..32]);
        if !dir.exists() {
            // A directory cannot go through crate::atomic: it is made whole under a unique
            // name, then renamed; a concurrent build that made it first wins.
            let tmp = dir.with_extension(format!("tmp-{}", run::spec::random_id()));
            fs::create_dir_all(&tmp).map_err(fsview::io_err("create", &tmp))?;
            let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
            if let Err(source) = owner::own_dir(
                &tmp,
                owner,
                m.mode.unwrap_or(0o755),
                &self.tool.content_policy(),
            ) {
                fsview::remove_tree(&tmp);
                return Err(StepErrorKind::copy("RUN --mount=type=cache")(source));
            }
            if fs::rename(&tmp, &dir).is_err() {
                fsview::remove_tree(&tmp);
            }
        }
        Ok(MountSpec::Bind {
            source: dir,
            target: target.into(),
            read_only: m.readonly.unwrap_or(false),
        })
    }

    /// `type=bind`: a path of the context or of another stage/image, read-only unless `rw`.
    fn bind_mount(
        &self,
        m: &Mount,
        target: String,
        work: &tempfile::TempDir,
    ) -> StepResult<MountOut> {
        let rel = boxfile::ignore::clean(&format!("/{}", m.source.as_deref().unwrap_or(".")));
        let rel = rel.trim_start_matches('/').to_string();
        let (root, keep) = match &m.from {
            Some(from) => {
                let mm = self.mount_from(from)?;
                (mm.path().to_path_buf(), vec![mm])
            }
            None => (
                self.opts.context.clone().ok_or_else(|| {
                    StepErrorKind::Invalid(
                        "RUN --mount=type=bind from the context, but there is no context".into(),
                    )
                })?,
                vec![],
            ),
        };
        let rel = copy::scoped(&root, &rel);
        let mut source = root.join(&rel);
        let rw = m.readonly == Some(false);
        let from_context = m.from.is_none();
        // A private copy when the step may write (writes are discarded, as in BuildKit: never
        // to the context or the other stage), or when the context has an ignore file (ignored
        // paths are not part of the context, so the step must not see them either). Otherwise
        // the source is bound read-only as it is.
        if rw || (from_context && !self.ignore.is_empty()) {
            source = self.private_copy(&root, &rel, from_context, work)?;
        }
        let read_only = !rw;
        let target = target.into();
        let spec = MountSpec::Bind {
            source,
            target,
            read_only,
        };
        Ok((Some(spec), keep))
    }

    /// A copy of `root/rel` (filtered by the ignore file when it is the context) in `work`.
    fn private_copy(
        &self,
        root: &Path,
        rel: &str,
        from_context: bool,
        work: &tempfile::TempDir,
    ) -> StepResult<PathBuf> {
        let source = root.join(rel);
        let copy = work.path().join(format!("bind-{}", run::spec::random_id()));
        fs::create_dir(&copy).map_err(fsview::io_err("create", &copy))?;
        let filter = Filter {
            ignore: from_context.then_some(&self.ignore),
            excludes: None,
        };
        let meta = fs::metadata(&source).map_err(fsview::io_err("stat", &source))?;
        let policy = self.tool.content_policy();
        owner::write_tree(&copy, &Lowers::default(), (0, 0), None, &policy, |dest| {
            if meta.is_dir() {
                dest.copy_tree(root, rel, "/tree", &filter)
            } else {
                dest.copy_entry(&source, &meta, "/tree")
            }
        })
        .map_err(StepErrorKind::copy("RUN --mount=type=bind"))?;
        Ok(copy.join("tree"))
    }

    /// `type=secret`: the value of `--secret id=…` as a read-only file (and/or `env=`), never
    /// in the layer.
    fn secret_mount(
        &self,
        m: &Mount,
        env: &mut Vec<String>,
        work: &tempfile::TempDir,
    ) -> StepResult<MountOut> {
        let target = m.target.clone();
        let id =
            m.id.clone()
                .or_else(|| {
                    target
                        .as_deref()
                        .and_then(|t| Path::new(t).file_name())
                        .map(|n| n.to_string_lossy().to_string())
                })
                .ok_or_else(|| {
                    StepErrorKind::Invalid("RUN --mount=type=secret needs id= or target=".into())
                })?;
        let Some(value) = self.secret_value(&id)? else {
            if m.required == Some(true) {
                return Err(StepErrorKind::Secret(id));
            }
            return Ok((None, vec![]));
        };
        if let Some(var) = &m.env {
            env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
            if target.is_none() {
                return Ok((None, vec![]));
            }
        }
        // A private copy outside the layer: the secret is bound read-only and never lands in
        // the upper dir.
        let dir = work
            .path()
            .join(format!("secret-{}", run::spec::random_id()));
        fs::create_dir(&dir).map_err(fsview::io_err("create", &dir))?;
        // Where owners are ignored the secret stays root's (with only root mapped, its owner is
        // recorded in the owner xattr).
        let policy = self.tool.content_policy();
        let owner = match policy.ownership {
            crate::layer::Ownership::Ignore => (0, 0),
            crate::layer::Ownership::Preserve | crate::layer::Ownership::Xattr => {
                (m.uid.unwrap_or(0), m.gid.unwrap_or(0))
            }
        };
        let mode = Some(m.mode.unwrap_or(0o400));
        owner::write_tree(&dir, &Lowers::default(), owner, mode, &policy, |d| {
            d.write_content("/secret", &value)
        })
        .map_err(StepErrorKind::copy("RUN --mount=type=secret"))?;
        let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
        let spec = MountSpec::Bind {
            source: dir.join("secret"),
            target: target.into(),
            read_only: true,
        };
        Ok((Some(spec), vec![]))
    }

    /// The value of secret `id` (None: not given, or its variable is unset).
    fn secret_value(&self, id: &str) -> StepResult<Option<Vec<u8>>> {
        Ok(match self.opts.secrets.get(id) {
            Some(SecretSource::File(p)) => Some(fs::read(p).map_err(|e| {
                StepErrorKind::Invalid(format!("secret {id:?}: read {}: {e}", p.display()))
            })?),
            Some(SecretSource::Env(v)) => {
                std::env::var_os(v).map(|s| s.as_encoded_bytes().to_vec())
            }
            None => None,
        })
    }
}

/// Why a RUN may have failed where only container root is mapped, and the fix ("" otherwise).
fn unmapped_hint(tool: &run::ToolContext) -> String {
    match tool.userns() {
        run::ToolUserns::Remapped(m) if m.single => format!(
            "\n  note: only container root is mapped (no subordinate id range), so nothing can \
             run as a non-root user (chown is emulated). Fix: {}",
            run::subid_hint::usermod_fix(&std::env::var("USER").unwrap_or_else(|_| "$USER".into()))
        ),
        _ => String::new(),
    }
}

/// The argv of a RUN: exec form as is; shell form (heredocs appended) through SHELL. A RUN
/// that is only a heredoc runs its body as the script, as BuildKit does.
fn run_argv(cfg: &ContainerConfig, r: &RunInstr) -> Vec<String> {
    match &r.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut script = s.clone();
            let only_heredoc = r.heredocs.len() == 1
                && s.trim().starts_with("<<")
                && s.trim()
                    .trim_start_matches("<<")
                    .trim_start_matches('-')
                    .trim_matches(['"', '\''])
                    == r.heredocs[0].name;
            if only_heredoc {
                script = r.heredocs[0].content.clone();
            } else {
                for h in &r.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
            }
            let mut v = cfg.shell();
            v.push(script);
            v
        }
    }
}

fn command_text(r: &RunInstr) -> String {
    match &r.command {
        Command::Exec(v) => serde_json::to_string(v).unwrap_or_default(),
        Command::Shell(s) => s.clone(),
    }
}

/// Remove from a RUN's upper dir the mount points the sandbox had to create (they did not
/// exist in the image): empty files and directories, and then their parents that became
/// empty and did not exist either.
///
/// The upper dir is what the step's command made of it: it may have replaced a parent of a
/// stub with a symlink to a host path (BuildKit's CVE-2024-23652). So every lookup is made
/// relative to the upper dir without following any symlink, and only the stub itself is ever
/// removed, never what a symlink points at.
pub(super) fn remove_stubs(upper: &Path, lowers: &Lowers, stubs: &[String]) {
    let Ok(top) = fs::File::open(upper) else {
        return;
    };
    for s in stubs {
        let mut rel = s.trim_matches('/').to_string();
        let mut removed_child = false;
        while !rel.is_empty() {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            if !remove_stub(&top, parent, name, lowers.metadata(&rel), removed_child) {
                break;
            }
            removed_child = true;
            rel = parent.to_string();
        }
    }
}

/// Remove `parent/name` below `top` if the sandbox made it (`image`: what the image has there)
/// and it is empty. `removed_child`: a stub below it was just removed.
fn remove_stub(
    top: &fs::File,
    parent: &str,
    name: &str,
    image: Option<fs::Metadata>,
    removed_child: bool,
) -> bool {
    use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::SFlag;
    use nix::unistd::UnlinkatFlags;
    use std::os::unix::fs::MetadataExt;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let dir = if parent.is_empty() {
        top.try_clone().map(std::os::fd::OwnedFd::from)
    } else {
        nix::fcntl::openat2(top, parent, how).map_err(std::io::Error::from)
    };
    let Ok(dir) = dir else { return false };
    let Ok(st) = nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return false;
    };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let is_dir = kind == SFlag::S_IFDIR;
    let unlink = |flags| nix::unistd::unlinkat(&dir, name, flags).is_ok();
    match image {
        // Not in the image: the sandbox made it; an empty file or directory goes.
        None if is_dir => unlink(UnlinkatFlags::RemoveDir),
        None if kind == SFlag::S_IFREG && st.st_size == 0 => unlink(UnlinkatFlags::NoRemoveDir),
        None => false,
        // In the image: a parent the overlay copied up only to hold a stub. Once empty, it
        // goes too when it still matches the image (not opaque, same mode and owner);
        // otherwise the layer would carry a spurious `/etc`.
        Some(lm) => {
            let here = Path::new("/proc/self/fd")
                .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
                .join(name);
            removed_child
                && is_dir
                && lm.is_dir()
                && st.st_mode == lm.mode()
                && (st.st_uid, st.st_gid) == (lm.uid(), lm.gid())
                && !crate::layer::whiteout::is_overlay_opaque(&here).unwrap_or(true)
                && unlink(UnlinkatFlags::RemoveDir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxfile::Instruction;

    #[test]
    fn heredoc_only_run_runs_its_body() {
        let bf = boxfile::parse(
            "FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\nRUN cat <<EOF > /f\nhi\nEOF\n",
            Path::new("Boxfile"),
        )
        .unwrap();
        let cfg = ContainerConfig::default();
        let argv = |i: usize| match &bf.stages[0].instructions[i].node {
            Instruction::Run(r) => run_argv(&cfg, r),
            _ => panic!(),
        };
        assert_eq!(argv(0), ["/bin/sh", "-c", "echo a\necho b\n"]);
        assert_eq!(argv(1), ["/bin/sh", "-c", "cat <<EOF > /f\nhi\nEOF"]);
    }
}
