//! Emulated chown where only container root is mapped (`run/chown_notify.rs`): the supervisor
//! resolves a RUN step's chown path on its behalf, so a path that tries to leave the
//! container's root (through `..`, an absolute symlink, or a magic link into the tool's own
//! filesystem) must reach nothing outside it. The canary belongs to the building user, so the
//! supervisor (running as that user) could set an xattr on it if resolution ever left the
//! container. (Layers carrying `user.boxkit.owner` are refused as owners in
//! tests/build_owners.rs.)

use serde_json::json;

use crate::build_common::{Env, Who, owner_xattr, stderr};
use crate::support::{Canary, hostile_image};

#[test]
fn emulated_chown_never_resolves_outside_the_container() {
    let Some(who) = Who::without_range() else {
        return;
    };
    let canary = Canary::plant_for(&who);
    let e = Env::new(who);
    let f = canary.file.display().to_string();
    let dots = "../".repeat(20);
    e.boxfile(&format!(
        "FROM busybox\n\
RUN ln -s {f} /esc; ln -s / /root-link; cd /tmp; \
for p in /proc/self/root{f} /proc/1/root{f} /proc/self/cwd/{dots}{f} {dots}{f} /esc \
/root-link{f} /proc/self/fd/3; do chown 1234:1234 $p; echo \"$p=$?\"; done; exit 0\n"
    ));
    let o = e.build(&["-t", "escape"]);
    assert!(o.status.success(), "{}", stderr(&o));
    canary.assert_untouched();
    assert_eq!(owner_xattr(&canary.file), None, "{}", stderr(&o));
    assert_eq!(owner_xattr(&canary.dir), None, "{}", stderr(&o));
}

#[test]
fn a_layer_cannot_forge_an_owner_through_boxkits_xattr() {
    let Some(root) = Who::root() else { return };
    for who in [
        root,
        Who::with_range().unwrap(),
        Who::without_range().unwrap(),
    ] {
        let e = Env::with_registry(who);
        // The header says root; the xattr, which boxkit would read back as the owner, 4321.
        let name = hostile_image(
            &e,
            "forged",
            json!({"base": "busybox", "layers": [[
                {"name": "forged", "data": "x\n", "mode": 0o4755, "uid": 0, "gid": 0,
                 "xattrs": {"user.boxkit.owner": "4321:4321"}},
            ]]}),
        );
        e.boxfile(&format!("FROM {name}\nRUN touch /forged\n"));
        let o = e.build(&["-t", "f"]);
        let err = stderr(&o);
        assert!(o.status.success(), "{}: {err}", e.who.label());
        assert!(err.contains("user.boxkit.owner dropped"), "{err}");
        let t = tempfile::tempdir().unwrap();
        let rootfs = e.umoci_unpack("f", t.path());
        let listing = crate::build_common::tree_listing(&rootfs).join("\n");
        assert!(
            listing.contains("\nforged 4755 0:0"),
            "{}: {listing}",
            e.who.label()
        );
    }
}
