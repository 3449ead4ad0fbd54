//! CVE-2023-28642: /proc (or a masked path) replaced by a symlink in the image.
