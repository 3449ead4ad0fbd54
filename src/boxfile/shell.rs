//! Docker's variable substitution: the small shell-word language BuildKit's `shell` package
//! implements. Quotes are removed, the escape char escapes, `'…'` stops expansion, and `$VAR`,
//! `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?m}`, `${VAR?m}`,
//! `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}` and `${VAR//p/r}` expand.
//! Unset variables expand to nothing. The result is both the processed string and the
//! whitespace-split words (split after expansion, quotes protecting), and the names looked up.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ShellError {
    pub word: String,
    pub message: String,
}

/// Output of [`Lex::process`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    pub result: String,
    pub words: Vec<String>,
    /// Variables that were looked up and set.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// Lexer settings. `raw_quotes` keeps quote characters in the output, `raw_escapes` keeps
/// escape characters, `skip_quotes` treats quotes as ordinary characters.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape: char,
    pub raw_quotes: bool,
    pub raw_escapes: bool,
    pub skip_quotes: bool,
}

impl Lex {
    pub fn new(escape: char) -> Self {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    /// Expand `word` with variables from `env`.
    pub fn process(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Processed, ShellError> {
        let mut st = State {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            raw_escapes: self.raw_escapes,
        };
        match st.until(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Processed {
                result,
                words,
                matched: st.matched,
                unmatched: st.unmatched,
            }),
            Err(message) => Err(ShellError {
                word: word.to_string(),
                message,
            }),
        }
    }
}

struct State<'a> {
    lex: Lex,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    raw_escapes: bool,
}

/// Word splitting as the result is built: expanded text splits on whitespace, quoted text
/// and escaped characters never do.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

type R<T> = Result<T, String>;

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let v = (self.env)(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    /// Process up to `stop` (consumed) or the end.
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> R<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.until_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn until_inner(&mut self, stop: Option<char>) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if c == '$' {
                let v = self.dollar()?;
                result.push_str(&v);
                words.add_str(&v);
            } else if !self.lex.skip_quotes && c == '\'' {
                let v = self.single_quote()?;
                result.push_str(&v);
                words.add_raw_str(&v);
            } else if !self.lex.skip_quotes && c == '"' {
                let v = self.double_quote()?;
                result.push_str(&v);
                words.add_raw_str(&v);
            } else {
                self.pos += 1;
                if c == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    // An escape at the very end is dropped.
                    let Some(n) = self.next() else { break };
                    words.add_raw_char(n);
                    result.push(n);
                } else {
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(c) => {
                    self.pos += 1;
                    let mut ch = c;
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            // Only these can be escaped inside double quotes, as in sh.
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.pos += 1;
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self) -> R<String> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match op {
            '}' => Ok(self.get(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut null_is_unset = false;
                let mut op = op;
                let mut ops = op.to_string();
                if op == ':' {
                    null_is_unset = true;
                    op = self.next().ok_or("syntax error: missing '}'")?;
                    ops.push(op);
                }
                let raw = op == '#' || op == '%';
                let (word, _) = match self.until(Some('}'), raw) {
                    Ok(w) => w,
                    Err(e) if self.peek().is_none() => {
                        let _ = e;
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get(&name);
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' if !null_is_unset => {
                        let value = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(p) => (true, p),
                            None => (false, word.as_str()),
                        };
                        let pat = Pattern::new(pat, self.lex.escape);
                        Ok(if op == '#' {
                            pat.trim_prefix(&value, greedy)
                        } else {
                            pat.trim_suffix(&value, greedy)
                        })
                    }
                    _ => Err(format!("unsupported modifier ({ops}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let (pattern, _) = self.until(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.until(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let value = self.get(&name).unwrap_or_default();
                Ok(Pattern::new(&pattern, self.lex.escape).replace(&value, &replacement, all))
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }
}

/// A shell pattern for `#`, `%` and `/`: `*` any string, `?` one char, escape → literal.
struct Pattern {
    toks: Vec<PTok>,
}

#[derive(Clone, Copy, PartialEq)]
enum PTok {
    Star,
    Any,
    Lit(char),
}

impl Pattern {
    fn new(p: &str, escape: char) -> Self {
        let mut toks = Vec::new();
        let mut it = p.chars();
        while let Some(c) = it.next() {
            toks.push(match c {
                '*' => PTok::Star,
                '?' => PTok::Any,
                c if c == escape => match it.next() {
                    Some(n) => PTok::Lit(n),
                    None => PTok::Lit(c),
                },
                c => PTok::Lit(c),
            });
        }
        Pattern { toks }
    }

    /// Whether the whole of `s` matches; dynamic programming, so no exponential backtracking.
    fn full_match(&self, s: &[char]) -> bool {
        let mut dp = vec![false; s.len() + 1];
        dp[0] = true;
        for t in &self.toks {
            let mut next = vec![false; s.len() + 1];
            match t {
                PTok::Star => {
                    let mut any = false;
                    for i in 0..=s.len() {
                        any |= dp[i];
                        next[i] = any;
                    }
                }
                PTok::Any => (0..s.len()).for_each(|i| next[i + 1] = dp[i]),
                PTok::Lit(c) => (0..s.len()).for_each(|i| next[i + 1] = dp[i] && s[i] == *c),
            }
            dp = next;
        }
        dp[s.len()]
    }

    fn trim_prefix(&self, v: &str, greedy: bool) -> String {
        let c: Vec<char> = v.chars().collect();
        let mut lens: Vec<usize> = (0..=c.len()).collect();
        if greedy {
            lens.reverse();
        }
        for l in lens {
            if self.full_match(&c[..l]) {
                return c[l..].iter().collect();
            }
        }
        v.to_string()
    }

    fn trim_suffix(&self, v: &str, greedy: bool) -> String {
        let c: Vec<char> = v.chars().collect();
        let mut starts: Vec<usize> = (0..=c.len()).rev().collect();
        if greedy {
            starts.reverse();
        }
        for s in starts {
            if self.full_match(&c[s..]) {
                return c[..s].iter().collect();
            }
        }
        v.to_string()
    }

    /// Leftmost, then longest match, like Go's regexp with a greedy `.*`.
    fn replace(&self, v: &str, rep: &str, all: bool) -> String {
        let c: Vec<char> = v.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i <= c.len() {
            let found = (i..=c.len()).rev().find(|&e| self.full_match(&c[i..e]));
            match found {
                Some(e) => {
                    out.push_str(rep);
                    if e == i {
                        // An empty match: keep one char so we make progress.
                        if i < c.len() {
                            out.push(c[i]);
                        }
                        i += 1;
                    } else {
                        i = e;
                    }
                    if !all {
                        out.extend(&c[i.min(c.len())..]);
                        return out;
                    }
                }
                None => {
                    if i < c.len() {
                        out.push(c[i]);
                    }
                    i += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(word: &str) -> Result<String, ShellError> {
        let env = |k: &str| match k {
            "A" => Some("apple".to_string()),
            "E" => Some(String::new()),
            "P" => Some("/usr/local/bin".to_string()),
            "S" => Some("a b".to_string()),
            _ => None,
        };
        Lex::new('\\').process(word, &env).map(|p| p.result)
    }

    #[test]
    fn substitutions() {
        assert_eq!(ex("$A ${A}x").unwrap(), "apple applex");
        assert_eq!(ex("${U:-d} ${E:-d} ${E-d} ${U-d}").unwrap(), "d d  d");
        assert_eq!(ex("${A:+y} ${E:+y} ${E+y} ${U+y}").unwrap(), "y  y ");
        assert_eq!(ex("'$A' \"$A\" \\$A").unwrap(), "$A apple $A");
        assert_eq!(
            ex("${P#*/} ${P##*/} ${P%/*} ${P%%/*}").unwrap(),
            "usr/local/bin bin /usr/local "
        );
        assert_eq!(
            ex("${P/local/opt} ${A//p/P}").unwrap(),
            "/usr/opt/bin aPPle"
        );
        assert_eq!(ex("$ $1x").unwrap(), "$ x");
        assert_eq!(ex("\"a\\\"b\\n\"").unwrap(), "a\"b\\n");
    }

    #[test]
    fn errors() {
        assert_eq!(
            ex("${U:?must be set}").unwrap_err().message,
            "U: must be set"
        );
        assert_eq!(
            ex("${E:?}").unwrap_err().message,
            "E: is not allowed to be empty"
        );
        assert_eq!(ex("${E?}").unwrap(), "");
        assert_eq!(
            ex("${U?}").unwrap_err().message,
            "U: is not allowed to be unset"
        );
        assert_eq!(ex("${A").unwrap_err().message, "syntax error: missing '}'");
        assert_eq!(
            ex("${}").unwrap_err().message,
            "syntax error: bad substitution"
        );
        assert!(ex("'abc").is_err());
    }

    #[test]
    fn words_split_after_expansion() {
        let env = |k: &str| (k == "S").then(|| "a b".to_string());
        let p = Lex::new('\\').process("x$S \"c d\"", &env).unwrap();
        assert_eq!(p.words, vec!["xa", "b", "c d"]);
    }
}
