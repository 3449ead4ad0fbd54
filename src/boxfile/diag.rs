//! Diagnostics: every error and warning the parser or linter finds, with a line, a column and
//! a length, rendered through miette as `file:line:col`, the source line and a caret (plain
//! ASCII when stderr is not a terminal). [`Locator`] turns a node's line range and the text to
//! point at into that position; the parser and the linter both use it.
//!
//! Rendering hands miette only a window of a few lines around the finding, so a file with
//! thousands of findings does not rescan the whole source for each one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError,
    MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding. Lines and columns are 1-based; `len` is the caret's width in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Lint rule name (BuildKit's spelling), `None` for syntax errors.
    pub rule: Option<&'static str>,
    pub message: String,
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Diagnostic {
    /// `line:col: error: message` / `line:col: warning[Rule]: message`, the plain form used by
    /// the golden tests and by logs that cannot show a snippet.
    pub fn plain(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.rule {
            Some(r) => format!("{}:{}: {sev}[{r}]: {}", self.line, self.col, self.message),
            None => format!("{}:{}: {sev}: {}", self.line, self.col, self.message),
        }
    }
}

/// Parsing failed; holds every error found (the parser goes on after a bad instruction) and the
/// warnings collected up to then.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", path.display(), summary(errors))]
pub struct ParseErrors {
    pub path: PathBuf,
    pub source_text: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

fn summary(errors: &[Diagnostic]) -> String {
    match errors {
        [] => "no errors".to_string(),
        [one] => format!("line {}: {}", one.line, one.message),
        [first, rest @ ..] => format!(
            "line {}: {} (and {} more errors)",
            first.line,
            first.message,
            rest.len()
        ),
    }
}

impl ParseErrors {
    /// Errors then warnings, in line order within each, rendered with snippets.
    pub fn render(&self) -> String {
        let mut all: Vec<&Diagnostic> = self.errors.iter().chain(&self.warnings).collect();
        all.sort_by_key(|d| (d.line, d.severity));
        render(&self.path, &self.source_text, all)
    }
}

/// Byte offsets of line starts, for turning (line, col) back into spans.
pub(crate) fn line_starts(src: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(src.match_indices('\n').map(|(i, _)| i + 1));
    v
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

/// A few lines of the source that miette sees as the whole file, with line numbers shifted
/// back to the real ones.
struct Window {
    name: String,
    text: String,
    first_line: usize,
}

impl SourceCode for Window {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.as_str().read_span(span, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Render diagnostics in miette's graphical style without colours (stable in logs and tests).
pub fn render<'a>(
    path: &Path,
    src: &str,
    diags: impl IntoIterator<Item = &'a Diagnostic>,
) -> String {
    let starts = line_starts(src);
    // Plain ASCII (`,-[file:2:5]`, `^^^^`) for logs and pipes; miette's own theme on a TTY.
    let theme = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        GraphicalTheme::default()
    } else {
        GraphicalTheme {
            characters: miette::ThemeCharacters::ascii(),
            styles: miette::ThemeStyles::none(),
        }
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    let mut out = String::new();
    for d in diags {
        let line_idx = d.line.saturating_sub(1).min(starts.len() - 1);
        let first = line_idx.saturating_sub(2);
        let last = (line_idx + 3).min(starts.len());
        let begin = starts[first];
        let end = starts.get(last).copied().unwrap_or(src.len());
        let text = src[begin..end].to_string();
        let line_off = starts[line_idx] - begin;
        let line_len = text[line_off..].find('\n').unwrap_or(text.len() - line_off);
        let col = (d.col.max(1) - 1).min(line_len);
        let len = d.len.min(line_len - col);
        let mut md = MietteDiagnostic::new(d.message.clone())
            .with_severity(match d.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            })
            .with_label(LabeledSpan::new_with_span(
                None,
                SourceSpan::new((line_off + col).into(), len),
            ));
        if let Some(rule) = d.rule {
            md = md.with_code(rule);
        }
        let report = miette::Report::new(md).with_source_code(Window {
            name: path.display().to_string(),
            text,
            first_line: first,
        });
        if handler.render_report(&mut out, report.as_ref()).is_err() {
            let _ = writeln!(out, "{}:{}", path.display(), d.plain());
        }
    }
    out
}
