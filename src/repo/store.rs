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
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::reader::ReadFail;
use crate::pack::{delta, EntryKind, PackFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Longest delta chain we follow (git's default maximum depth is 50; 4095
/// is the hard limit of `git pack-objects --depth`).
const MAX_CHAIN: usize = 10_000;
/// How many packs deep a REF_DELTA may send us looking for bases elsewhere.
const MAX_CROSS_PACK: usize = 64;
const CACHE_BYTES: usize = 64 << 20;
const CACHE_MAX_OBJECT: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    pub data: Vec<u8>,
}

/// One snapshot of the usable packs and of the indexes we could not use.
#[derive(Default)]
struct PackSet {
    packs: Vec<(u64, Arc<PackFile>)>,
    /// Indexes that failed to open, with the reason; objects they hold are
    /// reported as corrupt rather than silently missing.
    broken: Vec<(PathBuf, String)>,
}

pub struct ObjectStore {
    objects_dir: PathBuf,
    set: RwLock<Arc<PackSet>>,
    next_pack_id: AtomicU64,
    cache: Mutex<BaseCache>,
}

impl ObjectStore {
    /// Opens the store at `objects_dir` and scans its packs.
    pub fn open(objects_dir: &Path) -> Result<ObjectStore, Error> {
        let store = ObjectStore {
            objects_dir: objects_dir.to_path_buf(),
            set: RwLock::new(Arc::new(PackSet::default())),
            next_pack_id: AtomicU64::new(0),
            cache: Mutex::new(BaseCache::default()),
        };
        store.refresh()?;
        Ok(store)
    }

    pub fn objects_dir(&self) -> &Path {
        &self.objects_dir
    }

    fn snapshot(&self) -> Arc<PackSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rescans `objects/pack`: opens new packs, drops removed ones (so no
    /// answer can come from a pack that is gone), keeps the rest open.
    pub fn refresh(&self) -> Result<(), Error> {
        let pack_dir = self.objects_dir.join("pack");
        let old = self.snapshot();
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
        let mut set = PackSet::default();
        for idx_path in idx_paths {
            // Pack names are content hashes: same name, same content.
            if let Some(p) = old.packs.iter().find(|(_, p)| p.index().path() == idx_path) {
                set.packs.push(p.clone());
                continue;
            }
            match PackFile::open(&idx_path) {
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
                    tracing::warn!("cannot use pack index {}: {e}", idx_path.display());
                    set.broken.push((idx_path, e.to_string()));
                }
            }
        }
        let live: Vec<u64> = set.packs.iter().map(|(uid, _)| *uid).collect();
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain_packs(&live);
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

    /// The packs currently in use (a snapshot; `refresh` does not change it).
    pub fn pack_files(&self) -> Vec<Arc<PackFile>> {
        self.snapshot()
            .packs
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Whether `id` is in a pack we know of or loose. Does not rescan.
    pub fn contains(&self, id: &ObjectId) -> bool {
        let set = self.snapshot();
        set.packs
            .iter()
            .any(|(_, p)| p.index().lookup(id).is_some())
            || loose::exists(&self.objects_dir, id)
    }

    /// Reads and verifies an object. On a miss, rescans the packs once (a
    /// concurrent `git gc` may have moved it) before answering NotFound.
    pub fn read(&self, id: &ObjectId) -> Result<Object, Error> {
        self.read_depth(id, 0)
    }

    fn read_depth(&self, id: &ObjectId, depth: usize) -> Result<Object, Error> {
        if depth > MAX_CROSS_PACK {
            return Err(Error::Corrupt {
                id: *id,
                pack: None,
                detail: "REF_DELTA bases refer to each other in a cycle".into(),
            });
        }
        for attempt in 0..2 {
            let set = self.snapshot();
            for (uid, pack) in &set.packs {
                if let Some(offset) = pack.index().lookup(id) {
                    return self.read_packed(*uid, pack, offset, id, depth);
                }
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
        let Some((_, pack, offset)) = set
            .packs
            .iter()
            .find_map(|(uid, p)| p.index().lookup(id).map(|o| (uid, p, o)))
        else {
            if let Some(h) = loose::read_header_of(&self.objects_dir, id)? {
                return Ok(h);
            }
            // Rare: let `read` do the rescan and the error reporting.
            let obj = self.read_depth(id, depth)?;
            return Ok((obj.kind, obj.data.len() as u64));
        };
        let fail = |e: ReadFail| e.into_error(*id, pack.path());
        let top = pack.entry_header(offset).map_err(fail)?;
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

    /// Reads the object at `offset` of `pack`, resolving its delta chain.
    fn read_packed(
        &self,
        uid: u64,
        pack: &PackFile,
        offset: u64,
        id: &ObjectId,
        depth: usize,
    ) -> Result<Object, Error> {
        let fail = |e: ReadFail| e.into_error(*id, pack.path());
        let corrupt = |d: String| fail(ReadFail::Corrupt(d));
        // Walk down to a base (or a cached intermediate), remembering deltas.
        let mut chain = Vec::new();
        let mut at = offset;
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
                    let data = Arc::new(pack.inflate(&header).map_err(fail)?);
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
                            let obj = self.read_depth(&base, depth + 1).map_err(|e| match e {
                                Error::NotFound(_) => {
                                    corrupt(format!("delta base {base} is missing"))
                                }
                                other => other,
                            })?;
                            break (obj.kind, Arc::new(obj.data));
                        }
                    }
                }
            }
        };
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
        if hash_object(kind, &data) != *id {
            return Err(corrupt(format!(
                "content does not match its id (read {} bytes of {})",
                data.len(),
                kind.name()
            )));
        }
        Ok(Object { kind, data })
    }

    fn cache_get(&self, uid: u64, offset: u64) -> Option<(Kind, Arc<Vec<u8>>)> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid, offset)
    }

    fn cache_put(&self, uid: u64, offset: u64, kind: Kind, data: &Arc<Vec<u8>>) {
        if data.len() <= CACHE_MAX_OBJECT {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).put(
                uid,
                offset,
                kind,
                data.clone(),
            );
        }
    }
}

type CachedBase = (Kind, Arc<Vec<u8>>, u64);

/// Delta bases by (pack, offset), least recently used evicted first.
#[derive(Default)]
struct BaseCache {
    /// (pack uid, offset) -> (kind, data, last use).
    map: HashMap<(u64, u64), CachedBase>,
    bytes: usize,
    tick: u64,
}

impl BaseCache {
    fn get(&mut self, uid: u64, offset: u64) -> Option<(Kind, Arc<Vec<u8>>)> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.map.get_mut(&(uid, offset))?;
        entry.2 = tick;
        Some((entry.0, entry.1.clone()))
    }

    fn put(&mut self, uid: u64, offset: u64, kind: Kind, data: Arc<Vec<u8>>) {
        self.tick += 1;
        let len = data.len();
        if let Some(old) = self.map.insert((uid, offset), (kind, data, self.tick)) {
            self.bytes -= old.1.len();
        }
        self.bytes += len;
        while self.bytes > CACHE_BYTES {
            let Some((&key, _)) = self.map.iter().min_by_key(|(_, v)| v.2) else {
                break;
            };
            if let Some(old) = self.map.remove(&key) {
                self.bytes -= old.1.len();
            }
        }
    }

    fn retain_packs(&mut self, live: &[u64]) {
        self.map.retain(|(uid, _), _| live.contains(uid));
        self.bytes = self.map.values().map(|v| v.1.len()).sum();
    }
}
