//! Pulling from and pushing to OCI registries.
