//! CVE-2019-5736: /proc/self/exe, and box exec's joining process (issue item 7).
