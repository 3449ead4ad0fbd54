//! `box ps | logs | exec | stop | kill | rm`, and the container side of `box inspect`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Context, bail};

use super::fmt::print_table;
use super::store::open_store;
use super::{CmdResult, ExecArgs, Global, KillArgs, LogsArgs, PortArgs, PsArgs, RmArgs, StopArgs};
use crate::container::{self, Containers, State, Status, config, exec::ExecOptions};
use crate::run::ports::PortMapping;

fn containers(g: &Global) -> anyhow::Result<(Containers, std::path::PathBuf)> {
    let store = open_store(g)?;
    Ok((Containers::new(store.containers_dir()), store.volumes_dir()))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

pub fn ps(g: &Global, a: PsArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let mut rows: Vec<State> = c
        .ids()
        .iter()
        .filter_map(|id| c.refresh(id).ok().flatten())
        .filter(|s| a.all || s.is_running())
        .collect();
    rows.sort_by(|x, y| y.created.cmp(&x.created));
    if a.quiet {
        for s in rows {
            println!("{}", &s.id[..12]);
        }
        return Ok(0);
    }
    let mut table = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(String::from),
    ];
    for s in rows {
        table.push([
            s.id[..12].to_string(),
            truncate(&s.image, 30),
            format!("\"{}\"", truncate(&s.argv.join(" "), 20)),
            crate::timefmt::human_age(Some(&s.created)),
            s.status_text(),
            s.published
                .iter()
                .map(|p| format!("{}->{}", host_addr(p), p.container_key()))
                .collect::<Vec<_>>()
                .join(", "),
            s.name.clone(),
        ]);
    }
    print_table(&mut std::io::stdout().lock(), &table)?;
    Ok(0)
}

/// `0.0.0.0:49153`, `[::1]:8080`: where a published port listens.
fn host_addr(p: &PortMapping) -> std::net::SocketAddr {
    std::net::SocketAddr::new(p.host_ip, p.host_port)
}

/// `docker port`: every published port as `80/tcp -> 0.0.0.0:49153`, or where one container
/// port (`80`, `80/tcp`, `53/udp`) is published.
pub fn port(g: &Global, a: PortArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let id = c.resolve(&a.container)?;
    let st = c
        .refresh(&id)?
        .ok_or_else(|| anyhow::anyhow!("no such container: {}", a.container))?;
    let published = if st.is_running() {
        st.published
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    let Some(want) = a.private_port else {
        for p in &published {
            writeln!(out, "{} -> {}", p.container_key(), host_addr(p))?;
        }
        return Ok(0);
    };
    let key = match want.split_once('/') {
        None => format!("{want}/tcp"),
        Some((_, "tcp" | "udp")) => want.clone(),
        Some(_) => bail!("invalid port {want:?}: expected PRIVATE_PORT[/tcp|/udp]"),
    };
    if key
        .split_once('/')
        .is_none_or(|(n, _)| n.parse::<u16>().is_err())
    {
        bail!("invalid port {want:?}: expected PRIVATE_PORT[/tcp|/udp]");
    }
    let hits: Vec<_> = published
        .iter()
        .filter(|p| p.container_key() == key)
        .collect();
    if hits.is_empty() {
        // docker's wording and status.
        eprintln!(
            "Error: No public port '{key}' published for {}",
            a.container
        );
        return Ok(1);
    }
    for p in hits {
        writeln!(out, "{}", host_addr(p))?;
    }
    Ok(0)
}

/// Docker's shape for port lists: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
fn port_map(
    ports: &[PortMapping],
    host_port: impl Fn(&PortMapping) -> String,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for p in ports {
        let binding = serde_json::json!({
            "HostIp": p.host_ip.to_string(),
            "HostPort": host_port(p),
        });
        match m
            .entry(p.container_key())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            serde_json::Value::Array(v) => v.push(binding),
            _ => unreachable!("every entry is an array"),
        }
    }
    serde_json::Value::Object(m)
}

pub fn logs(g: &Global, a: LogsArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let id = c.resolve(&a.container)?;
    let path = c.log_path(&id);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "container {} has no log: only detached containers (boxrun -d) keep one",
                &id[..12]
            )
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !a.follow {
            return Ok(0);
        }
        // Follow until the container has exited and everything it wrote is out.
        let running = c.load(&id).map(|s| s.is_running()).unwrap_or(false);
        if !running {
            let pos = f.stream_position()?;
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(pos);
            if len <= pos {
                return Ok(0);
            }
            f.seek(SeekFrom::Start(pos))?;
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn exec(g: &Global, a: ExecArgs) -> CmdResult {
    let (c, _) = containers(g)?;
    let id = c.resolve(&a.container)?;
    let st = c
        .refresh(&id)?
        .ok_or_else(|| anyhow::anyhow!("no such container: {}", a.container))?;
    if !st.is_running() {
        bail!("container {} is not running", a.container);
    }
    if let Some(w) = &a.workdir
        && !w.starts_with('/')
    {
        bail!("invalid working directory {w:?}: it must be an absolute path");
    }
    super::check_preserved_fds(a.preserve_fds)?;
    let o = ExecOptions {
        argv: a.command,
        env: a.env,
        cwd: a.workdir,
        user: a.user,
        tty: a.tty,
        interactive: a.interactive,
        preserve_fds: a.preserve_fds,
    };
    match container::exec::exec(&st, &o) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        // The command could not be started: docker exec's 126.
        Err(e @ container::ContainerError::Start { .. }) => {
            eprintln!("box exec: {e}");
            Ok(126)
        }
        Err(e) => Err(e.into()),
    }
}

/// Apply `f` to each named container; print the name as given on success, as docker does.
fn each(
    g: &Global,
    names: &[String],
    f: impl Fn(&Containers, &std::path::Path, &str) -> anyhow::Result<()>,
) -> CmdResult {
    let (c, vols) = containers(g)?;
    let mut failed = false;
    for n in names {
        let r = c
            .resolve(n)
            .map_err(anyhow::Error::from)
            .and_then(|id| f(&c, &vols, &id));
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn stop(g: &Global, a: StopArgs) -> CmdResult {
    let t = Duration::from_secs(a.time);
    each(g, &a.containers, |c, _, id| Ok(container::stop(c, id, t)?))
}

pub fn kill(g: &Global, a: KillArgs) -> CmdResult {
    let sig = config::parse_signal(&a.signal)?;
    each(g, &a.containers, |c, _, id| {
        let st = c.load(id)?;
        if !st.is_running() {
            bail!("cannot kill container {}: it is not running", &id[..12]);
        }
        Ok(container::kill(&st, sig)?)
    })
}

pub fn rm(g: &Global, a: RmArgs) -> CmdResult {
    each(g, &a.containers, |c, vols, id| {
        Ok(container::remove(c, vols, id, a.force)?)
    })
}

/// `docker container inspect`'s main fields, or None when `what` names no container.
pub fn inspect_json(c: &Containers, what: &str) -> Option<serde_json::Value> {
    let id = c.resolve(what).ok()?;
    let s = c.refresh(&id).ok()??;
    let running = s.is_running();
    let pid = if running {
        s.init_pid().unwrap_or(0)
    } else {
        0
    };
    Some(serde_json::json!({
        "Id": s.id,
        "Created": s.created,
        "Path": s.argv.first(),
        "Args": s.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": match s.status { Status::Created => "created", Status::Running if running => "running", _ => "exited" },
            "Running": running,
            "Pid": pid,
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": s.image_id,
        "Name": format!("/{}", s.name),
        "LogPath": if s.detached { c.log_path(&s.id).display().to_string() } else { String::new() },
        "Mounts": s.mounts,
        // As bound, while running.
        "NetworkSettings": {
            "Ports": port_map(if running { &s.published } else { &[] }, |p| p.host_port.to_string()),
        },
        "Config": {
            "Hostname": s.hostname,
            "User": s.user.clone().unwrap_or_default(),
            "Tty": s.tty,
            "Env": s.env,
            "Cmd": s.argv,
            "Image": s.image,
            "WorkingDir": s.cwd.clone().unwrap_or_default(),
            "StopSignal": s.stop_signal,
        },
        "HostConfig": {
            "NetworkMode": format!("{:?}", s.network).to_lowercase(),
            // As asked: "" for a random host port, "8000-8010" for a range.
            "PortBindings": port_map(&s.ports, |p| match (p.host_port, p.host_port_end) {
                (0, _) => String::new(),
                (h, Some(e)) => format!("{h}-{e}"),
                (h, None) => h.to_string(),
            }),
            "AutoRemove": s.auto_remove,
            "ReadonlyRootfs": s.read_only,
            "Memory": s.limits.memory.unwrap_or(0),
            "MemorySwap": s.limits.memory_swap.unwrap_or(0),
            "PidsLimit": s.limits.pids,
            "CpuQuota": s.limits.cpu_quota.unwrap_or(0),
            "CpuPeriod": s.limits.cpu_period.unwrap_or(0),
            "CpusetCpus": s.limits.cpuset_cpus.clone().unwrap_or_default(),
            "CapAdd": serde_json::Value::Null,
            "Capabilities": crate::run::caps::names(s.caps),
            "SecurityOpt": s.no_new_privs.then(|| "no-new-privileges".to_string())
                .into_iter()
                .chain(crate::run::seccomp::Seccomp::security_opt(&s.seccomp))
                .collect::<Vec<_>>(),
        },
    }))
}
