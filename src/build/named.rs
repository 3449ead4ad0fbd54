//! `--build-context NAME=DIR|docker-image://REF`: named contexts, as buildx has them.
//!
//! `FROM NAME`, `COPY --from=NAME` and `RUN --mount=…,from=NAME` look a name up here before
//! stages and images, so a named context replaces a stage or an image of the same name (the
//! way buildx pins `FROM alpine` with `--build-context alpine=docker-image://alpine:3.20`, or
//! swaps a `FROM scratch AS src` placeholder for a directory). An image context is resolved
//! (pulled) like any base. A directory is read as it is, like the main context: its files
//! are copied as 0:0 unless `--chown`, and its content digest keys the steps that read it.
//! `FROM` a directory makes a stage with no config whose one layer is the directory.

use std::path::PathBuf;

use super::context::ContextHasher;
use super::copy::{self, Filter};
use super::engine::{Engine, StageOut};
use super::error::{StepErrorKind, StepResult};
use super::fsview::{self, Lowers, MergedMount};
use super::owner;
use super::plan::key_of;
use crate::registry;

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    Dir(PathBuf),
    /// An image reference, as `docker-image://` gave it.
    Image(String),
}

/// Parse `--build-context NAME=VALUE`: `docker-image://REF` or a local directory.
pub fn parse_build_context(s: &str) -> Result<(String, NamedContext), String> {
    let (name, value) = s
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            format!("invalid --build-context {s:?}: expected NAME=DIR or NAME=docker-image://REF")
        })?;
    let ctx = if let Some(r) = value.strip_prefix("docker-image://") {
        r.parse::<crate::image::Reference>()
            .map_err(|e| format!("invalid --build-context {s:?}: {e}"))?;
        NamedContext::Image(r.to_string())
    } else if value.contains("://") || value.starts_with("target:") {
        return Err(format!(
            "invalid --build-context {s:?}: only a directory or docker-image://REF is supported \
             (for a git or https source, fetch it into a directory first)"
        ));
    } else {
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(format!(
                "invalid --build-context {s:?}: {value} is not a directory"
            ));
        }
        NamedContext::Dir(dir)
    };
    Ok((name.to_ascii_lowercase(), ctx))
}

impl Engine<'_> {
    /// The named context `name` refers to, if any (names are case-insensitive, as stages).
    pub(super) fn named(&self, name: &str) -> Option<NamedContext> {
        self.opts
            .build_contexts
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    /// What a named context contributes to a step's key: its image's manifest digest, or
    /// its directory's content digest.
    pub(super) fn named_key(&self, nc: &NamedContext) -> StepResult<String> {
        match nc {
            NamedContext::Image(r) => {
                let img = registry::ensure_image(self.store, r, &self.pull_options())
                    .map_err(StepErrorKind::base(r))?;
                Ok(format!("image {}", img.manifest_desc.digest))
            }
            NamedContext::Dir(d) => {
                let mut h = ContextHasher::open(d, Some(&self.store.cache_dir()));
                let all = Filter {
                    ignore: None,
                    excludes: None,
                };
                let digest = copy::context_digest(&mut h, &[".".into()], &all)
                    .map_err(StepErrorKind::copy("--build-context"))?;
                let _ = h.save();
                Ok(format!("named-dir {digest}"))
            }
        }
    }

    /// A read-only view of a named context: the directory itself, or the image merged.
    pub(super) fn named_mount(&self, nc: &NamedContext) -> StepResult<MergedMount> {
        let lowers = match nc {
            NamedContext::Dir(d) => vec![d.clone()],
            NamedContext::Image(r) => {
                let img = registry::ensure_image(self.store, r, &self.pull_options())
                    .map_err(StepErrorKind::base(r))?;
                self.lowerdirs(&self.stage_of_image(&img)?.layers)?
            }
        };
        Ok(MergedMount::new(
            &lowers,
            &self.store.tmp_dir(),
            self.tool.is_remapped(),
        )?)
    }

    /// The base of `FROM NAME` for a named context.
    pub(super) fn named_base(
        &mut self,
        nc: &NamedContext,
        platform: Option<String>,
    ) -> StepResult<StageOut> {
        match nc {
            NamedContext::Image(r) => {
                let mut opts = self.pull_options();
                if let Some(p) = platform {
                    opts.platform = Some(p);
                }
                let img =
                    registry::ensure_image(self.store, r, &opts).map_err(StepErrorKind::base(r))?;
                Ok(self.stage_of_image(&img)?)
            }
            NamedContext::Dir(d) => {
                let key = self.named_key(nc)?;
                let mut base = self.scratch(platform);
                let work = self.new_layer_dir("context-")?;
                let tree = work.path().join("tree");
                std::fs::create_dir(&tree).map_err(fsview::io_err("create", &tree))?;
                let all = Filter {
                    ignore: None,
                    excludes: None,
                };
                let policy = self.tool.content_policy();
                owner::write_tree(&tree, &Lowers::default(), (0, 0), None, &policy, |dest| {
                    dest.copy_tree(d, "", "/", &all)
                })
                .map_err(StepErrorKind::copy("FROM a --build-context directory"))?;
                let layer = fsview::commit_dir(self.store, &tree, self.opts.source_date_epoch)?;
                base.layers.push(layer);
                base.key = key_of(&["named-dir", &key]);
                Ok(base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_contexts_parse_like_buildx() {
        let (n, c) = parse_build_context("Alpine=docker-image://alpine:3.20").unwrap();
        assert_eq!(n, "alpine");
        assert_eq!(c, NamedContext::Image("alpine:3.20".into()));
        let (n, c) = parse_build_context("src=/tmp").unwrap();
        assert_eq!((n.as_str(), c), ("src", NamedContext::Dir("/tmp".into())));
        for bad in [
            "src",
            "=x",
            "src=",
            "src=/nonexistent-dir",
            "src=https://example.com/x.git",
            "src=target:base",
        ] {
            assert!(parse_build_context(bad).is_err(), "{bad}");
        }
    }
}
