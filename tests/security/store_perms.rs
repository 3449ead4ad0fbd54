//! The store's and container state's permissions, tested as a second local user (issue item 1).
