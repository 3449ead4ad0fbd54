//! Garbage collection (`box prune`): mark what is reachable, sweep the rest.
//!
//! Roots are the entries of index.json, plus every digest named by a build-cache entry
//! (`cache/`) or a container (`containers/*/state.json`). Rather than couple GC to those
//! formats, any `sha256:<64 hex>` that appears in those files counts as a reference: a false
//! positive keeps a blob a little longer, a false negative would delete live data. From each
//! root manifest we mark its config and layers; from each config, its diff_ids, which keep the
//! unpacked layer trees under `layers/`. GC runs with the store lock held exclusively, so no
//! pull or build can be between "blob written" and "tag set" while we sweep.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::{Result, Store, StoreError, io_err, rundir};
use crate::digest::Digest;
use crate::image::media;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs_removed: Vec<Digest>,
    pub layers_removed: Vec<String>,
    pub bytes_freed: u64,
}

fn find_digests(text: &str, out: &mut HashSet<Digest>) {
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        let cand = &rest[i + 7..];
        if cand.len() >= 64
            && let Ok(d) = Digest::from_hex(&cand[..64])
        {
            out.insert(d);
        }
        rest = &rest[i + 7..];
    }
}

fn scan_tree(dir: &Path, out: &mut HashSet<Digest>, depth: usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth > 0 {
            scan_tree(&e.path(), out, depth - 1);
        } else if ft.is_file()
            && e.metadata().is_ok_and(|m| m.len() < 16 << 20)
            && let Ok(s) = fs::read_to_string(e.path())
        {
            find_digests(&s, out);
        }
    }
}

pub(crate) fn dir_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Make every directory below `p` writable by its owner so removal cannot be blocked by a
/// read-only directory that an image shipped.
fn make_removable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(p)
        && m.is_dir()
    {
        let mode = m.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                make_removable(&e.path());
            }
        }
    }
}

/// Remove the tree at `p` (already absent is success), opening up directories that block it
/// (read-only ones an image shipped, an overlay work dir) and trying once more. Shared with
/// the build's own tree removal (`build::fsview::remove_tree`).
pub(crate) fn remove_tree(p: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_removable(p);
            fs::remove_dir_all(p)
        }
    }
}

impl Store {
    /// Whether any container has a state here (in `containers/` or the run directory): its
    /// overlay may have the mount points layer below its image's, so prune keeps that layer
    /// until no container is left (a run makes it again when it is gone).
    fn any_container(&self) -> bool {
        let dirs =
            std::iter::once(self.containers_dir()).chain(rundir::run_dir(&self.containers_dir()));
        dirs.flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
            .any(|e| e.path().join("state.json").is_file())
    }

    /// Everything reachable from the roots: blob digests and diff_ids.
    pub fn reachable(&self) -> Result<(HashSet<Digest>, HashSet<Digest>)> {
        let mut extra = HashSet::new();
        scan_tree(&self.cache_dir(), &mut extra, 4);
        scan_tree(&self.containers_dir(), &mut extra, 1);
        if let Some(run) = rundir::run_dir(&self.containers_dir()) {
            scan_tree(&run, &mut extra, 1);
        }
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut diff_ids: HashSet<Digest> = extra.clone();
        let mut stack: Vec<(Digest, String)> = self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| (d.digest, d.media_type))
            .collect();
        // Referenced digests from cache/containers may be manifests, configs or layers.
        for d in &extra {
            if self.has_blob(d) {
                stack.push((d.clone(), String::new()));
            }
        }
        while let Some((d, mt)) = stack.pop() {
            if !blobs.insert(d.clone()) || !self.has_blob(&d) {
                continue;
            }
            // Unknown media type (extra roots): sniff the JSON, but only for small blobs.
            let small = self.blob_size(&d).is_ok_and(|s| s < 4 << 20);
            if !(media::is_manifest(&mt) || media::is_index(&mt) || (mt.is_empty() && small)) {
                continue;
            }
            let Ok(v) = self.read_json(&d, "manifest") else {
                continue;
            };
            if let Some(ms) = v["manifests"].as_array() {
                for m in ms {
                    if let (Some(dg), Some(t)) = (m["digest"].as_str(), m["mediaType"].as_str())
                        && let Ok(dg) = dg.parse()
                    {
                        stack.push((dg, t.to_string()));
                    }
                }
            }
            if let Some(cfg) = v["config"]["digest"]
                .as_str()
                .and_then(|s| s.parse::<Digest>().ok())
            {
                if let Ok(c) = self.read_json(&cfg, "image config") {
                    for id in c["rootfs"]["diff_ids"].as_array().into_iter().flatten() {
                        if let Some(id) = id.as_str().and_then(|s| s.parse().ok()) {
                            diff_ids.insert(id);
                        }
                    }
                }
                blobs.insert(cfg);
            }
            for l in v["layers"].as_array().into_iter().flatten() {
                if let Some(dg) = l["digest"].as_str().and_then(|s| s.parse().ok()) {
                    blobs.insert(dg);
                }
            }
        }
        Ok((blobs, diff_ids))
    }

    /// Remove unreferenced blobs and unpacked layers. Needs the store opened with
    /// [`super::Access::Exclusive`]; with a shared handle it refuses.
    pub fn prune(&self) -> Result<PruneReport> {
        let (blobs, diff_ids) = self.reachable()?;
        let mut rep = PruneReport::default();
        let bdir = self.root().join("blobs/sha256");
        for e in fs::read_dir(&bdir)
            .map_err(io_err("read directory", &bdir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| blobs.contains(&d));
            if !keep {
                rep.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("remove blob", e.path()))?;
                if let Ok(d) = Digest::from_hex(&name) {
                    rep.blobs_removed.push(d);
                }
            }
        }
        let ldir = self.layers_dir();
        for e in fs::read_dir(&ldir)
            .map_err(io_err("read directory", &ldir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| diff_ids.contains(&d))
                || (super::mountpoints::is_layer(&name) && self.any_container());
            if !keep {
                rep.bytes_freed += dir_size(&e.path());
                remove_tree(&e.path()).map_err(|source| StoreError::Io {
                    op: "remove unpacked layer",
                    path: e.path(),
                    source,
                })?;
                rep.layers_removed.push(name);
            }
        }
        rep.blobs_removed.sort();
        rep.layers_removed.sort();
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Descriptor;
    use crate::store::{Access, Store};

    fn put_image(s: &Store, layer: &[u8], diff: &Digest) -> Descriptor {
        let l = s.put_blob(layer).unwrap();
        let cfg = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff.to_string()]}});
        let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
        let c = s.put_blob(&cfg_bytes).unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": c.to_string(), "size": cfg_bytes.len()},
            "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": l.to_string(), "size": layer.len()}]
        });
        let mb = serde_json::to_vec(&m).unwrap();
        let md = s.put_blob(&mb).unwrap();
        Descriptor::new(media::OCI_MANIFEST, md, mb.len() as u64)
    }

    #[test]
    fn prune_removes_unreferenced_and_keeps_referenced() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open_with(t.path(), Access::Exclusive).unwrap();
        let keep_diff = Digest::of_bytes(b"keep-tar");
        let drop_diff = Digest::of_bytes(b"drop-tar");
        let kept = put_image(&s, b"keep-layer", &keep_diff);
        let dropped = put_image(&s, b"drop-layer", &drop_diff);
        s.set_tag(&"keep".parse().unwrap(), &kept).unwrap();
        fs::create_dir_all(s.layers_dir().join(keep_diff.hex())).unwrap();
        fs::create_dir_all(s.layers_dir().join(drop_diff.hex()).join("sub")).unwrap();
        fs::create_dir_all(s.layers_dir().join("garbage.tmp-1")).unwrap();
        let cached = s.put_blob(b"cache-referenced").unwrap();
        fs::write(
            s.cache_dir().join("entry.json"),
            format!("{{\"layer\":\"{cached}\"}}"),
        )
        .unwrap();

        let rep = s.prune().unwrap();
        assert!(s.has_blob(&kept.digest));
        assert!(s.has_blob(&Digest::of_bytes(b"keep-layer")));
        assert!(s.has_blob(&cached));
        assert!(!s.has_blob(&dropped.digest));
        assert!(!s.has_blob(&Digest::of_bytes(b"drop-layer")));
        assert!(s.layers_dir().join(keep_diff.hex()).is_dir());
        assert!(!s.layers_dir().join(drop_diff.hex()).exists());
        assert!(!s.layers_dir().join("garbage.tmp-1").exists());
        assert_eq!(rep.blobs_removed.len(), 3);
        // A second prune finds nothing.
        assert_eq!(s.prune().unwrap(), PruneReport::default());
    }

    #[test]
    fn prune_keeps_a_partial_index_and_its_stored_platforms() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open_with(t.path(), Access::Exclusive).unwrap();
        let diff = Digest::of_bytes(b"tar");
        let present = put_image(&s, b"layer", &diff);
        let mut absent = present.clone();
        absent.digest = Digest::of_bytes(b"never pulled");
        let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
            "mediaType": media::OCI_INDEX, "manifests": [absent, present]}))
        .unwrap();
        let idx_d = s.put_blob(&idx).unwrap();
        let desc = Descriptor::new(media::OCI_INDEX, idx_d.clone(), idx.len() as u64);
        s.set_tag(&"multi".parse().unwrap(), &desc).unwrap();
        let rep = s.prune().unwrap();
        assert!(rep.blobs_removed.is_empty(), "{rep:?}");
        assert!(s.has_blob(&idx_d) && s.has_blob(&present.digest));
        assert!(s.has_blob(&Digest::of_bytes(b"layer")));
    }
}
