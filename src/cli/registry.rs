//! `box pull | push | login | logout`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};

use super::store::open_store;
use super::{CmdResult, Global, LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::registry::{
    self, AuthFiles, Credentials, Progress, PullOptions, PullPolicy, PushOptions,
};
use crate::run::{ToolContext, ToolUserns};

fn progress(quiet: bool) -> Progress {
    if quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    }
}

pub fn pull(g: &Global, a: PullArgs, tool: &ToolContext) -> CmdResult {
    let store = open_store(g)?;
    // Inside the tool's user namespace the layers can be extracted with their container ids
    // while the others download, so the image is ready to run when pull returns (as podman).
    let unpack = !a.no_unpack
        && match tool.userns() {
            ToolUserns::Remapped(m) => !m.single,
            ToolUserns::HostIds => true,
            ToolUserns::NotEntered { .. } => false,
        };
    let unpack = unpack.then(|| tool.content_policy());
    let opts = PullOptions {
        policy: PullPolicy::Always,
        platform: a.platform,
        progress: progress(a.quiet),
        unpack,
        authfile: a.authfile,
    };
    let img = registry::pull(&store, &a.name, &opts).with_context(|| format!("pull {}", a.name))?;
    // The name as asked (normalised) when it is one of the image's names; else its first.
    let asked = a.name.parse::<crate::image::Reference>().ok();
    let name = asked
        .filter(|r| img.names.contains(r))
        .or_else(|| img.names.first().cloned())
        .map(|n| n.to_string())
        .unwrap_or_else(|| img.manifest_desc.digest.to_string());
    println!("{name}");
    Ok(0)
}

pub fn push(g: &Global, a: PushArgs) -> CmdResult {
    let store = open_store(g)?;
    let opts = PushOptions {
        progress: progress(a.quiet),
        authfile: a.authfile,
        compression: a.compression_format,
    };
    let digest = registry::push_with(&store, &a.name, a.destination.as_deref(), &opts)
        .with_context(|| {
            format!(
                "push {}{}",
                a.name,
                a.destination
                    .as_deref()
                    .map(|d| format!(" to {d}"))
                    .unwrap_or_default()
            )
        })?;
    if a.quiet {
        println!("{digest}");
    }
    Ok(0)
}

/// Docker Hub unless a server is given.
fn server_or_hub(s: Option<String>) -> String {
    s.unwrap_or_else(|| crate::image::reference::DOCKER_HUB.to_string())
}

pub fn login(_g: &Global, a: LoginArgs) -> CmdResult {
    let server = server_or_hub(a.server);
    let stdin = std::io::stdin();
    let username = match a.username {
        Some(u) => u,
        None if stdin.is_terminal() => {
            eprint!("Username: ");
            let _ = std::io::stderr().flush();
            let mut u = String::new();
            stdin.lock().read_line(&mut u)?;
            u.trim().to_string()
        }
        None => bail!("no username: give --username (stdin is not a terminal to ask on)"),
    };
    let password = if a.password_stdin {
        if a.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut p = String::new();
        stdin.lock().read_line(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if stdin.is_terminal() {
        read_password("Password: ")?
    } else {
        bail!("no password: give --password-stdin (stdin is not a terminal to ask on)");
    };
    if username.is_empty() || password.is_empty() {
        bail!("username and password must not be empty");
    }
    let creds = Credentials { username, password };
    let files = AuthFiles::new(a.authfile);
    let path =
        registry::login(&server, &creds, &files).with_context(|| format!("log in to {server}"))?;
    eprintln!("Credentials saved in {}", path.display());
    println!("Login Succeeded!");
    Ok(0)
}

pub fn logout(_g: &Global, a: LogoutArgs) -> CmdResult {
    let files = AuthFiles::new(a.authfile);
    if a.all {
        let n = files.remove_all()?;
        println!("Removed login credentials for {n} registries");
        return Ok(0);
    }
    let server = server_or_hub(a.server);
    if files.remove(&server)? {
        println!("Removed login credentials for {server}");
        return Ok(0);
    }
    match files.elsewhere(&server) {
        Some(p) => bail!(
            "not logged in to {server} in {}; the credentials in {} were not made by box login \
             (remove them with the tool that wrote them, e.g. docker logout)",
            files.write_target().display(),
            p.display()
        ),
        None => bail!("not logged in to {server}"),
    }
}

/// Read a line from the terminal with echo off.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let old = termios::tcgetattr(&stdin).context("read terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn off echo")?;
    let mut p = String::new();
    let r = stdin.lock().read_line(&mut p);
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &old);
    eprintln!();
    r?;
    Ok(p.trim_end_matches(['\n', '\r']).to_string())
}
