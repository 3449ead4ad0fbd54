//! `box ps | logs | exec | stop | kill | rm`, and the container side of `box inspect`.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;

use super::filter::Filters;
use super::fmt::{Format, print_rows, print_table};
use super::store::open_store;
use super::{CmdResult, ExecArgs, Global, KillArgs, PortArgs, PsArgs, RmArgs, StopArgs};
use crate::container::{self, Containers, State, config, exec::ExecOptions};
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

/// The filters `box ps` supports.
const PS_FILTERS: &[&str] = &[
    "ancestor", "before", "exited", "id", "label", "name", "network", "since", "status", "volume",
];

/// docker ps's column titles for `--format 'table ...'`.
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

pub fn ps(g: &Global, a: PsArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let filters = Filters::parse("ps", &a.filter, PS_FILTERS)?;
    let store = open_store(g)?;
    let c = Containers::new(store.containers_dir());
    let mut all: Vec<State> = c
        .ids()
        .iter()
        .filter_map(|id| c.refresh(id).ok().flatten())
        .collect();
    all.sort_by(|x, y| y.created.cmp(&x.created));
    // Labels cost a look-up of each image: only when a filter or a format can use them.
    let need_labels = filters.has("label") || !matches!(format, Format::Default);
    let mut labels = std::collections::HashMap::new();
    let mut label_of = |s: &State| -> serde_json::Map<String, serde_json::Value> {
        if !need_labels {
            return serde_json::Map::new();
        }
        let mut l = labels
            .entry(s.image_id.clone())
            .or_insert_with(|| image_labels(&store, &s.image_id))
            .clone();
        merge_labels(&mut l, s);
        l
    };
    // docker: a status filter shows stopped containers without -a.
    let show_all = a.all || filters.has("status") || filters.has("exited");
    let mut rows = vec![];
    for s in &all {
        let l = label_of(s);
        if (show_all || s.is_running()) && ps_match(&filters, &all, s, &l)? {
            rows.push((s, l));
        }
    }
    if a.quiet {
        for (s, _) in rows {
            println!("{}", if a.no_trunc { &s.id[..] } else { &s.id[..12] });
        }
        return Ok(0);
    }
    let json: Vec<serde_json::Value> = rows.iter().map(|(s, l)| ps_row(s, l, a.no_trunc)).collect();
    let mut out = std::io::stdout().lock();
    if print_rows(&mut out, &format, &json, PS_HEADERS)? {
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
    for r in &json {
        table.push(
            [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ]
            .map(|k| r[k].as_str().unwrap_or_default().to_string()),
        );
    }
    print_table(&mut out, &table)?;
    Ok(0)
}

/// The container's own `--label`s over its image's, as docker merges them.
fn merge_labels(l: &mut serde_json::Map<String, serde_json::Value>, s: &State) {
    for (k, v) in &s.labels {
        l.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
}

/// The labels a container's image has (the container's own go over them).
fn image_labels(
    store: &crate::store::Store,
    image_id: &str,
) -> serde_json::Map<String, serde_json::Value> {
    store
        .resolve_image(image_id)
        .map(|img| {
            img.config
                .config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// docker ps's `--format` fields for one container: every value a string, as docker's are.
fn ps_row(
    s: &State,
    labels: &serde_json::Map<String, serde_json::Value>,
    no_trunc: bool,
) -> serde_json::Value {
    let cmd = s.argv.join(" ");
    let state = s.docker_state();
    let mut l: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    l.sort();
    serde_json::json!({
        "Command": format!("\"{}\"", if no_trunc { cmd } else { truncate(&cmd, 20) }),
        "CreatedAt": super::fmt::docker_time(&s.created),
        "ID": if no_trunc { s.id.clone() } else { s.id[..12].to_string() },
        "Image": if no_trunc { s.image.clone() } else { truncate(&s.image, 30) },
        "Labels": l.join(","),
        "LocalVolumes": s.anonymous_volumes.len().to_string(),
        "Mounts": s.mounts.iter().map(|m| m.source.clone()).collect::<Vec<_>>().join(","),
        "Names": s.name,
        "Networks": format!("{:?}", s.network).to_lowercase(),
        "Ports": s.published
            .iter()
            .map(|p| format!("{}->{}", host_addr(p), p.container_key()))
            .collect::<Vec<_>>()
            .join(", "),
        "RunningFor": crate::timefmt::human_age(Some(&s.created)),
        "Size": "0B",
        "State": state,
        "Status": s.status_text(),
    })
}

/// Whether `s` passes every `--filter` of `box ps`.
fn ps_match(
    f: &Filters,
    all: &[State],
    s: &State,
    labels: &serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<bool> {
    let state = s.docker_state();
    for v in f.values("status") {
        const KNOWN: &[&str] = &[
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ];
        if !KNOWN.contains(&v) {
            bail!(
                "invalid filter 'status={v}': the status must be one of {}",
                KNOWN.join(", ")
            );
        }
    }
    let created = |what: &str| -> anyhow::Result<&str> {
        all.iter()
            .find(|c| c.name == what || c.id.starts_with(what))
            .map(|c| c.created.as_str())
            .ok_or_else(|| anyhow::anyhow!("invalid filter: no such container: {what}"))
    };
    for v in f.values("before") {
        if s.created.as_str() >= created(v)? {
            return Ok(false);
        }
    }
    for v in f.values("since") {
        if s.created.as_str() <= created(v)? {
            return Ok(false);
        }
    }
    for v in f.values("exited") {
        v.parse::<i32>()
            .map_err(|_| anyhow::anyhow!("invalid filter 'exited={v}': not an exit code"))?;
    }
    Ok(f.any("status", |v| v == state)
        && f.any("id", |v| s.id.starts_with(v))
        && f.any("name", |v| name_match(v, &s.name))
        && f.any("ancestor", |v| ancestor_match(v, s))
        && f.any("exited", |v| {
            state == "exited" && v.parse::<i32>().ok() == s.exit_code
        })
        && f.any("network", |v| {
            format!("{:?}", s.network).eq_ignore_ascii_case(v)
        })
        && f.any("volume", |v| volume_match(v, s))
        && f.labels_match(labels))
}

/// `volume=` names a mount by its destination, its source, or a named volume's name.
fn volume_match(v: &str, s: &State) -> bool {
    s.mounts.iter().any(|m| {
        m.destination == v
            || m.source == v
            || std::path::Path::new(&m.source)
                .components()
                .any(|c| c.as_os_str() == v)
    })
}

/// docker matches `name=` as a regular expression; the anchors `^` and `$` and plain
/// substrings cover what scripts pass.
fn name_match(pat: &str, name: &str) -> bool {
    let name = name.trim_start_matches('/');
    match (pat.strip_prefix('^'), pat.ends_with('$')) {
        (Some(p), true) => name == &p[..p.len() - 1],
        (Some(p), false) => name.starts_with(p),
        (None, true) => name.ends_with(&pat[..pat.len() - 1]),
        (None, false) => name.contains(pat),
    }
}

/// `ancestor=` names the container's image by name (`busybox`, `busybox:latest`) or ID.
fn ancestor_match(v: &str, s: &State) -> bool {
    let norm = |n: &str| -> Option<String> {
        let r = n.parse::<crate::image::Reference>().ok()?;
        Some(format!("{}:{}", r.name(), r.tag().unwrap_or("latest")))
    };
    let hex = v.strip_prefix("sha256:").unwrap_or(v);
    (norm(v).is_some() && norm(v) == norm(&s.image))
        || (hex.len() >= 4
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && s.image_id
                .strip_prefix("sha256:")
                .unwrap_or(&s.image_id)
                .starts_with(hex))
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
    each(g, &a.containers, |c, _, id| {
        // docker: -t, else the container's --stop-timeout, else 10 s.
        let secs = a
            .time
            .or_else(|| c.load(id).ok().and_then(|s| s.stop_timeout))
            .unwrap_or(10);
        Ok(container::stop(c, id, Duration::from_secs(secs))?)
    })
}

pub fn kill(g: &Global, a: KillArgs) -> CmdResult {
    let sig = config::parse_signal(&a.signal)?;
    each(g, &a.containers, |c, _, id| {
        let st = c.load(id)?;
        if !st.is_running() {
            bail!("cannot kill container {}: it is not running", &id[..12]);
        }
        // As podman: a killed container is not restarted by its policy.
        let _ = c.mark_user_stop(id);
        Ok(container::kill(&st, sig)?)
    })
}

pub fn rm(g: &Global, a: RmArgs) -> CmdResult {
    each(g, &a.containers, |c, vols, id| {
        match container::remove(c, vols, id, a.force) {
            Err(container::ContainerError::LayerInNamespace(_)) => {
                // Rootless: the container's own users made files there; remove them from
                // inside the tool's user namespace, then the rest.
                super::ctl::spawn_helper(g, "container-cleanup", id)?;
                Ok(container::remove(c, vols, id, a.force)?)
            }
            r => Ok(r?),
        }
    })
}

/// `docker container inspect`'s main fields, or None when `what` names no container.
pub fn inspect_json(
    store: &crate::store::Store,
    c: &Containers,
    what: &str,
) -> Option<serde_json::Value> {
    let id = c.resolve(what).ok()?;
    let s = c.refresh(&id).ok()??;
    let mut labels = image_labels(store, &s.image_id);
    merge_labels(&mut labels, &s);
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
            "Status": s.docker_state(),
            "Running": running,
            "Restarting": s.restarting && s.recorder_alive(),
            "Pid": pid,
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": s.image_id,
        "Name": format!("/{}", s.name),
        "RestartCount": s.restart_count,
        "LogPath": if c.log_path(&s.id).exists() { c.log_path(&s.id).display().to_string() } else { String::new() },
        "Mounts": s.mounts,
        // As bound, while running.
        "NetworkSettings": {
            "Ports": port_map(if running { &s.published } else { &[] }, |p| p.host_port.to_string()),
        },
        "Config": {
            "Hostname": s.hostname,
            "User": s.user.clone().unwrap_or_default(),
            "Tty": s.tty,
            "OpenStdin": s.launch.as_ref().is_some_and(|l| l.interactive),
            "Env": s.env,
            "Cmd": s.argv,
            "Image": s.image,
            "WorkingDir": s.cwd.clone().unwrap_or_default(),
            "StopSignal": s.stop_signal,
            "StopTimeout": s.stop_timeout,
            "Labels": labels,
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
            "RestartPolicy": {
                "Name": s.restart.docker_name().0,
                "MaximumRetryCount": s.restart.docker_name().1,
            },
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
