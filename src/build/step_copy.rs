//! Executing COPY, ADD and WORKDIR: files are written into a new layer directory in overlay
//! form ([`super::copy`], no container) and committed like a RUN's upper dir.
//!
//! The sources come as the typed [`Source`]s the step's key computation made
//! ([`super::plan`]): context paths, heredocs, downloads and checkouts, each written by Docker's
//! destination rules.

use std::fs;
use std::path::{Path, PathBuf};

use super::copy::{self, CopyError, Filter};
use super::dest::Dest;
use super::engine::{Engine, StageRun};
use super::error::{StepErrorKind, StepResult};
use super::fetch::Download;
use super::fsview::{self, LayerRef, Lowers};
use super::git::Checkout;
use super::owner;
use super::plan::{CopyPlan, Source};
use crate::boxfile::{CopyInstr, IgnoreMatcher};
use crate::layer::confine::StreamWriter;

type CopyResult<T> = std::result::Result<T, CopyError>;

/// Where the sources of one COPY/ADD go.
struct Target {
    /// The destination, resolved in the image (an absolute path).
    dir: String,
    /// Sources go *into* `dir` (rather than becoming it).
    into_dir: bool,
    /// `--parents`: each source keeps its path below `dir`.
    parents: bool,
}

impl Target {
    fn join(&self, name: &str) -> String {
        if self.dir == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// Where a file source named `name` goes.
    fn file(&self, name: &str) -> String {
        if self.into_dir {
            self.join(name)
        } else {
            self.dir.clone()
        }
    }
}

/// One source ready to write: a context path expanded from its pattern, or a remote one.
enum Selected<'p> {
    Path(String),
    Heredoc(&'p str),
    Url(&'p Download),
    Git(&'p Checkout),
}

impl Engine<'_> {
    /// WORKDIR: a layer only when the directory is missing from the image.
    pub(super) fn exec_workdir(
        &mut self,
        sr: &mut StageRun,
        dir: &str,
    ) -> StepResult<Option<LayerRef>> {
        let lowers = Lowers::new(self.lowerdirs(&sr.out.layers)?);
        let rel = dir.trim_start_matches('/');
        if rel.is_empty() || lowers.metadata(rel).is_some_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let work = self.new_layer_dir("workdir-")?;
        let tree = work.path().join("tree");
        fs::create_dir(&tree).map_err(fsview::io_err("create", &tree))?;
        owner::write_tree(
            &tree,
            &lowers,
            (0, 0),
            None,
            &self.tool.content_policy(),
            |dest| {
                let path = dest.resolve(&format!("{dir}/x"));
                dest.ensure_parents(&path)
            },
        )
        .map_err(StepErrorKind::copy("WORKDIR"))?;
        let sde = self.opts.source_date_epoch;
        Ok(Some(fsview::commit_dir(self.store, &tree, sde)?))
    }

    /// COPY/ADD of `plan`'s sources into a new layer.
    pub(super) fn exec_copy(
        &mut self,
        sr: &mut StageRun,
        c: &CopyInstr,
        plan: CopyPlan,
        is_add: bool,
    ) -> StepResult<LayerRef> {
        let what = if is_add { "ADD" } else { "COPY" };
        let lowers = Lowers::new(self.lowerdirs(&sr.out.layers)?);
        // The source tree: the context, or a merged view of a stage or image (kept mounted
        // until the layer is written).
        let mount = c.from.as_deref().map(|f| self.mount_from(f)).transpose()?;
        let root = match &mount {
            Some(m) => m.path().to_path_buf(),
            None => self
                .opts
                .context
                .clone()
                .unwrap_or_else(|| PathBuf::from("/nonexistent")),
        };
        let filter = Filter {
            ignore: mount.is_none().then_some(&self.ignore),
            excludes: (!c.excludes.is_empty())
                .then(|| IgnoreMatcher::parse(&c.excludes.join("\n"))),
        };
        let owner = match &c.chown {
            Some(s) => owner::resolve_chown(s, &lowers).map_err(StepErrorKind::copy(what))?,
            None => (0, 0),
        };
        let chmod = c.chmod.as_deref().map(owner::parse_chmod).transpose();
        let chmod = chmod.map_err(StepErrorKind::copy(what))?;
        let work = self.new_layer_dir("copy-")?;
        let tree = work.path().join("tree");
        fs::create_dir(&tree).map_err(fsview::io_err("create", &tree))?;
        let wd = sr.out.config.config.working_dir.clone();
        let policy = self.tool.content_policy();
        owner::write_tree(&tree, &lowers, owner, chmod, &policy, |dest| {
            fill_copy(dest, c, &plan.sources, &root, &filter, &wd, is_add)
        })
        .map_err(StepErrorKind::copy(what))?;
        drop(mount);
        let sde = self.opts.source_date_epoch;
        Ok(fsview::commit_dir(self.store, &tree, sde)?)
    }
}

/// The body of a COPY/ADD: every source into `dest`, by Docker's destination rules.
fn fill_copy(
    dest: &mut Dest<&mut StreamWriter>,
    c: &CopyInstr,
    sources: &[Source],
    root: &Path,
    filter: &Filter,
    wd: &str,
    is_add: bool,
) -> CopyResult<()> {
    let (dir, dir_hint) = destination(dest, &c.dest, wd);
    let mut selected = Vec::with_capacity(sources.len());
    for s in sources {
        match s {
            Source::Url(d) => selected.push(Selected::Url(d)),
            Source::Git(co) => selected.push(Selected::Git(co)),
            Source::Heredoc(name) => selected.push(Selected::Heredoc(name)),
            Source::Context(pattern) => selected.extend(
                copy::select(root, pattern, filter)?
                    .into_iter()
                    .map(Selected::Path),
            ),
        }
    }
    let multiple = selected.len() > 1;
    let parents = c.parents == Some(true);
    if multiple && !dir_hint && !dest.is_dir(&dir) {
        return Err(CopyError::DestNotDir);
    }
    let into_dir = dir_hint || multiple || parents || dest.is_dir(&dir);
    let to = Target {
        dir,
        into_dir,
        parents,
    };
    for s in selected {
        match s {
            Selected::Heredoc(name) => {
                let h = c
                    .heredocs
                    .iter()
                    .find(|h| h.name == name)
                    .ok_or_else(|| CopyError::NoHeredoc(name.to_string()))?;
                let target = to.file(name);
                dest.ensure_parents(&target)?;
                dest.write_content(&target, h.content.as_bytes())?;
            }
            Selected::Git(co) => copy_checkout(dest, co, &to, c.keep_git_dir == Some(true))?,
            Selected::Url(dl) => copy_download(dest, dl, &to)?,
            Selected::Path(rel) => copy_path(dest, root, &rel, filter, &to, is_add)?,
        }
    }
    Ok(())
}

/// The destination in the image (relative to `wd` unless absolute) and whether it was
/// written as a directory (`dir/`, `dir/.`, `.`). A destination that is a symlink to a
/// directory in the image (`/bin -> usr/bin`) is written through, never replaced.
fn destination(dest: &Dest<&mut StreamWriter>, to: &str, wd: &str) -> (String, bool) {
    let raw = if to.starts_with('/') {
        to.to_string()
    } else {
        format!("{}/{to}", if wd.is_empty() { "/" } else { wd })
    };
    let dir_hint = raw.ends_with('/') || raw.ends_with("/.") || to == ".";
    let d = dest.resolve(&raw);
    let through = dest.resolve(&format!("{d}/.x"));
    let through = through.strip_suffix("/.x").unwrap_or("/").to_string();
    if through != d && dest.is_dir(&through) {
        let d = if through.is_empty() {
            "/".into()
        } else {
            through
        };
        return (d, dir_hint);
    }
    (d, dir_hint)
}

/// A repository: its tree (or `#ref:subdir`) goes into the destination directory, without
/// .git unless --keep-git-dir.
fn copy_checkout(
    dest: &mut Dest<&mut StreamWriter>,
    co: &Checkout,
    to: &Target,
    keep_git: bool,
) -> CopyResult<()> {
    let no_git = IgnoreMatcher::parse(".git\n");
    let filter = Filter {
        ignore: (!keep_git).then_some(&no_git),
        excludes: None,
    };
    let sub = copy::scoped(co.dir.path(), &co.subdir);
    dest.copy_tree(co.dir.path(), &sub, &to.dir, &filter)
}

/// A download: 0600 unless --chmod, named after the URL path (Docker's rule).
fn copy_download(dest: &mut Dest<&mut StreamWriter>, dl: &Download, to: &Target) -> CopyResult<()> {
    let target = to.file(&dl.name);
    let meta = fs::metadata(&dl.path).map_err(|e| CopyError::Io {
        op: "stat",
        path: dl.path.to_path_buf(),
        source: e,
    })?;
    let chmod = dest.chmod;
    dest.chmod = Some(chmod.unwrap_or(0o600));
    dest.ensure_parents(&target)?;
    let r = dest.copy_entry(&dl.path, &meta, &target);
    dest.chmod = chmod;
    r
}

/// A path selected under `root`: a directory's contents, an archive ADD unpacks, or one entry.
fn copy_path(
    dest: &mut Dest<&mut StreamWriter>,
    root: &Path,
    rel: &str,
    filter: &Filter,
    to: &Target,
    is_add: bool,
) -> CopyResult<()> {
    // Read through symlinks only inside the source tree (see copy::scoped).
    let resolved = copy::scoped(root, rel);
    let src = root.join(&resolved);
    let meta = fs::symlink_metadata(&src).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CopyError::NotFound(rel.to_string())
        } else {
            CopyError::Io {
                op: "stat",
                path: src.clone(),
                source: e,
            }
        }
    })?;
    if meta.is_dir() {
        let target = if to.parents && !rel.is_empty() {
            to.join(rel)
        } else {
            to.dir.clone()
        };
        return dest.copy_tree(root, &resolved, &target, filter);
    }
    if is_add && meta.is_file() && dest.extract_archive(&src, &to.dir)? {
        return Ok(());
    }
    let base = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let target = if to.parents {
        to.join(rel)
    } else {
        to.file(&base)
    };
    dest.ensure_parents(&target)?;
    dest.copy_entry(&src, &meta, &target)
}
