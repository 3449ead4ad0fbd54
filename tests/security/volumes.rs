//! Volume copy-up racing a container that shares the volume (issue item 7).
