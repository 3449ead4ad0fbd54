//! The standing CVE-class suite (issue "Security: container ids never become host ids").
//!
//! One module per class of attack that hit runc, crun, BuildKit, umoci or kaniko, each built
//! from hostile input that independent tools make (Python's tarfile, skopeo, plain files for
//! Boxfiles), each checking host canaries (stat and content before and after) and the owners of
//! everything boxkit stored. Where a class cannot apply to boxkit's design the test still
//! exists and says why. docs/security.md maps every row of its CVE table to a test here.
//! Every test runs as root and, where the class applies to it, as an unprivileged user with a
//! subordinate id range; under BOX_TEST_STRICT=1 nothing skips.

#[path = "build_common/mod.rs"]
mod build_common;
mod common;
#[path = "security/support.rs"]
mod support;

#[path = "security/add_tar.rs"]
mod add_tar;
#[path = "security/buildkit_mounts.rs"]
mod buildkit_mounts;
#[path = "security/copy_symlinks.rs"]
mod copy_symlinks;
#[path = "security/cp.rs"]
mod cp;
#[path = "security/devices.rs"]
mod devices;
#[path = "security/extraction.rs"]
mod extraction;
#[path = "security/fd_leak.rs"]
mod fd_leak;
#[path = "security/ids.rs"]
mod ids;
#[path = "security/index.rs"]
mod index;
#[path = "security/inheritable_caps.rs"]
mod inheritable_caps;
#[path = "security/mount_race.rs"]
mod mount_race;
#[path = "security/owner_xattr.rs"]
mod owner_xattr;
#[path = "security/proc_exe.rs"]
mod proc_exe;
#[path = "security/proc_symlink.rs"]
mod proc_symlink;
#[path = "security/run_flags.rs"]
mod run_flags;
#[path = "security/seccomp.rs"]
mod seccomp;
#[path = "security/store_perms.rs"]
mod store_perms;
#[path = "security/volumes.rs"]
mod volumes;
