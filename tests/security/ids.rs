//! Ids outside the container range: layers, COPY --chown, USER, -u (issue item 1).
//!
//! As root, boxkit's tool namespace maps host ids above the container range (namespace uid
//! 65536 is host root). A layer entry, a `--chown` or a USER naming such an id must be an
//! error that names the entry and the id — never a file owned by a host id (a setuid-root
//! binary in the store, reachable by any local user, was the original hole).

use serde_json::json;

use crate::build_common::{Env, stderr};
use crate::support::{
    Canary, assert_failed_with, assert_store_owners, box_, boxrun, envs_with_registry,
    first_foreign_id, hostile_image,
};

/// A busybox image whose second layer holds a setuid-0 file owned by `id`.
fn setuid_image(env: &Env, name: &str, id: u64) -> String {
    hostile_image(
        env,
        name,
        json!({"base": "busybox", "layers": [[
            {"name": "s", "type": "file", "data": "#!/bin/sh\n", "mode": 0o4755, "uid": id, "gid": id}
        ]]}),
    )
}

#[test]
fn layer_ids_outside_the_range_are_refused_on_pull_and_run() {
    for env in envs_with_registry() {
        let canary = Canary::plant();
        let first = u64::from(first_foreign_id(&env.who));
        // The first foreign id (host root, as root), one that lands on host uid 1001, a huge one.
        for (i, id) in [first, first + 1001, 4_294_967_000].into_iter().enumerate() {
            let name = setuid_image(&env, &format!("evil-ids-{i}"), id);
            let o = box_(&env, &["pull", &name]);
            assert_failed_with(
                &o,
                &[
                    "entry s",
                    &format!("owner {id}:{id}"),
                    "outside the container's id range",
                ],
            );
            let o = boxrun(&env, &["--rm", "--network", "none", &name, "true"]);
            assert_failed_with(&o, &["outside the container's id range"]);
        }
        assert_store_owners(&env);
        canary.assert_untouched();
    }
}

#[test]
fn the_last_id_of_the_range_is_stored_inside_the_range() {
    for env in envs_with_registry() {
        let last = u64::from(first_foreign_id(&env.who) - 1);
        let name = setuid_image(&env, "edge-ids", last);
        let o = box_(&env, &["pull", &name]);
        assert!(o.status.success(), "{}: {}", env.who.label(), stderr(&o));
        let o = boxrun(
            &env,
            &[
                "--rm",
                "--network",
                "none",
                &name,
                "stat",
                "-c",
                "%u:%g %a",
                "/s",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{last}:{last} 4755")
        );
        assert_store_owners(&env);
    }
}

#[test]
fn copy_chown_outside_the_range_is_refused() {
    for env in envs_with_registry() {
        let canary = Canary::plant();
        let id = first_foreign_id(&env.who);
        env.write("prog", "#!/bin/sh\necho hi\n");
        env.boxfile(&format!(
            "FROM busybox\nCOPY --chown={id}:{id} --chmod=4755 prog /s\n"
        ));
        let o = env.build(&["-t", "chown-evil"]);
        assert_failed_with(
            &o,
            &[
                "--chown",
                &format!("{id}:{id}"),
                "outside the container's id range",
            ],
        );
        // ADD of a plain file too, and a huge id.
        env.boxfile("FROM busybox\nADD --chown=4294967000 prog /s\n");
        let o = env.build(&["-t", "chown-evil"]);
        assert_failed_with(&o, &["4294967000", "outside the container's id range"]);
        assert_store_owners(&env);
        canary.assert_untouched();
    }
}

#[test]
fn user_outside_the_range_is_refused() {
    for env in envs_with_registry() {
        let id = first_foreign_id(&env.who).to_string();
        let o = boxrun(
            &env,
            &["--rm", "--network", "none", "-u", &id, "busybox", "id"],
        );
        assert_failed_with(&o, &[&id]);
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("uid="),
            "ran as {id}"
        );
        env.boxfile(&format!("FROM busybox\nUSER {id}\nRUN id > /who\n"));
        let o = env.build(&["-t", "user-evil"]);
        assert_failed_with(
            &o,
            &[&format!("uid {id}"), "outside the container's id range"],
        );
        assert_store_owners(&env);
    }
}
