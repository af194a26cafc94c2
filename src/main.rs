//! The `tiller` binary: parse, set up logging, dispatch. The work lives in the libraries.

fn main() -> std::process::ExitCode {
    tiller::cli::main()
}
