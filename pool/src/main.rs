fn main() -> std::process::ExitCode {
    pool::cli::main()
}
