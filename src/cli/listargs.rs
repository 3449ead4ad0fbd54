//! The arguments of the listing commands (`ps`, `images`, `inspect`, `info`), whose
//! `--format` and `--filter` flags are handled in fmt.rs, template*.rs and filter.rs.

use clap::Args;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Show only images whose repository matches
    pub repository: Option<String>,
    /// Filter output: dangling=true|false, label=KEY[=VALUE], reference=GLOB, before=IMAGE,
    /// since=IMAGE (repeatable)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Format output: 'json', a Go template ('{{.Repository}}:{{.Tag}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Restrict to one kind of object
    #[arg(long, value_parser = ["image", "container"])]
    pub r#type: Option<String>,
    /// Format output: 'json' or a Go template ('{{.Id}}', '{{json .Config}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output: 'json' or a Go template ('{{.Version}}', '{{json .Probe}}')
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output: status=, name=, id=, label=KEY[=VALUE], ancestor=IMAGE, before=CONTAINER,
    /// since=CONTAINER, exited=CODE, network=MODE, volume=PATH (repeatable)
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Format output: 'json', a Go template ('{{.ID}} {{.Names}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}
