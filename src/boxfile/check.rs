//! `boxbuild --check`: find the Boxfile, parse and lint it, print every finding with its
//! snippet, and decide the exit code. It never pulls an image and never reads the context
//! beyond the Boxfile itself.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, render};
use super::{FindError, find_boxfile, parse};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a check found, before printing.
#[derive(Debug)]
pub struct CheckReport {
    pub path: PathBuf,
    pub source_text: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// `# check=error=true`: warnings count as failures.
    pub warnings_fail: bool,
}

impl CheckReport {
    /// 1 when there is an error, or a warning under `strict`/`# check=error=true`; else 0.
    pub fn exit_code(&self, strict: bool) -> u8 {
        let fail = !self.errors.is_empty()
            || ((strict || self.warnings_fail) && !self.warnings.is_empty());
        u8::from(fail)
    }

    /// Every finding rendered with its snippet, then a one-line summary.
    pub fn render(&self) -> String {
        let mut all: Vec<&Diagnostic> = self.errors.iter().chain(&self.warnings).collect();
        all.sort_by_key(|d| (d.line, d.col, d.severity));
        let mut out = render(&self.path, &self.source_text, all);
        out.push_str(&format!(
            "{}: {} error{}, {} warning{}\n",
            self.path.display(),
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" },
            self.warnings.len(),
            if self.warnings.len() == 1 { "" } else { "s" },
        ));
        out
    }
}

/// Check source text already in memory.
pub fn check_source(src: &str, path: &Path) -> CheckReport {
    match parse(src, path) {
        Ok(bf) => CheckReport {
            path: path.to_path_buf(),
            source_text: src.to_string(),
            errors: Vec::new(),
            warnings_fail: bf.directives.check_error,
            warnings: bf.warnings,
        },
        Err(e) => CheckReport {
            warnings_fail: src_check_error(src),
            path: e.path,
            source_text: e.source_text,
            errors: e.errors,
            warnings: e.warnings,
        },
    }
}

/// `# check=error=true` even when parsing failed later on.
fn src_check_error(src: &str) -> bool {
    super::lexer::lex(src).directives.check_error
}

/// Find and check the Boxfile for `context` (`-` reads it from stdin) and `-f`.
pub fn check(context: &str, file: Option<&Path>) -> Result<CheckReport, CheckError> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| CheckError::Read {
                path: p.to_path_buf(),
                source,
            })
    };
    let (path, src) = match (context, file) {
        ("-", None) => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| CheckError::Read {
                    path: "-".into(),
                    source,
                })?;
            (
                PathBuf::from("<stdin>"),
                String::from_utf8_lossy(&buf).into_owned(),
            )
        }
        _ => {
            let p = find_boxfile(Path::new(context), file)?;
            let src = read(&p)?;
            (p, src)
        }
    };
    Ok(check_source(&src, &path))
}
