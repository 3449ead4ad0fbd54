//! ADD of a git repository (`ADD https://host/repo.git#ref:subdir /dest/`, `git@…`, `git://…`):
//! a shallow fetch of the ref with git(1) into the store's `tmp/`. The commit the ref names is
//! what the step's cache key covers, so a new commit misses and an unchanged ref hits. The
//! `.git` directory is left out unless `--keep-git-dir`.
//!
//! The URL and the ref come from the Boxfile, which may be hostile. git parses options after
//! positional arguments, so a ref such as `--upload-pack=CMD` given to `git fetch` would run
//! CMD (on the ssh server, or locally for a local transport), and a host `-oProxyCommand=CMD`
//! would reach ssh as an option (CVE-2017-1000117's class). So the ref is checked against
//! git's ref-name rules (check-ref-format) and may not start with `-` or `+`, the URL's user
//! and host may not start with `-`, neither may hold whitespace or control characters, every
//! positional argument follows `--`, and git may use only the network transports ADD names.

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
    #[error("ADD {url}: invalid git ref {git_ref:?}: {why}")]
    BadRef {
        url: String,
        git_ref: String,
        why: &'static str,
    },
    #[error("ADD {url}: {why}; refused")]
    BadUrl { url: String, why: String },
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

/// Why `r` cannot be a ref to fetch, if it cannot: git's check-ref-format rules (a full
/// commit id passes them too), plus no leading `-` (an option) or `+` (a forced refspec).
fn check_ref(r: &str) -> Result<(), &'static str> {
    if r.starts_with('-') {
        return Err("a ref may not start with '-' (git would read it as an option)");
    }
    if r.starts_with('+') {
        return Err("a ref may not start with '+'");
    }
    if r == "@" {
        return Err("'@' alone is not a ref");
    }
    if r.chars().any(|c| {
        c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\')
    }) {
        return Err("a ref may not hold spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if r.contains("..") || r.contains("@{") {
        return Err("a ref may not contain '..' or '@{'");
    }
    if r.ends_with('.') {
        return Err("a ref may not end with '.'");
    }
    for part in r.split('/') {
        if part.is_empty() {
            return Err("a ref may not start or end with '/' or contain '//'");
        }
        if part.starts_with('.') || part.ends_with(".lock") {
            return Err("no part of a ref may start with '.' or end with '.lock'");
        }
    }
    Ok(())
}

/// Why `url` cannot be given to git, if it cannot: whitespace or control characters, or a
/// user or host that starts with `-` (ssh would take it as an option).
fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with('-') {
        return Err("the URL looks like a command-line option".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL holds whitespace or control characters".into());
    }
    // scheme://[user@]host[:port]/path, or scp-like [user@]host:path.
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(""),
        None => url.split(':').next().unwrap_or(""),
    };
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    for (what, v) in [("user", user), ("host", Some(host))] {
        if let Some(v) = v
            && v.starts_with('-')
        {
            return Err(format!("the {what} {v:?} looks like a command-line option"));
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str], url: &str, step: &'static str) -> Result<String, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // The transports ADD accepts (is_git in the Boxfile parser); never file:// or ext::,
        // also not through a redirect or a submodule.
        .env("GIT_ALLOW_PROTOCOL", "git:ssh:http:https")
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
    check_url(&url).map_err(|why| GitError::BadUrl {
        url: url.clone(),
        why,
    })?;
    if let Some(r) = &r {
        check_ref(r).map_err(|why| GitError::BadRef {
            url: url.clone(),
            git_ref: r.clone(),
            why,
        })?;
    }
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
    // `--` everywhere: what follows is never an option, whatever the checks above let by.
    git(
        d,
        &["remote", "add", "--", "origin", &url],
        &url,
        "remote add",
    )?;
    let want = r.as_deref().unwrap_or("HEAD");
    git(
        d,
        &["fetch", "-q", "--depth", "1", "--", "origin", want],
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

    #[test]
    fn refs_follow_check_ref_format_and_never_look_like_options() {
        for ok in [
            "main",
            "v1.2",
            "refs/tags/v1.2",
            "feature/x-y_z",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert_eq!(super::check_ref(ok), Ok(()), "{ok}");
        }
        for bad in [
            "--upload-pack=touch /x",
            "-q",
            "+main",
            "a b",
            "a..b",
            "a@{1}",
            "@",
            "x~1",
            "x^",
            "x?",
            "x*",
            "x[",
            "x\\y",
            "/x",
            "x/",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "x.",
            "tab\there",
        ] {
            assert!(super::check_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_whose_user_or_host_start_with_a_dash_are_refused() {
        for ok in [
            "https://example.com/r.git",
            "git://127.0.0.1:9418/r.git",
            "ssh://git@example.com:22/r.git",
            "git@github.com:o/r.git",
            "ssh://localhost/tmp/-odd/r.git",
        ] {
            assert!(super::check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ssh://-oProxyCommand=x/r.git",
            "ssh://-oProxyCommand=x@h/r.git",
            "git@-oProxyCommand=x:r.git",
            "-u/r.git",
            "https://h/r .git",
            "https://h/r\n.git",
        ] {
            assert!(super::check_url(bad).is_err(), "{bad}");
        }
    }
}
