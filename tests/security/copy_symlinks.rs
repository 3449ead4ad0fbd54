//! Kaniko-style COPY of host symlinks: a context symlink never makes COPY read or write a host path.
