//! ARG/ENV scoping and expansion for the build engine, walking a stage the way Docker does:
//!
//! - ARGs before the first FROM form the global scope; they (and the automatic platform ARGs)
//!   are usable in FROM lines only, unless a stage redeclares them with `ARG NAME`.
//! - An ARG in a stage is visible from its declaration to the end of that stage; its value is
//!   the build arg if given, else its default, else the global value.
//! - ENV (including the base image's) wins over ARG of the same name.
//! - Only ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR (and ARG defaults and
//!   RUN --mount options) are expanded; RUN/CMD/ENTRYPOINT text goes to the shell untouched.
//!
//! [`StageEnv::step`] expands one instruction, records its ARG/ENV effects and reports which
//! build args it used, for the cache key.

use std::collections::{BTreeMap, BTreeSet};

use super::instruction::*;
use super::names;
use super::shell::{Lex, ShellError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{instruction}: {source}")]
pub struct ExpandError {
    pub instruction: &'static str,
    #[source]
    pub source: ShellError,
}

type Result<T> = std::result::Result<T, ExpandError>;

/// The result of expanding one instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The instruction with every expandable word expanded and its quotes removed.
    pub instruction: Instruction,
    /// ARG names (not ENV) whose values went into the expansion: part of the cache key.
    pub used_args: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Arg,
    Env,
}

/// Values of the global scope: global ARGs resolved against build args, plus platform ARGs.
#[derive(Debug, Clone)]
pub struct GlobalScope {
    escape: char,
    build_args: BTreeMap<String, String>,
    /// Declared global ARGs in order, with their resolved value (None: declared, unset).
    args: Vec<(String, Option<String>)>,
    platform: BTreeMap<String, String>,
}

impl GlobalScope {
    /// `platform` holds the automatic ARGs (TARGETPLATFORM, TARGETOS, …, BUILDVARIANT); pass
    /// what applies to this build.
    pub fn new(
        bf: &Boxfile,
        build_args: &BTreeMap<String, String>,
        platform: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut g = GlobalScope {
            escape: bf.directives.escape,
            build_args: build_args.clone(),
            args: Vec::new(),
            platform: platform.clone(),
        };
        for a in &bf.global_args {
            let value = match (build_args.get(&a.node.name), &a.node.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(g.expand(d, names::ARG)?.0),
                (None, None) => None,
            };
            g.args.push((a.node.name.clone(), value));
        }
        Ok(g)
    }

    fn lookup(&self, name: &str) -> Option<(String, bool)> {
        if let Some((_, v)) = self.args.iter().rev().find(|(n, _)| n == name) {
            return v.clone().map(|v| (v, true));
        }
        self.build_args
            .get(name)
            .filter(|_| names::PLATFORM_ARGS.contains(&name))
            .or_else(|| self.platform.get(name))
            .map(|v| (v.clone(), true))
    }

    fn expand(&self, word: &str, ins: &'static str) -> Result<(String, BTreeSet<String>)> {
        let env = |k: &str| self.lookup(k).map(|(v, _)| v);
        let p = Lex::new(self.escape)
            .process(word, &env)
            .map_err(|source| ExpandError {
                instruction: ins,
                source,
            })?;
        Ok((p.result, p.matched))
    }

    /// Expand a FROM line's image and platform with the global scope.
    pub fn expand_from(&self, from: &FromInstr) -> Result<Expanded> {
        let (image, mut used) = self.expand(&from.image, names::FROM)?;
        let platform = match &from.platform {
            Some(p) => {
                let (v, u) = self.expand(p, names::FROM)?;
                used.extend(u);
                Some(v)
            }
            None => None,
        };
        Ok(Expanded {
            instruction: Instruction::From(FromInstr {
                image,
                name: from.name.clone(),
                platform,
            }),
            used_args: used,
        })
    }

    /// A fresh scope for one stage.
    pub fn stage_env(&self) -> StageEnv {
        StageEnv {
            global: self.clone(),
            vars: BTreeMap::new(),
        }
    }
}

/// ARG and ENV values of one stage as its instructions are walked in order.
#[derive(Debug, Clone)]
pub struct StageEnv {
    global: GlobalScope,
    vars: BTreeMap<String, (Kind, Option<String>)>,
}

impl StageEnv {
    /// Seed the ENV of the base image (its config's `Env`), which ARGs cannot override.
    pub fn set_image_env<'a>(&mut self, env: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (k, v) in env {
            self.vars
                .insert(k.to_string(), (Kind::Env, Some(v.to_string())));
        }
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(|(_, v)| v.as_deref())
    }

    fn lex(&self) -> Lex {
        Lex::new(self.global.escape)
    }

    /// Expand one word (quotes removed); returns the value and the ARGs it used.
    pub fn expand_word(
        &self,
        word: &str,
    ) -> std::result::Result<(String, BTreeSet<String>), ShellError> {
        self.process(self.lex(), word).map(|(r, _, u)| (r, u))
    }

    fn process(
        &self,
        lex: Lex,
        word: &str,
    ) -> std::result::Result<(String, Vec<String>, BTreeSet<String>), ShellError> {
        let env = |k: &str| self.lookup(k).map(str::to_string);
        let p = lex.process(word, &env)?;
        let used = p
            .matched
            .into_iter()
            .filter(|m| matches!(self.vars.get(m), Some((Kind::Arg, _))))
            .collect();
        Ok((p.result, p.words, used))
    }

    /// Environment a RUN step gets on top of the image's ENV: ARGs in scope with a value
    /// (ENV wins, so shadowed ones are left out), plus proxy build args, which Docker passes
    /// without a declaration.
    pub fn run_args(&self) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for p in names::PROXY_ARGS {
            if let Some(v) = self.global.build_args.get(*p) {
                out.insert(p.to_string(), v.clone());
            }
        }
        for (k, (kind, v)) in &self.vars {
            match (kind, v) {
                (Kind::Arg, Some(v)) => {
                    out.insert(k.clone(), v.clone());
                }
                (Kind::Env, _) => {
                    out.remove(k);
                }
                _ => {}
            }
        }
        out.into_iter().collect()
    }

    /// Every ENV set so far in this stage (base image included).
    pub fn env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter_map(|(k, (kind, v))| match (kind, v) {
                (Kind::Env, Some(v)) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Expand `ins` and apply its effect on the scope (ARG declares, ENV sets).
    pub fn step(&mut self, ins: &Instruction) -> Result<Expanded> {
        let e = self.expand_instruction(ins)?;
        match &e.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    // ENV always wins over ARG, even when the ARG comes later.
                    if matches!(self.vars.get(&d.name), Some((Kind::Env, _))) {
                        continue;
                    }
                    let value = match self.global.build_args.get(&d.name) {
                        Some(v) => Some(v.clone()),
                        None => d
                            .default
                            .clone()
                            .or_else(|| self.global.lookup(&d.name).map(|(v, _)| v)),
                    };
                    self.vars.insert(d.name.clone(), (Kind::Arg, value));
                }
            }
            Instruction::Env(kv) => {
                for p in &kv.pairs {
                    self.vars
                        .insert(p.key.clone(), (Kind::Env, Some(p.value.clone())));
                }
            }
            _ => {}
        }
        Ok(e)
    }

    /// Expand the words Docker expands in `ins`, without changing the scope. ARG defaults
    /// are expanded too, and ENV pairs see the ones before them on the same line.
    pub fn expand_instruction(&self, ins: &Instruction) -> Result<Expanded> {
        let mut x = Expansion {
            env: self,
            instruction: ins.name(),
            used: BTreeSet::new(),
        };
        let out = match ins {
            Instruction::From(f) => {
                return self.global.expand_from(f);
            }
            Instruction::Arg(decls) => Instruction::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: d.name.clone(),
                            default: x.opt(&d.default)?,
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            Instruction::Env(kv) => Instruction::Env(x.key_values(kv, true)?),
            Instruction::Label(kv) => Instruction::Label(x.key_values(kv, false)?),
            Instruction::Workdir(w) => Instruction::Workdir(x.word(w)?),
            Instruction::User(u) => Instruction::User(x.word(u)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(x.word(s)?),
            Instruction::Expose(ports) => Instruction::Expose(x.expose(ports)?),
            Instruction::Volume { paths, json } => Instruction::Volume {
                paths: x.words(paths)?,
                json: *json,
            },
            Instruction::Copy(c) => Instruction::Copy(x.copy(c)?),
            Instruction::Add(c) => Instruction::Add(x.copy(c)?),
            Instruction::Run(r) => Instruction::Run(x.run(r)?),
            other => other.clone(),
        };
        Ok(Expanded {
            instruction: out,
            used_args: x.used,
        })
    }
}

/// The expansion of one instruction: the scope it sees, and the ARGs it has used so far.
struct Expansion<'a> {
    env: &'a StageEnv,
    instruction: &'static str,
    used: BTreeSet<String>,
}

impl Expansion<'_> {
    fn err(&self) -> impl Fn(ShellError) -> ExpandError + use<> {
        let instruction = self.instruction;
        move |source| ExpandError {
            instruction,
            source,
        }
    }

    fn word(&mut self, s: &str) -> Result<String> {
        let (r, _, u) = self.env.process(self.env.lex(), s).map_err(self.err())?;
        self.used.extend(u);
        Ok(r)
    }

    fn opt(&mut self, s: &Option<String>) -> Result<Option<String>> {
        s.as_deref().map(|s| self.word(s)).transpose()
    }

    fn words(&mut self, v: &[String]) -> Result<Vec<String>> {
        v.iter().map(|w| self.word(w)).collect()
    }

    /// ENV or LABEL pairs. Later pairs on one ENV line see earlier ones, as in Docker.
    fn key_values(&mut self, kv: &KeyValues, is_env: bool) -> Result<KeyValues> {
        let mut scratch = self.env.clone();
        let mut pairs = Vec::new();
        for p in &kv.pairs {
            let (key, _, u1) = scratch.process(scratch.lex(), &p.key).map_err(self.err())?;
            let (value, _, u2) = scratch
                .process(scratch.lex(), &p.value)
                .map_err(self.err())?;
            self.used.extend(u1);
            self.used.extend(u2);
            if is_env {
                scratch
                    .vars
                    .insert(key.clone(), (Kind::Env, Some(value.clone())));
            }
            pairs.push(KeyValue { key, value });
        }
        Ok(KeyValues {
            pairs,
            legacy: kv.legacy,
        })
    }

    /// EXPOSE: a word may expand into several ports.
    fn expose(&mut self, ports: &[String]) -> Result<Vec<String>> {
        let mut v = Vec::new();
        for p in ports {
            let (_, words, u) = self.env.process(self.env.lex(), p).map_err(self.err())?;
            self.used.extend(u);
            v.extend(words);
        }
        Ok(v)
    }

    fn copy(&mut self, c: &CopyInstr) -> Result<CopyInstr> {
        let mut c2 = c.clone();
        c2.from = self.opt(&c.from)?;
        c2.chown = self.opt(&c.chown)?;
        c2.chmod = self.opt(&c.chmod)?;
        c2.checksum = self.opt(&c.checksum)?;
        c2.excludes = self.words(&c.excludes)?;
        for s in &mut c2.sources {
            if s.kind != SourceKind::Heredoc {
                s.path = self.word(&s.path)?;
            }
        }
        c2.dest = self.word(&c.dest)?;
        // COPY heredocs with an unquoted delimiter are expanded by the builder (RUN
        // heredocs are left to the shell); quotes inside are content, not syntax.
        for h in &mut c2.heredocs {
            if h.expand {
                let lex = Lex {
                    skip_quotes: true,
                    ..self.env.lex()
                };
                let (r, _, u) = self.env.process(lex, &h.content).map_err(self.err())?;
                self.used.extend(u);
                h.content = r;
            }
        }
        Ok(c2)
    }

    /// RUN: only the `--mount` options are expanded; the command is the shell's.
    fn run(&mut self, r: &RunInstr) -> Result<RunInstr> {
        let mut r2 = r.clone();
        for m in &mut r2.mounts {
            m.id = self.opt(&m.id)?;
            m.target = self.opt(&m.target)?;
            m.source = self.opt(&m.source)?;
            m.from = self.opt(&m.from)?;
            m.env = self.opt(&m.env)?;
            m.size = self.opt(&m.size)?;
        }
        Ok(r2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn bf(src: &str) -> Boxfile {
        super::super::parse(src, Path::new("Boxfile")).unwrap()
    }

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn global_args_only_in_from_unless_redeclared() {
        let b = bf("ARG V=1\nARG IMG=alpine:$V\nFROM $IMG\nWORKDIR /a$V\nARG V\nWORKDIR /b$V\n");
        let g = GlobalScope::new(&b, &args(&[]), &args(&[])).unwrap();
        let f = g.expand_from(&b.stages[0].from.node).unwrap();
        assert_eq!(
            f.instruction,
            Instruction::From(FromInstr {
                image: "alpine:1".into(),
                name: None,
                platform: None
            })
        );
        let mut s = g.stage_env();
        let w: Vec<_> = b.stages[0]
            .instructions
            .iter()
            .map(|i| s.step(&i.node).unwrap())
            .collect();
        assert_eq!(w[0].instruction, Instruction::Workdir("/a".into()));
        assert_eq!(w[2].instruction, Instruction::Workdir("/b1".into()));
        assert_eq!(w[2].used_args, BTreeSet::from(["V".to_string()]));
    }

    #[test]
    fn build_args_and_env_precedence() {
        let b = bf("FROM x\nARG A=def\nENV B=$A\nENV A=env\nARG A=late\nUSER $A:$B\n");
        let g =
            GlobalScope::new(&b, &args(&[("A", "cli"), ("http_proxy", "p")]), &args(&[])).unwrap();
        let mut s = g.stage_env();
        let mut last = None;
        for i in &b.stages[0].instructions {
            last = Some(s.step(&i.node).unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.instruction, Instruction::User("env:cli".into()));
        assert!(last.used_args.is_empty());
        assert_eq!(s.run_args(), vec![("http_proxy".into(), "p".into())]);
    }

    #[test]
    fn run_is_not_expanded_but_mounts_are() {
        let b = bf("FROM x\nARG D=/c\nRUN --mount=type=cache,target=$D echo $D\n");
        let g = GlobalScope::new(&b, &args(&[]), &args(&[])).unwrap();
        let mut s = g.stage_env();
        s.step(&b.stages[0].instructions[0].node).unwrap();
        let e = s.step(&b.stages[0].instructions[1].node).unwrap();
        let Instruction::Run(r) = e.instruction else {
            panic!()
        };
        assert_eq!(r.mounts[0].target.as_deref(), Some("/c"));
        assert_eq!(r.command, Command::Shell("echo $D".into()));
    }
}
