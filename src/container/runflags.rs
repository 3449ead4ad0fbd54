//! Parsing of the `docker run` flags that are plain data: `--label`/`--label-file`,
//! `--add-host`, `--ulimit`, `--tmpfs`, and `--cidfile` (written once the id exists).

use std::collections::BTreeMap;
use std::path::Path;

use thiserror::Error;

use crate::run::ports::PortMapping;
use crate::run::spec::Ulimit;

#[derive(Debug, Error)]
pub enum FlagError {
    #[error("invalid --label {0:?}: expected KEY=VALUE (or KEY for an empty value)")]
    Label(String),
    #[error("invalid --add-host {0:?}: expected HOST:IP (an IPv4 or IPv6 address)")]
    AddHost(String),
    #[error(
        "invalid --ulimit {0:?}: expected NAME=SOFT[:HARD] with NAME one of {names}",
        names = ULIMIT_NAMES.iter().map(|u| u.0).collect::<Vec<_>>().join(", ")
    )]
    Ulimit(String),
    #[error("invalid --ulimit {0:?}: the soft limit is above the hard limit")]
    UlimitOrder(String),
    #[error(
        "invalid --tmpfs {0:?}: expected an absolute PATH[:OPTIONS], OPTIONS among ro, rw, \
         size=, mode=, nr_inodes=, uid=, gid= (the mount is always nosuid,nodev)"
    )]
    Tmpfs(String),
    #[error("container ID file found, make sure the other container isn't running or delete {0}")]
    CidfileExists(String),
    #[error("invalid --expose {0:?}: expected PORT[-END][/tcp|udp|sctp]")]
    Expose(String),
}

/// docker's `--ulimit` names and the rlimit each sets.
const ULIMIT_NAMES: &[(&str, i32)] = &[
    ("core", libc::RLIMIT_CORE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("locks", libc::RLIMIT_LOCKS as i32),
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rss", libc::RLIMIT_RSS as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
    ("stack", libc::RLIMIT_STACK as i32),
];

/// `--label k=v` values and the lines of `--label-file`s (`#` comments and blank lines
/// skipped), in order: a later value for a key wins. Files come first, as docker reads them.
pub fn labels(
    files: &[(String, String)],
    flags: &[String],
) -> Result<BTreeMap<String, String>, FlagError> {
    let mut m = BTreeMap::new();
    let file_lines = files.iter().flat_map(|(_, text)| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    });
    for l in file_lines.chain(flags.iter().map(String::as_str)) {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(FlagError::Label(l.to_string()));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// `--add-host HOST:IP` (docker also takes `HOST=IP`) as an /etc/hosts line `IP\tHOST`.
/// The IP may be an IPv6 address with colons, optionally in brackets.
pub fn add_host(s: &str) -> Result<String, FlagError> {
    let bad = || FlagError::AddHost(s.to_string());
    let (host, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    Ok(format!("{ip}\t{host}"))
}

/// `--ulimit NAME=SOFT[:HARD]`; -1 (or "unlimited") is unlimited. Without HARD, both limits.
pub fn ulimit(s: &str) -> Result<Ulimit, FlagError> {
    let bad = || FlagError::Ulimit(s.to_string());
    let (name, v) = s.split_once('=').ok_or_else(bad)?;
    let resource = ULIMIT_NAMES
        .iter()
        .find(|u| u.0 == name)
        .map(|u| u.1)
        .ok_or_else(bad)?;
    let num = |x: &str| -> Result<u64, FlagError> {
        match x {
            "-1" | "unlimited" => Ok(libc::RLIM_INFINITY),
            _ => x.parse::<u64>().map_err(|_| bad()),
        }
    };
    let (soft, hard) = match v.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(v)?, num(v)?),
    };
    if soft > hard {
        return Err(FlagError::UlimitOrder(s.to_string()));
    }
    Ok(Ulimit {
        name: name.to_string(),
        resource,
        soft,
        hard,
    })
}

/// `--tmpfs PATH[:OPTIONS]` as a tmpfs mount request (the options as mount(8) takes them).
pub fn tmpfs(s: &str) -> Result<super::mounts::Request, FlagError> {
    let (path, opts) = match s.split_once(':') {
        Some((p, o)) => (p, Some(o)),
        None => (s, None),
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err(FlagError::Tmpfs(s.to_string()));
    }
    // Mount flags are the plan's (nosuid, nodev) plus `ro`; the rest is tmpfs data.
    let mut data = Vec::new();
    for o in opts.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match o {
            "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" => {}
            "ro" => data.push(o.to_string()),
            _ if ["size=", "mode=", "nr_inodes=", "uid=", "gid="]
                .iter()
                .any(|p| o.starts_with(p)) =>
            {
                data.push(o.to_string())
            }
            _ => return Err(FlagError::Tmpfs(s.to_string())),
        }
    }
    Ok(super::mounts::Request::Tmpfs {
        target: path.to_string(),
        options: (!data.is_empty()).then(|| data.join(",")),
    })
}

/// `-P`: `ports` plus every exposed port (`80/tcp`, `53/udp`, `8000-8010/tcp`) that no `-p`
/// publishes, each on a random host port of every address (as `-p CTR` would). A protocol
/// boxkit cannot publish (sctp) is left out.
pub fn publish_all<'a>(
    ports: &[PortMapping],
    exposed: impl IntoIterator<Item = &'a String>,
) -> Vec<PortMapping> {
    let mut out = ports.to_vec();
    for e in exposed {
        let Ok(more) = PortMapping::parse(e) else {
            continue;
        };
        for m in more {
            let taken = out
                .iter()
                .any(|p| p.container_port == m.container_port && p.proto == m.proto);
            if !taken {
                out.push(m);
            }
        }
    }
    out
}

/// `--expose PORT[-END][/PROTO]`, checked as a port spec.
pub fn expose(s: &str) -> Result<String, FlagError> {
    let bad = || FlagError::Expose(s.to_string());
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
    match (a.parse::<u16>(), b.parse::<u16>()) {
        (Ok(a), Ok(b)) if a > 0 && a <= b => Ok(format!("{ports}/{proto}")),
        _ => Err(bad()),
    }
}

/// docker refuses a `--cidfile` that exists (another container may be using it).
pub fn check_cidfile(path: &Path) -> Result<(), FlagError> {
    if path.symlink_metadata().is_ok() {
        return Err(FlagError::CidfileExists(path.display().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_files_then_flags_later_wins() {
        let files = vec![("f".to_string(), "# c\na=1\n\nb=2\n".to_string())];
        let m = labels(&files, &["b=3".into(), "c".into()]).unwrap();
        let v: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(v, ["a=1", "b=3", "c="]);
        assert!(labels(&[], &["=x".into()]).is_err());
    }

    #[test]
    fn publish_all_adds_each_exposed_port_not_already_published() {
        let p = PortMapping::parse("8080:80").unwrap();
        let exposed = ["80/tcp", "53/udp", "9000-9001/tcp", "132/sctp"].map(String::from);
        let all = publish_all(&p, exposed.iter());
        let got: Vec<_> = all
            .iter()
            .map(|m| (m.host_port, m.container_port, m.proto.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (8080, 80, "tcp".into()),
                (0, 53, "udp".into()),
                (0, 9000, "tcp".into()),
                (0, 9001, "tcp".into()),
            ]
        );
        assert_eq!(expose("53/udp").unwrap(), "53/udp");
        assert_eq!(expose("8000-8001").unwrap(), "8000-8001/tcp");
        assert!(expose("0").is_err() && expose("9-8").is_err() && expose("80/icmp").is_err());
    }

    #[test]
    fn add_host_takes_ipv4_ipv6_and_equals() {
        assert_eq!(add_host("db:10.0.0.5").unwrap(), "10.0.0.5\tdb");
        assert_eq!(add_host("v6:::1").unwrap(), "::1\tv6");
        assert_eq!(add_host("v6=[fe80::1]").unwrap(), "fe80::1\tv6");
        assert!(add_host("db").is_err());
        assert!(add_host("db:not-an-ip").is_err());
    }

    #[test]
    fn ulimit_names_soft_hard_and_unlimited() {
        let u = ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (u.resource, u.soft, u.hard),
            (libc::RLIMIT_NOFILE as i32, 1024, 2048)
        );
        let u = ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (libc::RLIM_INFINITY, libc::RLIM_INFINITY));
        assert!(matches!(
            ulimit("nofile=10:5"),
            Err(FlagError::UlimitOrder(_))
        ));
        assert!(matches!(ulimit("files=10"), Err(FlagError::Ulimit(_))));
    }
}
