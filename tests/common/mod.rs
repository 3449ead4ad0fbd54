//! Shared helpers for integration tests. Each test crate does `mod common;` and uses what it
//! needs, so unused items here are expected.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod users;

/// True when CI asked that every capability probe fail instead of skipping
/// (`BOX_TEST_STRICT=1`). This machine can do everything the tests need, so in CI nothing may
/// silently skip.
pub fn strict() -> bool {
    std::env::var("BOX_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Skip the current test with a message, or fail it under `BOX_TEST_STRICT=1`.
/// Use as `if !probe() { return skip("why"); }`.
pub fn skip(why: &str) {
    if strict() {
        panic!("BOX_TEST_STRICT=1 but this test cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether an executable is on PATH.
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Path of one of this crate's binaries, built by cargo for integration tests.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "box" => PathBuf::from(env!("CARGO_BIN_EXE_box")),
        "boxbuild" => PathBuf::from(env!("CARGO_BIN_EXE_boxbuild")),
        "boxrun" => PathBuf::from(env!("CARGO_BIN_EXE_boxrun")),
        other => panic!("no binary {other}"),
    }
}

/// The parent of `pid` (from /proc/PID/stat), if it still exists.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `pid` has exited (gone, or a zombie waiting to be reaped).
pub fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        }
    }
}

/// Whether process `pid` (its main thread) blocks `sig`.
pub fn blocks(pid: u32, sig: i32) -> bool {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

pub mod emulation;
pub mod fixtures;
pub mod jobs;
pub mod podman;
pub mod registry;
pub mod tarbuild;
