//! The `aopsfs` command line: clap types and what each command does.
//! `main.rs` only parses the arguments and calls [`main_with`].
//!
//! Exit codes: 0 when the run passed, 1 when a read did not match the
//! model (or a run failed), 2 for bad input (a bad workload file, flag,
//! plugin or image), with a one-line error on stderr.

pub mod error;
pub mod mount;
pub mod plugins;
pub mod progress;
pub mod run;
pub mod target;
pub mod trace_file;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// The run passed.
pub const EXIT_OK: u8 = 0;
/// A read returned bytes the model says are wrong, or the run failed.
pub const EXIT_MISMATCH: u8 = 1;
/// The input was bad: workload file, flags, plugin, image.
pub const EXIT_BAD_INPUT: u8 = 2;

/// aopsfs: a Linux-style page cache whose address-space operations are
/// plugins (sandboxed WebAssembly components).
#[derive(Debug, Parser)]
#[command(name = "aopsfs", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive a workload through a plugin: every byte read is checked
    /// against a model of the files, and a report says what the page cache
    /// and the plugin did.
    Run(run::RunArgs),
    /// List the bundled plugins, with a description and where each is
    /// built.
    Plugins(plugins::PluginsArgs),
    /// Mount a plugin's filesystem with FUSE so real programs use it: the
    /// host owns the namespace, every read and write goes through the page
    /// cache and the plugin's aops.
    Mount(mount::MountArgs),
}

/// Run a parsed command line; returns the process exit code. Errors are
/// printed here, on one line.
pub fn main_with(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Run(args) => run::execute(args),
        Command::Plugins(args) => plugins::execute(args),
        Command::Mount(args) => mount::execute(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aopsfs: error: {}", e.one_line());
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
