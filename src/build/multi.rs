//! `--platform a,b`: one build per platform, one image index over them.
//!
//! [`build`] checks everything it can before any step runs — every platform parses, a
//! platform whose RUN steps would need an emulator has one registered, the outputs make
//! sense with several platforms — then runs the ordinary engine ([`super::engine::build`])
//! once per platform on the same store and build cache, the platforms at the same time
//! ([`build_all`]: one thread per platform, at most [`platform_jobs`] at once;
//! `BOX_BUILD_PLATFORM_JOBS=1` builds them one after the other, in the order given). Each
//! platform's build stores its config and manifest but records nothing in `index.json`
//! ([`Export::IndexMember`]); the index written last ([`super::image_out::write_index`]) is
//! what `-t` tags, so a failure on any platform leaves every tag as it was. The first
//! platform to fail stops the others at their next step, and its error is the one reported.
//!
//! Sharing: a stage whose FROM names a fixed platform (`--platform=$BUILDPLATFORM`) has the
//! same cache keys in every platform's build (its base manifest, its instructions and ARGs
//! are the same). The builds share a [`Shared`]: one slot per step key, locked while the
//! step is looked up and made, so the first build to reach a shared step makes it and the
//! others wait for it and take its record (a hit, also under `--no-cache`: it was made in
//! this build). A stage that uses `TARGETARCH` and friends keys differently per platform,
//! as it must, and runs in parallel.
//!
//! Output: each platform's progress lines carry its platform (`[linux/arm64 2/4] RUN …`);
//! RUN output reaches the printer through each step's own pipe
//! ([`super::output::Capture`]), and lines are written whole, so two platforms' lines
//! interleave but never mix. Two live TTY views cannot share a terminal: with several
//! platforms at once, `--progress=tty` prints plain lines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::cache::CacheRecord;
use super::error::{BuildError, Result};
use super::export::Export;
use super::{BuildOptions, BuildResult, ImageFormat};
use crate::boxfile::{self, GlobalScope, Instruction};
use crate::digest::Digest;
use crate::image::{Descriptor, Platform};
use crate::run::ToolContext;
use crate::store::Store;

/// What a multi-platform build made.
#[derive(Debug, Clone)]
pub struct MultiResult {
    /// The index's descriptor (an OCI index, or a Docker manifest list with
    /// `--format docker`); its digest is the build's ID.
    pub index: Descriptor,
    /// Each platform with its own build's result (image ID, manifest), in the order given.
    pub platforms: Vec<(Platform, BuildResult)>,
    /// Whether the index was recorded in the store (no `-o`, or an image output among them).
    pub stored: bool,
    /// The names the index was tagged with, normalised.
    pub names: Vec<String>,
    pub executed: usize,
    pub cached: usize,
}

/// The `--platform` values (each may be a comma-separated list, as buildx takes them) as
/// platforms in BuildKit's normal form, in order, duplicates dropped (`linux/arm64/v8` is
/// `linux/arm64`). An empty entry or one that does not parse is an error naming it.
pub fn parse_platforms(values: &[String]) -> Result<Vec<Platform>> {
    let mut out: Vec<Platform> = vec![];
    for v in values.iter().flat_map(|v| v.split(',')) {
        let p = super::plan::parse_platform(v.trim()).map_err(|why| BuildError::Platform {
            value: v.to_string(),
            why,
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The directory a platform's `-o type=local` files go to under DEST, as buildx names it
/// (`linux_amd64`, `linux_arm_v7`).
pub fn platform_dir(p: &Platform) -> String {
    p.to_string().replace('/', "_")
}

/// What the builds of one multi-platform build share (see the module documentation).
#[derive(Default)]
pub struct Shared {
    /// One slot per step key: held while the step is looked up and made, then holding the
    /// record it made, so a step two platforms share runs once in this build.
    steps: Mutex<HashMap<Digest, Arc<Mutex<Option<CacheRecord>>>>>,
    /// One slot per image and platform pulled (a base, `--from=IMAGE`): two platforms whose
    /// stages start from the same image (`FROM --platform=$BUILDPLATFORM`) pull and unpack it
    /// once, the second finding it stored, instead of both downloading and unpacking it at
    /// once.
    pulls: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Set when a platform's build failed: the others stop at their next step.
    stopped: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stopped", &self.stopped())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The slot of step `key` (made on first use).
    pub fn slot(&self, key: &Digest) -> Arc<Mutex<Option<CacheRecord>>> {
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        steps.entry(key.clone()).or_default().clone()
    }

    /// The slot of pulling `image` for `platform` (made on first use).
    pub fn pull_slot(&self, image: &str, platform: Option<&str>) -> Arc<Mutex<()>> {
        let key = format!("{image}\n{}", platform.unwrap_or_default());
        let mut pulls = self.pulls.lock().unwrap_or_else(PoisonError::into_inner);
        pulls.entry(key).or_default().clone()
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// What marks one platform's build as part of a multi-platform build
/// ([`BuildOptions::member`]).
#[derive(Debug, Clone)]
pub struct Member {
    /// The platform, shown in its progress lines.
    pub tag: String,
    pub shared: Arc<Shared>,
}

/// How many platforms build at once: `BOX_BUILD_PLATFORM_JOBS` when set (1: one after the
/// other), else the CPUs this process may use; never more than `n`.
pub fn platform_jobs(n: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let asked = std::env::var("BOX_BUILD_PLATFORM_JOBS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|j| *j > 0);
    asked.unwrap_or(cpus).clamp(1, n.max(1))
}

/// Each platform's build, at most [`platform_jobs`] at once; the results in the order of
/// `platforms`. The first build to fail stops the others (at their next step), and its
/// error is the one returned.
fn build_all(
    store: &Store,
    opts: &BuildOptions,
    platforms: &[Platform],
    tool: &ToolContext,
) -> Result<Vec<(Platform, BuildResult)>> {
    let jobs = platform_jobs(platforms.len());
    let shared = Arc::new(Shared::default());
    let shown =
        opts.output != super::OutputMode::Quiet && opts.output != super::OutputMode::RawJson;
    if jobs > 1 && opts.output == super::OutputMode::Tty {
        eprintln!(
            "boxbuild: {jobs} platforms build at once, shown as plain lines \
             (BOX_BUILD_PLATFORM_JOBS=1 builds them one after the other, with the live view)"
        );
    }
    let results: Vec<Mutex<Option<Result<BuildResult>>>> =
        platforms.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let first_failed: Mutex<Option<usize>> = Mutex::new(None);
    let worker = || {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= platforms.len() || shared.stopped() {
                return;
            }
            let p = &platforms[i];
            if shown {
                eprintln!("#### platform {p} ({}/{})", i + 1, platforms.len());
            }
            let mut o = member_options(opts, p, i == 0);
            if jobs > 1 {
                if o.output == super::OutputMode::Tty {
                    // Two live views cannot share one terminal.
                    o.output = super::OutputMode::Plain;
                }
                // Any platform may reach a step first, so each imports the cache before its
                // steps (the second import finds the blobs stored and rewrites the records).
                o.cache_from = opts.cache_from.clone();
            }
            o.member = Some(Member {
                tag: p.to_string(),
                shared: shared.clone(),
            });
            let r = super::engine::build(store, &o, tool);
            if r.is_err() {
                let mut f = first_failed.lock().unwrap_or_else(PoisonError::into_inner);
                f.get_or_insert(i);
                shared.stop();
            }
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        }
    };
    std::thread::scope(|s| {
        for n in 1..jobs {
            // The main thread's stack size: the engine's tree walks recurse per directory
            // level, and a spawned thread's default (2 MiB) is a quarter of it.
            let spawned = std::thread::Builder::new()
                .name(format!("platform-{n}"))
                .stack_size(8 << 20)
                .spawn_scoped(s, worker);
            if spawned.is_err() {
                // No thread: this platform's share is built by the others.
                break;
            }
        }
        worker();
    });
    let mut results: Vec<Option<Result<BuildResult>>> = results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    let first_failed = first_failed
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = first_failed
        && let Some(Err(e)) = results[i].take()
    {
        return Err(e);
    }
    platforms
        .iter()
        .zip(results)
        .map(|(p, r)| {
            let r = r.expect("every platform was built")?;
            Ok((p.clone(), r))
        })
        .collect()
}

/// Build `opts` for each of `platforms` (two or more) and write one index over the results.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    platforms: &[Platform],
    tool: &ToolContext,
) -> Result<MultiResult> {
    check_outputs(opts)?;
    let bf = boxfile::parse(&opts.boxfile.text, &opts.boxfile.path)
        .map_err(|e| BuildError::Parse(Box::new(e)))?;
    // The index's names: `-t` and the image outputs' `name=`s, checked before any work.
    let mut tags = super::engine::parse_tags(&opts.tags)?;
    for o in &opts.outputs {
        if let Export::Image { names, .. } = o {
            tags.extend(super::engine::parse_tags(names)?);
        }
    }
    // Every platform's emulators before the first platform starts (each engine build checks
    // its own again, which costs a few reads).
    for p in platforms {
        for (sp, line) in emulated_runs(&bf, opts, p)? {
            crate::run::binfmt::check(&sp).map_err(|m| BuildError::Emulation {
                at: format!("{}:{line}", opts.boxfile.path.display()),
                source: Box::new(m),
            })?;
        }
    }
    let built = build_all(store, opts, platforms, tool)?;
    let (executed, cached) = built
        .iter()
        .fold((0, 0), |(e, c), (_, r)| (e + r.executed, c + r.cached));
    let docker = opts.format == ImageFormat::Docker;
    let record = opts.outputs.is_empty()
        || opts
            .outputs
            .iter()
            .any(|e| matches!(e, Export::Image { .. }));
    let members: Vec<(Platform, Descriptor)> = built
        .iter()
        .map(|(p, r)| (p.clone(), r.manifest.clone()))
        .collect();
    let index = super::image_out::write_index(store, &members, &tags, docker, record)?;
    let result = MultiResult {
        index,
        platforms: built,
        stored: record,
        names: if record {
            tags.iter().map(|t| t.to_string()).collect()
        } else {
            vec![]
        },
        executed,
        cached,
    };
    write_files(opts, tool, &result)?;
    Ok(result)
}

/// `--iidfile` (the index digest) and `--metadata-file` (the index, as buildx reports a
/// multi-platform build).
fn write_files(opts: &BuildOptions, tool: &ToolContext, r: &MultiResult) -> Result<()> {
    let caller = super::caller::Caller::of(tool);
    let write = |f: &PathBuf, bytes: &[u8]| {
        caller
            .run(|| crate::atomic::write(f, bytes, 0o644))
            .map_err(|source| BuildError::Write {
                path: f.clone(),
                source,
            })
    };
    if let Some(f) = &opts.iidfile {
        write(f, r.index.digest.to_string().as_bytes())?;
    }
    if let Some(f) = &opts.metadata_file {
        write(f, metadata(r).as_bytes())?;
    }
    Ok(())
}

/// `--metadata-file` of a multi-platform build: buildx writes the index as
/// `containerimage.descriptor` and `containerimage.digest`, and no config digest (there is
/// one per platform).
pub fn metadata(r: &MultiResult) -> String {
    super::export::metadata_json(r.stored.then_some((&r.index, None)), &r.names)
}

/// What several platforms cannot share: one tar stream (buildx splits it into per-platform
/// directories inside; not done here) and `--cache-to` (each platform's records would
/// replace the others').
fn check_outputs(opts: &BuildOptions) -> Result<()> {
    if opts.outputs.iter().any(|e| matches!(e, Export::Tar(_))) {
        return Err(BuildError::MultiPlatform(
            "-o type=tar with several platforms is not supported: use -o type=local,dest=DIR \
             (one DIR/os_arch directory per platform) or build one platform per tar"
                .into(),
        ));
    }
    if !opts.cache_to.is_empty() {
        return Err(BuildError::MultiPlatform(
            "--cache-to with several platforms is not supported yet: export the cache from \
             a single-platform build"
                .into(),
        ));
    }
    Ok(())
}

/// The options of one platform's build: its platform, no tags or files of its own (the
/// index gets them), `-o type=local` into DEST/os_arch, `--cache-from` for the first only
/// ([`build_all`] gives it to each when several run at once).
fn member_options(opts: &BuildOptions, p: &Platform, first: bool) -> BuildOptions {
    let mut o = opts.clone();
    o.platform = Some(p.to_string());
    o.platforms = vec![];
    o.tags = vec![];
    o.iidfile = None;
    o.metadata_file = None;
    if !first {
        o.cache_from = vec![];
    }
    o.outputs = opts
        .outputs
        .iter()
        .filter_map(|e| match e {
            Export::Local(d) => Some(Export::Local(d.join(platform_dir(p)))),
            _ => None,
        })
        .collect();
    o.outputs.push(Export::IndexMember);
    o
}

/// The platforms `p`'s build runs RUN steps on other than the build platform, each with the
/// Boxfile line of its first such RUN. A needed stage runs on the platform of the stage it is
/// FROM, else on its FROM `--platform`, else on the target's (as `Engine::plan_platforms`).
fn emulated_runs(
    bf: &boxfile::Boxfile,
    opts: &BuildOptions,
    p: &Platform,
) -> Result<Vec<(Platform, usize)>> {
    let target = super::engine::target_stage(bf, opts)?;
    let build_platform = super::plan::build_platform();
    let args = super::plan::platform_args(&build_platform, p);
    let global =
        GlobalScope::new(bf, &opts.build_args, &args).map_err(|source| BuildError::Args {
            file: opts.boxfile.path.display().to_string(),
            source,
        })?;
    let mut stage_platform: Vec<Platform> = vec![];
    for (i, s) in bf.stages.iter().enumerate() {
        let (image, fixed) = match global.expand_from(&s.from.node).map(|e| e.instruction) {
            Ok(Instruction::From(f)) => (f.image, f.platform),
            _ => (s.from.node.image.clone(), None),
        };
        let lower = image.to_ascii_lowercase();
        let base = bf.stages[..i]
            .iter()
            .position(|st| st.name.as_deref() == Some(lower.as_str()));
        let pl = match (fixed, base) {
            (Some(f), _) => Platform::parse(&f).map_err(|why| BuildError::Platform {
                value: f.clone(),
                why: format!(
                    "{why} (FROM --platform at {}:{})",
                    opts.boxfile.path.display(),
                    s.from.start_line
                ),
            })?,
            (None, Some(b)) => stage_platform[b].clone(),
            (None, None) => p.clone(),
        };
        stage_platform.push(pl);
    }
    let mut out: Vec<(Platform, usize)> = vec![];
    for i in super::plan::needed_stages(bf, &global, target) {
        let sp = &stage_platform[i];
        if *sp == build_platform || out.iter().any(|(q, _)| q == sp) {
            continue;
        }
        let run = bf.stages[i]
            .instructions
            .iter()
            .find(|ins| matches!(ins.node, Instruction::Run(_)));
        if let Some(ins) = run {
            out.push((sp.clone(), ins.start_line));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_list_parses_in_order_without_duplicates() {
        let got = parse_platforms(&[
            "linux/amd64,linux/arm64".into(),
            "linux/amd64".into(),
            "linux/arm64/v8".into(),
        ])
        .unwrap();
        let names: Vec<String> = got.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
        let err = parse_platforms(&["linux/amd64,linux/".into()]).unwrap_err();
        assert!(err.to_string().contains("\"linux/\""), "{err}");
        assert!(parse_platforms(&["linux/amd64,".into()]).is_err());
    }

    #[test]
    fn local_outputs_get_one_directory_per_platform() {
        assert_eq!(
            platform_dir(&Platform::parse("linux/arm/v7").unwrap()),
            "linux_arm_v7"
        );
        assert_eq!(
            platform_dir(&Platform::parse("linux/amd64").unwrap()),
            "linux_amd64"
        );
    }

    fn opts(text: &str) -> BuildOptions {
        BuildOptions::new(
            None,
            super::super::BoxfileInput {
                path: "Boxfile".into(),
                text: text.into(),
            },
        )
    }

    #[test]
    fn only_runs_on_a_foreign_platform_need_an_emulator() {
        let host = super::super::plan::build_platform();
        let foreign = if host.arch == "amd64" {
            Platform::parse("linux/arm64").unwrap()
        } else {
            Platform::parse("linux/amd64").unwrap()
        };
        let check = |text: &str, p: &Platform| -> Vec<usize> {
            let bf = boxfile::parse(text, std::path::Path::new("Boxfile")).unwrap();
            emulated_runs(&bf, &opts(text), p)
                .unwrap()
                .into_iter()
                .map(|(_, l)| l)
                .collect()
        };
        assert_eq!(check("FROM busybox\nRUN true\n", &foreign), [2]);
        assert!(check("FROM busybox\nRUN true\n", &host).is_empty());
        assert!(check("FROM busybox\nCOPY a /a\n", &foreign).is_empty());
        let cross = "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN make\n\
                     FROM busybox\nCOPY --from=b /x /x\n";
        assert!(check(cross, &foreign).is_empty());
        let emulated = "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN make\n\
                        FROM b AS c\nRUN more\nFROM busybox\nRUN uname -m\n";
        assert_eq!(check(emulated, &foreign), [6]);
        // A stage pinned to a foreign platform needs its emulator in a native build too.
        let pinned = format!("FROM --platform={foreign} busybox\nRUN true\n");
        assert_eq!(check(&pinned, &host), [2]);
    }

    #[test]
    fn tar_outputs_and_cache_export_are_refused_before_any_work() {
        let mut o = opts("FROM busybox\n");
        o.outputs = vec![Export::Tar(super::super::export::TarDest::Stdout)];
        assert!(
            check_outputs(&o)
                .unwrap_err()
                .to_string()
                .contains("type=tar")
        );
        let mut o = opts("FROM busybox\n");
        o.cache_to = vec!["r/c".into()];
        assert!(check_outputs(&o).is_err());
    }
}
