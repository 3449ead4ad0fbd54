//! `pow(3)` for the whole binary, from the `libm` crate (a port of musl's), so that no
//! binary needs `libm.so.6`: `pow` (for `f64::powf`, which indicatif calls) is the only symbol
//! the binaries import from it, and loading one more shared library costs every exec of a
//! binary ≈ 0.06 ms (bench/README.md, session 9 and session 13). The link editor resolves the
//! binaries' `pow` here before it looks in libm, and `--as-needed` then drops libm.

/// The C library's `pow`, as the C standard defines it (musl's implementation: correctly
/// rounded in nearly every case, the same special cases for NaN, zeros and infinities).
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pow_gives_the_c_librarys_values_and_special_cases() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(1024.0, 0.5), 32.0);
        assert_eq!(super::pow(10.0, -2.0), 0.01);
        assert_eq!(super::pow(0.0, 0.0), 1.0);
        assert_eq!(super::pow(f64::NAN, 0.0), 1.0);
        assert!(super::pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(super::pow(0.0, -1.0), f64::INFINITY);
        // The one caller: indicatif's powf, through Rust's intrinsic.
        assert_eq!(1.5f64.powf(2.0), 2.25);
    }
}
