//! `box cp`: argument parsing (which side is the container) and the call into
//! [`crate::container::cp`].

use anyhow::bail;
use clap::Args;

use super::store::open_store;
use super::{CmdResult, Global};
use crate::container::Containers;
use crate::container::cp::{self, CpOptions, HostEnd};

/// `box cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-` or
/// `box cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode: keep the uid/gid of what is copied in (otherwise it is owned by the
    /// container's root)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow a symlink in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output (boxkit prints none anyway)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or - for a tar stream on stdin
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - for a tar stream on stdout
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    pub dest: String,
}

/// docker's split of a cp argument: `NAME:PATH` names a container unless the argument is
/// `-`, absolute, or has no colon (a relative host path with a colon needs `./`).
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg == "-" || arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty()).then_some((c, p))
}

fn host_end(arg: &str) -> HostEnd {
    if arg == "-" {
        HostEnd::Stream
    } else {
        HostEnd::Path(arg.into())
    }
}

pub fn cp(g: &Global, a: CpArgs) -> CmdResult {
    let o = CpOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    let (from, to) = (split(&a.src), split(&a.dest));
    let (name, out) = match (from, to) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source (CONTAINER:PATH)"),
        (Some((c, _)), None) => (c, true),
        (None, Some((c, _))) => (c, false),
    };
    let store = open_store(g)?;
    let c = Containers::new(store.containers_dir());
    let id = c.resolve(name)?;
    let st = c
        .refresh(&id)?
        .ok_or_else(|| anyhow::anyhow!("no such container: {name}"))?;
    if out {
        let src = from.map_or("", |(_, p)| p);
        if src.is_empty() {
            bail!("empty source path in {:?}", a.src);
        }
        cp::copy_out(&store, &st, src, &host_end(&a.dest), o)?;
    } else {
        let dest = to.map_or("", |(_, p)| p);
        if dest.is_empty() {
            bail!("empty destination path in {:?}", a.dest);
        }
        cp::copy_in(&store, &st, &host_end(&a.src), dest, o)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn container_arguments_are_told_from_host_paths_as_docker_does() {
        assert_eq!(split("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(split("/tmp/a:b"), None);
        assert_eq!(split("./a:b"), None);
        assert_eq!(split("-"), None);
        assert_eq!(split("plain"), None);
        assert_eq!(split(":x"), None);
    }
}
