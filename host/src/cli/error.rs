//! Why a command could not run. Every variant is bad input (exit code 2)
//! and prints on one line as `FILE: FIELD: REASON`.

use std::path::PathBuf;

use crate::workload::WorkloadError;

/// A command-line failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The workload file is unreadable or invalid.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The plugin could not be found, compiled, validated or mounted.
    #[error("{file}: --plugin: {reason}")]
    Plugin { file: String, reason: String },
    /// The block device image could not be opened or created.
    #[error("{}: --image: {reason}", .path.display())]
    Image { path: PathBuf, reason: String },
    /// The trace file could not be written.
    #[error("{}: --trace: {reason}", .path.display())]
    Trace { path: PathBuf, reason: String },
    /// The mount could not start or failed while serving (the reason
    /// names the mount point).
    #[error("{reason}")]
    Mount { path: PathBuf, reason: String },
    /// A flag's value is invalid.
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
}

impl CliError {
    /// The message on one line (nested messages may span several).
    pub fn one_line(&self) -> String {
        let mut out = String::new();
        for line in self
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !out.is_empty() {
                out.push_str(if out.ends_with(':') { " " } else { "; " });
            }
            out.push_str(line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reasons_become_one_line() {
        let e = CliError::Plugin {
            file: "x".into(),
            reason: "not found; looked in:\n  /a\n  /b\nbuild them".into(),
        };
        assert_eq!(
            e.one_line(),
            "x: --plugin: not found; looked in: /a; /b; build them"
        );
    }
}
