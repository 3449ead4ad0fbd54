//! Link GCC's unwinder statically (`libgcc_eh.a`) into glibc builds, so that the binaries do
//! not load `libgcc_s.so.1` when they start.
//!
//! Rust's standard library references `_Unwind_*` (backtraces, and unwinding where panics
//! unwind); on `*-linux-gnu` it gets them from `libgcc_s.so.1` unless the build is static.
//! Loading that library costs every process start its mapping, its symbol lookups and its
//! constructor, `__cpu_indicator_init`, whose `cpuid` instructions each trap to the hypervisor
//! on a VM (4 µs apiece on the benchmark machine). Every container start execs `boxrun` once:
//! linking the unwinder in took 0.41 ms off a start, paired (bench/README.md, "Session 10").
//!
//! The archive is linked whole before the standard library's `-lgcc_s`, so the linker resolves
//! `_Unwind_*` in the binary and `--as-needed` drops `libgcc_s`. Skipped (the default link
//! stays) where it cannot apply: other targets, static builds (which link `libgcc_eh`
//! themselves), and a linker driver that does not know a `libgcc_eh.a`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let static_build = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" || static_build
    {
        return;
    }
    // The linker driver cargo uses: `cc` unless one is configured for the target.
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let Some(archive) = Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file())
    else {
        println!("cargo:warning=no libgcc_eh.a from `{linker}`: libgcc_s.so.1 is loaded at start");
        return;
    };
    if let Some(dir) = archive.parent() {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");
}
