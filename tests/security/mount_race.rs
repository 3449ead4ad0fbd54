//! CVE-2021-30465: a symlink race on mount targets; targets resolve inside the container root (issue item 5).
