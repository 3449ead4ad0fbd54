//! Build errors. A step's error is a [`StepErrorKind`] that says what failed; the step runner
//! (`Engine::step`, and the FROM of a stage) wraps it once into a [`StepError`] with the
//! Boxfile position, so no code below it tracks or formats locations.

use std::path::PathBuf;

use super::config;
use super::copy::CopyError;
use super::fetch::FetchError;
use super::fsview::FsError;
use super::git::GitError;
use crate::boxfile::{self, ParseErrors};
use crate::registry;
use crate::run;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", .0.render())]
    Parse(Box<ParseErrors>),
    /// A global ARG (before the first FROM) could not be expanded.
    #[error("{file}: {source}")]
    Args {
        file: String,
        source: boxfile::ExpandError,
    },
    #[error("target stage {0:?} could not be found in the Boxfile")]
    NoTarget(String),
    /// A `--platform` value (or a FROM `--platform`) that is no platform.
    #[error("--platform {value:?}: {why}")]
    Platform { value: String, why: String },
    /// Something a build for several platforms cannot do.
    #[error("{0}")]
    MultiPlatform(String),
    #[error("invalid tag {tag:?}: {source}")]
    Tag {
        tag: String,
        source: crate::image::ReferenceError,
    },
    /// The context's ignore file could not be read.
    #[error("{context}: {why}")]
    Ignore { context: String, why: String },
    #[error(transparent)]
    Step(Box<StepError>),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("copy snapshotter: {0}")]
    Snapshot(#[from] crate::layer::snapshot::SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("push {name}: {source}")]
    Push {
        name: String,
        source: registry::RegistryError,
    },
    #[error(transparent)]
    Export(Box<super::export::ExportError>),
    /// `--ssh ID=KEY`: the build's own agent could not be started or loaded.
    #[error("{0}")]
    Ssh(String),
    #[error("write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stage with RUN steps is for a platform this host cannot run (no emulator
    /// registered); found before anything is pulled or run.
    #[error("{at}: {source}")]
    Emulation {
        at: String,
        source: Box<run::binfmt::Missing>,
    },
}

impl From<StepError> for BuildError {
    fn from(e: StepError) -> BuildError {
        BuildError::Step(Box::new(e))
    }
}

/// A step that failed, and where it is in the Boxfile (`Boxfile:4`).
#[derive(Debug, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct StepError {
    pub at: String,
    #[source]
    pub kind: StepErrorKind,
}

/// What went wrong in a step.
#[derive(Debug, thiserror::Error)]
pub enum StepErrorKind {
    #[error(transparent)]
    Expand(#[from] boxfile::ExpandError),
    /// A base image (FROM, `--from`, `from=`) could not be had.
    #[error("FROM {image}: {source}")]
    Base {
        image: String,
        source: registry::RegistryError,
    },
    #[error("RUN {command}: exit code {code}{hint}\n  (the step failed; no image was tagged)")]
    Run {
        command: String,
        code: i32,
        hint: String,
    },
    #[error("RUN: the sandbox failed: {0}")]
    Sandbox(#[source] run::SandboxError),
    #[error("{what}: {source}")]
    Copy {
        what: &'static str,
        source: CopyError,
    },
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// A multi-platform build stops the other platforms' builds when one fails.
    #[error("stopped: the build of another platform failed")]
    Stopped,
    #[error("{0}")]
    Invalid(String),
    #[error("secret {0:?} was not given: pass --secret id={0},src=FILE")]
    Secret(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("copy snapshotter: {0}")]
    Snapshot(#[from] crate::layer::snapshot::SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The base image is for a platform whose programs this host cannot run.
    #[error(transparent)]
    Emulation(Box<run::binfmt::Missing>),
}

impl StepErrorKind {
    /// A COPY/ADD/WORKDIR/mount error, named by what the user wrote.
    pub fn copy(what: &'static str) -> impl FnOnce(CopyError) -> StepErrorKind {
        move |source| StepErrorKind::Copy { what, source }
    }

    /// A base image that could not be pulled.
    pub fn base(image: &str) -> impl FnOnce(registry::RegistryError) -> StepErrorKind + use<> {
        let image = image.to_string();
        move |source| StepErrorKind::Base { image, source }
    }
}

/// The result of the work inside one step, before its location is attached.
pub type StepResult<T> = std::result::Result<T, StepErrorKind>;

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_error_reads_location_then_what_failed() {
        let e: BuildError = StepError {
            at: "Boxfile:4".into(),
            kind: StepErrorKind::Run {
                command: "exit 7".into(),
                code: 7,
                hint: String::new(),
            },
        }
        .into();
        assert_eq!(
            e.to_string(),
            "Boxfile:4: RUN exit 7: exit code 7\n  (the step failed; no image was tagged)"
        );
        let e = StepError {
            at: "Boxfile:2".into(),
            kind: StepErrorKind::Secret("tok".into()),
        };
        assert_eq!(
            e.to_string(),
            "Boxfile:2: secret \"tok\" was not given: pass --secret id=tok,src=FILE"
        );
    }
}
