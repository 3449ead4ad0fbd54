//! The id of the running boot, which both the layer cache (markers of unsynced trees) and the
//! probe's environment key name: read once per process.

/// `/proc/sys/kernel/random/boot_id`, trimmed; `None` when it cannot be read or is not the
/// kernel's hex-and-dashes form (then callers take the boot-independent path).
pub fn boot_id() -> Option<&'static str> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        // One read(2) into a buffer larger than the file (37 bytes): no fstat, no second
        // read to see the end (`crate::procfs` says why; a leaf module does not use another).
        let mut buf = [0u8; 64];
        std::fs::File::open("/proc/sys/kernel/random/boot_id")
            .and_then(|mut f| std::io::Read::read(&mut f, &mut buf))
            .ok()
            .and_then(|n| String::from_utf8(buf[..n].to_vec()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
    })
    .as_deref()
}
