//! ADD of remote sources from a hostile Boxfile: a git ref or URL that looks like a git
//! option is refused and never reaches git as one; a URL download larger than the configured
//! cap stops, fails clearly and leaves no partial file in the store.

mod build_common;
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use build_common::{Env, Who, stderr};

/// `sh -c CMD` in `dir` with a fixed git identity; asserts success.
fn sh(dir: &Path, cmd: &str) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(o.status.success(), "{cmd}: {}", stderr(&o));
}

/// A bare repository `repo.git` under `dir` (one commit on `main`, holding README), and a
/// stand-in for ssh that runs the remote command locally: git over `ssh://` then executes its
/// upload-pack command on this machine, which is what makes an injected `--upload-pack`
/// observable (on a real ssh server it would run there, with the builder's keys).
fn repo_and_fake_ssh(dir: &Path) -> (String, String) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README"), "from git\n").unwrap();
    sh(
        dir,
        "git -C work init -q -b main && git -C work add -A && git -C work commit -qm one \
         && git clone -q --bare work repo.git && chmod -R a+rX repo.git",
    );
    let ssh = dir.join("fake-ssh");
    // The last argument is the remote command; everything before it (host, options) goes.
    // The repository belongs to the test's root, the builder may run as another uid: git
    // clears GIT_CONFIG_* for its transport, so the exception is made here.
    std::fs::write(
        &ssh,
        "#!/bin/sh\nfor last; do :; done\nexport GIT_CONFIG_COUNT=1 \
         GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'\nexec sh -c \"$last\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    (
        format!("ssh://localhost{}", dir.join("repo.git").display()),
        ssh.display().to_string(),
    )
}

fn git_env(ssh: &str) -> Vec<(&str, &str)> {
    vec![("GIT_SSH_COMMAND", ssh), ("GIT_SSH_VARIANT", "simple")]
}

#[test]
fn a_git_ref_that_looks_like_an_option_is_refused_and_never_run() {
    let Some(who) = Who::root() else { return };
    if !common::have_tool("git") {
        return common::skip("git is not installed");
    }
    let e = Env::new(who);
    let t = tempfile::tempdir().unwrap();
    let (url, ssh) = repo_and_fake_ssh(t.path());
    let env = git_env(&ssh);
    // The transport works: an ordinary ref over this ssh is fetched.
    e.boxfile(&format!("FROM busybox\nADD {url}#main /src/\n"));
    let o = e.build_env(&["-t", "git-ok"], &env);
    assert!(o.status.success(), "{}", stderr(&o));

    let canary = t.path().join("canary");
    let hostile = format!("--upload-pack=touch {};git-upload-pack", canary.display());
    e.boxfile(&format!(
        "FROM busybox\nADD [\"{url}#{hostile}\", \"/src/\"]\n"
    ));
    let o = e.build_env(&["-t", "git-hostile"], &env);
    assert!(
        !canary.exists(),
        "the ref was run as git's --upload-pack option"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("invalid git ref") && err.contains("--upload-pack"),
        "the error names the ref: {err}"
    );
    let tmp: Vec<_> = std::fs::read_dir(e.store().join("tmp"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert!(tmp.is_empty(), "left in the store's tmp/: {tmp:?}");
}

#[test]
fn a_git_url_whose_host_or_user_looks_like_an_option_is_refused() {
    let Some(who) = Who::root() else { return };
    if !common::have_tool("git") {
        return common::skip("git is not installed");
    }
    let e = Env::new(who);
    let t = tempfile::tempdir().unwrap();
    let (_, ssh) = repo_and_fake_ssh(t.path());
    let env = git_env(&ssh);
    let canary = t.path().join("canary");
    let c = canary.display();
    for url in [
        format!("ssh://-oProxyCommand=touch${{IFS}}{c}/r.git"),
        format!("ssh://-oProxyCommand=touch${{IFS}}{c}@localhost/r.git"),
        format!("git@-oProxyCommand=touch${{IFS}}{c}:r.git"),
    ] {
        e.boxfile(&format!("FROM busybox\nADD {url} /src/\n"));
        let o = e.build_env(&["-t", "git-url"], &env);
        assert_eq!(o.status.code(), Some(1), "{url}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("looks like a command-line option"),
            "{url}: {err}"
        );
        assert!(!canary.exists(), "{url}: an ssh option was run");
    }
}
