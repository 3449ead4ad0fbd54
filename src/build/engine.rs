//! The build engine: stages → steps → layers, with the build cache (DESIGN §6).
//!
//! [`build`] plans the stages the target needs ([`super::plan`]), then walks each stage's
//! instructions with a `StageEnv` (ARG/ENV scoping). Every step has a cache key chained from
//! the base (its manifest digest, or the base stage's final key). Metadata instructions only
//! change the config (and the key chain); RUN ([`super::step_run`]), COPY/ADD and a WORKDIR
//! that creates its directory ([`super::step_copy`]) make layers. A layer step whose record is
//! in the cache ([`super::cache`]) reuses its layer without running anything. The image is
//! written last ([`super::image_out`]).
//!
//! Errors: the work of a step returns a [`StepErrorKind`]; `Engine::step` (and the FROM of a
//! stage) attaches the Boxfile position once, as a [`super::error::StepError`].

use crate::timefmt::rfc3339;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cache::{BuildCache, CacheRecord};
use super::config::{self, StageState, history_entry};
use super::context::ContextHasher;
use super::error::{BuildError, Result, StepError, StepErrorKind, StepResult};
use super::fsview::{FsError, LayerRef, MergedMount};
use super::image_out::{self, layer_history, run_created_by};
use super::output::Printer;
use super::plan::{self, key_of};
use super::{BuildOptions, BuildResult, ImageFormat};
use crate::boxfile::{
    self, Boxfile, GlobalScope, IgnoreMatcher, Instruction, Located, StageEnv, dump_instruction,
};
use crate::digest::Digest;
use crate::image::{ImageConfig, Platform, Reference};
use crate::registry::{self, PullOptions};
use crate::run::ToolContext;
use crate::store::{Image, Store, StoreError};

/// The result of a built stage: its layers, config and final cache key.
#[derive(Clone, Debug)]
pub struct StageOut {
    pub layers: Vec<LayerRef>,
    pub config: ImageConfig,
    pub key: Digest,
}

/// A stage being built.
pub struct StageRun {
    pub out: StageOut,
    pub env: StageEnv,
    pub st: StageState,
    /// The stage's plain-copy root, kept from step to step (copy snapshotter only).
    pub copy: Option<super::step_root::CopyRoot>,
}

pub struct Engine<'a> {
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    /// Where entering the tool's user namespace left the process: RUN steps run in its
    /// sandbox, content gets the owners its policy allows.
    pub tool: &'a ToolContext,
    pub bf: Boxfile,
    pub global: GlobalScope,
    pub printer: Printer,
    pub hasher: Option<ContextHasher>,
    pub ignore: IgnoreMatcher,
    pub built: HashMap<usize, StageOut>,
    pub cache: BuildCache<'a>,
    pub executed: usize,
    pub cached: usize,
    pub created: String,
    /// `SOURCE_DATE_EPOCH` as RFC 3339: every time in the image when set.
    pub sde: Option<String>,
    /// Every layer step of this build, for `--cache-to`.
    pub visited: Vec<(Digest, Option<LayerRef>)>,
    /// The cgroup limits RUN steps get: `--memory` and friends, or none where this
    /// environment cannot apply them (said once, as a warning).
    pub run_limits: crate::run::Limits,
    /// The agents started for `--ssh ID=KEY` (stopped when the build ends).
    pub key_agents: super::ssh::KeyAgents,
    /// The platform of the image being built (`--platform`, else the host's), normalised.
    pub target_platform: Platform,
    /// The platform of each needed stage ([`Engine::plan_platforms`]).
    pub platforms: HashMap<usize, Platform>,
    /// The platform of the stage being built: what its FROM pulls and records.
    pub platform: Platform,
}

/// The stage `--target` names (its index), else the last one.
pub(super) fn target_stage(bf: &Boxfile, opts: &BuildOptions) -> Result<usize> {
    match &opts.target {
        Some(t) => Ok(bf
            .stage(t)
            .ok_or_else(|| BuildError::NoTarget(t.clone()))?
            .index),
        None => Ok(bf.stages.len().saturating_sub(1)),
    }
}

/// Build the image `opts` describes, tag it, and return its ID. `tool` is the context from
/// entering the tool's user namespace.
pub fn build(store: &Store, opts: &BuildOptions, tool: &ToolContext) -> Result<BuildResult> {
    let bf = boxfile::parse(&opts.boxfile.text, &opts.boxfile.path)
        .map_err(|e| BuildError::Parse(Box::new(e)))?;
    // Tags are checked before any work, so a typo costs nothing.
    let tags = parse_tags(&opts.tags)?;
    let target = target_stage(&bf, opts)?;
    let target_platform = match &opts.platform {
        Some(p) => plan::parse_platform(p).map_err(|why| BuildError::Platform {
            value: p.clone(),
            why,
        })?,
        None => plan::build_platform(),
    };
    let platform = plan::platform_args(&plan::build_platform(), &target_platform);
    let global =
        GlobalScope::new(&bf, &opts.build_args, &platform).map_err(|source| BuildError::Args {
            file: opts.boxfile.path.display().to_string(),
            source,
        })?;
    let needed = plan::needed_stages(&bf, &global, target);
    let mut e = Engine::new(store, opts, tool, (bf, global), &needed, target_platform)?;
    // Every stage's platform, and an emulator for each foreign one with RUN steps, before
    // anything is pulled or run.
    e.plan_platforms(&needed)?;
    e.printer
        .line(&format!("boxbuild: {}", opts.backends.describe()));
    if let Some(w) = opts.backends.isolation.warning() {
        e.printer.line(&w);
    }
    if let Err(why) = crate::run::cgroups::check(&e.run_limits) {
        e.printer.line(&format!(
            "warning: RUN steps run without the limits asked for: {why}"
        ));
        e.run_limits = crate::run::Limits::default();
    }
    // Lint findings do not stop a build; they are shown first, as BuildKit's build checks.
    for w in &e.bf.warnings {
        e.printer.line(&format!(
            "warning: {}:{}",
            opts.boxfile.path.display(),
            w.plain()
        ));
    }
    for r in &opts.cache_from {
        e.cache.import(r, e.pull_options(), &e.printer);
    }
    for i in &needed {
        let out = e.run_stage(*i);
        if let Err(err) = &out {
            e.printer.failed(&err.to_string());
        }
        e.built.insert(*i, out?);
    }
    if let Some(h) = e.hasher.as_mut()
        && let Err(err) = h.save()
    {
        e.printer
            .line(&format!("warning: could not save the context index: {err}"));
    }
    let out = e.built.remove(&target).expect("target stage was built");
    let layers = out.layers.clone();
    let (image_id, manifest, names) = e.write_image(out, &tags)?;
    e.export_files(&layers)?;
    let docker = opts.format == ImageFormat::Docker;
    for r in &opts.cache_to {
        e.cache.export(r, &e.visited, docker, &e.printer)?;
    }
    let caller = super::caller::Caller::of(tool);
    if let Some(f) = &opts.iidfile {
        caller
            .run(|| crate::atomic::write(f, format!("{image_id}").as_bytes(), 0o644))
            .map_err(|source| BuildError::Write {
                path: f.clone(),
                source,
            })?;
    }
    let result = BuildResult {
        image_id,
        manifest,
        stored: names.is_some(),
        names: names.unwrap_or_default(),
        executed: e.executed,
        cached: e.cached,
    };
    if let Some(f) = &opts.metadata_file {
        let json = super::export::metadata(&result);
        caller
            .run(|| crate::atomic::write(f, json.as_bytes(), 0o644))
            .map_err(|source| BuildError::Write {
                path: f.clone(),
                source,
            })?;
    }
    e.printer.succeeded();
    Ok(result)
}

/// The `-t` values as references (`:latest` when no tag or digest is given).
pub(super) fn parse_tags(tags: &[String]) -> Result<Vec<Reference>> {
    tags.iter()
        .map(|t| {
            let r: Reference = t.parse().map_err(|source| BuildError::Tag {
                tag: t.clone(),
                source,
            })?;
            Ok(if r.tag().is_none() && r.digest().is_none() {
                r.with_tag("latest")
            } else {
                r
            })
        })
        .collect()
}

impl<'a> Engine<'a> {
    fn new(
        store: &'a Store,
        opts: &'a BuildOptions,
        tool: &'a ToolContext,
        (bf, global): (Boxfile, GlobalScope),
        needed: &[usize],
        target_platform: Platform,
    ) -> Result<Engine<'a>> {
        let total: usize = needed
            .iter()
            .map(|i| 1 + bf.stages[*i].instructions.len())
            .sum();
        let (hasher, ignore) = match &opts.context {
            Some(ctx) => {
                let ignore = IgnoreMatcher::from_context(ctx, &opts.boxfile.path).map_err(|e| {
                    BuildError::Ignore {
                        context: ctx.display().to_string(),
                        why: e.to_string(),
                    }
                })?;
                (
                    Some(ContextHasher::open(ctx, Some(&store.cache_dir()))),
                    ignore,
                )
            }
            None => (None, IgnoreMatcher::default()),
        };
        let created = rfc3339(opts.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }));
        Ok(Engine {
            store,
            opts,
            tool,
            bf,
            global,
            printer: Printer::new(opts.output, total)
                .tagged(opts.member.as_ref().map(|m| m.tag.clone())),
            hasher,
            ignore,
            built: HashMap::new(),
            cache: BuildCache::new(store, opts.no_cache),
            executed: 0,
            cached: 0,
            created,
            sde: opts.source_date_epoch.map(rfc3339),
            visited: vec![],
            run_limits: opts.limits.clone(),
            key_agents: super::ssh::KeyAgents::start(&opts.ssh, &store.tmp_dir())
                .map_err(BuildError::Ssh)?,
            platform: target_platform.clone(),
            target_platform,
            platforms: HashMap::new(),
        })
    }

    /// The error of the step at Boxfile line `line`.
    pub(super) fn at(&self, line: usize) -> impl FnOnce(StepErrorKind) -> StepError + use<> {
        let at = format!("{}:{line}", self.opts.boxfile.path.display());
        move |kind| StepError { at, kind }
    }

    pub(super) fn pull_options(&self) -> PullOptions {
        PullOptions {
            policy: self.opts.pull,
            // The target's, as BuildKit pulls `COPY --from=IMAGE`; a FROM asks for its stage's.
            // None (no --platform): the host's from an index, a single-platform image as is.
            platform: self.opts.platform.clone(),
            progress: self.printer.registry_progress(),
            // Layers are extracted while downloading: a RUN needs them anyway.
            unpack: Some(self.tool.content_policy()),
            ..Default::default()
        }
    }

    /// A stage already built, by name or index.
    pub(super) fn stage_by_ref(&self, name: &str) -> Option<&StageOut> {
        let lower = name.to_ascii_lowercase();
        self.bf
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok())
            .and_then(|i| self.built.get(&i))
    }

    pub(super) fn stage_of_image(&self, img: &Image) -> Result<StageOut, StoreError> {
        let config = img.config.clone();
        let diff_ids = img.diff_ids();
        let layers = img
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| LayerRef {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                diff_id: d,
            })
            .collect();
        Ok(StageOut {
            layers,
            config,
            key: key_of(&["image", &img.manifest_desc.digest.to_string()]),
        })
    }

    /// The unpacked trees of `layers`, bottom first.
    pub(super) fn lowerdirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>, StoreError> {
        let policy = self.tool.content_policy();
        layers
            .iter()
            .map(|l| {
                self.store
                    .unpack_layer(&l.diff_id, &l.digest, &l.media_type, &policy)
            })
            .collect()
    }

    /// `image` in the store, pulled if `opts` say so; in a build of several platforms at
    /// once, one platform at a time per image and platform (see `multi::Shared::pull_slot`).
    fn ensure_image(&self, image: &str, opts: &PullOptions) -> StepResult<Image> {
        let slot = (self.opts.member.as_ref())
            .map(|m| m.shared.pull_slot(image, opts.platform.as_deref()));
        let _turn = slot
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        registry::ensure_image(self.store, image, opts).map_err(StepErrorKind::base(image))
    }

    /// A read-only view of what `--from` / `from=` names: a named context, a built stage,
    /// else an image.
    pub(super) fn mount_from(&self, from: &str) -> StepResult<MergedMount> {
        if let Some(nc) = self.named(from) {
            return self.named_mount(&nc);
        }
        let layers = match self.stage_by_ref(from) {
            Some(s) => s.layers.clone(),
            None => {
                let img = self.ensure_image(from, &self.pull_options())?;
                self.stage_of_image(&img)?.layers
            }
        };
        Ok(MergedMount::new(
            &self.lowerdirs(&layers)?,
            &self.store.tmp_dir(),
            self.tool.is_remapped(),
        )?)
    }

    /// A new directory in the store's `tmp/` for a step's work (removed when dropped).
    pub(super) fn new_layer_dir(&self, prefix: &str) -> Result<tempfile::TempDir, FsError> {
        let tmp = self.store.tmp_dir();
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(super::fsview::io_err("create temporary directory in", &tmp))
    }

    /// Write the target stage as the build's image (labels and `created` applied) and, when
    /// an image output is asked for (the default), tag it with `tags` and the outputs'
    /// `name=`s. Returns the image ID (config digest), the manifest's descriptor, and the
    /// names it got (None: no image stored).
    fn write_image(
        &self,
        mut out: StageOut,
        tags: &[Reference],
    ) -> Result<(Digest, crate::image::Descriptor, Option<Vec<String>>)> {
        let created = self
            .sde
            .clone()
            .or_else(|| out.config.created.clone())
            .unwrap_or_else(|| self.created.clone());
        for (k, v) in &self.opts.labels {
            out.config.config.labels.insert(k.clone(), v.clone());
        }
        out.config.created = Some(created);
        let docker = self.opts.format == ImageFormat::Docker;
        let mut record = self.opts.outputs.is_empty();
        let mut tags = tags.to_vec();
        for o in &self.opts.outputs {
            if let super::export::Export::Image { names, .. } = o {
                record = true;
                tags.extend(parse_tags(names)?);
            }
        }
        let (cfg, desc) =
            image_out::write_manifest(self.store, &out.layers, out.config, &tags, docker, record)?;
        let names = record.then(|| tags.iter().map(|t| t.to_string()).collect());
        Ok((cfg, desc, names))
    }

    /// The `-o type=local|tar` outputs: the filesystem of `layers` written for the caller.
    fn export_files(&self, layers: &[LayerRef]) -> Result<()> {
        use super::export::{Export, export_fs};
        let files: Vec<&Export> = self
            .opts
            .outputs
            .iter()
            .filter(|o| !matches!(o, Export::Image { .. } | Export::IndexMember))
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let lowers = self.lowerdirs(layers)?;
        let merged = MergedMount::new(&lowers, &self.store.tmp_dir(), self.tool.is_remapped())?;
        let caller = super::caller::Caller::of(self.tool);
        let policy = self.tool.content_policy();
        for o in files {
            export_fs(&merged, o, &caller, &policy, self.opts.source_date_epoch)
                .map_err(|e| BuildError::Export(Box::new(e)))?;
        }
        Ok(())
    }

    /// Err when a multi-platform build stopped this platform's build (another failed).
    fn check_stopped(&self) -> StepResult<()> {
        match &self.opts.member {
            Some(m) if m.shared.stopped() => Err(StepErrorKind::Stopped),
            _ => Ok(()),
        }
    }

    fn run_stage(&mut self, idx: usize) -> Result<StageOut> {
        let stage = self.bf.stages[idx].clone();
        let line = stage.from.start_line;
        self.check_stopped().map_err(self.at(line))?;
        self.platform = self.platforms[&idx].clone();
        let (mut sr, triggers) = self.stage_start(idx).map_err(self.at(line))?;
        // ONBUILD triggers of the base run first (located at the FROM); the new image does
        // not inherit them.
        for t in triggers {
            let parsed = boxfile::parse(&format!("FROM scratch\n{t}\n"), Path::new("ONBUILD"))
                .map_err(|e| {
                    self.at(line)(StepErrorKind::Invalid(format!(
                        "ONBUILD trigger {t:?} of the base image: {e}"
                    )))
                })?;
            for ins in parsed.stages[0].instructions.clone() {
                let ins = Located {
                    start_line: line,
                    end_line: line,
                    original: format!("ONBUILD {}", ins.original),
                    node: ins.node,
                };
                self.step(&mut sr, &ins, false)?;
            }
        }
        for ins in &stage.instructions {
            self.step(&mut sr, ins, true)?;
        }
        Ok(sr.out)
    }

    /// The FROM of stage `idx`: its base and environment, and the base's ONBUILD triggers.
    fn stage_start(&mut self, idx: usize) -> StepResult<(StageRun, Vec<String>)> {
        let from = self.global.expand_from(&self.bf.stages[idx].from.node)?;
        let Instruction::From(f) = from.instruction else {
            unreachable!("expand_from gives a FROM")
        };
        self.printer.step(&self.bf.stages[idx].from.original, false);
        let lower = f.image.to_ascii_lowercase();
        let names_stage = self.bf.stages[..idx]
            .iter()
            .any(|s| s.name.as_deref() == Some(lower.as_str()));
        // The base is pulled for the stage's platform as the user spelled it (FROM --platform,
        // else --platform; neither: the registry's default); a scratch base records it.
        let asked = f.platform.filter(|p| !p.is_empty());
        let pull = asked.or_else(|| self.opts.platform.clone());
        let mut base = if let Some(nc) = self.named(&f.image) {
            self.named_base(&nc, pull)?
        } else if f.image == "scratch" {
            self.scratch(None)
        } else if let Some(s) = self.stage_by_ref(&f.image).filter(|_| names_stage) {
            s.clone()
        } else {
            let mut opts = self.pull_options();
            opts.platform = pull;
            let img = self.ensure_image(&f.image, &opts)?;
            self.stage_of_image(&img)?
        };
        // The stage's platform is part of every key after it: an arm64 and an amd64 build
        // never share a step, while a stage of the same platform in both does.
        base.key = plan::platform_key(&base.key, &self.platform);
        let mut env = self.global.stage_env();
        let pairs: Vec<(String, String)> = base
            .config
            .config
            .env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        env.set_image_env(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let triggers = base.config.config.on_build.take().unwrap_or_default();
        self.check_base_platform(idx, &f.image, &base.config, &triggers)?;
        let sr = StageRun {
            out: base,
            env,
            st: StageState::default(),
            copy: None,
        };
        Ok((sr, triggers))
    }

    /// An empty base for `platform` (`os/arch[/variant]`), else the stage's platform.
    pub(super) fn scratch(&self, platform: Option<String>) -> StageOut {
        let p = platform
            .and_then(|p| plan::parse_platform(&p).ok())
            .unwrap_or_else(|| self.platform.clone());
        StageOut {
            layers: vec![],
            config: ImageConfig {
                architecture: p.arch,
                os: p.os,
                variant: p.variant,
                ..Default::default()
            },
            key: key_of(&["scratch"]),
        }
    }

    /// One instruction, its error located at its line. `counted`: shown as an `[n/N]` step
    /// (ONBUILD triggers are not).
    fn step(&mut self, sr: &mut StageRun, ins: &Located<Instruction>, counted: bool) -> Result<()> {
        let at = self.at(ins.start_line);
        self.step_inner(sr, ins, counted)
            .map_err(|kind| at(kind).into())
    }

    fn step_inner(
        &mut self,
        sr: &mut StageRun,
        ins: &Located<Instruction>,
        counted: bool,
    ) -> StepResult<()> {
        let e = sr.env.step(&ins.node)?;
        let parent = sr.out.key.to_string();
        let text = dump_instruction(&e.instruction);
        match &e.instruction {
            Instruction::Run(r) => {
                let args: Vec<String> = sr
                    .env
                    .run_args()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let mut mounts = self.bind_mounts_key(r)?;
                if !self.opts.add_hosts.is_empty() {
                    // What a RUN resolves may change what it makes, as in BuildKit's key.
                    mounts.push_str(&format!("\nhosts:{}", self.opts.add_hosts.join(",")));
                }
                let key = key_of(&[&parent, "run", &text, &args.join("\n"), &mounts]);
                let created_by = run_created_by(&e.instruction);
                self.layer_step(sr, ins, counted, (key, created_by), |eng, sr| {
                    eng.exec_run(sr, r)
                })
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let is_add = matches!(e.instruction, Instruction::Add(_));
                let plan = self.copy_plan(c, if is_add { "ADD" } else { "COPY" })?;
                let wd = &sr.out.config.config.working_dir;
                let key = key_of(&[&parent, "copy", &text, wd, &plan.key]);
                self.layer_step(sr, ins, counted, (key, text), |eng, sr| {
                    eng.exec_copy(sr, c, plan, is_add).map(Some)
                })
            }
            Instruction::Workdir(_) => {
                config::apply(&mut sr.out.config, &mut sr.st, &e.instruction)?;
                let dir = sr.out.config.config.working_dir.clone();
                let key = key_of(&[&parent, "workdir", &dir]);
                self.layer_step(sr, ins, counted, (key, text), |eng, sr| {
                    eng.exec_workdir(sr, &dir)
                })
            }
            Instruction::From(_) => unreachable!("FROM starts a stage"),
            other => {
                self.meta_step(sr, other)?;
                sr.out.key = key_of(&[&parent, "meta", &text]);
                if counted {
                    self.printer.step(&ins.original, false);
                }
                Ok(())
            }
        }
    }

    /// A metadata instruction: the config changes, and (except ARG) a history entry.
    fn meta_step(&mut self, sr: &mut StageRun, ins: &Instruction) -> StepResult<()> {
        config::apply(&mut sr.out.config, &mut sr.st, ins)?;
        if !matches!(ins, Instruction::Arg(_)) {
            // The time of the last layer step (or of the base): metadata alone does not make
            // a rebuild differ.
            let time = self
                .sde
                .clone()
                .or_else(|| sr.out.config.created.clone())
                .unwrap_or_else(|| self.created.clone());
            sr.out
                .config
                .history
                .push(history_entry(ins, Some(time), true));
        }
        Ok(())
    }

    /// A step that may make a layer: served from the cache, or executed by `exec`.
    /// `(key, created_by)`: its cache key and history line.
    fn layer_step(
        &mut self,
        sr: &mut StageRun,
        ins: &Located<Instruction>,
        counted: bool,
        (key, created_by): (Digest, String),
        exec: impl FnOnce(&mut Self, &mut StageRun) -> StepResult<Option<LayerRef>>,
    ) -> StepResult<()> {
        // Beside other platforms' builds: one step per key at a time, so a step they share
        // (a $BUILDPLATFORM stage) runs once and the others wait for its record.
        let slot = self.opts.member.as_ref().map(|m| m.shared.slot(&key));
        let mut made = slot
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.check_stopped()?;
        let hit = match made.as_ref().and_then(|m| m.as_ref()) {
            Some(rec) => Some(rec.clone()),
            None => self.cache.get(&key),
        };
        if counted {
            self.printer.step(&ins.original, hit.is_some());
        }
        let (layer, time) = match hit {
            Some(rec) => {
                self.cached += 1;
                let time = rec.created.unwrap_or_else(|| self.created.clone());
                (rec.layer, time)
            }
            None => {
                let layer = exec(self, sr)?;
                self.executed += 1;
                let rec = CacheRecord {
                    layer: layer.clone(),
                    created: Some(self.created.clone()),
                };
                self.cache.put(&key, &rec);
                if let Some(m) = made.as_mut() {
                    **m = Some(rec);
                }
                (layer, self.created.clone())
            }
        };
        let time = self.sde.clone().unwrap_or(time);
        sr.out.config.created = Some(time.clone());
        self.visited.push((key.clone(), layer.clone()));
        let empty = layer.is_none();
        if let Some(l) = layer {
            sr.out.layers.push(l);
        }
        let entry = layer_history(time, created_by, empty);
        sr.out.config.history.push(entry);
        sr.out.key = key;
        Ok(())
    }
}
