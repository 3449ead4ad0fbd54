//! Shell integration: `box completion SHELL` prints completion scripts (clap_complete) and
//! `box man DIR` writes man pages (clap_mangen), both generated from the same clap
//! definitions the binaries parse with, so they cannot drift from the real flags.
//!
//! A packager runs them at package build time (see docs/install.md):
//! `box completion bash --bin box > …/completions/box`, one file per binary, and
//! `box man "$pkgdir/usr/share/man/man1"`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::{BoxCli, BoxbuildCli, BoxrunCli, CmdResult};

/// One of the three binaries.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Box,
    Boxbuild,
    Boxrun,
}

impl Bin {
    const ALL: [Bin; 3] = [Bin::Box, Bin::Boxbuild, Bin::Boxrun];

    fn name(self) -> &'static str {
        match self {
            Bin::Box => "box",
            Bin::Boxbuild => "boxbuild",
            Bin::Boxrun => "boxrun",
        }
    }

    fn command(self) -> clap::Command {
        match self {
            Bin::Box => BoxCli::command(),
            Bin::Boxbuild => BoxbuildCli::command(),
            Bin::Boxrun => BoxrunCli::command(),
        }
    }
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// Shell to generate the script for
    #[arg(value_enum)]
    pub shell: Shell,
    /// Only this binary's script (default: box, boxbuild and boxrun, one after the other,
    /// which `source` loads at once; a completion directory wants one file per binary)
    #[arg(long, value_enum)]
    pub bin: Option<Bin>,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing), e.g. /usr/share/man/man1
    pub dir: PathBuf,
}

/// The completion script of `bin` for `shell`.
pub fn script(shell: Shell, bin: Bin) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(
        shell,
        &mut without_hidden(bin.command(), bin.name()),
        bin.name(),
        &mut out,
    );
    out
}

/// `cmd` without its hidden subcommands (clap_complete lists them; they are for tests and
/// benchmarks, not for users' tab key). clap cannot remove a subcommand, so the top level is
/// rebuilt from its arguments and visible subcommands.
fn without_hidden(cmd: clap::Command, name: &'static str) -> clap::Command {
    if !cmd.get_subcommands().any(|s| s.is_hide_set()) {
        return cmd;
    }
    let mut top = clap::Command::new(name)
        .args(cmd.get_arguments().filter(|a| !a.is_global_set()).cloned())
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(cmd.is_subcommand_required_set());
    for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
        top = top.arg(a.clone());
    }
    top.subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// `box completion SHELL [--bin B]`.
pub fn completion(a: CompletionArgs) -> CmdResult {
    use std::io::Write;
    let bins = a.bin.map_or(Bin::ALL.to_vec(), |b| vec![b]);
    let mut stdout = std::io::stdout().lock();
    for b in bins {
        stdout.write_all(&script(a.shell, b))?;
    }
    stdout.flush()?;
    Ok(0)
}

/// `box man DIR`: box.1, one box-COMMAND.1 per visible subcommand, boxbuild.1 and boxrun.1.
pub fn man(a: ManArgs) -> CmdResult {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("create {}", a.dir.display()))?;
    let mut written = Vec::new();
    for b in Bin::ALL {
        let mut cmd = b.command().disable_help_subcommand(true);
        cmd.build();
        write_pages(&cmd, &a.dir, &mut written)?;
    }
    for p in written {
        println!("{}", p.display());
    }
    Ok(0)
}

/// The page of `cmd`, then those of its visible subcommands (hidden ones are for tests and
/// benchmarks).
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    // A page replaced while `man` reads it must not be seen half-written.
    crate::atomic::write(&path, &page, 0o644)
        .with_context(|| format!("write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = String::from_utf8(script(shell, Bin::Box)).unwrap();
            for sub in ["run", "build", "images", "completion"] {
                assert!(s.contains(sub), "{shell}: no {sub}");
            }
            // Hidden developer commands stay out of users' completions.
            assert!(!s.contains("sandbox-run"), "{shell}");
        }
    }
}
