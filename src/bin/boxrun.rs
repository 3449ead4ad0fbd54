fn main() -> std::process::ExitCode {
    boxkit::cli::boxrun_main()
}
