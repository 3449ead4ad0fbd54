//! boxrun pulls a missing image (docker.io names through the registries.conf mirror of a real
//! local registry), and later runs use the unpacked layers without re-extracting, as root and
//! rootless.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::registry::Registry;

fn snapshot(layers: &Path) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = std::fs::read_dir(layers)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_missing_image_is_pulled_once_and_later_runs_reuse_its_layers() {
    if !common::is_root() {
        return common::skip("the rootless half creates users as root");
    }
    let Some(reg) = (if common::registry::available() {
        Some(Registry::with_fixtures())
    } else {
        common::skip("docker-registry is not installed");
        None
    }) else {
        return;
    };
    common::users::ensure_root_range();
    for user in [None, Some(common::users::with_range())] {
        let dir = tempfile::Builder::new()
            .prefix("boxrun-pull-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("registries.conf");
        std::fs::copy(reg.registries_conf(), &conf).unwrap();
        if let Some(u) = &user {
            for p in [dir.path(), conf.as_path()] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
            }
        }
        let store = dir.path().join("store");
        let run = |args: &[&str]| -> Output {
            let mut c = match &user {
                None => Command::new("/usr/bin/env"),
                Some(u) => common::users::command_as(u, Path::new("/usr/bin/env")),
            };
            c.arg(format!("BOX_REGISTRIES_CONF={}", conf.display()))
                .arg(format!("XDG_RUNTIME_DIR={}", dir.path().display()))
                .arg(common::bin("boxrun"))
                .arg("--root")
                .arg(&store)
                .args(args)
                .stdin(Stdio::null());
            let o = c.output().unwrap();
            eprintln!(
                "[{}] boxrun {}: {:?}\n{}\n{}",
                if user.is_some() { "rootless" } else { "root" },
                args.join(" "),
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            o
        };
        let o = run(&[
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "pulled-and-ran",
        ]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "pulled-and-ran\n");
        let layers = store.join("layers");
        let before = snapshot(&layers);
        assert!(!before.is_empty());
        // Present now: --pull never works, and nothing is extracted again.
        let o = run(&[
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0));
        let o = run(&[
            "--rm",
            "--pull",
            "always",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(snapshot(&layers), before);
        // A name the registry does not have: docker's 125 with the reason.
        let o = run(&["--rm", "no-such-repo-here:1", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-repo-here"));
    }
}
