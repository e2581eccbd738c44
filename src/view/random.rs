//! Random-access reads of file contents, for mount (and anything else that
//! reads at an offset rather than front to back).
//!
//! A chunked file is a tree whose entry names are hex offsets relative to the
//! start of that tree (bup's `_make_shalist`), so the chunk holding byte X is
//! found by a binary search per level over the parsed offsets. Decoded offset
//! tables and inflated blobs live in a shared [`ChunkCache`] bounded in bytes;
//! each open file keeps a [`FileReader`] remembering the last leaf table, so a
//! sequential reader does not descend from the root for every request.
//!
//! Never wrong bytes: every level is held to [`crate::chunk::parse`] (the
//! same rules and errors as the streaming reader's) against the range its
//! parent gives it, and every blob must be exactly as long as the gap
//! between its offset and the next one (or the end of its tree) before any
//! of its bytes are served. Chunk trees are SHA-1 checked by the store;
//! blobs, the bulk of the bytes, by the pack entry's
//! idx CRC-32, zlib Adler-32 and exact size (see [`Verify::EntryChecksums`]:
//! hashing them cost a quarter of a sequential read's CPU).

use super::{Content, ViewError};
use crate::cache::ByteLru;
use crate::chunk::parse::ChunkLevel;
use crate::locks::{lock, wait};
use crate::object::{Kind, ObjectId};
use crate::repo::store::Verify;
use crate::repo::Objects;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Clone)]
enum Cached {
    Table(Arc<ChunkLevel>),
    Blob(Arc<Vec<u8>>),
}

/// Decoded chunk trees and inflated blobs shared by all open files, bounded
/// by a byte budget. Objects are immutable (named by their hash), so entries
/// never go stale; a removed pack only means a miss is re-read elsewhere.
///
/// A blob being inflated is registered as in flight: a second thread that
/// needs it (a reader catching up with read-ahead) waits for that result
/// instead of inflating it again, which on a small machine would halve the
/// useful work.
pub struct ChunkCache {
    inner: Mutex<Tiers>,
    inflight: Mutex<HashMap<ObjectId, Arc<Flight>>>,
}

/// Two LRUs under one lock. A blob that a streaming reader has read to its
/// end now sits in the kernel's page cache, so keeping it would only push
/// out what random readers and read-ahead need, and grow the daemon to its
/// whole budget (fresh pages, each faulted in) during any long `cat`. It
/// moves to a small tier of its own instead of leaving at once: a chunk
/// that repeats within a file (a run of zeros in a disk image is thousands
/// of the same blob) is found there rather than inflated again.
struct Tiers {
    main: ByteLru<ObjectId, Cached>,
    streamed: ByteLru<ObjectId, Arc<Vec<u8>>>,
}

/// The streamed tier's share of the budget: at most this, and at most a
/// sixteenth.
const STREAMED_MAX: usize = 8 << 20;

impl Tiers {
    fn new(budget: usize) -> Tiers {
        let streamed = (budget / 16).min(STREAMED_MAX);
        Tiers {
            main: ByteLru::new(budget - streamed),
            streamed: ByteLru::new(streamed),
        }
    }
}

/// See [`ChunkCache::claim`].
enum Claim {
    Cached(Arc<Vec<u8>>),
    Busy(Arc<Flight>),
    Mine(Arc<Flight>),
}

/// One blob being read: its result (or only that it failed; the waiter then
/// reads it itself to get the error with its context).
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Option<Arc<Vec<u8>>>>>,
    done: Condvar,
}

impl Flight {
    fn wait(&self) -> Option<Arc<Vec<u8>>> {
        let mut r = lock(&self.result);
        loop {
            if let Some(result) = &*r {
                return result.clone();
            }
            r = wait(&self.done, r);
        }
    }

    fn finish(&self, result: Option<Arc<Vec<u8>>>) {
        *lock(&self.result) = Some(result);
        self.done.notify_all();
    }
}

impl ChunkCache {
    pub fn new(budget_bytes: usize) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Tiers::new(budget_bytes)),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tiers> {
        lock(&self.inner)
    }

    pub fn bytes(&self) -> usize {
        let t = self.lock();
        t.main.bytes() + t.streamed.bytes()
    }

    /// Chunk tree `id`, parsed (not yet fitted to a range: that depends on
    /// where it is used). `wrong_kind` makes the error for a non-tree.
    fn table(
        &self,
        store: &dyn Objects,
        id: &ObjectId,
        wrong_kind: impl FnOnce(Kind) -> ViewError,
    ) -> Result<Arc<ChunkLevel>, ViewError> {
        if let Some(Cached::Table(t)) = self.lock().main.get(id) {
            return Ok(t);
        }
        // Read outside the lock: two threads may load the same object, which
        // costs time but never correctness.
        let object = store.read(id)?;
        if object.kind != Kind::Tree {
            return Err(wrong_kind(object.kind));
        }
        let table = Arc::new(ChunkLevel::parse(id, &object.data)?);
        let size = 64 + std::mem::size_of_val(table.entries());
        self.lock()
            .main
            .put(*id, Cached::Table(table.clone()), size);
        Ok(table)
    }

    fn cached_blob(&self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        let mut t = self.lock();
        match t.main.get(id) {
            Some(Cached::Blob(b)) => Some(b),
            _ => t.streamed.get(id),
        }
    }

    /// A streaming reader has read blob `id` to its end: it moves to the
    /// streamed tier (see [`Tiers`]).
    fn streamed(&self, id: &ObjectId) {
        let mut t = self.lock();
        match t.main.remove(id) {
            Some((Cached::Blob(b), size)) => t.streamed.put(*id, b, size),
            Some((table, size)) => t.main.put(*id, table, size),
            None => {}
        }
    }

    /// The whole inflated blob (its checks cover all of it), so a 4 KiB
    /// read of a cold chunk costs one chunk's inflate, and the next reads in
    /// that chunk are served from here.
    pub fn blob(&self, store: &dyn Objects, id: &ObjectId) -> Result<Arc<Vec<u8>>, ViewError> {
        match self.claim(id) {
            Claim::Cached(b) => Ok(b),
            Claim::Busy(theirs) => self.wait(store, id, &theirs),
            Claim::Mine(flight) => self.fill(store, id, &flight),
        }
    }

    /// For read-ahead: loads blob `id` unless it is cached or another thread
    /// is already loading it (waiting for that would idle this worker while
    /// there is other work). Errors are left for the reader to meet, with
    /// its context, when it gets there.
    pub fn prefetch(&self, store: &dyn Objects, id: &ObjectId) {
        if let Claim::Mine(flight) = self.claim(id) {
            let _ = self.fill(store, id, &flight);
        }
    }

    /// Where blob `id` is to come from: the cache, another thread's load,
    /// or the caller, who must then [`fill`](Self::fill) it.
    fn claim(&self, id: &ObjectId) -> Claim {
        if let Some(b) = self.cached_blob(id) {
            return Claim::Cached(b);
        }
        let mut inflight = lock(&self.inflight);
        if let Some(f) = inflight.get(id) {
            return Claim::Busy(f.clone());
        }
        // Checked again under this lock: a reader that finished in between
        // put its blob in the cache before leaving.
        if let Some(b) = self.cached_blob(id) {
            return Claim::Cached(b);
        }
        let f = Arc::new(Flight::default());
        inflight.insert(*id, f.clone());
        Claim::Mine(f)
    }

    /// Loads a blob this thread claimed, and hands it to those waiting.
    fn fill(
        &self,
        store: &dyn Objects,
        id: &ObjectId,
        flight: &Flight,
    ) -> Result<Arc<Vec<u8>>, ViewError> {
        let result = self.load_blob(store, id);
        flight.finish(result.as_ref().ok().cloned());
        lock(&self.inflight).remove(id);
        result
    }

    /// The result of another thread's load of `id`.
    fn wait(
        &self,
        store: &dyn Objects,
        id: &ObjectId,
        theirs: &Flight,
    ) -> Result<Arc<Vec<u8>>, ViewError> {
        match theirs.wait() {
            Some(b) => Ok(b),
            // It failed there: read it here for the error (or succeed, if
            // the failure was passing).
            None => self.load_blob(store, id),
        }
    }

    fn load_blob(&self, store: &dyn Objects, id: &ObjectId) -> Result<Arc<Vec<u8>>, ViewError> {
        let object = store.read_with(id, Verify::EntryChecksums)?;
        if object.kind != Kind::Blob {
            return Err(ViewError::WrongKind {
                id: *id,
                expected: "blob",
            });
        }
        let blob = Arc::new(object.data);
        // The allocation plus the LRU's node and the Arc around it.
        let size = blob.capacity() + 160;
        self.lock().main.put(*id, Cached::Blob(blob.clone()), size);
        Ok(blob)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        let t = self.lock();
        t.main.contains(id) || t.streamed.contains(id)
    }

    /// Changes the byte budget, evicting down to it at once.
    pub fn set_budget(&self, budget_bytes: usize) {
        // Within budget already, the same budget evicts nothing.
        let mut t = self.lock();
        let streamed = (budget_bytes / 16).min(STREAMED_MAX);
        t.main.set_budget(budget_bytes - streamed);
        t.streamed.set_budget(streamed);
    }
}

/// Inflates blobs ahead of sequential readers on a few worker threads, so
/// that while the kernel copies one request's bytes the next ones are
/// already being inflated on the other cores. Bounded: at most
/// [`PREFETCH_QUEUE`] blobs wait; beyond that requests are dropped (the
/// reader then inflates them itself).
pub struct Prefetcher {
    queue: Mutex<VecDeque<Ahead>>,
    ready: Condvar,
    threads: usize,
    started: std::sync::Once,
}

/// Blobs waiting for a prefetch worker at most.
pub const PREFETCH_QUEUE: usize = 4096;

/// A blob to inflate ahead of a reader: worth it only while that reader
/// has not yet read past the blob's end. Once it has (it inflated the blob
/// itself rather than wait), inflating it again would be wasted work, and
/// would fill the cache with blobs nobody asks for.
pub struct Ahead {
    pub id: ObjectId,
    end: u64,
    reader_at: Arc<AtomicU64>,
}

impl Prefetcher {
    pub fn new(threads: usize) -> Arc<Prefetcher> {
        Arc::new(Prefetcher {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            threads: threads.max(1),
            started: std::sync::Once::new(),
        })
    }

    /// Queues `ids` for `load`, starting the workers on first use (never
    /// before: a daemon forks after construction).
    pub fn queue(
        self: &Arc<Self>,
        ids: impl IntoIterator<Item = Ahead>,
        load: &Arc<dyn Fn(&ObjectId) + Send + Sync>,
    ) {
        self.started.call_once(|| {
            for i in 0..self.threads {
                let me = self.clone();
                let load = load.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("rewind-ahead-{i}"))
                    .spawn(move || me.work(&*load));
                if let Err(e) = spawned {
                    tracing::warn!("no read-ahead thread: {e}");
                }
            }
        });
        let mut q = lock(&self.queue);
        for id in ids {
            if q.len() >= PREFETCH_QUEUE {
                break;
            }
            q.push_back(id);
        }
        drop(q);
        self.ready.notify_all();
    }

    fn work(&self, load: &(dyn Fn(&ObjectId) + Send + Sync)) {
        loop {
            let item = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(item) = q.pop_front() {
                        break item;
                    }
                    q = wait(&self.ready, q);
                }
            };
            if item.end > item.reader_at.load(Ordering::Relaxed) {
                load(&item.id);
            }
        }
    }
}

/// Where the last read ended up: a tree level and its absolute byte range.
struct Level {
    tree: ObjectId,
    table: Arc<ChunkLevel>,
    start: u64,
    end: u64,
    depth: usize,
}

/// Per-open-file state for reads at arbitrary offsets. Shared by the
/// threads serving one open file: only the remembered leaf is locked, and
/// only while a chunk is located, so chunks inflate in parallel.
pub struct FileReader {
    content: Content,
    size: u64,
    leaf: Mutex<Option<Level>>,
    /// End of the last read, to tell a sequential reader from a random one
    /// (shared with its read-ahead, see [`Ahead`]).
    last_end: Arc<AtomicU64>,
    /// Read-ahead has been queued up to here.
    ahead_to: AtomicU64,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("content", &self.content)
            .field("size", &self.size)
            .finish()
    }
}

/// A read starting this close to where the previous one ended counts as
/// sequential (the kernel's read-ahead requests arrive slightly out of
/// order from several threads).
const SEQUENTIAL_SLACK: u64 = 4 << 20;
/// Whether a read at `offset` continues one that ended at `previous`.
fn continues(previous: u64, offset: u64) -> bool {
    offset == 0 || offset.abs_diff(previous) <= SEQUENTIAL_SLACK
}

/// A sequential read at least this long is taken as streaming through the
/// file (kernel read-ahead), not as a random reader's page.
const STREAM_REQUEST: usize = 64 << 10;

/// A chunk of a request: in hand, being loaded by another thread, or
/// failed (reported only after the chunks before it, as a stream would).
enum Part {
    Ready(Arc<Vec<u8>>),
    Wait(Arc<Flight>),
    Failed(ViewError),
}

/// A chunk located for a read: its absolute range and object id, and the
/// chunk-tree level naming it (none for a file stored as one blob).
#[derive(Clone, Debug)]
pub struct Located {
    pub start: u64,
    pub end: u64,
    pub id: ObjectId,
    entry: Option<(ObjectId, Arc<ChunkLevel>, usize)>,
}

impl Located {
    /// Checks that `blob`, this chunk's content, fills its range exactly.
    fn check(&self, blob: &[u8]) -> Result<(), ViewError> {
        let expected = self.end - self.start;
        match &self.entry {
            Some((tree, level, i)) => {
                Ok(level.check_blob(tree, *i, blob.len() as u64, expected)?)
            }
            None if blob.len() as u64 == expected => Ok(()),
            None => Err(ViewError::Malformed {
                id: self.id,
                detail: format!(
                    "blob is {} bytes, but the file's size says {expected}",
                    blob.len()
                ),
            }),
        }
    }

    /// The error for this chunk's object not being a blob: for a chunk tree
    /// entry the same as the stream's.
    fn wrong_kind(&self, store: &dyn Objects, e: ViewError) -> ViewError {
        let (Some((tree, level, i)), ViewError::WrongKind { id, .. }) = (&self.entry, &e) else {
            return e;
        };
        if *id != self.id {
            return e;
        }
        match store.read_header(id) {
            Ok((kind, _)) => level.wrong_kind(tree, *i, kind).into(),
            Err(_) => e,
        }
    }
}

impl FileReader {
    /// `size` must be the file's size (from `.bupm` or [`super::content_size`]);
    /// the chunk tree is checked against it as it is read.
    pub fn new(content: Content, size: u64) -> FileReader {
        FileReader {
            content,
            size,
            leaf: Mutex::new(None),
            last_end: Arc::new(AtomicU64::new(0)),
            ahead_to: AtomicU64::new(0),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finds the blob holding byte `pos` (which must be < size), starting
    /// from the remembered leaf when it covers `pos`, else from the root.
    /// Each level is fitted to its range on the way down.
    pub fn locate(
        &self,
        store: &dyn Objects,
        cache: &ChunkCache,
        pos: u64,
    ) -> Result<Located, ViewError> {
        let root = match self.content {
            Content::Blob(id) => {
                return Ok(Located {
                    start: 0,
                    end: self.size,
                    id,
                    entry: None,
                })
            }
            Content::ChunkTree(id) => id,
        };
        let remembered = lock(&self.leaf).take();
        let mut level = match remembered {
            Some(l) if l.start <= pos && pos < l.end => l,
            _ => {
                let table = cache.table(store, &root, |_| ViewError::WrongKind {
                    id: root,
                    expected: "tree",
                })?;
                table.fit(&root, self.size)?;
                Level {
                    tree: root,
                    table,
                    start: 0,
                    end: self.size,
                    depth: 0,
                }
            }
        };
        loop {
            let entries = level.table.entries();
            let rel = pos - level.start;
            // The first entry has offset 0 (checked in parse), so idx >= 1.
            let idx = entries.partition_point(|e| e.offset <= rel) - 1;
            let e = entries[idx];
            // fit() checked every offset is below the level's length, so
            // these stay within the level's range.
            let start = level.start + e.offset;
            let end = match entries.get(idx + 1) {
                Some(next) => level.start + next.offset,
                None => level.end,
            };
            if !e.is_tree {
                let located = Located {
                    start,
                    end,
                    id: e.id,
                    entry: Some((level.tree, level.table.clone(), idx)),
                };
                *lock(&self.leaf) = Some(level);
                return Ok(located);
            }
            level.table.check_depth(&level.tree, idx, level.depth)?;
            let table = cache.table(store, &e.id, |kind| {
                level.table.wrong_kind(&level.tree, idx, kind).into()
            })?;
            table.fit(&e.id, end - start)?;
            level = Level {
                tree: e.id,
                table,
                start,
                end,
                depth: level.depth + 1,
            };
        }
    }

    /// Appends up to `len` bytes at `offset` to `out` (fewer at the end of
    /// the file).
    ///
    /// A request spans many chunks (the kernel asks for up to 1 MiB), some
    /// of them being inflated by read-ahead workers. Waiting for each in
    /// turn would leave this thread idle while later chunks of the same
    /// request are still untouched, so it first inflates every chunk nobody
    /// has claimed, and only then waits for the others' results.
    pub fn read_at(
        &self,
        store: &dyn Objects,
        cache: &ChunkCache,
        offset: u64,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ViewError> {
        // Cheap (a clock read, mostly): requests served from the cache
        // alone must still let the store drop packs a gc removed.
        store.follow_changes();
        let end = offset.saturating_add(len as u64).min(self.size);
        let streaming = len >= STREAM_REQUEST && self.is_sequential(offset);
        // Errors wait their turn: the first one in file order is reported,
        // the one a stream over the same bytes would meet.
        let mut parts = Vec::new();
        let mut failed = None;
        let mut pos = offset;
        while pos < end {
            let chunk = match self.locate(store, cache, pos) {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let part = match cache.claim(&chunk.id) {
                Claim::Cached(b) => Part::Ready(b),
                Claim::Busy(f) => Part::Wait(f),
                Claim::Mine(f) => match cache.fill(store, &chunk.id, &f) {
                    Ok(b) => Part::Ready(b),
                    Err(e) => Part::Failed(e),
                },
            };
            pos = chunk.end;
            let stop = matches!(part, Part::Failed(_));
            parts.push((chunk, part));
            if stop {
                break;
            }
        }
        let mut pos = offset;
        for (chunk, part) in parts {
            let blob = match part {
                Part::Ready(b) => Ok(b),
                Part::Wait(f) => cache.wait(store, &chunk.id, &f),
                Part::Failed(e) => Err(e),
            }
            .map_err(|e| chunk.wrong_kind(store, e))?;
            chunk.check(&blob)?;
            let from = (pos - chunk.start) as usize;
            let to = (end.min(chunk.end) - chunk.start) as usize;
            out.extend_from_slice(&blob[from..to]);
            pos = chunk.start + to as u64;
            if streaming && to == blob.len() {
                cache.streamed(&chunk.id);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether a read at `offset` continues the last one (see
    /// [`SEQUENTIAL_SLACK`]).
    fn is_sequential(&self, offset: u64) -> bool {
        continues(self.last_end.load(Ordering::Relaxed), offset)
    }

    /// For a streaming reader whose last read ended at `end`: the blobs of
    /// the next `window` bytes not yet cached or queued, to inflate ahead.
    /// Empty for random access. Locating them reads chunk-tree levels only
    /// (cheap when they are the remembered leaf); a failure just ends the
    /// plan (the reader meets it again, with its error, when it gets there).
    pub fn plan_ahead(
        &self,
        store: &dyn Objects,
        cache: &ChunkCache,
        offset: u64,
        end: u64,
        window: u64,
    ) -> Vec<Ahead> {
        let previous = self.last_end.swap(end, Ordering::Relaxed);
        let sequential = continues(previous, offset);
        // A random reader's page that happens to land near the last one is
        // no stream: planning megabytes for it would load the disk and the
        // cores under the random reads that follow.
        let streaming = end - offset >= STREAM_REQUEST as u64;
        if !sequential || !streaming || end >= self.size {
            return Vec::new();
        }
        let until = end.saturating_add(window).min(self.size);
        let from = self.ahead_to.load(Ordering::Relaxed).max(end);
        // Behind the reader (it seeked back): start from where it reads.
        let from = if from > until { end } else { from };
        if until <= from || until - from < window / 4 {
            // Top up in batches, not per request.
            return Vec::new();
        }
        self.ahead_to.fetch_max(until, Ordering::Relaxed);
        let mut ids: Vec<Ahead> = Vec::new();
        let mut pos = from;
        while pos < until {
            let Ok(chunk) = self.locate(store, cache, pos) else {
                break;
            };
            let id = chunk.id;
            if !cache.contains(&id) && ids.last().map(|a| a.id) != Some(id) {
                ids.push(Ahead {
                    id,
                    end: chunk.end,
                    reader_at: self.last_end.clone(),
                });
            }
            pos = chunk.end;
        }
        // The workers' reads of these entries then find them in memory.
        store.will_need(&ids.iter().map(|a| a.id).collect::<Vec<_>>());
        ids
    }
}
