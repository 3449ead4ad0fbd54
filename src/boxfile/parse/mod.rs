//! Stage two of parsing: loose [`Node`]s → typed [`Instruction`]s, then stages. Each
//! per-instruction parser ([`instructions`], one per instruction, found through its table)
//! sees only the node's keyword, flags and arguments; when it fails it may name the offending
//! text (`needle`), and [`parse`] alone turns that into a line and column. Parsing continues
//! after a bad instruction so `--check` can report all of them. Whole-file lints run last
//! ([`super::lint`]), only on a file without errors.

mod args;
mod instructions;
mod mount;

use std::path::Path;

use super::diag::{Diagnostic, Locator, ParseErrors, Severity};
use super::instruction::*;
use super::lexer::{Node, lex};
use super::names::{self, rule};
use args::casing;

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
    /// True inside an ONBUILD trigger.
    onbuild: bool,
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

/// Turn one node into an instruction through the parser its name selects.
fn instruction(ctx: &mut Ctx) -> PResult<Instruction> {
    let n = ctx.node;
    match instructions::PARSERS
        .iter()
        .find(|(name, _)| *name == n.name)
    {
        Some((_, parser)) => parser(ctx),
        None => {
            let mut msg = format!("unknown instruction: {}", n.keyword);
            if let Some(s) = names::suggest(&n.name, names::INSTRUCTIONS.iter().copied()) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            Err(Problem::new(msg).at(n.keyword.clone()))
        }
    }
}

/// Parse a Boxfile. `path` is only used in messages.
pub fn parse(src: &str, path: &Path) -> Result<Boxfile, ParseErrors> {
    let lexed = lex(src);
    let loc = Locator::new(src);
    let mut b = Builder {
        loc: &loc,
        errors: lexed
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
            .collect(),
        warnings: Vec::new(),
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    let majority_upper = majority_upper(&lexed.nodes);
    for n in &lexed.nodes {
        b.node(n, lexed.directives.escape, majority_upper);
    }
    b.check_not_empty(&lexed.nodes);

    let Builder {
        errors,
        mut warnings,
        global_args,
        stages,
        ..
    } = b;
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

/// Whether most instruction keywords are upper case (ties count as upper).
fn majority_upper(nodes: &[Node]) -> bool {
    let (mut upper, mut lower) = (0usize, 0usize);
    for n in nodes {
        match casing(&n.keyword) {
            Some(true) => upper += 1,
            Some(false) => lower += 1,
            None => {}
        }
    }
    upper >= lower
}

/// The file being assembled: stages, global ARGs, and every finding with its position.
struct Builder<'a> {
    loc: &'a Locator<'a>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    global_args: Vec<Located<ArgDecl>>,
    stages: Vec<Stage>,
}

impl Builder<'_> {
    /// Parse one node, locate its warnings and error, and file the instruction in its stage.
    fn node(&mut self, n: &Node, escape: char, majority_upper: bool) {
        let mut ctx = Ctx {
            node: n,
            escape,
            onbuild: false,
            warnings: Vec::new(),
        };
        let result = instruction(&mut ctx);
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
            self.warnings.push(self.loc.diag(
                n.start_line,
                n.end_line,
                Severity::Warning,
                w.rule,
                w.message,
                w.needle.as_deref(),
            ));
        }
        match result {
            Ok(ins) => self.file(n, ins),
            Err(p) => self.error(n, p.message, p.needle.as_deref()),
        }
    }

    fn error(&mut self, n: &Node, message: String, needle: Option<&str>) {
        self.errors.push(self.loc.diag(
            n.start_line,
            n.end_line,
            Severity::Error,
            None,
            message,
            needle,
        ));
    }

    /// FROM opens a stage; ARGs before the first FROM are global; the rest joins the stage.
    fn file(&mut self, n: &Node, ins: Instruction) {
        match ins {
            Instruction::From(f) => self.stages.push(Stage {
                index: self.stages.len(),
                name: f.name.as_ref().map(|s| s.to_ascii_lowercase()),
                from: located(n, f),
                instructions: Vec::new(),
            }),
            Instruction::Arg(decls) if self.stages.is_empty() => {
                self.global_args
                    .extend(decls.into_iter().map(|d| located(n, d)));
            }
            other => match self.stages.last_mut() {
                Some(s) => s.instructions.push(located(n, other)),
                None => self.error(n, "no build stage in current context".into(), None),
            },
        }
    }

    /// A file with no instructions, or none but global ARGs, is an error of its own (unless
    /// something else already failed).
    fn check_not_empty(&mut self, nodes: &[Node]) {
        if nodes.is_empty() && self.errors.is_empty() {
            self.errors.push(Diagnostic {
                severity: Severity::Error,
                rule: None,
                message: "file with no instructions".into(),
                line: 1,
                col: 1,
                len: 1,
            });
        } else if self.stages.is_empty() && self.errors.is_empty() {
            self.errors.push(self.loc.diag(
                nodes[0].start_line,
                nodes[0].start_line,
                Severity::Error,
                None,
                "no FROM instruction: a Boxfile needs at least one stage".into(),
                None,
            ));
        }
    }
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
