//! Ignore files: `.boxignore`, else `<Boxfile name>.dockerignore` beside the Boxfile, else
//! `.dockerignore` in the context, with Docker's pattern rules: each pattern is cleaned like
//! Go's `filepath.Clean` with a leading `/` dropped, `*` and `?` stay within one path
//! segment, `**` spans any number of segments, `!pattern` re-includes, the last matching
//! pattern wins, and a pattern that matches a directory matches everything below it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("read ignore file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `**`: any run of characters, `/` included.
    DoubleStar,
    /// `*`: any run within a segment.
    Star,
    /// `?`: one character other than `/`.
    Any,
    Class {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
    Lit(char),
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    toks: Vec<Tok>,
    exception: bool,
}

/// Compiled ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
    /// Which file they came from, for messages.
    pub source: Option<PathBuf>,
}

/// `filepath.Clean` for `/`-separated paths.
pub fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn compile(p: &str) -> Vec<Tok> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` also matches zero directories, so fold the slash into the token.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                    toks.push(Tok::DoubleStar);
                    toks.push(Tok::Lit('\u{0}'));
                } else {
                    toks.push(Tok::DoubleStar);
                }
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Any),
            '\\' if i < chars.len() => {
                toks.push(Tok::Lit(chars[i]));
                i += 1;
            }
            '[' => {
                let mut j = i;
                let negate = matches!(chars.get(j), Some('^') | Some('!'));
                if negate {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                let mut first = true;
                while j < chars.len() {
                    let mut a = chars[j];
                    if a == ']' && !first {
                        closed = true;
                        j += 1;
                        break;
                    }
                    first = false;
                    if a == '\\' && j + 1 < chars.len() {
                        j += 1;
                        a = chars[j];
                    }
                    let mut b = a;
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|c| *c != ']')
                    {
                        b = chars[j + 2];
                        j += 2;
                    }
                    ranges.push((a, b));
                    j += 1;
                }
                if closed {
                    toks.push(Tok::Class { negate, ranges });
                    i = j;
                } else {
                    toks.push(Tok::Lit('['));
                }
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    toks
}

/// Full match of `s` against `toks`, by dynamic programming over positions (no exponential
/// backtracking on patterns like `**/**/**`). `Lit('\0')` after `**` stands for "`/` or the
/// start of the string", which is how `**/` matches zero directories.
fn matches_toks(toks: &[Tok], s: &[char]) -> bool {
    let n = s.len();
    let mut dp = vec![false; n + 1];
    dp[0] = true;
    let mut prev_double = false;
    for t in toks {
        let mut next = vec![false; n + 1];
        match t {
            Tok::DoubleStar => {
                let mut any = false;
                for i in 0..=n {
                    any |= dp[i];
                    next[i] = any;
                }
            }
            Tok::Star => {
                for i in 0..=n {
                    if dp[i] {
                        next[i] = true;
                        let mut j = i;
                        while j < n && s[j] != '/' {
                            j += 1;
                            next[j] = true;
                        }
                    }
                }
            }
            Tok::Lit('\u{0}') if prev_double => {
                // Either a slash, or nothing at all when `**` matched nothing at a segment start.
                for i in 0..=n {
                    if !dp[i] {
                        continue;
                    }
                    if i < n && s[i] == '/' {
                        next[i + 1] = true;
                    }
                    if i == 0 || s[i - 1] == '/' {
                        next[i] = true;
                    }
                }
            }
            Tok::Any => (0..n).for_each(|i| next[i + 1] = dp[i] && s[i] != '/'),
            Tok::Lit(c) => (0..n).for_each(|i| next[i + 1] = dp[i] && s[i] == *c),
            Tok::Class { negate, ranges } => (0..n).for_each(|i| {
                let inside = ranges.iter().any(|(a, b)| *a <= s[i] && s[i] <= *b);
                next[i + 1] = dp[i] && s[i] != '/' && inside != *negate;
            }),
        }
        prev_double = matches!(t, Tok::DoubleStar);
        dp = next;
    }
    dp[n]
}

impl Pattern {
    /// The pattern matches the path itself or one of its parent directories.
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        if matches_toks(&self.toks, &chars) {
            return true;
        }
        chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .any(|(i, _)| matches_toks(&self.toks, &chars[..i]))
    }
}

impl IgnoreMatcher {
    /// Compile ignore-file text.
    pub fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, p) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
            patterns.push(Pattern {
                toks: compile(&p),
                text: p,
                exception,
            });
        }
        IgnoreMatcher {
            patterns,
            source: None,
        }
    }

    /// The ignore file that applies to `boxfile` in `ctx`, compiled; an empty matcher when
    /// there is none.
    pub fn from_context(ctx: &Path, boxfile: &Path) -> Result<Self, IgnoreError> {
        let mut candidates = vec![ctx.join(".boxignore")];
        if let Some(name) = boxfile.file_name() {
            let mut n = name.to_os_string();
            n.push(".dockerignore");
            candidates.push(boxfile.with_file_name(n));
        }
        candidates.push(ctx.join(".dockerignore"));
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(text) => {
                    let mut m = Self::parse(&text);
                    m.source = Some(c);
                    return Ok(m);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IgnoreError::Read { path: c, source }),
            }
        }
        Ok(Self::default())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is excluded.
    pub fn matches(&self, rel_path: &str, _is_dir: bool) -> bool {
        let p = clean(rel_path);
        let p = p.trim_start_matches('/');
        let mut excluded = false;
        for pat in &self.patterns {
            if pat.exception == excluded && pat.matches(p) {
                excluded = !pat.exception;
            }
        }
        excluded
    }

    /// Whether an exception pattern could re-include something below the excluded directory
    /// `dir`: if so a walker must descend into it instead of pruning it.
    pub fn may_contain_exceptions(&self, dir: &str) -> bool {
        let d = clean(dir);
        let dir_segs: Vec<&str> = d.trim_start_matches('/').split('/').collect();
        self.patterns.iter().filter(|p| p.exception).any(|p| {
            let segs: Vec<&str> = p.text.split('/').collect();
            for (i, ds) in dir_segs.iter().enumerate() {
                let Some(ps) = segs.get(i) else {
                    // The exception names an ancestor of `dir`: all of it comes back.
                    return true;
                };
                if ps.contains("**") {
                    return true;
                }
                let chars: Vec<char> = ds.chars().collect();
                if !matches_toks(&compile(ps), &chars) {
                    return false;
                }
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let m = IgnoreMatcher::parse(
            "# comment\n/node_modules\n**/*.log\n!keep.log\n*.md\n!README*.md\nREADME-secret.md\ndocs/**/tmp\n./build/\n",
        );
        assert!(m.matches("node_modules", true));
        assert!(m.matches("node_modules/x/y.js", false));
        assert!(m.matches("a.log", false));
        assert!(m.matches("deep/dir/a.log", false));
        assert!(!m.matches("keep.log", false));
        assert!(m.matches("CHANGES.md", false));
        assert!(!m.matches("README.md", false));
        assert!(m.matches("README-secret.md", false));
        assert!(m.matches("docs/tmp", true));
        assert!(m.matches("docs/a/b/tmp/x", false));
        assert!(m.matches("build/out", false));
        assert!(!m.matches("src/main.rs", false));
        assert!(!m.matches("sub/CHANGES.md", false));
    }

    #[test]
    fn exceptions_under_excluded_dirs() {
        let m = IgnoreMatcher::parse("vendor\n!vendor/keep/**\n");
        assert!(m.matches("vendor/x", false));
        assert!(!m.matches("vendor/keep/a", false));
        assert!(m.may_contain_exceptions("vendor"));
        assert!(!m.may_contain_exceptions("other"));
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
    }
}
