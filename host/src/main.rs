//! The `aopsfs` command line. Everything but parsing lives in
//! `aopsfs::cli`; see `aopsfs --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("AOPSFS_LOG"))
        .with_writer(std::io::stderr)
        .init();
    aopsfs::cli::main_with(aopsfs::cli::Cli::parse())
}
