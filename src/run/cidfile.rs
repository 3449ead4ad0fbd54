//! `--cidfile`: the container's id written where the user asked, with the user's own
//! credentials.
//!
//! The tool learns the id inside its user namespace, where root is a container-range id: a
//! file it made would be owned by that id on the host (and a directory only the real caller
//! can enter would refuse it). So the host agent writes it, and only the file the caller's own
//! command line names: the tool can ask for nothing else.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The `--cidfile` values of a command line (`--cidfile F` or `--cidfile=F`), made absolute
/// against the current directory. An argument of the container's command that looks the same
/// only widens what the agent accepts to another path the user typed.
pub fn asked(args: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let v = match a.strip_prefix("--cidfile") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(p) = v.and_then(|v| std::path::absolute(v).ok()) {
            out.push(p);
        }
    }
    out
}

/// Write `id` to `path`, which must not exist (docker refuses an existing cidfile: another
/// container may be using it), creating it exclusively and never through a symlink. `allowed`
/// are the paths this process's command line names; the id must be a container id.
pub fn write(path: &Path, id: &str, allowed: &[PathBuf]) -> Result<(), String> {
    if !allowed.iter().any(|a| a == path) {
        return Err(format!(
            "--cidfile {}: not a path given on the command line",
            path.display()
        ));
    }
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--cidfile: {id:?} is not a container id"));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true) // O_EXCL: a symlink at `path` is an existing file too
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "container ID file found, make sure the other container isn't running or \
                     delete {}",
                    path.display()
                )
            } else {
                format!("write --cidfile {}: {e}", path.display())
            }
        })?;
    f.write_all(id.as_bytes())
        .map_err(|e| format!("write --cidfile {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_a_path_of_the_command_line_and_a_container_id_are_written() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("cid");
        let args: Vec<String> = ["boxrun", "--cidfile", p.to_str().unwrap(), "busybox"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let allowed = asked(&args);
        assert!(write(&t.path().join("other"), ID, &allowed).is_err());
        assert!(write(&p, "../../etc/passwd", &allowed).is_err());
        write(&p, ID, &allowed).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), ID);
        // A second write (another container) is refused, as docker does.
        assert!(
            write(&p, ID, &allowed)
                .unwrap_err()
                .contains("ID file found")
        );
    }

    #[test]
    fn a_symlink_at_the_path_is_refused_and_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("cid");
        let target = t.path().join("target");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let args = vec![format!("--cidfile={}", p.display())];
        assert!(write(&p, ID, &asked(&args)).is_err());
        assert!(!target.exists());
    }
}
