//! Turning a failed guest call into an [`AopFault`] that says what
//! happened: a handle misuse the host caught, the memory cap, the fuel
//! budget, or a trap (with the guest function and its stderr, where a Rust
//! panic message lands).

use wasmtime::{Trap, WasmBacktrace};

use crate::fs::aops::{AopFault, FaultKind};
use crate::plugin::instance::InstanceState;
use crate::plugin::sandbox::stderr_tail;

/// How much of the guest's stderr a report quotes.
const STDERR_QUOTE: usize = 600;

/// Classify the error a guest call ended with. `fuel` is the budget the
/// call was given.
pub(crate) fn classify(error: wasmtime::Error, state: &mut InstanceState, fuel: u64) -> AopFault {
    if let Some(message) = state.call.misuse.take() {
        return AopFault {
            kind: FaultKind::HandleMisuse,
            message,
        };
    }
    if let Some(desired) = state.limiter.take_refused() {
        let limit = state.limiter.limit_bytes();
        let message = if desired > 0 {
            format!(
                "memory limit of {limit} bytes exceeded: the guest tried to grow its memory to {desired} bytes"
            )
        } else {
            format!("memory limit of {limit} bytes: the host could not grow the guest's memory")
        };
        return AopFault {
            kind: FaultKind::OutOfMemory,
            message,
        };
    }
    let trap = find_trap(&error);
    let location = guest_location(&error);
    if trap == Some(Trap::OutOfFuel) {
        return AopFault {
            kind: FaultKind::Timeout,
            message: format!(
                "ran out of fuel: the call used its whole budget of {fuel} units{location} (an endless loop?)"
            ),
        };
    }
    let root = error.root_cause().to_string();
    if root.contains("unknown handle index") || root.contains("used with the wrong type") {
        // Wasmtime caught a handle the guest kept past the call that lent it.
        return AopFault {
            kind: FaultKind::HandleMisuse,
            message: format!(
                "{}: page handle used after its call returned (a stale handle): {root}",
                state.call.op
            ),
        };
    }
    let what = match trap {
        Some(trap) => trap.to_string(),
        None => root,
    };
    let stderr = stderr_tail(&state.stderr, STDERR_QUOTE);
    let stderr = if stderr.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {stderr}")
    };
    AopFault {
        kind: FaultKind::Trap,
        message: format!("{what}{location}{stderr}"),
    }
}

/// The trap code in an error's chain, if the guest trapped.
fn find_trap(error: &wasmtime::Error) -> Option<Trap> {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Some(*trap);
    }
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Trap>().copied())
}

/// Frames of the guest's runtime rather than its own code: a report names
/// the innermost frame that is not one of these.
const RUNTIME_FRAMES: [&str; 8] = [
    "std::",
    "core::",
    "alloc::",
    "__rust",
    "rust_panic",
    "abort",
    "wit_bindgen",
    "cabi_",
];

/// " in FUNCTION" for the innermost named guest frame outside the Rust
/// runtime (demangled), if known.
fn guest_location(error: &wasmtime::Error) -> String {
    let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() else {
        return String::new();
    };
    let names: Vec<String> = backtrace
        .frames()
        .iter()
        .filter_map(|frame| frame.func_name())
        .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
        .collect();
    let own = names
        .iter()
        .find(|name| !RUNTIME_FRAMES.iter().any(|prefix| name.starts_with(prefix)));
    own.or(names.first())
        .map(|name| format!(" in {name}"))
        .unwrap_or_default()
}
