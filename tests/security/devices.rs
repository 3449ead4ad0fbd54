//! Devices: never created from layers, nodev everywhere but the bound nodes, a device filter (issue item 6).
