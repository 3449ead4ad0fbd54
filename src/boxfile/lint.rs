//! Lint rules that need the whole file (stages, ARG scopes). Rules that only need one
//! instruction's text (casing, legacy forms, JSON args) are raised while parsing that
//! instruction, in [`super::parse`]. Names follow BuildKit's build checks.

use std::collections::BTreeSet;

use super::diag::{Diagnostic, Severity};
use super::instruction::*;
use super::names::{self, rule};
use super::parse::Locator;
use super::shell::Lex;

fn warn<T>(
    loc: &Locator,
    at: &Located<T>,
    rule: &'static str,
    message: String,
    needle: Option<&str>,
) -> Diagnostic {
    loc.diag(
        at.start_line,
        at.end_line,
        Severity::Warning,
        Some(rule),
        message,
        needle,
    )
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

fn secret_warning<T>(loc: &Locator, at: &Located<T>, kind: &str, name: &str) -> Diagnostic {
    warn(
        loc,
        at,
        rule::SECRETS_USED_IN_ARG_OR_ENV,
        format!("Do not use ARG or ENV instructions for sensitive data ({kind} {name:?})"),
        Some(name),
    )
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

pub(crate) fn lint(bf: &Boxfile, loc: &Locator) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let esc = bf.directives.escape;

    let global: Vec<&str> = bf
        .global_args
        .iter()
        .map(|a| a.node.name.as_str())
        .collect();
    for a in &bf.global_args {
        if looks_secret(&a.node.name) {
            out.push(secret_warning(loc, a, "ARG", &a.node.name));
        }
    }
    let global_known = |k: &str| global.contains(&k) || names::PLATFORM_ARGS.contains(&k);

    // Global ARG defaults alone (no build args), for InvalidDefaultArgInFrom.
    let mut defaults: Vec<(String, String)> = Vec::new();
    for a in &bf.global_args {
        if let Some(d) = &a.node.default {
            let env = |k: &str| {
                defaults
                    .iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            if let Ok(p) = Lex::new(esc).process(d, &env) {
                defaults.push((a.node.name.clone(), p.result));
            }
        }
    }

    let mut seen_names: Vec<&str> = Vec::new();
    for stage in &bf.stages {
        let from = &stage.from;
        if let Some(name) = &stage.name {
            if seen_names.contains(&name.as_str()) {
                out.push(warn(
                    loc,
                    from,
                    rule::DUPLICATE_STAGE_NAME,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                    from.node.name.as_deref(),
                ));
            }
            seen_names.push(name);
            if names::RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                out.push(warn(
                    loc,
                    from,
                    rule::RESERVED_STAGE_NAME,
                    format!("Stage name should not use the same name as reserved stage {name:?}"),
                    from.node.name.as_deref(),
                ));
            }
        }
        for word in std::iter::once(&from.node.image).chain(from.node.platform.as_ref()) {
            let (_, undefined) = vars_in(word, esc, &global_known);
            for u in undefined {
                let hint = closest(
                    &u,
                    global
                        .iter()
                        .copied()
                        .chain(names::PLATFORM_ARGS.iter().copied()),
                );
                out.push(warn(
                    loc,
                    from,
                    rule::UNDEFINED_ARG_IN_FROM,
                    format!("FROM argument '{u}' is not declared{hint}"),
                    Some(&u),
                ));
            }
        }
        let (used, _) = vars_in(&from.node.image, esc, &global_known);
        if used.iter().any(|u| global.contains(&u.as_str())) {
            let env = |k: &str| {
                defaults
                    .iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let expanded = Lex::new(esc)
                .process(&from.node.image, &env)
                .map(|p| p.result)
                .unwrap_or_default();
            if invalid_image_ref(&expanded) {
                out.push(warn(
                    loc,
                    from,
                    rule::INVALID_DEFAULT_ARG_IN_FROM,
                    format!(
                        "Default value for ARG {} results in empty or invalid base image name",
                        from.node.image
                    ),
                    None,
                ));
            }
        }

        // Whether the stage's variables are all knowable here: only when it starts from
        // scratch (possibly via other stages), since a base image brings its own ENV.
        let mut root = Some(stage);
        let mut hops = 0;
        let from_scratch = loop {
            let Some(s) = root else { break false };
            let img = s.from.node.image.to_ascii_lowercase();
            if img == "scratch" {
                break true;
            }
            hops += 1;
            if hops > bf.stages.len() {
                break false;
            }
            root = bf.stages[..s.index]
                .iter()
                .find(|p| p.name.as_deref() == Some(img.as_str()));
        };

        let mut absolute_workdir = false;
        let mut scope: Vec<String> = Vec::new();
        let counted = [names::CMD, names::ENTRYPOINT, names::HEALTHCHECK];
        for (i, ins) in stage.instructions.iter().enumerate() {
            let name = ins.node.name();
            if counted.contains(&name)
                && stage.instructions[i + 1..]
                    .iter()
                    .any(|later| later.node.name() == name)
            {
                out.push(warn(
                    loc,
                    ins,
                    rule::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                    format!(
                        "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                    ),
                    None,
                ));
            }
            let mut words: Vec<&str> = Vec::new();
            match &ins.node {
                Instruction::Workdir(w) => {
                    let unquoted = w.trim_matches(['"', '\'']);
                    // `C:\app` is absolute on Windows images.
                    let drive = unquoted.as_bytes().get(1) == Some(&b':')
                        && unquoted.as_bytes()[0].is_ascii_alphabetic();
                    if unquoted.starts_with('/') || unquoted.starts_with('$') || drive {
                        absolute_workdir = true;
                    } else if !absolute_workdir {
                        out.push(warn(
                            loc,
                            ins,
                            rule::WORKDIR_RELATIVE_PATH,
                            format!(
                                "Relative workdir {w:?} can have unexpected results if the base image changes"
                            ),
                            Some(w),
                        ));
                    }
                    words.push(w);
                }
                Instruction::Arg(decls) => {
                    for d in decls {
                        if looks_secret(&d.name) {
                            out.push(secret_warning(loc, ins, "ARG", &d.name));
                        }
                        words.extend(d.default.as_deref());
                    }
                }
                Instruction::Env(kv) => {
                    for p in &kv.pairs {
                        if looks_secret(&p.key) {
                            out.push(secret_warning(loc, ins, "ENV", &p.key));
                        }
                        words.push(&p.value);
                    }
                }
                Instruction::Label(kv) => kv.pairs.iter().for_each(|p| words.push(&p.value)),
                Instruction::User(u) | Instruction::StopSignal(u) => words.push(u),
                Instruction::Expose(v) => words.extend(v.iter().map(String::as_str)),
                Instruction::Volume { paths, .. } => words.extend(paths.iter().map(String::as_str)),
                Instruction::Copy(c) | Instruction::Add(c) => {
                    words.extend(c.sources.iter().map(|s| s.path.as_str()));
                    words.push(&c.dest);
                }
                _ => {}
            }
            if from_scratch {
                let known = |k: &str| scope.iter().any(|s| s == k);
                for w in &words {
                    let (_, undefined) = vars_in(w, esc, &known);
                    for u in undefined {
                        let hint = closest(&u, scope.iter().map(String::as_str));
                        out.push(warn(
                            loc,
                            ins,
                            rule::UNDEFINED_VAR,
                            format!("Usage of undefined variable '${u}'{hint}"),
                            Some(&u),
                        ));
                    }
                }
            }
            match &ins.node {
                Instruction::Arg(decls) => scope.extend(decls.iter().map(|d| d.name.clone())),
                Instruction::Env(kv) => scope.extend(kv.pairs.iter().map(|p| p.key.clone())),
                _ => {}
            }
        }
    }
    out
}
