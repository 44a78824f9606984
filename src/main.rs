fn main() -> std::process::ExitCode {
    pgdeck::cli::main()
}
