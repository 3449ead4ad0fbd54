//! Whether this host can run the arm64 side of the multi-platform tests: an x86-64 host with
//! qemu-user-static's aarch64 binfmt entry (`scripts/host-setup.sh` registers it). Each check
//! that fails reports a skip, which fails the test under BOX_TEST_STRICT=1.

/// An x86-64 host (the tests emulate arm64 on it).
pub fn amd64_host() -> bool {
    let ok = std::env::consts::ARCH == "x86_64";
    if !ok {
        super::skip("the platform tests expect an x86-64 host (arm64 emulated)");
    }
    ok
}

/// The qemu-aarch64 binfmt entry is registered and enabled (host setup run first).
pub fn ready() -> bool {
    super::podman::host_setup();
    let ok = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|s| s.lines().next() == Some("enabled"));
    if !ok {
        super::skip("no qemu-aarch64 binfmt_misc entry (qemu-user-static, scripts/host-setup.sh)");
    }
    ok
}
