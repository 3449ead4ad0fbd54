//! Limits on what untrusted input may make boxkit read, store or hold: one typed place, with
//! defaults, each overridable by an environment variable.
//!
//! | limit | default | variable |
//! | --- | --- | --- |
//! | image config blob (pull, `box load`) | 4 MiB | `BOX_MAX_CONFIG_SIZE` |
//! | one `ADD <url>` download | 8 GiB | `BOX_MAX_DOWNLOAD_SIZE` |
//! | one layer, uncompressed | 64 GiB | `BOX_MAX_LAYER_SIZE` |
//! | idle time of a UDP flow through the port proxy | 90 s | `BOX_UDP_FLOW_TIMEOUT` |
//! | UDP flows per published port | 1024 | `BOX_UDP_MAX_FLOWS` |
//!
//! Why these values:
//! - **Config, 4 MiB**: containers/image (podman, skopeo, buildah, CRI-O) reads image configs
//!   through `iolimits.ReadAtMost(…, MaxConfigBodySize)` with `MaxConfigBodySize = 4 MiB`
//!   (`internal/iolimits/iolimits.go`, made for CVE-2020-1702), so an image those tools accept
//!   we accept too. containerd caps manifests at about the same (`MaxManifestSize`,
//!   4·1048·1048 bytes, in `core/remotes/docker/resolver.go`); boxkit's own manifest cap is
//!   4 MiB (`registry::client`). A config is parsed as one JSON document in memory, so the cap
//!   bounds memory, not just disk. Real configs are a few KiB; long histories stay far below.
//! - **Download, 8 GiB**: docker and BuildKit put no cap on `ADD <url>`; an endless response
//!   then fills the disk. 8 GiB is above the largest archives people fetch in builds (vendor
//!   SDK and driver bundles of a few GiB) while an endless or hostile stream stops long before
//!   a typical builder's disk is full.
//! - **Layer, 64 GiB uncompressed**: neither docker nor containerd caps the uncompressed size
//!   of a layer, so a small gzip or zstd "bomb" expands until the disk is full. gzip expands at
//!   most ~1000:1 and zstd far more, so the cap must be on the output, not the ratio. 64 GiB is
//!   above the biggest legitimate layers (ML images with model weights reach tens of GiB)
//!   and still stops a bomb before it fills a large disk. The extractor counts decompressed
//!   bytes against it.
//! - **UDP flows**: docker-proxy forgets a UDP client after 90 s without traffic
//!   (`UDPConnTrackTimeout`) and has no cap on flows; boxkit uses the same timeout and adds a
//!   cap so that many source ports cannot exhaust the proxy's descriptors (the least recently
//!   used flow makes room for a new one).
//!
//! Sizes take docker's suffixes (`512k`, `64m`, `8g`, `1t`, optionally followed by `b`);
//! durations are seconds or take `ms`, `s` or `m`. An empty variable means the default; an
//! unreadable one is an error naming the variable, never silently the default.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("{var}={value:?}: {why}")]
    Invalid {
        var: &'static str,
        value: String,
        why: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, LimitsError>;

pub const MAX_CONFIG_SIZE_VAR: &str = "BOX_MAX_CONFIG_SIZE";
pub const MAX_DOWNLOAD_SIZE_VAR: &str = "BOX_MAX_DOWNLOAD_SIZE";
pub const MAX_LAYER_SIZE_VAR: &str = "BOX_MAX_LAYER_SIZE";
pub const UDP_FLOW_TIMEOUT_VAR: &str = "BOX_UDP_FLOW_TIMEOUT";
pub const UDP_MAX_FLOWS_VAR: &str = "BOX_UDP_MAX_FLOWS";

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The limits in force. [`Limits::DEFAULT`] documents the defaults; [`Limits::from_env`]
/// applies the environment's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one image config blob (registry pull, `box load`).
    pub max_config_size: u64,
    /// Bytes of one `ADD <url>` download.
    pub max_download_size: u64,
    /// Uncompressed bytes of one layer (its tar stream after decompression).
    pub max_layer_size: u64,
    /// A UDP client that sent nothing and got nothing for this long is forgotten.
    pub udp_flow_timeout: Duration,
    /// UDP clients tracked at once per published port.
    pub udp_max_flows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_config_size: 4 * MIB,
        max_download_size: 8 * GIB,
        max_layer_size: 64 * GIB,
        udp_flow_timeout: Duration::from_secs(90),
        udp_max_flows: 1024,
    };

    /// The defaults with this process's environment applied.
    pub fn from_env() -> Result<Limits> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The defaults with the overrides `lookup` gives (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Limits> {
        let mut l = Self::DEFAULT;
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let bad = |var, value: &str, why| LimitsError::Invalid {
            var,
            value: value.to_string(),
            why,
        };
        let size = |var: &'static str, into: &mut u64| -> Result<()> {
            if let Some(v) = get(var) {
                *into = parse_size(&v).filter(|n| *n > 0).ok_or_else(|| {
                    bad(var, &v, "expected a size above 0 such as 512k, 64m or 8g")
                })?;
            }
            Ok(())
        };
        size(MAX_CONFIG_SIZE_VAR, &mut l.max_config_size)?;
        size(MAX_DOWNLOAD_SIZE_VAR, &mut l.max_download_size)?;
        size(MAX_LAYER_SIZE_VAR, &mut l.max_layer_size)?;
        if let Some(v) = get(UDP_FLOW_TIMEOUT_VAR) {
            l.udp_flow_timeout = parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                bad(
                    UDP_FLOW_TIMEOUT_VAR,
                    &v,
                    "expected a duration above 0 such as 90, 90s, 500ms or 2m",
                )
            })?;
        }
        if let Some(v) = get(UDP_MAX_FLOWS_VAR) {
            l.udp_max_flows = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(UDP_MAX_FLOWS_VAR, &v, "expected a whole number above 0"))?;
        }
        Ok(l)
    }
}

/// Parse docker's sizes: `32m`, `1g`, `512k`, `1048576`, `64mb` (binary multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parse `90` (seconds), `90s`, `500ms` or `2m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(m) = t.strip_suffix('m') {
        return m
            .parse::<u64>()
            .ok()?
            .checked_mul(60)
            .map(Duration::from_secs);
    }
    t.strip_suffix('s')
        .unwrap_or(&t)
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// A size for messages: `4 MiB`, `1.5 GiB`, `300 bytes`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (GIB, "GiB"),
        (MIB, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (u, name) in UNITS {
        if bytes >= u {
            let whole = bytes / u;
            let tenth = (bytes % u) * 10 / u;
            return if tenth == 0 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenth} {name}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Limits> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Limits::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_apply_without_overrides() {
        assert_eq!(with(&[]).unwrap(), Limits::DEFAULT);
        assert_eq!(
            with(&[(MAX_CONFIG_SIZE_VAR, " ")]).unwrap(),
            Limits::DEFAULT
        );
        assert_eq!(Limits::DEFAULT.max_config_size, 4 << 20);
        assert_eq!(Limits::DEFAULT.udp_flow_timeout, Duration::from_secs(90));
    }

    #[test]
    fn the_environment_overrides_each_limit() {
        let l = with(&[
            (MAX_CONFIG_SIZE_VAR, "8m"),
            (MAX_DOWNLOAD_SIZE_VAR, "512k"),
            (MAX_LAYER_SIZE_VAR, "1G"),
            (UDP_FLOW_TIMEOUT_VAR, "500ms"),
            (UDP_MAX_FLOWS_VAR, "16"),
        ])
        .unwrap();
        assert_eq!(l.max_config_size, 8 << 20);
        assert_eq!(l.max_download_size, 512 << 10);
        assert_eq!(l.max_layer_size, 1 << 30);
        assert_eq!(l.udp_flow_timeout, Duration::from_millis(500));
        assert_eq!(l.udp_max_flows, 16);
    }

    #[test]
    fn an_unreadable_value_is_an_error_naming_the_variable() {
        for (var, v) in [
            (MAX_CONFIG_SIZE_VAR, "lots"),
            (MAX_DOWNLOAD_SIZE_VAR, "0"),
            (MAX_LAYER_SIZE_VAR, "-1"),
            (UDP_FLOW_TIMEOUT_VAR, "soon"),
            (UDP_FLOW_TIMEOUT_VAR, "0s"),
            (UDP_MAX_FLOWS_VAR, "0"),
        ] {
            let e = with(&[(var, v)]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{var}=")), "{e}");
        }
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("64mb"), Some(64 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("99999999999t"), None);
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(300), "300 bytes");
    }
}
