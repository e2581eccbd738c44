//! The object store: every pack in `objects/pack` plus loose objects.
//!
//! Shared by many threads (a FUSE daemon): the pack list is an immutable
//! snapshot behind a lock, swapped whole by `refresh`; reads use `pread` on
//! shared file handles. Every object returned has had its SHA-1 checked, so
//! damaged data comes back as `Error::Corrupt`, never as wrong bytes.
//!
//! Delta chains (from `git gc`/`git repack`) are resolved iteratively with a
//! small cache of recently used bases, bounded in bytes.

use super::{loose, Error};
use crate::cache::ByteLru;
use crate::locks::{lock, read, write};
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::idx::Entry;
use crate::pack::reader::ReadFail;
use crate::pack::{delta, EntryKind, PackFile};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Longest delta chain we follow (git's default maximum depth is 50; 4095
/// is the hard limit of `git pack-objects --depth`).
const MAX_CHAIN: usize = 10_000;
/// How many packs deep a REF_DELTA may send us looking for bases elsewhere.
const MAX_CROSS_PACK: usize = 64;
/// Default budget of the delta-base cache (see [`ObjectStore::set_base_cache_bytes`]).
const CACHE_BYTES: usize = 64 << 20;
const CACHE_MAX_OBJECT: usize = 16 << 20;
/// How often a reader looks whether `objects/pack` changed (a gc, a save).
const RECHECK_MS: u64 = 1000;

/// How a read proves that the bytes it returns are the object asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The SHA-1 of the content against its id: once per object per open
    /// pack (see [`PackFile::is_verified_rank`]); deltas and loose objects always.
    Hash,
    /// For a whole (non-delta) object in a pack with a v2 index, the checks
    /// every read makes are enough and the SHA-1 is skipped: the entry's
    /// raw bytes (header and zlib stream, up to the next entry) must match
    /// the CRC-32 that the idx lists for it, the stream's Adler-32 must match
    /// the inflated bytes, the stream must end exactly where the next entry
    /// starts and inflate to exactly the size in the entry header. The idx
    /// is an independent file whose own SHA-1 trailer is checked when it is
    /// opened, and it was written from the pack's bytes (by `git
    /// index-pack` or by our writer, which hashed each object to name it),
    /// so damage to the pack (a flipped bit, a torn or zeroed page, a
    /// truncation, bytes from another file) fails the CRC-32, or the
    /// Adler-32 and the zlib structure with it: two independent 32-bit
    /// checks, over the compressed and the inflated bytes. What only the
    /// SHA-1 would catch is a consistent rewrite of pack *and* index by a
    /// writer that meant to (git itself does not hash packed objects on
    /// read either). Deltas (their result depends on a base), loose objects
    /// and v1 indexes (no CRC) are still hashed. For the mount's bulk reads
    /// of file chunks, where the SHA-1 was a quarter of the CPU spent.
    EntryChecksums,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    pub data: Vec<u8>,
}

/// One snapshot of the usable packs and of the indexes we could not use.
#[derive(Default)]
struct PackSet {
    packs: Vec<(u64, Arc<PackFile>)>,
    /// Per pack (same order), which first bytes its ids start with: with
    /// thousands of small packs (one per save) most are ruled out from this
    /// dense array without touching their indexes.
    first_bytes: Vec<[u64; 4]>,
    /// Indexes that failed to open, with the reason; objects they hold are
    /// reported as corrupt rather than silently missing.
    broken: Vec<(PathBuf, String)>,
}

/// The packs of one moment (see [`ObjectStore::packed_objects`]).
#[derive(Clone)]
pub struct PackedObjects(Arc<PackSet>);

impl PackedObjects {
    /// Whether one of these packs holds `id`, and is not damaged (see
    /// [`PackSet::holds`]).
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.0.holds(id)
    }
}

thread_local! {
    /// Position and uid of the pack that answered this thread's last
    /// lookup: a file's chunks were written together, so the next one is
    /// most likely in the same pack, and the packs before it in the list
    /// need not be searched first.
    static LAST_PACK: Cell<(usize, u64)> = const { Cell::new((usize::MAX, u64::MAX)) };
}

impl PackSet {
    /// Whether a pack whose frame agrees with its index holds `id`: the
    /// existence check of a save, which reuses what it is told exists.
    /// Objects listed only by damaged packs are absent here (and written
    /// again), while reads still find them there and report the damage.
    fn holds(&self, id: &ObjectId) -> bool {
        self.find(id).is_some_and(|(_, pack, _)| pack.is_sound())
    }

    /// The pack to read `id` from: the first that holds it, unless that
    /// one is damaged and a sound pack holds a copy (a save after the
    /// damage wrote it again, see [`PackSet::holds`]). Only a damaged copy:
    /// that one, so that the read reports the damage.
    fn find(&self, id: &ObjectId) -> Option<(u64, &Arc<PackFile>, Entry)> {
        let first = self.find_first(id)?;
        if first.1.is_sound() {
            return Some(first);
        }
        let sound = self.packs.iter().find_map(|(uid, p)| {
            if !p.is_sound() {
                return None;
            }
            p.index().find(id).map(|e| (*uid, p, e))
        });
        sound.or(Some(first))
    }

    /// The first pack holding `id`: (pack uid, pack, entry). Ids are unique
    /// per object, so when several packs hold one (a repack in progress)
    /// any of them gives the same bytes.
    fn find_first(&self, id: &ObjectId) -> Option<(u64, &Arc<PackFile>, Entry)> {
        let (hint, uid) = LAST_PACK.get();
        // The position of the pack already searched, if any (the set may
        // have changed since: then the hint names another pack, or none).
        let mut searched = usize::MAX;
        if let Some((u, p)) = self.packs.get(hint).filter(|(u, _)| *u == uid) {
            if let Some(e) = p.index().find(id) {
                return Some((*u, p, e));
            }
            searched = hint;
        }
        let b = usize::from(id.0[0]);
        let (word, bit) = (b / 64, 1u64 << (b % 64));
        let (k, (uid, p), e) = self
            .packs
            .iter()
            .zip(&self.first_bytes)
            .enumerate()
            .filter(|(k, (_, mask))| mask[word] & bit != 0 && *k != searched)
            .find_map(|(k, (up, _))| up.1.index().find(id).map(|e| (k, up, e)))?;
        LAST_PACK.set((k, *uid));
        Some((*uid, p, e))
    }
}

pub struct ObjectStore {
    objects_dir: PathBuf,
    set: RwLock<Arc<PackSet>>,
    /// Whether `objects/pack` has been scanned: not at open but on first
    /// need, so a command answered from refs and caches alone (listing the
    /// snapshots of a name with thousands of packs) opens no pack.
    scanned: std::sync::atomic::AtomicBool,
    first_scan: Mutex<()>,
    /// `objects/pack`'s mtime when it was last scanned, and when it was last
    /// looked at (milliseconds since `opened`): a long-lived reader (the
    /// mount) notices a gc within a second, drops the packs it removed (so
    /// their space is freed) and opens the ones it wrote.
    scanned_mtime: Mutex<Option<std::time::SystemTime>>,
    checked_ms: AtomicU64,
    opened: std::time::Instant,
    next_pack_id: AtomicU64,
    cache: Mutex<BaseCache>,
}

impl ObjectStore {
    /// Opens the store at `objects_dir` and scans its packs.
    pub fn open(objects_dir: &Path) -> Result<ObjectStore, Error> {
        let store = ObjectStore {
            objects_dir: objects_dir.to_path_buf(),
            set: RwLock::new(Arc::new(PackSet::default())),
            scanned: std::sync::atomic::AtomicBool::new(false),
            first_scan: Mutex::new(()),
            scanned_mtime: Mutex::new(None),
            checked_ms: AtomicU64::new(0),
            opened: std::time::Instant::now(),
            next_pack_id: AtomicU64::new(0),
            cache: Mutex::new(BaseCache::new(CACHE_BYTES)),
        };
        // The scan itself waits for first use; a store that cannot even be
        // listed is refused now, with its reason.
        let pack_dir = objects_dir.join("pack");
        std::fs::read_dir(&pack_dir).map_err(Error::io("listing", &pack_dir))?;
        Ok(store)
    }

    pub fn objects_dir(&self) -> &Path {
        &self.objects_dir
    }

    fn snapshot(&self) -> Arc<PackSet> {
        if !self.scanned.load(Ordering::Acquire) {
            let _one = lock(&self.first_scan);
            if !self.scanned.load(Ordering::Acquire) {
                if let Err(e) = self.refresh() {
                    // Answered as "not found" for now; the rescan on a miss
                    // reports this error to the reader.
                    tracing::warn!("scanning packs: {e}");
                    self.scanned.store(true, Ordering::Release);
                }
            }
        }
        self.current()
    }

    /// The pack set as it is, without a first scan.
    fn current(&self) -> Arc<PackSet> {
        read(&self.set).clone()
    }

    /// Rescans `objects/pack`: opens new packs, drops removed ones (so no
    /// answer can come from a pack that is gone), keeps the rest open.
    pub fn refresh(&self) -> Result<(), Error> {
        let pack_dir = self.objects_dir.join("pack");
        // Read before listing: a change during the scan shows as a newer
        // mtime next time and triggers another scan.
        let mtime = std::fs::metadata(&pack_dir).and_then(|m| m.modified()).ok();
        let old = self.current();
        let mut idx_paths = Vec::new();
        let entries = std::fs::read_dir(&pack_dir).map_err(Error::io("listing", &pack_dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("listing", &pack_dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("pack-") && name.ends_with(".idx") {
                idx_paths.push(entry.path());
            }
        }
        idx_paths.sort();
        // Pack names are content hashes: same name, same content, so packs
        // already open are kept.
        let kept: HashMap<&Path, &(u64, Arc<PackFile>)> = old
            .packs
            .iter()
            .map(|entry| (entry.1.index().path(), entry))
            .collect();
        let new_paths: Vec<&PathBuf> = idx_paths
            .iter()
            .filter(|p| !kept.contains_key(p.as_path()))
            .collect();
        let mut opened = open_packs(&new_paths).into_iter();
        let mut set = PackSet::default();
        for idx_path in &idx_paths {
            if let Some(entry) = kept.get(idx_path.as_path()) {
                set.packs.push((*entry).clone());
                continue;
            }
            let Some(result) = opened.next() else {
                break;
            };
            match result {
                Ok(p) => {
                    let uid = self.next_pack_id.fetch_add(1, Ordering::Relaxed);
                    set.packs.push((uid, Arc::new(p)));
                }
                Err(e) => {
                    // A pack still being deleted by `git gc` loses its .pack
                    // before its .idx; that is not damage.
                    if !idx_path.exists() {
                        continue;
                    }
                    // A miss rescans (a new pack may have appeared), which
                    // opens a broken index again: say so once per process,
                    // not once per scan.
                    let why = e.to_string();
                    if !old.broken.iter().any(|(p, w)| p == idx_path && *w == why) {
                        tracing::warn!("cannot use pack index {}: {why}", idx_path.display());
                    }
                    set.broken.push((idx_path.clone(), why));
                }
            }
        }
        set.first_bytes = set
            .packs
            .iter()
            .map(|(_, p)| p.index().first_bytes())
            .collect();
        let live: Vec<u64> = set.packs.iter().map(|(uid, _)| *uid).collect();
        *write(&self.set) = Arc::new(set);
        *lock(&self.scanned_mtime) = mtime;
        self.scanned.store(true, Ordering::Release);
        lock(&self.cache).retain(|(uid, _)| live.contains(uid));
        Ok(())
    }

    /// Paths of the packs currently in use.
    pub fn packs(&self) -> Vec<PathBuf> {
        self.snapshot()
            .packs
            .iter()
            .map(|(_, p)| p.path().to_path_buf())
            .collect()
    }

    /// Indexes of the last scan that could not be used, with the reason.
    pub fn broken_indexes(&self) -> Vec<(PathBuf, String)> {
        self.snapshot().broken.clone()
    }

    /// The packs currently in use (a snapshot; `refresh` does not change it).
    pub fn pack_files(&self) -> Vec<Arc<PackFile>> {
        self.snapshot()
            .packs
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Starts reading the pack bytes of `ids` (a file's next chunks, in
    /// order) into the page cache (see [`PackFile::will_need`]). A save
    /// writes a file's new chunks one after another into one pack, so the
    /// span from the first entry to the end of the last one is asked for
    /// whole when it is short enough; otherwise neighbouring entries are
    /// merged into ranges. Only advice: ids not in a pack are skipped.
    pub fn will_need(&self, ids: &[ObjectId]) {
        /// Entries this close together are asked for as one range.
        const GAP: u64 = 64 << 10;
        /// The largest range asked for at once.
        const MAX_RANGE: u64 = 16 << 20;
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return;
        };
        let set = self.snapshot();
        if let (Some((a, pack, head)), Some((b, _, tail))) = (set.find(first), set.find(last)) {
            let end = tail.next.unwrap_or(tail.offset + GAP);
            // Longer than that (a read-ahead batch is a few MiB of file),
            // the span holds other files' entries: merged per entry below.
            if a == b && head.offset <= tail.offset && end - head.offset <= MAX_RANGE {
                pack.will_need(head.offset, end - head.offset);
                return;
            }
        }
        let mut run: Option<(&Arc<PackFile>, u64, u64)> = None;
        for id in ids {
            let Some((_, pack, entry)) = set.find(id) else {
                continue;
            };
            // The last entry's end is the pack's trailer: a little more is
            // harmless advice.
            let end = entry.next.unwrap_or(entry.offset + GAP);
            match &mut run {
                Some((p, start, stop))
                    if Arc::ptr_eq(p, pack)
                        && *start <= entry.offset
                        && entry.offset <= *stop + GAP
                        && end - *start <= MAX_RANGE =>
                {
                    *stop = (*stop).max(end);
                }
                _ => {
                    if let Some((p, start, stop)) = run.take() {
                        p.will_need(start, stop - start);
                    }
                    run = Some((pack, entry.offset, end));
                }
            }
        }
        if let Some((p, start, stop)) = run {
            p.will_need(start, stop - start);
        }
    }

    /// The packs known now, to ask "is it packed?" from a thread of its
    /// own (the store itself is borrowed). Packs published or removed later
    /// are not seen by it.
    pub fn packed_objects(&self) -> PackedObjects {
        PackedObjects(self.snapshot())
    }

    /// Whether `id` is in a sound pack we know of (see [`PackSet::holds`])
    /// or loose. Does not rescan.
    pub fn contains(&self, id: &ObjectId) -> bool {
        let set = self.snapshot();
        set.holds(id) || loose::exists(&self.objects_dir, id)
    }

    /// Reads and verifies an object. On a miss, rescans the packs once (a
    /// concurrent `git gc` may have moved it) before answering NotFound.
    pub fn read(&self, id: &ObjectId) -> Result<Object, Error> {
        self.read_depth(id, 0, Verify::Hash)
    }

    /// Like [`read`](Self::read), with the checking `verify` asks for.
    pub fn read_with(&self, id: &ObjectId, verify: Verify) -> Result<Object, Error> {
        self.read_depth(id, 0, verify)
    }

    /// Rescans when `objects/pack` changed since the last scan, looking at
    /// most once per [`RECHECK_MS`]. A failed look changes nothing (the next
    /// miss rescans anyway). Every read calls it; a reader answering from
    /// its own caches calls it too, so that packs a gc removed are let go
    /// (their space freed) even while nothing is read from them.
    pub fn follow_changes(&self) {
        if !self.scanned.load(Ordering::Acquire) {
            // The first scan is still to come (and sees everything).
            return;
        }
        let now = self.opened.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < RECHECK_MS
            || self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let Ok(mtime) = std::fs::metadata(self.objects_dir.join("pack")).and_then(|m| m.modified())
        else {
            return;
        };
        let scanned = *lock(&self.scanned_mtime);
        if scanned != Some(mtime) {
            tracing::debug!("{}: packs changed, rescanning", self.objects_dir.display());
            if let Err(e) = self.refresh() {
                tracing::warn!("rescanning packs: {e}");
            }
        }
    }

    fn read_depth(&self, id: &ObjectId, depth: usize, verify: Verify) -> Result<Object, Error> {
        if depth == 0 {
            self.follow_changes();
        }
        if depth > MAX_CROSS_PACK {
            return Err(Error::Corrupt {
                id: *id,
                pack: None,
                detail: "REF_DELTA bases refer to each other in a cycle".into(),
            });
        }
        for attempt in 0..2 {
            let set = self.snapshot();
            if let Some((uid, pack, entry)) = set.find(id) {
                return self.read_packed(uid, pack, entry, id, depth, verify);
            }
            if let Some(obj) = loose::read(&self.objects_dir, id)? {
                return Ok(obj);
            }
            if attempt == 0 {
                self.refresh()?;
            } else if let Some((idx, why)) = set.broken.first() {
                return Err(Error::Corrupt {
                    id: *id,
                    pack: Some(idx.clone()),
                    detail: format!("not in any readable pack, and this index is unusable: {why}"),
                });
            }
        }
        Err(Error::NotFound(*id))
    }

    /// A whole (non-delta) packed object as stored: kind, inflated size and
    /// its zlib stream, unchecked (whoever inflates it checks it against
    /// its id). `None` for deltas, loose objects, damaged packs, streams
    /// longer than `max`, or anything that does not read: then read it
    /// with [`read`](Self::read).
    pub fn read_compressed(&self, id: &ObjectId, max: u64) -> Option<(Kind, u64, Vec<u8>)> {
        self.follow_changes();
        let set = self.snapshot();
        let (_, pack, entry) = set.find(id)?;
        if !pack.is_sound() {
            return None;
        }
        let header = pack.entry_header(entry.offset).ok()?;
        let EntryKind::Base(kind) = header.kind else {
            return None;
        };
        let zdata = pack.raw_stream(&header, &entry, max).ok()??;
        Some((kind, header.size, zdata))
    }

    /// Kind and size of `id` without inflating it whole. Not SHA-verified
    /// (that needs the whole object); damage found on the way is reported.
    pub fn read_header(&self, id: &ObjectId) -> Result<(Kind, u64), Error> {
        self.read_header_depth(id, 0)
    }

    fn read_header_depth(&self, id: &ObjectId, depth: usize) -> Result<(Kind, u64), Error> {
        if depth > MAX_CROSS_PACK {
            return Err(Error::Corrupt {
                id: *id,
                pack: None,
                detail: "REF_DELTA bases refer to each other in a cycle".into(),
            });
        }
        let set = self.snapshot();
        let Some((_, pack, entry)) = set.find(id) else {
            if let Some(h) = loose::read_header_of(&self.objects_dir, id)? {
                return Ok(h);
            }
            // Rare: let `read` do the rescan and the error reporting.
            let obj = self.read_depth(id, depth, Verify::Hash)?;
            return Ok((obj.kind, obj.data.len() as u64));
        };
        let fail = |e: ReadFail| e.into_error(*id, pack.path());
        let top = pack.entry_header(entry.offset).map_err(fail)?;
        let size = match top.kind {
            EntryKind::Base(kind) => return Ok((kind, top.size)),
            _ => {
                let prefix = pack.inflate_prefix(&top, 20).map_err(fail)?;
                let (_, result, _) =
                    delta::parse_sizes(&prefix).map_err(|d| fail(ReadFail::Corrupt(d)))?;
                result
            }
        };
        // The kind is the kind of the chain's base.
        let mut header = top;
        for _ in 0..MAX_CHAIN {
            match header.kind {
                EntryKind::Base(kind) => return Ok((kind, size)),
                EntryKind::OfsDelta { base_offset } => {
                    header = pack.entry_header(base_offset).map_err(fail)?
                }
                EntryKind::RefDelta { base } => match pack.index().lookup(&base) {
                    Some(o) => header = pack.entry_header(o).map_err(fail)?,
                    None => {
                        let (kind, _) = self.read_header_depth(&base, depth + 1)?;
                        return Ok((kind, size));
                    }
                },
            }
        }
        Err(fail(ReadFail::Corrupt("delta chain is too long".into())))
    }

    /// Reads the object of `entry` in `pack`, resolving its delta chain.
    fn read_packed(
        &self,
        uid: u64,
        pack: &PackFile,
        entry: Entry,
        id: &ObjectId,
        depth: usize,
        verify: Verify,
    ) -> Result<Object, Error> {
        let fail = |e: ReadFail| e.into_error(*id, pack.path());
        let corrupt = |d: String| fail(ReadFail::Corrupt(d));
        // Walk down to a base (or a cached intermediate), remembering deltas.
        let mut chain = Vec::new();
        let mut at = entry.offset;
        let (kind, base): (Kind, Arc<Vec<u8>>) = loop {
            if chain.len() > MAX_CHAIN {
                return Err(corrupt("delta chain is too long".into()));
            }
            if !chain.is_empty() {
                if let Some(hit) = self.cache_get(uid, at) {
                    break hit;
                }
            }
            let header = pack.entry_header(at).map_err(fail)?;
            match header.kind {
                EntryKind::Base(kind) => {
                    let data = if chain.is_empty() {
                        pack.inflate_entry(&header, &entry)
                    } else {
                        pack.inflate(&header)
                    };
                    let data = Arc::new(data.map_err(fail)?);
                    if !chain.is_empty() {
                        self.cache_put(uid, at, kind, &data);
                    }
                    break (kind, data);
                }
                EntryKind::OfsDelta { base_offset } => {
                    chain.push(header);
                    at = base_offset;
                }
                EntryKind::RefDelta { base } => {
                    chain.push(header);
                    match pack.index().lookup(&base) {
                        Some(o) => at = o,
                        None => {
                            // A base outside this pack: read it through the
                            // store (verified by its own id).
                            let obj = self.read_depth(&base, depth + 1, Verify::Hash).map_err(
                                |e| match e {
                                    Error::NotFound(_) => {
                                        corrupt(format!("delta base {base} is missing"))
                                    }
                                    other => other,
                                },
                            )?;
                            break (obj.kind, Arc::new(obj.data));
                        }
                    }
                }
            }
        };
        // A whole object read straight from its entry: its hash needs
        // checking once per open pack (see `PackFile::is_verified_rank`).
        let whole = chain.is_empty();
        let mut data = base;
        while let Some(header) = chain.pop() {
            let delta_bytes = pack.inflate(&header).map_err(fail)?;
            let result = delta::apply(&data, &delta_bytes).map_err(corrupt)?;
            data = Arc::new(result);
            if !chain.is_empty() {
                // This result is the base of the next delta up the chain.
                self.cache_put(uid, header.offset, kind, &data);
            }
        }
        let data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
        if whole {
            // The idx CRC-32 was checked by `inflate` (v2 indexes have one).
            let crc_checked = verify == Verify::EntryChecksums && pack.index().version() == 2;
            if crc_checked || pack.is_verified_rank(entry.rank) {
                return Ok(Object { kind, data });
            }
        }
        if hash_object(kind, &data) != *id {
            return Err(corrupt(format!(
                "content does not match its id (read {} bytes of {})",
                data.len(),
                kind.name()
            )));
        }
        if whole {
            pack.set_verified_rank(entry.rank);
        }
        Ok(Object { kind, data })
    }

    /// Bounds the memory kept for delta bases (objects of `git gc`-repacked
    /// repositories), e.g. to a share of a mount's configured cache.
    pub fn set_base_cache_bytes(&self, bytes: usize) {
        lock(&self.cache).set_budget(bytes);
    }

    fn cache_get(&self, uid: u64, offset: u64) -> Option<(Kind, Arc<Vec<u8>>)> {
        lock(&self.cache).get(&(uid, offset))
    }

    /// Keeps a base of at most CACHE_MAX_OBJECT bytes (the cache itself
    /// refuses anything larger than its whole budget).
    fn cache_put(&self, uid: u64, offset: u64, kind: Kind, data: &Arc<Vec<u8>>) {
        if data.len() <= CACHE_MAX_OBJECT {
            lock(&self.cache).put((uid, offset), (kind, data.clone()), data.len());
        }
    }
}

/// Packs opened per thread before another thread is worth starting.
const PACKS_PER_THREAD: usize = 64;
const MAX_OPEN_THREADS: usize = 16;

/// Opens the packs of `idx_paths`, results in the same order. Opening is
/// disk latency (an index read and the pack's frame check per pack), so a
/// repository with thousands of packs (one per save) opens them from
/// several threads at once rather than paying each wait in turn.
fn open_packs(idx_paths: &[&PathBuf]) -> Vec<Result<PackFile, Error>> {
    let open = |path: &PathBuf| {
        let pack = PackFile::open(path)?;
        // Reads the frame now, while other threads wait on other packs; an
        // I/O error here is not remembered and is met again on first read.
        let _ = pack.damage();
        Ok(pack)
    };
    let threads = idx_paths
        .len()
        .div_ceil(PACKS_PER_THREAD)
        .min(MAX_OPEN_THREADS);
    if threads <= 1 {
        return idx_paths.iter().map(|p| open(p)).collect();
    }
    let per = idx_paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = idx_paths
            .chunks(per)
            .map(|part| {
                let worker = std::thread::Builder::new()
                    .name("rewind-open-packs".into())
                    .spawn_scoped(scope, move || {
                        part.iter().map(|p| open(p)).collect::<Vec<_>>()
                    });
                (part, worker)
            })
            .collect();
        let mut all: Vec<Result<PackFile, Error>> = Vec::with_capacity(idx_paths.len());
        for (part, worker) in workers {
            match worker.map(|w| w.join()) {
                Ok(Ok(results)) => all.extend(results),
                // No thread (or a bug in one): open its share here rather
                // than lose packs.
                _ => all.extend(part.iter().map(|p| open(p))),
            }
        }
        all
    })
}

/// Delta bases by (pack uid, offset), least recently used evicted first.
type BaseCache = ByteLru<(u64, u64), (Kind, Arc<Vec<u8>>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;
    use std::os::unix::fs::{FileExt, PermissionsExt};

    /// Writes `data` as a blob into a pack of its own, publishes it and
    /// lets the store see it: the blob's id and the pack's files.
    fn pack_one_blob(repo: &Repository, data: &[u8]) -> (ObjectId, Vec<std::path::PathBuf>) {
        let mut w = repo.pack_writer().expect("writer");
        let id = w.write(Kind::Blob, data).expect("write");
        let paths = w.finish().expect("publish");
        repo.objects().refresh().expect("refresh");
        (id, paths)
    }

    /// The "last pack first" hint names a pack by position and uid: once a
    /// rescan shifts the positions (a new pack sorts before the hinted
    /// one), the pack now at the hinted position must still be searched.
    #[test]
    fn lookups_after_a_new_pack_shifts_the_list() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(tmp.path()).expect("init");
        let store = repo.objects();
        let write = |n: u32| {
            let data = format!("object {n}\n").into_bytes();
            let (id, paths) = pack_one_blob(&repo, &data);
            (id, data, paths[0].clone())
        };
        let (first, data, first_path) = write(0);
        assert_eq!(store.read(&first).expect("read").data, data);
        for n in 1..64 {
            let (id, data, path) = write(n);
            assert_eq!(store.read(&id).expect("new object").data, data);
            assert_eq!(
                store.read(&first).expect("first object").data,
                b"object 0\n"
            );
            if path < first_path {
                // This pack took the first one's place in the list.
                return;
            }
        }
        panic!("no pack name sorted before the first in 63 tries");
    }

    /// Skipping the SHA-1 (`Verify::EntryChecksums`) must not let damage
    /// through that zlib cannot see: a stored (uncompressed) entry with a
    /// changed byte and its Adler-32 recomputed to match is still valid
    /// zlib of the right size, and only the idx CRC-32 catches it.
    #[test]
    fn entry_checksums_catch_damage_that_zlib_accepts() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(tmp.path()).expect("init");
        // Incompressible, so the writer stores it (zlib level 0).
        let data = crate::test_support::noise(0x2545_f491_4f6c_dd1d, 6000);
        let (id, paths) = pack_one_blob(&repo, &data);
        let store = repo.objects();
        assert_eq!(
            store
                .read_with(&id, Verify::EntryChecksums)
                .expect("read")
                .data,
            data
        );
        let (_, pack, offset) = store
            .snapshot()
            .find(&id)
            .map(|(u, p, e)| (u, p.clone(), e.offset))
            .expect("packed");
        let header = pack.entry_header(offset).expect("header");
        let f = open_pack_to_damage(&paths);
        // zlib header (2 bytes), then stored blocks of at most 65,535 bytes
        // with a 5-byte header each: one block here, data from byte 7.
        let z = header.data_offset;
        let mut stream = vec![0u8; 2 + 5 + data.len() + 4];
        f.read_exact_at(&mut stream, z).expect("read stream");
        assert_eq!(stream[2] & 0b110, 0, "not a stored block: {:x}", stream[2]);
        assert_eq!(&stream[7..7 + data.len()], &data[..], "stored block");
        let mut changed = data.clone();
        changed[1234] ^= 0x01;
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &changed {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        f.write_all_at(&changed[1234..1235], z + 7 + 1234)
            .expect("damage");
        f.write_all_at(&((b << 16) | a).to_be_bytes(), z + 7 + data.len() as u64)
            .expect("adler");
        f.sync_all().expect("sync");

        // A fresh thread: its read window holds none of the old bytes.
        let again = std::thread::scope(|s| {
            s.spawn(|| store.read_with(&id, Verify::EntryChecksums))
                .join()
                .expect("thread")
        });
        match again {
            Err(Error::Corrupt {
                id: bad, detail, ..
            }) => {
                assert_eq!(bad, id);
                assert!(detail.contains("CRC-32"), "{detail}");
            }
            other => panic!("damaged entry read as {other:?}"),
        }
    }

    /// The published pack among `paths`, made writable and opened for
    /// writing, so a test can damage it.
    fn open_pack_to_damage(paths: &[std::path::PathBuf]) -> std::fs::File {
        let pack_path = paths
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "pack"))
            .expect("pack path");
        std::fs::set_permissions(pack_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pack_path)
            .expect("open pack")
    }

    /// Hashing an object only on its first read must not let damage
    /// through: a byte changed on disk after that read (seen through the
    /// same open pack, from a thread whose read window is fresh) still
    /// fails the next read, and the damage is named.
    #[test]
    fn damage_after_a_verified_read_is_still_caught() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(tmp.path()).expect("init");
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("row {i} of a table\n").into_bytes())
            .collect();
        let (id, paths) = pack_one_blob(&repo, &text);
        let store = repo.objects();
        for _ in 0..2 {
            assert_eq!(store.read(&id).expect("read").data, text);
        }
        let (_, pack, entry) = store
            .snapshot()
            .find(&id)
            .map(|(u, p, e)| (u, p.clone(), e))
            .expect("packed");
        let offset = entry.offset;
        assert!(
            pack.is_verified_rank(entry.rank),
            "first read records the hash check"
        );

        let f = open_pack_to_damage(&paths);
        // Inside the entry's zlib stream (its header is a few bytes).
        let at = offset + 40;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("read byte");
        f.write_all_at(&[b[0] ^ 0x10], at).expect("damage");
        f.sync_all().expect("sync");

        let again = std::thread::scope(|s| s.spawn(|| store.read(&id)).join().expect("thread"));
        match again {
            Err(Error::Corrupt { id: bad, .. }) => assert_eq!(bad, id),
            other => panic!("damaged entry read as {other:?}"),
        }
    }
}
