//! The `wasmtx` command: a thin shell over the library's command line (`cli/`).

fn main() -> std::process::ExitCode {
    wasmtx::cli::main()
}
