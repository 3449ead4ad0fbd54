//! `boxrun`: entered as C's `main`, without Rust's start-up code (`boxkit::cli::main_of`
//! says why and what of it is kept).
#![cfg_attr(not(test), no_main)]

boxkit::binary_main!("boxrun", boxrun_main);
