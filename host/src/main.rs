//! The `aopsfs` command line. Everything but parsing lives in
//! `aopsfs::cli`; see `aopsfs --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = aopsfs::cli::Cli::parse();
    // A mount is a long-running server: say what it does by default.
    let default = match cli.command {
        // (fuser warns about a second umount after an outside `umount`.)
        aopsfs::cli::Command::Mount(_) => "info,fuser::session=error",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AOPSFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    aopsfs::cli::main_with(cli)
}
