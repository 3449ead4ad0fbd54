//! ADD of a git repository (`ADD https://host/repo.git#ref:subdir /dest/`, `git@…`, `git://…`):
//! a shallow fetch of the ref with git(1) into the store's `tmp/`. The commit the ref names is
//! what the step's cache key covers, so a new commit misses and an unchanged ref hits. The
//! `.git` directory is left out unless `--keep-git-dir`.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("ADD {url}: git {step} failed: {why}")]
    Git {
        url: String,
        step: &'static str,
        why: String,
    },
    #[error("ADD {url}: create a temporary directory in {}: {source}", tmp.display())]
    Tmp {
        url: String,
        tmp: PathBuf,
        source: std::io::Error,
    },
}

/// A checked-out repository.
pub struct Checkout {
    /// Owns the checkout; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The commit the ref resolved to.
    pub commit: String,
    /// The directory to copy (relative to `dir`): the `:subdir` of the fragment, or "".
    pub subdir: String,
}

/// Split `url#ref:subdir`.
pub fn parse(source: &str) -> (String, Option<String>, String) {
    match source.split_once('#') {
        Some((url, frag)) => {
            let (r, sub) = frag.split_once(':').unwrap_or((frag, ""));
            let r = (!r.is_empty()).then(|| r.to_string());
            (url.to_string(), r, sub.trim_matches('/').to_string())
        }
        None => (source.to_string(), None, String::new()),
    }
}

fn git(dir: &Path, args: &[&str], url: &str, step: &'static str) -> Result<String, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| GitError::Git {
            url: url.to_string(),
            step,
            why: format!("cannot run git: {e} (install git)"),
        })?;
    if !out.status.success() {
        return Err(GitError::Git {
            url: url.to_string(),
            step,
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fetch `source` (with its `#ref:subdir` fragment) into a new directory under `tmp`.
pub fn fetch(source: &str, tmp: &Path) -> Result<Checkout, GitError> {
    let (url, r, subdir) = parse(source);
    let dir = tempfile::Builder::new()
        .prefix("add-git-")
        .tempdir_in(tmp)
        .map_err(|e| GitError::Tmp {
            url: url.clone(),
            tmp: tmp.to_path_buf(),
            source: e,
        })?;
    let d = dir.path();
    git(d, &["init", "-q"], &url, "init")?;
    git(d, &["remote", "add", "origin", &url], &url, "remote add")?;
    let want = r.as_deref().unwrap_or("HEAD");
    git(
        d,
        &["fetch", "-q", "--depth", "1", "origin", want],
        &url,
        "fetch",
    )?;
    git(d, &["checkout", "-q", "FETCH_HEAD"], &url, "checkout")?;
    let commit = git(d, &["rev-parse", "HEAD"], &url, "rev-parse")?;
    Ok(Checkout {
        dir,
        commit,
        subdir,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn fragments_name_a_ref_and_a_subdir() {
        assert_eq!(
            super::parse("https://h/r.git#v1.2:docs/"),
            ("https://h/r.git".into(), Some("v1.2".into()), "docs".into())
        );
        assert_eq!(
            super::parse("git@h:r.git"),
            ("git@h:r.git".into(), None, String::new())
        );
    }
}
