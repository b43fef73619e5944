//! The `exai` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match exai::run(exai::cli::Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("exai: {error:#}");
            ExitCode::FAILURE
        }
    }
}
