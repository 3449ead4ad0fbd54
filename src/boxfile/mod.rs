//! The Boxfile language (Dockerfile syntax): lexer and parser into instructions with source
//! spans, ARG/ENV expansion, ignore files and diagnostics. Knows nothing about the kernel.
//!
//! Parsing runs in two stages: [`lexer`] turns text into loose nodes (keyword, flags, rest,
//! heredocs, line range), [`parse`] turns nodes into the typed [`Instruction`] enum and groups
//! them into [`Stage`]s. [`expand`] applies Docker's ARG/ENV rules per stage for the build
//! engine, [`ignore`] reads `.boxignore`/`.dockerignore`, [`check`] is `boxbuild --check`.

pub mod check;
mod diag;
pub mod dump;
pub mod expand;
pub mod ignore;
mod instruction;
pub mod lexer;
mod lint;
pub mod names;
mod parse;
pub mod shell;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, ParseErrors, Severity, render};
pub use dump::{dump, dump_instruction};
pub use expand::{ExpandError, Expanded, GlobalScope, StageEnv};
pub use ignore::{IgnoreError, IgnoreMatcher};
pub use instruction::*;
pub use parse::parse;

/// Names tried, in order, when no `-f` is given.
pub const DEFAULT_NAMES: &[&str] = &["Boxfile", "Dockerfile", "Containerfile"];

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "no Boxfile in {}: looked for {} (use -f FILE to name one)",
        .context.display(), DEFAULT_NAMES.join(", ")
    )]
    NotFound { context: PathBuf },
    #[error("Boxfile {} does not exist", .0.display())]
    Missing(PathBuf),
}

/// The Boxfile to use: `-f FILE` (relative to the current directory, as Docker does) if
/// given, else the first of [`DEFAULT_NAMES`] present in the context.
pub fn find_boxfile(context: &Path, file_flag: Option<&Path>) -> Result<PathBuf, FindError> {
    if let Some(f) = file_flag {
        return if f.is_file() {
            Ok(f.to_path_buf())
        } else {
            Err(FindError::Missing(f.to_path_buf()))
        };
    }
    DEFAULT_NAMES
        .iter()
        .map(|n| context.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| FindError::NotFound {
            context: context.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxfile_lookup_order_and_ignore_file_precedence() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert!(matches!(
            find_boxfile(d, None),
            Err(FindError::NotFound { .. })
        ));
        std::fs::write(d.join("Containerfile"), "FROM a\n").unwrap();
        assert_eq!(find_boxfile(d, None).unwrap(), d.join("Containerfile"));
        std::fs::write(d.join("Dockerfile"), "FROM a\n").unwrap();
        assert_eq!(find_boxfile(d, None).unwrap(), d.join("Dockerfile"));
        std::fs::write(d.join("Boxfile"), "FROM a\n").unwrap();
        assert_eq!(find_boxfile(d, None).unwrap(), d.join("Boxfile"));
        assert!(matches!(
            find_boxfile(d, Some(&d.join("nope"))),
            Err(FindError::Missing(_))
        ));

        let bf = d.join("Boxfile");
        assert!(IgnoreMatcher::from_context(d, &bf).unwrap().is_empty());
        std::fs::write(d.join(".dockerignore"), "ctx\n").unwrap();
        assert!(
            IgnoreMatcher::from_context(d, &bf)
                .unwrap()
                .matches("ctx", false)
        );
        std::fs::write(d.join("Boxfile.dockerignore"), "beside\n").unwrap();
        let m = IgnoreMatcher::from_context(d, &bf).unwrap();
        assert!(m.matches("beside", false) && !m.matches("ctx", false));
        std::fs::write(d.join(".boxignore"), "box\n").unwrap();
        let m = IgnoreMatcher::from_context(d, &bf).unwrap();
        assert!(m.matches("box", false) && !m.matches("beside", false));
    }
}
