//! `box info`'s rows: the kernel probe of `crate::run::probe` (namespaces, overlay, fuse)
//! plus the host checks that need no fork (cgroup delegation, seccomp, pasta and slirp4netns,
//! subordinate ids, AppArmor), each failing one with the exact command that fixes it here.
//! The fixes live in one place so docs/rootless.md and the error strings can point to it.

use std::path::PathBuf;

use crate::run::probe::{CHECKS, Probe};

/// One line of `box info`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Row {
    pub name: String,
    pub ok: bool,
    /// What was checked.
    pub what: String,
    /// What failed (empty when ok), or a note.
    pub detail: String,
    /// The command or step that makes a failing check pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn row(name: &str, ok: bool, what: &str, detail: String, fix: Option<String>) -> Row {
    Row {
        name: name.into(),
        ok,
        what: what.into(),
        detail,
        fix: if ok { None } else { fix },
    }
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "$USER".into())
}

/// A program in PATH or the sbin directories (an unprivileged user's PATH often lacks them).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether Ubuntu's AppArmor restriction on unprivileged user namespaces is on.
fn apparmor_restricts() -> bool {
    read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
}

/// The profile that lets boxkit's binaries make user namespaces under that restriction.
fn apparmor_fix() -> String {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_else(|| "/usr/local/bin".into());
    format!(
        "printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile boxkit {dir}/{{box,boxbuild,boxrun}} \
         flags=(unconfined) {{\\n  userns,\\n}}\\n' | sudo tee /etc/apparmor.d/boxkit && sudo \
         apparmor_parser -r /etc/apparmor.d/boxkit (see docs/rootless.md)"
    )
}

/// The fix of a failed namespace check, from what failed.
fn namespace_fix(name: &str, detail: &str) -> Option<String> {
    if detail.starts_with("not tried") {
        return None;
    }
    let fix = match name {
        "user-namespace" | "mount-namespace" | "tmpfs" | "uts-namespace"
            if apparmor_restricts() =>
        {
            apparmor_fix()
        }
        "user-namespace" if detail.contains("ENOSPC") => {
            "sudo sysctl -w user.max_user_namespaces=28633 (in a job container: the runtime set \
             it to 0; allow user namespaces there)"
                .into()
        }
        "user-namespace"
            if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") =>
        {
            "sudo sysctl -w kernel.unprivileged_userns_clone=1".into()
        }
        "overlay" => "use a kernel >= 5.11 (unprivileged overlayfs); meanwhile boxkit uses \
                      fuse-overlayfs or copies"
            .into(),
        "fuse-overlayfs" if detail.contains("/dev/fuse") => {
            "in a job container: run it with --device /dev/fuse; on a host: sudo modprobe fuse"
                .into()
        }
        "fuse-overlayfs" => {
            "sudo apt-get install fuse-overlayfs (Debian/Ubuntu) or sudo dnf install \
             fuse-overlayfs (Fedora)"
                .into()
        }
        _ => "in a job container: run it with --security-opt seccomp=unconfined (docker) or \
              podman's default profile, which allow unshare and mount"
            .into(),
    };
    Some(fix)
}

/// The probe's namespace and fuse checks as rows.
fn probe_rows(p: &Probe) -> Vec<Row> {
    p.checks
        .iter()
        .map(|c| {
            let what = CHECKS
                .iter()
                .find(|(n, _)| *n == c.name)
                .map_or("open /dev/fuse, fuse-overlayfs in PATH", |(_, w)| *w);
            row(
                c.name,
                c.ok,
                what,
                c.detail.clone(),
                namespace_fix(c.name, &c.detail),
            )
        })
        .collect()
}

fn subid_row(p: &Probe) -> Row {
    let what = "a subordinate id range in /etc/subuid and /etc/subgid";
    match p.subordinate_ids {
        // Root in a job container without a range: the job's own ids, mapped as they are.
        Some((0, count)) => row(
            "subordinate-ids",
            true,
            what,
            format!(
                "none: the job's own ids 0-{} (identity, in a job container)",
                count - 1
            ),
            None,
        ),
        Some((start, count)) => row(
            "subordinate-ids",
            true,
            what,
            format!("/etc/subuid: {count} ids from {start}"),
            None,
        ),
        None => row(
            "subordinate-ids",
            false,
            what,
            "no /etc/subuid range: only the caller's own id is mapped".into(),
            Some(crate::run::subid_hint::usermod_fix(&user())),
        ),
    }
}

fn cgroups_row() -> Row {
    let mut limits = crate::run::spec::Limits {
        memory: Some(64 << 20),
        pids: Some(64),
        ..Default::default()
    };
    limits.set_cpus(1.0);
    let r = crate::run::cgroups::check(&limits);
    let fix = if nix::unistd::geteuid().is_root() {
        "in a job container: give it a writable cgroup (podman/docker --cgroupns=private with \
         cgroup v2)"
            .to_string()
    } else {
        "sudo mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu \
         cpuset io memory pids\\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf \
         && sudo systemctl daemon-reload, then log in again (see docs/rootless.md)"
            .to_string()
    };
    row(
        "cgroups",
        r.is_ok(),
        "a writable cgroup with memory, pids and cpu (--memory, --pids-limit, --cpus)",
        r.err().map(|e| e.to_string()).unwrap_or_default(),
        Some(fix),
    )
}

fn seccomp_row() -> Row {
    let avail = read("/proc/sys/kernel/seccomp/actions_avail");
    let ok = avail.as_deref().is_some_and(|a| a.contains("errno"));
    let detail = match &avail {
        None => "no /proc/sys/kernel/seccomp: the kernel has no seccomp filters".into(),
        Some(a) if !ok => format!("actions available: {a}"),
        Some(_) => String::new(),
    };
    row(
        "seccomp",
        ok,
        "seccomp filters (the default profile of every container)",
        detail,
        Some("use a kernel built with CONFIG_SECCOMP_FILTER=y".into()),
    )
}

fn helper_row(name: &str, package: &str) -> Row {
    let found = find_tool(name);
    row(
        name,
        found.is_some(),
        "user-mode network for rootless containers (pasta is preferred)",
        found.map_or_else(
            || "not in PATH, /usr/sbin or /sbin".into(),
            |p| p.display().to_string(),
        ),
        Some(format!(
            "sudo apt-get install {package} (Debian/Ubuntu) or sudo dnf install {package} (Fedora)"
        )),
    )
}

fn apparmor_row(p: &Probe) -> Row {
    let restricts = apparmor_restricts();
    let ns_ok = p.ok("user-namespace") && p.ok("mount-namespace");
    let detail = match (restricts, ns_ok) {
        (false, _) => "unprivileged user namespaces are not restricted".into(),
        (true, true) => "restricted, but allowed for this program".into(),
        (true, false) => "kernel.apparmor_restrict_unprivileged_userns=1 takes the \
                          capabilities of new user namespaces away"
            .into(),
    };
    row(
        "apparmor",
        !restricts || ns_ok,
        "AppArmor allows unprivileged user namespaces (Ubuntu 23.10+)",
        detail,
        Some(apparmor_fix()),
    )
}

/// Every row of `box info`, in the order printed.
pub fn rows(p: &Probe) -> Vec<Row> {
    let mut rows = probe_rows(p);
    rows.push(subid_row(p));
    rows.push(cgroups_row());
    rows.push(seccomp_row());
    rows.push(helper_row("pasta", "passt"));
    rows.push(helper_row("slirp4netns", "slirp4netns"));
    rows.push(apparmor_row(p));
    rows
}

/// The rows as text: `name yes|no what[: detail]`, and under a failing one `fix: …`.
pub fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let state = if r.ok { "yes" } else { "no " };
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", r.detail)
        };
        s.push_str(&format!("  {:<20} {state}   {}{detail}\n", r.name, r.what));
        if let Some(fix) = &r.fix {
            s.push_str(&format!("  {:<20}       fix: {fix}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_row_carries_its_fix_and_a_passing_one_none() {
        let p = crate::run::probe::with_failing(&["fuse-overlayfs"]);
        let rows = probe_rows(&p);
        let fuse = rows.iter().find(|r| r.name == "fuse-overlayfs").unwrap();
        assert!(fuse.fix.as_deref().unwrap().contains("fuse-overlayfs"));
        assert!(rows.iter().filter(|r| r.ok).all(|r| r.fix.is_none()));
        let text = render(&rows);
        assert!(
            text.contains("\n                             fix: "),
            "{text}"
        );
    }
}
