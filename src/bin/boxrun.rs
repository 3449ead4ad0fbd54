fn main() -> std::process::ExitCode {
    // Before anything else: entering a user namespace needs a single-threaded process.
    boxkit::cli::enter_userns_if_needed("boxrun");
    boxkit::cli::boxrun_main()
}
