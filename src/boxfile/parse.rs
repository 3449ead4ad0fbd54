//! Stage two of parsing: loose [`Node`]s → typed [`Instruction`]s, then stages. Each
//! per-instruction parser sees only the node's keyword, flags and arguments; when it fails it
//! may name the offending text (`needle`), and [`dispatch`] alone turns that into a line and
//! column. Parsing continues after a bad instruction so `--check` can report all of them.

use std::path::Path;
use std::time::Duration;

use super::diag::{Diagnostic, ParseErrors, Severity, line_starts};
use super::instruction::*;
use super::lexer::{Node, RawFlag, lex, raw_words};
use super::names::{self, rule};

/// What a per-instruction parser reports: a message and, optionally, the text to point at.
#[derive(Debug)]
pub(crate) struct Problem {
    pub message: String,
    pub needle: Option<String>,
    pub rule: Option<&'static str>,
}

impl Problem {
    fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            needle: None,
            rule: None,
        }
    }
    fn at(mut self, needle: impl Into<String>) -> Self {
        self.needle = Some(needle.into());
        self
    }
}

type PResult<T> = Result<T, Problem>;

/// Per-node context: the node's words and a sink for warnings.
struct Ctx<'a> {
    node: &'a Node,
    escape: char,
    warnings: Vec<Problem>,
}

impl Ctx<'_> {
    fn warn(&mut self, rule: &'static str, message: String, needle: Option<String>) {
        self.warnings.push(Problem {
            message,
            needle,
            rule: Some(rule),
        });
    }
}

/// Flags of one node, checked against the instruction's allowed set as they are taken.
struct Flags<'a> {
    name: &'a str,
    flags: &'a [RawFlag],
}

impl<'a> Flags<'a> {
    fn check(name: &'a str, flags: &'a [RawFlag]) -> PResult<Self> {
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

    fn string(&self, flag: &str) -> PResult<Option<String>> {
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

    fn strings(&self, flag: &str) -> PResult<Vec<String>> {
        self.all(flag)
            .map(|f| match &f.value {
                Some(v) => Ok(unquote(v)),
                None => Err(Problem::new(format!("missing a value on flag: --{flag}"))
                    .at(format!("--{flag}"))),
            })
            .collect()
    }

    fn bool(&self, flag: &str) -> PResult<Option<bool>> {
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
fn unquote(s: &str) -> String {
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

/// Quote a value for the dump when it would not survive as a bare word.
pub(crate) fn quote_if_needed(s: &str) -> String {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
    {
        if s.contains('"') {
            format!("'{s}'")
        } else {
            format!("\"{s}\"")
        }
    } else {
        s.to_string()
    }
}

fn whitespace_words(s: &str) -> Vec<String> {
    s.split([' ', '\t', '\u{b}', '\u{c}', '\r'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `["a", "b"]` when the text is a JSON array of strings; `None` means "use the shell form",
/// which is Docker's fallback for invalid JSON too.
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

fn require_args(name: &str, rest: &str) -> PResult<()> {
    if rest.is_empty() {
        Err(Problem::new(format!(
            "{name} requires at least one argument"
        )))
    } else {
        Ok(())
    }
}

fn parse_duration(flag: &str, v: &str) -> PResult<Duration> {
    // Go's time.ParseDuration units; Docker writes durations that way.
    let err = || Problem::new(format!("invalid duration {v:?} for --{flag}")).at(v.to_string());
    let mut total = 0f64;
    let mut s = v;
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let n: f64 = s[..num_len].parse().map_err(|_| err())?;
        s = &s[num_len..];
        let unit_len = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let mult = match &s[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * mult;
        s = &s[unit_len..];
    }
    Ok(Duration::from_nanos((total * 1e9).round() as u64))
}

fn parse_mount(value: &str) -> PResult<Mount> {
    // CSV fields; a quoted part may hold commas.
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in value.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => fields.push(std::mem::take(&mut cur)),
            None => cur.push(c),
        }
    }
    fields.push(cur);
    let mut kind = MountType::Bind;
    for f in &fields {
        if let Some(("type", t)) = f.split_once('=') {
            kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => {
                    return Err(Problem::new(format!("unsupported mount type {t:?}")).at(t));
                }
            };
        }
    }
    let mut m = Mount::new(kind);
    for f in fields.iter().filter(|f| !f.is_empty()) {
        let (key, val) = match f.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (f.to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| {
            v.ok_or_else(|| {
                Problem::new(format!("invalid mount option {key:?}: missing value")).at(key.clone())
            })
        };
        let num = |v: Option<String>, radix: u32| -> PResult<u32> {
            let v = need(v)?;
            u32::from_str_radix(&v, radix)
                .map_err(|_| Problem::new(format!("invalid value for {key}: {v:?}")).at(v.clone()))
        };
        let boolean = |v: Option<String>| -> PResult<bool> {
            match v.as_deref() {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(o) => Err(Problem::new(format!("invalid value for {key}: {o:?}")).at(o)),
            }
        };
        match key.as_str() {
            "type" => {}
            "id" => m.id = Some(need(val)?),
            "target" | "dst" | "destination" => m.target = Some(need(val)?),
            "source" | "src" => m.source = Some(need(val)?),
            "from" => m.from = Some(need(val)?),
            "sharing" => {
                let v = need(val)?;
                m.sharing = Some(match v.as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(Problem::new(format!("unsupported sharing value {v:?}")).at(v));
                    }
                })
            }
            "mode" => m.mode = Some(num(val, 8)?),
            "uid" => m.uid = Some(num(val, 10)?),
            "gid" => m.gid = Some(num(val, 10)?),
            "ro" | "readonly" => m.readonly = Some(boolean(val)?),
            "rw" | "readwrite" => m.readonly = Some(!boolean(val)?),
            "required" => m.required = Some(boolean(val)?),
            "env" => m.env = Some(need(val)?),
            "size" => m.size = Some(need(val)?),
            _ => {
                let mut msg = format!("unexpected key '{key}' in '{f}'");
                if let Some(s) = names::suggest(&key, names::MOUNT_KEYS.iter().copied()) {
                    msg.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(Problem::new(msg).at(key.clone()));
            }
        }
    }
    let allowed: &[&str] = match kind {
        MountType::Bind => &["target", "source", "from", "readonly"],
        MountType::Cache => &[
            "id", "target", "source", "from", "sharing", "mode", "uid", "gid", "readonly",
        ],
        MountType::Tmpfs => &["target", "size"],
        MountType::Secret | MountType::Ssh => {
            &["id", "target", "required", "mode", "uid", "gid", "env"]
        }
    };
    let set = [
        ("id", m.id.is_some()),
        ("target", m.target.is_some()),
        ("source", m.source.is_some()),
        ("from", m.from.is_some()),
        ("sharing", m.sharing.is_some()),
        ("mode", m.mode.is_some()),
        ("uid", m.uid.is_some()),
        ("gid", m.gid.is_some()),
        ("readonly", m.readonly.is_some()),
        ("required", m.required.is_some()),
        ("env", m.env.is_some() && kind != MountType::Ssh),
        ("size", m.size.is_some()),
    ];
    for (k, is_set) in set {
        if is_set && !allowed.contains(&k) {
            return Err(Problem::new(format!(
                "mount option {k} is not allowed for type={}",
                kind.as_str()
            ))
            .at(k));
        }
    }
    if m.target.is_none() && matches!(kind, MountType::Bind | MountType::Cache | MountType::Tmpfs) {
        return Err(
            Problem::new(format!("mount type={} requires a target", kind.as_str())).at("--mount"),
        );
    }
    Ok(m)
}

/// ENV/LABEL words: split on whitespace outside quotes, keeping quotes and escapes.
fn name_val(ctx: &mut Ctx, what: &str) -> PResult<KeyValues> {
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

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn is_git(s: &str) -> bool {
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || (is_url(s) && (s.ends_with(".git") || s.contains(".git#")))
}

fn copy(ctx: &mut Ctx, add: bool) -> PResult<CopyInstr> {
    let n = ctx.node;
    let flags = Flags::check(&n.name, &n.flags)?;
    let (words, json) = match json_array(&n.rest) {
        Some(v) => (v, true),
        None => (whitespace_words(&n.rest), false),
    };
    if words.len() < 2 {
        return Err(Problem::new(format!(
            "{} requires at least two arguments, but only {} provided. Destination could not be determined",
            n.name,
            if words.is_empty() {
                "none was"
            } else {
                "one was"
            }
        )));
    }
    let (dest, srcs) = words.split_last().expect("len >= 2");
    let mut sources = Vec::new();
    for s in srcs {
        let kind = if !json
            && super::lexer::heredoc_word(s)
                .is_some_and(|h| n.heredocs.iter().any(|d| d.name == h.name))
        {
            SourceKind::Heredoc
        } else if add && is_git(s) {
            SourceKind::Git
        } else if is_url(s) {
            if !add {
                return Err(Problem::new("source can't be a URL for COPY").at(s.clone()));
            }
            SourceKind::Url
        } else {
            SourceKind::Local
        };
        sources.push(Source {
            path: s.clone(),
            kind,
        });
    }
    Ok(CopyInstr {
        from: flags.string("from")?,
        chown: flags.string("chown")?,
        chmod: flags.string("chmod")?,
        link: flags.bool("link")?,
        excludes: flags.strings("exclude")?,
        parents: flags.bool("parents")?,
        checksum: flags.string("checksum")?,
        keep_git_dir: flags.bool("keep-git-dir")?,
        sources,
        dest: dest.clone(),
        json,
        heredocs: n.heredocs.clone(),
    })
}

fn exactly_one(name: &str, rest: &str) -> PResult<String> {
    if rest.is_empty() {
        return Err(Problem::new(format!(
            "{name} requires exactly one argument"
        )));
    }
    Ok(rest.to_string())
}

fn no_flags(n: &Node) -> PResult<()> {
    Flags::check(&n.name, &n.flags).map(|_| ())
}

fn valid_stage_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn casing(s: &str) -> Option<bool> {
    if s == s.to_ascii_uppercase() {
        Some(true)
    } else if s == s.to_ascii_lowercase() {
        Some(false)
    } else {
        None
    }
}

/// Turn one node into an instruction. `onbuild` is true inside an ONBUILD trigger.
fn instruction(ctx: &mut Ctx, onbuild: bool) -> PResult<Instruction> {
    let n = ctx.node;
    let rest = n.rest.as_str();
    Ok(match n.name.as_str() {
        names::FROM => {
            let flags = Flags::check(&n.name, &n.flags)?;
            let words = whitespace_words(rest);
            let name = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    if casing(&n.keyword).is_some() && casing(&n.keyword) != casing(as_kw) {
                        ctx.warn(
                            rule::FROM_AS_CASING,
                            format!(
                                "'{as_kw}' and '{}' keywords' casing do not match",
                                n.keyword
                            ),
                            Some(as_kw.clone()),
                        );
                    }
                    if !valid_stage_name(&name.to_ascii_lowercase()) {
                        return Err(Problem::new(format!(
                            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                        ))
                        .at(name.clone()));
                    }
                    if name.to_ascii_lowercase() != *name {
                        ctx.warn(
                            rule::STAGE_NAME_CASING,
                            format!("Stage name '{name}' should be lowercase"),
                            Some(name.clone()),
                        );
                    }
                    Some(name.clone())
                }
                _ => return Err(Problem::new("FROM requires either one or three arguments")),
            };
            Instruction::From(FromInstr {
                image: words[0].clone(),
                name,
                platform: flags.string("platform")?,
            })
        }
        names::RUN => {
            let flags = Flags::check(&n.name, &n.flags)?;
            if rest.is_empty() && n.heredocs.is_empty() {
                return Err(Problem::new("RUN requires at least one argument"));
            }
            let mounts = flags
                .strings("mount")?
                .iter()
                .map(|m| parse_mount(m))
                .collect::<PResult<Vec<_>>>()?;
            let network = flags.string("network")?;
            if let Some(net) = &network
                && !matches!(net.as_str(), "default" | "none" | "host")
            {
                return Err(
                    Problem::new(format!("unsupported network mode {net:?}")).at(net.clone())
                );
            }
            let security = flags.string("security")?;
            if let Some(s) = &security
                && !matches!(s.as_str(), "sandbox" | "insecure")
            {
                return Err(Problem::new(format!("unsupported security mode {s:?}")).at(s.clone()));
            }
            Instruction::Run(RunInstr {
                mounts,
                network,
                security,
                command: command(rest),
                heredocs: n.heredocs.clone(),
            })
        }
        names::CMD | names::ENTRYPOINT => {
            no_flags(n)?;
            require_args(&n.name, rest)?;
            let c = command(rest);
            if matches!(c, Command::Shell(_)) {
                ctx.warn(
                    rule::JSON_ARGS_RECOMMENDED,
                    format!(
                        "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                        n.name
                    ),
                    None,
                );
            }
            if n.name == names::CMD {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        names::COPY => Instruction::Copy(copy(ctx, false)?),
        names::ADD => Instruction::Add(copy(ctx, true)?),
        names::ENV => {
            no_flags(n)?;
            Instruction::Env(name_val(ctx, names::ENV)?)
        }
        names::LABEL => {
            no_flags(n)?;
            Instruction::Label(name_val(ctx, names::LABEL)?)
        }
        names::ARG => {
            no_flags(n)?;
            let words = raw_words(rest, ctx.escape);
            if words.is_empty() {
                return Err(Problem::new("ARG requires at least one argument"));
            }
            let mut decls = Vec::new();
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w.clone(), None),
                };
                if name.is_empty() {
                    return Err(Problem::new("ARG names can not be blank").at(w));
                }
                decls.push(ArgDecl { name, default });
            }
            Instruction::Arg(decls)
        }
        names::WORKDIR => {
            no_flags(n)?;
            Instruction::Workdir(exactly_one(&n.name, rest)?)
        }
        names::USER => {
            no_flags(n)?;
            Instruction::User(exactly_one(&n.name, rest)?)
        }
        names::STOPSIGNAL => {
            no_flags(n)?;
            Instruction::StopSignal(exactly_one(&n.name, rest)?)
        }
        names::MAINTAINER => {
            no_flags(n)?;
            ctx.warn(
                rule::MAINTAINER_DEPRECATED,
                "Maintainer instruction is deprecated in favor of using label".into(),
                None,
            );
            Instruction::Maintainer(exactly_one(&n.name, rest)?)
        }
        names::EXPOSE => {
            no_flags(n)?;
            require_args(&n.name, rest)?;
            Instruction::Expose(whitespace_words(rest))
        }
        names::VOLUME => {
            no_flags(n)?;
            require_args(&n.name, rest)?;
            let (paths, json) = match json_array(rest) {
                Some(v) => (v, true),
                None => (whitespace_words(rest), false),
            };
            if paths.iter().any(|p| p.trim().is_empty()) {
                return Err(Problem::new("VOLUME specified can not be an empty string"));
            }
            if paths.is_empty() {
                return Err(Problem::new("VOLUME requires at least one argument"));
            }
            Instruction::Volume { paths, json }
        }
        names::SHELL => {
            no_flags(n)?;
            match json_array(rest) {
                Some(v) if !v.is_empty() => Instruction::Shell(v),
                _ => {
                    return Err(Problem::new(
                        "SHELL requires the arguments to be in JSON form",
                    ));
                }
            }
        }
        names::HEALTHCHECK => {
            let flags = Flags::check(&n.name, &n.flags)?;
            let (kind, args) = match rest.find(char::is_whitespace) {
                Some(p) => (&rest[..p], rest[p..].trim()),
                None => (rest, ""),
            };
            match kind.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if !args.is_empty() {
                        return Err(Problem::new("HEALTHCHECK NONE takes no arguments").at(args));
                    }
                    if !n.flags.is_empty() {
                        return Err(Problem::new("HEALTHCHECK NONE takes no options"));
                    }
                    Instruction::Healthcheck(Healthcheck::None)
                }
                "CMD" => {
                    require_args("HEALTHCHECK CMD", args)?;
                    let dur = |f: &str| -> PResult<Option<Duration>> {
                        flags.string(f)?.map(|v| parse_duration(f, &v)).transpose()
                    };
                    let retries = match flags.string("retries")? {
                        None => None,
                        Some(r) => Some(r.parse::<u32>().map_err(|_| {
                            Problem::new(format!("invalid --retries value {r:?}")).at(r.clone())
                        })?),
                    };
                    Instruction::Healthcheck(Healthcheck::Cmd {
                        interval: dur("interval")?,
                        timeout: dur("timeout")?,
                        start_period: dur("start-period")?,
                        start_interval: dur("start-interval")?,
                        retries,
                        command: command(args),
                    })
                }
                other => {
                    return Err(Problem::new(format!(
                        "Unknown type {other:?} in HEALTHCHECK (try CMD)"
                    ))
                    .at(other));
                }
            }
        }
        names::ONBUILD => {
            if onbuild {
                return Err(Problem::new(
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                ));
            }
            no_flags(n)?;
            require_args(&n.name, rest)?;
            let sub = super::lexer::lex(&format!("{}{}", escape_directive(ctx.escape), rest));
            let Some(mut sub) = sub.nodes.into_iter().next() else {
                return Err(Problem::new("ONBUILD requires at least one argument"));
            };
            match sub.name.as_str() {
                names::ONBUILD => {
                    return Err(Problem::new(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                names::FROM | names::MAINTAINER => {
                    return Err(Problem::new(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        sub.name
                    ))
                    .at(sub.keyword.clone()));
                }
                _ => {}
            }
            // Heredoc bodies cannot follow a trigger: the lines after ONBUILD are the next
            // instructions of this file, not the trigger's.
            sub.heredocs.clear();
            let mut sub_ctx = Ctx {
                node: &sub,
                escape: ctx.escape,
                warnings: Vec::new(),
            };
            let ins = instruction(&mut sub_ctx, true)?;
            ctx.warnings.extend(sub_ctx.warnings);
            Instruction::Onbuild(Box::new(ins))
        }
        _ => {
            let mut msg = format!("unknown instruction: {}", n.keyword);
            if let Some(s) = names::suggest(&n.name, names::INSTRUCTIONS.iter().copied()) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(Problem::new(msg).at(n.keyword.clone()));
        }
    })
}

/// A directive line that makes a re-lexed fragment use the file's escape character.
fn escape_directive(escape: char) -> String {
    if escape == '\\' {
        String::new()
    } else {
        format!("# escape={escape}\n")
    }
}

/// Positions: maps a node plus an optional needle to line/col.
pub(crate) struct Locator<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Locator {
            src,
            starts: line_starts(src),
        }
    }

    fn line_text(&self, line: usize) -> &'a str {
        let i = line.saturating_sub(1).min(self.starts.len() - 1);
        let end = self.starts.get(i + 1).copied().unwrap_or(self.src.len());
        self.src[self.starts[i]..end].trim_end_matches(['\n', '\r'])
    }

    /// Find `needle` in the node's lines; else point at the keyword on the first line.
    pub(crate) fn diag(
        &self,
        start: usize,
        end: usize,
        severity: Severity,
        rule: Option<&'static str>,
        message: String,
        needle: Option<&str>,
    ) -> Diagnostic {
        if let Some(nd) = needle.filter(|n| !n.is_empty()) {
            for line in start..=end.max(start) {
                let text = self.line_text(line);
                // Skip the keyword so `FROM x AS x` points at the name, not a prefix match.
                let skip = if line == start {
                    text.len() - text.trim_start().len()
                        + text.trim_start().find(char::is_whitespace).unwrap_or(0)
                } else {
                    0
                };
                if let Some(p) = text.get(skip..).and_then(|t| t.find(nd)) {
                    return Diagnostic {
                        severity,
                        rule,
                        message,
                        line,
                        col: skip + p + 1,
                        len: nd.len(),
                    };
                }
                if line == start
                    && let Some(p) = text.find(nd)
                {
                    return Diagnostic {
                        severity,
                        rule,
                        message,
                        line,
                        col: p + 1,
                        len: nd.len(),
                    };
                }
            }
        }
        let text = self.line_text(start);
        let indent = text.len() - text.trim_start().len();
        let word = text
            .trim_start()
            .split(char::is_whitespace)
            .next()
            .unwrap_or("");
        Diagnostic {
            severity,
            rule,
            message,
            line: start,
            col: indent + 1,
            len: word.len().max(1),
        }
    }
}

/// Parse a Boxfile. `path` is only used in messages.
pub fn parse(src: &str, path: &Path) -> Result<Boxfile, ParseErrors> {
    let lexed = lex(src);
    let loc = Locator::new(src);
    let mut errors: Vec<Diagnostic> = lexed
        .errors
        .iter()
        .map(|e| {
            loc.diag(
                e.line,
                e.line,
                Severity::Error,
                None,
                e.message.clone(),
                None,
            )
        })
        .collect();
    let mut warnings = Vec::new();
    let escape = lexed.directives.escape;

    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let (mut upper, mut lower) = (0usize, 0usize);
    for n in &lexed.nodes {
        match casing(&n.keyword) {
            Some(true) => upper += 1,
            Some(false) => lower += 1,
            None => {}
        }
    }
    let majority_upper = upper >= lower;

    for n in &lexed.nodes {
        let mut ctx = Ctx {
            node: n,
            escape,
            warnings: Vec::new(),
        };
        let result = instruction(&mut ctx, false);
        if n.empty_continuation {
            ctx.warn(
                rule::NO_EMPTY_CONTINUATION,
                "Empty continuation line".into(),
                None,
            );
        }
        if names::INSTRUCTIONS.contains(&n.name.as_str())
            && casing(&n.keyword) != Some(majority_upper)
        {
            ctx.warn(
                rule::CONSISTENT_INSTRUCTION_CASING,
                format!(
                    "Command '{}' should match the case of the command majority ({})",
                    n.keyword,
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
                None,
            );
        }
        for w in ctx.warnings {
            warnings.push(loc.diag(
                n.start_line,
                n.end_line,
                Severity::Warning,
                w.rule,
                w.message,
                w.needle.as_deref(),
            ));
        }
        let ins = match result {
            Ok(i) => i,
            Err(p) => {
                errors.push(loc.diag(
                    n.start_line,
                    n.end_line,
                    Severity::Error,
                    None,
                    p.message,
                    p.needle.as_deref(),
                ));
                continue;
            }
        };
        match ins {
            Instruction::From(f) => stages.push(Stage {
                index: stages.len(),
                name: f.name.as_ref().map(|s| s.to_ascii_lowercase()),
                from: located(n, f),
                instructions: Vec::new(),
            }),
            Instruction::Arg(decls) if stages.is_empty() => {
                global_args.extend(decls.into_iter().map(|d| located(n, d)));
            }
            other => match stages.last_mut() {
                Some(s) => s.instructions.push(located(n, other)),
                None => errors.push(loc.diag(
                    n.start_line,
                    n.end_line,
                    Severity::Error,
                    None,
                    "no build stage in current context".into(),
                    None,
                )),
            },
        }
    }
    if lexed.nodes.is_empty() && errors.is_empty() {
        errors.push(Diagnostic {
            severity: Severity::Error,
            rule: None,
            message: "file with no instructions".into(),
            line: 1,
            col: 1,
            len: 1,
        });
    } else if stages.is_empty() && errors.is_empty() {
        errors.push(loc.diag(
            lexed.nodes[0].start_line,
            lexed.nodes[0].start_line,
            Severity::Error,
            None,
            "no FROM instruction: a Boxfile needs at least one stage".into(),
            None,
        ));
    }

    let mut bf = Boxfile {
        directives: lexed.directives,
        global_args,
        stages,
        warnings: Vec::new(),
    };
    if errors.is_empty() {
        warnings.extend(super::lint::lint(&bf, &loc));
    }
    warnings.retain(|w| !skipped(&bf.directives, w.rule));
    warnings.sort_by_key(|w| (w.line, w.col));
    if !errors.is_empty() {
        return Err(ParseErrors {
            path: path.to_path_buf(),
            source_text: src.to_string(),
            errors,
            warnings,
        });
    }
    bf.warnings = warnings;
    Ok(bf)
}

/// Attach a node's location to what it parsed into.
fn located<T>(n: &Node, node: T) -> Located<T> {
    Located {
        node,
        start_line: n.start_line,
        end_line: n.end_line,
        original: n.original.clone(),
    }
}

fn skipped(d: &Directives, rule: Option<&str>) -> bool {
    rule.is_some_and(|r| {
        d.check_skip
            .iter()
            .any(|s| s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case(r))
    })
}
