//! A private store per test, for the image, volume and cache commands whose prune would
//! otherwise see other tests' objects.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::boxrun_common::{Who, stderr, stdout, tempdir};
use crate::common::{self, fixtures, fixtures::Fixture, users};

/// A private store with busybox loaded, owned by `who`.
pub struct Private {
    pub who: Who,
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Private {
    pub fn new(who: &Who) -> Private {
        let dir = tempdir();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        who.own_store(&root);
        let p = Private {
            who: who.clone(),
            _dir: dir,
            root,
        };
        let archive = std::fs::File::open(fixtures::oci_archive(Fixture::Busybox)).unwrap();
        let o = p
            .cmd("box")
            .args(["load", "-q"])
            .stdin(archive)
            .output()
            .unwrap();
        assert!(o.status.success(), "load: {}", stderr(&o));
        p
    }
    pub fn cmd(&self, bin: &str) -> Command {
        let b = common::bin(bin);
        let mut c = match &self.who {
            Who::Root => Command::new(b),
            Who::User(u) => users::command_as(u, &b),
        };
        c.arg("--root").arg(&self.root);
        c
    }
    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        let o = self
            .cmd(bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "[{}] {bin} {}\n  status {:?}\n  stdout {}\n  stderr {}",
            self.who.label(),
            args.join(" "),
            o.status.code(),
            stdout(&o).trim(),
            stderr(&o).trim()
        );
        o
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run("box", args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    }
    pub fn names(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"])
            .lines()
            .map(String::from)
            .collect()
    }
}
