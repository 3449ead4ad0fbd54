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

/// A small HTTP server on 127.0.0.1: `/small` is a short file; `/big` announces 10 GiB of
/// zeros; `/endless` streams zeros with no length (ended by closing). Either stream stops
/// after 64 MiB at most, so an uncapped client cannot fill the disk; `sent` counts the bytes
/// the client took.
struct HttpServer {
    port: u16,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HttpServer {
    fn start() -> HttpServer {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { break };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    let _ = r.read_line(&mut line);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let head = match path.as_str() {
                        "/small" => {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
                            );
                            return;
                        }
                        "/big" => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            10u64 << 30
                        ),
                        "/endless" => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
                        _ => {
                            let _ = conn.write_all(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            return;
                        }
                    };
                    let _ = conn.write_all(head.as_bytes());
                    let chunk = vec![0u8; 1 << 16];
                    for _ in 0..(64 << 20) / chunk.len() {
                        if conn.write_all(&chunk).is_err() {
                            return;
                        }
                        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        HttpServer { port, sent }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[test]
fn an_add_download_over_the_cap_stops_fails_and_leaves_no_partial_file() {
    let Some(who) = Who::root() else { return };
    let e = Env::new(who);
    let cap = [("BOX_MAX_DOWNLOAD_SIZE", "1m")];
    for path in ["/big", "/endless"] {
        let srv = HttpServer::start();
        let url = srv.url(path);
        e.boxfile(&format!("FROM busybox\nADD {url} /data\n"));
        let o = e.build_env(&["-t", "dl"], &cap);
        assert_eq!(o.status.code(), Some(1), "{path}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&url) && err.contains("1 MiB") && err.contains("BOX_MAX_DOWNLOAD_SIZE"),
            "{path}: the error names the URL, the cap and the setting: {err}"
        );
        let taken = srv.sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            taken < 32 << 20,
            "{path}: the client kept reading ({taken} bytes) past the cap"
        );
        let tmp: Vec<_> = std::fs::read_dir(e.store().join("tmp"))
            .unwrap()
            .flatten()
            .map(|d| d.file_name())
            .collect();
        assert!(tmp.is_empty(), "{path}: left in the store's tmp/: {tmp:?}");
    }
    // Under the cap, a download works as ever.
    let srv = HttpServer::start();
    e.boxfile(&format!("FROM busybox\nADD {} /data\n", srv.url("/small")));
    let o = e.build_env(&["-t", "dl"], &cap);
    assert!(o.status.success(), "{}", stderr(&o));
}
