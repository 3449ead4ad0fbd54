//! CVE-2022-29162: inheritable capabilities.
