//! A tmpfs directory for the state of containers that cannot outlive their process: a
//! foreground `--rm` container (`boxrun --rm`) is created, run and removed in one command, and
//! its directory, `state.json` and their removal on the store's disk filesystem cost about
//! seven metadata operations per start (≈ 0.9 ms on an ext4 store). Such a container's
//! directory lives instead in `/dev/shm/boxkit-<random>`, found through the symlink
//! `containers/run` inside the store, so that every user of the store (`box ps`, `stop`,
//! `inspect`, `prune`'s reachability scan) finds it and nobody else can point it elsewhere.
//!
//! The directory's name is random and it is made with mode 0700 by the process that then
//! creates the link; a target is used only while it is a real directory (not a symlink),
//! closed to others and owned by the link's owner (both were made by the same process, and
//! the store is closed to everyone else). After a reboot the tmpfs is empty and the link
//! dangles: the next such start makes a new directory under a new name (never the old one,
//! which someone else could have made meanwhile).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The link, inside a store's `containers/`.
const LINK: &str = "run";
/// Where the directories are made (a tmpfs on every Linux system that has it).
const BASE: &str = "/dev/shm";

/// The run directory of the containers directory `containers`, when it exists and is
/// trustworthy (see the module comment). Read-only: nothing is created.
pub fn run_dir(containers: &Path) -> Option<PathBuf> {
    let link = containers.join(LINK);
    let target = std::fs::read_link(&link).ok()?;
    let link_uid = std::fs::symlink_metadata(&link).ok()?.uid();
    let m = std::fs::symlink_metadata(&target).ok()?;
    let trusted =
        target.is_absolute() && m.is_dir() && m.mode() & 0o077 == 0 && m.uid() == link_uid;
    trusted.then_some(target)
}

/// The run directory of `containers`, made (and linked) when absent or untrustworthy. None
/// when no tmpfs directory can be made: the caller then keeps the state in the store.
pub fn ensure_run_dir(containers: &Path) -> Option<PathBuf> {
    if let Some(d) = run_dir(containers) {
        return Some(d);
    }
    if !is_tmpfs(Path::new(BASE)) {
        return None;
    }
    // Serialise the makers (rare: once per store and boot), so that two concurrent starts
    // cannot each link their own directory and leave one container where nobody looks.
    let lock = std::fs::File::open(containers).ok()?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .ok()
        .and_then(|_held| {
            if let Some(d) = run_dir(containers) {
                return Some(d);
            }
            let dir = make_private_dir()?;
            let tmp = containers.join(format!(".{LINK}.tmp-{}", crate::digest::random_hex(16)));
            let linked = std::os::unix::fs::symlink(&dir, &tmp).is_ok()
                && std::fs::rename(&tmp, containers.join(LINK)).is_ok();
            if !linked {
                let _ = std::fs::remove_file(&tmp);
                let _ = std::fs::remove_dir(&dir);
                return None;
            }
            run_dir(containers)
        })
}

fn is_tmpfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// A new directory with a random name under [`BASE`], mode 0700.
fn make_private_dir() -> Option<PathBuf> {
    for _ in 0..4 {
        let d = Path::new(BASE).join(format!("boxkit-{}", crate::digest::random_hex(16)));
        match std::fs::DirBuilder::new().mode(0o700).create(&d) {
            Ok(()) => return Some(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_run_dir_is_found_private_and_reused() {
        let t = tempfile::tempdir().unwrap();
        let Some(d) = ensure_run_dir(t.path()) else {
            // No tmpfs at /dev/shm here: nothing to check.
            assert!(!is_tmpfs(Path::new(BASE)));
            return;
        };
        assert_eq!(run_dir(t.path()), Some(d.clone()));
        assert_eq!(ensure_run_dir(t.path()), Some(d.clone()));
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        std::fs::remove_dir(&d).unwrap();
        // Gone (as after a reboot): not trusted, and a new one is made under a new name.
        assert_eq!(run_dir(t.path()), None);
        let e = ensure_run_dir(t.path()).unwrap();
        assert_ne!(d, e);
        std::fs::remove_dir(&e).unwrap();
    }

    #[test]
    fn a_link_to_an_open_directory_is_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        std::os::unix::fs::symlink(&open, t.path().join(LINK)).unwrap();
        assert_eq!(run_dir(t.path()), None);
        // A relative target is not trusted either.
        std::fs::remove_file(t.path().join(LINK)).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::os::unix::fs::symlink("open", t.path().join(LINK)).unwrap();
        assert_eq!(run_dir(t.path()), None);
    }
}
