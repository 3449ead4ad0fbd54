//! Lint rules that need the whole file (stages, ARG scopes): the table [`RULES`], one named
//! function per rule with the rule's id. Rules that only need one instruction's text (casing,
//! legacy forms, JSON args) are raised while parsing that instruction, in [`super::parse`].
//! Names follow BuildKit's build checks. This module depends on the parse tree
//! ([`super::instruction`]) and on [`Locator`], never on the parser itself.

use std::collections::BTreeSet;

use super::diag::{Diagnostic, Locator, Severity};
use super::instruction::*;
use super::names::{self, rule};
use super::shell::Lex;

/// A whole-file rule: its id (BuildKit's name) and the check that emits its findings.
struct Rule {
    id: &'static str,
    check: fn(&File, &mut Sink),
}

/// The rules, in the order their findings are emitted (findings on the same line and column
/// keep this order after the parser sorts them).
const RULES: &[Rule] = &[
    Rule {
        id: rule::SECRETS_USED_IN_ARG_OR_ENV,
        check: secrets_used_in_arg_or_env,
    },
    Rule {
        id: rule::DUPLICATE_STAGE_NAME,
        check: duplicate_stage_name,
    },
    Rule {
        id: rule::RESERVED_STAGE_NAME,
        check: reserved_stage_name,
    },
    Rule {
        id: rule::UNDEFINED_ARG_IN_FROM,
        check: undefined_arg_in_from,
    },
    Rule {
        id: rule::INVALID_DEFAULT_ARG_IN_FROM,
        check: invalid_default_arg_in_from,
    },
    Rule {
        id: rule::MULTIPLE_INSTRUCTIONS_DISALLOWED,
        check: multiple_instructions_disallowed,
    },
    Rule {
        id: rule::WORKDIR_RELATIVE_PATH,
        check: workdir_relative_path,
    },
    Rule {
        id: rule::UNDEFINED_VAR,
        check: undefined_var,
    },
];

/// Run every rule over a parsed file.
pub(crate) fn lint(bf: &Boxfile, loc: &Locator) -> Vec<Diagnostic> {
    let file = File::new(bf);
    let mut out = Vec::new();
    for r in RULES {
        let mut sink = Sink {
            loc,
            rule: r.id,
            out: &mut out,
        };
        (r.check)(&file, &mut sink);
    }
    out
}

/// Where one rule's findings go, located and tagged with that rule's id.
struct Sink<'a> {
    loc: &'a Locator<'a>,
    rule: &'static str,
    out: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    fn warn<T>(&mut self, at: &Located<T>, message: String, needle: Option<&str>) {
        self.out.push(self.loc.diag(
            at.start_line,
            at.end_line,
            Severity::Warning,
            Some(self.rule),
            message,
            needle,
        ));
    }
}

/// The file and what several rules derive from it: the global ARG names and the values their
/// defaults alone give (no build args).
struct File<'a> {
    bf: &'a Boxfile,
    esc: char,
    global: Vec<&'a str>,
    defaults: Vec<(String, String)>,
}

impl<'a> File<'a> {
    fn new(bf: &'a Boxfile) -> Self {
        let esc = bf.directives.escape;
        let global = bf
            .global_args
            .iter()
            .map(|a| a.node.name.as_str())
            .collect();
        let mut defaults: Vec<(String, String)> = Vec::new();
        for a in &bf.global_args {
            if let Some(d) = &a.node.default {
                let env = |k: &str| default_of(&defaults, k);
                if let Ok(p) = Lex::new(esc).process(d, &env) {
                    defaults.push((a.node.name.clone(), p.result));
                }
            }
        }
        File {
            bf,
            esc,
            global,
            defaults,
        }
    }

    /// Names a FROM line may use: global ARGs and the automatic platform ARGs.
    fn global_known(&self, k: &str) -> bool {
        self.global.contains(&k) || names::PLATFORM_ARGS.contains(&k)
    }
}

fn default_of(defaults: &[(String, String)], k: &str) -> Option<String> {
    defaults
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

/// Names a word refers to, and which of them `known` does not define.
fn vars_in(
    word: &str,
    escape: char,
    known: &dyn Fn(&str) -> bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let env = |k: &str| known(k).then(String::new);
    match Lex::new(escape).process(word, &env) {
        Ok(p) => (p.matched, p.unmatched),
        Err(_) => Default::default(),
    }
}

/// BuildKit's heuristic: a name part (split on `_`) that is a secret-ish word, unless a part
/// says `public`.
fn looks_secret(name: &str) -> bool {
    let parts: Vec<String> = name.split('_').map(|p| p.to_ascii_lowercase()).collect();
    let secret = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    parts.iter().any(|p| secret.contains(&p.as_str())) && !parts.iter().any(|p| p == "public")
}

fn closest<'a>(name: &str, cands: impl IntoIterator<Item = &'a str>) -> String {
    match names::suggest(name, cands) {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// A base image reference that a default ARG value left empty or broken (`alpine:`).
fn invalid_image_ref(s: &str) -> bool {
    s.is_empty()
        || s.ends_with(':')
        || s.ends_with('@')
        || s.starts_with(':')
        || s.starts_with('/')
        || s.contains("::")
        || s.chars().any(char::is_whitespace)
}

fn secrets_used_in_arg_or_env(f: &File, out: &mut Sink) {
    let message = |kind: &str, name: &str| {
        format!("Do not use ARG or ENV instructions for sensitive data ({kind} {name:?})")
    };
    for a in &f.bf.global_args {
        let name = &a.node.name;
        if looks_secret(name) {
            out.warn(a, message("ARG", name), Some(name));
        }
    }
    for ins in f.bf.stages.iter().flat_map(|s| &s.instructions) {
        let declared: Vec<(&str, &str)> = match &ins.node {
            Instruction::Arg(decls) => decls.iter().map(|d| ("ARG", d.name.as_str())).collect(),
            Instruction::Env(kv) => kv.pairs.iter().map(|p| ("ENV", p.key.as_str())).collect(),
            _ => continue,
        };
        for (kind, name) in declared {
            if looks_secret(name) {
                out.warn(ins, message(kind, name), Some(name));
            }
        }
    }
}

fn duplicate_stage_name(f: &File, out: &mut Sink) {
    let mut seen_names: Vec<&str> = Vec::new();
    for stage in &f.bf.stages {
        if let Some(name) = &stage.name {
            if seen_names.contains(&name.as_str()) {
                out.warn(
                    &stage.from,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                    stage.from.node.name.as_deref(),
                );
            }
            seen_names.push(name);
        }
    }
}

fn reserved_stage_name(f: &File, out: &mut Sink) {
    for stage in &f.bf.stages {
        if let Some(name) = &stage.name
            && names::RESERVED_STAGE_NAMES.contains(&name.as_str())
        {
            out.warn(
                &stage.from,
                format!("Stage name should not use the same name as reserved stage {name:?}"),
                stage.from.node.name.as_deref(),
            );
        }
    }
}

fn undefined_arg_in_from(f: &File, out: &mut Sink) {
    let known = |k: &str| f.global_known(k);
    for stage in &f.bf.stages {
        let from = &stage.from;
        for word in std::iter::once(&from.node.image).chain(from.node.platform.as_ref()) {
            let (_, undefined) = vars_in(word, f.esc, &known);
            for u in undefined {
                let hint = closest(
                    &u,
                    f.global
                        .iter()
                        .copied()
                        .chain(names::PLATFORM_ARGS.iter().copied()),
                );
                out.warn(
                    from,
                    format!("FROM argument '{u}' is not declared{hint}"),
                    Some(&u),
                );
            }
        }
    }
}

fn invalid_default_arg_in_from(f: &File, out: &mut Sink) {
    let known = |k: &str| f.global_known(k);
    for stage in &f.bf.stages {
        let from = &stage.from;
        let (used, _) = vars_in(&from.node.image, f.esc, &known);
        if !used.iter().any(|u| f.global.contains(&u.as_str())) {
            continue;
        }
        let env = |k: &str| default_of(&f.defaults, k);
        let expanded = Lex::new(f.esc)
            .process(&from.node.image, &env)
            .map(|p| p.result)
            .unwrap_or_default();
        if invalid_image_ref(&expanded) {
            out.warn(
                from,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    from.node.image
                ),
                None,
            );
        }
    }
}

fn multiple_instructions_disallowed(f: &File, out: &mut Sink) {
    let counted = [names::CMD, names::ENTRYPOINT, names::HEALTHCHECK];
    for stage in &f.bf.stages {
        for (i, ins) in stage.instructions.iter().enumerate() {
            let name = ins.node.name();
            if counted.contains(&name)
                && stage.instructions[i + 1..]
                    .iter()
                    .any(|later| later.node.name() == name)
            {
                out.warn(
                    ins,
                    format!(
                        "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                    ),
                    None,
                );
            }
        }
    }
}

/// A relative WORKDIR before any absolute one in the stage depends on the base image's.
fn workdir_relative_path(f: &File, out: &mut Sink) {
    for stage in &f.bf.stages {
        let mut absolute_workdir = false;
        for ins in &stage.instructions {
            let Instruction::Workdir(w) = &ins.node else {
                continue;
            };
            let unquoted = w.trim_matches(['"', '\'']);
            // `C:\app` is absolute on Windows images.
            let drive = unquoted.as_bytes().get(1) == Some(&b':')
                && unquoted.as_bytes()[0].is_ascii_alphabetic();
            if unquoted.starts_with('/') || unquoted.starts_with('$') || drive {
                absolute_workdir = true;
            } else if !absolute_workdir {
                out.warn(
                    ins,
                    format!(
                        "Relative workdir {w:?} can have unexpected results if the base image changes"
                    ),
                    Some(w),
                );
            }
        }
    }
}

/// A variable used before any ARG or ENV of the stage defines it. Only checked for stages
/// that start from scratch (possibly via other stages), since a base image brings its own
/// ENV.
fn undefined_var(f: &File, out: &mut Sink) {
    for stage in &f.bf.stages {
        if !from_scratch(f.bf, stage) {
            continue;
        }
        let mut scope: Vec<String> = Vec::new();
        for ins in &stage.instructions {
            let known = |k: &str| scope.iter().any(|s| s == k);
            for w in expanded_words(&ins.node) {
                let (_, undefined) = vars_in(w, f.esc, &known);
                for u in undefined {
                    let hint = closest(&u, scope.iter().map(String::as_str));
                    out.warn(
                        ins,
                        format!("Usage of undefined variable '${u}'{hint}"),
                        Some(&u),
                    );
                }
            }
            match &ins.node {
                Instruction::Arg(decls) => scope.extend(decls.iter().map(|d| d.name.clone())),
                Instruction::Env(kv) => scope.extend(kv.pairs.iter().map(|p| p.key.clone())),
                _ => {}
            }
        }
    }
}

/// Whether the stage's variables are all knowable here: it starts from scratch, directly or
/// through earlier stages.
fn from_scratch(bf: &Boxfile, stage: &Stage) -> bool {
    let mut root = Some(stage);
    let mut hops = 0;
    loop {
        let Some(s) = root else { return false };
        let img = s.from.node.image.to_ascii_lowercase();
        if img == "scratch" {
            return true;
        }
        hops += 1;
        if hops > bf.stages.len() {
            return false;
        }
        root = bf.stages[..s.index]
            .iter()
            .find(|p| p.name.as_deref() == Some(img.as_str()));
    }
}

/// The words of an instruction that the builder expands (and so may name variables).
fn expanded_words(ins: &Instruction) -> Vec<&str> {
    let mut words: Vec<&str> = Vec::new();
    match ins {
        Instruction::Workdir(w) => words.push(w),
        Instruction::Arg(decls) => words.extend(decls.iter().filter_map(|d| d.default.as_deref())),
        Instruction::Env(kv) | Instruction::Label(kv) => {
            words.extend(kv.pairs.iter().map(|p| p.value.as_str()))
        }
        Instruction::User(u) | Instruction::StopSignal(u) => words.push(u),
        Instruction::Expose(v) => words.extend(v.iter().map(String::as_str)),
        Instruction::Volume { paths, .. } => words.extend(paths.iter().map(String::as_str)),
        Instruction::Copy(c) | Instruction::Add(c) => {
            words.extend(c.sources.iter().map(|s| s.path.as_str()));
            words.push(&c.dest);
        }
        _ => {}
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_known_and_distinct() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                rule::ALL.contains(&r.id),
                "{} is not in names::rule::ALL",
                r.id
            );
            assert!(
                RULES[..i].iter().all(|o| o.id != r.id),
                "{} is in the table twice",
                r.id
            );
        }
    }

    #[test]
    fn each_finding_carries_the_id_of_the_rule_that_made_it() {
        let src =
            "ARG TOKEN=1\nFROM scratch AS context\nWORKDIR rel\nCMD a\nCMD b\nCOPY $nope /x\n";
        let bf = crate::boxfile::parse(src, std::path::Path::new("Boxfile")).unwrap();
        let rules: Vec<_> = bf.warnings.iter().filter_map(|w| w.rule).collect();
        for id in [
            rule::SECRETS_USED_IN_ARG_OR_ENV,
            rule::RESERVED_STAGE_NAME,
            rule::WORKDIR_RELATIVE_PATH,
            rule::MULTIPLE_INSTRUCTIONS_DISALLOWED,
            rule::UNDEFINED_VAR,
        ] {
            assert!(rules.contains(&id), "{id} missing from {rules:?}");
        }
        let lines = |id| {
            bf.warnings
                .iter()
                .filter(|w| w.rule == Some(id))
                .map(|w| w.line)
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(rule::SECRETS_USED_IN_ARG_OR_ENV), [1]);
        assert_eq!(lines(rule::RESERVED_STAGE_NAME), [2]);
        assert_eq!(lines(rule::WORKDIR_RELATIVE_PATH), [3]);
        assert_eq!(lines(rule::MULTIPLE_INSTRUCTIONS_DISALLOWED), [4]);
        assert_eq!(lines(rule::UNDEFINED_VAR), [6]);
    }
}
