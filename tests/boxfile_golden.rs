//! Golden tests for the Boxfile parser. Each `tests/fixtures/boxfile/<case>/Boxfile` is
//! parsed and rendered into sections (the canonical dump, each instruction's line range and
//! stage, COPY/ADD source kinds, the per-stage expansion with the build args in the optional
//! `args` file, and the warnings); the result must equal `expected`. Every case must also
//! survive `parse(dump(parse(x))) == parse(x)`. Cases under `boxfile-errors/` must fail to
//! parse with exactly the diagnostics in `expected`. `BLESS=1` rewrites the expected files
//! (then read the diff: they are checked by hand).
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use boxkit::boxfile::{self, Boxfile, GlobalScope, Instruction, SourceKind};

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Boxfile").is_file())
        .collect();
    v.sort();
    v
}

fn platform() -> BTreeMap<String, String> {
    [
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn build_args(case: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(case.join("args"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render(bf: &Boxfile, args: &BTreeMap<String, String>) -> String {
    let mut out = String::from("== dump\n");
    out.push_str(&boxfile::dump(bf));
    out.push_str("== instructions\n");
    for a in &bf.global_args {
        let _ = writeln!(
            out,
            "{}-{} global ARG {}",
            a.start_line, a.end_line, a.node.name
        );
    }
    for s in &bf.stages {
        let _ = writeln!(
            out,
            "{}-{} stage {} name={:?} FROM",
            s.from.start_line, s.from.end_line, s.index, s.name
        );
        for i in &s.instructions {
            let _ = write!(
                out,
                "{}-{} stage {} {}",
                i.start_line,
                i.end_line,
                s.index,
                i.node.name()
            );
            if let Instruction::Copy(c) | Instruction::Add(c) = &i.node {
                for src in &c.sources {
                    let kind = match src.kind {
                        SourceKind::Local => "local",
                        SourceKind::Url => "url",
                        SourceKind::Git => "git",
                        SourceKind::Heredoc => "heredoc",
                    };
                    let _ = write!(out, " {kind}:{}", src.path);
                }
            }
            out.push('\n');
        }
    }
    out.push_str("== expanded\n");
    match GlobalScope::new(bf, args, &platform()) {
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
        }
        Ok(g) => {
            for s in &bf.stages {
                match g.expand_from(&s.from.node) {
                    Ok(e) => {
                        let _ = writeln!(
                            out,
                            "{} uses={:?}",
                            boxfile::dump_instruction(&e.instruction),
                            e.used_args
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(out, "error: {e}");
                    }
                }
                let mut env = g.stage_env();
                for i in &s.instructions {
                    match env.step(&i.node) {
                        Ok(e) => {
                            let text = boxfile::dump_instruction(&e.instruction);
                            let text = text.replace('\n', "\n  | ");
                            if e.used_args.is_empty() {
                                let _ = writeln!(out, "  {text}");
                            } else {
                                let _ = writeln!(out, "  {text} uses={:?}", e.used_args);
                            }
                        }
                        Err(e) => {
                            let _ = writeln!(out, "  error: {e}");
                        }
                    }
                }
                let run = env.run_args();
                if !run.is_empty() {
                    let _ = writeln!(out, "  run args: {run:?}");
                }
            }
        }
    }
    out.push_str("== warnings\n");
    for w in &bf.warnings {
        out.push_str(&w.plain());
        out.push('\n');
    }
    out
}

fn compare(case: &Path, actual: &str) -> Option<String> {
    let exp_path = case.join("expected");
    if std::env::var("BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&exp_path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&exp_path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{}: output differs\n--- expected\n{expected}\n--- actual\n{actual}",
            case.display()
        )
    })
}

#[test]
fn golden_cases() {
    let mut failures = Vec::new();
    let cases = cases("boxfile");
    assert!(cases.len() >= 25, "only {} golden cases", cases.len());
    for case in cases {
        let src = std::fs::read_to_string(case.join("Boxfile")).unwrap();
        let bf = match boxfile::parse(&src, Path::new("Boxfile")) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: {}", case.display(), e.render()));
                continue;
            }
        };
        let dumped = boxfile::dump(&bf);
        match boxfile::parse(&dumped, Path::new("dump")) {
            Ok(again) if again.same_instructions(&bf) => {}
            Ok(_) => failures.push(format!(
                "{}: dump re-parses differently:\n{dumped}",
                case.display()
            )),
            Err(e) => failures.push(format!(
                "{}: dump does not parse: {e}\n{dumped}",
                case.display()
            )),
        }
        if let Some(f) = compare(&case, &render(&bf, &build_args(&case))) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn error_cases() {
    let mut failures = Vec::new();
    let cases = cases("boxfile-errors");
    assert!(cases.len() >= 10, "only {} error cases", cases.len());
    for case in cases {
        let src = std::fs::read_to_string(case.join("Boxfile")).unwrap();
        let actual = match boxfile::parse(&src, Path::new("Boxfile")) {
            Ok(_) => "parsed without error\n".to_string(),
            Err(e) => e.errors.iter().map(|d| d.plain() + "\n").collect(),
        };
        if let Some(f) = compare(&case, &actual) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
