//! The sandbox: namespaces, id maps, overlay rootfs, cgroups, network, and the process.
