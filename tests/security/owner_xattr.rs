//! Emulated chown where only container root is mapped (`run/chown_notify.rs`): the supervisor
//! resolves a RUN step's chown path on its behalf, so a path that tries to leave the
//! container's root (through `..`, an absolute symlink, or a magic link into the tool's own
//! filesystem) must reach nothing outside it. The canary belongs to the building user, so the
//! supervisor (running as that user) could set an xattr on it if resolution ever left the
//! container. (Layers carrying `user.boxkit.owner` are refused as owners in
//! tests/build_owners.rs.)

use crate::build_common::{Env, Who, stderr};
use crate::support::Canary;

fn owner_xattr(p: &std::path::Path) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: NUL-terminated strings and a writable buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.boxkit.owner".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

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
