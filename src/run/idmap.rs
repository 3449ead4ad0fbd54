//! User and group id maps for the tool's user namespace.
//!
//! A new user namespace starts with no ids mapped; a process in its parent namespace writes
//! `/proc/PID/uid_map` and `gid_map` once ("inside outside count" lines). An unprivileged
//! writer may only map its own id, and only after writing `deny` to `/proc/PID/setgroups`;
//! wider maps go through the setuid helpers `newuidmap`/`newgidmap`, which check the caller's
//! ranges in `/etc/subuid` and `/etc/subgid`. Root may write any map directly (cheaper than
//! running the helpers), but boxkit still maps root onto a subordinate range so container root
//! is never host root.
//!
//! Root's tool namespace maps more than the container range: besides container ids
//! 0…65535 → the subordinate range, every other host id is mapped too (above the container
//! range), so the tool process — "root" of that namespace — keeps root's access to the store,
//! the build context and bind-mount sources. The container itself then gets a *nested* user
//! namespace that maps only the container range (see [`IdMaps::container_maps`]), so container
//! root has no power over host files.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IdmapError {
    #[error("write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("run {tool} {args}: {cause}")]
    Helper {
        tool: &'static str,
        args: String,
        cause: String,
    },
    #[error(
        "root has no subordinate id range for user namespace remapping (container root must \
         not be host root): add one with `usermod --add-subuids 2000000-2065535 \
         --add-subgids 2000000-2065535 root` (or give a `boxkit` user a range), or pass \
         --userns=host"
    )]
    RootWithoutRange,
}

pub type Result<T> = std::result::Result<T, IdmapError>;

/// One line of an id map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of one user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// Only the caller's own ids are mapped (no subordinate range).
    pub single: bool,
    /// The maps must be written by newuidmap/newgidmap (unprivileged caller with a range).
    pub needs_helpers: bool,
    /// Namespace ids `0..container` are the container's; ids above it (root only) are host
    /// ids mapped for the tool's own use.
    pub container: u32,
}

impl IdMaps {
    /// Host uid that container root maps to.
    pub fn root_uid(&self) -> u32 {
        self.uids[0].outside
    }
    pub fn root_gid(&self) -> u32 {
        self.gids[0].outside
    }

    /// The maps of the nested user namespace a container needs when the tool namespace maps
    /// more than the container range (root): identity over `0..container`. `None` when the
    /// container can share the tool's namespace.
    pub fn container_maps(&self) -> Option<IdMaps> {
        let mapped: u64 = self.uids.iter().map(|r| r.count as u64).sum();
        if mapped <= self.container as u64 {
            return None;
        }
        let identity = vec![IdRange {
            inside: 0,
            outside: 0,
            count: self.container,
        }];
        Some(IdMaps {
            uids: identity.clone(),
            gids: identity,
            single: false,
            needs_helpers: false,
            container: self.container,
        })
    }
}

/// For root: container ids `0..count` → `start…`, and every other host id above them, so that
/// the namespace's root can still reach all host files. No range overlaps on either side.
fn root_ranges(start: u32, count: u32) -> Vec<IdRange> {
    let mut v = vec![IdRange {
        inside: 0,
        outside: start,
        count,
    }];
    if start > 0 {
        // Host ids below the subordinate range (host root among them).
        v.push(IdRange {
            inside: count,
            outside: 0,
            count: start,
        });
    }
    let above = start as u64 + count as u64;
    if above < u32::MAX as u64 {
        // Host ids above it, up to (not including) the invalid id 4294967295.
        v.push(IdRange {
            inside: count + start,
            outside: above as u32,
            count: (u32::MAX as u64 - above) as u32,
        });
    }
    v
}

/// How many subordinate ids container ids 1… get at most (docker and podman use 65536).
pub const MAX_SUB_IDS: u32 = 65536;

/// Parse `/etc/subuid`-format text and return the first range of `user` (name or uid).
pub fn find_range(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let ids = id.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != ids {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok()?))
        })
}

fn read_range(file: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let text = crate::procfs::read(file).ok()?;
    find_range(&text, name, id)
}

/// Decide the maps for the calling user, from the subordinate-id files' contents.
/// `subuid`/`subgid` are the caller's ranges (for root: the entry of "root" or "boxkit").
pub fn plan(
    uid: u32,
    gid: u32,
    subuid: Option<(u32, u32)>,
    subgid: Option<(u32, u32)>,
) -> Result<IdMaps> {
    let both = subuid
        .zip(subgid)
        .filter(|((_, a), (_, b))| *a > 0 && *b > 0);
    if uid == 0 {
        // Root: the whole container range (0 included) lands in the subordinate range.
        let ((us, uc), (gs, gc)) = both.ok_or(IdmapError::RootWithoutRange)?;
        let count = uc.min(gc).min(MAX_SUB_IDS);
        return Ok(IdMaps {
            uids: root_ranges(us, count),
            gids: root_ranges(gs, count),
            single: false,
            needs_helpers: false,
            container: count,
        });
    }
    let own = |id| IdRange {
        inside: 0,
        outside: id,
        count: 1,
    };
    match both {
        Some(((us, uc), (gs, gc))) => Ok(IdMaps {
            uids: vec![
                own(uid),
                IdRange {
                    inside: 1,
                    outside: us,
                    count: uc.min(MAX_SUB_IDS),
                },
            ],
            gids: vec![
                own(gid),
                IdRange {
                    inside: 1,
                    outside: gs,
                    count: gc.min(MAX_SUB_IDS),
                },
            ],
            single: false,
            needs_helpers: true,
            container: 1 + uc.min(gc).min(MAX_SUB_IDS),
        }),
        None => Ok(IdMaps {
            uids: vec![own(uid)],
            gids: vec![own(gid)],
            single: true,
            needs_helpers: false,
            container: 1,
        }),
    }
}

/// The caller's maps, reading /etc/subuid and /etc/subgid.
pub fn plan_for_current_user() -> Result<(IdMaps, String)> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    // Root needs no lookup (and the NSS round trip is a measurable part of a container
    // start); other users are looked up through NSS, as /etc/subuid names them.
    let name = if uid == 0 {
        "root".to_string()
    } else {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string())
    };
    let names: &[&str] = if uid == 0 {
        &["root", "boxkit"]
    } else {
        &[name.as_str()]
    };
    let pick = |file: &str| names.iter().find_map(|n| read_range(file, n, uid));
    let maps = match plan(uid, gid, pick("/etc/subuid"), pick("/etc/subgid")) {
        Err(IdmapError::RootWithoutRange) if in_job_container() => job_identity()?,
        r => r?,
    };
    Ok((maps, name))
}

/// Whether this process runs in a container (a CI job): podman's `/run/.containerenv`,
/// docker's `/.dockerenv`, the `container` variable podman and systemd-nspawn set, or a
/// Kubernetes pod's service variables. Looked at once per process: a start asks twice (the
/// kept probe's key, read ahead, and the isolation choice), and none of it changes meanwhile.
pub fn in_job_container() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        Path::new("/run/.containerenv").exists()
            || Path::new("/.dockerenv").exists()
            || std::env::var_os("container").is_some()
            || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
    })
}

/// Root in a job container with no subordinate range: the container range maps onto the
/// job's own ids 0…65535 (identity), as kaniko's steps run as the job's ids. The job
/// container is then the isolation boundary; this is said once, as a warning.
fn job_identity() -> Result<IdMaps> {
    let mapped = |f: &str| -> u32 {
        // The ids this namespace has from 0 on (all of them outside any user namespace).
        let text = std::fs::read_to_string(f).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 3 && v[0] == 0).then(|| v[2].min(u64::from(u32::MAX)) as u32)
            })
            .next()
            .unwrap_or(0)
    };
    let count = mapped("/proc/self/uid_map")
        .min(mapped("/proc/self/gid_map"))
        .min(MAX_SUB_IDS);
    if count < 2 {
        return Err(IdmapError::RootWithoutRange);
    }
    eprintln!(
        "boxkit: warning: root has no subordinate id range in this job container: image ids \
         map to the job's own ids 0-{} (not remapped); the job container is the isolation \
         boundary",
        count - 1
    );
    let identity = vec![IdRange {
        inside: 0,
        outside: 0,
        count,
    }];
    Ok(IdMaps {
        uids: identity.clone(),
        gids: identity,
        single: false,
        needs_helpers: false,
        container: count,
    })
}

/// The one warning an unprivileged user without a subordinate range gets.
pub fn single_mapping_warning(user: &str) -> String {
    format!(
        "warning: user {user} has no subordinate id range in /etc/subuid and /etc/subgid; only \
         container root is mapped (to your own uid), so files of other owners show as root's \
         (their owners are kept in an xattr and chown is emulated) and nothing can run as \
         another user. Fix: {}",
        super::subid_hint::usermod_fix(user)
    )
}

fn map_text(r: &[IdRange]) -> String {
    r.iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// Writes maps for a process; behind a trait so the choice of writer is testable.
pub trait MapWriter {
    fn write_file(&mut self, path: &Path, text: &str) -> Result<()>;
    /// Run the setuid helpers (`newuidmap`, `newgidmap`) with these arguments; they are
    /// independent, so a real writer runs them at the same time.
    fn helpers(&mut self, calls: &[(&'static str, Vec<String>)]) -> Result<()>;
}

pub struct RealWriter;

impl MapWriter for RealWriter {
    fn write_file(&mut self, path: &Path, text: &str) -> Result<()> {
        std::fs::write(path, text).map_err(|cause| IdmapError::Write {
            path: path.to_path_buf(),
            cause,
        })
    }
    fn helpers(&mut self, calls: &[(&'static str, Vec<String>)]) -> Result<()> {
        let fail = |tool: &'static str, args: &[String], cause: String| IdmapError::Helper {
            tool,
            args: args.join(" "),
            cause,
        };
        let children = calls
            .iter()
            .map(|(tool, args)| {
                Command::new(tool)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| fail(tool, args, e.to_string()))
            })
            .collect::<Vec<_>>();
        let mut first_err = None;
        for ((tool, args), child) in calls.iter().zip(children) {
            let r = child.and_then(|c| {
                let out = c
                    .wait_with_output()
                    .map_err(|e| fail(tool, args, e.to_string()))?;
                if out.status.success() {
                    Ok(())
                } else {
                    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    Err(fail(tool, args, msg))
                }
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Install `maps` for process `pid` (which has just unshared its user namespace).
pub fn write_maps(pid: i32, maps: &IdMaps, w: &mut impl MapWriter) -> Result<()> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if maps.needs_helpers {
        let args = |r: &[IdRange]| {
            std::iter::once(pid.to_string())
                .chain(r.iter().flat_map(|r| {
                    [r.inside, r.outside, r.count]
                        .into_iter()
                        .map(|n| n.to_string())
                }))
                .collect::<Vec<_>>()
        };
        w.helpers(&[
            ("newuidmap", args(&maps.uids)),
            ("newgidmap", args(&maps.gids)),
        ])?;
        return Ok(());
    }
    for (file, text) in map_files(maps) {
        w.write_file(&proc.join(file), &text)?;
    }
    Ok(())
}

/// What installing `maps` directly (without the setuid helpers) writes, in order: each file
/// of `/proc/PID/` with its text.
pub fn map_files(maps: &IdMaps) -> Vec<(&'static str, String)> {
    let mut files = vec![("uid_map", map_text(&maps.uids))];
    if maps.single {
        // An unprivileged gid_map write is refused until setgroups is denied.
        files.push(("setgroups", "deny".to_string()));
    }
    files.push(("gid_map", map_text(&maps.gids)));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<String>);
    impl MapWriter for Rec {
        fn write_file(&mut self, path: &Path, text: &str) -> Result<()> {
            self.0
                .push(format!("{} <- {}", path.display(), text.trim()));
            Ok(())
        }
        fn helpers(&mut self, calls: &[(&'static str, Vec<String>)]) -> Result<()> {
            for (tool, args) in calls {
                self.0.push(format!("{tool} {}", args.join(" ")));
            }
            Ok(())
        }
    }

    #[test]
    fn subid_lines_parse() {
        let t = "# c\nalice:100000:65536\n1001:200000:1000\n";
        assert_eq!(find_range(t, "alice", 1000), Some((100000, 65536)));
        assert_eq!(find_range(t, "bob", 1001), Some((200000, 1000)));
        assert_eq!(find_range(t, "carol", 1002), None);
    }

    #[test]
    fn unprivileged_with_range_uses_helpers() {
        let m = plan(1000, 1000, Some((100000, 65536)), Some((100000, 65536))).unwrap();
        let mut r = Rec::default();
        write_maps(42, &m, &mut r).unwrap();
        assert_eq!(
            r.0,
            [
                "newuidmap 42 0 1000 1 1 100000 65536",
                "newgidmap 42 0 1000 1 1 100000 65536"
            ]
        );
    }

    #[test]
    fn unprivileged_without_range_maps_itself_and_denies_setgroups() {
        let m = plan(1000, 1000, None, None).unwrap();
        assert!(m.single);
        let mut r = Rec::default();
        write_maps(42, &m, &mut r).unwrap();
        assert_eq!(
            r.0,
            [
                "/proc/42/uid_map <- 0 1000 1",
                "/proc/42/setgroups <- deny",
                "/proc/42/gid_map <- 0 1000 1"
            ]
        );
    }

    #[test]
    fn root_is_remapped_and_never_maps_to_host_root() {
        let m = plan(0, 0, Some((2000000, 65536)), Some((2000000, 65536))).unwrap();
        assert_eq!(m.root_uid(), 2000000);
        let mut r = Rec::default();
        write_maps(7, &m, &mut r).unwrap();
        assert_eq!(
            r.0,
            [
                "/proc/7/uid_map <- 0 2000000 65536\n65536 0 2000000\n2065536 2065536 4292901759",
                "/proc/7/gid_map <- 0 2000000 65536\n65536 0 2000000\n2065536 2065536 4292901759"
            ]
        );
        // The container gets a nested namespace with only the container range.
        let nested = m.container_maps().unwrap();
        assert_eq!(
            nested.uids,
            [IdRange {
                inside: 0,
                outside: 0,
                count: 65536
            }]
        );
        // Every host id appears at most once on each side.
        let mut outs: Vec<(u64, u64)> = m
            .uids
            .iter()
            .map(|r| (r.outside as u64, r.outside as u64 + r.count as u64))
            .collect();
        outs.sort();
        assert!(outs.windows(2).all(|w| w[0].1 <= w[1].0));
        assert_eq!(outs.last().unwrap().1, u32::MAX as u64);
        assert!(matches!(
            plan(0, 0, None, None),
            Err(IdmapError::RootWithoutRange)
        ));
    }
}
