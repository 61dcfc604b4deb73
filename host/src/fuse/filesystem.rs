//! The FUSE request handlers: each FUSE operation becomes a namespace
//! operation (fs/namei.c's side) or an engine call (mm/filemap.c's side).
//! Plays the part fs/fuse/ plays in the kernel, but on the server side:
//! the kernel forwards the system call, this decides the answer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use crate::engine::Engine;
use crate::error::VfsError;
use crate::mm::page::PAGE_SIZE;
use crate::vfs::checkpoint::{CKPT_INOS, Checkpointer};
use crate::vfs::inode::{FileKind, Inode, NAME_MAX, Timespec};
use crate::vfs::namei::{Cred, DirEntry, Evict, Namespace, NewNode, NsError, SetAttr};

/// How the mount answers the kernel's caching questions.
#[derive(Clone, Copy, Debug)]
pub struct CacheMode {
    /// false (the default): every open file is FOPEN_DIRECT_IO, so each
    /// read and write reaches the engine and the plugin. true: the kernel
    /// caches file pages too (faster; the kernel answers repeated reads).
    pub kernel_cache: bool,
}

/// What `statfs` reports about the backing store.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Total bytes of the store (the image, or the cache limit for a
    /// memory-only plugin).
    pub bytes: u64,
}

/// The filesystem a mount serves.
pub struct AopsFs {
    engine: Arc<Engine>,
    ns: Arc<Namespace>,
    checkpoint: Option<Arc<Checkpointer>>,
    mode: CacheMode,
    capacity: Capacity,
    /// readdir snapshots by directory handle.
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// File handles written through since open: their close writes back.
    written: Mutex<std::collections::HashSet<u64>>,
    next_fh: AtomicU64,
}

/// How long the kernel may trust a name (entry) or attributes. Attributes
/// are never cached in the default mode: the engine's i_size is the truth.
const ENTRY_TTL: Duration = Duration::from_secs(1);

fn ns_err(e: NsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn vfs_err(what: &str, ino: u64, e: &VfsError) -> Errno {
    let errno = e.errno();
    if matches!(e, VfsError::Contract(_) | VfsError::Livelock { .. }) {
        tracing::error!("{what} inode {ino}: {e} (returning EIO)");
    } else {
        tracing::debug!("{what} inode {ino}: {e}");
    }
    Errno::from_i32(errno.raw())
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Regular => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

fn time(t: TimeOrNow) -> Timespec {
    match t {
        TimeOrNow::Now => Timespec::now(),
        TimeOrNow::SpecificTime(t) => Timespec::from(t),
    }
}

impl AopsFs {
    pub fn new(
        engine: Arc<Engine>,
        ns: Arc<Namespace>,
        checkpoint: Option<Arc<Checkpointer>>,
        mode: CacheMode,
        capacity: Capacity,
    ) -> AopsFs {
        AopsFs {
            engine,
            ns,
            checkpoint,
            mode,
            capacity,
            dirs: Mutex::new(HashMap::new()),
            written: Mutex::new(Default::default()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn attr_ttl(&self) -> Duration {
        if self.mode.kernel_cache {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    }

    fn open_flags(&self) -> FopenFlags {
        if self.mode.kernel_cache {
            // Every access goes through this one kernel mount, so its cache
            // stays coherent across opens.
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::FOPEN_DIRECT_IO
        }
    }

    /// struct stat for an inode: a regular file's size is the engine's.
    fn attr(&self, inode: &Inode) -> FileAttr {
        let size = match inode.kind {
            FileKind::Regular => self.engine.size(inode.ino).unwrap_or(inode.size),
            FileKind::Directory => PAGE_SIZE as u64,
            _ => inode.size,
        };
        FileAttr {
            ino: INodeNo(inode.ino),
            size,
            blocks: size.div_ceil(512),
            atime: inode.atime.into(),
            mtime: inode.mtime.into(),
            ctime: inode.ctime.into(),
            crtime: inode.ctime.into(),
            kind: file_type(inode.kind),
            perm: inode.perm,
            nlink: inode.nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: inode.rdev,
            blksize: PAGE_SIZE as u32,
            flags: 0,
        }
    }

    /// Models evict: free a file's data once it has no name and no opener.
    fn evict(&self, evict: Option<Evict>) {
        if let Some(Evict {
            ino,
            kind: FileKind::Regular,
        }) = evict
        {
            match &self.checkpoint {
                // The checkpoint on the image may still name it: free its
                // data once a checkpoint without it is written.
                Some(checkpoint) => checkpoint.defer_evict(ino),
                None => {
                    if let Err(e) = self.engine.forget(ino) {
                        tracing::warn!("evicting inode {ino}: {e}");
                    }
                }
            }
            self.ns.mark_changed();
        }
    }

    fn new_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        node: NewNode,
        target: Option<&[u8]>,
    ) -> Result<Inode, Errno> {
        let cred = Cred {
            uid: req.uid(),
            gid: req.gid(),
        };
        let inode = self
            .ns
            .create(parent.0, name.as_bytes(), node, cred, target)
            .map_err(ns_err)?;
        if inode.kind == FileKind::Regular {
            self.engine.open(inode.ino);
        }
        Ok(inode)
    }

    /// Reply to an operation that may have removed a file's last name.
    fn reply_removal(&self, reply: ReplyEmpty, r: Result<Option<Evict>, NsError>) {
        match r {
            Ok(evict) => {
                self.evict(evict);
                reply.ok()
            }
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn reply_entry(&self, reply: ReplyEntry, r: Result<Inode, Errno>) {
        match r {
            Ok(inode) => reply.entry(&ENTRY_TTL, &self.attr(&inode), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    /// fsync's metadata half on a persistent mount: write back every file,
    /// then a namespace checkpoint.
    fn commit(&self) -> Result<(), Errno> {
        match &self.checkpoint {
            Some(c) => c.sync(&self.ns, false).map_err(|e| {
                tracing::error!("{e}");
                match &e {
                    crate::vfs::checkpoint::CheckpointError::Io { source, .. }
                    | crate::vfs::checkpoint::CheckpointError::Writeback { source, .. } => {
                        Errno::from_i32(source.errno().raw())
                    }
                    _ => Errno::EIO,
                }
            }),
            None => Ok(()),
        }
    }
}

fn mode_node(mode: u32, umask: u32, rdev: u32) -> Result<NewNode, Errno> {
    let kind = FileKind::from_mode(mode).ok_or(Errno::EINVAL)?;
    Ok(NewNode {
        kind,
        perm: (mode & !umask & 0o7777) as u16,
        rdev,
    })
}

impl Filesystem for AopsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // mmap of a FOPEN_DIRECT_IO file needs this (Linux 6.6+); without
        // it MAP_SHARED mappings fail with ENODEV.
        if !self.mode.kernel_cache
            && let Err(missing) = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
        {
            tracing::warn!(
                "kernel lacks {missing:?}: shared mmap of files needs --kernel-cache on this kernel"
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.ns.lookup(parent.0, name.as_bytes()).map_err(ns_err);
        self.reply_entry(reply, r);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.ns.getattr(ino.0) {
            Ok(inode) => reply.attr(&self.attr_ttl(), &self.attr(&inode)),
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let ino = ino.0;
        if let Some(size) = size {
            match self.ns.getattr(ino) {
                Ok(i) if i.kind == FileKind::Regular => {}
                Ok(i) if i.is_dir() => return reply.error(Errno::EISDIR),
                Ok(_) => return reply.error(Errno::EINVAL),
                Err(e) => return reply.error(ns_err(e)),
            }
            if let Err(e) = self.engine.truncate(ino, size) {
                return reply.error(vfs_err("truncate", ino, &e));
            }
            self.ns.touch_data(ino);
        }
        let change = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
            ctime: ctime.map(Timespec::from),
        };
        match self.ns.setattr(ino, change) {
            Ok(inode) => reply.attr(&self.attr_ttl(), &self.attr(&inode)),
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ns.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r =
            mode_node(mode, umask, rdev).and_then(|n| self.new_node(req, parent, name, n, None));
        self.reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let node = NewNode {
            kind: FileKind::Directory,
            perm: (mode & !umask & 0o7777) as u16,
            rdev: 0,
        };
        let r = self.new_node(req, parent, name, node, None);
        self.reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_removal(reply, self.ns.unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.reply_removal(reply, self.ns.rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = target.as_os_str().as_bytes();
        let node = NewNode {
            kind: FileKind::Symlink,
            perm: 0o777,
            rdev: 0,
        };
        let r = if target.len() >= libc::PATH_MAX as usize {
            Err(Errno::ENAMETOOLONG)
        } else {
            self.new_node(req, parent, link_name, node, Some(target))
        };
        self.reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.ns.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        self.reply_removal(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self
            .ns
            .link(ino.0, newparent.0, newname.as_bytes())
            .map_err(ns_err);
        self.reply_entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.ns.open(ino.0) {
            Ok(inode) => {
                if inode.kind == FileKind::Regular {
                    self.engine.open(ino.0);
                }
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.opened(FileHandle(fh), self.open_flags());
            }
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut buf = vec![0u8; size as usize];
        match self.engine.read(ino.0, offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(vfs_err("read", ino.0, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.engine.write(ino.0, offset, data) {
            Ok(n) => {
                self.ns.touch_data(ino.0);
                self.written.lock().insert(fh.0);
                reply.written(n as u32)
            }
            Err(e) => reply.error(vfs_err("write", ino.0, &e)),
        }
    }

    /// close(): a handle that wrote writes its file back first and returns
    /// the writeback error (NFS's close-to-open rule), so ENOSPC or EIO from
    /// the plugin reaches the program instead of being lost.
    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if !self.written.lock().remove(&fh.0) {
            return reply.ok();
        }
        match self.engine.fsync(ino.0) {
            Ok(()) | Err(VfsError::NoInode(_)) => reply.ok(),
            Err(e) => reply.error(vfs_err("close", ino.0, &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.written.lock().remove(&fh.0);
        let evict = self.ns.release(ino.0);
        self.evict(evict);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.engine.fsync(ino.0) {
            return reply.error(vfs_err("fsync", ino.0, &e));
        }
        match self.commit() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.ns.readdir(ino.0) {
            Ok(entries) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.dirs.lock().insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let snapshot = self.dirs.lock().get(&fh.0).cloned();
        let entries = match snapshot {
            Some(entries) => entries,
            // A handle we never issued: read the directory as it is now.
            None => match self.ns.readdir(ino.0) {
                Ok(e) => Arc::new(e),
                Err(e) => return reply.error(ns_err(e)),
            },
        };
        for (i, entry) in entries.iter().enumerate().skip(offset as usize) {
            let name = OsStr::from_bytes(&entry.name);
            if reply.add(
                INodeNo(entry.ino),
                i as u64 + 1,
                file_type(entry.kind),
                name,
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.commit() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bsize = PAGE_SIZE as u64;
        let blocks = self.capacity.bytes / bsize;
        let used: u64 = self
            .engine
            .inos()
            .into_iter()
            .filter(|ino| !CKPT_INOS.contains(ino))
            .filter_map(|ino| self.engine.size(ino).ok())
            .map(|s| s.div_ceil(bsize))
            .sum();
        let free = blocks.saturating_sub(used);
        let files = 1u64 << 32;
        let ffree = files.saturating_sub(self.ns.nr_inodes());
        reply.statfs(
            blocks,
            free,
            free,
            files,
            ffree,
            bsize as u32,
            NAME_MAX as u32,
            bsize as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel has already checked the mode.
        match self.ns.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(ns_err(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let r = mode_node(mode, umask, 0)
            .and_then(|n| self.new_node(req, parent, name, n, None))
            .and_then(|inode| self.ns.open(inode.ino).map_err(ns_err));
        match r {
            Ok(inode) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.created(
                    &ENTRY_TTL,
                    &self.attr(&inode),
                    Generation(0),
                    FileHandle(fh),
                    self.open_flags(),
                );
            }
            Err(e) => reply.error(e),
        }
    }

    // Extended attributes are not supported: say so quietly (cp -a and ls
    // ask for them on every file).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENODATA);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // No aop reserves space; glibc's posix_fallocate falls back to
        // writing, which goes through prepare_write like any write.
        reply.error(Errno::EOPNOTSUPP);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No file here is a terminal or takes ioctls: ENOTTY, what isatty()
        // expects, and quietly (every `ls` or shell redirection asks).
        reply.error(Errno::ENOTTY);
    }
}
