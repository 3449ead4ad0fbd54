//! `box create | start | restart | attach`: containers made now and started later, started
//! again, and watched while they run.
//!
//! `box start` (without `-ai`) needs no user namespace itself: for each container it runs
//! this binary again as `box container-start ID` (hidden), which detaches exactly as
//! `boxrun -d` does (a daemon that becomes the container's monitor, see
//! `crate::container::detach`) and exits once the container runs. `-a` then follows the log
//! from where it ended before the start, as `box attach` does. `box attach` also feeds its
//! stdin to a `-i` container (`crate::container::stdin`) and passes signals on; [`hand_off`]
//! starts the monitor that restarts a foreground run's container.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::store::open_store;
use super::{CmdResult, Global, RunArgs};
use crate::container::{self, Containers, Status, detach};
use crate::run::ToolContext;

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The same flags as `boxrun` (`-d` is implied: `box start` runs the container detached)
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Containers to start (created or exited ones)
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Attach the container's stdout and stderr, and exit with its exit code
    #[arg(short, long)]
    pub attach: bool,
    /// With -a: attach stdin too (the container runs in this process, as `boxrun -i`)
    #[arg(short, long)]
    pub interactive: bool,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Seconds to wait for the stop before killing the container (default: its
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// A running container
    pub container: String,
    /// Do not attach stdin (only a container run with -i has one; without it, stdin is
    /// never read)
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy the signals this command receives (INT, TERM, HUP, QUIT, USR1, USR2) to the
    /// container's main process, as `box kill` sends them; false: Ctrl-C ends the attach
    /// and leaves the container running
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Accepted for docker compatibility and ignored: docker applies it only to a
    /// container with a terminal (-t), and boxkit's attach relays no terminal (no raw mode in
    /// which keys could be caught); end an attach with Ctrl-C and --sig-proxy=false
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
}

/// `box container-cleanup ID` (hidden): remove a stopped container's writable layer from
/// inside the tool's user namespace (`box rm` as a rootless user).
pub fn container_cleanup(g: &Global, a: ContainerStartArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let id = c.resolve(&a.id)?;
    container::remove_layer_in_namespace(&c, &id)?;
    Ok(0)
}

/// `box container-start ID` (hidden): the detached start of one container.
#[derive(Args, Debug)]
pub struct ContainerStartArgs {
    pub id: String,
    /// Go on with the restart policy of a container whose foreground run ended (started by
    /// that run's boxrun, see [`hand_off`])
    #[arg(long)]
    pub restarted: bool,
}

/// `docker create`: prepare the container (pull, unpack, volumes, name) and print its id.
pub fn create(g: &Global, a: CreateArgs, tool: &ToolContext) -> CmdResult {
    let mut o = a.run.options(g)?;
    if o.preserve_fds > 0 {
        bail!("--preserve-fds cannot be used with create: the descriptors are gone by start");
    }
    o.detach = true;
    let store = open_store(g)?;
    let st = container::create(&store, &o, tool)?;
    println!("{}", st.id);
    Ok(0)
}

fn containers(g: &Global) -> anyhow::Result<(Containers, std::path::PathBuf)> {
    let store = open_store(g)?;
    Ok((Containers::new(store.containers_dir()), store.volumes_dir()))
}

/// Start container `id` detached through `box container-start`; Err holds its message.
fn spawn_start(g: &Global, id: &str) -> anyhow::Result<()> {
    spawn_helper(g, "container-start", id)
}

/// Run `box HELPER ID` (a hidden subcommand that enters the tool's user namespace) and wait
/// for it; Err holds its message.
pub(super) fn spawn_helper(g: &Global, helper: &str, id: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("find the box binary")?;
    let mut cmd = Command::new(exe);
    if let Some(r) = &g.root {
        cmd.arg("--root").arg(r);
    }
    let out = cmd
        .args([helper, id])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .with_context(|| format!("run box {helper}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    bail!("{}", err.strip_prefix("box: ").unwrap_or(err))
}

/// `docker start`.
pub fn start(g: &Global, a: StartArgs, tool: &ToolContext) -> CmdResult {
    if a.attach && a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let (c, vols) = containers(g)?;
    if a.attach && a.interactive {
        let id = c.resolve(&a.containers[0])?;
        let iso = super::run::job_isolation(g);
        let code = container::start_foreground(&c, &vols, &id, iso, tool)?;
        return Ok(code.clamp(0, 255) as u8);
    }
    let mut failed = false;
    for n in &a.containers {
        let r = c.resolve(n).map_err(anyhow::Error::from).and_then(|id| {
            let from = log_len(&c, &id);
            spawn_start(g, &id).map(|()| (id, from))
        });
        match r {
            Ok((id, from)) if a.attach => return follow(&c, &id, from),
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `docker restart`: stop (as `box stop`), then start detached.
pub fn restart(g: &Global, a: RestartArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let mut failed = false;
    for n in &a.containers {
        let r = c.resolve(n).map_err(anyhow::Error::from).and_then(|id| {
            let secs = a
                .time
                .or_else(|| c.load(&id).ok().and_then(|s| s.stop_timeout))
                .unwrap_or(10);
            container::stop(&c, &id, Duration::from_secs(secs))?;
            spawn_start(g, &id)
        });
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `docker attach`: the output of a running container from now on, this command's stdin
/// into the container's when it was run with `-i` (detached), the signals this command gets
/// passed on (`--sig-proxy`); its exit code at the end.
pub fn attach(g: &Global, a: AttachArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let id = c.resolve(&a.container)?;
    let st = c.refresh(&id)?.context("the container was removed")?;
    if !st.is_running() {
        bail!("you cannot attach to a stopped container, start it first");
    }
    if !c.log_path(&id).exists() {
        bail!(
            "container {} keeps no log (a --rm foreground run): its output goes only to \
             the boxrun that runs it",
            &id[..12]
        );
    }
    if a.detach_keys.is_some() && st.tty {
        eprintln!(
            "box attach: warning: --detach-keys is ignored: attach relays no terminal; end it \
             with Ctrl-C and --sig-proxy=false to leave the container running"
        );
    }
    // Where the output we show begins: before any input of ours can cause output.
    let from = log_len(&c, &id);
    // Blocked before any other thread exists, so that only the proxy's thread takes them.
    if a.sig_proxy {
        sig_proxy(&c, &id)?;
    }
    if !a.no_stdin {
        match container::stdin::open_for_attach(&c, &id)? {
            Some(pipe) => copy_stdin(pipe),
            None => eprintln!("box attach: {}", no_stdin_why(&st)),
        }
    }
    follow(&c, &id, from)
}

/// Why container `st` takes no input from an attach.
fn no_stdin_why(st: &container::State) -> String {
    let short = &st.id[..12];
    if st.launch.as_ref().is_some_and(|l| l.interactive) && !st.detached {
        format!(
            "container {short} runs in the foreground: its stdin is the boxrun's that runs \
             it; only its output is shown here"
        )
    } else {
        format!(
            "container {short} was started without -i: its stdin is closed; only its output \
             is shown here"
        )
    }
}

/// Copy our stdin into the container's, in a thread. At our EOF only this writer closes:
/// the container's stdin stays open for the next attach (docker's `-d -i`, not stdin-once).
fn copy_stdin(mut pipe: std::fs::File) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut pipe);
    });
}

/// The signals `--sig-proxy` passes on: what the terminal and `kill` send to a foreground
/// command (SIGWINCH only matters to a terminal, which attach does not relay).
const PROXIED: [nix::sys::signal::Signal; 6] = {
    use nix::sys::signal::Signal::*;
    [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
};

/// Block [`PROXIED`] in this thread (and in every thread started after) and pass each one
/// received to container `id`'s main process from a thread of its own. As `box kill` (and
/// docker's kill): the restart policy no longer applies once a signal was passed on.
fn sig_proxy(c: &Containers, id: &str) -> anyhow::Result<()> {
    let set: nix::sys::signal::SigSet = PROXIED.into_iter().collect();
    set.thread_block()
        .context("block signals for --sig-proxy")?;
    let (c, id) = (c.clone(), id.to_string());
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            if let Ok(st) = c.load(&id)
                && st.is_running()
            {
                let _ = c.mark_user_stop(&id);
                if let Err(e) = container::kill(&st, sig as i32) {
                    eprintln!("box attach: {e}");
                }
            }
        }
    });
    Ok(())
}

fn log_len(c: &Containers, id: &str) -> u64 {
    std::fs::metadata(c.log_path(id)).map_or(0, |m| m.len())
}

/// Print the log of container `id` from byte `from` until the container exits, then return
/// its exit code.
fn follow(c: &Containers, id: &str, from: u64) -> anyhow::Result<u8> {
    // A --rm container keeps its exit code for us.
    let _ = c.add_waiter(id);
    let path = c.log_path(id);
    let f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let how = super::lifecycle::Stream {
        follow: true,
        timestamps: false,
        until: None,
    };
    super::lifecycle::stream(c, id, f, from, &how, &mut std::io::stdout().lock())?;
    let code = match c.refresh(id) {
        Ok(Some(s)) if s.status == Status::Exited => s.exit_code.unwrap_or(0),
        Ok(Some(_)) => 0,
        _ => c.recorded_exit(id).unwrap_or(0),
    };
    Ok(code.clamp(0, 255) as u8)
}

/// `box container-start ID`: in the daemon `main` made, report to the waiting `box start`.
pub fn container_start(g: &Global, a: ContainerStartArgs, tool: &ToolContext) -> CmdResult {
    let r = (|| -> CmdResult {
        let (c, vols) = containers(g)?;
        let iso = super::run::job_isolation(g);
        let id = c.resolve(&a.id)?;
        if a.restarted {
            container::resume_restart(&c, &vols, &id, iso, tool)?;
        } else {
            container::start_detached(&c, &vols, &id, iso, tool)?;
        }
        Ok(0)
    })();
    if let Err(e) = &r
        && detach::pending()
    {
        detach::report_failure(&format!("{e:#}"), i32::from(super::EXIT_TOOL_FAILED));
    }
    r
}

/// Hand container `id` of the store at `root`, whose foreground run just ended and whose
/// restart policy runs it again, to a detached monitor: `box container-start --restarted`,
/// not waited for (docker's client exits with the first run's code while the daemon
/// restarts the container). Called on the host side of `boxrun`/`box run`/`box start -ai`.
pub(super) fn hand_off(prog: &str, root: &std::path::Path, id: &str) {
    // `boxrun` is installed beside `box`; `box` itself is the current executable.
    let exe = std::env::current_exe().map(|e| {
        if prog == "box" {
            e
        } else {
            e.with_file_name("box")
        }
    });
    let exe = match exe {
        Ok(e) if e.exists() => e,
        _ => std::path::PathBuf::from("box"),
    };
    let r = Command::new(&exe)
        .arg("--root")
        .arg(root)
        .args(["container-start", "--restarted", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = r {
        eprintln!(
            "{prog}: warning: container {} is not restarted as its --restart policy says: \
             run {}: {e}; start it with box start",
            &id[..12],
            exe.display()
        );
        let c = Containers::new(root.join("containers"));
        if let Ok(mut st) = c.load(id) {
            st.restarting = false;
            let _ = c.save(&st);
        }
    }
}
