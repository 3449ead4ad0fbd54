//! CVE-2024-21626: host file descriptors and a working directory outside the container root.
