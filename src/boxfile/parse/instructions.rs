//! One parser per instruction (or per family: CMD/ENTRYPOINT, COPY/ADD, the single-argument
//! ones), and the table [`PARSERS`] that [`super::instruction`] dispatches through. Each sees
//! only its node's words and flags through [`Ctx`]; positions are [`super::parse`]'s job.

use std::time::Duration;

use super::args::{
    Flags, casing, command, exactly_one, is_git, is_url, json_array, name_val, no_flags,
    require_args, valid_stage_name, whitespace_words,
};
use super::mount::{parse_duration, parse_mount};
use super::{Ctx, PResult, Problem};
use crate::boxfile::instruction::*;
use crate::boxfile::lexer::{self, raw_words};
use crate::boxfile::names::{self, rule};

/// A per-instruction parser.
pub(super) type Parser = fn(&mut Ctx) -> PResult<Instruction>;

/// Instruction name (upper case) → its parser.
pub(super) const PARSERS: &[(&str, Parser)] = &[
    (names::FROM, from),
    (names::RUN, run),
    (names::CMD, cmd_or_entrypoint),
    (names::ENTRYPOINT, cmd_or_entrypoint),
    (names::COPY, copy),
    (names::ADD, add),
    (names::ENV, env),
    (names::LABEL, label),
    (names::ARG, arg),
    (names::WORKDIR, single),
    (names::USER, single),
    (names::STOPSIGNAL, single),
    (names::MAINTAINER, maintainer),
    (names::EXPOSE, expose),
    (names::VOLUME, volume),
    (names::SHELL, shell),
    (names::HEALTHCHECK, healthcheck),
    (names::ONBUILD, onbuild),
];

fn from(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    let flags = Flags::check(&n.name, &n.flags)?;
    let words = whitespace_words(&n.rest);
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
    Ok(Instruction::From(FromInstr {
        image: words[0].clone(),
        name,
        platform: flags.string("platform")?,
    }))
}

fn run(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    let rest = n.rest.as_str();
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
        return Err(Problem::new(format!("unsupported network mode {net:?}")).at(net.clone()));
    }
    let security = flags.string("security")?;
    if let Some(s) = &security
        && !matches!(s.as_str(), "sandbox" | "insecure")
    {
        return Err(Problem::new(format!("unsupported security mode {s:?}")).at(s.clone()));
    }
    Ok(Instruction::Run(RunInstr {
        mounts,
        network,
        security,
        command: command(rest),
        heredocs: n.heredocs.clone(),
    }))
}

fn cmd_or_entrypoint(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    no_flags(n)?;
    require_args(&n.name, &n.rest)?;
    let c = command(&n.rest);
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
    Ok(if n.name == names::CMD {
        Instruction::Cmd(c)
    } else {
        Instruction::Entrypoint(c)
    })
}

fn copy(ctx: &mut Ctx) -> PResult<Instruction> {
    Ok(Instruction::Copy(copy_or_add(ctx, false)?))
}

fn add(ctx: &mut Ctx) -> PResult<Instruction> {
    Ok(Instruction::Add(copy_or_add(ctx, true)?))
}

fn copy_or_add(ctx: &mut Ctx, add: bool) -> PResult<CopyInstr> {
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
            && lexer::heredoc_word(s).is_some_and(|h| n.heredocs.iter().any(|d| d.name == h.name))
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

fn env(ctx: &mut Ctx) -> PResult<Instruction> {
    no_flags(ctx.node)?;
    Ok(Instruction::Env(name_val(ctx, names::ENV)?))
}

fn label(ctx: &mut Ctx) -> PResult<Instruction> {
    no_flags(ctx.node)?;
    Ok(Instruction::Label(name_val(ctx, names::LABEL)?))
}

fn arg(ctx: &mut Ctx) -> PResult<Instruction> {
    no_flags(ctx.node)?;
    let words = raw_words(&ctx.node.rest, ctx.escape);
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
    Ok(Instruction::Arg(decls))
}

/// WORKDIR, USER, STOPSIGNAL: the rest of the line is the one argument.
fn single(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    no_flags(n)?;
    let v = exactly_one(&n.name, &n.rest)?;
    Ok(match n.name.as_str() {
        names::WORKDIR => Instruction::Workdir(v),
        names::USER => Instruction::User(v),
        _ => Instruction::StopSignal(v),
    })
}

fn maintainer(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    no_flags(n)?;
    ctx.warn(
        rule::MAINTAINER_DEPRECATED,
        "Maintainer instruction is deprecated in favor of using label".into(),
        None,
    );
    Ok(Instruction::Maintainer(exactly_one(&n.name, &n.rest)?))
}

fn expose(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    no_flags(n)?;
    require_args(&n.name, &n.rest)?;
    Ok(Instruction::Expose(whitespace_words(&n.rest)))
}

fn volume(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    let rest = n.rest.as_str();
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
    Ok(Instruction::Volume { paths, json })
}

fn shell(ctx: &mut Ctx) -> PResult<Instruction> {
    no_flags(ctx.node)?;
    match json_array(&ctx.node.rest) {
        Some(v) if !v.is_empty() => Ok(Instruction::Shell(v)),
        _ => Err(Problem::new(
            "SHELL requires the arguments to be in JSON form",
        )),
    }
}

fn healthcheck(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    let rest = n.rest.as_str();
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
            Ok(Instruction::Healthcheck(Healthcheck::None))
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
            Ok(Instruction::Healthcheck(Healthcheck::Cmd {
                interval: dur("interval")?,
                timeout: dur("timeout")?,
                start_period: dur("start-period")?,
                start_interval: dur("start-interval")?,
                retries,
                command: command(args),
            }))
        }
        other => {
            Err(Problem::new(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")).at(other))
        }
    }
}

/// The trigger is re-lexed as a line of its own and parsed like any instruction, except
/// that ONBUILD, FROM and MAINTAINER cannot be triggers.
fn onbuild(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    let rest = n.rest.as_str();
    if ctx.onbuild {
        return Err(Problem::new(
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ));
    }
    no_flags(n)?;
    require_args(&n.name, rest)?;
    let sub = lexer::lex(&format!("{}{}", escape_directive(ctx.escape), rest));
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
            return Err(
                Problem::new(format!("{} isn't allowed as an ONBUILD trigger", sub.name))
                    .at(sub.keyword.clone()),
            );
        }
        _ => {}
    }
    // Heredoc bodies cannot follow a trigger: the lines after ONBUILD are the next
    // instructions of this file, not the trigger's.
    sub.heredocs.clear();
    let mut sub_ctx = Ctx {
        node: &sub,
        escape: ctx.escape,
        onbuild: true,
        warnings: Vec::new(),
    };
    let ins = super::instruction(&mut sub_ctx)?;
    ctx.warnings.extend(sub_ctx.warnings);
    Ok(Instruction::Onbuild(Box::new(ins)))
}

/// A directive line that makes a re-lexed fragment use the file's escape character.
fn escape_directive(escape: char) -> String {
    if escape == '\\' {
        String::new()
    } else {
        format!("# escape={escape}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_has_exactly_one_parser() {
        for name in names::INSTRUCTIONS {
            let n = PARSERS.iter().filter(|(p, _)| p == name).count();
            assert_eq!(n, 1, "{name} has {n} parsers");
        }
        assert_eq!(PARSERS.len(), names::INSTRUCTIONS.len());
    }
}
