//! Volume copy-up racing a container that shares the volume (issue item 7).
//!
//! When a container mounts an empty named volume over a directory its image has, boxkit
//! fills the volume from the image first. Another container that already has the volume
//! mounted can watch for the first copied file and plant symlinks under the names still to
//! come, pointing at host paths; a copy that follows them writes host files with the tool's
//! reach (host root's, as root). The copy must resolve every name inside the volume.

use serde_json::json;

use crate::build_common::{Env, Who, stderr};
use crate::support::{Canary, assert_store_owners, boxrun, hostile_image};

const FILES: usize = 300;

#[test]
fn copy_up_never_follows_symlinks_planted_by_a_container_sharing_the_volume() {
    let Some(root) = Who::root() else { return };
    for who in [root, Who::with_range().unwrap()] {
        let env = Env::with_registry(who);
        let canary = Canary::plant_for(&env.who);
        let target = canary.file.to_string_lossy().into_owned();
        let blob = "x".repeat(64 << 10);
        let files: Vec<_> = (0..FILES)
            .map(|i| json!({"name": format!("data/f{i:03}"), "type": "file", "data": blob}))
            .collect();
        let mut layer = vec![json!({"name": "data", "type": "dir"})];
        layer.extend(files);
        let img = hostile_image(
            &env,
            "many-files",
            json!({"base": "busybox", "layers": [layer]}),
        );
        // The attacker stages symlinks to the host canary for every name, waits for the first
        // copied file, then moves them all into the shared volume at once.
        let script = format!(
            "mkdir /stage && cd /stage && i=0; while [ $i -lt {FILES} ]; do \
               ln -s {target} $(printf f%03d $i); i=$((i+1)); done; \
             echo ready > /tmp/ready; \
             n=0; while [ $n -lt 2000000 ]; do set -- /v/*; [ -e \"$1\" ] && break; n=$((n+1)); done; \
             mv /stage/* /v/ 2>/dev/null"
        );
        for round in 0..2 {
            let vol = format!("race{round}-{}", std::process::id());
            let o = boxrun(
                &env,
                &[
                    "-d",
                    "--name",
                    &format!("attacker-{vol}"),
                    "--network",
                    "none",
                    "-v",
                    &format!("{vol}:/v"),
                    "busybox",
                    "sh",
                    "-c",
                    &script,
                ],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            // Let the attacker stage its links before the victim starts.
            std::thread::sleep(std::time::Duration::from_millis(800));
            let o = boxrun(
                &env,
                &[
                    "--rm",
                    "--network",
                    "none",
                    "-v",
                    &format!("{vol}:/data"),
                    &img,
                    "true",
                ],
            );
            // The copy may fail (an entry changed under it) or succeed; it must not write
            // outside the volume either way.
            drop(o);
            canary.assert_untouched();
            let _ = env.cmd("box", &["rm", "-f", &format!("attacker-{vol}")]);
        }
        assert_store_owners(&env);
    }
}
