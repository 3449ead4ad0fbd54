//! Stage one of parsing: source text → loose [`Node`]s. This layer knows lines, comments,
//! continuations, parser directives, flags and heredoc bodies, and nothing about what any
//! instruction means. It follows BuildKit's line rules: comment lines vanish even inside a
//! continued instruction, whitespace-only lines inside one are skipped (and reported), and
//! continuation lines keep their leading whitespace.

use super::instruction::{Directives, Heredoc};
use super::names::HEREDOC_INSTRUCTIONS;

/// A flag before the arguments, `--name=value` or `--name`. The value keeps its quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFlag {
    pub name: String,
    pub value: Option<String>,
}

/// One instruction as text: keyword, flags and the rest, with its line range.
#[derive(Debug, Clone)]
pub struct Node {
    /// The keyword as written (`run`, `Run`, `RUN`).
    pub keyword: String,
    /// Upper-cased keyword.
    pub name: String,
    pub flags: Vec<RawFlag>,
    /// Arguments after the flags, trimmed.
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
    /// Continuation lines joined (escape char and newline removed), trimmed.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    /// A whitespace-only line sat inside the continuation.
    pub empty_continuation: bool,
}

/// A problem found while splitting lines; the parser turns it into a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

pub struct Lexed {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub errors: Vec<LexError>,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Split into lines the way Go's bufio.ScanLines does: `\n` ends a line, a `\r` before it is
/// dropped, and a final line without `\n` still counts.
fn lines(src: &str) -> Vec<&str> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut v: Vec<&str> = src
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if src.ends_with('\n') || src.is_empty() {
        v.pop();
    }
    v
}

/// `# name=value` with a name of letters and digits, as BuildKit's directive regex.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_alphanumeric()))
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

fn parse_directives(lines: &[&str], errors: &mut Vec<LexError>) -> Directives {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, value)) = directive(line) else {
            break;
        };
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            break;
        }
        if seen.contains(&name) {
            errors.push(LexError {
                line: i + 1,
                message: format!("only one {name} parser directive can be used"),
            });
            continue;
        }
        seen.push(name.clone());
        match name.as_str() {
            "syntax" => d.syntax = Some(value),
            "escape" => match value.as_str() {
                "\\" => d.escape = '\\',
                "`" => d.escape = '`',
                _ => errors.push(LexError {
                    line: i + 1,
                    message: format!("invalid escape token '{value}' does not match ` or \\"),
                }),
            },
            _ => {
                for part in value.split(';') {
                    let (k, v) = part.split_once('=').unwrap_or((part, ""));
                    match k.trim() {
                        "skip" => d
                            .check_skip
                            .extend(v.split(',').map(|s| s.trim().to_string())),
                        "error" => d.check_error = v.trim().eq_ignore_ascii_case("true"),
                        other => errors.push(LexError {
                            line: i + 1,
                            message: format!(
                                "invalid check directive key {other:?} (expected skip or error)"
                            ),
                        }),
                    }
                }
                d.check = Some(value);
            }
        }
    }
    d
}

/// Remove a trailing escape char (and the blanks after it): the line continues.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s, true),
        None => (line, false),
    }
}

/// Read the flags at the start of the arguments. Flags end at the first word not starting
/// with `--`, or after a bare `--`.
fn extract_flags(mut rest: &str) -> (Vec<RawFlag>, &str) {
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start_matches(is_space);
        if !rest.starts_with("--") {
            break;
        }
        let mut quote = None;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if is_space(c) => {
                    end = i;
                    break;
                }
                None => {}
            }
        }
        let word = &rest[2..end];
        rest = &rest[end..];
        if word.is_empty() {
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word, None),
        };
        flags.push(RawFlag {
            name: name.to_string(),
            value,
        });
    }
    (flags, rest.trim_matches(is_space))
}

/// Split on unquoted whitespace keeping quotes and escapes, as BuildKit does before looking
/// for heredoc words.
pub(crate) fn raw_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape
                    && q == '"'
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
            None => {
                if c.is_whitespace() {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                    continue;
                }
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// If `word` is `[fd]<<[-]NAME`, the heredoc it opens (body still empty).
pub(crate) fn heredoc_word(word: &str) -> Option<Heredoc> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, raw) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if raw.is_empty() || raw.contains('<') {
        return None;
    }
    // Unquote: quotes anywhere in the delimiter turn expansion off, like in sh.
    let mut name = String::new();
    let mut quote = None;
    let mut quoted = false;
    for c in raw.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => name.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                quoted = true;
            }
            None => name.push(c),
        }
    }
    if quote.is_some() || name.is_empty() || name.chars().any(char::is_whitespace) {
        return None;
    }
    Some(Heredoc {
        name,
        content: String::new(),
        expand: !quoted,
        chomp,
        fd: if digits > 0 {
            word[..digits].parse().ok()
        } else {
            None
        },
        raw: raw.to_string(),
    })
}

/// Split the source into nodes. Never fails as a whole: problems are returned in `errors`.
pub fn lex(src: &str) -> Lexed {
    let lines = lines(src);
    let mut errors = Vec::new();
    let directives = parse_directives(&lines, &mut errors);
    let escape = directives.escape;
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        i += 1;
        let start_line = i;
        if first.starts_with('#') {
            continue;
        }
        let (piece, mut cont) = trim_continuation(first, escape);
        if !cont && piece.trim().is_empty() {
            continue;
        }
        let mut line = piece.to_string();
        let mut empty_continuation = false;
        while cont && i < lines.len() {
            let raw = lines[i];
            i += 1;
            if raw.trim_start().starts_with('#') {
                continue;
            }
            if raw.trim().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, c) = trim_continuation(raw, escape);
            line.push_str(piece);
            cont = c;
        }
        let line = line.trim_matches(is_space);
        if line.is_empty() {
            continue;
        }
        let (keyword, args) = match line.find(is_space) {
            Some(p) => (&line[..p], &line[p..]),
            None => (line, ""),
        };
        let name = keyword.to_ascii_uppercase();
        let (flags, rest) = extract_flags(args);
        let mut heredocs = Vec::new();
        if HEREDOC_INSTRUCTIONS.contains(&name.as_str()) && rest.contains("<<") {
            for word in raw_words(rest, escape) {
                let Some(mut doc) = heredoc_word(&word) else {
                    continue;
                };
                let mut terminated = false;
                while i < lines.len() {
                    let body = lines[i];
                    i += 1;
                    let body = if doc.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if body == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body);
                    doc.content.push('\n');
                }
                if !terminated {
                    errors.push(LexError {
                        line: start_line,
                        message: format!("unterminated heredoc {:?}", doc.name),
                    });
                }
                heredocs.push(doc);
            }
        }
        nodes.push(Node {
            keyword: keyword.to_string(),
            name,
            flags,
            rest: rest.to_string(),
            heredocs,
            original: line.to_string(),
            start_line,
            end_line: i,
            empty_continuation,
        });
    }
    Lexed {
        directives,
        nodes,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_empty_lines() {
        let l = lex("RUN a \\\n  # c\n\n  b\nCMD x\n");
        assert_eq!(l.nodes.len(), 2);
        assert_eq!(l.nodes[0].rest, "a   b");
        assert!(l.nodes[0].empty_continuation);
        assert_eq!((l.nodes[0].start_line, l.nodes[0].end_line), (1, 4));
        assert_eq!(l.nodes[1].start_line, 5);
    }

    #[test]
    fn flags_and_heredocs() {
        let l = lex("RUN --mount=type=cache,target=/x --network=none <<EOF\necho hi\nEOF\n");
        let n = &l.nodes[0];
        assert_eq!(n.flags.len(), 2);
        assert_eq!(n.rest, "<<EOF");
        assert_eq!(n.heredocs[0].content, "echo hi\n");
        assert_eq!(n.end_line, 3);
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let l = lex("# escape=`\n# syntax=docker/dockerfile:1\n\n# check=error=true\nFROM x");
        assert_eq!(l.directives.escape, '`');
        assert!(l.directives.syntax.is_some());
        assert!(!l.directives.check_error);
    }
}
