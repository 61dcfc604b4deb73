//! Models the fields of `struct inode` the namespace owns: file type,
//! permissions, owner, link count, times, and for directories and symlinks
//! their contents. A regular file's data and `i_size` live in the engine's
//! address space; the namespace only records `size` in checkpoints.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The root directory's inode number (FUSE_ROOT_ID).
pub const ROOT_INO: u64 = 1;

/// The longest name one directory entry may have (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// The most hard links one inode may have (ext2's EXT2_LINK_MAX).
pub const LINK_MAX: u32 = 32_000;

/// What kind of file an inode is (the S_IFMT bits of i_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl FileKind {
    /// The kind named by the S_IFMT bits of a mode, if any.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }
}

/// A timestamp with nanoseconds, before or after the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    /// current_fs_time.
    pub fn now() -> Timespec {
        Timespec::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timespec {
    fn from(t: SystemTime) -> Timespec {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Timespec { sec, nsec }
            }
        }
    }
}

impl From<Timespec> for SystemTime {
    fn from(t: Timespec) -> SystemTime {
        if t.sec >= 0 {
            UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs())
                + Duration::from_nanos(t.nsec as u64)
        }
    }
}

/// One inode of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inode {
    pub ino: u64,
    pub kind: FileKind,
    /// The permission bits of i_mode (07777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    /// i_size as of the last checkpoint for regular files; the target's
    /// length for symlinks. The live size of a regular file is the engine's.
    pub size: u64,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<u8>>,
    /// A directory's entries, by name (without "." and ".."). Saved as a
    /// list of `[name bytes, ino]` pairs (names need not be UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "entry_pairs")]
    pub entries: Option<BTreeMap<Vec<u8>, u64>>,
    /// A directory's parent (its ".."); the root is its own parent.
    #[serde(default)]
    pub parent: u64,
}

impl Inode {
    /// A new inode with every time set to now.
    pub fn new(ino: u64, kind: FileKind, perm: u16, uid: u32, gid: u32) -> Inode {
        let now = Timespec::now();
        Inode {
            ino,
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            size: 0,
            target: None,
            entries: (kind == FileKind::Directory).then(BTreeMap::new),
            parent: 0,
        }
    }

    /// The directory's entries; panics for a non-directory (callers check
    /// the kind first).
    pub fn dir(&self) -> &BTreeMap<Vec<u8>, u64> {
        self.entries
            .as_ref()
            .unwrap_or_else(|| panic!("inode {} is not a directory", self.ino))
    }

    /// The directory's entries, mutable.
    pub fn dir_mut(&mut self) -> &mut BTreeMap<Vec<u8>, u64> {
        let ino = self.ino;
        self.entries
            .as_mut()
            .unwrap_or_else(|| panic!("inode {ino} is not a directory"))
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// i_mode: the type bits and the permission bits.
    pub fn mode(&self) -> u32 {
        let fmt = match self.kind {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Socket => libc::S_IFSOCK,
        };
        fmt | self.perm as u32
    }

    /// Models inode_set_ctime_current plus the mtime update of a content
    /// change (file_update_time).
    pub fn touch_mc(&mut self) {
        let now = Timespec::now();
        self.mtime = now;
        self.ctime = now;
    }
}

/// Serde for directory entries as `[[name, ino], ...]`: JSON map keys
/// must be strings, and names are arbitrary bytes.
mod entry_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Entries = Option<BTreeMap<Vec<u8>, u64>>;

    pub fn serialize<S: Serializer>(entries: &Entries, s: S) -> Result<S::Ok, S::Error> {
        entries
            .as_ref()
            .map(|m| m.iter().collect::<Vec<_>>())
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        let pairs: Option<Vec<(Vec<u8>, u64)>> = Option::deserialize(d)?;
        Ok(pairs.map(|p| p.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_round_trips_before_and_after_the_epoch() {
        for t in [
            Timespec { sec: 0, nsec: 0 },
            Timespec {
                sec: 1_700_000_000,
                nsec: 123_456_789,
            },
            Timespec { sec: -1, nsec: 500 },
            Timespec {
                sec: -86_400,
                nsec: 0,
            },
        ] {
            assert_eq!(Timespec::from(SystemTime::from(t)), t);
        }
    }

    #[test]
    fn mode_combines_type_and_permissions() {
        let i = Inode::new(5, FileKind::Directory, 0o41755, 0, 0);
        assert_eq!(i.perm, 0o1755);
        assert_eq!(i.mode(), libc::S_IFDIR | 0o1755);
        assert_eq!(FileKind::from_mode(i.mode()), Some(FileKind::Directory));
        assert_eq!(i.nlink, 2);
    }
}
