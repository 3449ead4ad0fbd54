//! CVE-2023-28642: /proc (or a masked path) replaced by a symlink in the image.
//!
//! runc mounted procfs on whatever the image's `/proc` pointed at, so an image whose `/proc`
//! was a symlink got procfs (and the masks over /proc/kcore and friends) somewhere else —
//! outside the paths an LSM profile confined. boxkit resolves every mount target inside the
//! container's root with openat2(RESOLVE_IN_ROOT), and the kernel filesystems (/proc, /sys,
//! /dev) refuse a symlink anywhere in their path, as runc does since the fix: such an image
//! fails with a clear error, never mounts outside its root, and never creates anything on the
//! host. An image whose `/etc` points at a host directory still gets its generated /etc files
//! inside its own root.

use crate::build_common::{Env, Who, stderr, stdout};
use crate::support::{Canary, assert_store_owners, boxrun, hostile_image};

fn symlink_image(env: &Env, name: &str, path: &str, target: &str) -> String {
    hostile_image(
        env,
        name,
        serde_json::json!({
            "base": "busybox",
            "layers": [[{"name": path, "type": "symlink", "link": target}]],
        }),
    )
}

fn whos() -> Vec<Who> {
    let Some(root) = Who::root() else {
        return vec![];
    };
    vec![root, Who::with_range().unwrap()]
}

#[test]
fn a_kernel_filesystem_mount_point_that_is_a_symlink_is_refused_and_nothing_lands_outside() {
    for who in whos() {
        let env = Env::with_registry(who.clone());
        let canary = Canary::plant_writable();
        let c = canary.dir.display().to_string();
        let cases = [
            ("proc", "/".to_string()),
            ("proc", "/tmp".to_string()),
            ("proc", "/etc".to_string()),
            // Missing on the host: a resolution against the host would create it there.
            ("proc", format!("{c}/proc-here")),
            ("dev", format!("{c}/dev-here")),
            ("sys", format!("{c}/sys-here")),
        ];
        for (i, (path, target)) in cases.iter().enumerate() {
            let img = symlink_image(&env, &format!("procsym{i}"), path, target);
            let o = boxrun(
                &env,
                &["--rm", &img, "sh", "-c", "head -1 /proc/1/status; ls /dev"],
            );
            let what = format!("{}: image /{path} -> {target}", who.label());
            assert_eq!(
                o.status.code(),
                Some(125),
                "{what}: must be refused; stdout {} stderr {}",
                stdout(&o),
                stderr(&o)
            );
            let err = stderr(&o);
            assert!(
                err.contains(&format!("/{path}")) && err.contains("symlink"),
                "{what}: the error names the path and the reason: {err}"
            );
            canary.assert_untouched();
        }
        assert_store_owners(&env);
    }
}

#[test]
fn generated_etc_files_follow_an_etc_symlink_only_inside_the_root() {
    for who in whos() {
        let env = Env::with_registry(who.clone());
        let canary = Canary::plant_writable();
        let target = canary.dir.display().to_string();
        let img = symlink_image(&env, "etcsym", "etc", &target);
        // /etc -> <host canary dir>: inside the container that is <root><canary dir>, which
        // the generated hostname, hosts and resolv.conf are created in.
        let o = boxrun(
            &env,
            &[
                "--rm",
                "--hostname",
                "etc-inside",
                &img,
                "sh",
                "-c",
                "cat /etc/hostname; ls /etc",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}: {}", who.label(), stderr(&o));
        let out = stdout(&o);
        assert!(
            out.starts_with("etc-inside\n") && out.contains("hosts") && out.contains("resolv.conf"),
            "{}: {out}",
            who.label()
        );
        canary.assert_untouched();
        assert_store_owners(&env);
    }
}
