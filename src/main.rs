//! The `exai` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: under load, glibc's allocator took about 15 % of exai's
/// CPU with arena-lock contention between the worker and actor threads (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match exai::run(exai::cli::Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("exai: {error:#}");
            ExitCode::FAILURE
        }
    }
}
