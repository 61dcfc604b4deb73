//! Tests of `aopsfs mount`: real programs (cp, diff, fio, pjdfstest) on a
//! real FUSE mount whose data path is the engine plus a WASM plugin.
//! They need root, /dev/fuse, fio and pjdfstest (scripts/install-test-deps);
//! they fail with the reason when those are missing, never skip.

mod harness;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use harness::{Mount, repo, require_fuse, run_ok, tool};

/// The project's own source tree: the directories with no build output.
const SOURCE_DIRS: [&str; 6] = ["host", "plugin-sdk", "wit", "tests", "examples", "scripts"];

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("aopsfs-mnt-")
        .tempdir_in("/tmp")
        .unwrap()
}

/// `cp -a` the source tree into the mount.
fn copy_tree_in(mnt: &Path) {
    let mut cp = Command::new("cp");
    cp.arg("-a");
    for d in SOURCE_DIRS {
        cp.arg(repo().join(d));
    }
    cp.arg(mnt.join("src"));
    fs::create_dir(mnt.join("src")).unwrap();
    run_ok(&mut cp);
}

/// `diff -r` every copied directory against the original.
fn diff_tree(mnt: &Path) {
    for d in SOURCE_DIRS {
        run_ok(
            Command::new("diff")
                .arg("-r")
                .arg(repo().join(d))
                .arg(mnt.join("src").join(d)),
        );
    }
}

/// Run one fio job file section in `dir`; assert err=0 for every job and
/// that the verify pass read data back. Returns the JSON report.
fn fio(dir: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let out = dir.join(format!("../{name}.fio.json"));
    let mut cmd = Command::new(tool("fio"));
    cmd.current_dir(dir.parent().unwrap())
        .arg(format!("--name={name}"))
        .arg(format!("--directory={}", dir.display()))
        .args([
            "--size=16M",
            "--bs=4k",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--fallocate=none",
            "--output-format=json",
        ])
        .arg(format!("--output={}", out.display()))
        .args(args);
    let status = cmd.status().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap_or_default())
        .unwrap_or_else(|e| panic!("fio {name} ({status}) wrote no JSON report: {e}"));
    assert!(status.success(), "fio {name} failed ({status}): {report}");
    for job in report["jobs"].as_array().unwrap() {
        assert_eq!(
            job["error"], 0,
            "fio job {} err != 0: {job}",
            job["jobname"]
        );
        assert!(
            job["read"]["io_bytes"].as_u64().unwrap() > 0,
            "fio job {} verified nothing",
            job["jobname"]
        );
    }
    report
}

/// The two fio verification jobs every plugin must pass: random buffered
/// writes from two jobs at once, and random writes through mmap.
fn fio_jobs(mnt: &Path) {
    let dir = mnt.join("fio");
    fs::create_dir(&dir).unwrap();
    fio(
        &dir,
        "randwrite",
        &["--rw=randwrite", "--ioengine=psync", "--numjobs=2"],
    );
    fio(&dir, "mmap", &["--rw=randwrite", "--ioengine=mmap"]);
}

/// Copy, compare, fio; then unmount (the way `how` says) cleanly.
/// Returns (scratch dir, mount): bound in that order, the mount drops (and
/// unmounts) before its directory is removed.
fn real_programs_on(plugin: &str, extra: &[&str]) -> (tempfile::TempDir, Mount) {
    let tmp = scratch();
    let m = Mount::start(plugin, &tmp.path().join("mnt"), extra);
    copy_tree_in(m.path());
    diff_tree(m.path());
    fio_jobs(m.path());
    (tmp, m)
}

fn assert_clean_exit((status, log): (std::process::ExitStatus, String), how: &str) {
    assert!(status.success(), "exit after {how}: {status}\n{log}");
    assert!(log.contains(&format!("unmounted ({how})")), "{log}");
    assert!(log.contains("everything written back"), "{log}");
    assert!(log.contains(" 0 contract violations"), "{log}");
}

#[test]
fn ramfs_mount_runs_cp_diff_and_fio() {
    let (_tmp, m) = real_programs_on("ramfs", &[]);
    assert_clean_exit(m.umount(), "umount");
}

#[test]
fn native_ramfs_mount_runs_cp_diff_and_fio() {
    let (_tmp, m) = real_programs_on("native:ramfs", &[]);
    assert_clean_exit(m.stop_with_signal(libc::SIGINT), "SIGINT");
}

#[test]
fn clusterfs_mount_runs_cp_diff_and_fio() {
    let (_tmp, m) = real_programs_on("clusterfs", &["--threads", "8"]);
    assert_clean_exit(m.umount(), "umount");
}

/// Four fio jobs on one file through 8 FUSE threads and a tiny cache:
/// clusterfs's per-inode cluster locks collide between instances, so the
/// loops retry on truncated-page (the OCFS2 pattern), and nothing breaks.
#[test]
fn clusterfs_mount_makes_concurrent_programs_contend_and_retry() {
    let tmp = scratch();
    let stats = tmp.path().join("stats.json");
    let m = Mount::start(
        "clusterfs",
        &tmp.path().join("mnt"),
        &[
            "--threads",
            "8",
            "--cache-mb",
            "4",
            "--stats",
            stats.to_str().unwrap(),
        ],
    );
    let out = tmp.path().join("contend.json");
    run_ok(
        Command::new(tool("fio"))
            .current_dir(tmp.path())
            .arg(format!("--directory={}", m.path().display()))
            .args([
                "--name=contend",
                "--filename=shared",
                "--size=32M",
                "--bs=4k",
                "--rw=randrw",
                "--numjobs=4",
                "--time_based",
                "--runtime=3",
                "--ioengine=psync",
                "--output-format=json",
            ])
            .arg(format!("--output={}", out.display())),
    );
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    for job in report["jobs"].as_array().unwrap() {
        assert_eq!(job["error"], 0, "{job}");
    }
    assert_clean_exit(m.umount(), "umount");
    let stats: serde_json::Value = serde_json::from_slice(&fs::read(&stats).unwrap()).unwrap();
    let retries: u64 = stats["stats"]["retries"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let truncated = stats["stats"]["aop_calls"]["readpage"]["truncated_page"]
        .as_u64()
        .unwrap()
        + stats["stats"]["aop_calls"]["prepare_write"]["truncated_page"]
            .as_u64()
            .unwrap();
    assert!(retries > 0 && truncated > 0, "no contention seen: {stats}");
}

#[test]
fn blockfs_mount_survives_unmount_and_remount() {
    let tmp = scratch();
    let image = tmp.path().join("disk.img");
    let flags = ["--image", image.to_str().unwrap(), "--image-size", "256M"];
    let (_t, m) = real_programs_on("blockfs", &flags);
    let mnt = m.path().to_owned();
    fs::write(mnt.join("src/attrs"), b"x").unwrap();
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o640);
    fs::set_permissions(mnt.join("src/attrs"), perm).unwrap();
    std::os::unix::fs::symlink("attrs", mnt.join("src/link")).unwrap();
    fs::hard_link(mnt.join("src/attrs"), mnt.join("src/hard")).unwrap();
    let before = fs::symlink_metadata(mnt.join("src/attrs")).unwrap();
    assert_clean_exit(m.stop_with_signal(libc::SIGTERM), "SIGTERM");

    // Same image, new process: same tree, contents and attributes.
    let m = Mount::start("blockfs", &mnt, &["--image", image.to_str().unwrap()]);
    diff_tree(&mnt);
    let after = fs::symlink_metadata(mnt.join("src/attrs")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (
            after.mode(),
            after.nlink(),
            after.uid(),
            after.size(),
            after.mtime(),
            after.ino()
        ),
        (
            before.mode(),
            before.nlink(),
            before.uid(),
            before.size(),
            before.mtime(),
            before.ino()
        )
    );
    assert_eq!(
        fs::read_link(mnt.join("src/link")).unwrap(),
        Path::new("attrs")
    );
    // fio's data, checked again after the remount.
    let dir = mnt.join("fio");
    fio(
        &dir,
        "randwrite",
        &[
            "--rw=randwrite",
            "--ioengine=psync",
            "--numjobs=2",
            "--verify_only",
        ],
    );
    fio(
        &dir,
        "mmap",
        &["--rw=randwrite", "--ioengine=mmap", "--verify_only"],
    );
    assert_clean_exit(m.umount(), "umount");
}

/// A shared mapping and read()/write() on the same file see each other's
/// bytes (direct I/O with FUSE_DIRECT_IO_ALLOW_MMAP), and the mapped writes
/// reach the plugin: they survive a remount of blockfs.
#[test]
fn mmap_writes_and_reads_are_coherent_with_read_and_write() {
    use std::os::fd::AsRawFd;
    let tmp = scratch();
    let image = tmp.path().join("disk.img");
    let img = image.to_str().unwrap();
    let mnt = tmp.path().join("mnt");
    let m = Mount::start("blockfs", &mnt, &["--image", img]);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path().join("mapped"))
        .unwrap();
    f.set_len(3 * 4096).unwrap();
    // SAFETY: a fresh shared mapping of a file we hold open, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            3 * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    // SAFETY: the mapping is 3 pages long and lives until munmap.
    let bytes = unsafe { std::slice::from_raw_parts_mut(map as *mut u8, 3 * 4096) };
    bytes[4096..4096 + 6].copy_from_slice(b"mapped");
    let mut buf = [0u8; 6];
    f.read_exact_at(&mut buf, 4096).unwrap();
    assert_eq!(&buf, b"mapped", "read() sees a store through the mapping");
    f.write_all_at(b"written", 8192 + 10).unwrap();
    assert_eq!(
        &bytes[8192 + 10..8192 + 17],
        b"written",
        "the mapping sees write()"
    );
    // SAFETY: the range is the mapping made above.
    assert_eq!(unsafe { libc::msync(map, 3 * 4096, libc::MS_SYNC) }, 0);
    assert_eq!(unsafe { libc::munmap(map, 3 * 4096) }, 0);
    drop(f);
    assert_clean_exit(m.umount(), "umount");

    let m = Mount::start("blockfs", &mnt, &["--image", img]);
    let data = fs::read(m.path().join("mapped")).unwrap();
    assert_eq!(data.len(), 3 * 4096);
    assert_eq!(&data[4096..4096 + 6], b"mapped");
    assert_eq!(&data[8192 + 10..8192 + 17], b"written");
    assert!(data[..4096].iter().all(|&b| b == 0));
    assert_clean_exit(m.umount(), "umount");
}

// ---- errno ---------------------------------------------------------------

fn ramfs_mount() -> (tempfile::TempDir, Mount) {
    let tmp = scratch();
    let m = Mount::start("ramfs", &tmp.path().join("mnt"), &[]);
    (tmp, m)
}

fn raw(e: std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {e}"))
}

/// The errno of a call that must fail.
fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    raw(r.expect_err("the call should fail"))
}

#[test]
fn errno_enoent() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    assert_eq!(errno(File::open(p.join("missing"))), libc::ENOENT);
    assert_eq!(errno(fs::remove_file(p.join("missing"))), libc::ENOENT);
    assert_eq!(
        errno(fs::rename(p.join("missing"), p.join("x"))),
        libc::ENOENT
    );
}

#[test]
fn errno_eexist() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    fs::create_dir(p.join("d")).unwrap();
    assert_eq!(errno(fs::create_dir(p.join("d"))), libc::EEXIST);
    fs::write(p.join("f"), b"x").unwrap();
    let excl = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p.join("f"));
    assert_eq!(errno(excl), libc::EEXIST);
    assert_eq!(errno(fs::hard_link(p.join("f"), p.join("d"))), libc::EEXIST);
}

#[test]
fn errno_enotdir() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    fs::write(p.join("f"), b"x").unwrap();
    assert_eq!(errno(File::open(p.join("f/child"))), libc::ENOTDIR);
    assert_eq!(errno(fs::create_dir(p.join("f/sub"))), libc::ENOTDIR);
    assert_eq!(errno(fs::remove_dir(p.join("f"))), libc::ENOTDIR);
    fs::create_dir(p.join("d")).unwrap();
    assert_eq!(errno(fs::rename(p.join("d"), p.join("f"))), libc::ENOTDIR);
}

#[test]
fn errno_eisdir() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    fs::create_dir(p.join("d")).unwrap();
    let w = OpenOptions::new().write(true).open(p.join("d"));
    assert_eq!(errno(w), libc::EISDIR);
    fs::write(p.join("f"), b"x").unwrap();
    assert_eq!(errno(fs::rename(p.join("f"), p.join("d"))), libc::EISDIR);
}

#[test]
fn errno_enotempty() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    fs::create_dir_all(p.join("d/e")).unwrap();
    assert_eq!(errno(fs::remove_dir(p.join("d"))), libc::ENOTEMPTY);
    fs::create_dir(p.join("other")).unwrap();
    assert_eq!(
        errno(fs::rename(p.join("other"), p.join("d"))),
        libc::ENOTEMPTY
    );
}

#[test]
fn errno_enametoolong() {
    let (_t, m) = ramfs_mount();
    let p = m.path();
    let long = "n".repeat(256);
    assert_eq!(errno(fs::write(p.join(&long), b"x")), libc::ENAMETOOLONG);
    assert_eq!(errno(fs::create_dir(p.join(&long))), libc::ENAMETOOLONG);
    fs::write(p.join(&long[..255]), b"x").unwrap();
    assert_eq!(fs::read(p.join(&long[..255])).unwrap(), b"x");
}

#[test]
fn errno_efbig() {
    let (_t, m) = ramfs_mount();
    let f = File::create(m.path().join("f")).unwrap();
    // s_maxbytes is 1 TiB (EngineConfig::max_file_size).
    assert_eq!(errno(f.write_at(b"x", 1 << 40)), libc::EFBIG);
    assert_eq!(errno(f.set_len((1 << 40) + 1)), libc::EFBIG);
    f.write_at(b"y", (1 << 40) - 1).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 40);
}

#[test]
fn errno_enospc_when_the_image_is_full() {
    let tmp = scratch();
    let image = tmp.path().join("small.img");
    let m = Mount::start(
        "blockfs",
        &tmp.path().join("mnt"),
        &["--image", image.to_str().unwrap(), "--image-size", "4M"],
    );
    let mut f = File::create(m.path().join("big")).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    // Blocks are allocated at writepage (delayed allocation), so the error
    // comes at the latest from fsync; close would report it too.
    let mut err = None;
    for _ in 0..8 {
        if let Err(e) = f.write_all(&chunk) {
            err = Some(e);
            break;
        }
    }
    let err = err
        .or_else(|| f.sync_all().err())
        .expect("8 MiB fit a 4 MiB image?");
    assert_eq!(raw(err), libc::ENOSPC);
    drop(f);
    // Freeing space makes room again, and the mount kept working.
    fs::remove_file(m.path().join("big")).unwrap();
    fs::write(m.path().join("small"), b"fits").unwrap();
    assert_eq!(fs::read(m.path().join("small")).unwrap(), b"fits");
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
}

#[test]
fn errno_eio_when_the_plugin_traps_and_the_mount_survives() {
    let tmp = scratch();
    let m = Mount::start("bad-trap", &tmp.path().join("mnt"), &[]);
    let p = m.path();
    // Written pages stay cached (ramfs); a page that only exists past a
    // truncate-extend must be read through readpage, which traps.
    let f = File::create(p.join("holey")).unwrap();
    f.set_len(8192).unwrap();
    drop(f);
    let mut buf = Vec::new();
    let err = File::open(p.join("holey"))
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap_err();
    assert_eq!(raw(err), libc::EIO);
    // The mount still serves other files.
    fs::write(p.join("ok"), b"still here").unwrap();
    assert_eq!(fs::read(p.join("ok")).unwrap(), b"still here");
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("trap") && log.contains("readpage"),
        "log names the trap:\n{log}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    require_fuse();
    let tmp = scratch();
    let file = tmp.path().join("file");
    fs::write(&file, b"not a directory").unwrap();
    let garbage = tmp.path().join("garbage.img");
    fs::write(&garbage, vec![0x5au8; 1 << 20]).unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let fresh = tmp.path().join("fresh.img");
    let (d, f, g, n) = (
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
        garbage.to_str().unwrap(),
        fresh.to_str().unwrap(),
    );
    let cases: [(&[&str], &str); 7] = [
        (&["/nonexistent-aopsfs-mnt"], "No such file"),
        (&[f], "not a directory"),
        (&["--plugin", "nosuch", d], "not found"),
        (&["--plugin", "blockfs", "--image", g, d], "bad magic"),
        (&["--threads", "0", d], "--threads"),
        (&["--cache-mb", "99999999999999", d], "--cache-mb"),
        (
            &["--plugin", "ramfs", "--image", n, d],
            "keeps its data in memory",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_aopsfs"))
            .arg("mount")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got:\n{err}");
        assert!(
            err.starts_with("aopsfs: error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    assert!(
        !fresh.exists(),
        "a refused mount leaves no new image behind"
    );
}

/// rename(2) of a new, fsynced file over an old one, then a crash: the
/// old name must show the old data or the new, never the old size full of
/// zeros (the old file's blocks freed while the checkpoint on the image
/// still named it).
#[test]
fn a_crash_after_rename_over_keeps_the_old_or_the_new_contents() {
    require_fuse();
    let tmp = scratch();
    let image = tmp.path().join("disk.img");
    let image = image.to_str().unwrap();
    let flags = ["--image", image, "--writeback-secs", "0"];
    let old = pattern_bytes(1, 100_000);
    let new = pattern_bytes(2, 80_000);
    let m = Mount::start("blockfs", &tmp.path().join("mnt"), &flags);
    let cfg = m.path().join("cfg");
    let tmp_file = m.path().join("cfg.tmp");
    write_synced(&cfg, &old);
    write_synced(&tmp_file, &new);
    fs::rename(&tmp_file, &cfg).unwrap();
    // No checkpoint since the rename (no fsync, no background flusher): the
    // image's namespace still names the old file.
    m.crash();
    let m = Mount::start("blockfs", &tmp.path().join("mnt"), &flags);
    let got = fs::read(m.path().join("cfg")).unwrap();
    assert!(
        got == old || got == new,
        "cfg after the crash is {} bytes, neither the old ({}) nor the new ({}) contents; zeros: {}",
        got.len(),
        old.len(),
        new.len(),
        got.iter().all(|&b| b == 0)
    );
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
}

/// Write `data` to a new file and fsync it (which also checkpoints the
/// namespace on a persistent mount).
fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// Deterministic bytes that differ with `seed`.
fn pattern_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn isatty_on_a_mounted_file_is_enotty_and_logs_nothing() {
    use std::os::fd::AsRawFd;
    let tmp = scratch();
    let m = Mount::start("ramfs", &tmp.path().join("mnt"), &[]);
    let f = File::create(m.path().join("f")).unwrap();
    // SAFETY: isatty on a descriptor we own.
    let tty = unsafe { libc::isatty(f.as_raw_fd()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((tty, errno), (0, Some(libc::ENOTTY)));
    drop(f);
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
    assert!(!log.contains("Not Implemented"), "{log}");
}

#[test]
fn an_image_in_use_by_a_mount_is_refused_to_a_second_mount() {
    require_fuse();
    let tmp = scratch();
    let image = tmp.path().join("disk.img");
    let image = image.to_str().unwrap();
    let first = Mount::start("blockfs", &tmp.path().join("a"), &["--image", image]);
    let second = tmp.path().join("b");
    fs::create_dir(&second).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aopsfs"))
        .args(["mount", "--plugin", "blockfs", "--image", image])
        .arg(&second)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(image) && err.contains("in use"), "{err}");
    // The first mount is untouched and still serves.
    fs::write(first.path().join("f"), b"still here").unwrap();
    assert_eq!(fs::read(first.path().join("f")).unwrap(), b"still here");
    let (status, log) = first.umount();
    assert!(status.success(), "{log}");
}

// ---- caching mode ----------------------------------------------------------

/// Read one 4 KiB file 50 times (25 preads on one descriptor, 25 fresh
/// opens) and return the engine's page cache hits from the mount's
/// --stats report.
fn cache_hits_for_50_reads(extra: &[&str]) -> u64 {
    let tmp = scratch();
    let stats = tmp.path().join("stats.json");
    let mut flags = vec!["--stats", stats.to_str().unwrap()];
    flags.extend_from_slice(extra);
    let m = Mount::start("ramfs", &tmp.path().join("mnt"), &flags);
    fs::write(m.path().join("f"), vec![7u8; 4096]).unwrap();
    let f = File::open(m.path().join("f")).unwrap();
    for _ in 0..25 {
        let mut buf = vec![0u8; 4096];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, vec![7u8; 4096]);
    }
    drop(f);
    for _ in 0..25 {
        assert_eq!(fs::read(m.path().join("f")).unwrap(), vec![7u8; 4096]);
    }
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&stats).unwrap()).unwrap();
    report["stats"]["cache_hits"].as_u64().unwrap()
}

#[test]
fn default_mode_sends_every_read_through_our_page_cache() {
    require_fuse();
    let direct = cache_hits_for_50_reads(&[]);
    assert!(direct >= 50, "50 reads, {direct} reached the engine");
    let kernel = cache_hits_for_50_reads(&["--kernel-cache"]);
    assert!(
        kernel < direct,
        "--kernel-cache should let the kernel answer some reads ({kernel} vs {direct})"
    );
}

/// --trace: the aop spans of a mount, on the FUSE request threads.
#[test]
fn trace_shows_aop_spans_on_fuse_threads() {
    let tmp = scratch();
    let trace = tmp.path().join("trace.json");
    let m = Mount::start(
        "ramfs",
        &tmp.path().join("mnt"),
        &["--trace", trace.to_str().unwrap()],
    );
    fs::write(m.path().join("f"), vec![1u8; 3 * 4096]).unwrap();
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let fuse_tids: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["ph"] == "M"
                && e["args"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("fuser")
        })
        .map(|e| &e["tid"])
        .collect();
    let spans = |name: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "B" && e["name"] == name && fuse_tids.contains(&&e["tid"]))
            .count()
    };
    assert_eq!(spans("prepare_write"), 3, "one per page written");
    assert_eq!(spans("commit_write"), 3);
    assert!(
        events.iter().any(|e| e["name"] == "lock"),
        "page lock events"
    );
}

// ---- pjdfstest -------------------------------------------------------------

/// `name  # reason` lines of a list in tests/pjdfstest/; every entry needs
/// a reason.
fn listed(file: &str) -> Vec<String> {
    let path = repo().join("tests/pjdfstest").join(file);
    let text = fs::read_to_string(&path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l
                .split_once('#')
                .unwrap_or_else(|| panic!("{}: {l:?} has no `# reason`", path.display()));
            assert!(
                !reason.trim().is_empty(),
                "{}: {l:?} has an empty reason",
                path.display()
            );
            name.trim().to_owned()
        })
        .collect()
}

fn pjdfstest_on(plugin: &str, extra: &[&str]) {
    let pjdfstest = tool("pjdfstest");
    run_ok(Command::new("id").arg("tests"));
    let tmp = scratch();
    // pjdfstest 0.2.2 underflows building its PATH_MAX path when
    // (4073 - len(mount path)) is a multiple of 127; keep clear of that.
    let mut mnt = tmp.path().join("mnt");
    if (4073 - mnt.as_os_str().len()).is_multiple_of(127) {
        mnt = tmp.path().join("mnt_");
    }
    let m = Mount::start(plugin, &mnt, extra);
    let expected = listed("expected-failures.txt");
    let config = fs::read_to_string(repo().join("tests/pjdfstest/linux.toml"))
        .unwrap()
        .replace(
            "expected_failures = []",
            &format!("expected_failures = {expected:?}"),
        );
    let config_path = tmp.path().join("pjdfstest.toml");
    fs::write(&config_path, config).unwrap();
    let out = Command::new("timeout")
        .args(["-k", "10", "900"])
        .arg(pjdfstest)
        .arg("-c")
        .arg(&config_path)
        .arg("-p")
        .arg(m.path())
        .arg("-s")
        .arg(tmp.path())
        .env("RUST_BACKTRACE", "0")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED") || l.contains("PASSED UNEXPECTEDLY"))
        .collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "pjdfstest on {plugin}: failures outside tests/pjdfstest/expected-failures.txt \
         ({}):\n{}\n{}",
        out.status,
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let skipped: Vec<String> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("skipped"))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    let mut want = listed("expected-skips.txt");
    let mut got = skipped.clone();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "skipped tests differ from tests/pjdfstest/expected-skips.txt"
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .expect("summary line");
    eprintln!("pjdfstest on {plugin}: {summary}");
    let (status, log) = m.umount();
    assert!(status.success(), "{log}");
}

#[test]
fn pjdfstest_on_ramfs() {
    pjdfstest_on("ramfs", &[]);
}

#[test]
fn pjdfstest_on_blockfs() {
    let tmp = scratch();
    let image = tmp.path().join("disk.img");
    pjdfstest_on(
        "blockfs",
        &["--image", image.to_str().unwrap(), "--image-size", "128M"],
    );
}
