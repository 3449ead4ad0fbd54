//! The words and flags of one node: flag checking against the instruction's allowed set,
//! shell-quote removal, JSON-or-shell argument forms, `key=value` lists.

use super::{Ctx, PResult, Problem};
use crate::boxfile::instruction::{Command, KeyValue, KeyValues};
use crate::boxfile::lexer::{Node, RawFlag, raw_words};
use crate::boxfile::names::{self, rule};

/// Flags of one node, checked against the instruction's allowed set as they are taken.
pub(super) struct Flags<'a> {
    name: &'a str,
    flags: &'a [RawFlag],
}

impl<'a> Flags<'a> {
    pub(super) fn check(name: &'a str, flags: &'a [RawFlag]) -> PResult<Self> {
        let allowed = names::allowed_flags(name);
        for f in flags {
            if !allowed.contains(&f.name.as_str()) {
                let mut msg = format!("unknown flag: --{}", f.name);
                if let Some(s) = names::suggest(&f.name, allowed.iter().copied()) {
                    msg.push_str(&format!(" (did you mean --{s}?)"));
                }
                return Err(Problem::new(msg).at(format!("--{}", f.name)));
            }
        }
        Ok(Flags { name, flags })
    }

    fn all<'f>(&self, flag: &'f str) -> impl Iterator<Item = &'a RawFlag> + use<'a, 'f> {
        self.flags.iter().filter(move |f| f.name == flag)
    }

    pub(super) fn string(&self, flag: &str) -> PResult<Option<String>> {
        let mut found = None;
        for f in self.all(flag) {
            if found.is_some() {
                return Err(Problem::new(format!("duplicate flag specified: --{flag}"))
                    .at(format!("--{flag}")));
            }
            match &f.value {
                Some(v) => found = Some(unquote(v)),
                None => {
                    return Err(Problem::new(format!("missing a value on flag: --{flag}"))
                        .at(format!("--{flag}")));
                }
            }
        }
        Ok(found)
    }

    pub(super) fn strings(&self, flag: &str) -> PResult<Vec<String>> {
        self.all(flag)
            .map(|f| match &f.value {
                Some(v) => Ok(unquote(v)),
                None => Err(Problem::new(format!("missing a value on flag: --{flag}"))
                    .at(format!("--{flag}"))),
            })
            .collect()
    }

    pub(super) fn bool(&self, flag: &str) -> PResult<Option<bool>> {
        let mut found = None;
        for f in self.all(flag) {
            found = Some(match f.value.as_deref().map(unquote).as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => {
                    return Err(Problem::new(format!(
                        "expecting boolean value for flag --{flag}, not: {v}"
                    ))
                    .at(format!("--{flag}")));
                }
            });
        }
        let _ = self.name;
        Ok(found)
    }
}

/// Remove shell quotes (no expansion): `"a b"` → `a b`.
pub(super) fn unquote(s: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

pub(super) fn whitespace_words(s: &str) -> Vec<String> {
    s.split([' ', '\t', '\u{b}', '\u{c}', '\r'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `["a", "b"]` when the text is a JSON array of strings; `None` means "use the shell form",
/// which is Docker's fallback for invalid JSON too.
pub(super) fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

pub(super) fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

pub(super) fn require_args(name: &str, rest: &str) -> PResult<()> {
    if rest.is_empty() {
        Err(Problem::new(format!(
            "{name} requires at least one argument"
        )))
    } else {
        Ok(())
    }
}

/// ENV/LABEL words: split on whitespace outside quotes, keeping quotes and escapes.
pub(super) fn name_val(ctx: &mut Ctx, what: &str) -> PResult<KeyValues> {
    let rest = ctx.node.rest.as_str();
    let words = raw_words(rest, ctx.escape);
    let Some(first) = words.first() else {
        return Err(Problem::new(format!(
            "{what} requires at least one argument"
        )));
    };
    if !first.contains('=') {
        let (key, value) = match rest.find(char::is_whitespace) {
            Some(p) => (&rest[..p], rest[p..].trim()),
            None => return Err(Problem::new(format!("{what} must have two arguments"))),
        };
        ctx.warn(
            rule::LEGACY_KEY_VALUE_FORMAT,
            format!(
                "\"{what} key=value\" should be used instead of legacy \"{what} key value\" format"
            ),
            None,
        );
        return Ok(KeyValues {
            pairs: vec![KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            }],
            legacy: true,
        });
    }
    let mut pairs = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(Problem::new(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))
            .at(w));
        };
        if k.is_empty() {
            return Err(Problem::new(format!("{what} names can not be blank")).at(w));
        }
        pairs.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        });
    }
    Ok(KeyValues {
        pairs,
        legacy: false,
    })
}

pub(super) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

pub(super) fn is_git(s: &str) -> bool {
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || (is_url(s) && (s.ends_with(".git") || s.contains(".git#")))
}

pub(super) fn exactly_one(name: &str, rest: &str) -> PResult<String> {
    if rest.is_empty() {
        return Err(Problem::new(format!(
            "{name} requires exactly one argument"
        )));
    }
    Ok(rest.to_string())
}

pub(super) fn no_flags(n: &Node) -> PResult<()> {
    Flags::check(&n.name, &n.flags).map(|_| ())
}

pub(super) fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn casing(s: &str) -> Option<bool> {
    if s == s.to_ascii_uppercase() {
        Some(true)
    } else if s == s.to_ascii_lowercase() {
        Some(false)
    } else {
        None
    }
}
