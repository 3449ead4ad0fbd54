//! `--filter KEY=VALUE` for `box ps` and `box images`, with docker's rules: the same key
//! given twice matches either value, different keys must all match, and `label` filters
//! must all match.

use anyhow::bail;

/// The parsed `--filter` flags of one command.
#[derive(Debug, Default)]
pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// Parse `KEY=VALUE` flags; a key outside `supported` is an error naming the supported.
    pub fn parse(cmd: &str, flags: &[String], supported: &[&str]) -> anyhow::Result<Filters> {
        let mut pairs = vec![];
        for f in flags {
            let Some((k, v)) = f.split_once('=') else {
                bail!("bad format of filter {f:?} (expected name=value)");
            };
            let k = k.trim().to_lowercase();
            if !supported.contains(&k.as_str()) {
                bail!(
                    "invalid filter '{k}': box {cmd} supports {}",
                    supported.join(", ")
                );
            }
            pairs.push((k, v.to_string()));
        }
        Ok(Filters { pairs })
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// True when `key` was not given, or one of its values passes `ok`.
    pub fn any(&self, key: &str, ok: impl Fn(&str) -> bool) -> bool {
        let v = self.values(key);
        v.is_empty() || v.into_iter().any(ok)
    }

    /// Every `label=k` / `label=k=v` filter holds for `labels`.
    pub fn labels_match(&self, labels: &serde_json::Map<String, serde_json::Value>) -> bool {
        self.values("label")
            .into_iter()
            .all(|f| match f.split_once('=') {
                None => labels.contains_key(f),
                Some((k, v)) => labels.get(k).and_then(|x| x.as_str()) == Some(v),
            })
    }
}

/// A bool filter value, as docker reads it (`dangling=true|false|1|0`).
pub fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.to_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid filter '{key}={v}': the value must be true or false"),
    }
}

/// Go's path.Match: `*` matches any run of non-`/` characters, `?` one of them, `[...]` a
/// class. docker matches `reference=` filters this way.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some('?') => n.first().is_some_and(|c| *c != '/') && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return false;
                };
                let Some(c) = n.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_like_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*box:latest", "busybox:latest"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/*", "library/busybox"));
        assert!(glob("b?sybox", "busybox"));
        assert!(glob("[a-c]usybox", "busybox"));
        assert!(!glob("alpine", "busybox"));
    }

    #[test]
    fn unknown_key_names_the_supported_ones() {
        let e = Filters::parse("ps", &["colour=red".into()], &["status", "name"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid filter 'colour': box ps supports status, name"
        );
    }

    #[test]
    fn labels_need_all_to_match() {
        let f = Filters::parse("ps", &["label=a".into(), "label=b=2".into()], &["label"]).unwrap();
        let m: serde_json::Map<_, _> = serde_json::from_str(r#"{"a":"1","b":"2"}"#).unwrap();
        assert!(f.labels_match(&m));
        let m: serde_json::Map<_, _> = serde_json::from_str(r#"{"a":"1","b":"3"}"#).unwrap();
        assert!(!f.labels_match(&m));
    }
}
