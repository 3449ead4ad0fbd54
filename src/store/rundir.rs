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
//!
//! A store deleted with `rm -rf` cannot remove its run directory. So each run directory names
//! its store in a file `.store`, written once the link is in place, and the next run directory
//! made by the same user sweeps the orphans ([`sweep_orphans`]). An orphan is a directory of
//! that user's whose store no longer links to it and that holds no container.

use std::os::unix::ffi::OsStrExt;
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
            // Written only now: a sweep that sees the file also sees the link.
            if let Ok(abs) = std::path::absolute(containers) {
                let _ = std::fs::write(dir.join(BACKREF), abs.as_os_str().as_bytes());
            }
            sweep_orphans(Path::new(BASE), &dir);
            run_dir(containers)
        })
}

/// The file in a run directory that names its containers directory.
const BACKREF: &str = ".store";

/// Remove the run directories under `base` that this user made for a store that no longer
/// links to them (deleted, or relinked after a reboot), when they hold no container (no entry
/// with a `state.json`). `keep` is the caller's own. A directory without [`BACKREF`] (made
/// by an older boxkit, or whose maker has not linked it yet) is left alone, and so is anything
/// that is not a real directory of this user's, closed to others.
pub fn sweep_orphans(base: &Path, keep: &Path) {
    let uid = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let d = e.path();
        if d == keep || !e.file_name().to_string_lossy().starts_with("boxkit-") {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
            continue;
        }
        let Ok(store) = std::fs::read(d.join(BACKREF)) else {
            continue;
        };
        let link = Path::new(std::ffi::OsStr::from_bytes(&store)).join(LINK);
        if std::fs::read_link(&link).is_ok_and(|t| t == d) {
            continue;
        }
        let holds_container = std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .any(|c| c.path().join("state.json").exists());
        if !holds_container {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
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

    /// [`ensure_run_dir`]'s directory, or None only where /dev/shm is no tmpfs.
    fn made_or_no_tmpfs(containers: &Path) -> Option<PathBuf> {
        let d = ensure_run_dir(containers);
        assert!(d.is_some() || !is_tmpfs(Path::new(BASE)));
        d
    }

    #[test]
    fn a_made_run_dir_is_found_private_and_reused() {
        let t = tempfile::tempdir().unwrap();
        let Some(d) = made_or_no_tmpfs(t.path()) else {
            return;
        };
        assert_eq!(run_dir(t.path()), Some(d.clone()));
        assert_eq!(ensure_run_dir(t.path()), Some(d.clone()));
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&d).unwrap();
        // Gone (as after a reboot): not trusted, and a new one is made under a new name.
        assert_eq!(run_dir(t.path()), None);
        let e = ensure_run_dir(t.path()).unwrap();
        assert_ne!(d, e);
        std::fs::remove_dir_all(&e).unwrap();
    }

    #[test]
    fn a_store_deleted_with_rm_rf_loses_its_run_dir_when_the_next_one_is_made() {
        let first = tempfile::tempdir().unwrap();
        let Some(d) = made_or_no_tmpfs(first.path()) else {
            return;
        };
        let named = std::fs::read(d.join(BACKREF)).unwrap();
        assert_eq!(Path::new(std::ffi::OsStr::from_bytes(&named)), first.path());
        drop(first);
        assert!(d.exists());
        let second = tempfile::tempdir().unwrap();
        let e = ensure_run_dir(second.path()).unwrap();
        assert!(!d.exists(), "{} outlived its store", d.display());
        std::fs::remove_dir_all(&e).unwrap();
    }

    #[test]
    fn a_deleted_stores_run_dir_is_swept_unless_it_holds_a_container() {
        // The sweep needs no tmpfs: it runs on a plain directory here.
        let base = tempfile::tempdir().unwrap();
        let mk = |name: &str, store: &Path| {
            let d = base.path().join(name);
            std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
            std::fs::write(d.join(BACKREF), store.as_os_str().as_bytes()).unwrap();
            d
        };
        let live = tempfile::tempdir().unwrap();
        let gone = live.path().join("deleted-store");
        // A live store's directory (its link points at it), a deleted store's, a deleted
        // store's that still holds a container, one without the back-reference, the caller's.
        let a = mk("boxkit-live", live.path());
        std::os::unix::fs::symlink(&a, live.path().join(LINK)).unwrap();
        let b = mk("boxkit-orphan", &gone);
        std::fs::create_dir(b.join("names")).unwrap();
        let c = mk("boxkit-busy", &gone);
        std::fs::create_dir(c.join("abc")).unwrap();
        std::fs::write(c.join("abc/state.json"), "{}").unwrap();
        let d = base.path().join("boxkit-old");
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        let own = mk("boxkit-own", &gone);
        // Another name prefix and an open directory are never touched.
        let other = mk("other-orphan", &gone);
        let open = mk("boxkit-open", &gone);
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // Hostile entries: a link to an orphan elsewhere, and (as root) another user's orphan.
        let elsewhere = tempfile::tempdir().unwrap();
        let target = mk("boxkit-target", &gone);
        let moved = elsewhere.path().join("boxkit-target");
        std::fs::rename(&target, &moved).unwrap();
        std::os::unix::fs::symlink(&moved, base.path().join("boxkit-link")).unwrap();
        let theirs = mk("boxkit-theirs", &gone);
        let as_root = nix::unistd::geteuid().is_root();
        if as_root {
            std::os::unix::fs::chown(&theirs, Some(12345), Some(12345)).unwrap();
        }
        sweep_orphans(base.path(), &own);
        assert!(moved.join(BACKREF).exists(), "a link's target was swept");
        assert!(base.path().join("boxkit-link").is_symlink());
        assert_eq!(theirs.exists(), as_root, "another user's orphan");
        for kept in [&a, &c, &d, &own, &other, &open] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(!b.exists(), "the orphan was kept");
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
