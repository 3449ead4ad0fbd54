//! The corpus: Boxfiles in the style of real projects (multi-stage Go, Rust, Node, Python,
//! apt/apk installs, heredocs, ARG before FROM, ONBUILD, escape directives). The real
//! `boxbuild --check` binary must accept each one, and each must survive the dump round trip.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use boxkit::boxfile;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Boxfile"))
        .collect();
    v.sort();
    assert!(v.len() >= 40, "corpus has only {} files", v.len());
    v
}

#[test]
fn boxbuild_check_accepts_the_corpus() {
    let mut failures = Vec::new();
    for f in corpus() {
        let out = Command::new(common::bin("boxbuild"))
            .arg("--check")
            .arg("-f")
            .arg(&f)
            .arg(f.parent().unwrap())
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: exit {:?}\n{}",
                f.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_dump_round_trips() {
    for f in corpus() {
        let src = std::fs::read_to_string(&f).unwrap();
        let bf = boxfile::parse(&src, &f).unwrap_or_else(|e| panic!("{}", e.render()));
        let dumped = boxfile::dump(&bf);
        let again = boxfile::parse(&dumped, Path::new("dump"))
            .unwrap_or_else(|e| panic!("{}: dump does not parse:\n{}", f.display(), e.render()));
        assert!(
            again.same_instructions(&bf),
            "{}: dump re-parses differently:\n{dumped}",
            f.display()
        );
    }
}

fn check(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(common::bin("boxbuild"))
        .arg("--check")
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exit_codes_and_rendering() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // No Boxfile at all: a clear error naming what was looked for.
    let (code, err) = check(d, &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Boxfile, Dockerfile, Containerfile"), "{err}");

    // Warnings only: exit 0, but 1 under --check=strict.
    std::fs::write(d.join("Dockerfile"), "FROM alpine\nCMD echo hi\n").unwrap();
    let (code, err) = check(d, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("JSONArgsRecommended"), "{err}");
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    let (code, _) = Command::new(common::bin("boxbuild"))
        .args(["--check=strict"])
        .arg(d)
        .output()
        .map(|o| (o.status.code(), ()))
        .unwrap();
    assert_eq!(code, Some(1));

    // Boxfile wins over Dockerfile; # check=error=true makes warnings fail.
    std::fs::write(
        d.join("Boxfile"),
        "# check=error=true\nFROM alpine\nCMD echo hi\n",
    )
    .unwrap();
    let (code, err) = check(d, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Boxfile:3:1"), "{err}");

    // An error: exit 1, snippet with caret and the suggestion.
    std::fs::write(
        d.join("bad"),
        "FROM alpine\nRUN --mont=type=cache,target=/x true\n",
    )
    .unwrap();
    let (code, err) = check(d, &["-f", d.join("bad").to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("unknown flag: --mont (did you mean --mount?)"),
        "{err}"
    );
    assert!(err.contains("bad:2:5"), "{err}");
    assert!(err.contains("^^^"), "{err}");
}
