//! Logging into the host's trace (the WIT `log` import), with a level
//! filter in the plugin so filtered messages cost no crossing and no
//! formatting.
//!
//! Use the macros [`error!`](crate::error), [`warn!`](crate::warn),
//! [`info!`](crate::info), [`debug!`](crate::debug) and
//! [`trace!`](crate::trace), which take `format!` arguments, or [`log`]
//! with a ready string. The threshold comes from the `log-level` mount
//! option (default `info`).

use std::cell::Cell;
use std::fmt;

use crate::bindings::aopsfs::vfs::log as host;
pub use crate::bindings::aopsfs::vfs::log::Level;

thread_local! {
    /// The most verbose level passed on, as a rank (0: nothing).
    static MAX_RANK: Cell<u8> = const { Cell::new(3) };
}

fn rank(level: Level) -> u8 {
    match level {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

/// Pass on messages up to `level` (`None`: none at all).
pub fn set_max_level(level: Option<Level>) {
    MAX_RANK.set(level.map_or(0, rank));
}

/// Whether a message at `level` would be passed on.
pub fn enabled(level: Level) -> bool {
    rank(level) <= MAX_RANK.get()
}

/// Parse a level name: `off`, `error`, `warn`, `info`, `debug`, `trace`.
pub fn parse_level(name: &str) -> Result<Option<Level>, String> {
    Ok(Some(match name {
        "off" | "none" => return Ok(None),
        "error" => Level::Error,
        "warn" | "warning" => Level::Warn,
        "info" => Level::Info,
        "debug" => Level::Debug,
        "trace" => Level::Trace,
        other => {
            return Err(format!(
                "option log-level={other}: expected off, error, warn, info, debug or trace"
            ));
        }
    }))
}

/// Apply the `log-level` option of a mount configuration.
pub(crate) fn configure(config: &crate::Config) -> Result<(), String> {
    set_max_level(match config.get("log-level") {
        Some(name) => parse_level(name)?,
        None => Some(Level::Info),
    });
    Ok(())
}

/// Record `message` at `level` (if enabled).
pub fn log(level: Level, message: &str) {
    if enabled(level) {
        host::log(level, message);
    }
}

/// Record a formatted message (what the macros call).
#[doc(hidden)]
pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        match args.as_str() {
            Some(s) => host::log(level, s),
            None => host::log(level, &args.to_string()),
        }
    }
}

/// Log at error level: `aopsfs_plugin_sdk::error!("bad block {}", b)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Error, ::core::format_args!($($arg)+)) };
}

/// Log at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Warn, ::core::format_args!($($arg)+)) };
}

/// Log at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Info, ::core::format_args!($($arg)+)) };
}

/// Log at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Debug, ::core::format_args!($($arg)+)) };
}

/// Log at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::log_fmt($crate::log::Level::Trace, ::core::format_args!($($arg)+)) };
}
