//! ADD of a local tar: absolute and `..` member names, links out, --chown applied at creation
//! (issue item 2).
//!
//! ADD used to unpack with the tar crate and then chown `dst.join(member name)`: an absolute
//! member (`/tmp/x`) or a `../..` member made that chown change a host file. ADD archives now
//! go through the same extractor as image layers, with ownership applied as each entry is
//! created: absolute names land inside the destination (as docker does), `..` escapes and
//! links out of the layer are refused with the entry's name.

use serde_json::json;

use crate::build_common::stderr;
use crate::support::{
    Canary, assert_failed_with, assert_store_owners, boxrun, envs_with_registry, hostile_tar,
};

#[test]
fn absolute_members_land_inside_the_destination_owned_as_chown_says() {
    for env in envs_with_registry() {
        let canary = Canary::plant_for(&env.who);
        let file = canary.file.to_string_lossy().into_owned();
        hostile_tar(
            &env.ctx().join("evil.tar"),
            json!([{"name": file, "type": "file", "data": "pwned\n", "mode": 0o4755}]),
        );
        env.boxfile("FROM busybox\nADD --chown=1234:1234 evil.tar /x/\n");
        let o = env.build(&["-t", "add-abs"]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        canary.assert_untouched();
        let inside = format!("/x{file}");
        let o = boxrun(
            &env,
            &[
                "--rm",
                "--network",
                "none",
                "add-abs",
                "stat",
                "-c",
                "%u:%g %a",
                &inside,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1234:1234 4755");
        assert_store_owners(&env);
    }
}

#[test]
fn escaping_members_fail_the_build_and_touch_nothing() {
    for env in envs_with_registry() {
        let canary = Canary::plant_for(&env.who);
        let dir = canary.dir.to_string_lossy().into_owned();
        let up = format!("../../../../../../../..{}", canary.file.display());
        let cases = [
            (
                "dotdot",
                json!([{"name": up, "type": "file", "data": "pwned\n"}]),
                "`..` component",
            ),
            (
                "symlink",
                json!([
                    {"name": "l", "type": "symlink", "link": dir},
                    {"name": "l/file", "type": "file", "data": "pwned\n"}
                ]),
                "created by this same layer",
            ),
            (
                "hardlink",
                json!([{"name": "h", "type": "hardlink", "link": up}]),
                "outside the layer root",
            ),
        ];
        for (name, entries, needle) in cases {
            hostile_tar(&env.ctx().join(format!("{name}.tar")), entries);
            env.boxfile(&format!(
                "FROM busybox\nADD --chown=1234:1234 {name}.tar /x/\n"
            ));
            let o = env.build(&["-t", "add-evil"]);
            assert_failed_with(&o, &[needle]);
            canary.assert_untouched();
        }
        assert_store_owners(&env);
    }
}
