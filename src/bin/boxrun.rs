// Entered as C's `main`: Rust's start-up code is skipped (boxkit::cli::main_of says why and
// what of it is kept).
#![no_main]

#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // Before anything else: entering a user namespace needs a single-threaded process.
    boxkit::cli::main_of("boxrun", boxkit::cli::boxrun_main)
}
