//! Flag values with a grammar of their own: `RUN --mount=type=cache,target=/x,...` and the
//! Go-style durations of `HEALTHCHECK --interval=30s`.

use std::time::Duration;

use super::{PResult, Problem};
use crate::boxfile::instruction::{CacheSharing, Mount, MountType};
use crate::boxfile::names;

pub(super) fn parse_duration(flag: &str, v: &str) -> PResult<Duration> {
    // Go's time.ParseDuration units; Docker writes durations that way.
    let err = || Problem::new(format!("invalid duration {v:?} for --{flag}")).at(v.to_string());
    let mut total = 0f64;
    let mut s = v;
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let n: f64 = s[..num_len].parse().map_err(|_| err())?;
        s = &s[num_len..];
        let unit_len = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let mult = match &s[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * mult;
        s = &s[unit_len..];
    }
    Ok(Duration::from_nanos((total * 1e9).round() as u64))
}

/// One `--mount` value: its type first (it decides which keys are allowed), then every
/// `key[=value]` field, then the keys this type does not take.
pub(super) fn parse_mount(value: &str) -> PResult<Mount> {
    let fields = csv_fields(value);
    let kind = mount_type(&fields)?;
    let mut m = Mount::new(kind);
    for f in fields.iter().filter(|f| !f.is_empty()) {
        set_option(&mut m, f)?;
    }
    check_allowed(&m, kind)?;
    if m.target.is_none() && matches!(kind, MountType::Bind | MountType::Cache | MountType::Tmpfs) {
        return Err(
            Problem::new(format!("mount type={} requires a target", kind.as_str())).at("--mount"),
        );
    }
    Ok(m)
}

/// CSV fields; a quoted part may hold commas.
fn csv_fields(value: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in value.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => fields.push(std::mem::take(&mut cur)),
            None => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The `type=` field (the last one wins), `bind` without one.
fn mount_type(fields: &[String]) -> PResult<MountType> {
    let mut kind = MountType::Bind;
    for f in fields {
        if let Some(("type", t)) = f.split_once('=') {
            kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                _ => {
                    return Err(Problem::new(format!("unsupported mount type {t:?}")).at(t));
                }
            };
        }
    }
    Ok(kind)
}

/// Apply one `key[=value]` field to `m`.
fn set_option(m: &mut Mount, f: &str) -> PResult<()> {
    let (key, val) = match f.split_once('=') {
        Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
        None => (f.to_ascii_lowercase(), None),
    };
    let need = |v: Option<String>| {
        v.ok_or_else(|| {
            Problem::new(format!("invalid mount option {key:?}: missing value")).at(key.clone())
        })
    };
    let num = |v: Option<String>, radix: u32| -> PResult<u32> {
        let v = need(v)?;
        u32::from_str_radix(&v, radix)
            .map_err(|_| Problem::new(format!("invalid value for {key}: {v:?}")).at(v.clone()))
    };
    let boolean = |v: Option<String>| -> PResult<bool> {
        match v.as_deref() {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(o) => Err(Problem::new(format!("invalid value for {key}: {o:?}")).at(o)),
        }
    };
    match key.as_str() {
        "type" => {}
        "id" => m.id = Some(need(val)?),
        "target" | "dst" | "destination" => m.target = Some(need(val)?),
        "source" | "src" => m.source = Some(need(val)?),
        "from" => m.from = Some(need(val)?),
        "sharing" => {
            let v = need(val)?;
            m.sharing = Some(match v.as_str() {
                "shared" => CacheSharing::Shared,
                "private" => CacheSharing::Private,
                "locked" => CacheSharing::Locked,
                _ => {
                    return Err(Problem::new(format!("unsupported sharing value {v:?}")).at(v));
                }
            })
        }
        "mode" => m.mode = Some(num(val, 8)?),
        "uid" => m.uid = Some(num(val, 10)?),
        "gid" => m.gid = Some(num(val, 10)?),
        "ro" | "readonly" => m.readonly = Some(boolean(val)?),
        "rw" | "readwrite" => m.readonly = Some(!boolean(val)?),
        "required" => m.required = Some(boolean(val)?),
        "env" => m.env = Some(need(val)?),
        "size" => m.size = Some(need(val)?),
        _ => {
            let mut msg = format!("unexpected key '{key}' in '{f}'");
            if let Some(s) = names::suggest(&key, names::MOUNT_KEYS.iter().copied()) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(Problem::new(msg).at(key.clone()));
        }
    }
    Ok(())
}

/// Refuse a key the mount's type does not take (`sharing` on a bind mount, ...).
fn check_allowed(m: &Mount, kind: MountType) -> PResult<()> {
    let allowed: &[&str] = match kind {
        MountType::Bind => &["target", "source", "from", "readonly"],
        MountType::Cache => &[
            "id", "target", "source", "from", "sharing", "mode", "uid", "gid", "readonly",
        ],
        MountType::Tmpfs => &["target", "size"],
        MountType::Secret | MountType::Ssh => {
            &["id", "target", "required", "mode", "uid", "gid", "env"]
        }
    };
    let set = [
        ("id", m.id.is_some()),
        ("target", m.target.is_some()),
        ("source", m.source.is_some()),
        ("from", m.from.is_some()),
        ("sharing", m.sharing.is_some()),
        ("mode", m.mode.is_some()),
        ("uid", m.uid.is_some()),
        ("gid", m.gid.is_some()),
        ("readonly", m.readonly.is_some()),
        ("required", m.required.is_some()),
        ("env", m.env.is_some() && kind != MountType::Ssh),
        ("size", m.size.is_some()),
    ];
    for (k, is_set) in set {
        if is_set && !allowed.contains(&k) {
            return Err(Problem::new(format!(
                "mount option {k} is not allowed for type={}",
                kind.as_str()
            ))
            .at(k));
        }
    }
    Ok(())
}
