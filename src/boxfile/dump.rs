//! The dump format: a Boxfile written back in canonical Dockerfile syntax, one line per
//! instruction (plus heredoc bodies), flags in a fixed order, stage names lower-cased only
//! where they were. It is what the golden tests compare and what build logs print, and it
//! re-parses to the same instructions: `parse(dump(parse(x)))` equals `parse(x)`.

use std::fmt::Write as _;
use std::time::Duration;

use super::instruction::*;

/// Dump a whole Boxfile: directives, global ARGs, then each stage.
pub fn dump(bf: &Boxfile) -> String {
    let mut out = String::new();
    let d = &bf.directives;
    if let Some(s) = &d.syntax {
        let _ = writeln!(out, "# syntax={s}");
    }
    if d.escape != '\\' {
        let _ = writeln!(out, "# escape={}", d.escape);
    }
    if let Some(c) = &d.check {
        let _ = writeln!(out, "# check={c}");
    }
    for a in &bf.global_args {
        out.push_str(&dump_instruction(&Instruction::Arg(vec![a.node.clone()])));
        out.push('\n');
    }
    for s in &bf.stages {
        out.push_str(&dump_instruction(&Instruction::From(s.from.node.clone())));
        out.push('\n');
        for i in &s.instructions {
            out.push_str(&dump_instruction(&i.node));
            out.push('\n');
        }
    }
    out
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn command(c: &Command) -> String {
    match c {
        Command::Exec(v) => json(v),
        Command::Shell(s) => s.clone(),
    }
}

/// Go-style duration that parses back to the same value.
fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

fn flag(out: &mut String, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        let _ = write!(out, "--{name}={} ", quote_if_needed(v));
    }
}

fn bool_flag(out: &mut String, name: &str, v: Option<bool>) {
    match v {
        Some(true) => {
            let _ = write!(out, "--{name} ");
        }
        Some(false) => {
            let _ = write!(out, "--{name}=false ");
        }
        None => {}
    }
}

fn mount(m: &Mount) -> String {
    let mut parts = vec![format!("type={}", m.kind.as_str())];
    let mut kv = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", quote_if_needed(&v)));
        }
    };
    kv("id", m.id.clone());
    kv("target", m.target.clone());
    kv("source", m.source.clone());
    kv("from", m.from.clone());
    kv("sharing", m.sharing.map(|s| s.as_str().to_string()));
    kv("mode", m.mode.map(|v| format!("0{v:o}")));
    kv("uid", m.uid.map(|v| v.to_string()));
    kv("gid", m.gid.map(|v| v.to_string()));
    kv("readonly", m.readonly.map(|v| v.to_string()));
    kv("required", m.required.map(|v| v.to_string()));
    kv("env", m.env.clone());
    kv("size", m.size.clone());
    parts.join(",")
}

fn heredocs(out: &mut String, docs: &[Heredoc]) {
    for h in docs {
        out.push('\n');
        out.push_str(&h.content);
        out.push_str(&h.name);
    }
}

fn key_values(kv: &KeyValues) -> String {
    if kv.legacy {
        let p = &kv.pairs[0];
        format!("{} {}", p.key, p.value)
    } else {
        kv.pairs
            .iter()
            .map(|p| format!("{}={}", p.key, p.value))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One instruction in canonical form (several lines only for heredoc bodies).
pub fn dump_instruction(ins: &Instruction) -> String {
    let mut out = format!("{} ", ins.name());
    match ins {
        Instruction::From(f) => {
            flag(&mut out, "platform", &f.platform);
            out.push_str(&f.image);
            if let Some(n) = &f.name {
                let _ = write!(out, " AS {n}");
            }
        }
        Instruction::Run(r) => {
            for m in &r.mounts {
                let _ = write!(out, "--mount={} ", mount(m));
            }
            flag(&mut out, "network", &r.network);
            flag(&mut out, "security", &r.security);
            out.push_str(&command(&r.command));
            heredocs(&mut out, &r.heredocs);
        }
        Instruction::Cmd(c) | Instruction::Entrypoint(c) => out.push_str(&command(c)),
        Instruction::Copy(c) | Instruction::Add(c) => {
            flag(&mut out, "from", &c.from);
            flag(&mut out, "chown", &c.chown);
            flag(&mut out, "chmod", &c.chmod);
            bool_flag(&mut out, "link", c.link);
            for e in &c.excludes {
                flag(&mut out, "exclude", &Some(e.clone()));
            }
            bool_flag(&mut out, "parents", c.parents);
            flag(&mut out, "checksum", &c.checksum);
            bool_flag(&mut out, "keep-git-dir", c.keep_git_dir);
            let mut words: Vec<String> = c.sources.iter().map(|s| s.path.clone()).collect();
            words.push(c.dest.clone());
            if c.json {
                out.push_str(&json(&words));
            } else {
                out.push_str(&words.join(" "));
            }
            heredocs(&mut out, &c.heredocs);
        }
        Instruction::Env(kv) | Instruction::Label(kv) => out.push_str(&key_values(kv)),
        Instruction::Arg(decls) => {
            let v: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            out.push_str(&v.join(" "));
        }
        Instruction::Workdir(s)
        | Instruction::User(s)
        | Instruction::StopSignal(s)
        | Instruction::Maintainer(s) => out.push_str(s),
        Instruction::Expose(v) => out.push_str(&v.join(" ")),
        Instruction::Volume { paths, json: j } => {
            if *j {
                out.push_str(&json(paths));
            } else {
                out.push_str(&paths.join(" "));
            }
        }
        Instruction::Shell(v) => out.push_str(&json(v)),
        Instruction::Healthcheck(Healthcheck::None) => out.push_str("NONE"),
        Instruction::Healthcheck(Healthcheck::Cmd {
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
            command: c,
        }) => {
            let d = |v: &Option<Duration>| v.map(duration);
            flag(&mut out, "interval", &d(interval));
            flag(&mut out, "timeout", &d(timeout));
            flag(&mut out, "start-period", &d(start_period));
            flag(&mut out, "start-interval", &d(start_interval));
            flag(&mut out, "retries", &retries.map(|r| r.to_string()));
            out.push_str("CMD ");
            out.push_str(&command(c));
        }
        Instruction::Onbuild(inner) => out.push_str(&dump_instruction(inner)),
    }
    out.trim_end_matches(' ').to_string()
}

/// Quote a value for the dump when it would not survive as a bare word.
fn quote_if_needed(s: &str) -> String {
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
