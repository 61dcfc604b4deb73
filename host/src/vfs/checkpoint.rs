//! The namespace checkpoint: how a persistent mount keeps its directory
//! tree and inode attributes on the image, through the plugin's own data
//! path.
//!
//! The host owns the namespace but not the image's layout, so it stores
//! the namespace as file data: two reserved inodes ([`CKPT_INOS`]) hold
//! alternate checkpoints, written through the page cache and the plugin's
//! writepage like any file (the double-buffered superblock idea: a torn
//! write of one slot leaves the other intact). A checkpoint is
//!
//! ```text
//! 0   8  magic "AOPSNS01"
//! 8   8  generation (u64 LE; the newest valid slot wins)
//! 16  8  payload length (u64 LE)
//! 24  4  CRC-32C of the payload
//! 28  4  CRC-32C of bytes 0..28
//! 32  .. payload: the NamespaceImage as JSON
//! ```
//!
//! Order (ext3 data=ordered's rule): every file's dirty pages are written
//! back before the checkpoint that records their sizes.

use std::sync::Arc;

use aopsfs_plugin_sdk::blockmap::crc32c;
use parking_lot::Mutex;

use crate::engine::Engine;
use crate::error::VfsError;
use crate::fs::aops::SyncMode;
use crate::vfs::inode::FileKind;
use crate::vfs::namei::{Namespace, NamespaceImage};

/// The two checkpoint slots' inode numbers, far above any the namespace
/// hands out.
pub const CKPT_INOS: [u64; 2] = [u64::MAX - 2, u64::MAX - 1];

/// The namespace hands out inode numbers below this.
pub const NS_INO_LIMIT: u64 = u64::MAX - 16;

const MAGIC: &[u8; 8] = b"AOPSNS01";
const HEADER: usize = 32;
/// The largest checkpoint a load will read.
const MAX_CKPT: u64 = 1 << 30;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("namespace checkpoint (inode {ino}): {reason}")]
    Corrupt { ino: u64, reason: String },
    #[error("namespace checkpoint (inode {ino}): {source}")]
    Io {
        ino: u64,
        #[source]
        source: VfsError,
    },
    /// A file's data could not be written back before the checkpoint (the
    /// file's own fsync or close reports it too).
    #[error("writing back inode {ino} before the namespace checkpoint: {source}")]
    Writeback {
        ino: u64,
        #[source]
        source: VfsError,
    },
}

/// One decoded slot.
struct Slot {
    generation: u64,
    image: NamespaceImage,
}

/// Writes checkpoints for one mount.
pub struct Checkpointer {
    engine: Arc<Engine>,
    /// The last generation written, and the namespace version it saved.
    last: Mutex<(u64, Option<u64>)>,
    /// Files that lost their last name and opener, whose data is freed only
    /// once a checkpoint without them is on the image (as ext3 commits an
    /// unlink before it frees the blocks): until then the checkpoint on the
    /// image may still name them, and a crash must find their data intact.
    orphans: Mutex<Vec<u64>>,
}

impl Checkpointer {
    /// Load the newest valid checkpoint from the engine's plugin, opening
    /// every regular file it names with its recorded size. `Ok(None)` on a
    /// fresh image (no slot has the magic); an error when a slot has the
    /// magic but is damaged and no other slot is valid.
    pub fn load(
        engine: &Arc<Engine>,
    ) -> Result<(Checkpointer, Option<NamespaceImage>), CheckpointError> {
        let mut best: Option<Slot> = None;
        let mut damage: Option<CheckpointError> = None;
        let mut lens = [0u64; 2];
        for (i, ino) in CKPT_INOS.into_iter().enumerate() {
            match read_slot(engine, ino) {
                Ok(Some((slot, len))) => {
                    lens[i] = len;
                    if best.as_ref().is_none_or(|b| slot.generation > b.generation) {
                        best = Some(slot);
                    }
                }
                Ok(None) => {}
                Err(e) => damage = Some(e),
            }
        }
        // Give each slot its real i_size (it was opened at MAX_CKPT to read),
        // and reserve RESERVE bytes of storage in a never-written one.
        for (ino, len) in CKPT_INOS.into_iter().zip(lens) {
            reserve_slot(engine, ino, len).map_err(|source| CheckpointError::Io { ino, source })?;
        }
        if best.is_none()
            && let Some(e) = damage
        {
            return Err(e);
        }
        let generation = best.as_ref().map_or(0, |b| b.generation);
        let image = best.map(|b| b.image);
        if let Some(image) = &image {
            for inode in image.inodes.iter().filter(|i| i.kind == FileKind::Regular) {
                engine.open_with_size(inode.ino, inode.size);
            }
        }
        let ckpt = Checkpointer {
            engine: Arc::clone(engine),
            last: Mutex::new((generation, None)),
            orphans: Mutex::new(Vec::new()),
        };
        Ok((ckpt, image))
    }

    /// The generation of the newest checkpoint.
    pub fn generation(&self) -> u64 {
        self.last.lock().0
    }

    /// Models evict on a persistent mount: `ino` has no name and no
    /// opener; free its data after the next checkpoint. The caller marks
    /// the namespace changed after this, so that checkpoint comes.
    pub fn defer_evict(&self, ino: u64) {
        self.orphans.lock().push(ino);
    }

    /// Write back every file's dirty pages, then (if the namespace changed
    /// since the last one, or `force`) write a new checkpoint into the
    /// older slot and write that back too; then free the data of the files
    /// evicted before it began. Returns the first error.
    pub fn sync(&self, ns: &Namespace, force: bool) -> Result<(), CheckpointError> {
        let mut last = self.last.lock();
        // Taken before the namespace is copied: every inode here left the
        // namespace before it was deferred, so this checkpoint omits it.
        let orphans = std::mem::take(&mut *self.orphans.lock());
        let (committed, result) = self.write_checkpoint(&mut last, ns, force);
        if committed {
            for ino in orphans {
                if let Err(e) = self.engine.forget(ino) {
                    tracing::warn!("evicting inode {ino}: {e}");
                }
            }
        } else {
            // Not committed: keep them for the next checkpoint.
            self.orphans.lock().extend(orphans);
        }
        result
    }

    /// The body of `sync`, with `last` held. Also says whether the image
    /// now holds a checkpoint of the namespace as it was copied here.
    fn write_checkpoint(
        &self,
        last: &mut (u64, Option<u64>),
        ns: &Namespace,
        force: bool,
    ) -> (bool, Result<(), CheckpointError>) {
        let data = self.writeback_files();
        let (mut image, version) = ns.image();
        if !force && last.1 == Some(version) {
            return (true, data);
        }
        for inode in image.inodes.iter_mut() {
            if inode.kind == FileKind::Regular
                && let Ok(size) = self.engine.size(inode.ino)
            {
                inode.size = size;
            }
        }
        let generation = last.0 + 1;
        let ino = CKPT_INOS[(generation % 2) as usize];
        let bytes = encode(generation, &image);
        let io = |source| CheckpointError::Io { ino, source };
        // Overwrite in place, never shrink: the slot keeps the storage it
        // has, so a full image can still take a checkpoint that fits.
        self.engine.open(ino);
        let written = self
            .engine
            .write(ino, 0, &bytes)
            .and_then(|_| self.engine.fsync(ino));
        if let Err(source) = written {
            return (false, Err(io(source)));
        }
        *last = (generation, Some(version));
        (true, data)
    }

    /// Write back every file but the checkpoint slots and wait
    /// (filemap_write_and_wait without taking the error: it stays on the
    /// mapping for the file's own fsync or close). The first error wins.
    fn writeback_files(&self) -> Result<(), CheckpointError> {
        let mut first = Ok(());
        for ino in self.engine.inos() {
            if CKPT_INOS.contains(&ino) {
                continue;
            }
            match self.engine.writeback(ino, SyncMode::All) {
                Ok(()) | Err(VfsError::NoInode(_)) => {}
                Err(source) => {
                    if first.is_ok() {
                        first = Err(CheckpointError::Writeback { ino, source });
                    }
                }
            }
        }
        first
    }
}

/// Storage each checkpoint slot keeps even when the namespace is small.
pub const RESERVE: u64 = 256 << 10;

/// Set a slot's i_size after a load: its checkpoint's length rounded up
/// to the reserve; a slot never written gets RESERVE zero bytes written so
/// its storage is allocated now, while the image has room.
fn reserve_slot(engine: &Engine, ino: u64, len: u64) -> Result<(), VfsError> {
    let keep = len.next_multiple_of(RESERVE).max(RESERVE);
    engine.truncate(ino, keep)?;
    if len == 0 {
        engine.write(ino, 0, &vec![0u8; RESERVE as usize])?;
        engine.fsync(ino)?;
    }
    Ok(())
}

/// The bytes of one checkpoint.
fn encode(generation: u64, image: &NamespaceImage) -> Vec<u8> {
    let payload = serde_json::to_vec(image).expect("a namespace image serializes");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c(&payload).to_le_bytes());
    let header_crc = crc32c(&out[..28]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decode one checkpoint: `Ok(None)` when it has no magic (never written).
fn decode(bytes: &[u8]) -> Result<Option<Slot>, String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Ok(None);
    }
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    if crc32c(&bytes[..28]) != u32_at(28) {
        return Err("header checksum mismatch".into());
    }
    let (generation, len) = (u64_at(8), u64_at(16));
    let payload = bytes
        .get(HEADER..HEADER.saturating_add(len as usize))
        .ok_or_else(|| format!("payload of {len} bytes is cut short"))?;
    if crc32c(payload) != u32_at(24) {
        return Err("payload checksum mismatch".into());
    }
    let image = serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
    Ok(Some(Slot { generation, image }))
}

/// Read one slot through the engine; returns the slot and its length.
fn read_slot(engine: &Engine, ino: u64) -> Result<Option<(Slot, u64)>, CheckpointError> {
    let io = |source| CheckpointError::Io { ino, source };
    engine.open_with_size(ino, MAX_CKPT);
    let mut header = [0u8; HEADER];
    let n = engine.read(ino, 0, &mut header).map_err(io)?;
    if n < HEADER || &header[..8] != MAGIC {
        return Ok(None);
    }
    let len = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    if len > MAX_CKPT - HEADER as u64 {
        return Err(CheckpointError::Corrupt {
            ino,
            reason: format!("payload length {len} is impossible"),
        });
    }
    let mut bytes = vec![0u8; HEADER + len as usize];
    let n = engine.read(ino, 0, &mut bytes).map_err(io)?;
    bytes.truncate(n);
    match decode(&bytes) {
        Ok(Some(slot)) => Ok(Some((slot, HEADER as u64 + len))),
        Ok(None) => Ok(None),
        Err(reason) => Err(CheckpointError::Corrupt { ino, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineConfig;
    use crate::fs::memstore::{MemStore, MemStoreAops};
    use crate::vfs::inode::ROOT_INO;
    use crate::vfs::namei::{Cred, NewNode};

    const ROOT: Cred = Cred { uid: 0, gid: 0 };

    fn engine(store: &Arc<MemStore>) -> Arc<Engine> {
        Engine::new(
            Arc::new(MemStoreAops::new(Arc::clone(store))),
            EngineConfig::default(),
        )
    }

    fn sample(engine: &Engine) -> Namespace {
        let ns = Namespace::new(ROOT, 0o755, NS_INO_LIMIT);
        let d = ns
            .create(
                ROOT_INO,
                b"dir",
                NewNode {
                    kind: FileKind::Directory,
                    perm: 0o750,
                    rdev: 0,
                },
                ROOT,
                None,
            )
            .unwrap();
        let f = ns
            .create(
                d.ino,
                b"file",
                NewNode {
                    kind: FileKind::Regular,
                    perm: 0o640,
                    rdev: 0,
                },
                ROOT,
                None,
            )
            .unwrap();
        engine.open(f.ino);
        engine.write(f.ino, 100, b"hello").unwrap();
        ns.create(
            ROOT_INO,
            b"link",
            NewNode {
                kind: FileKind::Symlink,
                perm: 0o777,
                rdev: 0,
            },
            ROOT,
            Some(b"dir/file"),
        )
        .unwrap();
        ns
    }

    #[test]
    fn a_checkpoint_survives_a_remount_with_sizes_and_data() {
        let store = MemStore::new();
        let e1 = engine(&store);
        let (ckpt, image) = Checkpointer::load(&e1).unwrap();
        assert!(image.is_none(), "a fresh store has no checkpoint");
        let ns = sample(&e1);
        ckpt.sync(&ns, false).unwrap();
        drop((ckpt, e1));

        let e2 = engine(&store);
        let (_, image) = Checkpointer::load(&e2).unwrap();
        let image = image.expect("checkpoint found");
        let ns2 = Namespace::from_image(image, NS_INO_LIMIT).unwrap();
        let mut expected = ns.image().0;
        for inode in expected.inodes.iter_mut() {
            if inode.kind == FileKind::Regular {
                inode.size = 105;
            }
        }
        assert_eq!(ns2.image().0, expected);
        let f = ns2
            .lookup(ns2.lookup(ROOT_INO, b"dir").unwrap().ino, b"file")
            .unwrap();
        let mut buf = [0u8; 105];
        assert_eq!(e2.read(f.ino, 0, &mut buf).unwrap(), 105);
        assert_eq!(&buf[100..], b"hello");
    }

    #[test]
    fn the_newer_slot_wins_and_a_torn_one_falls_back() {
        let store = MemStore::new();
        let e1 = engine(&store);
        let (ckpt, _) = Checkpointer::load(&e1).unwrap();
        let ns = sample(&e1);
        ckpt.sync(&ns, false).unwrap(); // generation 1 → slot 1
        ns.create(
            ROOT_INO,
            b"late",
            NewNode {
                kind: FileKind::Regular,
                perm: 0o600,
                rdev: 0,
            },
            ROOT,
            None,
        )
        .unwrap();
        ckpt.sync(&ns, false).unwrap(); // generation 2 → slot 0
        assert_eq!(ckpt.generation(), 2);
        // Tear the newest slot (inode CKPT_INOS[0]): flip a payload byte.
        e1.write(CKPT_INOS[0], 40, b"#").unwrap();
        e1.fsync(CKPT_INOS[0]).unwrap();
        drop((ckpt, e1));

        let e2 = engine(&store);
        let (ckpt2, image) = Checkpointer::load(&e2).unwrap();
        assert_eq!(ckpt2.generation(), 1);
        let ns2 = Namespace::from_image(image.unwrap(), NS_INO_LIMIT).unwrap();
        assert!(
            ns2.lookup(ROOT_INO, b"late").is_err(),
            "generation 1 predates it"
        );
        assert!(ns2.lookup(ROOT_INO, b"dir").is_ok());
    }

    #[test]
    fn a_damaged_only_checkpoint_is_an_error_naming_it() {
        let store = MemStore::new();
        let e1 = engine(&store);
        let (ckpt, _) = Checkpointer::load(&e1).unwrap();
        ckpt.sync(&sample(&e1), false).unwrap();
        e1.write(CKPT_INOS[1], 10, b"\xff").unwrap();
        e1.fsync(CKPT_INOS[1]).unwrap();
        let e2 = engine(&store);
        let err = Checkpointer::load(&e2).err().expect("damaged");
        let msg = err.to_string();
        assert!(
            msg.contains("namespace checkpoint") && msg.contains("checksum"),
            "{msg}"
        );
    }
}
