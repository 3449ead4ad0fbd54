//! Where a copy lands, by docker's rules for `docker cp` (trailing `/`, `/.`, directories),
//! as a pure function of what the source is and what the destination is.

use serde::{Deserialize, Serialize};

/// The source of a copy, as resolved on its side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrcInfo {
    pub dir: bool,
    /// The name the source has (its last component; "." for `/`).
    pub base: String,
    /// The path ends with `/.`: a directory's contents, not the directory.
    pub contents: bool,
}

/// The destination as it is on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DestState {
    Missing,
    Dir,
    File,
}

/// Where the stream is extracted: into the destination itself, or into its parent; and the
/// name the stream's top entry has there ("." for a directory's contents, or the entries of
/// a stream from `-` as they are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub into_dest: bool,
    pub name: String,
}

/// A path as given, split into what to resolve and docker's suffix flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub path: String,
    /// Ends with `/.` (or is `.`).
    pub contents: bool,
    /// Ends with `/` (or `/.`): must be a directory.
    pub slash: bool,
    /// The last component ("." when there is none, as for `/`).
    pub base: String,
}

pub fn spec(p: &str) -> Spec {
    let contents = p == "." || p.ends_with("/.");
    let slash = contents || p.ends_with('/');
    let stem = if contents {
        p.strip_suffix('.').unwrap_or(p)
    } else {
        p
    };
    let trimmed = stem.trim_end_matches('/');
    let base = std::path::Path::new(trimmed)
        .file_name()
        .map_or_else(|| ".".to_string(), |n| n.to_string_lossy().into_owned());
    let path = if trimmed.is_empty() {
        if p.starts_with('/') { "/" } else { "." }.to_string()
    } else {
        trimmed.to_string()
    };
    Spec {
        path,
        contents,
        slash,
        base,
    }
}

/// docker's rules. `src` is `None` for a tar stream read from stdin; `dest` is the
/// destination path as given (for its messages and last component).
pub fn place(
    src: Option<&SrcInfo>,
    dest_state: DestState,
    dest: &str,
) -> Result<Placement, String> {
    let d = spec(dest);
    let Some(src) = src else {
        // `box cp - CONTAINER:DIR`: the directory must exist; the stream's names are kept.
        return match dest_state {
            DestState::Dir => Ok(Placement {
                into_dest: true,
                name: ".".into(),
            }),
            _ => Err(format!("destination {dest:?} must be a directory")),
        };
    };
    let into = |name: &str| Placement {
        into_dest: true,
        name: name.to_string(),
    };
    let beside = Placement {
        into_dest: false,
        name: d.base.clone(),
    };
    match (src.dir, dest_state) {
        (false, DestState::Missing) if d.slash => Err(format!(
            "destination directory {dest:?} does not exist (a path ending in / must be an \
             existing directory)"
        )),
        (false, DestState::Missing | DestState::File) => Ok(beside),
        (false, DestState::Dir) => Ok(into(&src.base)),
        (true, DestState::Missing) => Ok(beside),
        (true, DestState::File) => Err(format!(
            "cannot copy a directory to a file: {dest:?} exists and is not a directory"
        )),
        (true, DestState::Dir) if src.contents || src.base == "." => Ok(into(".")),
        (true, DestState::Dir) => Ok(into(&src.base)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(dir: bool, base: &str, contents: bool) -> SrcInfo {
        SrcInfo {
            dir,
            base: base.into(),
            contents,
        }
    }

    #[test]
    fn spec_reads_docker_suffixes() {
        let s = spec("/etc/.");
        assert_eq!(
            (s.path.as_str(), s.contents, s.slash, s.base.as_str()),
            ("/etc", true, true, "etc")
        );
        let s = spec("/etc/");
        assert_eq!(
            (s.path.as_str(), s.contents, s.slash, s.base.as_str()),
            ("/etc", false, true, "etc")
        );
        let s = spec("/");
        assert_eq!((s.path.as_str(), s.base.as_str()), ("/", "."));
        let s = spec("a/b");
        assert_eq!(
            (s.path.as_str(), s.contents, s.slash, s.base.as_str()),
            ("a/b", false, false, "b")
        );
        let s = spec(".");
        assert!(s.contents);
    }

    #[test]
    fn a_file_goes_beside_or_into_as_docker_says() {
        let f = src(false, "hosts", false);
        assert_eq!(
            place(Some(&f), DestState::Missing, "/tmp/x").unwrap(),
            Placement {
                into_dest: false,
                name: "x".into()
            }
        );
        assert_eq!(
            place(Some(&f), DestState::File, "/tmp/x").unwrap(),
            Placement {
                into_dest: false,
                name: "x".into()
            }
        );
        assert_eq!(
            place(Some(&f), DestState::Dir, "/tmp").unwrap(),
            Placement {
                into_dest: true,
                name: "hosts".into()
            }
        );
        assert!(place(Some(&f), DestState::Missing, "/tmp/nodir/").is_err());
    }

    #[test]
    fn a_directory_is_created_copied_into_or_its_contents_copied() {
        let d = src(true, "etc", false);
        assert_eq!(
            place(Some(&d), DestState::Missing, "/tmp/new").unwrap(),
            Placement {
                into_dest: false,
                name: "new".into()
            }
        );
        assert_eq!(
            place(Some(&d), DestState::Dir, "/tmp").unwrap(),
            Placement {
                into_dest: true,
                name: "etc".into()
            }
        );
        let c = src(true, "etc", true);
        assert_eq!(
            place(Some(&c), DestState::Dir, "/tmp").unwrap(),
            Placement {
                into_dest: true,
                name: ".".into()
            }
        );
        assert!(place(Some(&d), DestState::File, "/tmp/f").is_err());
    }

    #[test]
    fn a_stream_needs_an_existing_directory() {
        assert!(place(None, DestState::Dir, "/tmp").unwrap().into_dest);
        assert!(place(None, DestState::Missing, "/nope").is_err());
        assert!(place(None, DestState::File, "/etc/hosts").is_err());
    }
}
