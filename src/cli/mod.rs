//! The command-line edge: clap definitions and the glue from arguments to library calls.
//!
//! The binaries in `src/bin/` call [`enter_userns_if_needed`], then [`box_main`],
//! [`boxbuild_main`] or [`boxrun_main`] with the [`ToolContext`] it returned. Library
//! errors are typed (`thiserror`); here they become `anyhow` chains and Docker's exit codes:
//! 125 when boxkit itself fails, otherwise the container's own code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::run::ToolContext;
use crate::run::userns::Entered;

mod alone;
mod args;
pub mod build;
pub use args::*;
mod completion;
pub mod containers;
mod cp;
mod ctl;
pub mod dev;
mod entry;
pub use entry::main_of;
mod filter;
mod fmt;
pub(crate) mod history;
pub mod images;
mod info;
mod info_checks;
mod inspect;
mod lifecycle;
mod listargs;
pub mod manifest;
pub use lifecycle::{LogsArgs, RenameArgs, WaitArgs};
pub use listargs::{ImagesArgs, InfoArgs, InspectArgs, PsArgs};
pub mod registry;
pub mod run;
mod stats;
mod store;
mod system;
pub use system::SystemCommand;
mod template;
mod template_exec;
mod template_funcs;
pub mod volumes;

pub use build::BuildArgs;
pub use run::RunArgs;

/// Exit code when boxkit itself fails, as `docker run` uses it.
pub const EXIT_TOOL_FAILED: u8 = 125;

/// Options every command shares.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Store root (default: $BOX_ROOT, else /var/lib/boxkit as root, else
    /// ${XDG_DATA_HOME:-~/.local/share}/boxkit)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Build, pull, push and run OCI container images with no daemon and no root.
#[derive(Parser, Debug)]
#[command(name = "box", version, about)]
pub struct BoxCli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: BoxCommand,
}

#[derive(Subcommand, Debug)]
pub enum BoxCommand {
    /// Build an image from a Boxfile (same as `boxbuild`)
    Build(Box<BuildArgs>),
    /// Run a command in a new container (same as `boxrun`)
    #[command(disable_help_flag = true)]
    Run(Box<RunArgs>),
    /// List images
    Images(ImagesArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Push an image to a registry
    Push(PushArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the history of an image
    History(history::HistoryArgs),
    /// Show low-level information on images or containers, as JSON
    Inspect(InspectArgs),
    /// Remove dangling images (every unused one with -a), then unreferenced blobs, unpacked
    /// layers and stale temporary files
    Prune(PruneArgs),
    /// Manage images
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Create, change, inspect and push manifest lists (image indexes), as podman's
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Load images from a docker archive or an OCI archive (the format is detected)
    Load(LoadArgs),
    /// Save images to a docker archive (the default) or an OCI archive (--format)
    Save(SaveArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// List containers
    Ps(PsArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Create a new container without starting it (the flags of `box run`)
    #[command(disable_help_flag = true)]
    Create(Box<ctl::CreateArgs>),
    /// Start one or more created or stopped containers
    Start(ctl::StartArgs),
    /// Restart one or more containers
    Restart(ctl::RestartArgs),
    /// Follow the output of a running container until it exits
    Attach(ctl::AttachArgs),
    /// Start a container detached (used by `box start`; hidden)
    #[command(name = "container-start", hide = true)]
    ContainerStart(ctl::ContainerStartArgs),
    /// Remove a container's writable layer in the user namespace (used by `box rm`; hidden)
    #[command(name = "container-cleanup", hide = true)]
    ContainerCleanup(ctl::ContainerStartArgs),
    /// Copy files between a container and the host (`-` for a tar stream)
    Cp(cp::CpArgs),
    /// Display the running processes of a container
    Top(stats::TopArgs),
    /// Display a live stream of containers' resource usage (--no-stream: one reading)
    Stats(stats::StatsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Show what this environment lets boxkit use (namespaces, overlay, fuse, subordinate
    /// ids), probed as the calling user
    Info(InfoArgs),
    /// Print a shell completion script (bash, zsh, fish) for box, boxbuild and boxrun
    Completion(completion::CompletionArgs),
    /// Write man pages for box, its commands, boxbuild and boxrun into DIR
    Man(completion::ManArgs),
    /// Manage boxkit itself
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(system::BuilderCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// Run a command in the bare sandbox, for sandbox tests and benchmarks (hidden)
    #[command(name = "sandbox-run", hide = true)]
    SandboxRun(Box<dev::SandboxRunArgs>),
    /// Layer codec tools for benchmarks and debugging (hidden)
    #[command(hide = true, subcommand)]
    Layer(dev::LayerCommand),
}

/// Whether this invocation works with container ids and so must run inside boxkit's user
/// namespace (DESIGN §4). Commands that only move blobs and tags (images, tag, load, …) and
/// `--check` stay outside: they need no container ids, and skipping the fork and id-map setup
/// keeps them fast.
pub fn needs_userns(prog: &str, args: &[String]) -> bool {
    let is_check = |a: &String| a == "--check" || a.starts_with("--check=");
    match prog {
        "boxrun" => true,
        "boxbuild" => !args.iter().any(is_check),
        _ => {
            match box_subcommand(args) {
                // pull unpacks layers with their container ids while downloading.
                Some(
                    "run" | "sandbox-run" | "pull" | "create" | "container-start"
                    | "container-cleanup",
                ) => true,
                // `start -ai` runs the container in this process.
                Some("start") => start_in_foreground(args),
                Some("build") => !args.iter().any(is_check),
                // A new volume belongs to container root; removing one removes files a
                // container made, under its ids.
                Some("volume") => args
                    .iter()
                    .any(|a| ["create", "rm", "remove", "prune"].contains(&a.as_str())),
                // exec, stop, kill and rm act on a running container with the caller's own
                // credentials (see crate::container::exec): a new tool namespace could not.
                _ => false,
            }
        }
    }
}

/// Whether `box start` arguments ask for `-a` and `-i` together (`-ai`, `-a -i`,
/// `--attach --interactive`).
fn start_in_foreground(args: &[String]) -> bool {
    let has = |short: char, long: &str| {
        args.iter()
            .any(|a| a == long || (a.starts_with('-') && !a.starts_with("--") && a.contains(short)))
    };
    has('a', "--attach") && has('i', "--interactive")
}

/// The subcommand of a `box` command line (the first word that is not a global option).
fn box_subcommand(args: &[String]) -> Option<&str> {
    box_subcommand_at(args).map(|i| args[i].as_str())
}

/// Where [`box_subcommand`] is in `args`.
fn box_subcommand_at(args: &[String]) -> Option<usize> {
    let mut it = args.iter().enumerate().skip(1);
    while let Some((i, a)) = it.next() {
        if a == "--root" {
            it.next();
        } else if !a.starts_with('-') {
            return Some(i);
        }
    }
    None
}

/// Which of the descriptors `--preserve-fds` may name were open when the process started,
/// before boxkit opened any of its own (index 0 is fd 3). Recorded only when an argument
/// mentions the flag.
static INHERITED_FDS: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();

/// The largest N any `--preserve-fds N` / `--preserve-fds=N` in `args` asks for (an argument
/// of the container's command may look like one too; that only makes us look at more fds).
fn preserve_fds_asked(args: &[String]) -> u32 {
    let mut n = 0;
    for (i, a) in args.iter().enumerate() {
        let v = match a.strip_prefix("--preserve-fds") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        n = n.max(v.and_then(|v| v.parse().ok()).unwrap_or(0));
    }
    n
}

/// Record which of fds 3..3+N were open at start (see [`INHERITED_FDS`]).
fn record_inherited_fds(args: &[String]) {
    let n = preserve_fds_asked(args);
    if n == 0 {
        return;
    }
    // No descriptor at or above the soft limit can be open.
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1 << 20, |(soft, _)| soft);
    let open = (3..3 + u64::from(n))
        .take_while(|fd| *fd < limit)
        // SAFETY: F_GETFD only reads a descriptor's flags.
        .map(|fd| unsafe { libc::fcntl(fd as i32, libc::F_GETFD) } >= 0)
        .collect();
    let _ = INHERITED_FDS.set(open);
}

/// `--preserve-fds N`: fds 3..3+N must all have been passed by the caller. Otherwise one of
/// them would be boxkit's own (or nothing), and podman refuses that too.
pub(crate) fn check_preserved_fds(n: u32) -> anyhow::Result<()> {
    let open = INHERITED_FDS.get().map_or(&[][..], Vec::as_slice);
    if let Some(i) = (0..n as usize).find(|i| !open.get(*i).copied().unwrap_or(false)) {
        anyhow::bail!(
            "--preserve-fds {n}: file descriptor {} is not open (the caller must pass \
             descriptors 3 to {} to boxkit)",
            i + 3,
            n + 2
        );
    }
    Ok(())
}

/// How a binary's `main` goes on after [`enter_userns_if_needed`].
#[derive(Debug)]
pub enum Start {
    /// Run the command in this process, with this context.
    Command(ToolContext),
    /// This process is done (a confined extraction worker, the host agent, the caller of
    /// `boxrun -d`, or a child that could not enter): exit with this code.
    Exit(ExitCode),
}

/// The context of a command that does not enter the tool's user namespace.
fn outside() -> ToolContext {
    ToolContext::not_entered("the process did not call run::userns::enter_if_needed() at start")
}

/// A binary's exit code (what the kernel keeps of an exit status: 0..=255).
pub type ExitCode = u8;

/// An exit status (0..=255 as the kernel reports it) as the binary's exit code.
fn exit_code(code: i32) -> ExitCode {
    // The kernel keeps the low 8 bits of an exit status, as process::exit would.
    code as u8
}

/// Enter the tool's user namespace when [`needs_userns`] says so. Call first in `main`, while
/// the process is single-threaded; the decision to end a process is taken here, from the
/// outcomes the library returns.
pub fn enter_userns_if_needed(prog: &str) -> Start {
    // A confined extraction worker is this binary re-executed: it serves and exits here.
    if let Some(code) = crate::layer::confine::serve_if_requested() {
        return Start::Exit(exit_code(code));
    }
    let args: Vec<String> = std::env::args().collect();
    record_inherited_fds(&args);
    if !needs_userns(prog, &args) {
        return Start::Command(outside());
    }
    use crate::container::detach::{self, Daemonized};
    let detached = is_detached_run(prog, &args);
    if detached {
        // Goes on in a daemon; the caller's process prints the container id and exits.
        match detach::daemonize(prog) {
            Daemonized::InDaemon => {}
            Daemonized::Exit(code) => return Start::Exit(exit_code(code)),
        }
    }
    // A foreground run may ask for a restart by a detached monitor once it has ended
    // (`--restart`, see container::detach): started from here, outside the namespace.
    let foreground_run = prog == "boxrun"
        || (prog == "box" && matches!(box_subcommand(&args), Some("run" | "start")));
    let handoff = if foreground_run && !detached {
        detach::handoff_pipe()
    } else {
        None
    };
    let me = std::process::id();
    // boxrun's arguments are parsed while the agent writes the tool's id maps (clap builds
    // boxrun's whole command each time: about 0.2 ms of a container start).
    let mut meanwhile = || {
        if prog == "boxrun" {
            PREPARSED.with(|p| {
                p.borrow_mut().get_or_insert_with(BoxrunCli::try_parse);
            });
        }
    };
    let alone = foreground_run && !detached && alone::runs_alone(prog, &args);
    match crate::run::userns::enter_if_needed(&mut meanwhile, foreground_run && !detached, alone) {
        Entered::Tool(ctx) => {
            if std::process::id() == me
                && let Some(r) = handoff
            {
                // No fork: this process is the host side itself.
                detach::keep_handoff_local(r);
            }
            Start::Command(ctx)
        }
        Entered::Exit(code) => {
            if let Some((root, id)) = handoff.and_then(detach::take_handoff) {
                ctl::hand_off(prog, &root, &id);
            }
            // The host agent is done and its caller waits for this exit: skip libc's exit
            // handlers and the libraries' destructors (nothing of theirs is left to do; Rust
            // runs no code at exit but the flush below), which fault in pages of four objects.
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: ends the process; every Rust value that needed dropping is gone or
            // holds nothing the kernel does not release.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Whether the arguments ask for `boxrun -d` / `box run -d` (parsed exactly as later).
fn is_detached_run(prog: &str, args: &[String]) -> bool {
    // `box start`'s helper always detaches (see cli::ctl).
    if prog == "box" && box_subcommand(args) == Some("container-start") {
        return true;
    }
    // Cheap pre-check: without `--detach` or a short-flag cluster holding `d` (`-d`, `-itd`)
    // anywhere, it cannot be a detached run, and the exact parse below is skipped.
    let maybe = args.iter().skip(1).any(|a| {
        a == "--detach"
            || a.starts_with("--detach=")
            || (a.starts_with('-') && !a.starts_with("--") && a.contains('d'))
    });
    if !maybe {
        return false;
    }
    match prog {
        "boxrun" => {
            // Kept for boxrun_main: the fork that becomes the tool inherits it.
            let parsed = BoxrunCli::try_parse_from(args);
            let detach = parsed.as_ref().is_ok_and(|c| c.args.detach);
            PREPARSED.with(|p| *p.borrow_mut() = Some(parsed));
            detach
        }
        // Only `box run` can detach; building clap's whole `box` tree for every other
        // command (sandbox-run, build, pull) would cost half a millisecond for nothing.
        "box" if box_subcommand(args) != Some("run") => false,
        "box" => matches!(
            BoxCli::try_parse_from(args),
            Ok(BoxCli { command: BoxCommand::Run(a), .. }) if a.detach
        ),
        _ => false,
    }
}

/// Print an error chain the way every boxkit command does and return the tool-failure code.
pub fn report(err: &anyhow::Error, prog: &str) -> ExitCode {
    eprintln!("{prog}: {err:#}");
    EXIT_TOOL_FAILED
}

/// What a command asks the binary to exit with.
pub type CmdResult = anyhow::Result<u8>;

fn finish(prog: &str, r: CmdResult, tool: &ToolContext) -> ExitCode {
    let code = match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{prog}: {e:#}");
            EXIT_TOOL_FAILED
        }
    };
    if let Some((root, id)) = crate::container::detach::take_local_handoff() {
        ctl::hand_off(prog, &root, &id);
    }
    tool.exiting(code);
    code
}

/// clap exits with 2 on usage errors; docker uses 125 for its own failures, usage included.
fn parse_or_exit<P: Parser>() -> P {
    P::try_parse().unwrap_or_else(|e| exit_with_usage(e))
}

/// Print clap's message (usage error, `--help`, `--version`) and exit as docker does.
fn exit_with_usage(e: clap::Error) -> ! {
    let code = if e.use_stderr() {
        EXIT_TOOL_FAILED as i32
    } else {
        0
    };
    let _ = e.print();
    std::process::exit(code)
}

/// `box sandbox-run` parsed on its own: building clap's whole `box` command tree costs about
/// half a millisecond, a tenth of a container start, and the sandbox benchmark measures it.
#[derive(Parser, Debug)]
#[command(name = "box sandbox-run")]
struct SandboxRunCli {
    #[command(flatten)]
    args: dev::SandboxRunArgs,
}

pub fn box_main(tool: ToolContext) -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "sandbox-run")
    {
        let cli = SandboxRunCli::try_parse_from(std::env::args_os().skip(1)).unwrap_or_else(|e| {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                EXIT_TOOL_FAILED as i32
            } else {
                0
            })
        });
        return finish("box", dev::sandbox_run(cli.args, &tool), &tool);
    }
    let cli: BoxCli = parse_or_exit();
    let g = cli.global;
    let r = match cli.command {
        BoxCommand::Build(a) => build::run(&g, *a, &tool),
        BoxCommand::Run(a) => run::run(&g, *a, &tool),
        BoxCommand::Images(a) => images::images(&g, a),
        BoxCommand::Pull(a) => registry::pull(&g, a, &tool),
        BoxCommand::Push(a) => registry::push(&g, a),
        BoxCommand::Tag(a) => images::tag(&g, a),
        BoxCommand::Rmi(a) => images::rmi(&g, a),
        BoxCommand::History(a) => history::history(&g, a),
        BoxCommand::Inspect(a) => inspect::inspect(&g, a),
        BoxCommand::Prune(a) => images::prune(&g, a),
        BoxCommand::Image(c) => images::image(&g, c),
        BoxCommand::Manifest(c) => manifest::manifest(&g, c),
        BoxCommand::Load(a) => images::load(&g, a),
        BoxCommand::Save(a) => images::save(&g, a),
        BoxCommand::Login(a) => registry::login(&g, a),
        BoxCommand::Logout(a) => registry::logout(&g, a),
        BoxCommand::Ps(a) => containers::ps(&g, a),
        BoxCommand::Port(a) => containers::port(&g, a),
        BoxCommand::Logs(a) => lifecycle::logs(&g, a),
        BoxCommand::Wait(a) => lifecycle::wait(&g, a),
        BoxCommand::Rename(a) => lifecycle::rename(&g, a),
        BoxCommand::Exec(a) => containers::exec(&g, a),
        BoxCommand::Create(a) => ctl::create(&g, *a, &tool),
        BoxCommand::Start(a) => ctl::start(&g, a, &tool),
        BoxCommand::Restart(a) => ctl::restart(&g, a),
        BoxCommand::Attach(a) => ctl::attach(&g, a),
        BoxCommand::ContainerStart(a) => ctl::container_start(&g, a, &tool),
        BoxCommand::ContainerCleanup(a) => ctl::container_cleanup(&g, a),
        BoxCommand::Cp(a) => cp::cp(&g, a),
        BoxCommand::Top(a) => stats::top(&g, a),
        BoxCommand::Stats(a) => stats::stats(&g, a),
        BoxCommand::Stop(a) => containers::stop(&g, a),
        BoxCommand::Kill(a) => containers::kill(&g, a),
        BoxCommand::Rm(a) => containers::rm(&g, a),
        BoxCommand::Info(a) => info::info(&g, a),
        BoxCommand::Completion(a) => completion::completion(a),
        BoxCommand::Man(a) => completion::man(a),
        BoxCommand::System(SystemCommand::Migrate) => system_migrate(),
        BoxCommand::Volume(c) => volumes::volume(&g, c),
        BoxCommand::Builder(c) => system::builder(&g, c),
        BoxCommand::System(SystemCommand::Df(a)) => system::df(&g, a),
        BoxCommand::SandboxRun(a) => dev::sandbox_run(*a, &tool),
        BoxCommand::Layer(c) => dev::layer_command(c).map(|()| 0),
    };
    finish("box", r, &tool)
}

fn system_migrate() -> CmdResult {
    if nix::unistd::geteuid().is_root() {
        // Root makes its namespace per command; there is nothing to stop.
        return Ok(0);
    }
    if crate::run::keeper::stop()? {
        eprintln!("stopped the user namespace keeper");
    }
    Ok(0)
}

/// `boxbuild`: the same as `box build`.
#[derive(Parser, Debug)]
#[command(name = "boxbuild", version, about = "Build an image from a Boxfile")]
struct BoxbuildCli {
    #[command(flatten)]
    global: Global,
    #[command(flatten)]
    args: BuildArgs,
}

/// `boxrun`: the same as `box run`.
#[derive(Parser, Debug)]
#[command(
    name = "boxrun",
    version,
    about = "Run a command in a new container",
    disable_help_flag = true
)]
struct BoxrunCli {
    #[command(flatten)]
    global: Global,
    #[command(flatten)]
    args: RunArgs,
}

pub fn boxbuild_main(tool: ToolContext) -> ExitCode {
    let cli: BoxbuildCli = parse_or_exit();
    finish("boxbuild", build::run(&cli.global, cli.args, &tool), &tool)
}

thread_local! {
    /// boxrun's arguments, when they were parsed before boxrun_main: to see whether the run
    /// detaches, or while the tool waited for its id maps.
    static PREPARSED: std::cell::RefCell<Option<Result<BoxrunCli, clap::Error>>> =
        const { std::cell::RefCell::new(None) };
}

pub fn boxrun_main(tool: ToolContext) -> ExitCode {
    let cli: BoxrunCli = match PREPARSED.with(|p| p.borrow_mut().take()) {
        Some(parsed) => parsed.unwrap_or_else(|e| exit_with_usage(e)),
        None => parse_or_exit(),
    };
    finish("boxrun", run::run(&cli.global, cli.args, &tool), &tool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn only_commands_that_touch_container_ids_enter_the_userns() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(needs_userns("boxrun", &v(&["boxrun", "busybox"])));
        assert!(needs_userns("boxbuild", &v(&["boxbuild", "-t", "x", "."])));
        assert!(!needs_userns("boxbuild", &v(&["boxbuild", "--check", "."])));
        assert!(!needs_userns(
            "boxbuild",
            &v(&["boxbuild", "--check=strict", "."])
        ));
        assert!(needs_userns(
            "box",
            &v(&["box", "--root", "/s", "run", "busybox"])
        ));
        assert!(needs_userns(
            "box",
            &v(&["box", "sandbox-run", "--rootfs", "r", "--", "true"])
        ));
        assert!(!needs_userns(
            "box",
            &v(&["box", "--root", "run", "images"])
        ));
        assert!(!needs_userns("box", &v(&["box", "load", "-i", "x.tar"])));
        assert!(needs_userns("box", &v(&["box", "pull", "busybox"])));
        assert!(!needs_userns("box", &v(&["box", "push", "busybox"])));
        assert!(!needs_userns("box", &v(&["box", "build", "--check", "."])));
        // Container commands act with the caller's own credentials (see
        // crate::container::exec): a fresh tool namespace would have no power over the
        // container's.
        assert!(!needs_userns("box", &v(&["box", "exec", "c", "ls"])));
        assert!(!needs_userns("box", &v(&["box", "stop", "c"])));
        assert!(!needs_userns("box", &v(&["box", "kill", "c"])));
        assert!(!needs_userns("box", &v(&["box", "rm", "-f", "c"])));
        assert!(!needs_userns("box", &v(&["box", "ps", "-a"])));
        assert!(!needs_userns("box", &v(&["box", "logs", "c"])));
        assert!(needs_userns("box", &v(&["box", "volume", "create", "v"])));
        assert!(needs_userns("box", &v(&["box", "volume", "prune", "-a"])));
        assert!(!needs_userns("box", &v(&["box", "volume", "ls"])));
        // create pulls and unpacks; start runs the container elsewhere unless -ai asks for
        // it in this process.
        assert!(needs_userns("box", &v(&["box", "create", "busybox"])));
        assert!(!needs_userns("box", &v(&["box", "start", "c"])));
        assert!(!needs_userns("box", &v(&["box", "start", "-a", "c"])));
        assert!(needs_userns("box", &v(&["box", "start", "-ai", "c"])));
        assert!(needs_userns(
            "box",
            &v(&["box", "start", "--attach", "--interactive", "c"])
        ));
        assert!(!needs_userns("box", &v(&["box", "restart", "c"])));
        assert!(!needs_userns("box", &v(&["box", "attach", "c"])));
        assert!(is_detached_run(
            "box",
            &v(&["box", "container-start", "abc"])
        ));
    }

    #[test]
    fn detached_runs_are_recognised_before_the_namespace() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_detached_run("boxrun", &v(&["boxrun", "-d", "busybox"])));
        assert!(is_detached_run(
            "boxrun",
            &v(&["boxrun", "-dit", "busybox", "sh"])
        ));
        assert!(!is_detached_run("boxrun", &v(&["boxrun", "busybox", "-d"])));
        assert!(is_detached_run(
            "box",
            &v(&["box", "run", "--detach", "busybox"])
        ));
        assert!(!is_detached_run("box", &v(&["box", "run", "busybox"])));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        BoxCli::command().debug_assert();
        BoxbuildCli::command().debug_assert();
        BoxrunCli::command().debug_assert();
    }
}
