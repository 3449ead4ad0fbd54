fn main() -> std::process::ExitCode {
    // Before anything else: entering a user namespace needs a single-threaded process.
    match boxkit::cli::enter_userns_if_needed("box") {
        boxkit::cli::Start::Command(tool) => boxkit::cli::box_main(tool),
        boxkit::cli::Start::Exit(code) => code,
    }
}
