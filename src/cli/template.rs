//! Go text/template, the subset docker's `--format` scripts use: `{{.A.B}}`, variables,
//! pipelines, `if/else if/else`, `range` (with `$k, $v :=`), `with`, comments, `{{-`/`-}}`
//! trimming, and docker's functions (template_exec.rs). Values are serde_json values, so a
//! command formats whatever JSON it already builds. Why not the `gtmpl` crate (it prints lists
//! and maps as Rust Debug text, ranges maps in hash order, and its errors carry no column):
//! docs/internals.md, "Hand-written template engine".

use std::fmt;

/// A parse or execution error, with the template's text and the 1-based line and column.
#[derive(Debug, thiserror::Error)]
#[error("{name} {src:?}: line {line}, column {col}: {msg}")]
pub struct TemplateError {
    pub name: String,
    pub src: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

#[derive(Debug, Clone)]
pub(super) enum Arg {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.A` (`$` alone is the root).
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    Func(String),
    /// `(pipeline)`, optionally followed by `.A.B`.
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
pub(super) struct Cmd {
    pub args: Vec<Arg>,
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Pipe {
    /// `$x :=` or `$k, $v :=` (range).
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template; `render` it against a JSON value.
#[derive(Debug, Clone)]
pub struct Template {
    pub(super) name: String,
    pub(super) src: String,
    pub(super) nodes: Vec<Node>,
}

impl Template {
    /// Parse `src`; `name` is what errors call it (the flag, e.g. `--format`).
    pub fn parse(name: &str, src: &str) -> Result<Template, TemplateError> {
        let mut p = Parser {
            name: name.to_string(),
            src: src.to_string(),
            items: lex(name, src)?,
            i: 0,
        };
        let (nodes, end) = p.list()?;
        if let Some((kw, pos)) = end {
            return Err(p.err(pos, format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Template {
            name: name.to_string(),
            src: src.to_string(),
            nodes,
        })
    }

    pub(super) fn err(&self, pos: usize, msg: impl Into<String>) -> TemplateError {
        make_err(&self.name, &self.src, pos, msg)
    }
}

fn make_err(name: &str, src: &str, pos: usize, msg: impl Into<String>) -> TemplateError {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    TemplateError {
        name: name.to_string(),
        src: src.to_string(),
        line,
        col,
        msg: msg.into(),
    }
}

/// Raw text or the inside of one `{{ }}`, with its byte offset.
enum Item {
    Text(String),
    Action(String, usize),
}

fn lex(name: &str, src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = vec![];
    let mut rest = 0;
    let mut trim_next = false;
    while rest < src.len() {
        let Some(open) = src[rest..].find("{{").map(|o| o + rest) else {
            let t = &src[rest..];
            items.push(Item::Text(
                if trim_next { t.trim_start() } else { t }.into(),
            ));
            break;
        };
        let mut text = &src[rest..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut start = open + 2;
        if src[start..].starts_with("- ") || src[start..].starts_with("-\t") {
            text = text.trim_end();
            start += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.into()));
        }
        let close = find_close(&src[start..])
            .map(|c| c + start)
            .ok_or_else(|| make_err(name, src, open, "unclosed action"))?;
        let mut end = close;
        trim_next = false;
        if src[start..end].ends_with(" -") || src[start..end].ends_with("\t-") {
            end -= 1;
            trim_next = true;
        }
        let body = src[start..end].trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            let lead = src[start..end].len() - src[start..end].trim_start().len();
            items.push(Item::Action(body.to_string(), start + lead));
        }
        rest = close + 2;
    }
    Ok(items)
}

/// The `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Ident(String),
    Bar,
    Open,
    Close,
    /// `.A.B` right after a `)`.
    Tail(Vec<String>),
    Declare,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = |n: &[String]| n.iter().map(|x| format!(".{x}")).collect::<String>();
        match self {
            Tok::Field(n) if n.is_empty() => write!(f, "<.>"),
            Tok::Field(n) | Tok::Tail(n) => write!(f, "<{}>", chain(n)),
            Tok::Var(v, n) => write!(f, "<${v}{}>", chain(n)),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Num(n) => write!(f, "<{n}>"),
            Tok::Ident(i) => write!(f, "<{i}>"),
            Tok::Bar => write!(f, "<|>"),
            Tok::Open => write!(f, "<(>"),
            Tok::Close => write!(f, "<)>"),
            Tok::Declare => write!(f, "<:=>"),
            Tok::Comma => write!(f, "<,>"),
        }
    }
}

fn tokens(
    name: &str,
    src: &str,
    body: &str,
    base: usize,
) -> Result<Vec<(Tok, usize)>, TemplateError> {
    let b = body.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    let err = |at: usize, m: String| make_err(name, src, base + at, m);
    let ident_end = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    // `.A.B.C` starting at j (which is at a '.'), returns the names and the end.
    let chain = |mut j: usize| {
        let mut names = vec![];
        while j < b.len() && b[j] == b'.' {
            let e = ident_end(j + 1);
            if e == j + 1 {
                break;
            }
            names.push(body[j + 1..e].to_string());
            j = e;
        }
        (names, j)
    };
    while i < b.len() {
        let c = b[i];
        let at = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'|' => {
                i += 1;
                Tok::Bar
            }
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                out.push((Tok::Close, at));
                if b.get(i) == Some(&b'.') {
                    let (names, e) = chain(i);
                    out.push((Tok::Tail(names), i));
                    i = e;
                    if b.get(i) == Some(&b'.') {
                        return Err(err(i, "unexpected . after term".into()));
                    }
                }
                continue;
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                // `$x = value` (assignment) is parsed as a declaration: same effect here.
                i += 1;
                Tok::Declare
            }
            b'.' => {
                let (names, e) = chain(i);
                if e == i + 1 || names.is_empty() {
                    if b.get(i + 1)
                        .is_some_and(|n| n.is_ascii_alphanumeric() || *n == b'_')
                    {
                        return Err(err(at, "bad field name".into()));
                    }
                    i += 1;
                    Tok::Field(vec![])
                } else {
                    i = e;
                    Tok::Field(names)
                }
            }
            b'$' => {
                let e = ident_end(i + 1);
                let v = body[i + 1..e].to_string();
                let (names, e2) = chain(e);
                i = e2;
                Tok::Var(v, names)
            }
            b'"' => {
                let (st, e) = quoted(body, i).map_err(|(at, m)| err(at, m.into()))?;
                i = e;
                Tok::Str(st)
            }
            b'`' => {
                let e = body[i + 1..]
                    .find('`')
                    .ok_or_else(|| err(at, "unterminated raw quoted string".into()))?;
                let s = body[i + 1..i + 1 + e].to_string();
                i += e + 2;
                Tok::Str(s)
            }
            b'-' | b'+' | b'0'..=b'9' => {
                let (n, e) = number(body, i).map_err(|m| err(at, m))?;
                i = e;
                Tok::Num(n)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let e = ident_end(i);
                let id = body[i..e].to_string();
                i = e;
                Tok::Ident(id)
            }
            _ => {
                let ch = body[i..].chars().next().unwrap_or('?');
                return Err(err(at, format!("unexpected {ch:?} in action")));
            }
        };
        if matches!(tok, Tok::Field(_) | Tok::Var(..)) && b.get(i) == Some(&b'.') {
            return Err(err(i, "unexpected . after term".into()));
        }
        out.push((tok, at));
    }
    Ok(out.into_iter().map(|(t, p)| (t, p + base)).collect())
}

/// The number starting at `i` and the index after it.
fn number(body: &str, i: usize) -> Result<(f64, usize), String> {
    let b = body.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
        j += 1;
    }
    let n = body[i..j]
        .parse::<f64>()
        .map_err(|_| format!("bad number syntax: {:?}", &body[i..j]))?;
    Ok((n, j))
}

/// The Go string literal starting at `i` (a '"'): its value and the index after it, or where
/// and why it is malformed.
fn quoted(body: &str, i: usize) -> Result<(String, usize), (usize, &'static str)> {
    let b = body.as_bytes();
    let mut s = String::new();
    let mut j = i + 1;
    loop {
        let Some(&ch) = b.get(j) else {
            return Err((i, "unterminated quoted string"));
        };
        match ch {
            b'"' => return Ok((s, j + 1)),
            b'\\' => {
                j += 1;
                match b.get(j) {
                    Some(b'n') => s.push('\n'),
                    Some(b't') => s.push('\t'),
                    Some(b'\\') => s.push('\\'),
                    Some(b'"') => s.push('"'),
                    _ => return Err((j, "unknown escape sequence")),
                }
                j += 1;
            }
            _ => {
                let ch = body[j..].chars().next().unwrap_or('\0');
                s.push(ch);
                j += ch.len_utf8();
            }
        }
    }
}

struct Parser {
    name: String,
    src: String,
    items: Vec<Item>,
    i: usize,
}

/// The keyword that ended a list (`end`, `else`, `else if ...`) and its position.
type End = Option<(String, usize)>;

const KNOWN_FUNCS: &[&str] = &[
    "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "index", "len", "print",
    "printf", "println", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or", "slice",
    "urlquery",
];

impl Parser {
    fn err(&self, pos: usize, msg: impl Into<String>) -> TemplateError {
        make_err(&self.name, &self.src, pos, msg)
    }

    /// Nodes up to `{{end}}`/`{{else}}` (returned as the end) or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, End), TemplateError> {
        let mut nodes = vec![];
        while self.i < self.items.len() {
            let (body, pos) = match &self.items[self.i] {
                Item::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    self.i += 1;
                    continue;
                }
                Item::Action(b, p) => (b.clone(), *p),
            };
            self.i += 1;
            let word = body.split_whitespace().next().unwrap_or("");
            match word {
                "end" | "else" => return Ok((nodes, Some((body, pos)))),
                "if" | "range" | "with" => {
                    let rest = body[word.len()..].to_string();
                    let off = pos + word.len();
                    nodes.push(self.block(word, &rest, off, pos)?);
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(self.err(pos, format!("{{{{{word}}}}} is not supported")));
                }
                "" => return Err(self.err(pos, "missing value for command")),
                _ => nodes.push(Node::Action(self.pipe(&body, pos)?)),
            }
        }
        Ok((nodes, None))
    }

    fn block(
        &mut self,
        kw: &str,
        rest: &str,
        off: usize,
        pos: usize,
    ) -> Result<Node, TemplateError> {
        let pipe = self.pipe(rest, off)?;
        if pipe.cmds.is_empty() {
            return Err(self.err(pos, format!("missing value for {kw}")));
        }
        let (body, end) = self.list()?;
        let mut els = vec![];
        match end {
            None => {
                return Err(self.err(
                    pos,
                    format!("unexpected EOF: {{{{{kw}}}}} has no {{{{end}}}}"),
                ));
            }
            Some((e, _)) if e == "end" => {}
            Some((e, epos)) if e == "else" => {
                let (b, end2) = self.list()?;
                match end2 {
                    Some((x, _)) if x == "end" => els = b,
                    _ => {
                        return Err(self.err(
                            epos,
                            format!("{{{{else}}}} of {{{{{kw}}}}} has no {{{{end}}}}"),
                        ));
                    }
                }
            }
            Some((e, epos)) if kw == "if" && e.starts_with("else if") => {
                // `else if X` is `else` + a nested `if X` that shares our `end`.
                let inner = e["else if".len()..].to_string();
                let off2 = epos + "else if".len();
                els = vec![self.block("if", &inner, off2, epos)?];
            }
            Some((e, epos)) => return Err(self.err(epos, format!("unexpected {{{{{e}}}}}"))),
        }
        Ok(match kw {
            "if" => Node::If(pipe, body, els),
            "range" => Node::Range(pipe, body, els),
            _ => Node::With(pipe, body, els),
        })
    }

    fn pipe(&self, body: &str, base: usize) -> Result<Pipe, TemplateError> {
        let toks = tokens(&self.name, &self.src, body, base)?;
        let mut decl = vec![];
        // `$x :=` / `$k, $v :=`
        if let Some(d) = toks.iter().position(|(t, _)| *t == Tok::Declare) {
            for (t, p) in &toks[..d] {
                match t {
                    Tok::Var(v, f) if f.is_empty() => decl.push(v.clone()),
                    Tok::Comma => {}
                    _ => return Err(self.err(*p, "bad variable declaration")),
                }
            }
            let t = toks[d + 1..].to_vec();
            return self.whole_pipeline(t, base, &decl);
        }
        self.whole_pipeline(toks, base, &[])
    }

    /// A pipeline that must use every token and have at least one command.
    fn whole_pipeline(
        &self,
        mut toks: Vec<(Tok, usize)>,
        base: usize,
        decl: &[String],
    ) -> Result<Pipe, TemplateError> {
        let (p, _) = self.pipeline(&mut toks, base, decl)?;
        if let Some((_, at)) = toks.first() {
            return Err(self.err(*at, "unexpected right paren"));
        }
        if p.cmds.is_empty() && !decl.is_empty() {
            return Err(self.err(base, "missing value for command"));
        }
        Ok(p)
    }

    /// Commands separated by `|`, consumed from `toks` up to a `)` (not consumed) or the end.
    fn pipeline(
        &self,
        toks: &mut Vec<(Tok, usize)>,
        base: usize,
        decl: &[String],
    ) -> Result<(Pipe, usize), TemplateError> {
        let mut cmds = vec![];
        let mut cur = Cmd {
            args: vec![],
            pos: toks.first().map_or(base, |t| t.1),
        };
        while let Some((t, p)) = toks.first().cloned() {
            match t {
                Tok::Close => break,
                Tok::Bar => {
                    toks.remove(0);
                    if cur.args.is_empty() {
                        return Err(self.err(p, "missing command before |"));
                    }
                    let next = Cmd {
                        args: vec![],
                        pos: toks.first().map_or(p, |t| t.1),
                    };
                    cmds.push(std::mem::replace(&mut cur, next));
                }
                _ => {
                    toks.remove(0);
                    cur.args.push(self.arg(t, p, toks, base)?);
                }
            }
        }
        if !cur.args.is_empty() {
            cmds.push(cur);
        } else if !cmds.is_empty() {
            return Err(self.err(base, "missing command after |"));
        }
        for c in cmds.iter().skip(1) {
            if !matches!(c.args[0], Arg::Func(_)) {
                return Err(self.err(c.pos, "non-function command in a pipeline"));
            }
        }
        for c in &cmds {
            // `.Label "k"` is a method call (docker's ps and images rows have `Label`).
            let method = matches!(&c.args[0], Arg::Field(f) if !f.is_empty());
            if c.args.len() > 1 && !matches!(c.args[0], Arg::Func(_)) && !method {
                return Err(self.err(c.pos, "can't give arguments to a non-function"));
            }
        }
        Ok((
            Pipe {
                decl: decl.to_vec(),
                cmds,
                pos: base,
            },
            base,
        ))
    }

    fn arg(
        &self,
        t: Tok,
        p: usize,
        toks: &mut Vec<(Tok, usize)>,
        base: usize,
    ) -> Result<Arg, TemplateError> {
        Ok(match t {
            Tok::Field(f) => Arg::Field(f),
            Tok::Var(v, f) => Arg::Var(v, f),
            Tok::Str(s) => Arg::Str(s),
            Tok::Num(n) => Arg::Num(n),
            Tok::Ident(id) => match id.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                f if KNOWN_FUNCS.contains(&f) => Arg::Func(id),
                _ => return Err(self.err(p, format!("function {id:?} not defined"))),
            },
            Tok::Open => {
                let (sub, _) = self.pipeline(toks, base, &[])?;
                match toks.first() {
                    Some((Tok::Close, _)) => {
                        toks.remove(0);
                    }
                    _ => return Err(self.err(p, "unclosed left paren")),
                }
                let tail = match toks.first() {
                    Some((Tok::Tail(f), _)) => {
                        let f = f.clone();
                        toks.remove(0);
                        f
                    }
                    _ => vec![],
                };
                Arg::Sub(Box::new(sub), tail)
            }
            Tok::Close => return Err(self.err(p, "unexpected right paren")),
            other => return Err(self.err(p, format!("unexpected {other} in command"))),
        })
    }
}
