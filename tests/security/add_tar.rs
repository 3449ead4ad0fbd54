//! ADD of a local tar: absolute and `..` member names, --chown applied at creation (issue item 2).
