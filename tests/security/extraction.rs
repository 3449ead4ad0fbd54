//! umoci/containerd extraction: traversal, symlink and hardlink escapes, whiteouts of `..`.
