//! The typed form of a Boxfile: one variant per instruction, holding the arguments exactly as
//! written (quotes and `$VAR`s intact). Expansion happens later, per stage, in
//! [`super::expand`], because the values of ARGs depend on build args the parser never sees.

use std::time::Duration;

/// A value with the place in the Boxfile it came from. The location is attached once, where a
/// node is dispatched; the per-instruction parsers never see positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub node: T,
    /// First line of the instruction, 1-based.
    pub start_line: usize,
    /// Last line (continuations and heredoc bodies included), 1-based.
    pub end_line: usize,
    /// The instruction's text as written, continuation lines joined (for logs and errors).
    pub original: String,
}

/// The directives at the top of the file (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    /// `\` unless `# escape=`` ` ``.
    pub escape: char,
    /// The raw `# check=` value, if any.
    pub check: Option<String>,
    /// Rules named in `skip=…` (`all` skips every rule).
    pub check_skip: Vec<String>,
    /// `error=true`: warnings fail `--check`.
    pub check_error: bool,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
            check_skip: Vec::new(),
            check_error: false,
        }
    }
}

/// A heredoc body attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed.
    pub name: String,
    /// The body, each line ending in `\n`; leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no `$VAR` expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    /// `3<<EOF` redirects another descriptor.
    pub fd: Option<u32>,
    /// The delimiter word as written (`"EOF"`), kept for the dump.
    pub raw: String,
}

/// RUN, CMD and ENTRYPOINT arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `["exe", "arg"]`: run as is, no shell.
    Exec(Vec<String>),
    /// Anything else: handed to the SHELL (`/bin/sh -c`) unexpanded.
    Shell(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

impl CacheSharing {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// One `RUN --mount=…`. Fields not given stay `None`; defaults are the engine's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub id: Option<String>,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub sharing: Option<CacheSharing>,
    /// File mode, octal as written (`0755`).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `ro`/`readonly` → Some(true), `rw`/`readwrite` → Some(false).
    pub readonly: Option<bool>,
    pub required: Option<bool>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
    /// tmpfs size as written (`64m`, bytes when bare).
    pub size: Option<String>,
}

impl Mount {
    pub fn new(kind: MountType) -> Self {
        Mount {
            kind,
            id: None,
            target: None,
            source: None,
            from: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            readonly: None,
            required: None,
            env: None,
            size: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstr {
    pub mounts: Vec<Mount>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstr {
    pub image: String,
    /// The stage name as written (`AS Build` keeps its case; lookups lowercase it).
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// Where a COPY/ADD source comes from. The parser only classifies; fetching, unpacking a local
/// tar (ADD) and cloning are the engine's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A path in the context (or in the `--from` stage/image).
    Local,
    /// `http://` or `https://` (ADD only).
    Url,
    /// A git repository (`git@…`, `…​.git`, `git://`), ADD only.
    Git,
    /// `<<NAME`: the content of the heredoc with that name.
    Heredoc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: String,
    pub kind: SourceKind,
}

/// COPY and ADD share their shape; the ADD-only flags stay `None`/false for COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: Option<bool>,
    pub excludes: Vec<String>,
    pub parents: Option<bool>,
    /// ADD --checksum=sha256:…
    pub checksum: Option<String>,
    /// ADD --keep-git-dir
    pub keep_git_dir: Option<bool>,
    pub sources: Vec<Source>,
    pub dest: String,
    /// Written as a JSON array (`COPY ["a b", "/c/"]`); kept so the dump stays in that form.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    /// As written, quotes included; expansion removes them.
    pub value: String,
}

/// ENV and LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValues {
    pub pairs: Vec<KeyValue>,
    /// The deprecated `ENV key value` form (one pair, value = rest of the line).
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// As written, quotes included.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
        command: Command,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(FromInstr),
    Run(RunInstr),
    Cmd(Command),
    Entrypoint(Command),
    Copy(CopyInstr),
    Add(CopyInstr),
    Env(KeyValues),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Label(KeyValues),
    Expose(Vec<String>),
    /// Paths, and whether they were written as a JSON array.
    Volume {
        paths: Vec<String>,
        json: bool,
    },
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

impl Instruction {
    /// The instruction keyword, upper case.
    pub fn name(&self) -> &'static str {
        use super::names::*;
        match self {
            Instruction::From(_) => FROM,
            Instruction::Run(_) => RUN,
            Instruction::Cmd(_) => CMD,
            Instruction::Entrypoint(_) => ENTRYPOINT,
            Instruction::Copy(_) => COPY,
            Instruction::Add(_) => ADD,
            Instruction::Env(_) => ENV,
            Instruction::Arg(_) => ARG,
            Instruction::Workdir(_) => WORKDIR,
            Instruction::User(_) => USER,
            Instruction::Label(_) => LABEL,
            Instruction::Expose(_) => EXPOSE,
            Instruction::Volume { .. } => VOLUME,
            Instruction::Shell(_) => SHELL,
            Instruction::StopSignal(_) => STOPSIGNAL,
            Instruction::Healthcheck(_) => HEALTHCHECK,
            Instruction::Onbuild(_) => ONBUILD,
            Instruction::Maintainer(_) => MAINTAINER,
        }
    }
}

/// One `FROM` and what follows it up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in the file, from 0; `COPY --from=0` refers to it.
    pub index: usize,
    /// The `AS` name, lower-cased as Docker compares it.
    pub name: Option<String>,
    pub from: Located<FromInstr>,
    pub instructions: Vec<Located<Instruction>>,
}

/// A parsed Boxfile.
#[derive(Debug, Clone)]
pub struct Boxfile {
    pub directives: Directives,
    /// ARGs before the first FROM, one entry per declared name.
    pub global_args: Vec<Located<ArgDecl>>,
    pub stages: Vec<Stage>,
    /// Lint findings and other non-fatal problems, already filtered by `# check=skip=`.
    pub warnings: Vec<super::Diagnostic>,
}

impl Boxfile {
    /// Equality of everything but locations, original text and warnings: what
    /// `parse(dump(parse(x))) == parse(x)` means.
    pub fn same_instructions(&self, other: &Boxfile) -> bool {
        fn nodes<T: Clone>(v: &[Located<T>]) -> Vec<T> {
            v.iter().map(|l| l.node.clone()).collect()
        }
        self.directives == other.directives
            && nodes(&self.global_args) == nodes(&other.global_args)
            && self.stages.len() == other.stages.len()
            && self.stages.iter().zip(&other.stages).all(|(a, b)| {
                a.index == b.index
                    && a.name == b.name
                    && a.from.node == b.from.node
                    && nodes(&a.instructions) == nodes(&b.instructions)
            })
    }

    /// The stage a `--target`, `--from` or `FROM <stage>` names (by name or index).
    pub fn stage(&self, name_or_index: &str) -> Option<&Stage> {
        let lower = name_or_index.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name_or_index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i))
            })
    }
}
