fn main() -> std::process::ExitCode {
    // Before anything else: entering a user namespace needs a single-threaded process.
    boxkit::run::userns::enter_if_needed();
    boxkit::cli::box_main()
}
