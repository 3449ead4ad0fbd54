//! The default seccomp profile and --security-opt seccomp=… (issue item 4).
