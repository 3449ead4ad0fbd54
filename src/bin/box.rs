fn main() -> std::process::ExitCode {
    boxkit::cli::box_main()
}
