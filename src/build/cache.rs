//! The build cache: one record per layer step, `cache/build/<key>.json`, naming the layer the
//! step made (or none, for a step that changed nothing) and when it ran.
//!
//! A registry can carry the cache between machines (`--cache-to`/`--cache-from`): the export
//! is an ordinary image whose layers are the build's layers and whose config maps each step
//! key to its layer under [`CACHE_KEY`]; the import pulls it and writes those records here.
//! Keys are machine-independent (base manifest digest, expanded instructions, content
//! digests), so another runner hits.

use std::fs;
use std::path::PathBuf;

use super::error::{BuildError, Result};
use super::fsview::LayerRef;
use super::image_out;
use super::output::Printer;
use crate::atomic::{self, Durability};
use crate::digest::Digest;
use crate::image::ImageConfig;
use crate::image::Reference;
use crate::registry::{self, PullOptions};
use crate::store::Store;

/// The config key under which a cache image (`--cache-to`) lists its records.
const CACHE_KEY: &str = "io.boxkit.build-cache.v1";

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheRecord {
    pub layer: Option<LayerRef>,
    /// When the step ran: a hit reuses it for the history, so a fully cached rebuild gives
    /// the same image ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The records of one store.
pub struct BuildCache<'a> {
    store: &'a Store,
    /// `--no-cache`: nothing is read (records are still written).
    no_cache: bool,
}

impl<'a> BuildCache<'a> {
    pub fn new(store: &'a Store, no_cache: bool) -> BuildCache<'a> {
        BuildCache { store, no_cache }
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.store
            .cache_dir()
            .join("build")
            .join(format!("{}.json", key.hex()))
    }

    /// The record of step `key`, when it names a layer the store still has.
    pub fn get(&self, key: &Digest) -> Option<CacheRecord> {
        if self.no_cache {
            return None;
        }
        let data = fs::read(self.record_path(key)).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&data).ok()?;
        match &rec.layer {
            Some(l) if !self.store.has_blob(&l.digest) => None,
            _ => Some(rec),
        }
    }

    /// Record step `key`. A record that cannot be written only costs a rerun, so failures
    /// are ignored; a crash may lose one (no fsync) but never leaves half of one.
    pub fn put(&self, key: &Digest, rec: &CacheRecord) {
        let p = self.record_path(key);
        if let Some(dir) = p.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let data = serde_json::to_vec(rec).expect("a cache record serialises");
        let _ = atomic::write_with(&p, &data, 0o644, Durability::Atomic);
    }

    /// `--cache-from REF`: pull the cache image and record its steps locally. A cache that
    /// cannot be imported only costs speed, so failures are warnings, as in BuildKit.
    pub fn import(&self, r: &str, mut opts: PullOptions, printer: &Printer) {
        opts.policy = registry::PullPolicy::Always;
        // A cache image is not an image of the build's platform (its config says the
        // platform that exported it): it is taken as it is.
        opts.platform = None;
        printer.line(&format!("importing cache from {r}"));
        let img = match registry::ensure_image(self.store, r, &opts) {
            Ok(img) => img,
            Err(err) => {
                printer.line(&format!("warning: cannot import cache from {r}: {err}"));
                return;
            }
        };
        let Some(records) = img.config.extra.get(CACHE_KEY).and_then(|v| v.as_object()) else {
            printer.line(&format!("warning: {r} is not a boxbuild cache image"));
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
                self.put(
                    &key,
                    &CacheRecord {
                        layer,
                        created: None,
                    },
                );
            }
        }
    }

    /// `l` as the gzip layer a pushed cache image carries (unchanged if already compressed).
    fn compressed(&self, l: &LayerRef, docker: bool) -> Result<LayerRef> {
        let d = crate::image::Descriptor::new(&l.media_type, l.digest.clone(), l.size);
        let c = self
            .store
            .compressed_layer(&d, crate::layer::Compression::Gzip, docker)?;
        Ok(c.map_or_else(
            || l.clone(),
            |c| LayerRef {
                media_type: c.media_type,
                digest: c.digest,
                size: c.size,
                diff_id: l.diff_id.clone(),
            },
        ))
    }

    /// `--cache-to REF`: push an image whose layers are the layers of `visited` (every layer
    /// step of this build, made or reused) and whose config maps each step key to its layer;
    /// `docker`: Docker media types (`--format docker`).
    pub fn export(
        &self,
        r: &str,
        visited: &[(Digest, Option<LayerRef>)],
        docker: bool,
        printer: &Printer,
    ) -> Result<()> {
        printer.line(&format!("exporting cache to {r}"));
        let mut layers: Vec<LayerRef> = vec![];
        let mut records = serde_json::Map::new();
        for (k, l) in visited {
            // A build's own layers are plain tars in the store; the records must name the
            // blobs the cache image carries, so they are compressed first.
            let l = match l {
                Some(l) => Some(self.compressed(l, docker)?),
                None => None,
            };
            let l = &l;
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
            architecture: super::plan::host_arch().into(),
            os: "linux".into(),
            created: Some(crate::timefmt::rfc3339(0)),
            ..Default::default()
        };
        cfg.extra
            .insert(CACHE_KEY.into(), serde_json::Value::Object(records));
        let local: Reference = format!(
            "localhost/boxbuild-cache-export:{}",
            crate::run::spec::random_id()
        )
        .parse()
        .expect("valid reference");
        let tags = std::slice::from_ref(&local);
        image_out::write_manifest(self.store, &layers, cfg, tags, docker, true)?;
        let progress = printer.registry_progress();
        let pushed = registry::push(self.store, &local.to_string(), Some(r), progress);
        let _ = self.store.remove_tag(&local);
        pushed.map_err(|source| BuildError::Push {
            name: r.to_string(),
            source,
        })?;
        Ok(())
    }
}

/// One record of the build cache, as `box system df` and `box builder prune` see it.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The step key (hex).
    pub key: String,
    /// The layer the step made, while the store has its blob.
    pub layer: Option<Digest>,
    /// The bytes of that blob (0 without one).
    pub size: u64,
    /// When the record was written: the step ran, or a cache import wrote it.
    pub written: std::time::SystemTime,
    path: PathBuf,
}

/// Every record of `store`'s build cache, oldest first.
pub fn entries(store: &Store) -> Vec<CacheEntry> {
    let dir = store.cache_dir().join("build");
    let Ok(rd) = fs::read_dir(&dir) else {
        return vec![];
    };
    let mut out: Vec<CacheEntry> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".json")?.to_string();
            let written = e.metadata().and_then(|m| m.modified()).ok()?;
            let rec: CacheRecord = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            let layer = rec.layer.filter(|l| store.has_blob(&l.digest));
            Some(CacheEntry {
                key,
                size: layer
                    .as_ref()
                    .map_or(0, |l| store.blob_size(&l.digest).unwrap_or(0)),
                layer: layer.map(|l| l.digest),
                written,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|e| (e.written, e.key.clone()));
    out
}

/// What `box builder prune` removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CachePrune {
    /// Every record, not only those whose layer no image uses.
    pub all: bool,
    /// Stop once the records left name at most this many bytes.
    pub keep_storage: Option<u64>,
}

/// Remove build-cache records, oldest first: those whose layer no image in the store has
/// (every one with `all`), until the cache left is at most `keep_storage` bytes. Returns the
/// records removed; the blobs they kept go with the next store GC.
pub fn prune(store: &Store, opts: CachePrune) -> Result<Vec<CacheEntry>> {
    let in_images: std::collections::HashSet<Digest> = store
        .images()
        .map_err(BuildError::from)?
        .iter()
        .flat_map(|r| r.image.manifest.layers.iter().map(|l| l.digest.clone()))
        .collect();
    let all = entries(store);
    let mut left: u64 = all.iter().map(|e| e.size).sum();
    let mut removed = vec![];
    for e in all {
        if opts.keep_storage.is_some_and(|k| left <= k) {
            break;
        }
        let dangling = e.layer.as_ref().is_none_or(|l| !in_images.contains(l));
        if !(opts.all || dangling) {
            continue;
        }
        match fs::remove_file(&e.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(BuildError::from(crate::store::StoreError::Io {
                    op: "remove build cache record",
                    path: e.path.clone(),
                    source: err,
                }));
            }
        }
        left -= e.size;
        removed.push(e);
    }
    Ok(removed)
}
