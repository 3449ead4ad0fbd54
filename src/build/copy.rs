//! COPY and ADD: files written straight into a new layer directory, no container.
//!
//! Docker's rules, as BuildKit applies them:
//! - sources are relative to the context (or the `--from` stage/image root) and may be globs;
//!   a directory source copies its *contents*; excluded (`.boxignore`, `--exclude`) paths are
//!   left out;
//! - the destination is a directory when it ends in `/`, when there are several sources, or
//!   when it already is one in the image; a relative destination is relative to WORKDIR;
//!   symlinks in the destination's parents resolve inside the image;
//! - copied entries keep their mode and mtime, belong to 0:0 unless `--chown` (names resolved
//!   in the image; a user without a group uses the uid as gid), `--chmod` sets the mode;
//!   missing parent directories are created 0755 with the same owner;
//! - ADD extracts local tar archives (plain, gzip, zstd) into the destination directory.
//!
//! This file selects and walks sources and computes their content digest; [`super::owner`]
//! resolves `--chown`/`--chmod` and runs the confined extraction a COPY writes through;
//! [`super::dest`] is the tar stream of the new layer, by Docker's destination rules.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::context::{ContextError, ContextHasher, describe_into};
use crate::boxfile::IgnoreMatcher;
use crate::boxfile::ignore::clean;
use crate::digest::Hasher;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{0}: not found in the build context (or excluded by .boxignore/.dockerignore or --exclude)"
    )]
    NotFound(String),
    #[error("when copying more than one source the destination must be a directory ending in /")]
    DestNotDir,
    #[error(
        "cannot give files the owner {uid}:{gid}: that id is not mapped in boxkit's user \
         namespace. Your user needs a subordinate id range: {fix}"
    )]
    Unmapped { uid: u32, gid: u32, fix: String },
    #[error("write the new layer's content: {0}")]
    Stream(io::Error),
    #[error("{}: changed size while being copied; do not modify the context during a build", .0.display())]
    Changed(PathBuf),
    #[error("ADD {}: read archive: {source}", path.display())]
    Archive { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Extract(#[from] crate::layer::ExtractError),
    #[error("--chown {0:?}: {1}")]
    Chown(String, String),
    #[error("--chmod {0:?}: expected an octal mode such as 0755")]
    Chmod(String),
    #[error("heredoc {0} is not defined")]
    NoHeredoc(String),
    #[error(transparent)]
    Context(#[from] ContextError),
}

pub(super) type Result<T> = std::result::Result<T, CopyError>;

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError + use<> {
    let path = path.to_path_buf();
    move |source| CopyError::Io { op, path, source }
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Filters applied while reading sources.
pub struct Filter<'a> {
    /// The context's ignore file (only for sources from the context).
    pub ignore: Option<&'a IgnoreMatcher>,
    /// `--exclude` patterns.
    pub excludes: Option<IgnoreMatcher>,
}

impl Filter<'_> {
    /// Whether `rel` (relative to the root) is left out. The ignore file matches paths from
    /// the context root; `--exclude` patterns match paths relative to the source being
    /// copied (`base`), as in BuildKit (`COPY --exclude=*.log src/ /app/`).
    pub(super) fn skipped(&self, rel: &str, base: &str, is_dir: bool) -> bool {
        // Most contexts have no ignore file and most COPYs no --exclude: skip the matching
        // (and its path cleaning) per entry then.
        let ign = self.ignore.is_some_and(|m| {
            !m.is_empty() && m.matches(rel, is_dir) && !(is_dir && m.may_contain_exceptions(rel))
        });
        let sub = if base.is_empty() {
            rel
        } else {
            rel.strip_prefix(base)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(rel)
        };
        ign || (!sub.is_empty()
            && self
                .excludes
                .as_ref()
                .is_some_and(|m| m.matches(sub, is_dir)))
    }
}

/// Resolve `rel` under `root` the way a chroot would: symlinks (in every component, the last
/// included) are followed *inside* `root` — absolute targets start again at `root`, `..`
/// stops at it. Reading sources through this never leaves the context (or a stage's tree):
/// a context symlink to `/etc` cannot smuggle host files into an image, and an image's
/// absolute symlinks resolve in the image, not on the host.
pub fn scoped(root: &Path, rel: &str) -> String {
    use std::collections::VecDeque;
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut cand = root.to_path_buf();
        cand.extend(&done);
        cand.push(&c);
        match fs::symlink_metadata(&cand) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                let Ok(t) = fs::read_link(&cand) else {
                    done.push(c);
                    continue;
                };
                let t = t.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').filter(|p| !p.is_empty()).rev() {
                    todo.push_front(part.to_string());
                }
            }
            _ => done.push(c),
        }
    }
    done.join("/")
}

/// The relative paths (`""` = the root) a source pattern selects under `root`, sorted.
pub fn select(root: &Path, pattern: &str, filter: &Filter) -> Result<Vec<String>> {
    let p = clean(&format!("/{pattern}"));
    let p = p.trim_start_matches('/').to_string();
    if p.is_empty() {
        return Ok(vec![String::new()]);
    }
    if !has_glob(&p) {
        let full = root.join(&p);
        return match fs::symlink_metadata(&full) {
            Ok(m) if !filter.skipped(&p, "", m.is_dir()) => Ok(vec![p]),
            _ => Err(CopyError::NotFound(pattern.to_string())),
        };
    }
    let m = IgnoreMatcher::parse(&p);
    let depth = if p.contains("**") {
        usize::MAX
    } else {
        p.split('/').count()
    };
    let mut out = Vec::new();
    fn walk(
        root: &Path,
        rel: &str,
        level: usize,
        depth: usize,
        m: &IgnoreMatcher,
        filter: &Filter,
        out: &mut Vec<String>,
    ) {
        for (r, meta) in sorted_children(root, rel) {
            let is_dir = meta.is_dir();
            if m.matches(&r, is_dir) {
                if !filter.skipped(&r, "", is_dir) {
                    out.push(r);
                }
            } else if is_dir && level + 1 < depth {
                walk(root, &r, level + 1, depth, m, filter, out);
            }
        }
    }
    walk(root, "", 0, depth, &m, filter, &mut out);
    if out.is_empty() {
        return Err(CopyError::NotFound(pattern.to_string()));
    }
    Ok(out)
}

/// The entries of directory `root/rel` with their lstat, sorted by name, as paths relative
/// to `root` (none when it cannot be read; an entry that vanished is left out). Each entry is
/// stat'ed relative to the open directory (`statx(dirfd, name)`), not by its full path: on a
/// 50,000-file context the kernel's path walks were a quarter of a cached rebuild.
fn sorted_children(root: &Path, rel: &str) -> Vec<(String, fs::Metadata)> {
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return Vec::new();
    };
    let mut kids: Vec<_> = rd
        .flatten()
        .filter_map(|e| Some((e.file_name(), e.metadata().ok()?)))
        .collect();
    kids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    kids.into_iter()
        .map(|(n, m)| {
            let n = n.to_string_lossy();
            let r = if rel.is_empty() {
                n.into_owned()
            } else {
                let mut r = String::with_capacity(rel.len() + 1 + n.len());
                r.push_str(rel);
                r.push('/');
                r.push_str(&n);
                r
            };
            (r, m)
        })
        .collect()
}

/// Walked entries: paths relative to the root, with their lstat.
pub type Walked = Vec<(String, fs::Metadata)>;

/// Every entry a selected source contributes (itself and, for a directory, what is below it,
/// filtered), as paths relative to the root with their lstat, in walk order (depth first,
/// names sorted). Empty when `rel` itself does not exist.
pub fn entries(root: &Path, rel: &str, filter: &Filter) -> Vec<(String, fs::Metadata)> {
    let Ok(top) = fs::symlink_metadata(root.join(rel)) else {
        return Vec::new();
    };
    let is_dir = top.is_dir();
    let mut out = vec![(rel.to_string(), top)];
    if is_dir {
        walk_tree(root, rel, filter, &mut out);
    }
    out
}

/// The filtered children of each directory below `top`, read level by level with the
/// directories of a level shared among worker threads (the statx calls are most of a cached
/// rebuild's time and the kernel runs them in parallel), then put in depth-first order.
fn walk_tree(root: &Path, top: &str, filter: &Filter, out: &mut Vec<(String, fs::Metadata)>) {
    let mut kids: HashMap<String, Walked> = HashMap::new();
    let mut level = vec![top.to_string()];
    while !level.is_empty() {
        let lists = read_dirs(root, &level, top, filter);
        let mut next = Vec::new();
        for (d, list) in level.into_iter().zip(lists) {
            next.extend(
                list.iter()
                    .filter(|(_, m)| m.is_dir())
                    .map(|(r, _)| r.clone()),
            );
            kids.insert(d, list);
        }
        level = next;
    }
    fn emit(dir: &str, kids: &mut HashMap<String, Walked>, out: &mut Walked) {
        for (r, m) in kids.remove(dir).unwrap_or_default() {
            let is_dir = m.is_dir();
            out.push((r, m));
            if is_dir {
                let r = out.last().expect("just pushed").0.clone();
                emit(&r, kids, out);
            }
        }
    }
    emit(top, &mut kids, out);
}

/// The filtered children of each of `dirs` (in the same order); `base` is the source the
/// walk started from (for `--exclude`). Several directories are shared among threads.
fn read_dirs(
    root: &Path,
    dirs: &[String],
    base: &str,
    filter: &Filter,
) -> Vec<Vec<(String, fs::Metadata)>> {
    let one = |d: &String| -> Vec<(String, fs::Metadata)> {
        let mut v = sorted_children(root, d);
        v.retain(|(r, m)| !filter.skipped(r, base, m.is_dir()));
        v
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(dirs.len() / 8);
    if workers < 2 {
        return dirs.iter().map(one).collect();
    }
    let next = AtomicUsize::new(0);
    let mut lists: Vec<Walked> = vec![Vec::new(); dirs.len()];
    let done: Vec<Vec<(usize, Walked)>> = std::thread::scope(|s| {
        let work = || {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = dirs.get(i) else { break };
                mine.push((i, one(d)));
            }
            mine
        };
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut all = vec![work()];
        all.extend(handles.into_iter().map(|h| h.join().expect("walk worker")));
        all
    });
    for (i, v) in done.into_iter().flatten() {
        lists[i] = v;
    }
    lists
}

/// The content digest of the sources of a COPY/ADD from the build context: relative paths,
/// modes, owners, symlink targets and content hashes (through the stat index), not mtimes.
pub fn context_digest(
    hasher: &mut ContextHasher,
    patterns: &[String],
    filter: &Filter,
) -> Result<String> {
    let root = hasher.root().to_path_buf();
    let mut h = Hasher::new();
    let mut line = Vec::with_capacity(256);
    for pat in patterns {
        h.update(format!("source {pat}\n").as_bytes());
        for rel in select(&root, pat, filter)? {
            let resolved = scoped(&root, &rel);
            h.update(format!("{rel} -> {resolved}\n").as_bytes());
            let all = entries(&root, &resolved, filter);
            if all.is_empty() {
                let p = root.join(&resolved);
                return Err(match fs::symlink_metadata(&p) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => io_err("stat", &p)(e),
                    _ => CopyError::NotFound(rel.clone()),
                });
            }
            for (e, m) in &all {
                line.clear();
                describe_into(hasher, e, m, &mut line)?;
                h.update(&line);
            }
        }
    }
    Ok(h.finish().0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: Vec<(String, fs::Metadata)>) -> Vec<String> {
        v.into_iter().map(|(n, _)| n).collect()
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("src/sub")).unwrap();
        fs::write(t.path().join("src/a.txt"), "a").unwrap();
        fs::write(t.path().join("src/b.log"), "b").unwrap();
        fs::write(t.path().join("src/sub/c.txt"), "c").unwrap();
        fs::write(t.path().join("top.txt"), "t").unwrap();
        t
    }

    #[test]
    fn globs_select_like_filepath_match() {
        let t = tree();
        let f = Filter {
            ignore: None,
            excludes: None,
        };
        assert_eq!(select(t.path(), "src/*.txt", &f).unwrap(), ["src/a.txt"]);
        assert_eq!(select(t.path(), "*.txt", &f).unwrap(), ["top.txt"]);
        assert_eq!(select(t.path(), "./src", &f).unwrap(), ["src"]);
        assert_eq!(select(t.path(), ".", &f).unwrap(), [""]);
        assert!(matches!(
            select(t.path(), "nope*", &f),
            Err(CopyError::NotFound(_))
        ));
        let ign = IgnoreMatcher::parse("src/*.log\n");
        let f = Filter {
            ignore: Some(&ign),
            excludes: Some(IgnoreMatcher::parse("sub\n")),
        };
        assert_eq!(names(entries(t.path(), "src", &f)), ["src", "src/a.txt"]);
        let f = Filter {
            ignore: None,
            excludes: Some(IgnoreMatcher::parse("*.txt\n")),
        };
        assert_eq!(
            names(entries(t.path(), "src", &f)),
            ["src", "src/b.log", "src/sub", "src/sub/c.txt"]
        );
    }

    #[test]
    fn sources_resolve_inside_the_root_never_outside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("real/sub")).unwrap();
        fs::write(r.join("real/sub/f"), "f").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../../real", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/real/sub", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(scoped(r, "etc-link/passwd"), "etc/passwd");
        assert!(!r.join(scoped(r, "etc-link/passwd")).exists());
        assert_eq!(scoped(r, "up/sub/f"), "real/sub/f");
        assert_eq!(scoped(r, "abs/f"), "real/sub/f");
        assert_eq!(scoped(r, "../../real/./sub/../sub/f"), "real/sub/f");
        assert_eq!(scoped(r, "loop"), "loop");
    }
}
