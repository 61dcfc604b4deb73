//! Tests of the `aopsfs` binary: `aopsfs run` end to end (verified runs,
//! truncated-page retries under cluster lock contention, a corrupting
//! plugin caught by the model, one-line errors for bad input, Chrome traces)
//! and `aopsfs plugins`.
//!
//! Tests that run WASM plugins need `scripts/build-plugins` first; they fail
//! saying so, they never skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `aopsfs` binary, with a private artifact cache per test run.
fn aopsfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aopsfs"))
}

/// Fail loudly (with the fix) if a bundled plugin is not built.
fn require_plugin(name: &str) {
    if let Err(e) = aopsfs::plugin::resolve_plugin(name) {
        panic!("plugin {name:?} is not built: run scripts/build-plugins first\n{e}");
    }
}

/// A file of the repository's examples/.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    aopsfs().args(args).output().expect("run the aopsfs binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object: {e}\nstdout:\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// Write `text` to a new file in `dir`.
fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Assert a bad-input failure: exit 2 and exactly one line on stderr that
/// contains every one of `parts`, and no panic.
fn assert_bad_input(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr:\n{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line on stderr, got:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for part in parts {
        assert!(err.contains(part), "stderr should contain {part:?}:\n{err}");
    }
}

#[test]
fn run_with_no_arguments_verifies_the_demo_and_exits_0() {
    require_plugin("ramfs");
    let o = run(&["run"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&o)
    );
    assert!(
        out.contains("plugin wasm:ramfs, workload builtin:demo"),
        "{out}"
    );
    assert!(out.contains(" 0 mismatches: ok"), "{out}");
    assert!(out.contains("aop calls"), "{out}");
    assert!(out.contains("contract violations: 0"), "{out}");
    assert!(out.contains("wall time:"), "{out}");
    // stderr is not a terminal here: no progress bar, nothing at all.
    assert_eq!(stderr(&o), "", "nothing extra on a non-terminal stderr");
}

#[test]
fn clusterfs_under_contention_retries_truncated_pages_without_mismatches() {
    require_plugin("clusterfs");
    let workload = example("cluster-contention.toml");
    let o = run(&[
        "run",
        "--plugin",
        "clusterfs",
        "--workload",
        workload.to_str().unwrap(),
        "--json",
    ]);
    let report = json(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{report:#}\nstderr:\n{}",
        stderr(&o)
    );
    let truncated = report["aop_calls"]["readpage"]["truncated_page"]
        .as_u64()
        .unwrap();
    assert!(
        truncated > 0,
        "readpage returned truncated-page under contention: {report:#}"
    );
    assert_eq!(report["mismatches"], 0);
    assert!(report["verified_reads"].as_u64().unwrap() > 0);
    assert!(report["cluster_holds"].as_u64().unwrap() > 0);
}

#[test]
fn a_plugin_that_corrupts_one_byte_is_a_mismatch_with_exit_1() {
    require_plugin("bad-corrupt");
    let o = run(&["run", "--plugin", "bad-corrupt"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("1 mismatches: FAILED"), "{out}");
    assert!(err.contains("MISMATCH: thread 0"), "{err}");
    assert!(
        err.contains("first difference at offset 0 (0x0)"),
        "the corrupted byte is file offset 0:\n{err}"
    );
    // The hex dump: a header and the line at offset 0 marked as differing.
    assert!(err.contains("expected") && err.contains("actual"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.trim_start().starts_with("0x00000000") && l.ends_with('<')),
        "{err}"
    );
    // The operation log tail: thread, operation, arguments, result.
    assert!(
        err.contains("operations (all threads, in completion order)"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.contains(" t0 ") && l.contains("-> ")),
        "{err}"
    );

    let o = run(&["run", "--plugin", "bad-corrupt", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report = json(&o);
    assert_eq!(report["mismatches"], 1);
    assert_eq!(report["mismatch"]["first_difference"], 0);
    let tail = report["mismatch"]["log_tail"].as_array().unwrap();
    assert!(!tail.is_empty() && tail.len() <= 20, "{tail:?}");
}

#[test]
fn a_trapping_plugin_is_reported_as_violations_and_errors_not_mismatches() {
    require_plugin("bad-trap");
    let o = run(&["run", "--plugin", "bad-trap", "--json"]);
    let report = json(&o);
    assert_eq!(o.status.code(), Some(0), "{report:#}\n{}", stderr(&o));
    assert_eq!(report["mismatches"], 0);
    assert!(
        report["contract_violations"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(
        report["aop_faults"]["readpage"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    let first = report["violation_messages"][0].as_str().unwrap();
    assert!(first.contains("trap"), "{first}");
    assert!(report["op_errors"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["verified_reads"].as_u64().unwrap() > 0);
}

#[test]
fn an_unknown_key_names_file_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "unknown.toml",
        "seed = 1\n[files]\ncount = 2\ncolour = \"blue\"\n",
    );
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--workload",
        path.to_str().unwrap(),
    ]);
    let file_line = format!("{}:4:", path.display());
    assert_bad_input(&o, &[&file_line, "files.colour", "unknown field `colour`"]);
}

#[test]
fn a_negative_size_names_file_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "negative.toml",
        "[write]\nmin = 1\nmax = -4096\n",
    );
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--workload",
        path.to_str().unwrap(),
    ]);
    let file_line = format!("{}:3:", path.display());
    assert_bad_input(&o, &[&file_line, "write.max", "must not be negative"]);
}

#[test]
fn an_operation_past_max_file_size_names_file_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = "max_file_size = \"64K\"\n[[thread]]\nscript = [\n    { op = \"write\", file = 0, offset = 0, len = 10 },\n    { op = \"read\", file = 1, offset = \"60K\", len = \"8K\" },\n]\n";
    let path = write_file(dir.path(), "past.toml", text);
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--workload",
        path.to_str().unwrap(),
    ]);
    let file_line = format!("{}:5:", path.display());
    assert_bad_input(
        &o,
        &[
            &file_line,
            "thread[0].script[1]",
            "read goes past max_file_size 64K",
        ],
    );
}

#[test]
fn a_missing_workload_file_is_bad_input() {
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--workload",
        "/nonexistent/w.toml",
    ]);
    assert_bad_input(
        &o,
        &[
            "/nonexistent/w.toml",
            "--workload",
            "cannot read the workload file",
        ],
    );
}

#[test]
fn a_missing_plugin_is_one_line_naming_the_plugin() {
    let o = run(&["run", "--plugin", "no-such-plugin"]);
    assert_bad_input(
        &o,
        &[
            "no-such-plugin",
            "--plugin",
            "not found",
            "scripts/build-plugins",
        ],
    );
    let o = run(&["run", "--plugin", "/nonexistent/p.wasm"]);
    assert_bad_input(&o, &["/nonexistent/p.wasm", "--plugin", "not found"]);
    let o = run(&["run", "--plugin", "native:nothing"]);
    assert_bad_input(&o, &["native:nothing", "--plugin", "native:ramfs"]);
}

#[test]
fn a_component_of_the_wrong_world_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest valid component: no imports, no exports.
    let empty = dir.path().join("empty-component.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let o = run(&["run", "--plugin", empty.to_str().unwrap()]);
    assert_bad_input(
        &o,
        &[
            empty.to_str().unwrap(),
            "--plugin",
            "does not implement the aopsfs:vfs/aops-plugin world",
        ],
    );
    // A core module is not a component at all.
    let core = dir.path().join("core-module.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let o = run(&["run", "--plugin", core.to_str().unwrap()]);
    assert_bad_input(
        &o,
        &[
            core.to_str().unwrap(),
            "--plugin",
            "not a valid WebAssembly component",
        ],
    );
    // A stray file is named as such, not with the parser's byte dump.
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, b"hello\n").unwrap();
    let o = run(&["run", "--plugin", text.to_str().unwrap()]);
    assert_bad_input(&o, &[text.to_str().unwrap(), "not a WebAssembly file"]);
    assert!(!stderr(&o).contains("expected=["), "{}", stderr(&o));
}

#[test]
fn bad_flags_are_one_line_errors() {
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--threads",
        "2",
        "--workload",
        "builtin:cluster-contention",
    ]);
    assert_bad_input(
        &o,
        &[
            "builtin:cluster-contention",
            "--threads",
            "[[thread]] tables",
        ],
    );
    let o = run(&["run", "--plugin", "native:ramfs", "--cache-mb", "0"]);
    assert_bad_input(&o, &["--cache-mb", "at least 1"]);
    let o = run(&[
        "run",
        "--plugin",
        "native:ramfs",
        "--trace",
        "/nonexistent/dir/t.json",
    ]);
    assert_bad_input(&o, &["/nonexistent/dir/t.json", "--trace"]);
}

#[test]
fn the_trace_has_a_span_for_every_aop_call_the_report_counted() {
    require_plugin("ramfs");
    let dir = tempfile::tempdir().unwrap();
    let workload = write_file(
        dir.path(),
        "small.toml",
        "seed = 4\nops = 300\nthreads = 2\nmax_file_size = \"64K\"\n[files]\ncount = 2\nsize = \"16K\"\n[mix]\nread = 40\nwrite = 30\ntruncate = 10\nfault = 10\nfsync = 5\ndrop_caches = 5\n",
    );
    let trace_path = dir.path().join("trace.json");
    let o = run(&[
        "run",
        "--workload",
        workload.to_str().unwrap(),
        "--cache-mb",
        "1",
        "--trace",
        trace_path.to_str().unwrap(),
        "--json",
    ]);
    let report = json(&o);
    assert_eq!(o.status.code(), Some(0), "{report:#}\n{}", stderr(&o));
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap())
        .expect("the trace is JSON");
    assert_eq!(trace["otherData"]["dropped_events"], 0);
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let mut begins: BTreeMap<String, u64> = BTreeMap::new();
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        let name = e["name"].as_str().unwrap_or("").to_owned();
        match e["ph"].as_str().unwrap() {
            "B" => *begins.entry(name).or_default() += 1,
            "E" => *ends.entry(name).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(begins, ends, "every span is closed");
    let mut counted = 0;
    for (op, by_result) in report["aop_calls"].as_object().unwrap() {
        let calls: u64 = by_result
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
            + report["aop_faults"][op].as_u64().unwrap();
        assert_eq!(
            begins.get(op).copied().unwrap_or(0),
            calls,
            "spans of {op} vs calls in the report"
        );
        counted += calls;
    }
    assert!(counted > 0);
    let has = |ph: &str, name: &str| events.iter().any(|e| e["ph"] == ph && e["name"] == name);
    for instant in ["lock", "unlock", "uptodate", "dirty", "truncate"] {
        assert!(has("i", instant), "an instant event {instant:?}");
    }
    assert!(
        has("C", "pages"),
        "a counter track of cached and dirty pages"
    );
    let worker_names: Vec<&str> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert!(
        worker_names.contains(&"mix-0") && worker_names.contains(&"mix-1"),
        "{worker_names:?}"
    );
    // Every event has a small thread id.
    assert!(
        events
            .iter()
            .all(|e| e["tid"].as_u64().is_some_and(|t| t < 1000))
    );
}

#[test]
fn a_single_thread_run_is_reproducible_for_a_seed() {
    let runs: Vec<Value> = (0..2)
        .map(|_| {
            let o = run(&[
                "run",
                "--plugin",
                "native:memstore",
                "--seed",
                "9",
                "--cache-mb",
                "1",
                "--json",
            ]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let mut v = json(&o);
            v.as_object_mut().unwrap().remove("wall_time_ms");
            v
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0]["seed"], 9);
    let other = run(&[
        "run",
        "--plugin",
        "native:memstore",
        "--seed",
        "10",
        "--cache-mb",
        "1",
        "--json",
    ]);
    let mut other = json(&other);
    other.as_object_mut().unwrap().remove("wall_time_ms");
    assert_ne!(runs[0], other, "another seed, other operations");
}

#[test]
fn a_block_device_image_is_created_with_the_given_size() {
    require_plugin("blockfs");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let o = run(&[
        "run",
        "--plugin",
        "blockfs",
        "--image",
        image.to_str().unwrap(),
        "--image-size",
        "8M",
        "--cache-mb",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 << 20);
    let bad = dir.path().join("bad.img");
    let o = run(&[
        "run",
        "--plugin",
        "blockfs",
        "--image",
        bad.to_str().unwrap(),
        "--image-size",
        "1000",
    ]);
    assert_bad_input(
        &o,
        &[
            bad.to_str().unwrap(),
            "--image",
            "multiple of the block size",
        ],
    );
}

#[test]
fn a_direct_io_run_verifies_and_its_image_reopens_buffered() {
    require_plugin("blockfs");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let image = image.to_str().unwrap();
    for extra in [&["--direct-io"][..], &[][..]] {
        let mut args = vec![
            "run",
            "--plugin",
            "blockfs",
            "--image",
            image,
            "--image-size",
            "8M",
            "--cache-mb",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", stderr(&o));
        let report = json(&o);
        assert_eq!(report["mismatches"], 0, "{extra:?}: {report}");
    }
}

#[test]
fn native_implementations_refuse_image_flags() {
    for flag in [&["--image", "/tmp/unused.img"][..], &["--direct-io"][..]] {
        let mut args = vec!["run", "--plugin", "native:ramfs"];
        args.extend_from_slice(flag);
        let o = run(&args);
        assert_bad_input(
            &o,
            &[flag[0], "native implementations use no block device image"],
        );
    }
    assert!(!std::path::Path::new("/tmp/unused.img").exists());
}

#[test]
fn run_help_explains_every_flag() {
    let o = run(&["run", "--help"]);
    let help = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    for flag in [
        "--plugin ",
        "--plugin-opt",
        "--workload",
        "--image ",
        "--image-size",
        "--cache-mb",
        "--seed",
        "--threads",
        "--trace ",
        "--trace-limit",
        "--json",
        "--direct-io",
        "native:ramfs",
        "Exit status",
    ] {
        assert!(help.contains(flag), "--help mentions {flag:?}:\n{help}");
    }
}

#[test]
fn plugins_lists_the_bundled_plugins_with_descriptions() {
    require_plugin("ramfs");
    let o = run(&["plugins"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    for name in ["ramfs", "blockfs", "clusterfs", "bad-corrupt"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} listed:\n{out}"
        );
    }
    assert!(out.contains("OCFS2"), "clusterfs's description:\n{out}");
    assert!(out.contains("built: "), "{out}");
    assert!(out.contains("native:memstore"), "{out}");
}
