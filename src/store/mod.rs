//! The embedded store: an OCI image layout with blobs, tags, unpacked layers and containers.
