//! The store's and container state's permissions, tested as a second local user (issue
//! item 1).
//!
//! Unpacked layers hold files owned by container ids (setuid ones too), and container state
//! holds environment values: no other local user may reach either. The store root is 0700,
//! container directories 0700, state and logs 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::build_common::{Env, Who, stderr};
use crate::common::users;
use crate::support::{box_, boxrun};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn another_local_user_cannot_reach_the_store_or_read_container_state() {
    let Some(root) = Who::root() else { return };
    let other = users::without_range();
    for who in [root, Who::with_range().unwrap()] {
        let env = Env::with_registry(who);
        let name = format!("perm-{}", std::process::id());
        let o = boxrun(
            &env,
            &[
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                "-e",
                "SECRET=hunter2",
                "busybox",
                "sh",
                "-c",
                "echo logged-secret; sleep 60",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let store = env.store();
        assert_eq!(mode(&store), 0o700, "{}: store root", env.who.label());
        let containers: Vec<_> = std::fs::read_dir(store.join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("state.json").exists())
            .collect();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(mode(c), 0o700, "container dir");
        assert_eq!(mode(&c.join("state.json")), 0o600, "state.json");
        assert_eq!(mode(&c.join("container.log")), 0o600, "container.log");
        assert!(
            std::fs::read_to_string(c.join("state.json"))
                .unwrap()
                .contains("hunter2")
        );

        // The other user: nothing below the store root, not even a listing.
        for (prog, arg) in [
            ("/bin/ls", store.clone()),
            ("/bin/ls", store.join("layers")),
            ("/bin/cat", c.join("state.json")),
            ("/bin/cat", c.join("container.log")),
        ] {
            let o = users::command_as(&other, Path::new(prog))
                .arg(&arg)
                .output()
                .unwrap();
            assert!(
                !o.status.success() && stderr(&o).contains("Permission denied"),
                "{} could run {prog} {}: {}",
                other.name,
                arg.display(),
                String::from_utf8_lossy(&o.stdout)
            );
        }
        let _ = box_(&env, &["rm", "-f", &name]);
    }
}
