//! The versioned-history oracle: what a read of a file may return while
//! other threads write and truncate it (fsx's model, made safe for races).
//!
//! Mutators of one file (writes, truncates) are serialised by the file's
//! [`Mutation`] guard, as i_mutex serialises them in the engine. Each one
//! publishes the file's next version *before* it calls the engine
//! (`started`) and marks it applied when the engine returns (`completed`).
//! Readers take no lock: they race with writes, truncates, reclaim and each
//! other. A read is correct when every page-sized chunk of what it returned
//! equals that chunk in some version from the last one completed when the
//! read began ([`Oracle::begin_read`]) to the last one started when it ended
//! ([`Oracle::check_read`]). A page is copied atomically under its lock; a
//! read spanning pages is not atomic, as in the kernel.
//!
//! When only one version is possible (no mutation raced with the read) the
//! check is exact: same length, same bytes.
//!
//! Bytes the oracle cannot know (a write that failed part-way may or may not
//! have reached the page cache) are kept as *unknown* ranges of a version's
//! [`Contents`] and match anything.
//!
//! Versions nobody can still need are dropped: each reader publishes the
//! oldest version it may check against (its floor) before it reads.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::mm::page::PAGE_SIZE;

/// One version of a file: its bytes (the length is i_size) and the ranges
/// whose bytes are unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    bytes: Vec<u8>,
    /// Sorted, disjoint, non-empty byte ranges that match any value. They
    /// may extend past the end of the file: a failed write past EOF can
    /// leave bytes in a cached page that a later extension exposes.
    unknown: Vec<Range<usize>>,
}

impl Contents {
    /// A file holding exactly `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Contents {
            bytes,
            unknown: Vec::new(),
        }
    }

    /// The bytes (unknown ones as the model last had them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The unknown byte ranges.
    pub fn unknown(&self) -> &[Range<usize>] {
        &self.unknown
    }

    /// Apply a write of `data` at `pos` (extending with zeros as needed):
    /// the written bytes become known.
    pub fn write(&mut self, pos: u64, data: &[u8]) {
        let start = pos as usize;
        let end = start + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(data);
        self.forget_unknown(start..end);
    }

    /// Apply a truncate to `size` (shrink, or extend with zeros). Bytes past
    /// a shrinking size are zeroed or dropped by truncate, so unknown ranges
    /// are clipped to the new size.
    pub fn truncate(&mut self, size: u64) {
        let size = size as usize;
        if size < self.bytes.len() {
            self.forget_unknown(size..usize::MAX);
        }
        self.bytes.resize(size, 0);
    }

    /// Mark `range` as unknown: any byte value there is accepted.
    pub fn mark_unknown(&mut self, range: Range<u64>) {
        let range = range.start as usize..range.end as usize;
        if range.is_empty() {
            return;
        }
        self.unknown.push(range);
        self.unknown.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(self.unknown.len());
        for r in self.unknown.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.unknown = merged;
    }

    /// Remove `range` from the unknown ranges.
    fn forget_unknown(&mut self, range: Range<usize>) {
        if self.unknown.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(self.unknown.len() + 1);
        for r in self.unknown.drain(..) {
            if r.end <= range.start || r.start >= range.end {
                kept.push(r);
                continue;
            }
            if r.start < range.start {
                kept.push(r.start..range.start);
            }
            if r.end > range.end {
                kept.push(range.end..r.end);
            }
        }
        self.unknown = kept;
    }

    /// Whether byte `offset` is unknown.
    pub fn is_unknown(&self, offset: usize) -> bool {
        self.unknown.iter().any(|r| r.contains(&offset))
    }

    /// What a read of `len` bytes at `pos` returns: clipped at EOF.
    pub fn read(&self, pos: u64, len: usize) -> &[u8] {
        let start = (pos as usize).min(self.bytes.len());
        let end = (pos as usize).saturating_add(len).min(self.bytes.len());
        &self.bytes[start..end]
    }

    /// The length a read of `len` bytes at `pos` returns.
    fn read_len(&self, pos: u64, len: usize) -> usize {
        self.read(pos, len).len()
    }

    /// The first offset in `[start, start + got.len())` where `got` differs
    /// from the known bytes (an offset past EOF always differs).
    fn first_difference(&self, start: usize, got: &[u8]) -> Option<usize> {
        if self.unknown.is_empty() && start + got.len() <= self.bytes.len() {
            return got
                .iter()
                .zip(&self.bytes[start..])
                .position(|(a, b)| a != b)
                .map(|i| start + i);
        }
        (0..got.len())
            .map(|i| start + i)
            .find(|&abs| !self.is_unknown(abs) && self.bytes.get(abs) != Some(&got[abs - start]))
    }

    /// Whether `got` equals the bytes at `start` (unknown bytes match
    /// anything; bytes past EOF match nothing).
    pub fn matches(&self, start: usize, got: &[u8]) -> bool {
        start + got.len() <= self.bytes.len() && self.first_difference(start, got).is_none()
    }
}

/// Every version of one file since the oldest one a reader may still need.
struct History {
    /// Version number of `versions[0]`.
    base: u64,
    versions: VecDeque<Arc<Contents>>,
}

/// One file of the oracle.
struct VersionedFile {
    /// Serialises mutators (the model's i_mutex).
    mutator: Mutex<()>,
    history: Mutex<History>,
    /// The newest version an operation has started to apply.
    started: AtomicU64,
    /// The newest version fully applied.
    completed: AtomicU64,
}

/// The versioned model of a set of files, shared by every thread of a run.
pub struct Oracle {
    files: Vec<VersionedFile>,
    /// `floors[reader][file]`: the oldest version reader `reader` may check
    /// against on `file`, `u64::MAX` when it is not reading it.
    floors: Vec<Vec<AtomicU64>>,
}

/// A read in progress: from which version on its result may come.
#[derive(Debug)]
#[must_use = "a read must be checked to release its hold on old versions"]
pub struct ReadTicket {
    reader: usize,
    file: usize,
    from: u64,
}

/// A mutation in progress: holds the file's mutator lock. Dropping it marks
/// every version it published as applied.
pub struct Mutation<'o> {
    oracle: &'o Oracle,
    file: usize,
    latest: Arc<Contents>,
    _mutator: MutexGuard<'o, ()>,
}

impl Oracle {
    /// An oracle over files with the given initial contents, for `readers`
    /// reading threads (numbered `0..readers`).
    pub fn new(initial: Vec<Contents>, readers: usize) -> Oracle {
        let nfiles = initial.len();
        Oracle {
            files: initial
                .into_iter()
                .map(|contents| VersionedFile {
                    mutator: Mutex::new(()),
                    history: Mutex::new(History {
                        base: 0,
                        versions: VecDeque::from([Arc::new(contents)]),
                    }),
                    started: AtomicU64::new(0),
                    completed: AtomicU64::new(0),
                })
                .collect(),
            floors: (0..readers)
                .map(|_| (0..nfiles).map(|_| AtomicU64::new(u64::MAX)).collect())
                .collect(),
        }
    }

    /// How many files.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// The newest published version of `file`.
    pub fn latest(&self, file: usize) -> Arc<Contents> {
        Arc::clone(
            self.files[file]
                .history
                .lock()
                .versions
                .back()
                .expect("a file always has a version"),
        )
    }

    /// How many versions of `file` are kept now (for tests of trimming).
    pub fn versions_kept(&self, file: usize) -> usize {
        self.files[file].history.lock().versions.len()
    }

    /// Start mutating `file`: waits for other mutators of it.
    pub fn mutate(&self, file: usize) -> Mutation<'_> {
        let guard = self.files[file].mutator.lock();
        Mutation {
            oracle: self,
            file,
            latest: self.latest(file),
            _mutator: guard,
        }
    }

    /// Register `reader` as reading `file` and return its ticket. Call it
    /// before calling the engine.
    pub fn begin_read(&self, reader: usize, file: usize) -> ReadTicket {
        let floor = &self.floors[reader][file];
        let vf = &self.files[file];
        // Publish the floor before checking its version is still kept, so a
        // concurrent trim never drops the version we start from.
        loop {
            let from = vf.completed.load(Ordering::SeqCst);
            floor.store(from, Ordering::SeqCst);
            if vf.history.lock().base <= from {
                return ReadTicket { reader, file, from };
            }
        }
    }

    /// The versions a read that began with `ticket` and ends now may see;
    /// releases the ticket's floor.
    fn end_read(&self, ticket: ReadTicket) -> Vec<Arc<Contents>> {
        let vf = &self.files[ticket.file];
        let to = vf.started.load(Ordering::SeqCst);
        let versions = {
            let history = vf.history.lock();
            assert!(
                ticket.from >= history.base,
                "a version a reader needs was dropped"
            );
            let lo = (ticket.from - history.base) as usize;
            let hi = (to - history.base) as usize;
            history.versions.range(lo..=hi).cloned().collect()
        };
        self.floors[ticket.reader][ticket.file].store(u64::MAX, Ordering::SeqCst);
        versions
    }

    /// Check what a read of `len` bytes at `pos` returned.
    pub fn check_read(
        &self,
        ticket: ReadTicket,
        pos: u64,
        len: usize,
        got: &[u8],
    ) -> Result<(), Box<Mismatch>> {
        let file = ticket.file;
        let versions = self.end_read(ticket);
        check_read(&versions, pos, len, got).map_err(|mut m| {
            m.file = file;
            m
        })
    }

    /// Check a read that may have stopped early because an operation failed
    /// while it ran (the read loop returns the bytes it read before an I/O
    /// error): what it returned must still be right. `Ok(true)` when it was
    /// short.
    pub fn check_read_allowing_short(
        &self,
        ticket: ReadTicket,
        pos: u64,
        len: usize,
        got: &[u8],
    ) -> Result<bool, Box<Mismatch>> {
        let file = ticket.file;
        let versions = self.end_read(ticket);
        match check_read(&versions, pos, len, got) {
            Ok(()) => Ok(false),
            Err(_) if got.len() < len && check_read(&versions, pos, got.len(), got).is_ok() => {
                Ok(true)
            }
            Err(mut m) => {
                m.file = file;
                Err(m)
            }
        }
    }

    /// Check what a fault on page `pgoff` mapped (`None`: SIGBUS).
    pub fn check_fault(
        &self,
        ticket: ReadTicket,
        pgoff: u64,
        got: Option<&[u8]>,
    ) -> Result<(), Box<Mismatch>> {
        let file = ticket.file;
        let versions = self.end_read(ticket);
        check_fault(&versions, pgoff, got).map_err(|mut m| {
            m.file = file;
            m
        })
    }

    /// Give up a read without checking it (the engine returned an error).
    pub fn abandon_read(&self, ticket: ReadTicket) {
        self.floors[ticket.reader][ticket.file].store(u64::MAX, Ordering::SeqCst);
    }
}

impl Mutation<'_> {
    /// The newest version (including ones this mutation published).
    pub fn current(&self) -> &Contents {
        &self.latest
    }

    /// Publish the file's next version. Call it before the engine call that
    /// applies it, and again with the corrected version if the call did
    /// something else (a short or failed write).
    pub fn publish(&mut self, next: Contents) {
        let oracle = self.oracle;
        let vf = &oracle.files[self.file];
        let next = Arc::new(next);
        let mut history = vf.history.lock();
        history.versions.push_back(Arc::clone(&next));
        vf.started.fetch_add(1, Ordering::SeqCst);
        let oldest_needed = oracle
            .floors
            .iter()
            .map(|f| f[self.file].load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        // The last completed version is the one new readers start from.
        let keep_from = oldest_needed.min(vf.completed.load(Ordering::SeqCst));
        while history.base < keep_from {
            history.versions.pop_front();
            history.base += 1;
        }
        self.latest = next;
    }
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        let vf = &self.oracle.files[self.file];
        vf.completed
            .store(vf.started.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// A read or fault that matches no version it could have seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The file (oracle index).
    pub file: usize,
    /// The file offset the read started at (a fault: the page's offset).
    pub pos: u64,
    /// The bytes asked for.
    pub requested: usize,
    /// What the engine returned (a fault that raised SIGBUS: empty).
    pub actual: Vec<u8>,
    /// What the most plausible version holds there.
    pub expected: Vec<u8>,
    /// Offsets (relative to `pos`) of expected bytes that are unknown.
    pub expected_unknown: Vec<Range<usize>>,
    /// The first file offset where actual and expected differ.
    pub first_difference: Option<u64>,
    /// How many versions the read could have seen.
    pub candidates: usize,
    /// Why it was rejected.
    pub reason: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Mismatch {}

/// Build the mismatch report against the version that matches longest.
fn mismatch(
    versions: &[Arc<Contents>],
    pos: u64,
    len: usize,
    got: &[u8],
    reason: String,
) -> Box<Mismatch> {
    let start = pos as usize;
    let closest = versions
        .iter()
        .max_by_key(|v| v.first_difference(start, got).unwrap_or(usize::MAX))
        .expect("at least one version");
    let expected = closest.read(pos, len).to_vec();
    let expected_unknown = closest
        .unknown
        .iter()
        .filter_map(|r| {
            let lo = r.start.max(start);
            let hi = r.end.min(start + expected.len());
            (lo < hi).then(|| lo - start..hi - start)
        })
        .collect();
    let first_difference = closest
        .first_difference(start, &got[..got.len().min(expected.len())])
        .or_else(|| (got.len() != expected.len()).then(|| start + got.len().min(expected.len())))
        .map(|o| o as u64);
    Box::new(Mismatch {
        file: 0,
        pos,
        requested: len,
        actual: got.to_vec(),
        expected,
        expected_unknown,
        first_difference,
        candidates: versions.len(),
        reason,
    })
}

/// Whether `chunk` (bytes at `abs`, within one page) may come from the
/// versions a racing read saw.
///
/// It may equal that chunk of one version. Otherwise it may be assembled
/// from pieces split at the sizes of versions, because the read loop copies
/// a page up to the i_size it sees and, when i_size has grown, copies the
/// rest of the same page later: each piece must equal that piece of some
/// version, or be zeros starting at or past some version's end (a shrinking
/// truncate zeroes the tail of the partial page, and a page past the new
/// size reads as zeros, while the reader still goes by an older size).
pub fn chunk_matches(versions: &[Arc<Contents>], abs: usize, chunk: &[u8]) -> bool {
    if versions.iter().any(|v| v.matches(abs, chunk)) {
        return true;
    }
    if versions.len() == 1 {
        return false;
    }
    let end = abs + chunk.len();
    let mut cuts: Vec<usize> = versions
        .iter()
        .map(|v| v.len())
        .filter(|&l| l > abs && l < end)
        .collect();
    cuts.push(end);
    cuts.sort_unstable();
    cuts.dedup();
    let piece_ok = |a: usize, b: usize| {
        let piece = &chunk[a - abs..b - abs];
        versions.iter().any(|v| v.matches(a, piece))
            || (piece.iter().all(|&x| x == 0) && versions.iter().any(|v| v.len() <= a))
    };
    // reached[i]: the chunk up to cuts[i] (or `abs` for the start) can be
    // assembled.
    let mut reached = vec![false; cuts.len()];
    for (j, &b) in cuts.iter().enumerate() {
        reached[j] = piece_ok(abs, b) || (0..j).any(|i| reached[i] && piece_ok(cuts[i], b));
    }
    reached[cuts.len() - 1]
}

/// Check a read of `len` bytes at `pos` that returned `got` against the
/// versions it may have seen: the length must be the clipped request of a
/// version (exactly, when there is one version; otherwise it may also stop
/// early at a size seen mid-read), and every page chunk must equal that
/// chunk of some version, possibly cut at the size of another (see
/// [`chunk_matches`]).
pub fn check_read(
    versions: &[Arc<Contents>],
    pos: u64,
    len: usize,
    got: &[u8],
) -> Result<(), Box<Mismatch>> {
    assert!(!versions.is_empty(), "a read sees at least one version");
    let start = pos as usize;
    if let [only] = versions {
        let want = only.read_len(pos, len);
        if got.len() != want {
            let reason = format!(
                "read of {len} bytes at {pos} returned {} bytes; the file holds {want} there",
                got.len()
            );
            return Err(mismatch(versions, pos, len, got, reason));
        }
        if let Some(at) = only.first_difference(start, got) {
            let reason = format!("read of {len} bytes at {pos}: byte {at} differs from the model");
            return Err(mismatch(versions, pos, len, got, reason));
        }
        return Ok(());
    }
    let ends_ok = versions.iter().any(|v| got.len() == v.read_len(pos, len));
    let longest = versions.iter().map(|v| v.len()).max().unwrap_or(0);
    if !ends_ok && start + got.len() > longest {
        let reason = format!(
            "read of {len} at {pos} returned {} bytes; no version is that long",
            got.len()
        );
        return Err(mismatch(versions, pos, len, got, reason));
    }
    let mut offset = 0usize;
    while offset < got.len() {
        let abs = start + offset;
        let chunk_end = ((abs / PAGE_SIZE + 1) * PAGE_SIZE).min(start + got.len());
        let chunk = &got[offset..chunk_end - start];
        if !chunk_matches(versions, abs, chunk) {
            let reason = format!(
                "bytes {abs}..{chunk_end} match no version between the read's start and end"
            );
            return Err(mismatch(versions, pos, len, got, reason));
        }
        offset = chunk_end - start;
    }
    Ok(())
}

/// Check a fault on page `pgoff` that mapped `got` (`None`: SIGBUS): some
/// version must have the page (zero past EOF), or end before it.
///
/// A fault copies the page and then zeroes it past i_size as read *after*
/// the copy, without the page lock, so one that races with a write or a
/// truncate may combine the page of one version with the size of another
/// (an older page cut at a shrinking truncate's size: all zeros when the
/// page is gone; a page a write is filling, cut at the size from before the
/// write). That is accepted too: the page of any version in the window, cut
/// at the size of any version in the window, zeros after.
pub fn check_fault(
    versions: &[Arc<Contents>],
    pgoff: u64,
    got: Option<&[u8]>,
) -> Result<(), Box<Mismatch>> {
    assert!(!versions.is_empty(), "a fault sees at least one version");
    let start = pgoff as usize * PAGE_SIZE;
    let page_of = |v: &Contents, page: &[u8], cut_at: usize| {
        let end = (start + PAGE_SIZE).min(v.len()).min(cut_at.max(start));
        v.matches(start, &page[..end - start]) && page[end - start..].iter().all(|&b| b == 0)
    };
    let ok = match got {
        None => versions.iter().any(|v| start >= v.len()),
        Some(page) if page.len() == PAGE_SIZE => versions
            .iter()
            .any(|v| start < v.len() && versions.iter().any(|other| page_of(v, page, other.len()))),
        Some(_) => false,
    };
    if ok {
        return Ok(());
    }
    let pos = start as u64;
    let reason = match got {
        None => format!("fault on page {pgoff} raised SIGBUS, but every version has that page"),
        Some(_) => format!("fault on page {pgoff} matches no version"),
    };
    // Compare the whole page: bytes past EOF of the expected version are
    // zeros in a mapped page.
    let actual = got.unwrap_or(&[]);
    let mut report = mismatch(versions, pos, PAGE_SIZE, actual, reason);
    if got.is_some() && !report.expected.is_empty() {
        report.expected.resize(PAGE_SIZE, 0);
        report.first_difference = report
            .expected
            .iter()
            .zip(actual)
            .enumerate()
            .find(|(i, (e, a))| e != a && !report.expected_unknown.iter().any(|r| r.contains(i)))
            .map(|(i, _)| pos + i as u64)
            .or(report.first_difference);
    }
    Err(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn v(bytes: &[u8]) -> Arc<Contents> {
        Arc::new(Contents::new(bytes.to_vec()))
    }

    #[test]
    fn one_version_is_checked_exactly() {
        let file = v(b"hello world");
        assert!(check_read(std::slice::from_ref(&file), 0, 5, b"hello").is_ok());
        assert!(check_read(std::slice::from_ref(&file), 6, 100, b"world").is_ok());
        assert!(check_read(std::slice::from_ref(&file), 20, 5, b"").is_ok());
        let short = check_read(std::slice::from_ref(&file), 0, 5, b"hell").unwrap_err();
        assert!(
            short.reason.contains("returned 4 bytes"),
            "{}",
            short.reason
        );
        let wrong = check_read(&[file], 0, 5, b"jello").unwrap_err();
        assert_eq!(wrong.first_difference, Some(0));
        assert_eq!(wrong.expected, b"hello");
        assert_eq!(wrong.actual, b"jello");
    }

    #[test]
    fn racing_reads_may_mix_versions_page_by_page() {
        let old = v(&vec![1u8; 2 * PAGE_SIZE]);
        let new = v(&vec![2u8; 2 * PAGE_SIZE]);
        let mut mixed = vec![1u8; PAGE_SIZE];
        mixed.extend(vec![2u8; PAGE_SIZE]);
        assert!(check_read(&[old.clone(), new.clone()], 0, 2 * PAGE_SIZE, &mixed).is_ok());
        // Within one page the copy is atomic: a torn page is a mismatch.
        let mut torn = vec![1u8; PAGE_SIZE];
        torn[10] = 2;
        let err = check_read(&[old, new], 0, PAGE_SIZE, &torn).unwrap_err();
        assert!(err.reason.contains("match no version"), "{}", err.reason);
        assert_eq!(err.first_difference, Some(10));
        assert_eq!(err.candidates, 2);
    }

    #[test]
    fn a_read_racing_a_shrinking_truncate_may_see_zeros_past_the_new_size() {
        let old = v(&[3u8; 2 * PAGE_SIZE]);
        let cut = v(&[3u8; PAGE_SIZE + 100]);
        let mut got = vec![3u8; 2 * PAGE_SIZE];
        got[PAGE_SIZE + 100..].fill(0);
        assert!(check_read(&[old.clone(), cut.clone()], 0, 2 * PAGE_SIZE, &got).is_ok());
        // Not with one version, and not with other bytes past the cut.
        assert!(check_read(std::slice::from_ref(&old), 0, 2 * PAGE_SIZE, &got).is_err());
        got[PAGE_SIZE + 200] = 3;
        assert!(check_read(&[old, cut], 0, 2 * PAGE_SIZE, &got).is_err());
    }

    #[test]
    fn a_short_read_is_accepted_only_where_asked_and_only_with_right_bytes() {
        let oracle = Oracle::new(vec![Contents::new(b"hello world".to_vec())], 1);
        let ticket = oracle.begin_read(0, 0);
        assert!(oracle.check_read(ticket, 0, 11, b"hello").is_err());
        let ticket = oracle.begin_read(0, 0);
        assert_eq!(
            oracle.check_read_allowing_short(ticket, 0, 11, b"hello"),
            Ok(true)
        );
        let ticket = oracle.begin_read(0, 0);
        assert_eq!(
            oracle.check_read_allowing_short(ticket, 0, 11, b"hello world"),
            Ok(false)
        );
        let ticket = oracle.begin_read(0, 0);
        assert!(
            oracle
                .check_read_allowing_short(ticket, 0, 11, b"jello")
                .is_err()
        );
    }

    #[test]
    fn a_page_may_be_copied_in_two_pieces_split_at_a_size_seen() {
        let old = v(&[1u8; PAGE_SIZE / 2]);
        let new = v(&[2u8; PAGE_SIZE]);
        let mut got = vec![1u8; PAGE_SIZE / 2];
        got.extend(vec![2u8; PAGE_SIZE / 2]);
        assert!(check_read(&[old.clone(), new.clone()], 0, PAGE_SIZE, &got).is_ok());
        // Split anywhere else, it is a torn page.
        let mut torn = vec![1u8; 100];
        torn.extend(vec![2u8; PAGE_SIZE - 100]);
        assert!(check_read(&[old, new], 0, PAGE_SIZE, &torn).is_err());
    }

    #[test]
    fn a_read_longer_than_every_version_is_rejected() {
        let err = check_read(&[v(b"ab"), v(b"abc")], 0, 10, b"abcd").unwrap_err();
        assert!(
            err.reason.contains("no version is that long"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn unknown_bytes_match_anything_until_rewritten_or_truncated() {
        let mut c = Contents::new(vec![0; 16]);
        c.mark_unknown(4..8);
        assert!(c.matches(0, &[0, 0, 0, 0, 9, 9, 9, 9, 0]));
        c.write(5, &[7]);
        assert_eq!(c.unknown(), &[4..5, 6..8]);
        assert!(!c.matches(5, &[9]));
        c.truncate(6);
        assert_eq!(c.unknown(), std::slice::from_ref(&(4..5)));
        c.truncate(16);
        assert!(c.matches(6, &[0; 10]), "extending exposes zeros");
        c.mark_unknown(3..5);
        c.mark_unknown(10..12);
        assert_eq!(c.unknown(), &[3..5, 10..12]);
    }

    #[test]
    fn faults_map_the_page_zero_filled_or_raise_sigbus_past_eof() {
        let file = v(&[5u8; 100]);
        let mut page = vec![0u8; PAGE_SIZE];
        page[..100].fill(5);
        assert!(check_fault(std::slice::from_ref(&file), 0, Some(&page)).is_ok());
        assert!(check_fault(std::slice::from_ref(&file), 1, None).is_ok());
        let err = check_fault(std::slice::from_ref(&file), 0, None).unwrap_err();
        assert!(err.reason.contains("SIGBUS"), "{}", err.reason);
        page[200] = 1;
        let err = check_fault(&[file], 0, Some(&page)).unwrap_err();
        assert_eq!(err.first_difference, Some(200));
    }

    #[test]
    fn a_racing_fault_may_see_one_versions_page_cut_at_another_versions_size() {
        let old = v(&[7u8; 3 * PAGE_SIZE]);
        let cut = v(&[7u8; PAGE_SIZE + 10]);
        let gone = v(&[7u8; 100]);
        let zeros = vec![0u8; PAGE_SIZE];
        let mut tail = vec![0u8; PAGE_SIZE];
        tail[..10].fill(7);
        // Page 1 mapped from `old`, zeroed past the later sizes.
        assert!(check_fault(&[old.clone(), cut.clone()], 1, Some(&tail)).is_ok());
        assert!(check_fault(&[old.clone(), gone.clone()], 1, Some(&zeros)).is_ok());
        // A page being filled by a write, cut at the size from before it.
        let grown = v(&[9u8; 3 * PAGE_SIZE]);
        let mut filled = vec![0u8; PAGE_SIZE];
        filled[..10].fill(9);
        assert!(check_fault(&[cut.clone(), grown], 1, Some(&filled)).is_ok());
        // Bytes no version has are still wrong.
        filled[20] = 1;
        assert!(check_fault(&[cut.clone(), old.clone()], 1, Some(&filled)).is_err());
        // And never from a single version that has data there.
        assert!(check_fault(&[old], 1, Some(&zeros)).is_err());
    }

    #[test]
    fn versions_between_the_reads_start_and_end_are_the_candidates() {
        let oracle = Oracle::new(vec![Contents::new(b"aaaa".to_vec())], 1);
        let ticket = oracle.begin_read(0, 0);
        {
            let mut m = oracle.mutate(0);
            let mut next = m.current().clone();
            next.write(0, b"bbbb");
            m.publish(next);
        }
        // The read began before the write: old and new are both fine.
        assert!(oracle.check_read(ticket, 0, 4, b"aaaa").is_ok());
        // A read that begins after it completed must see the new bytes.
        let ticket = oracle.begin_read(0, 0);
        let err = oracle.check_read(ticket, 0, 4, b"aaaa").unwrap_err();
        assert_eq!(err.candidates, 1);
        assert_eq!(oracle.latest(0).bytes(), b"bbbb");
    }

    #[test]
    fn versions_no_reader_needs_are_dropped() {
        let oracle = Oracle::new(vec![Contents::default()], 1);
        for i in 0..10u8 {
            let mut m = oracle.mutate(0);
            let mut next = m.current().clone();
            next.write(0, &[i]);
            m.publish(next);
        }
        assert!(
            oracle.versions_kept(0) <= 2,
            "kept {}",
            oracle.versions_kept(0)
        );
        let ticket = oracle.begin_read(0, 0);
        for i in 0..10u8 {
            let mut m = oracle.mutate(0);
            let mut next = m.current().clone();
            next.write(0, &[i + 100]);
            m.publish(next);
        }
        assert!(
            oracle.versions_kept(0) >= 11,
            "a reader's versions are kept"
        );
        assert!(oracle.check_read(ticket, 0, 1, &[105]).is_ok());
    }

    #[test]
    fn concurrent_mutators_and_readers_agree() {
        let oracle = Arc::new(Oracle::new(vec![Contents::new(vec![0; PAGE_SIZE])], 4));
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let oracle = Arc::clone(&oracle);
                thread::spawn(move || {
                    for i in 0..200u8 {
                        if t == 0 {
                            let mut m = oracle.mutate(0);
                            let mut next = m.current().clone();
                            next.write(0, &vec![i; PAGE_SIZE]);
                            m.publish(next);
                        } else {
                            let ticket = oracle.begin_read(t as usize, 0);
                            let latest = oracle.latest(0);
                            oracle
                                .check_read(ticket, 0, PAGE_SIZE, latest.bytes())
                                .expect("latest is a candidate");
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
