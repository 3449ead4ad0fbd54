//! The build engine: stages → steps → layers, with the build cache (DESIGN §6).
//!
//! Each step gets a cache key: sha256 of the parent key, the instruction after ARG/ENV
//! expansion, the build args a RUN sees, and for COPY/ADD the content digest of the selected
//! sources (through the context's stat index, so an unchanged context costs only `stat`s).
//! The key of a stage's base is the base image's manifest digest (or the base stage's final
//! key), so a different base misses everything. Metadata instructions only change the config
//! (and the key chain); RUN, COPY, ADD and a WORKDIR that creates its directory make layers.
//! A cache record (`cache/build/<key>.json`) names the layer a step produced; a hit whose blob
//! is still in the store reuses it without running anything.

// Build errors carry the location and the underlying error; they happen once per build, so
// their size does not matter.
#![allow(clippy::result_large_err)]

use crate::timefmt::rfc3339;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::config::{self, StageState, history_entry};
use super::context::{ContextError, ContextHasher};
use super::copy::{self, CopyError, Dest, Filter};
use super::fsview::{self, FsError, LayerRef, Lowers, MergedMount};
use super::output::{Capture, Printer};
use super::{BuildOptions, BuildResult, ImageFormat, SecretSource};
use crate::boxfile::{
    self, Boxfile, Command, CopyInstr, GlobalScope, IgnoreMatcher, Instruction, Located, Mount,
    MountType, ParseErrors, RunInstr, SourceKind, StageEnv, dump_instruction,
};
use crate::digest::Digest;
use crate::image::{ContainerConfig, Descriptor, History, ImageConfig, Manifest, RootFs};
use crate::image::{Reference, media};
use crate::layer::confine::StreamWriter;
use crate::registry::{self, PullOptions};
use crate::run::{self, MountSpec, NetworkMode, RootfsSource, SandboxSpec, UpperDir};
use crate::store::{Image, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", .0.render())]
    Parse(Box<ParseErrors>),
    #[error("{at}: {source}")]
    Expand {
        at: String,
        source: boxfile::ExpandError,
    },
    #[error("target stage {0:?} could not be found in the Boxfile")]
    NoTarget(String),
    #[error("invalid tag {tag:?}: {source}")]
    Tag {
        tag: String,
        source: crate::image::ReferenceError,
    },
    #[error("{at}: FROM {image}: {source}")]
    Base {
        at: String,
        image: String,
        source: registry::RegistryError,
    },
    #[error(
        "{at}: RUN {command}: exit code {code}{hint}\n  (the step failed; no image was tagged)"
    )]
    Run {
        at: String,
        command: String,
        code: i32,
        hint: String,
    },
    #[error("{at}: RUN: the sandbox failed: {source}")]
    Sandbox {
        at: String,
        source: run::SandboxError,
    },
    #[error("{at}: {what}: {source}")]
    Copy {
        at: String,
        what: &'static str,
        source: CopyError,
    },
    #[error("{at}: {source}")]
    Config {
        at: String,
        source: config::ConfigError,
    },
    #[error("{at}: {what} is not supported yet")]
    Unsupported { at: String, what: String },
    #[error("{at}: {why}")]
    Invalid { at: String, why: String },
    #[error("{at}: secret {id:?} was not given: pass --secret id={id},src=FILE")]
    Secret { at: String, id: String },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error("push {name}: {source}")]
    Push {
        name: String,
        source: registry::RegistryError,
    },
    #[error("write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// The result of a built stage: its layers, config and final cache key.
#[derive(Clone, Debug)]
struct StageOut {
    layers: Vec<LayerRef>,
    config: ImageConfig,
    key: Digest,
}

/// A stage being built.
struct StageRun {
    out: StageOut,
    env: StageEnv,
    st: StageState,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheRecord {
    layer: Option<LayerRef>,
    /// When the step ran: a hit reuses it for the history, so a fully cached rebuild gives
    /// the same image ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
}

struct Engine<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    bf: Boxfile,
    global: GlobalScope,
    printer: Printer,
    hasher: Option<ContextHasher>,
    ignore: IgnoreMatcher,
    built: HashMap<usize, StageOut>,
    executed: usize,
    cached: usize,
    created: String,
    /// `SOURCE_DATE_EPOCH` as RFC 3339: every time in the image when set.
    sde: Option<String>,
    /// Every layer step of this build, for `--cache-to`.
    visited: Vec<(Digest, Option<LayerRef>)>,
    /// ADD URL downloads of the current step (made while computing its key).
    downloads: Vec<super::fetch::Download>,
    /// ADD git checkouts of the current step.
    checkouts: Vec<super::git::Checkout>,
}

/// The config key under which a cache image (`--cache-to`) lists its records.
const CACHE_KEY: &str = "io.boxkit.build-cache.v1";

/// Build the image `opts` describes, tag it, and return its ID.
pub fn build(store: &Store, opts: &BuildOptions) -> Result<BuildResult> {
    let bf = boxfile::parse(&opts.boxfile.text, &opts.boxfile.path)
        .map_err(|e| BuildError::Parse(Box::new(e)))?;
    // Tags are checked before any work, so a typo costs nothing.
    let tags = opts
        .tags
        .iter()
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
        .collect::<Result<Vec<_>>>()?;
    let target = match &opts.target {
        Some(t) => {
            bf.stage(t)
                .ok_or_else(|| BuildError::NoTarget(t.clone()))?
                .index
        }
        None => bf.stages.len().saturating_sub(1),
    };
    let platform = platform_args(opts.platform.as_deref());
    let global = GlobalScope::new(&bf, &opts.build_args, &platform).map_err(|source| {
        BuildError::Expand {
            at: opts.boxfile.path.display().to_string(),
            source,
        }
    })?;
    let needed = needed_stages(&bf, &global, target);
    let total: usize = needed
        .iter()
        .map(|i| 1 + bf.stages[*i].instructions.len())
        .sum();
    let (hasher, ignore) = match &opts.context {
        Some(ctx) => {
            let ignore = IgnoreMatcher::from_context(ctx, &opts.boxfile.path).map_err(|e| {
                BuildError::Invalid {
                    at: ctx.display().to_string(),
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
    let mut e = Engine {
        store,
        opts,
        bf,
        global,
        printer: Printer::new(opts.output, total),
        hasher,
        ignore,
        built: HashMap::new(),
        executed: 0,
        cached: 0,
        created,
        sde: opts.source_date_epoch.map(rfc3339),
        visited: vec![],
        downloads: vec![],
        checkouts: vec![],
    };
    // Lint findings do not stop a build; they are shown first, as BuildKit's build checks.
    for w in &e.bf.warnings.clone() {
        e.printer.line(&format!(
            "warning: {}:{}",
            opts.boxfile.path.display(),
            w.plain()
        ));
    }
    for r in &opts.cache_from {
        e.import_cache(r);
    }
    for i in &needed {
        let out = e.run_stage(*i)?;
        e.built.insert(*i, out);
    }
    e.clear_downloads();
    if let Some(h) = e.hasher.as_mut()
        && let Err(err) = h.save()
    {
        e.printer
            .line(&format!("warning: could not save the context index: {err}"));
    }
    let out = e.built.remove(&target).expect("target stage was built");
    let (image_id, manifest) = e.write_image(out, &tags)?;
    for r in &opts.cache_to {
        e.export_cache(r)?;
    }
    if let Some(f) = &opts.iidfile {
        fs::write(f, format!("{image_id}")).map_err(|source| BuildError::Write {
            path: f.clone(),
            source,
        })?;
    }
    Ok(BuildResult {
        image_id,
        manifest,
        executed: e.executed,
        cached: e.cached,
    })
}

/// The automatic platform ARGs for the build (and target) platform.
fn platform_args(platform: Option<&str>) -> BTreeMap<String, String> {
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

fn host_arch() -> &'static str {
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

/// The stages the target needs (itself, its FROM stages, `--from` and mount `from=`
/// stages, transitively), in file order.
fn needed_stages(bf: &Boxfile, global: &GlobalScope, target: usize) -> Vec<usize> {
    let stage_ref = |name: &str, before: usize| -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        bf.stages[..before]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    };
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !need.insert(i) {
            continue;
        }
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
        if let Some(d) = bf.stages[..i]
            .iter()
            .find(|st| st.name.as_deref() == Some(lower.as_str()))
        {
            todo.push(d.index);
        }
        for ins in &s.instructions {
            let refs: Vec<&str> = match &ins.node {
                Instruction::Copy(c) | Instruction::Add(c) => {
                    c.from.iter().map(|s| s.as_str()).collect()
                }
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => vec![],
            };
            for r in refs {
                if let Some(d) = stage_ref(r, i) {
                    todo.push(d);
                }
            }
        }
    }
    need.into_iter().collect()
}

fn key_of(parts: &[&str]) -> Digest {
    Digest::of_bytes(parts.join("\0").as_bytes())
}

/// A history line for a RUN, in BuildKit's form.
fn run_created_by(ins: &Instruction) -> String {
    format!("{} # buildkit", dump_instruction(ins))
}

impl Engine<'_> {
    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.opts.boxfile.path.display())
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions {
            policy: self.opts.pull,
            platform: self.opts.platform.clone(),
            progress: if self.printer.quiet() {
                registry::Progress::Quiet
            } else {
                registry::Progress::Plain
            },
            // Layers are extracted while downloading: a RUN needs them anyway.
            unpack: true,
            ..Default::default()
        }
    }

    /// A stage already built, by name or index.
    fn stage_by_ref(&self, name: &str) -> Option<&StageOut> {
        let lower = name.to_ascii_lowercase();
        self.bf
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| name.parse::<usize>().ok())
            .and_then(|i| self.built.get(&i))
    }

    fn image_out(&self, img: &Image) -> Result<StageOut> {
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

    fn lowerdirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
        Ok(layers
            .iter()
            .map(|l| {
                self.store
                    .unpack_layer(&l.diff_id, &l.digest, &l.media_type)
            })
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn run_stage(&mut self, idx: usize) -> Result<StageOut> {
        let stage = self.bf.stages[idx].clone();
        let at = self.at(stage.from.start_line);
        let from = self
            .global
            .expand_from(&stage.from.node)
            .map_err(|source| BuildError::Expand {
                at: at.clone(),
                source,
            })?;
        let Instruction::From(f) = from.instruction else {
            unreachable!("expand_from gives a FROM")
        };
        self.printer.step(&stage.from.original, false);
        let mut base = if f.image == "scratch" {
            // An empty base has the target platform (FROM --platform, else --platform, else
            // the host's).
            let platform = f.platform.clone().or_else(|| self.opts.platform.clone());
            let mut parts = platform.as_deref().unwrap_or("").split('/');
            let os = parts.next().filter(|s| !s.is_empty()).unwrap_or("linux");
            let arch = parts.next().unwrap_or(host_arch());
            let variant = parts.next().map(str::to_string);
            StageOut {
                layers: vec![],
                config: ImageConfig {
                    architecture: arch.into(),
                    os: os.into(),
                    variant,
                    ..Default::default()
                },
                key: key_of(&["scratch"]),
            }
        } else if let Some(s) = self.stage_by_ref(&f.image).filter(|_| {
            let lower = f.image.to_ascii_lowercase();
            self.bf.stages[..idx]
                .iter()
                .any(|s| s.name.as_deref() == Some(lower.as_str()))
        }) {
            s.clone()
        } else {
            let mut opts = self.pull_options();
            if let Some(p) = &f.platform {
                opts.platform = Some(p.clone());
            }
            let img = registry::ensure_image(self.store, &f.image, &opts).map_err(|source| {
                BuildError::Base {
                    at: at.clone(),
                    image: f.image.clone(),
                    source,
                }
            })?;
            self.image_out(&img)?
        };
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
        // ONBUILD triggers of the base run first; the new image does not inherit them.
        let triggers = base.config.config.on_build.take().unwrap_or_default();
        let mut sr = StageRun {
            out: base,
            env,
            st: StageState::default(),
        };
        for t in triggers {
            let parsed = boxfile::parse(&format!("FROM scratch\n{t}\n"), Path::new("ONBUILD"))
                .map_err(|e| BuildError::Invalid {
                    at: at.clone(),
                    why: format!("ONBUILD trigger {t:?} of the base image: {e}"),
                })?;
            for ins in parsed.stages[0].instructions.clone() {
                let ins = Located {
                    start_line: stage.from.start_line,
                    end_line: stage.from.start_line,
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

    fn cache_record_path(&self, key: &Digest) -> PathBuf {
        self.store
            .cache_dir()
            .join("build")
            .join(format!("{}.json", key.hex()))
    }

    fn cache_get(&self, key: &Digest) -> Option<CacheRecord> {
        if self.opts.no_cache {
            return None;
        }
        let data = fs::read(self.cache_record_path(key)).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&data).ok()?;
        match &rec.layer {
            Some(l) if !self.store.has_blob(&l.digest) => None,
            _ => Some(rec),
        }
    }

    fn cache_put(&self, key: &Digest, rec: &CacheRecord) {
        let p = self.cache_record_path(key);
        let dir = p.parent().expect("has parent");
        let _ = fs::create_dir_all(dir);
        let tmp = p.with_extension(format!("tmp-{}", run::spec::random_id()));
        if fs::write(&tmp, serde_json::to_vec(rec).expect("serialises")).is_ok() {
            let _ = fs::rename(&tmp, &p);
        }
    }

    /// One instruction. `counted`: shown as an `[n/N]` step (ONBUILD triggers are not).
    fn step(&mut self, sr: &mut StageRun, ins: &Located<Instruction>, counted: bool) -> Result<()> {
        let at = self.at(ins.start_line);
        let e = sr
            .env
            .step(&ins.node)
            .map_err(|source| BuildError::Expand {
                at: at.clone(),
                source,
            })?;
        let parent = sr.out.key.to_string();
        match &e.instruction {
            Instruction::Run(r) => {
                let args: Vec<String> = sr
                    .env
                    .run_args()
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let mounts = self.bind_mounts_key(r, &at)?;
                let key = key_of(&[
                    &parent,
                    "run",
                    &dump_instruction(&e.instruction),
                    &args.join("\n"),
                    &mounts,
                ]);
                let created_by = run_created_by(&e.instruction);
                self.layer_step(sr, ins, counted, key, created_by, |eng, sr| {
                    eng.exec_run(sr, ins, r)
                })
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let is_add = matches!(e.instruction, Instruction::Add(_));
                let content = self.copy_content_key(sr, ins, c, is_add)?;
                let key = key_of(&[
                    &parent,
                    "copy",
                    &dump_instruction(&e.instruction),
                    &sr.out.config.config.working_dir,
                    &content,
                ]);
                let created_by = dump_instruction(&e.instruction);
                self.layer_step(sr, ins, counted, key, created_by, |eng, sr| {
                    eng.exec_copy(sr, ins, c, is_add).map(Some)
                })
            }
            Instruction::Workdir(_) => {
                config::apply(&mut sr.out.config, &mut sr.st, &e.instruction).map_err(
                    |source| BuildError::Config {
                        at: at.clone(),
                        source,
                    },
                )?;
                let dir = sr.out.config.config.working_dir.clone();
                let key = key_of(&[&parent, "workdir", &dir]);
                let created_by = dump_instruction(&e.instruction);
                self.layer_step(sr, ins, counted, key, created_by, |eng, sr| {
                    eng.exec_workdir(sr, &dir, &at)
                })
            }
            Instruction::From(_) => unreachable!("FROM starts a stage"),
            other => {
                config::apply(&mut sr.out.config, &mut sr.st, other).map_err(|source| {
                    BuildError::Config {
                        at: at.clone(),
                        source,
                    }
                })?;
                if !matches!(other, Instruction::Arg(_)) {
                    // The time of the last layer step (or of the base): metadata alone does not
                    // make a rebuild differ.
                    let time = self
                        .sde
                        .clone()
                        .or_else(|| sr.out.config.created.clone())
                        .unwrap_or_else(|| self.created.clone());
                    sr.out
                        .config
                        .history
                        .push(history_entry(other, Some(time), true));
                }
                sr.out.key = key_of(&[&parent, "meta", &dump_instruction(other)]);
                if counted {
                    self.printer.step(&ins.original, false);
                }
                Ok(())
            }
        }
    }

    /// A step that may make a layer: served from the cache, or executed by `exec`.
    fn layer_step(
        &mut self,
        sr: &mut StageRun,
        ins: &Located<Instruction>,
        counted: bool,
        key: Digest,
        created_by: String,
        exec: impl FnOnce(&mut Self, &mut StageRun) -> Result<Option<LayerRef>>,
    ) -> Result<()> {
        let (layer, time) = match self.cache_get(&key) {
            Some(rec) => {
                if counted {
                    self.printer.step(&ins.original, true);
                }
                self.cached += 1;
                (
                    rec.layer,
                    rec.created.unwrap_or_else(|| self.created.clone()),
                )
            }
            None => {
                if counted {
                    self.printer.step(&ins.original, false);
                }
                let layer = exec(self, sr)?;
                self.executed += 1;
                self.cache_put(
                    &key,
                    &CacheRecord {
                        layer: layer.clone(),
                        created: Some(self.created.clone()),
                    },
                );
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
        sr.out.config.history.push(History {
            created: Some(time),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty,
        });
        sr.out.key = key;
        Ok(())
    }

    fn new_layer_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let tmp = self.store.tmp_dir();
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(|source| {
                FsError::Io {
                    op: "create temporary directory in",
                    path: tmp,
                    source,
                }
                .into()
            })
    }

    fn exec_workdir(&mut self, sr: &mut StageRun, dir: &str, at: &str) -> Result<Option<LayerRef>> {
        let lowers = Lowers::new(self.lowerdirs(&sr.out.layers)?);
        let rel = dir.trim_start_matches('/');
        if rel.is_empty() || lowers.metadata(rel).is_some_and(|m| m.is_dir()) {
            return Ok(None);
        }
        let work = self.new_layer_dir("workdir-")?;
        let tree = work.path().join("tree");
        fs::create_dir(&tree).map_err(fsview::io_err("create", &tree))?;
        copy::write_tree(&tree, &lowers, (0, 0), None, |dest| {
            let path = dest.resolve(&format!("{dir}/x"));
            dest.ensure_parents(&path)
        })
        .map_err(|source| BuildError::Copy {
            at: at.to_string(),
            what: "WORKDIR",
            source,
        })?;
        Ok(Some(fsview::commit_dir(
            self.store,
            &tree,
            self.opts.source_date_epoch,
        )?))
    }

    fn filter_for<'f>(&'f self, c: &CopyInstr, from_context: bool) -> Filter<'f> {
        Filter {
            ignore: from_context.then_some(&self.ignore),
            excludes: (!c.excludes.is_empty())
                .then(|| IgnoreMatcher::parse(&c.excludes.join("\n"))),
        }
    }

    /// What a RUN's bind mounts contribute to its key: the content they show (context
    /// digest, or the stage's key / image digest), as BuildKit keys them. Cache mounts and
    /// secrets are left out on purpose.
    fn bind_mounts_key(&mut self, r: &RunInstr, at: &str) -> Result<String> {
        let mut out = String::new();
        for m in r.mounts.iter().filter(|m| m.kind == MountType::Bind) {
            let source = m.source.clone().unwrap_or_else(|| ".".into());
            match &m.from {
                Some(from) => {
                    if let Some(s) = self.stage_by_ref(from) {
                        out.push_str(&format!("bind stage {} {source}\n", s.key));
                    } else {
                        let img = registry::ensure_image(self.store, from, &self.pull_options())
                            .map_err(|e| BuildError::Base {
                                at: at.to_string(),
                                image: from.clone(),
                                source: e,
                            })?;
                        out.push_str(&format!(
                            "bind image {} {source}\n",
                            img.manifest_desc.digest
                        ));
                    }
                }
                None => {
                    let filter = Filter {
                        ignore: Some(&self.ignore),
                        excludes: None,
                    };
                    let Some(h) = self.hasher.as_mut() else {
                        return Err(BuildError::Invalid {
                            at: at.to_string(),
                            why: "RUN --mount=type=bind from the context, but there is no \
                                  context"
                                .into(),
                        });
                    };
                    let d = copy::context_digest(h, std::slice::from_ref(&source), &filter)
                        .map_err(|e| BuildError::Copy {
                            at: at.to_string(),
                            what: "RUN --mount=type=bind",
                            source: e,
                        })?;
                    out.push_str(&format!("bind context {source} {d}\n"));
                }
            }
        }
        Ok(out)
    }

    /// What the sources of a COPY/ADD contribute to its key.
    fn copy_content_key(
        &mut self,
        _sr: &StageRun,
        ins: &Located<Instruction>,
        c: &CopyInstr,
        is_add: bool,
    ) -> Result<String> {
        let at = self.at(ins.start_line);
        let what = if is_add { "ADD" } else { "COPY" };
        if let Some(from) = &c.from {
            if let Some(s) = self.stage_by_ref(from) {
                return Ok(format!("stage {}", s.key));
            }
            let img = registry::ensure_image(self.store, from, &self.pull_options()).map_err(
                |source| BuildError::Base {
                    at: at.clone(),
                    image: from.clone(),
                    source,
                },
            )?;
            return Ok(format!("image {}", img.manifest_desc.digest));
        }
        let local: Vec<String> = c
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Local)
            .map(|s| s.path.clone())
            .collect();
        self.clear_downloads();
        let mut remote = String::new();
        for s in &c.sources {
            match s.kind {
                SourceKind::Git => {
                    let co = super::git::fetch(&s.path, &self.store.tmp_dir()).map_err(|e| {
                        BuildError::Invalid {
                            at: at.clone(),
                            why: e.to_string(),
                        }
                    })?;
                    remote.push_str(&format!(
                        "git {} {} keep-git-dir={:?}\n",
                        s.path, co.commit, c.keep_git_dir
                    ));
                    self.checkouts.push(co);
                }
                SourceKind::Url => {
                    let d =
                        super::fetch::fetch(&s.path, &self.store.tmp_dir(), c.checksum.as_deref())
                            .map_err(|e| BuildError::Invalid {
                                at: at.clone(),
                                why: e.to_string(),
                            })?;
                    remote.push_str(&format!("url {} {}\n", s.path, d.digest));
                    self.downloads.push(d);
                }
                _ => {}
            }
        }
        if local.is_empty() {
            return Ok(remote);
        }
        let filter = Filter {
            ignore: Some(&self.ignore),
            excludes: (!c.excludes.is_empty())
                .then(|| IgnoreMatcher::parse(&c.excludes.join("\n"))),
        };
        let Some(h) = self.hasher.as_mut() else {
            return Err(BuildError::Invalid {
                at,
                why: format!(
                    "{what} from the build context, but the Boxfile came on stdin with no \
                     context (give a context directory)"
                ),
            });
        };
        let content = copy::context_digest(h, &local, &filter)
            .map_err(|source| BuildError::Copy { at, what, source })?;
        Ok(remote + &content)
    }

    fn clear_downloads(&mut self) {
        for d in self.downloads.drain(..) {
            let _ = fs::remove_file(&d.path);
        }
        self.checkouts.clear();
    }

    fn exec_copy(
        &mut self,
        sr: &mut StageRun,
        ins: &Located<Instruction>,
        c: &CopyInstr,
        is_add: bool,
    ) -> Result<LayerRef> {
        let at = self.at(ins.start_line);
        let what = if is_add { "ADD" } else { "COPY" };
        let cerr = |source| BuildError::Copy {
            at: at.clone(),
            what,
            source,
        };
        let lowers = Lowers::new(self.lowerdirs(&sr.out.layers)?);
        // The source tree: the context, or a merged view of a stage or image.
        let mut _mount = None;
        let (root, from_context) = match &c.from {
            Some(from) => {
                let layers = match self.stage_by_ref(from) {
                    Some(s) => s.layers.clone(),
                    None => {
                        let img = registry::ensure_image(self.store, from, &self.pull_options())
                            .map_err(|source| BuildError::Base {
                                at: at.clone(),
                                image: from.clone(),
                                source,
                            })?;
                        self.image_out(&img)?.layers
                    }
                };
                let m = MergedMount::new(&self.lowerdirs(&layers)?, &self.store.tmp_dir())?;
                let p = m.path().to_path_buf();
                _mount = Some(m);
                (p, false)
            }
            None => (
                self.opts
                    .context
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/nonexistent")),
                true,
            ),
        };
        let filter = self.filter_for(c, from_context);
        let owner = match &c.chown {
            Some(s) => copy::resolve_chown(s, &lowers).map_err(cerr)?,
            None => (0, 0),
        };
        let chmod = c
            .chmod
            .as_deref()
            .map(copy::parse_chmod)
            .transpose()
            .map_err(cerr)?;
        let work = self.new_layer_dir("copy-")?;
        let tree = work.path().join("tree");
        fs::create_dir(&tree).map_err(fsview::io_err("create", &tree))?;
        let wd = sr.out.config.config.working_dir.clone();
        copy::write_tree(&tree, &lowers, owner, chmod, |dest| {
            self.fill_copy(dest, c, &root, &filter, &wd, is_add)
        })
        .map_err(cerr)?;
        drop(_mount);
        Ok(fsview::commit_dir(
            self.store,
            &tree,
            self.opts.source_date_epoch,
        )?)
    }

    /// The body of a COPY/ADD: every source into `dest`, by Docker's destination rules.
    fn fill_copy(
        &self,
        dest: &mut Dest<&mut StreamWriter>,
        c: &CopyInstr,
        root: &Path,
        filter: &Filter,
        wd: &str,
        is_add: bool,
    ) -> std::result::Result<(), CopyError> {
        let raw = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!("{}/{}", if wd.is_empty() { "/" } else { wd }, c.dest)
        };
        let dir_hint = raw.ends_with('/') || raw.ends_with("/.") || c.dest == ".";
        let mut d = dest.resolve(&raw);
        // A destination that is a symlink to a directory in the image (`/bin -> usr/bin`)
        // is written through, never replaced by a directory.
        let through = dest.resolve(&format!("{d}/.x"));
        let through = through.strip_suffix("/.x").unwrap_or("/").to_string();
        if through != d && dest.is_dir(&through) {
            d = if through.is_empty() {
                "/".into()
            } else {
                through
            };
        }
        let mut selected: Vec<(String, bool)> = vec![]; // (rel or heredoc name, is_heredoc)
        let mut downloads = 0..self.downloads.len();
        let mut checkouts = 0..self.checkouts.len();
        for s in &c.sources {
            match s.kind {
                SourceKind::Url => {
                    let i = downloads
                        .next()
                        .expect("downloaded while computing the key");
                    selected.push((format!("url:{i}"), false));
                }
                SourceKind::Git => {
                    let i = checkouts.next().expect("fetched while computing the key");
                    selected.push((format!("git:{i}"), false));
                }
                SourceKind::Heredoc => selected.push((
                    s.path
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .to_string(),
                    true,
                )),
                _ => {
                    for rel in copy::select(root, &s.path, filter)? {
                        selected.push((rel, false));
                    }
                }
            }
        }
        let multiple = selected.len() > 1;
        // --parents keeps each source's path below the destination directory.
        let parents = c.parents == Some(true);
        let into_dir = dir_hint || multiple || parents || dest.is_dir(&d);
        if multiple && !dir_hint && !dest.is_dir(&d) {
            return Err(CopyError::DestNotDir);
        }
        let join = |name: &str| {
            if d == "/" {
                format!("/{name}")
            } else {
                format!("{d}/{name}")
            }
        };
        for (rel, heredoc) in selected {
            if heredoc {
                let name = rel.trim_matches(['"', '\'']);
                let h = c
                    .heredocs
                    .iter()
                    .find(|h| h.name == name)
                    .ok_or_else(|| CopyError::NoHeredoc(name.to_string()))?;
                let target = if into_dir { join(name) } else { d.clone() };
                dest.ensure_parents(&target)?;
                dest.write_content(&target, h.content.as_bytes())?;
                continue;
            }
            if let Some(i) = rel.strip_prefix("git:") {
                // A repository: its tree (or `#ref:subdir`) goes into the destination
                // directory, without .git unless --keep-git-dir.
                let co = &self.checkouts[i.parse::<usize>().expect("checkout index")];
                let keep_git = c.keep_git_dir == Some(true);
                let no_git = IgnoreMatcher::parse(".git\n");
                let filter = Filter {
                    ignore: (!keep_git).then_some(&no_git),
                    excludes: None,
                };
                let sub = copy::scoped(co.dir.path(), &co.subdir);
                dest.copy_tree(co.dir.path(), &sub, &d, &filter)?;
                continue;
            }
            if let Some(i) = rel.strip_prefix("url:") {
                // A download: 0600 unless --chmod, named after the URL path (Docker's rule).
                let dl = &self.downloads[i.parse::<usize>().expect("download index")];
                let target = if into_dir { join(&dl.name) } else { d.clone() };
                let meta = fs::metadata(&dl.path).map_err(|e| CopyError::Io {
                    op: "stat",
                    path: dl.path.clone(),
                    source: e,
                })?;
                let chmod = dest.chmod;
                dest.chmod = Some(chmod.unwrap_or(0o600));
                dest.ensure_parents(&target)?;
                dest.copy_entry(&dl.path, &meta, &target)?;
                dest.chmod = chmod;
                continue;
            }
            // Read through symlinks only inside the source tree (see copy::scoped).
            let resolved = copy::scoped(root, &rel);
            let src = root.join(&resolved);
            let meta = fs::symlink_metadata(&src).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    CopyError::NotFound(rel.clone())
                } else {
                    CopyError::Io {
                        op: "stat",
                        path: src.clone(),
                        source: e,
                    }
                }
            })?;
            if meta.is_dir() {
                let to = if parents && !rel.is_empty() {
                    join(&rel)
                } else {
                    d.clone()
                };
                dest.copy_tree(root, &resolved, &to, filter)?;
                continue;
            }
            if is_add && meta.is_file() && dest.extract_archive(&src, &d)? {
                continue;
            }
            let base = Path::new(&rel)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let target = if parents {
                join(&rel)
            } else if into_dir {
                join(&base)
            } else {
                d.clone()
            };
            dest.ensure_parents(&target)?;
            dest.copy_entry(&src, &meta, &target)?;
        }
        Ok(())
    }

    fn exec_run(
        &mut self,
        sr: &mut StageRun,
        ins: &Located<Instruction>,
        r: &RunInstr,
    ) -> Result<Option<LayerRef>> {
        let at = self.at(ins.start_line);
        if r.security.as_deref() == Some("insecure") {
            // Extra privileges (BuildKit's entitlement) are never granted in this sandbox.
            return Err(BuildError::Unsupported {
                at,
                what: "RUN --security=insecure".into(),
            });
        }
        let cfg = &sr.out.config.config;
        let argv = run_argv(cfg, r);
        let mut lowerdirs = self.lowerdirs(&sr.out.layers)?;
        let work = self.new_layer_dir("run-")?;
        if lowerdirs.is_empty() {
            let empty = work.path().join("empty");
            fs::create_dir(&empty).map_err(fsview::io_err("create", &empty))?;
            lowerdirs.push(empty);
        }
        let lowers = Lowers::new(lowerdirs.clone());
        let upper = work.path().join("upper");
        let wdir = work.path().join("work");
        for d in [&upper, &wdir] {
            fs::create_dir(d).map_err(fsview::io_err("create", d))?;
        }
        let mut spec = SandboxSpec::new(
            RootfsSource::Overlay {
                lowerdirs,
                upper: UpperDir::Dir {
                    upper: upper.clone(),
                    work: wdir,
                },
            },
            argv.clone(),
        );
        let mut env = cfg.env.clone();
        for (k, v) in sr.env.run_args() {
            if cfg.env_get(&k).is_none() {
                env.push(format!("{k}={v}"));
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
            Some(n) => n.parse().map_err(|_| BuildError::Invalid {
                at: at.clone(),
                why: format!("RUN --network={n}: expected default, none or host"),
            })?,
            None => self.opts.network,
        };
        if spec.network == NetworkMode::Bridge {
            // RUN's "default" network is the host's, as with rootless BuildKit.
            spec.network = NetworkMode::Host;
        }
        let mut stubs: Vec<String> = [
            "proc",
            "sys",
            "dev",
            "etc/hostname",
            "etc/hosts",
            "etc/resolv.conf",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut mounts_keep = vec![];
        for m in &r.mounts {
            let (spec_m, keep) = self.run_mount(m, &at, &mut env, &work)?;
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
        spec.env = env;
        let code = {
            let _cap = Capture::start(self.printer.prefix(), self.printer.quiet())
                .map_err(fsview::io_err("redirect output of", Path::new("RUN")))?;
            run::run(&spec)
        }
        .map_err(|source| BuildError::Sandbox {
            at: at.clone(),
            source,
        })?;
        drop(mounts_keep);
        if code != 0 {
            let hint = match run::userns::state() {
                run::userns::ToolUserns::Remapped(m) if m.single => format!(
                    "\n  note: only container root is mapped (no subordinate id range), so \
                     chown and non-root users fail. Fix: sudo usermod --add-subuids \
                     100000-165535 --add-subgids 100000-165535 {}",
                    std::env::var("USER").unwrap_or_else(|_| "$USER".into())
                ),
                _ => String::new(),
            };
            return Err(BuildError::Run {
                at,
                command: command_text(r),
                code,
                hint,
            });
        }
        remove_stubs(&upper, &lowers, &stubs);
        // A step that changed nothing adds no layer (history `empty_layer`), as BuildKit
        // drops empty diffs.
        if fs::read_dir(&upper).map_or(true, |mut d| d.next().is_none()) {
            return Ok(None);
        }
        Ok(Some(fsview::commit_dir(
            self.store,
            &upper,
            self.opts.source_date_epoch,
        )?))
    }

    /// The sandbox mount for one `RUN --mount`, plus anything that must live until the
    /// command has run (a merged view, a secret copy).
    fn run_mount(
        &mut self,
        m: &Mount,
        at: &str,
        env: &mut Vec<String>,
        work: &tempfile::TempDir,
    ) -> Result<(Option<MountSpec>, Vec<MergedMount>)> {
        let bad = |why: String| BuildError::Invalid {
            at: at.to_string(),
            why,
        };
        let target = m.target.clone();
        match m.kind {
            MountType::Cache => {
                let target =
                    target.ok_or_else(|| bad("RUN --mount=type=cache needs target=".into()))?;
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let dir = self
                    .store
                    .cache_dir()
                    .join("mounts")
                    .join(&Digest::of_bytes(id.as_bytes()).hex()[..32]);
                if !dir.exists() {
                    let tmp = dir.with_extension(format!("tmp-{}", run::spec::random_id()));
                    fs::create_dir_all(&tmp).map_err(fsview::io_err("create", &tmp))?;
                    let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
                    let r = copy::own_dir(&tmp, owner, m.mode.unwrap_or(0o755));
                    if let Err(source) = r {
                        fsview::remove_tree(&tmp);
                        return Err(BuildError::Copy {
                            at: at.to_string(),
                            what: "RUN --mount=type=cache",
                            source,
                        });
                    }
                    if fs::rename(&tmp, &dir).is_err() {
                        fsview::remove_tree(&tmp);
                    }
                }
                Ok((
                    Some(MountSpec::Bind {
                        source: dir,
                        target: target.into(),
                        read_only: m.readonly.unwrap_or(false),
                    }),
                    vec![],
                ))
            }
            MountType::Tmpfs => {
                let target =
                    target.ok_or_else(|| bad("RUN --mount=type=tmpfs needs target=".into()))?;
                let options = m.size.as_ref().map(|s| format!("size={s}"));
                Ok((
                    Some(MountSpec::Tmpfs {
                        target: target.into(),
                        options,
                    }),
                    vec![],
                ))
            }
            MountType::Bind => {
                let target =
                    target.ok_or_else(|| bad("RUN --mount=type=bind needs target=".into()))?;
                let rel =
                    boxfile::ignore::clean(&format!("/{}", m.source.as_deref().unwrap_or(".")));
                let rel = rel.trim_start_matches('/').to_string();
                let (root, keep) = match &m.from {
                    Some(from) => {
                        let layers = match self.stage_by_ref(from) {
                            Some(s) => s.layers.clone(),
                            None => {
                                let img =
                                    registry::ensure_image(self.store, from, &self.pull_options())
                                        .map_err(|source| BuildError::Base {
                                            at: at.to_string(),
                                            image: from.clone(),
                                            source,
                                        })?;
                                self.image_out(&img)?.layers
                            }
                        };
                        let mm =
                            MergedMount::new(&self.lowerdirs(&layers)?, &self.store.tmp_dir())?;
                        (mm.path().to_path_buf(), vec![mm])
                    }
                    None => (
                        self.opts.context.clone().ok_or_else(|| {
                            bad(
                                "RUN --mount=type=bind from the context, but there is no context"
                                    .into(),
                            )
                        })?,
                        vec![],
                    ),
                };
                let rel = copy::scoped(&root, &rel);
                let mut source = root.join(&rel);
                let rw = m.readonly == Some(false);
                let from_context = m.from.is_none();
                // A private copy when the step may write (writes are discarded, as in
                // BuildKit: never to the context or the other stage), or when the context has
                // an ignore file (ignored paths are not part of the context, so the step must
                // not see them either). Otherwise the source is bound read-only as it is.
                if rw || (from_context && !self.ignore.is_empty()) {
                    let copy = work.path().join(format!("bind-{}", run::spec::random_id()));
                    fs::create_dir(&copy).map_err(fsview::io_err("create", &copy))?;
                    let none = Lowers::default();
                    let filter = Filter {
                        ignore: from_context.then_some(&self.ignore),
                        excludes: None,
                    };
                    let meta = fs::metadata(&source).map_err(fsview::io_err("stat", &source))?;
                    let r = copy::write_tree(&copy, &none, (0, 0), None, |dest| {
                        if meta.is_dir() {
                            dest.copy_tree(&root, &rel, "/tree", &filter)
                        } else {
                            dest.copy_entry(&source, &meta, "/tree")
                        }
                    });
                    r.map_err(|source| BuildError::Copy {
                        at: at.to_string(),
                        what: "RUN --mount=type=bind",
                        source,
                    })?;
                    source = copy.join("tree");
                }
                Ok((
                    Some(MountSpec::Bind {
                        source,
                        target: target.into(),
                        read_only: !rw,
                    }),
                    keep,
                ))
            }
            MountType::Secret => {
                let id = m
                    .id
                    .clone()
                    .or_else(|| {
                        target
                            .as_deref()
                            .and_then(|t| Path::new(t).file_name())
                            .map(|n| n.to_string_lossy().to_string())
                    })
                    .ok_or_else(|| bad("RUN --mount=type=secret needs id= or target=".into()))?;
                let value =
                    match self.opts.secrets.get(&id) {
                        Some(SecretSource::File(p)) => Some(fs::read(p).map_err(|e| {
                            bad(format!("secret {id:?}: read {}: {e}", p.display()))
                        })?),
                        Some(SecretSource::Env(v)) => {
                            std::env::var_os(v).map(|s| s.as_encoded_bytes().to_vec())
                        }
                        None => None,
                    };
                let Some(value) = value else {
                    if m.required == Some(true) {
                        return Err(BuildError::Secret {
                            at: at.to_string(),
                            id,
                        });
                    }
                    return Ok((None, vec![]));
                };
                if let Some(var) = &m.env {
                    env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                    if target.is_none() {
                        return Ok((None, vec![]));
                    }
                }
                // A private copy outside the layer: the secret is bound read-only and never
                // lands in the upper dir.
                let dir = work
                    .path()
                    .join(format!("secret-{}", run::spec::random_id()));
                fs::create_dir(&dir).map_err(fsview::io_err("create", &dir))?;
                // Where only container root is mapped the secret stays root's, as before.
                let owner = match run::userns::content_policy().ownership {
                    crate::layer::Ownership::Ignore => (0, 0),
                    crate::layer::Ownership::Preserve => (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
                };
                let mode = Some(m.mode.unwrap_or(0o400));
                copy::write_tree(&dir, &Lowers::default(), owner, mode, |d| {
                    d.write_content("/secret", &value)
                })
                .map_err(|source| BuildError::Copy {
                    at: at.to_string(),
                    what: "RUN --mount=type=secret",
                    source,
                })?;
                let file = dir.join("secret");
                let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                Ok((
                    Some(MountSpec::Bind {
                        source: file,
                        target: target.into(),
                        read_only: true,
                    }),
                    vec![],
                ))
            }
            MountType::Ssh => Err(BuildError::Unsupported {
                at: at.to_string(),
                what: "RUN --mount=type=ssh".into(),
            }),
        }
    }

    /// `--cache-from REF`: pull the cache image and record its steps locally. A cache that
    /// cannot be imported only costs speed, so failures are warnings, as in BuildKit.
    fn import_cache(&mut self, r: &str) {
        let mut opts = self.pull_options();
        opts.policy = registry::PullPolicy::Always;
        self.printer.line(&format!("importing cache from {r}"));
        let img = match registry::ensure_image(self.store, r, &opts) {
            Ok(img) => img,
            Err(err) => {
                self.printer
                    .line(&format!("warning: cannot import cache from {r}: {err}"));
                return;
            }
        };
        let Some(records) = img.config.extra.get(CACHE_KEY).and_then(|v| v.as_object()) else {
            self.printer
                .line(&format!("warning: {r} is not a boxbuild cache image"));
            return;
        };
        for (k, v) in records {
            let (Ok(key), Ok(layer)) = (
                Digest::from_hex(k),
                serde_json::from_value::<Option<LayerRef>>(v.clone()),
            ) else {
                continue;
            };
            if layer
                .as_ref()
                .is_none_or(|l| self.store.has_blob(&l.digest))
            {
                self.cache_put(
                    &key,
                    &CacheRecord {
                        layer,
                        created: None,
                    },
                );
            }
        }
    }

    /// `--cache-to REF`: push an image whose layers are the layers this build's steps made or
    /// reused and whose config maps each step key to its layer.
    fn export_cache(&mut self, r: &str) -> Result<()> {
        self.printer.line(&format!("exporting cache to {r}"));
        let mut layers: Vec<LayerRef> = vec![];
        let mut records = serde_json::Map::new();
        for (k, l) in &self.visited {
            if let Some(l) = l
                && !layers.iter().any(|x| x.digest == l.digest)
            {
                layers.push(l.clone());
            }
            records.insert(
                k.hex().to_string(),
                serde_json::to_value(l).expect("serialises"),
            );
        }
        let mut cfg = ImageConfig {
            architecture: host_arch().into(),
            os: "linux".into(),
            ..Default::default()
        };
        cfg.extra
            .insert(CACHE_KEY.into(), serde_json::Value::Object(records));
        let out = StageOut {
            layers,
            config: cfg,
            key: key_of(&["cache"]),
        };
        let local: Reference =
            format!("localhost/boxbuild-cache-export:{}", run::spec::random_id())
                .parse()
                .expect("valid reference");
        self.write_manifest(out, std::slice::from_ref(&local), false, Some(rfc3339(0)))?;
        let progress = if self.printer.quiet() {
            registry::Progress::Quiet
        } else {
            registry::Progress::Plain
        };
        let pushed = registry::push(self.store, &local.to_string(), Some(r), progress);
        let _ = self.store.remove_tag(&local);
        pushed.map_err(|source| BuildError::Push {
            name: r.to_string(),
            source,
        })?;
        Ok(())
    }

    fn write_image(&mut self, out: StageOut, tags: &[Reference]) -> Result<(Digest, Digest)> {
        let created = self
            .sde
            .clone()
            .or_else(|| out.config.created.clone())
            .unwrap_or_else(|| self.created.clone());
        self.write_manifest(out, tags, true, Some(created))
    }

    fn write_manifest(
        &mut self,
        mut out: StageOut,
        tags: &[Reference],
        with_labels: bool,
        created: Option<String>,
    ) -> Result<(Digest, Digest)> {
        let docker = self.opts.format == ImageFormat::Docker;
        if with_labels {
            for (k, v) in &self.opts.labels {
                out.config.config.labels.insert(k.clone(), v.clone());
            }
        }
        let cfg = &mut out.config;
        cfg.created = created;
        if cfg.architecture.is_empty() {
            cfg.architecture = host_arch().into();
        }
        if cfg.os.is_empty() {
            cfg.os = "linux".into();
        }
        cfg.rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: out.layers.iter().map(|l| l.diff_id.to_string()).collect(),
        };
        let cfg_bytes = serde_json::to_vec(&cfg).expect("config serialises");
        let cfg_digest = self.store.put_blob(&cfg_bytes)?;
        let (manifest_type, config_type) = if docker {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        } else {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        };
        let layers = out
            .layers
            .iter()
            .map(|l| {
                Descriptor::new(
                    &layer_media_type(&l.media_type, docker),
                    l.digest.clone(),
                    l.size,
                )
            })
            .collect();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest_type.into()),
            config: Descriptor::new(config_type, cfg_digest.clone(), cfg_bytes.len() as u64),
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let m_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let m_digest = self.store.put_blob(&m_bytes)?;
        let desc = Descriptor::new(manifest_type, m_digest.clone(), m_bytes.len() as u64);
        if tags.is_empty() {
            self.store.add_untagged(&desc)?;
        }
        for t in tags {
            self.store.set_tag(t, &desc)?;
        }
        Ok((cfg_digest, m_digest))
    }
}

/// The media type a layer gets in the written manifest (the bytes are the same).
fn layer_media_type(mt: &str, docker: bool) -> String {
    let gzip = matches!(mt, media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP)
        || mt.ends_with("tar.gzip")
        || mt.ends_with("tar+gzip");
    let plain = mt == media::OCI_LAYER_TAR || mt == "application/vnd.docker.image.rootfs.diff.tar";
    match (docker, gzip, plain) {
        (true, true, _) => media::DOCKER_LAYER_GZIP.into(),
        (true, _, true) => "application/vnd.docker.image.rootfs.diff.tar".into(),
        (false, true, _) => media::OCI_LAYER_GZIP.into(),
        (false, _, true) => media::OCI_LAYER_TAR.into(),
        _ => mt.to_string(),
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
fn remove_stubs(upper: &Path, lowers: &Lowers, stubs: &[String]) {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{FileStat, SFlag};
    use nix::unistd::UnlinkatFlags;
    let Ok(top) = fs::File::open(upper) else {
        return;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let kind = |st: &FileStat| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    for s in stubs {
        let mut rel = s.trim_matches('/').to_string();
        let mut removed_child = false;
        while !rel.is_empty() {
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            let dir = if parent.is_empty() {
                top.try_clone().map(std::os::fd::OwnedFd::from)
            } else {
                nix::fcntl::openat2(&top, parent, how).map_err(std::io::Error::from)
            };
            let Ok(dir) = dir else { break };
            let Ok(st) =
                nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                break;
            };
            let is_dir = kind(&st) == SFlag::S_IFDIR;
            let unlink = |flags| nix::unistd::unlinkat(&dir, name, flags).is_ok();
            let removed = match lowers.metadata(&rel) {
                // Not in the image: the sandbox made it; an empty file or directory goes.
                None if is_dir => unlink(UnlinkatFlags::RemoveDir),
                None if kind(&st) == SFlag::S_IFREG && st.st_size == 0 => {
                    unlink(UnlinkatFlags::NoRemoveDir)
                }
                None => false,
                // In the image: a parent the overlay copied up only to hold a stub. Once
                // empty, it goes too when it still matches the image (not opaque, same mode
                // and owner); otherwise the layer would carry a spurious `/etc`.
                Some(lm) => {
                    use std::os::unix::fs::MetadataExt;
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
            };
            if !removed {
                break;
            }
            removed_child = true;
            rel = parent.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_needed_stages_are_built() {
        let bf = boxfile::parse(
            "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\nFROM scratch AS c\nFROM b\n",
            Path::new("Boxfile"),
        )
        .unwrap();
        let g = GlobalScope::new(&bf, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(needed_stages(&bf, &g, 3), vec![0, 1, 3]);
        assert_eq!(needed_stages(&bf, &g, 2), vec![2]);
    }

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
