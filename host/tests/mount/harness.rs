//! Mounting for tests: start `aopsfs mount` as a child process, wait until
//! the kernel shows the mount, and unmount + reap it on drop. Needs root
//! and /dev/fuse; tests fail (never skip) with the reason when they are
//! missing, and when a tool they drive (fio, pjdfstest) is not installed
//! (`scripts/install-test-deps` installs them).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Panic with the fix unless this process can mount FUSE filesystems.
pub fn require_fuse() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && Path::new("/dev/fuse").exists(),
        "mount tests need root and /dev/fuse (root: {root}); run them as root on a machine with FUSE"
    );
}

/// The path of an installed tool, or a panic naming the installer.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/install-test-deps"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A running `aopsfs mount`.
pub struct Mount {
    child: Option<Child>,
    path: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Mount `plugin` at `path` with extra flags; waits up to 60 s.
    pub fn start(plugin: &str, path: &Path, extra: &[&str]) -> Mount {
        require_fuse();
        std::fs::create_dir_all(path).unwrap();
        let path = path.canonicalize().unwrap();
        let log = path.with_extension("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_aopsfs"))
            .args(["mount", "--plugin", plugin])
            .args(extra)
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start aopsfs mount");
        let mut m = Mount {
            child: Some(child),
            path,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&m.path) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                m.child = None;
                panic!(
                    "aopsfs mount exited with {status} before mounting:\n{}",
                    m.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not mounted after 60 s:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything the mount logged so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Send `signal` and wait for a clean exit; returns the status and log.
    pub fn stop_with_signal(mut self, signal: i32) -> (ExitStatus, String) {
        let child = self.child.as_mut().unwrap();
        // SAFETY: kill only sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        self.wait()
    }

    /// SIGKILL: the process dies with nothing written back, as in a
    /// crash; the dead mount is then detached.
    pub fn crash(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        assert!(!is_mounted(&self.path), "the dead mount is detached");
    }

    /// `umount` from outside, as a user would; waits for the exit.
    pub fn umount(mut self) -> (ExitStatus, String) {
        let out = Command::new("umount").arg(&self.path).output().unwrap();
        assert!(
            out.status.success(),
            "umount {}: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait()
    }

    fn wait(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!is_mounted(&self.path), "still mounted after exit");
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "aopsfs mount did not exit 120 s after unmount:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("umount").arg("-l").arg(&self.path).output();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run a command; panic with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}
