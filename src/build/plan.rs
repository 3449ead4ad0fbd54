//! Planning a build: which stages the target needs, the automatic platform ARGs, and what
//! each step's cache key covers.
//!
//! A step's key is sha256 over the parent key, the instruction after ARG/ENV expansion and,
//! for COPY/ADD and RUN bind mounts, the content they read. Computing the content part of an
//! ADD fetches its URLs and git repositories (the key covers the downloaded digest and the
//! commit, as in BuildKit); those fetches are *returned* as typed [`Source`]s in a
//! [`CopyPlan`], which the step carries to its execution, so nothing is looked up again by
//! name and a context file may be called anything.

use std::collections::{BTreeMap, BTreeSet};

use super::copy::{self, Filter};
use super::engine::Engine;
use super::error::{StepErrorKind, StepResult};
use super::fetch::Download;
use super::git::Checkout;
use crate::boxfile::{
    Boxfile, CopyInstr, GlobalScope, IgnoreMatcher, Instruction, MountType, RunInstr, SourceKind,
};
use crate::digest::Digest;
use crate::registry;

/// One source of a COPY/ADD, as key computation found it; execution uses this value.
pub enum Source {
    /// A path or glob in the context (or in the `--from` stage's tree).
    Context(String),
    /// A heredoc of the instruction, by name.
    Heredoc(String),
    /// An ADD of a URL, downloaded; the file is removed when this is dropped.
    Url(Download),
    /// An ADD of a git repository, checked out; removed when this is dropped.
    Git(Checkout),
}

/// The sources of a COPY/ADD and what they contribute to its cache key.
pub struct CopyPlan {
    pub key: String,
    pub sources: Vec<Source>,
}

/// A cache key from its parts.
pub fn key_of(parts: &[&str]) -> Digest {
    Digest::of_bytes(parts.join("\0").as_bytes())
}

/// The automatic platform ARGs for the build (and target) platform.
pub fn platform_args(platform: Option<&str>) -> BTreeMap<String, String> {
    let host_arch = host_arch();
    let target = platform
        .map(str::to_string)
        .unwrap_or_else(|| format!("linux/{host_arch}"));
    let mut parts = target.split('/');
    let os = parts.next().unwrap_or("linux").to_string();
    let arch = parts.next().unwrap_or(host_arch).to_string();
    let variant = parts.next().unwrap_or("").to_string();
    let mut m = BTreeMap::new();
    m.insert("TARGETPLATFORM".into(), target.clone());
    m.insert("TARGETOS".into(), os);
    m.insert("TARGETARCH".into(), arch);
    m.insert("TARGETVARIANT".into(), variant);
    m.insert("BUILDPLATFORM".into(), format!("linux/{host_arch}"));
    m.insert("BUILDOS".into(), "linux".into());
    m.insert("BUILDARCH".into(), host_arch.into());
    m.insert("BUILDVARIANT".into(), String::new());
    m
}

/// The host's architecture in OCI's names.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The index of an earlier stage (`before` excluded) named `name`, or numbered so.
fn earlier_stage(bf: &Boxfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    bf.stages[..before]
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
}

/// The stages stage `i` reads: its FROM stage, `--from` and mount `from=` stages.
fn stage_deps(bf: &Boxfile, global: &GlobalScope, i: usize) -> Vec<usize> {
    let s = &bf.stages[i];
    let from = global
        .expand_from(&s.from.node)
        .ok()
        .and_then(|e| match e.instruction {
            Instruction::From(f) => Some(f.image),
            _ => None,
        })
        .unwrap_or_else(|| s.from.node.image.clone());
    let lower = from.to_ascii_lowercase();
    let mut deps: Vec<usize> = bf.stages[..i]
        .iter()
        .filter(|st| st.name.as_deref() == Some(lower.as_str()))
        .take(1)
        .map(|st| st.index)
        .collect();
    for ins in &s.instructions {
        let refs: Vec<&str> = match &ins.node {
            Instruction::Copy(c) | Instruction::Add(c) => {
                c.from.iter().map(|s| s.as_str()).collect()
            }
            Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
            _ => vec![],
        };
        deps.extend(refs.into_iter().filter_map(|r| earlier_stage(bf, r, i)));
    }
    deps
}

/// The stages the target needs (itself, its FROM stages, `--from` and mount `from=`
/// stages, transitively), in file order.
pub fn needed_stages(bf: &Boxfile, global: &GlobalScope, target: usize) -> Vec<usize> {
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need.insert(i) {
            todo.extend(stage_deps(bf, global, i));
        }
    }
    need.into_iter().collect()
}

impl Engine<'_> {
    /// What a RUN's bind mounts contribute to its key: the content they show (context
    /// digest, or the stage's key / image digest), as BuildKit keys them. Cache mounts and
    /// secrets are left out on purpose.
    pub(super) fn bind_mounts_key(&mut self, r: &RunInstr) -> StepResult<String> {
        let mut out = String::new();
        for m in r.mounts.iter().filter(|m| m.kind == MountType::Bind) {
            let source = m.source.clone().unwrap_or_else(|| ".".into());
            if let Some(from) = &m.from {
                out.push_str(&format!("bind {} {source}\n", self.source_key(from)?));
                continue;
            }
            let filter = Filter {
                ignore: Some(&self.ignore),
                excludes: None,
            };
            let Some(h) = self.hasher.as_mut() else {
                return Err(StepErrorKind::Invalid(
                    "RUN --mount=type=bind from the context, but there is no context".into(),
                ));
            };
            let d = copy::context_digest(h, std::slice::from_ref(&source), &filter)
                .map_err(StepErrorKind::copy("RUN --mount=type=bind"))?;
            out.push_str(&format!("bind context {source} {d}\n"));
        }
        Ok(out)
    }

    /// What a `--from` (or `from=`) names in a key: a named context's, `stage KEY` or
    /// `image DIGEST`.
    fn source_key(&self, from: &str) -> StepResult<String> {
        if let Some(nc) = self.named(from) {
            return self.named_key(&nc);
        }
        if let Some(s) = self.stage_by_ref(from) {
            return Ok(format!("stage {}", s.key));
        }
        let img = registry::ensure_image(self.store, from, &self.pull_options())
            .map_err(StepErrorKind::base(from))?;
        Ok(format!("image {}", img.manifest_desc.digest))
    }

    /// The sources of a COPY/ADD (downloads and checkouts made) and their key.
    pub(super) fn copy_plan(&mut self, c: &CopyInstr, what: &'static str) -> StepResult<CopyPlan> {
        let mut remote = String::new();
        let mut sources = Vec::with_capacity(c.sources.len());
        for s in &c.sources {
            let source = match s.kind {
                SourceKind::Git => {
                    let co = super::git::fetch(&s.path, &self.store.tmp_dir())?;
                    remote.push_str(&format!(
                        "git {} {} keep-git-dir={:?}\n",
                        s.path, co.commit, c.keep_git_dir
                    ));
                    Source::Git(co)
                }
                SourceKind::Url => {
                    let tmp = self.store.tmp_dir();
                    let d = super::fetch::fetch(&s.path, &tmp, c.checksum.as_deref())?;
                    remote.push_str(&format!("url {} {}\n", s.path, d.digest));
                    Source::Url(d)
                }
                SourceKind::Heredoc => Source::Heredoc(heredoc_name(&s.path)),
                SourceKind::Local => Source::Context(s.path.clone()),
            };
            sources.push(source);
        }
        let key = match &c.from {
            // The other tree is keyed as a whole; remote sources (if any) on top.
            Some(from) => self.source_key(from)? + &remote,
            None => remote + &self.context_key(c, what)?,
        };
        Ok(CopyPlan { key, sources })
    }

    /// The content digest of a COPY/ADD's sources in the build context ("" when none).
    fn context_key(&mut self, c: &CopyInstr, what: &'static str) -> StepResult<String> {
        let local: Vec<String> = c
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Local)
            .map(|s| s.path.clone())
            .collect();
        if local.is_empty() {
            return Ok(String::new());
        }
        let filter = Filter {
            ignore: Some(&self.ignore),
            excludes: (!c.excludes.is_empty())
                .then(|| IgnoreMatcher::parse(&c.excludes.join("\n"))),
        };
        let Some(h) = self.hasher.as_mut() else {
            return Err(StepErrorKind::Invalid(format!(
                "{what} from the build context, but the Boxfile came on stdin with no \
                 context (give a context directory)"
            )));
        };
        copy::context_digest(h, &local, &filter).map_err(StepErrorKind::copy(what))
    }
}

/// The name of a heredoc source word (`<<-"EOF"` → `EOF`).
fn heredoc_name(word: &str) -> String {
    word.trim_start_matches("<<")
        .trim_start_matches('-')
        .trim_matches(['"', '\''])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_needed_stages_are_built() {
        let bf = crate::boxfile::parse(
            "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\nFROM scratch AS c\nFROM b\n",
            Path::new("Boxfile"),
        )
        .unwrap();
        let g = GlobalScope::new(&bf, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(needed_stages(&bf, &g, 3), vec![0, 1, 3]);
        assert_eq!(needed_stages(&bf, &g, 2), vec![2]);
    }

    #[test]
    fn heredoc_names_lose_their_markers_and_quotes() {
        assert_eq!(heredoc_name("<<EOF"), "EOF");
        assert_eq!(heredoc_name("<<-\"EOF\""), "EOF");
        assert_eq!(heredoc_name("<<'x'"), "x");
    }
}
