//! How each metadata instruction changes the image config a build produces. The config type
//! itself (with Docker's `Healthcheck`, `OnBuild` and `Shell`, and a base image's unknown
//! fields carried through) is [`crate::image::ImageConfig`].

use std::time::Duration;

use crate::boxfile::{Command, Healthcheck, Instruction, dump_instruction};
use crate::image::{ContainerConfig, HealthConfig, History, ImageConfig};

/// The argv a command form stands for: exec form as is, shell form through SHELL.
fn command_argv(c: &ContainerConfig, cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = c.shell();
            v.push(s.clone());
            v
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not a metadata instruction")]
    NotMetadata(&'static str),
    #[error("EXPOSE {0}: invalid port: expected PORT[-PORT][/tcp|/udp|/sctp]")]
    BadPort(String),
}

/// What the stage has set itself, as opposed to inherited from its base: an ENTRYPOINT clears
/// an *inherited* CMD (Docker's rule) but not one set earlier in the same stage.
#[derive(Default, Debug, Clone)]
pub struct StageState {
    pub cmd_set: bool,
}

fn nanos(d: &Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_nanos() as u64)
}

/// Apply one (already expanded) metadata instruction to the config.
pub fn apply(
    cfg: &mut ImageConfig,
    st: &mut StageState,
    ins: &Instruction,
) -> Result<(), ConfigError> {
    let c = &mut cfg.config;
    match ins {
        Instruction::Cmd(cmd) => {
            c.cmd = Some(command_argv(c, cmd));
            st.cmd_set = true;
        }
        Instruction::Entrypoint(cmd) => {
            let argv = command_argv(c, cmd);
            c.entrypoint = Some(argv);
            if !st.cmd_set {
                c.cmd = None;
            }
        }
        Instruction::Env(kvs) => {
            for kv in &kvs.pairs {
                c.env_set(&kv.key, &kv.value);
            }
        }
        Instruction::Label(kvs) => {
            for kv in &kvs.pairs {
                c.labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Instruction::Workdir(w) => {
            c.working_dir = resolve_workdir(&c.working_dir, w);
        }
        Instruction::User(u) => c.user = u.clone(),
        Instruction::Expose(ports) => {
            for p in ports {
                c.exposed_ports
                    .insert(normalise_port(p)?, serde_json::json!({}));
            }
        }
        Instruction::Volume { paths, .. } => {
            for p in paths {
                c.volumes.insert(p.clone(), serde_json::json!({}));
            }
        }
        Instruction::Shell(sh) => c.shell = Some(sh.clone()),
        Instruction::StopSignal(s) => c.stop_signal = s.clone(),
        Instruction::Healthcheck(Healthcheck::None) => {
            c.healthcheck = Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            })
        }
        Instruction::Healthcheck(Healthcheck::Cmd {
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
            command,
        }) => {
            let test = match command {
                Command::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.iter().cloned())
                    .collect(),
                Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            };
            c.healthcheck = Some(HealthConfig {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: retries.map_or(0, u64::from),
            });
        }
        Instruction::Onbuild(inner) => {
            let text = dump_instruction(inner);
            c.on_build.get_or_insert_with(Vec::new).push(text);
        }
        Instruction::Maintainer(m) => cfg.author = Some(m.clone()),
        Instruction::Arg(_) => {}
        other => return Err(ConfigError::NotMetadata(other.name())),
    }
    Ok(())
}

/// WORKDIR: absolute paths replace, relative ones join the current one; the result is
/// cleaned (no `.`/`..`, no duplicate slashes).
pub fn resolve_workdir(current: &str, w: &str) -> String {
    let joined = if w.starts_with('/') {
        w.to_string()
    } else {
        format!("{}/{w}", if current.is_empty() { "/" } else { current })
    };
    let mut parts: Vec<&str> = vec![];
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `80` → `80/tcp`; `53/UDP` → `53/udp`; ranges are kept as written.
pub fn normalise_port(p: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::BadPort(p.to_string());
    let (port, proto) = match p.split_once('/') {
        Some((port, proto)) => (port, proto.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let ok = |s: &str| s.parse::<u16>().is_ok();
    let valid = match port.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(port),
    };
    if !valid {
        return Err(bad());
    }
    Ok(format!("{port}/{proto}"))
}

/// The history entry for an instruction, in BuildKit's style (`created_by` is the instruction
/// as written after expansion; RUN lines get `# buildkit` appended by the caller).
pub fn history_entry(ins: &Instruction, created: Option<String>, empty_layer: bool) -> History {
    History {
        created,
        created_by: Some(dump_instruction(ins)),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxfile::{KeyValue, KeyValues};

    fn kv(k: &str, v: &str) -> KeyValues {
        KeyValues {
            pairs: vec![KeyValue {
                key: k.into(),
                value: v.into(),
            }],
            legacy: false,
        }
    }

    #[test]
    fn entrypoint_clears_inherited_cmd_but_not_own() {
        let mut cfg = ImageConfig::default();
        cfg.config.cmd = Some(vec!["sh".into()]);
        let mut st = StageState::default();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Entrypoint(Command::Exec(vec!["/app".into()])),
        )
        .unwrap();
        assert_eq!(cfg.config.cmd, None);
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Cmd(Command::Shell("run it".into())),
        )
        .unwrap();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Entrypoint(Command::Exec(vec!["/app2".into()])),
        )
        .unwrap();
        assert_eq!(
            cfg.config.cmd,
            Some(vec!["/bin/sh".into(), "-c".into(), "run it".into()])
        );
    }

    #[test]
    fn shell_form_uses_the_current_shell() {
        let mut cfg = ImageConfig::default();
        let mut st = StageState::default();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Shell(vec!["/bin/bash".into(), "-ec".into()]),
        )
        .unwrap();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Cmd(Command::Shell("echo hi".into())),
        )
        .unwrap();
        assert_eq!(cfg.config.cmd.unwrap(), ["/bin/bash", "-ec", "echo hi"]);
    }

    #[test]
    fn env_replaces_in_place_and_workdir_resolves() {
        let mut cfg = ImageConfig::default();
        let mut st = StageState::default();
        cfg.config.env = vec!["PATH=/bin".into(), "A=1".into()];
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Env(kv("PATH", "/usr/bin:/bin")),
        )
        .unwrap();
        assert_eq!(cfg.config.env, ["PATH=/usr/bin:/bin", "A=1"]);
        apply(&mut cfg, &mut st, &Instruction::Workdir("/app".into())).unwrap();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Workdir("src/../lib".into()),
        )
        .unwrap();
        assert_eq!(cfg.config.working_dir, "/app/lib");
    }

    #[test]
    fn ports_and_healthcheck_and_onbuild_survive_serialisation() {
        let mut cfg = ImageConfig::default();
        let mut st = StageState::default();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Expose(vec!["80".into(), "53/UDP".into()]),
        )
        .unwrap();
        assert!(apply(&mut cfg, &mut st, &Instruction::Expose(vec!["http".into()])).is_err());
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Healthcheck(Healthcheck::Cmd {
                interval: Some(Duration::from_secs(5)),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
                command: Command::Shell("wget -q localhost".into()),
            }),
        )
        .unwrap();
        apply(
            &mut cfg,
            &mut st,
            &Instruction::Onbuild(Box::new(Instruction::Run(crate::boxfile::RunInstr {
                mounts: vec![],
                network: None,
                security: None,
                command: Command::Shell("make".into()),
                heredocs: vec![],
            }))),
        )
        .unwrap();
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(
            json["config"]["ExposedPorts"],
            serde_json::json!({"80/tcp": {}, "53/udp": {}})
        );
        assert_eq!(
            json["config"]["Healthcheck"]["Test"],
            serde_json::json!(["CMD-SHELL", "wget -q localhost"])
        );
        assert_eq!(json["config"]["Healthcheck"]["Interval"], 5_000_000_000u64);
        assert_eq!(json["config"]["OnBuild"], serde_json::json!(["RUN make"]));
        let back: ImageConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }
}
