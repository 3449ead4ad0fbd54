//! Named volumes: `volumes/<name>/_data` holds the files (the layout `boxrun -v NAME:/path`
//! creates on first use), `volumes/<name>/volume.json` what `box volume create` recorded
//! beside them (labels, creation time). A volume a container made on first use has no
//! record: its creation time is its directory's, and it is anonymous when its name is one
//! `boxrun -v /path` draws (32 lowercase hex digits), as docker marks them with a label.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use super::gc::{dir_size, remove_tree};
use super::{Result, Store, StoreError, io_err};
use crate::atomic;

/// The record beside a volume's data.
const RECORD: &str = "volume.json";

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    created: String,
    #[serde(default)]
    anonymous: bool,
}

/// One volume as `box volume ls/inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// The directory mounted into containers.
    pub mountpoint: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created: String,
    pub anonymous: bool,
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_volume_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && c.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Whether `n` looks like the name `boxrun -v /path` gives an anonymous volume.
fn anonymous_name(n: &str) -> bool {
    n.len() == 32
        && n.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    /// Create volume `name` (an existing one is kept as it is, as docker's local driver does).
    pub fn create_volume(&self, name: &str, labels: BTreeMap<String, String>) -> Result<Volume> {
        if !valid_volume_name(name) {
            return Err(StoreError::VolumeName(name.to_string()));
        }
        let dir = self.volumes_dir().join(name);
        if !dir.join("_data").is_dir() {
            let data = dir.join("_data");
            fs::create_dir_all(&data).map_err(io_err("create volume", &data))?;
            let rec = Record {
                labels,
                created: crate::timefmt::rfc3339(now()),
                anonymous: false,
            };
            let p = dir.join(RECORD);
            let bytes = serde_json::to_vec(&rec).expect("a volume record serialises");
            atomic::write(&p, &bytes, 0o600).map_err(io_err("write volume record", &p))?;
        }
        self.volume(name)
    }

    /// Volume `name`.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        let dir = self.volumes_dir().join(name);
        let data = dir.join("_data");
        if !valid_volume_name(name) || !data.is_dir() {
            return Err(StoreError::NoSuchVolume(name.to_string()));
        }
        let rec: Option<Record> = fs::read(dir.join(RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Ok(match rec {
            Some(r) => Volume {
                name: name.to_string(),
                mountpoint: data,
                labels: r.labels,
                created: r.created,
                anonymous: r.anonymous,
            },
            None => {
                let secs = fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                Volume {
                    name: name.to_string(),
                    mountpoint: data,
                    labels: BTreeMap::new(),
                    created: crate::timefmt::rfc3339(secs),
                    anonymous: anonymous_name(name),
                }
            }
        })
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let d = self.volumes_dir();
        let mut names: Vec<String> = fs::read_dir(&d)
            .map_err(io_err("read directory", &d))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.volume(n).ok()).collect())
    }

    /// The bytes in volume `name`'s files.
    pub fn volume_size(&self, name: &str) -> u64 {
        dir_size(&self.volumes_dir().join(name).join("_data"))
    }

    /// Remove volume `name` and its files. Whether a container uses it is the caller's check.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.volume(name)?;
        let dir = self.volumes_dir().join(name);
        remove_tree(&dir).map_err(io_err("remove volume", &dir))
    }

    /// The volume whose files are at (or under) `path`, if any.
    pub fn volume_of_path(&self, path: &std::path::Path) -> Option<String> {
        let rest = path.strip_prefix(self.volumes_dir()).ok()?;
        let first = rest.components().next()?;
        Some(first.as_os_str().to_string_lossy().into_owned())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_volumes_keep_labels_and_first_use_volumes_are_listed_too() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let v = s.create_volume("data", labels.clone()).unwrap();
        assert_eq!(v.labels, labels);
        assert!(!v.anonymous);
        assert_eq!(v.mountpoint, s.volumes_dir().join("data/_data"));
        // A second create keeps the first one's record.
        assert_eq!(s.create_volume("data", BTreeMap::new()).unwrap(), v);
        // As `boxrun -v` makes them: no record.
        let anon = "0123456789abcdef0123456789abcdef";
        fs::create_dir_all(s.volumes_dir().join(anon).join("_data")).unwrap();
        fs::create_dir_all(s.volumes_dir().join("named/_data")).unwrap();
        let all = s.volumes().unwrap();
        let names: Vec<_> = all.iter().map(|v| (v.name.as_str(), v.anonymous)).collect();
        assert_eq!(names, [(anon, true), ("data", false), ("named", false)]);
        assert!(matches!(
            s.create_volume("../x", BTreeMap::new()),
            Err(StoreError::VolumeName(_))
        ));
        s.remove_volume("data").unwrap();
        assert!(matches!(s.volume("data"), Err(StoreError::NoSuchVolume(_))));
        assert_eq!(
            s.volume_of_path(&s.volumes_dir().join("named/_data"))
                .as_deref(),
            Some("named")
        );
    }
}
