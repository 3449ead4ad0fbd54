//! The dependency rule of docs/architecture.md, read from the sources: a module uses only
//! modules of a lower layer (or itself). A violation fails with the file, the line and the
//! rule it breaks, so a reviewer sees it in CI without running anything else.
//!
//! Layers, bottom up (the number is the rank):
//! 0 digest, atomic, limits, timefmt, bootid, procfs, pow — small leaves
//! 1 image — OCI types and references
//! 2 layer, boxfile — layer tars; the Boxfile language
//! 3 store — the content-addressed store
//! 4 run, registry — the sandbox; the registry client
//! 5 container, build — containers; the build engine
//! 6 cli — argument parsing and output, used only by src/bin

use std::path::{Path, PathBuf};

const RANKS: &[(&str, u8)] = &[
    ("digest", 0),
    ("atomic", 0),
    ("limits", 0),
    ("timefmt", 0),
    ("bootid", 0),
    ("procfs", 0),
    ("pow", 0),
    ("image", 1),
    ("layer", 2),
    ("boxfile", 2),
    ("store", 3),
    ("run", 4),
    ("registry", 4),
    ("container", 5),
    ("build", 5),
    ("cli", 6),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line names through `crate::`: `crate::run::x`, `crate::{run, store}`.
fn crate_uses(line: &str) -> Vec<String> {
    let mut found = vec![];
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        // `boxkit_crate::` or `some_crate::` are not ours.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group; nested groups belong to their parent name.
            let mut depth = 0;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(std::mem::take(&mut name));
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && (c.is_alphanumeric() || c == '_' || c == ':') {
                    name.push(c);
                }
            }
            found.push(name);
        } else {
            found.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    found
        .into_iter()
        .map(|n| n.split("::").next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = vec![];
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "bin" || module == "lib" {
            continue;
        }
        let Some(own) = rank(&module) else {
            violations.push(format!(
                "src/{}: module `{module}` has no layer in tests/layering.rs (add it to RANKS and to docs/architecture.md)",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for used in crate_uses(line) {
                if used == module || used == "self" || used == "super" {
                    continue;
                }
                match rank(&used) {
                    Some(r) if r < own => {}
                    Some(r) => violations.push(format!(
                        "src/{}:{}: `{module}` (layer {own}) uses `crate::{used}` (layer {r}); a module may use only lower layers",
                        rel.display(),
                        n + 1
                    )),
                    None => {}
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "the dependency rule (docs/architecture.md) is broken:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_named_rules_of_issue_12_hold() {
    // Spelled out on their own, so that a change of RANKS cannot quietly drop them.
    assert_eq!(rank("cli"), RANKS.iter().map(|(_, r)| *r).max());
    for below_build in ["store", "run", "registry", "layer", "boxfile", "image"] {
        assert!(
            rank(below_build) < rank("build"),
            "{below_build} is below build"
        );
        assert!(
            rank(below_build) < rank("container"),
            "{below_build} is below container"
        );
    }
}

#[test]
fn crate_uses_reads_paths_and_groups() {
    assert_eq!(crate_uses("use crate::run::userns;"), ["run"]);
    assert_eq!(
        crate_uses("use crate::{digest::Digest, store::{Store, x}, run};"),
        ["digest", "store", "run"]
    );
    assert_eq!(
        crate_uses("let x = crate::cli::images::human_age(t);"),
        ["cli"]
    );
    assert!(crate_uses("use oci_crate::thing;").is_empty());
}

#[test]
fn no_source_file_is_over_700_lines() {
    // Issue 12: a file that outgrows this is split by concern (unit tests may move to a
    // sibling tests.rs, which counts too).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 700).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over 700 lines:\n{}",
        long.join("\n")
    );
}
