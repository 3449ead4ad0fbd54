//! Platforms (`os/arch[/variant]`) and picking one from an image index.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::null_default;

/// A platform: what `--platform` names, and a descriptor's `platform` object. Fields boxkit
/// does not use (`os.version`, `os.features`, ...) are kept in `extra`, declared where they
/// sort, so an entry with sorted keys serialises as it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(rename = "architecture", default, deserialize_with = "null_default")]
    pub arch: String,
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform this binary runs on, in OCI terms (Go's GOOS/GOARCH names).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
            extra: BTreeMap::new(),
        }
    }

    /// `linux/arm64`, `linux/arm/v7`; `arm64` alone means linux.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad =
            || format!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64");
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(*v)),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() || variant.is_some_and(str::is_empty) {
            return Err(bad());
        }
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Ok(Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: variant.map(str::to_string),
            extra: BTreeMap::new(),
        })
    }

    /// What a descriptor's (or config's) platform says for matching: os, architecture and a
    /// non-empty variant; `None` if it names no os or architecture (such an index entry says
    /// nothing about where it runs).
    pub fn known(&self) -> Option<Platform> {
        if self.os.is_empty() || self.arch.is_empty() {
            return None;
        }
        Some(Platform {
            os: self.os.clone(),
            arch: self.arch.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
            extra: BTreeMap::new(),
        })
    }

    /// Whether an image for `other` runs here when `self` was asked for. A missing variant on
    /// either side matches (arm64 is v8 unless it says otherwise).
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.arch != other.arch {
            return false;
        }
        let norm = |p: &Platform| match (p.arch.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        match (&self.variant, &other.variant) {
            (None, _) | (_, None) => true,
            _ => norm(self) == norm(other),
        }
    }
}

/// Index position of the entry for `want` among `platforms` (exact variant preferred).
pub fn pick(want: &Platform, platforms: &[Option<Platform>]) -> Option<usize> {
    let exact = platforms
        .iter()
        .position(|p| p.as_ref().is_some_and(|p| p == want));
    exact.or_else(|| {
        platforms
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| want.matches(p)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64/v8");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert!(Platform::parse("a/b/c/d").is_err());
        assert!(Platform::parse("linux/").is_err());
    }

    #[test]
    fn picks_by_os_arch_and_variant() {
        let list = vec![
            Some(p("linux/amd64")),
            Some(p("linux/arm/v6")),
            Some(p("linux/arm/v7")),
            Some(p("linux/arm64/v8")),
            None,
        ];
        assert_eq!(pick(&p("linux/amd64"), &list), Some(0));
        assert_eq!(pick(&p("linux/arm64"), &list), Some(3));
        assert_eq!(pick(&p("linux/arm/v7"), &list), Some(2));
        assert_eq!(pick(&p("linux/s390x"), &list), None);
        assert_eq!(pick(&p("windows/amd64"), &list), None);
    }

    #[test]
    fn a_descriptor_platform_round_trips_with_fields_boxkit_does_not_use() {
        let text =
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763","variant":""}"#;
        let pl: Platform = serde_json::from_str(text).unwrap();
        assert_eq!(pl.known(), Some(p("windows/amd64")));
        assert_eq!(serde_json::to_string(&pl).unwrap(), text);
        let empty: Platform = serde_json::from_str(r#"{"os":null}"#).unwrap();
        assert!(empty.known().is_none());
    }

    #[test]
    fn host_is_a_known_platform() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert!(!h.arch.is_empty());
    }
}
