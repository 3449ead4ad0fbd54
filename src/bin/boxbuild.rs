fn main() -> std::process::ExitCode {
    boxkit::cli::boxbuild_main()
}
