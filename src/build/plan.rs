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
use super::error::{BuildError, StepErrorKind, StepResult};
use super::fetch::Download;
use super::git::Checkout;
use crate::boxfile::{
    Boxfile, CopyInstr, GlobalScope, IgnoreMatcher, Instruction, MountType, RunInstr, SourceKind,
};
use crate::digest::Digest;
use crate::image::Platform;
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

/// A platform in BuildKit's normal form (containerd's `platforms.Normalize`): architecture
/// aliases resolved, arm64's default variant v8 and amd64's v1 dropped, arm's v7 made explicit.
/// The platform ARGs, cache keys and pulls of a build use this form, so `linux/arm64/v8` and
/// `linux/arm64` are the same target.
pub fn normalize(p: &Platform) -> Platform {
    let mut arch = p.arch.to_ascii_lowercase();
    let mut variant = p.variant.clone().filter(|v| !v.is_empty());
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => {
            arch = "amd64".into();
            if variant.as_deref() == Some("v1") {
                variant = None;
            }
        }
        "i386" | "i686" => arch = "386".into(),
        "aarch64" | "arm64" => {
            arch = "arm64".into();
            if matches!(variant.as_deref(), Some("8" | "v8" | "v8.0")) {
                variant = None;
            }
        }
        "armhf" => (arch, variant) = ("arm".into(), Some("v7".into())),
        "armel" => (arch, variant) = ("arm".into(), Some("v6".into())),
        "arm" => {
            variant = Some(match variant.as_deref() {
                None | Some("7" | "v7") => "v7".into(),
                Some(v @ ("5" | "6" | "8")) => format!("v{v}"),
                Some(v) => v.to_string(),
            })
        }
        _ => {}
    }
    Platform {
        os: p.os.to_ascii_lowercase(),
        arch,
        variant,
        extra: BTreeMap::new(),
    }
}

/// A `--platform` or `FROM --platform` value, normalised.
pub fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map(|p| normalize(&p))
}

/// The platform of the machine that builds (BuildKit's build platform), normalised.
pub fn build_platform() -> Platform {
    normalize(&Platform::host())
}

/// The automatic platform ARGs as BuildKit sets them: BUILD* for the machine that builds,
/// TARGET* for the image being built (the same when no `--platform` is given). Both are
/// build-wide: a `FROM --platform` stage sees the same values. A stage sees them only after
/// declaring them (`ARG TARGETARCH`); FROM lines see them always.
pub fn platform_args(build: &Platform, target: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.arch.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
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

/// A stage's base key with its platform mixed in.
pub fn platform_key(base: &Digest, platform: &Platform) -> Digest {
    key_of(&[&base.to_string(), "platform", &platform.to_string()])
}

impl Engine<'_> {
    /// The platform of every needed stage, into `self.platforms`; then, for each stage with
    /// RUN steps on a platform the host does not run natively, the binfmt_misc emulator it
    /// needs ([`crate::run::binfmt::check`]). Runs before anything is pulled or run.
    pub(super) fn plan_platforms(&mut self, needed: &[usize]) -> Result<(), BuildError> {
        for &i in needed {
            let line = self.bf.stages[i].from.start_line;
            let p = self.stage_platform(i).map_err(self.at(line))?;
            self.platforms.insert(i, p);
        }
        for &i in needed {
            let stage = &self.bf.stages[i];
            if !stage
                .instructions
                .iter()
                .any(|ins| matches!(ins.node, Instruction::Run(_)))
            {
                continue;
            }
            crate::run::binfmt::check(&self.platforms[&i]).map_err(|m| BuildError::Emulation {
                at: format!(
                    "{}:{}",
                    self.opts.boxfile.path.display(),
                    stage.from.start_line
                ),
                source: Box::new(m),
            })?;
        }
        Ok(())
    }

    /// A stage's platform: that of the stage it is FROM, else its `FROM --platform` (after
    /// ARG expansion), else the target platform, as in BuildKit.
    fn stage_platform(&self, i: usize) -> StepResult<Platform> {
        let Instruction::From(f) = self
            .global
            .expand_from(&self.bf.stages[i].from.node)?
            .instruction
        else {
            unreachable!("expand_from gives a FROM")
        };
        let lower = f.image.to_ascii_lowercase();
        let parent = self.bf.stages[..i]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .filter(|_| self.named(&f.image).is_none())
            .and_then(|s| self.platforms.get(&s.index));
        if let Some(p) = parent {
            return Ok(p.clone());
        }
        match f.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => parse_platform(p)
                .map_err(|e| StepErrorKind::Invalid(format!("FROM --platform={p}: {e}"))),
            None => Ok(self.target_platform.clone()),
        }
    }

    /// A stage's base as it came: a warning when its config is for another platform than
    /// the stage's (a single-platform image is used as it is, as BuildKit does), and, when
    /// the stage will run something (its RUN steps, or a RUN among the base's ONBUILD
    /// triggers), the emulator for the image's own platform, before the first step.
    pub(super) fn check_base_platform(
        &self,
        idx: usize,
        image: &str,
        cfg: &crate::image::ImageConfig,
        triggers: &[String],
    ) -> StepResult<()> {
        let got = Platform {
            os: cfg.os.clone(),
            arch: cfg.architecture.clone(),
            variant: cfg.variant.clone(),
            extra: BTreeMap::new(),
        };
        let got = got.known().map(|p| normalize(&p));
        if let Some(got) = got.as_ref().filter(|g| !self.platform.matches(g)) {
            self.printer.line(&format!(
                "warning: FROM {image}: the image is for {got}, not the stage's platform {}",
                self.platform
            ));
        }
        let runs = self.bf.stages[idx]
            .instructions
            .iter()
            .any(|ins| matches!(ins.node, Instruction::Run(_)))
            || triggers.iter().any(|t| {
                t.split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("RUN"))
            });
        if runs {
            let p = got.unwrap_or_else(|| self.platform.clone());
            crate::run::binfmt::check(&p).map_err(|m| StepErrorKind::Emulation(Box::new(m)))?;
        }
        Ok(())
    }

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

    fn norm(s: &str) -> String {
        parse_platform(s).unwrap().to_string()
    }

    #[test]
    fn platforms_normalise_as_buildkit_does() {
        assert_eq!(norm("linux/arm64/v8"), "linux/arm64");
        assert_eq!(norm("linux/aarch64"), "linux/arm64");
        assert_eq!(norm("arm64"), "linux/arm64");
        assert_eq!(norm("linux/arm"), "linux/arm/v7");
        assert_eq!(norm("linux/arm/6"), "linux/arm/v6");
        assert_eq!(norm("linux/x86_64"), "linux/amd64");
        assert_eq!(norm("linux/amd64/v1"), "linux/amd64");
        assert_eq!(norm("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(norm("linux/riscv64"), "linux/riscv64");
        assert!(parse_platform("linux/").is_err());
    }

    #[test]
    fn platform_args_describe_the_build_and_the_target_machine() {
        let build = parse_platform("linux/amd64").unwrap();
        let target = parse_platform("linux/arm/v7").unwrap();
        let m = platform_args(&build, &target);
        let want = [
            ("BUILDARCH", "amd64"),
            ("BUILDOS", "linux"),
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDVARIANT", ""),
            ("TARGETARCH", "arm"),
            ("TARGETOS", "linux"),
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETVARIANT", "v7"),
        ];
        let got: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        let arm64 = platform_args(&build, &parse_platform("linux/arm64/v8").unwrap());
        assert_eq!(arm64["TARGETPLATFORM"], "linux/arm64");
        assert_eq!(arm64["TARGETVARIANT"], "");
    }

    #[test]
    fn the_platform_is_part_of_a_stage_key() {
        let base = key_of(&["image", "sha256:00"]);
        let amd = platform_key(&base, &parse_platform("linux/amd64").unwrap());
        let arm = platform_key(&base, &parse_platform("linux/arm64").unwrap());
        assert_ne!(amd, arm);
        let arm_v8 = platform_key(&base, &parse_platform("linux/arm64/v8").unwrap());
        assert_eq!(arm, arm_v8, "the same platform spelled two ways is one key");
    }

    #[test]
    fn heredoc_names_lose_their_markers_and_quotes() {
        assert_eq!(heredoc_name("<<EOF"), "EOF");
        assert_eq!(heredoc_name("<<-\"EOF\""), "EOF");
        assert_eq!(heredoc_name("<<'x'"), "x");
    }
}
