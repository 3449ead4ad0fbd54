//! `-v`/`--volume` and `--mount` as docker reads them, and named volumes kept in the store
//! (`volumes/<name>/_data`).
//!
//! `-v /host:/ctr[:ro]` binds a host path (created when missing, as docker does),
//! `-v name:/ctr` a named volume (created on first use), `-v /ctr` an anonymous volume (a named
//! volume with a random name). `--mount` takes `type=bind|volume|tmpfs` with `source`,
//! `target`, `readonly`, `tmpfs-size` and `tmpfs-mode`; unlike `-v`, a missing bind source is
//! an error there.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::run::MountSpec;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MountError {
    #[error(
        "invalid volume {0:?}: expected HOST-PATH:CONTAINER-PATH[:ro|rw], NAME:CONTAINER-PATH[:ro|rw] or CONTAINER-PATH"
    )]
    Volume(String),
    #[error(
        "invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    VolumeName(String),
    #[error("invalid mount {spec:?}: {why}")]
    Mount { spec: String, why: String },
    #[error("invalid mount target {0:?}: it must be an absolute path other than /")]
    Target(String),
    #[error("bind source {0} does not exist (with --mount, create it first; -v creates it)")]
    MissingSource(PathBuf),
    #[error("create {path}: {cause}")]
    Create { path: PathBuf, cause: String },
}

pub type Result<T> = std::result::Result<T, MountError>;

/// A mount as the user wrote it, before volumes are looked up in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// `-v` creates a missing source directory; `--mount` refuses.
        create: bool,
    },
    /// A named volume; `name: None` is an anonymous one. An empty volume is first filled
    /// with the image's files at `target` unless `nocopy`.
    Volume {
        name: Option<String>,
        target: String,
        read_only: bool,
        nocopy: bool,
    },
    Tmpfs {
        target: String,
        options: Option<String>,
    },
}

fn check_target(t: &str) -> Result<String> {
    if !t.starts_with('/') || t.trim_end_matches('/').is_empty() {
        return Err(MountError::Target(t.to_string()));
    }
    Ok(t.to_string())
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check_volume_name(n: &str) -> Result<()> {
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(MountError::VolumeName(n.to_string()))
    }
}

/// Parse one `-v` argument.
pub fn parse_volume(s: &str) -> Result<Request> {
    let bad = || MountError::Volume(s.to_string());
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => (None, *d, None),
        [a, b] => (Some(*a), *b, None),
        [a, b, o] => (Some(*a), *b, Some(*o)),
        _ => return Err(bad()),
    };
    let mut read_only = false;
    let mut nocopy = false;
    for o in opts.into_iter().flat_map(|o| o.split(',')) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            // SELinux relabel requests have no meaning without SELinux.
            "z" | "Z" => {}
            _ => return Err(bad()),
        }
    }
    let target = check_target(dst).map_err(|_| bad())?;
    Ok(match src {
        None => Request::Volume {
            name: None,
            target,
            read_only,
            nocopy,
        },
        Some(p) if p.starts_with('/') && nocopy => return Err(bad()),
        Some(p) if p.starts_with('/') => Request::Bind {
            source: p.into(),
            target,
            read_only,
            create: true,
        },
        Some("") => return Err(bad()),
        Some(n) => {
            check_volume_name(n)?;
            Request::Volume {
                name: Some(n.to_string()),
                target,
                read_only,
                nocopy,
            }
        }
    })
}

/// Parse one `--mount` argument.
pub fn parse_mount(s: &str) -> Result<Request> {
    let bad = |why: &str| MountError::Mount {
        spec: s.to_string(),
        why: why.to_string(),
    };
    let (mut ty, mut source, mut target) = (None, None, None);
    let mut read_only = false;
    let mut nocopy = false;
    let mut tmpfs_opts = Vec::new();
    for kv in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        match (k, v) {
            ("type", Some(v)) => ty = Some(v.to_string()),
            ("source" | "src", Some(v)) => source = Some(v.to_string()),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v.to_string()),
            ("readonly" | "ro", None | Some("true" | "1")) => read_only = true,
            ("readonly" | "ro", Some("false" | "0")) => read_only = false,
            ("volume-nocopy", None | Some("true" | "1")) => nocopy = true,
            ("volume-nocopy", Some("false" | "0")) => nocopy = false,
            ("tmpfs-size", Some(v)) => {
                let n = crate::run::parse_size(v).map_err(|e| bad(&e.to_string()))?;
                tmpfs_opts.push(format!("size={n}"));
            }
            ("tmpfs-mode", Some(v)) => {
                u32::from_str_radix(v, 8).map_err(|_| bad("tmpfs-mode must be octal"))?;
                tmpfs_opts.push(format!("mode={v}"));
            }
            _ => return Err(bad(&format!("unknown or malformed option {kv:?}"))),
        }
    }
    let target = check_target(&target.ok_or_else(|| bad("target is required"))?)?;
    match ty.as_deref().unwrap_or("volume") {
        "bind" => {
            let src = source.ok_or_else(|| bad("source is required for a bind mount"))?;
            if !src.starts_with('/') {
                return Err(bad("a bind source must be an absolute path"));
            }
            Ok(Request::Bind {
                source: src.into(),
                target,
                read_only,
                create: false,
            })
        }
        "volume" => {
            if let Some(n) = &source {
                check_volume_name(n)?;
            }
            Ok(Request::Volume {
                name: source,
                target,
                read_only,
                nocopy,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("a tmpfs mount takes no source"));
            }
            if read_only {
                tmpfs_opts.push("ro".into());
            }
            Ok(Request::Tmpfs {
                target,
                options: (!tmpfs_opts.is_empty()).then(|| tmpfs_opts.join(",")),
            })
        }
        other => Err(bad(&format!(
            "unsupported type {other:?}: expected bind, volume or tmpfs"
        ))),
    }
}

/// What [`realize`] made of the requests.
pub struct Realized {
    pub mounts: Vec<MountSpec>,
    /// Anonymous volumes made (removed with the container when it was started with `--rm`).
    pub anonymous: Vec<String>,
    /// Empty volumes to fill from the image first: (container path, volume data directory).
    pub to_fill: Vec<(String, PathBuf)>,
}

/// Turn requests into sandbox mounts: create named volumes under `volumes_dir` and missing
/// `-v` sources.
pub fn realize(reqs: &[Request], volumes_dir: &Path) -> Result<Realized> {
    let mut out = Vec::new();
    let mut anonymous = Vec::new();
    let mut to_fill = Vec::new();
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|e| MountError::Create {
            path: p.to_path_buf(),
            cause: e.to_string(),
        })
    };
    for r in reqs {
        out.push(match r {
            Request::Bind {
                source,
                target,
                read_only,
                create,
            } => {
                if !source.exists() {
                    if *create {
                        mkdir(source)?;
                    } else {
                        return Err(MountError::MissingSource(source.clone()));
                    }
                }
                MountSpec::Bind {
                    source: source.clone(),
                    target: target.into(),
                    read_only: *read_only,
                }
            }
            Request::Volume {
                name,
                target,
                read_only,
                nocopy,
            } => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => {
                        let n = format!(
                            "{}{}",
                            crate::run::spec::random_id(),
                            crate::run::spec::random_id()
                        );
                        anonymous.push(n.clone());
                        n
                    }
                };
                let data = volume_data(volumes_dir, &name);
                mkdir(&data)?;
                let empty = std::fs::read_dir(&data).is_ok_and(|mut d| d.next().is_none());
                if empty && !nocopy {
                    to_fill.push((target.clone(), data.clone()));
                }
                MountSpec::Bind {
                    source: data,
                    target: target.into(),
                    read_only: *read_only,
                }
            }
            Request::Tmpfs { target, options } => MountSpec::Tmpfs {
                target: target.into(),
                options: options.clone(),
            },
        });
    }
    Ok(Realized {
        mounts: out,
        anonymous,
        to_fill,
    })
}

/// Where a named volume keeps its files.
pub fn volume_data(volumes_dir: &Path, name: &str) -> PathBuf {
    volumes_dir.join(name).join("_data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse_like_docker() {
        assert_eq!(
            parse_volume("/h:/c:ro").unwrap(),
            Request::Bind {
                source: "/h".into(),
                target: "/c".into(),
                read_only: true,
                create: true
            }
        );
        assert_eq!(
            parse_volume("data:/c").unwrap(),
            Request::Volume {
                name: Some("data".into()),
                target: "/c".into(),
                read_only: false,
                nocopy: false
            }
        );
        assert_eq!(
            parse_volume("/c").unwrap(),
            Request::Volume {
                name: None,
                target: "/c".into(),
                read_only: false,
                nocopy: false
            }
        );
        assert_eq!(
            parse_volume("data:/c:ro,nocopy").unwrap(),
            Request::Volume {
                name: Some("data".into()),
                target: "/c".into(),
                read_only: true,
                nocopy: true
            }
        );
        assert!(
            parse_volume("/h:/c:nocopy").is_err(),
            "nocopy is for volumes"
        );
        assert!(parse_volume("/h:c").is_err());
        assert!(parse_volume("/h:/c:bogus").is_err());
        assert!(parse_volume("bad name:/c").is_err());
        assert!(parse_volume("/h:/").is_err());
    }

    #[test]
    fn mounts_parse_like_docker() {
        assert_eq!(
            parse_mount("type=bind,source=/h,target=/c,readonly").unwrap(),
            Request::Bind {
                source: "/h".into(),
                target: "/c".into(),
                read_only: true,
                create: false
            }
        );
        assert_eq!(
            parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap(),
            Request::Tmpfs {
                target: "/t".into(),
                options: Some("size=1048576,mode=1770".into())
            }
        );
        assert_eq!(
            parse_mount("type=volume,src=v1,target=/v").unwrap(),
            Request::Volume {
                name: Some("v1".into()),
                target: "/v".into(),
                read_only: false,
                nocopy: false
            }
        );
        assert_eq!(
            parse_mount("type=volume,src=v1,target=/v,volume-nocopy").unwrap(),
            Request::Volume {
                name: Some("v1".into()),
                target: "/v".into(),
                read_only: false,
                nocopy: true
            }
        );
        assert!(parse_mount("type=bind,target=/c").is_err());
        assert!(parse_mount("type=nfs,target=/c").is_err());
        assert!(parse_mount("type=tmpfs").is_err());
        assert!(parse_mount("type=bind,source=rel,target=/c").is_err());
    }

    #[test]
    fn realize_creates_volumes_and_refuses_missing_mount_sources() {
        let t = tempfile::tempdir().unwrap();
        let vols = t.path().join("volumes");
        std::fs::create_dir_all(vols.join("full/_data/x")).unwrap();
        let reqs = vec![
            parse_volume("v:/data").unwrap(),
            parse_volume("/anon").unwrap(),
            parse_volume("nc:/nc:nocopy").unwrap(),
            parse_volume("full:/full").unwrap(),
        ];
        let r = realize(&reqs, &vols).unwrap();
        let anon = &r.anonymous;
        assert_eq!(anon.len(), 1);
        assert!(vols.join("v/_data").is_dir());
        assert!(vols.join(&anon[0]).join("_data").is_dir());
        assert_eq!(r.mounts.len(), 4);
        // Only empty volumes without nocopy are filled from the image.
        let targets: Vec<&str> = r.to_fill.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(targets, ["/data", "/anon"]);
        let missing = t.path().join("nope");
        let r = parse_mount(&format!("type=bind,src={},dst=/x", missing.display())).unwrap();
        assert_eq!(
            realize(&[r], &vols).err(),
            Some(MountError::MissingSource(missing.clone()))
        );
        let r = parse_volume(&format!("{}:/x", missing.display())).unwrap();
        realize(&[r], &vols).unwrap();
        assert!(missing.is_dir());
    }
}
