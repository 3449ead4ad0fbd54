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
//!
//! The binaries' relative relocations are also packed (DT_RELR) where the linker and the C
//! library support it: see [`packs_relative_relocs`].

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
    if packs_relative_relocs(&linker) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether `linker` links with `-z pack-relative-relocs` (DT_RELR: GNU ld 2.38, lld 15,
/// mold) into a program that starts here (glibc 2.36). The binaries' ~6,500 relative
/// relocations then take 2 KB instead of 160 KB, which the dynamic loader reads at every start:
/// 0.16 ms off every command, a container start included (bench/README.md, "Session 22").
/// Probed by linking and running an empty C program, so an older linker (which ignores an
/// unknown `-z` option with a warning), an older glibc, or a cross build keeps the default
/// link.
fn packs_relative_relocs(linker: &str) -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("TARGET") != var("HOST") {
        return false;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let (src, exe) = (out.join("relr-probe.c"), out.join("relr-probe"));
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    // GNU ld before 2.38 ignores an unknown `-z` option with a warning naming it.
    let linked = Command::new(linker)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(["-pie", "-fPIE", "-Wl,-z,pack-relative-relocs"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("pack-relative")
        });
    linked && Command::new(&exe).status().is_ok_and(|s| s.success())
}
