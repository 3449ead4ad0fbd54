//! The caller's private runtime directory, where the keeper ([`super::keeper`]) records its
//! pid and the rootless bridge ([`super::rootless_net`]) its leases and helper.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

use thiserror::Error;

/// The runtime directory cannot be made or is not private to the caller.
#[derive(Debug, Error)]
#[error("runtime directory {path}: {cause}")]
pub struct RuntimeDirError {
    pub path: PathBuf,
    pub cause: String,
}

/// The caller's private runtime directory: `$XDG_RUNTIME_DIR/boxkit` when that directory is
/// the caller's, else `/tmp/boxkit-UID`. Made on demand with mode 0700; refused when it is not
/// a real directory owned by the caller and closed to others.
pub fn runtime_dir() -> Result<PathBuf, RuntimeDirError> {
    let uid = nix::unistd::geteuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == uid));
    let dir = match xdg {
        Some(d) => d.join("boxkit"),
        None => std::env::temp_dir().join(format!("boxkit-{uid}")),
    };
    let err = |cause: String| RuntimeDirError {
        path: dir.clone(),
        cause,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let m = std::fs::symlink_metadata(&dir).map_err(|e| err(e.to_string()))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(err(format!(
            "must be a directory owned by uid {uid} with mode 0700; remove it and retry"
        )));
    }
    Ok(dir)
}
