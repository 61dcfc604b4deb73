//! Kernel error numbers as a typed enum.
//!
//! Models the negative `errno` values that address-space operations and the
//! filemap loops return (include/asm-generic/errno-base.h). The WIT `errno`
//! enum maps one to one onto the first eight variants.

use serde::Serialize;

/// An error number, as the kernel's `-EIO`, `-ENOSPC`, ... .
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, thiserror::Error)]
#[serde(rename_all = "UPPERCASE")]
pub enum Errno {
    /// EIO: an I/O error, and what every contract violation becomes.
    #[error("EIO (I/O error)")]
    Eio,
    /// ENOSPC: no space left on the backing store.
    #[error("ENOSPC (no space left on device)")]
    Enospc,
    /// ENOMEM: out of memory.
    #[error("ENOMEM (out of memory)")]
    Enomem,
    /// EAGAIN: try again.
    #[error("EAGAIN (try again)")]
    Eagain,
    /// EFBIG: past the maximum file size.
    #[error("EFBIG (file too large)")]
    Efbig,
    /// EINVAL: invalid argument.
    #[error("EINVAL (invalid argument)")]
    Einval,
    /// EROFS: read-only backing store.
    #[error("EROFS (read-only file system)")]
    Erofs,
    /// EINTR: interrupted.
    #[error("EINTR (interrupted)")]
    Eintr,
    /// ENOENT: no such file.
    #[error("ENOENT (no such file or directory)")]
    Enoent,
    /// EFAULT: a short copy from the user buffer.
    #[error("EFAULT (bad address)")]
    Efault,
}

impl Errno {
    /// The positive Linux value of this errno (as `errno(3)` reports it).
    pub fn raw(self) -> i32 {
        match self {
            Errno::Eio => 5,
            Errno::Enospc => 28,
            Errno::Enomem => 12,
            Errno::Eagain => 11,
            Errno::Efbig => 27,
            Errno::Einval => 22,
            Errno::Erofs => 30,
            Errno::Eintr => 4,
            Errno::Enoent => 2,
            Errno::Efault => 14,
        }
    }

    /// The kernel's name for it, e.g. `"EIO"`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Eio => "EIO",
            Errno::Enospc => "ENOSPC",
            Errno::Enomem => "ENOMEM",
            Errno::Eagain => "EAGAIN",
            Errno::Efbig => "EFBIG",
            Errno::Einval => "EINVAL",
            Errno::Erofs => "EROFS",
            Errno::Eintr => "EINTR",
            Errno::Enoent => "ENOENT",
            Errno::Efault => "EFAULT",
        }
    }
}
