//! The `shadowdiff` binary: everything lives in the library; see `shadowdiff::cli`.

fn main() -> std::process::ExitCode {
    shadowdiff::cli::main()
}
