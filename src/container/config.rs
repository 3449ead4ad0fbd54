//! From an image config plus `docker run` options to the process a container runs: argv from
//! Entrypoint and Cmd (docker's combination rules), the environment (image Env, then env
//! files, then `-e`), working directory, user and stop signal. Pure data handling, tested
//! without a kernel.

use thiserror::Error;

use crate::image::ContainerConfig;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no command specified: the image has no Entrypoint or Cmd; give a command after the image name"
    )]
    NoCommand,
    #[error("invalid environment variable {0:?}: the name must not be empty")]
    EnvName(String),
    #[error("read env file {path}: {cause}")]
    EnvFile { path: String, cause: String },
    #[error("invalid working directory {0:?}: it must be an absolute path")]
    Workdir(String),
    #[error("invalid stop signal {0:?}")]
    Signal(String),
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// What the caller asked for on the command line that the image config can supply too.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--entrypoint`: `Some("")` clears the image's Entrypoint.
    pub entrypoint: Option<String>,
    /// Arguments after the image name; empty means "use the image's Cmd".
    pub command: Vec<String>,
    /// `--env-file` contents, in order, as (file name, text).
    pub env_files: Vec<(String, String)>,
    /// `-e` entries: `K=V`, or `K` to copy the caller's value.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

/// The resolved process of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    /// Signal number `box stop` sends first.
    pub stop_signal: i32,
}

/// Docker's rules: `--entrypoint` replaces the image Entrypoint and resets its Cmd; command
/// arguments replace Cmd; the process is Entrypoint followed by Cmd.
pub fn argv(image_cfg: &ContainerConfig, o: &Overrides) -> Result<Vec<String>> {
    let (entry, default_cmd) = match &o.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            image_cfg.entrypoint.clone().unwrap_or_default(),
            image_cfg.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if o.command.is_empty() {
        default_cmd
    } else {
        o.command.clone()
    };
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    Ok(argv)
}

/// Parse an env file as docker does: one `K=V` per line, `#` comments and blank lines
/// skipped, a bare `K` copies the caller's value (and is dropped when the caller has none).
pub fn parse_env_file(
    name: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(e) = expand_entry(l, lookup).map_err(|e| ConfigError::EnvFile {
            path: name.to_string(),
            cause: e.to_string(),
        })? {
            out.push(e);
        }
    }
    Ok(out)
}

fn expand_entry(e: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    match e.split_once('=') {
        Some(("", _)) => Err(ConfigError::EnvName(e.to_string())),
        Some(_) => Ok(Some(e.to_string())),
        None if e.is_empty() => Err(ConfigError::EnvName(e.to_string())),
        None => Ok(lookup(e).map(|v| format!("{e}={v}"))),
    }
}

/// Set `entry` in `env`, replacing an earlier value of the same name in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
    let key = key.to_string();
    match env
        .iter_mut()
        .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// A signal given as `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(ConfigError::Signal(s.to_string()))
        };
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| ConfigError::Signal(s.to_string()))
}

/// Combine the image config's `config` object with the overrides.
pub fn resolve(
    image_cfg: &ContainerConfig,
    o: &Overrides,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Process> {
    let argv = argv(image_cfg, o)?;
    let mut env = Vec::new();
    for e in &image_cfg.env {
        set_env(&mut env, e.clone());
    }
    for (name, text) in &o.env_files {
        for e in parse_env_file(name, text, lookup)? {
            set_env(&mut env, e);
        }
    }
    for e in &o.env {
        if let Some(e) = expand_entry(e, lookup)? {
            set_env(&mut env, e);
        }
    }
    let cwd = match &o.workdir {
        Some(w) if !w.starts_with('/') => return Err(ConfigError::Workdir(w.clone())),
        Some(w) => Some(w.clone()),
        None => Some(image_cfg.working_dir.clone()).filter(|w| !w.is_empty()),
    };
    let user = o
        .user
        .clone()
        .or_else(|| Some(image_cfg.user.clone()).filter(|u| !u.is_empty()));
    let stop_signal = match image_cfg.stop_signal.as_str() {
        "" => libc::SIGTERM,
        s => parse_signal(s)?,
    };
    Ok(Process {
        argv,
        env,
        cwd,
        user,
        stop_signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image's `config` object, written as it appears in an image config.
    macro_rules! json {
        ($($t:tt)+) => {
            serde_json::from_value::<ContainerConfig>(serde_json::json!($($t)+)).unwrap()
        };
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    fn ov(entry: Option<&str>, cmd: &[&str]) -> Overrides {
        Overrides {
            entrypoint: entry.map(String::from),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_combine_like_docker() {
        let both = json!({"Entrypoint": ["/ep", "-x"], "Cmd": ["a", "b"]});
        assert_eq!(
            argv(&both, &ov(None, &[])).unwrap(),
            ["/ep", "-x", "a", "b"]
        );
        assert_eq!(argv(&both, &ov(None, &["c"])).unwrap(), ["/ep", "-x", "c"]);
        // --entrypoint resets the image's Cmd.
        assert_eq!(argv(&both, &ov(Some("/other"), &[])).unwrap(), ["/other"]);
        assert_eq!(
            argv(&both, &ov(Some("/other"), &["z"])).unwrap(),
            ["/other", "z"]
        );
        assert_eq!(argv(&both, &ov(Some(""), &["z"])).unwrap(), ["z"]);
        let cmd_only = json!({"Cmd": ["sh"]});
        assert_eq!(argv(&cmd_only, &ov(None, &[])).unwrap(), ["sh"]);
        assert_eq!(
            argv(&cmd_only, &ov(None, &["echo", "hi"])).unwrap(),
            ["echo", "hi"]
        );
        assert_eq!(
            argv(&json!({}), &ov(None, &[])),
            Err(ConfigError::NoCommand)
        );
        assert_eq!(
            argv(
                &json!({"Entrypoint": null, "Cmd": null}),
                &ov(Some(""), &[])
            ),
            Err(ConfigError::NoCommand)
        );
    }

    #[test]
    fn env_layers_image_then_files_then_flags() {
        let cfg = json!({"Env": ["PATH=/bin", "A=image", "B=image"], "Cmd": ["x"]});
        let o = Overrides {
            env_files: vec![(
                "f".into(),
                "# comment\n\nB=file\nC=file=with=equals\nFROMHOST\nMISSING\n".into(),
            )],
            env: vec!["A=flag".into(), "D".into()],
            ..ov(None, &[])
        };
        let lookup = |k: &str| match k {
            "FROMHOST" => Some("h".to_string()),
            "D" => Some("d".to_string()),
            _ => None,
        };
        let p = resolve(&cfg, &o, &lookup).unwrap();
        assert_eq!(
            p.env,
            [
                "PATH=/bin",
                "A=flag",
                "B=file",
                "C=file=with=equals",
                "FROMHOST=h",
                "D=d"
            ]
        );
        let bad = Overrides {
            env: vec!["=x".into()],
            ..ov(None, &[])
        };
        assert!(resolve(&cfg, &bad, &none).is_err());
    }

    #[test]
    fn workdir_user_and_stop_signal_come_from_the_image_unless_overridden() {
        let cfg =
            json!({"Cmd": ["x"], "WorkingDir": "/srv", "User": "app", "StopSignal": "SIGQUIT"});
        let p = resolve(&cfg, &ov(None, &[]), &none).unwrap();
        assert_eq!(p.cwd.as_deref(), Some("/srv"));
        assert_eq!(p.user.as_deref(), Some("app"));
        assert_eq!(p.stop_signal, libc::SIGQUIT);
        let o = Overrides {
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            ..ov(None, &[])
        };
        let p = resolve(&cfg, &o, &none).unwrap();
        assert_eq!(p.cwd.as_deref(), Some("/tmp"));
        assert_eq!(p.user.as_deref(), Some("0:0"));
        let rel = Overrides {
            workdir: Some("tmp".into()),
            ..ov(None, &[])
        };
        assert!(resolve(&cfg, &rel, &none).is_err());
        let p = resolve(&json!({"Cmd": ["x"]}), &ov(None, &[]), &none).unwrap();
        assert_eq!(p.stop_signal, libc::SIGTERM);
        assert_eq!(p.cwd, None);
    }

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
