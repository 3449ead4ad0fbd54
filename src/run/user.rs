//! Resolving `USER` against the image's own /etc/passwd and /etc/group.
//!
//! Docker's rule: `name|uid[:group|gid]`; names must exist in the image's files, numeric ids
//! need not. The primary group defaults to the passwd entry's (0 for unknown uids), HOME to
//! the passwd entry's directory (or `/`), and supplementary groups are the image's groups
//! that list the user by name. Pure text processing, so it is tested without a kernel.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

pub type Result<T> = std::result::Result<T, UserError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
    pub name: Option<String>,
}

/// Resolve `spec` (None = root) against the contents of /etc/passwd and /etc/group.
pub fn resolve(
    spec: Option<&str>,
    extra: &[String],
    passwd: &str,
    group: &str,
) -> Result<Resolved> {
    let spec = spec.filter(|s| !s.is_empty()).unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = match u.parse::<u32>() {
        Ok(n) => pw.iter().find(|f| f[2].parse() == Ok(n)),
        Err(_) => Some(
            pw.iter()
                .find(|f| f[0] == u)
                .ok_or_else(|| UserError::NoUser(u.to_string()))?,
        ),
    };
    let uid = entry.map_or_else(|| u.parse().unwrap_or(0), |f| f[2].parse().unwrap_or(0));
    let find_group = |g: &str| -> Result<u32> {
        match g.parse::<u32>() {
            Ok(n) => Ok(n),
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.to_string())),
        }
    };
    let gid = match g {
        Some(g) => find_group(g)?,
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0].to_string());
    let mut groups = vec![gid];
    if g.is_none()
        && let Some(n) = &name
    {
        for f in &gr {
            if f[3].split(',').any(|m| m == n)
                && let Ok(id) = f[2].parse()
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    for e in extra {
        let id = find_group(e)?;
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok(Resolved {
        uid,
        gid,
        groups,
        home: entry.map_or("/".to_string(), |f| f[5].to_string()),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GR: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\nstaff:x:50:\n";

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let r = resolve(Some("alice"), &[], PW, GR).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone(), r.home.as_str()),
            (1000, 1000, vec![1000, 10], "/home/alice")
        );
        let r = resolve(Some("4242:staff"), &[], PW, GR).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 50, "/"));
        let r = resolve(None, &["staff".into()], PW, GR).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.groups.clone(), r.home.as_str()),
            (0, 0, vec![0, 50], "/root")
        );
        assert_eq!(
            resolve(Some("bob"), &[], PW, GR),
            Err(UserError::NoUser("bob".into()))
        );
        assert_eq!(
            resolve(Some("0:nog"), &[], PW, GR),
            Err(UserError::NoGroup("nog".into()))
        );
    }
}
