//! Models fs/namei.c (and the libfs/ext2 directory code under it): the
//! namespace the host owns — directories, names, hard links, symlinks,
//! rename — and the errno rules of each operation. File data is not here:
//! a regular file's pages go through the engine and the plugin's aops.
//!
//! Every operation takes the one namespace lock for its whole length, so
//! each is atomic with respect to the others (like a filesystem that takes
//! s_vfs_rename_mutex for every directory operation). Data I/O never takes
//! it for longer than an attribute update.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::vfs::inode::{FileKind, Inode, LINK_MAX, NAME_MAX, ROOT_INO, Timespec};

/// Why a namespace operation failed; [`NsError::errno`] is what the system
/// call returns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name longer than {NAME_MAX} bytes")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("too many links")]
    TooManyLinks,
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("no inode numbers left")]
    NoInodes,
}

impl NsError {
    /// The errno for the system call.
    pub fn errno(&self) -> i32 {
        match self {
            NsError::NotFound => libc::ENOENT,
            NsError::Exists => libc::EEXIST,
            NsError::NotDir => libc::ENOTDIR,
            NsError::IsDir => libc::EISDIR,
            NsError::NotEmpty => libc::ENOTEMPTY,
            NsError::NameTooLong => libc::ENAMETOOLONG,
            NsError::Invalid(_) => libc::EINVAL,
            NsError::TooManyLinks => libc::EMLINK,
            NsError::NotPermitted(_) => libc::EPERM,
            NsError::NoInodes => libc::ENOSPC,
        }
    }
}

/// Who is asking, for ownership of new inodes.
#[derive(Clone, Copy, Debug)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
}

/// What to create: a node of `kind` with permission bits `perm`.
#[derive(Clone, Copy, Debug)]
pub struct NewNode {
    pub kind: FileKind,
    pub perm: u16,
    pub rdev: u32,
}

/// The attribute changes of a setattr, size excepted (the engine does that).
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timespec>,
    pub mtime: Option<Timespec>,
    pub ctime: Option<Timespec>,
}

/// An inode that lost its last name and is not open: the caller must evict
/// its data (truncate it to nothing through the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an evicted regular file's data must be freed"]
pub struct Evict {
    pub ino: u64,
    pub kind: FileKind,
}

/// One directory entry as readdir returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: Vec<u8>,
}

/// The state a checkpoint saves and a load restores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceImage {
    pub next_ino: u64,
    pub inodes: Vec<Inode>,
}

struct State {
    inodes: HashMap<u64, Inode>,
    /// Open file handles per inode; an unlinked inode lives while open.
    open: HashMap<u64, u32>,
    next_ino: u64,
    /// Bumped by every change; a checkpoint is needed when it moved.
    version: u64,
}

/// The namespace: every inode's attributes and every directory's entries.
pub struct Namespace {
    state: Mutex<State>,
    /// The first inode number the namespace must never hand out (the host
    /// keeps numbers at and above it for its own files, such as
    /// checkpoints).
    ino_limit: u64,
}

fn check_name(name: &[u8]) -> Result<(), NsError> {
    if name.len() > NAME_MAX {
        return Err(NsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(NsError::Invalid("bad name"));
    }
    Ok(())
}

impl State {
    fn get(&self, ino: u64) -> Result<&Inode, NsError> {
        self.inodes.get(&ino).ok_or(NsError::NotFound)
    }

    fn get_mut(&mut self, ino: u64) -> Result<&mut Inode, NsError> {
        self.inodes.get_mut(&ino).ok_or(NsError::NotFound)
    }

    fn dir(&self, ino: u64) -> Result<&Inode, NsError> {
        let inode = self.get(ino)?;
        if !inode.is_dir() {
            return Err(NsError::NotDir);
        }
        Ok(inode)
    }

    fn child(&self, parent: u64, name: &[u8]) -> Result<Option<u64>, NsError> {
        Ok(self.dir(parent)?.dir().get(name).copied())
    }

    /// Is `ino` `ancestor` or below it?
    fn is_within(&self, mut ino: u64, ancestor: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.inodes.get(&ino) {
                Some(i) if i.is_dir() && i.parent != ino => ino = i.parent,
                _ => return false,
            }
        }
    }

    /// Drop one link of `ino`; returns the eviction if that was the last
    /// name and nobody has it open.
    fn drop_link(&mut self, ino: u64) -> Option<Evict> {
        let open = self.open.get(&ino).copied().unwrap_or(0);
        let inode = self.inodes.get_mut(&ino)?;
        assert!(inode.nlink > 0, "inode {ino} nlink underflow");
        inode.nlink = if inode.is_dir() { 0 } else { inode.nlink - 1 };
        inode.ctime = Timespec::now();
        if inode.nlink == 0 && open == 0 {
            let kind = inode.kind;
            self.inodes.remove(&ino);
            return Some(Evict { ino, kind });
        }
        None
    }
}

impl Namespace {
    /// An empty namespace: a root directory owned by `root` with `perm`.
    /// Inode numbers handed out stay below `ino_limit`.
    pub fn new(root: Cred, perm: u16, ino_limit: u64) -> Namespace {
        let mut inode = Inode::new(ROOT_INO, FileKind::Directory, perm, root.uid, root.gid);
        inode.parent = ROOT_INO;
        let image = NamespaceImage {
            next_ino: ROOT_INO + 1,
            inodes: vec![inode],
        };
        Namespace::from_image(image, ino_limit).expect("a fresh namespace is consistent")
    }

    /// A namespace restored from a checkpoint, after checking it is a tree
    /// whose link counts and parents agree with its entries.
    pub fn from_image(image: NamespaceImage, ino_limit: u64) -> Result<Namespace, String> {
        let mut inodes = HashMap::new();
        for inode in image.inodes {
            if inode.ino == 0 || inode.ino >= ino_limit || inode.ino >= image.next_ino {
                return Err(format!("inode number {} out of range", inode.ino));
            }
            if inode.is_dir() != inode.entries.is_some() {
                return Err(format!("inode {}: directory entries mismatch", inode.ino));
            }
            let ino = inode.ino;
            if inodes.insert(ino, inode).is_some() {
                return Err(format!("inode {ino} appears twice"));
            }
        }
        let root = inodes.get(&ROOT_INO).ok_or("no root directory")?;
        if !root.is_dir() {
            return Err("the root is not a directory".into());
        }
        let mut links: HashMap<u64, u32> = HashMap::new();
        for dir in inodes.values().filter(|i| i.is_dir()) {
            for (name, child) in dir.dir() {
                check_name(name).map_err(|e| format!("directory {}: {e}", dir.ino))?;
                let c = inodes
                    .get(child)
                    .ok_or_else(|| format!("directory {} names missing inode {child}", dir.ino))?;
                if c.is_dir() {
                    if c.parent != dir.ino {
                        return Err(format!("directory {child} has two parents"));
                    }
                    *links.entry(dir.ino).or_default() += 1;
                } else {
                    *links.entry(*child).or_default() += 1;
                }
            }
        }
        for inode in inodes.values() {
            let expected = if inode.is_dir() {
                2 + links.get(&inode.ino).copied().unwrap_or(0)
            } else {
                links.get(&inode.ino).copied().unwrap_or(0)
            };
            if inode.nlink != expected {
                return Err(format!(
                    "inode {}: link count {} but {expected} names",
                    inode.ino, inode.nlink
                ));
            }
        }
        // Every inode hangs off the root: no detached subtree, no cycle.
        let mut seen = std::collections::HashSet::from([ROOT_INO]);
        let mut queue = vec![ROOT_INO];
        while let Some(dir) = queue.pop() {
            for child in inodes[&dir].dir().values() {
                if seen.insert(*child) && inodes[child].is_dir() {
                    queue.push(*child);
                }
            }
        }
        if let Some(lost) = inodes.keys().find(|ino| !seen.contains(ino)) {
            return Err(format!("inode {lost} is not reachable from the root"));
        }
        Ok(Namespace {
            state: Mutex::new(State {
                inodes,
                open: HashMap::new(),
                next_ino: image.next_ino,
                version: 0,
            }),
            ino_limit,
        })
    }

    /// Everything a checkpoint saves, and the version it saw. Open but
    /// unlinked inodes are left out: after a remount they are gone.
    pub fn image(&self) -> (NamespaceImage, u64) {
        let s = self.state.lock();
        let mut inodes: Vec<Inode> = s.inodes.values().filter(|i| i.nlink > 0).cloned().collect();
        inodes.sort_by_key(|i| i.ino);
        (
            NamespaceImage {
                next_ino: s.next_ino,
                inodes,
            },
            s.version,
        )
    }

    /// The change counter; it moves on every namespace change.
    pub fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// Record that something outside the namespace (a file's data) changed
    /// what a checkpoint would save.
    pub fn mark_changed(&self) {
        self.state.lock().version += 1;
    }

    /// A copy of one inode.
    pub fn getattr(&self, ino: u64) -> Result<Inode, NsError> {
        self.state.lock().get(ino).cloned()
    }

    /// Every regular file, with the size its inode recorded.
    pub fn regular_files(&self) -> Vec<(u64, u64)> {
        let s = self.state.lock();
        let mut v: Vec<(u64, u64)> = s
            .inodes
            .values()
            .filter(|i| i.kind == FileKind::Regular)
            .map(|i| (i.ino, i.size))
            .collect();
        v.sort_unstable();
        v
    }

    /// Number of inodes in use.
    pub fn nr_inodes(&self) -> u64 {
        self.state.lock().inodes.len() as u64
    }

    /// Models lookup (real_lookup → i_op->lookup).
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Inode, NsError> {
        if name.len() > NAME_MAX {
            return Err(NsError::NameTooLong);
        }
        let s = self.state.lock();
        let dir = s.dir(parent)?;
        let ino = match name {
            b"." => parent,
            b".." => dir.parent,
            _ => *dir.dir().get(name).ok_or(NsError::NotFound)?,
        };
        s.get(ino).cloned()
    }

    /// Models vfs_create / vfs_mkdir / vfs_mknod / vfs_symlink: a new inode
    /// under a new name. A directory with the set-group-ID bit passes its
    /// group (and, to subdirectories, the bit) on, as ext2 does.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        node: NewNode,
        cred: Cred,
        target: Option<&[u8]>,
    ) -> Result<Inode, NsError> {
        check_name(name)?;
        let mut s = self.state.lock();
        if s.child(parent, name)?.is_some() {
            return Err(NsError::Exists);
        }
        if s.next_ino >= self.ino_limit {
            return Err(NsError::NoInodes);
        }
        let dir = s.get(parent)?;
        if node.kind == FileKind::Directory && dir.nlink >= LINK_MAX {
            return Err(NsError::TooManyLinks);
        }
        let mut perm = node.perm & 0o7777;
        let mut gid = cred.gid;
        if dir.perm & libc::S_ISGID as u16 != 0 {
            gid = dir.gid;
            if node.kind == FileKind::Directory {
                perm |= libc::S_ISGID as u16;
            }
        }
        let ino = s.next_ino;
        s.next_ino += 1;
        let mut inode = Inode::new(ino, node.kind, perm, cred.uid, gid);
        inode.rdev = node.rdev;
        if let Some(t) = target {
            inode.size = t.len() as u64;
            inode.target = Some(t.to_vec());
        }
        if node.kind == FileKind::Directory {
            inode.parent = parent;
        }
        let dir = s.get_mut(parent)?;
        dir.dir_mut().insert(name.to_vec(), ino);
        if node.kind == FileKind::Directory {
            dir.nlink += 1;
        }
        dir.touch_mc();
        s.inodes.insert(ino, inode.clone());
        s.version += 1;
        Ok(inode)
    }

    /// Models vfs_link: a new name for an existing non-directory.
    pub fn link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<Inode, NsError> {
        check_name(name)?;
        let mut s = self.state.lock();
        if s.child(parent, name)?.is_some() {
            return Err(NsError::Exists);
        }
        let inode = s.get(ino)?;
        if inode.is_dir() {
            return Err(NsError::NotPermitted("hard link to a directory"));
        }
        if inode.nlink == 0 {
            return Err(NsError::NotFound);
        }
        if inode.nlink >= LINK_MAX {
            return Err(NsError::TooManyLinks);
        }
        let dir = s.get_mut(parent)?;
        dir.dir_mut().insert(name.to_vec(), ino);
        dir.touch_mc();
        let inode = s.get_mut(ino)?;
        inode.nlink += 1;
        inode.ctime = Timespec::now();
        let out = inode.clone();
        s.version += 1;
        Ok(out)
    }

    /// Models vfs_unlink: remove a non-directory's name.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<Option<Evict>, NsError> {
        if name.len() > NAME_MAX {
            return Err(NsError::NameTooLong);
        }
        let mut s = self.state.lock();
        let ino = s.child(parent, name)?.ok_or(NsError::NotFound)?;
        if s.get(ino)?.is_dir() {
            return Err(NsError::IsDir);
        }
        let dir = s.get_mut(parent)?;
        dir.dir_mut().remove(name);
        dir.touch_mc();
        s.version += 1;
        Ok(s.drop_link(ino))
    }

    /// Models vfs_rmdir: remove an empty directory.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<Option<Evict>, NsError> {
        if name.len() > NAME_MAX {
            return Err(NsError::NameTooLong);
        }
        if name == b"." {
            return Err(NsError::Invalid("rmdir of ."));
        }
        if name == b".." {
            return Err(NsError::NotEmpty);
        }
        let mut s = self.state.lock();
        let ino = s.child(parent, name)?.ok_or(NsError::NotFound)?;
        let victim = s.get(ino)?;
        if !victim.is_dir() {
            return Err(NsError::NotDir);
        }
        if !victim.dir().is_empty() {
            return Err(NsError::NotEmpty);
        }
        let dir = s.get_mut(parent)?;
        dir.dir_mut().remove(name);
        dir.nlink -= 1;
        dir.touch_mc();
        s.version += 1;
        Ok(s.drop_link(ino))
    }

    /// Models vfs_rename (with RENAME_NOREPLACE and RENAME_EXCHANGE): move
    /// a name, replacing an existing target of a compatible kind. Returns
    /// the replaced inode if that was its last name.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> Result<Option<Evict>, NsError> {
        check_name(newname)?;
        if name.len() > NAME_MAX {
            return Err(NsError::NameTooLong);
        }
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(NsError::Invalid("rename flags"));
        }
        let mut s = self.state.lock();
        let src = s.child(parent, name)?.ok_or(NsError::NotFound)?;
        s.dir(newparent)?;
        let dst = s.child(newparent, newname)?;
        let src_is_dir = s.get(src)?.is_dir();
        // A directory may not move below itself (EINVAL), and the target
        // directory may not be the source's descendant either way round.
        if src_is_dir && s.is_within(newparent, src) {
            return Err(NsError::Invalid("rename a directory into itself"));
        }
        if exchange {
            let dst = dst.ok_or(NsError::NotFound)?;
            if s.get(dst)?.is_dir() && s.is_within(parent, dst) {
                return Err(NsError::Invalid("rename a directory into itself"));
            }
            return self.exchange(&mut s, (parent, name, src), (newparent, newname, dst));
        }
        if let Some(dst) = dst {
            if noreplace {
                return Err(NsError::Exists);
            }
            if dst == src {
                return Ok(None); // two names of one inode: POSIX says do nothing
            }
            let target = s.get(dst)?;
            match (src_is_dir, target.is_dir()) {
                (true, false) => return Err(NsError::NotDir),
                (false, true) => return Err(NsError::IsDir),
                (true, true) if !target.dir().is_empty() => return Err(NsError::NotEmpty),
                _ => {}
            }
        }
        // Take the source name out, put it in, fix "..", link counts, times.
        let now = Timespec::now();
        let old = s.get_mut(parent)?;
        old.dir_mut().remove(name);
        if src_is_dir {
            old.nlink -= 1;
        }
        old.mtime = now;
        old.ctime = now;
        let new = s.get_mut(newparent)?;
        let replaced = new.dir_mut().insert(newname.to_vec(), src);
        if src_is_dir && replaced.is_none() {
            new.nlink += 1;
        }
        new.mtime = now;
        new.ctime = now;
        let moved = s.get_mut(src)?;
        moved.ctime = now;
        if src_is_dir {
            moved.parent = newparent;
        }
        s.version += 1;
        Ok(replaced.and_then(|dst| s.drop_link(dst)))
    }

    fn exchange(
        &self,
        s: &mut State,
        a: (u64, &[u8], u64),
        b: (u64, &[u8], u64),
    ) -> Result<Option<Evict>, NsError> {
        let (pa, na, ia) = a;
        let (pb, nb, ib) = b;
        let now = Timespec::now();
        let a_dir = s.get(ia)?.is_dir();
        let b_dir = s.get(ib)?.is_dir();
        s.get_mut(pa)?.dir_mut().insert(na.to_vec(), ib);
        s.get_mut(pb)?.dir_mut().insert(nb.to_vec(), ia);
        if pa != pb {
            let delta = a_dir as i64 - b_dir as i64;
            let da = s.get_mut(pa)?;
            da.nlink = (da.nlink as i64 - delta) as u32;
            let db = s.get_mut(pb)?;
            db.nlink = (db.nlink as i64 + delta) as u32;
        }
        for (ino, parent) in [(ia, pb), (ib, pa)] {
            let i = s.get_mut(ino)?;
            i.ctime = now;
            if i.is_dir() {
                i.parent = parent;
            }
        }
        for p in [pa, pb] {
            let d = s.get_mut(p)?;
            d.mtime = now;
            d.ctime = now;
        }
        s.version += 1;
        Ok(None)
    }

    /// Models notify_change for everything but the size.
    pub fn setattr(&self, ino: u64, attr: SetAttr) -> Result<Inode, NsError> {
        let mut s = self.state.lock();
        let inode = s.get_mut(ino)?;
        if let Some(perm) = attr.perm {
            inode.perm = perm & 0o7777;
        }
        if let Some(uid) = attr.uid {
            inode.uid = uid;
        }
        if let Some(gid) = attr.gid {
            inode.gid = gid;
        }
        if let Some(t) = attr.atime {
            inode.atime = t;
        }
        if let Some(t) = attr.mtime {
            inode.mtime = t;
        }
        inode.ctime = attr.ctime.unwrap_or_else(Timespec::now);
        let out = inode.clone();
        s.version += 1;
        Ok(out)
    }

    /// file_update_time after a write or a size change: mtime and ctime.
    pub fn touch_data(&self, ino: u64) {
        let mut s = self.state.lock();
        if let Ok(inode) = s.get_mut(ino) {
            inode.touch_mc();
        }
        s.version += 1;
    }

    /// Note the size a regular file has now, for the next checkpoint.
    pub fn record_size(&self, ino: u64, size: u64) {
        let mut s = self.state.lock();
        if let Ok(inode) = s.get_mut(ino)
            && inode.size != size
        {
            inode.size = size;
            s.version += 1;
        }
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, NsError> {
        let s = self.state.lock();
        s.get(ino)?
            .target
            .clone()
            .ok_or(NsError::Invalid("not a symlink"))
    }

    /// A directory's entries, "." and ".." first: a snapshot that
    /// readdir serves by position.
    pub fn readdir(&self, ino: u64) -> Result<Vec<DirEntry>, NsError> {
        let s = self.state.lock();
        let dir = s.dir(ino)?;
        let mut out = vec![
            DirEntry {
                ino,
                kind: FileKind::Directory,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: dir.parent,
                kind: FileKind::Directory,
                name: b"..".to_vec(),
            },
        ];
        for (name, child) in dir.dir() {
            let kind = s.get(*child)?.kind;
            out.push(DirEntry {
                ino: *child,
                kind,
                name: name.clone(),
            });
        }
        Ok(out)
    }

    /// A file was opened: it lives until released even if unlinked.
    pub fn open(&self, ino: u64) -> Result<Inode, NsError> {
        let mut s = self.state.lock();
        let inode = s.get(ino)?.clone();
        *s.open.entry(ino).or_default() += 1;
        Ok(inode)
    }

    /// Models the final iput after release: returns the eviction if the
    /// file has no name left and this was the last open.
    pub fn release(&self, ino: u64) -> Option<Evict> {
        let mut s = self.state.lock();
        let count = s.open.get_mut(&ino)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        s.open.remove(&ino);
        match s.inodes.get(&ino) {
            Some(i) if i.nlink == 0 => {
                let kind = i.kind;
                s.inodes.remove(&ino);
                Some(Evict { ino, kind })
            }
            _ => None,
        }
    }

    /// Directory children of `ino` by name, for tests and tools.
    pub fn children(&self, ino: u64) -> Result<BTreeMap<Vec<u8>, u64>, NsError> {
        Ok(self.state.lock().dir(ino)?.dir().clone())
    }
}

#[cfg(test)]
mod tests;
