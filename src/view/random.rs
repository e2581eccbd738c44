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
//! Never wrong bytes: every blob must be exactly as long as the gap between
//! its offset and the next one (or the end of its tree), otherwise the read
//! fails with `ViewError::Malformed` naming the tree. Objects themselves are
//! SHA-1 checked by the store.

use super::{Content, ViewError};
use crate::object::tree;
use crate::object::{Kind, ObjectId};
use crate::repo::ObjectStore;
use lru::LruCache;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Deepest chunk tree we descend (bup's fanout gives a handful of levels
/// even for terabytes); deeper means a malicious or broken tree.
const MAX_DEPTH: usize = 64;

/// An LRU map bounded by the sum of its values' sizes rather than a count.
pub struct ByteLru<K: Hash + Eq, V> {
    map: LruCache<K, (V, usize)>,
    bytes: usize,
    budget: usize,
}

impl<K: Hash + Eq, V: Clone> ByteLru<K, V> {
    pub fn new(budget: usize) -> Self {
        ByteLru {
            map: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        self.map.get(key).map(|(v, _)| v.clone())
    }

    /// Inserts, then evicts least-recently-used values until the total is
    /// within budget. A value larger than the whole budget is not kept.
    pub fn put(&mut self, key: K, value: V, size: usize) {
        if size > self.budget {
            return;
        }
        if let Some((_, old)) = self.map.put(key, (value, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.bytes > self.budget {
            match self.map.pop_lru() {
                Some((_, (_, s))) => self.bytes -= s,
                None => break,
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// One level of a chunk tree: entry offsets relative to the tree's start, in
/// ascending order.
#[derive(Debug)]
pub struct OffsetTable {
    entries: Vec<TableEntry>,
}

#[derive(Debug, Clone, Copy)]
struct TableEntry {
    offset: u64,
    is_tree: bool,
    id: ObjectId,
}

impl OffsetTable {
    fn parse(id: &ObjectId, data: &[u8]) -> Result<OffsetTable, ViewError> {
        let malformed = |detail: String| ViewError::Malformed { id: *id, detail };
        let raw = tree::decode(data).map_err(|e| malformed(format!("chunk tree: {e}")))?;
        let mut entries = Vec::with_capacity(raw.len());
        for e in raw {
            let offset = std::str::from_utf8(&e.name)
                .ok()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
                .ok_or_else(|| {
                    malformed(format!(
                        "chunk tree entry {:?} is not a hex offset",
                        String::from_utf8_lossy(&e.name)
                    ))
                })?;
            if let Some(prev) = entries.last().map(|p: &TableEntry| p.offset) {
                if offset <= prev {
                    return Err(malformed(format!(
                        "chunk tree offsets not ascending ({prev:x} then {offset:x})"
                    )));
                }
            } else if offset != 0 {
                return Err(malformed(format!(
                    "chunk tree starts at offset {offset:x}, not 0"
                )));
            }
            entries.push(TableEntry {
                offset,
                is_tree: e.mode.is_tree(),
                id: e.id,
            });
        }
        if entries.is_empty() {
            return Err(malformed("empty chunk tree".into()));
        }
        Ok(OffsetTable { entries })
    }

    fn approx_bytes(&self) -> usize {
        64 + self.entries.len() * std::mem::size_of::<TableEntry>()
    }
}

#[derive(Clone)]
enum Cached {
    Table(Arc<OffsetTable>),
    Blob(Arc<Vec<u8>>),
}

/// Decoded chunk trees and inflated blobs shared by all open files, bounded
/// by a byte budget. Objects are immutable (named by their hash), so entries
/// never go stale; a removed pack only means a miss is re-read elsewhere.
pub struct ChunkCache {
    inner: Mutex<ByteLru<ObjectId, Cached>>,
}

impl ChunkCache {
    pub fn new(budget_bytes: usize) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(ByteLru::new(budget_bytes)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByteLru<ObjectId, Cached>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes()
    }

    fn table(&self, store: &ObjectStore, id: &ObjectId) -> Result<Arc<OffsetTable>, ViewError> {
        if let Some(Cached::Table(t)) = self.lock().get(id) {
            return Ok(t);
        }
        // Read outside the lock: two threads may load the same object, which
        // costs time but never correctness.
        let object = store.read(id)?;
        if object.kind != Kind::Tree {
            return Err(ViewError::WrongKind {
                id: *id,
                expected: "tree",
            });
        }
        let table = Arc::new(OffsetTable::parse(id, &object.data)?);
        let size = table.approx_bytes();
        self.lock().put(*id, Cached::Table(table.clone()), size);
        Ok(table)
    }

    /// The whole inflated blob: its SHA-1 is checked over all of it, so a
    /// 4 KiB read of a cold chunk costs one chunk's inflate, and the next
    /// reads in that chunk are served from here.
    pub fn blob(&self, store: &ObjectStore, id: &ObjectId) -> Result<Arc<Vec<u8>>, ViewError> {
        if let Some(Cached::Blob(b)) = self.lock().get(id) {
            return Ok(b);
        }
        let object = store.read(id)?;
        if object.kind != Kind::Blob {
            return Err(ViewError::WrongKind {
                id: *id,
                expected: "blob",
            });
        }
        let blob = Arc::new(object.data);
        let size = blob.len() + 64;
        self.lock().put(*id, Cached::Blob(blob.clone()), size);
        Ok(blob)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.lock().map.contains(id)
    }
}

/// Where the last read ended up: a tree level and its absolute byte range.
struct Level {
    table: Arc<OffsetTable>,
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
}

/// A chunk located for a read: its absolute range and object id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    pub start: u64,
    pub end: u64,
    pub id: ObjectId,
}

impl FileReader {
    /// `size` must be the file's size (from `.bupm` or [`super::content_size`]);
    /// the chunk tree is checked against it as it is read.
    pub fn new(content: Content, size: u64) -> FileReader {
        FileReader {
            content,
            size,
            leaf: Mutex::new(None),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finds the blob holding byte `pos` (which must be < size), starting
    /// from the remembered leaf when it covers `pos`, else from the root.
    pub fn locate(
        &self,
        store: &ObjectStore,
        cache: &ChunkCache,
        pos: u64,
    ) -> Result<Located, ViewError> {
        let root = match self.content {
            Content::Blob(id) => {
                return Ok(Located {
                    start: 0,
                    end: self.size,
                    id,
                })
            }
            Content::ChunkTree(id) => id,
        };
        let remembered = self.leaf.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut level = match remembered {
            Some(l) if l.start <= pos && pos < l.end => l,
            _ => Level {
                table: cache.table(store, &root)?,
                start: 0,
                end: self.size,
                depth: 0,
            },
        };
        let mut tree_id = root;
        loop {
            let entries = &level.table.entries;
            let rel = pos - level.start;
            // First entry has offset 0 (checked in parse), so idx >= 1.
            let idx = entries.partition_point(|e| e.offset <= rel) - 1;
            let e = entries[idx];
            let start = level.start + e.offset;
            let end = match entries.get(idx + 1) {
                Some(next) => level.start + next.offset,
                None => level.end,
            };
            if start >= end {
                return Err(ViewError::Malformed {
                    id: tree_id,
                    detail: format!(
                        "chunk tree entry at {start:#x} lies beyond its tree's end {end:#x}"
                    ),
                });
            }
            if !e.is_tree {
                *self.leaf.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
                return Ok(Located {
                    start,
                    end,
                    id: e.id,
                });
            }
            if level.depth >= MAX_DEPTH {
                return Err(ViewError::Malformed {
                    id: root,
                    detail: "chunk tree is too deep".into(),
                });
            }
            tree_id = e.id;
            level = Level {
                table: cache.table(store, &e.id)?,
                start,
                end,
                depth: level.depth + 1,
            };
        }
    }

    /// Appends up to `len` bytes at `offset` to `out` (fewer at the end of
    /// the file). Returns the next chunk after the last one touched, for
    /// read-ahead, when the read ended inside the file.
    pub fn read_at(
        &self,
        store: &ObjectStore,
        cache: &ChunkCache,
        offset: u64,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<Located>, ViewError> {
        let end = offset.saturating_add(len as u64).min(self.size);
        let mut pos = offset;
        while pos < end {
            let chunk = self.locate(store, cache, pos)?;
            let blob = cache.blob(store, &chunk.id)?;
            if blob.len() as u64 != chunk.end - chunk.start {
                return Err(ViewError::Malformed {
                    id: chunk.id,
                    detail: format!(
                        "blob is {} bytes, but the file's chunk tree (or size) says {}",
                        blob.len(),
                        chunk.end - chunk.start
                    ),
                });
            }
            let from = (pos - chunk.start) as usize;
            let to = (end.min(chunk.end) - chunk.start) as usize;
            out.extend_from_slice(&blob[from..to]);
            pos = chunk.start + to as u64;
        }
        if end < self.size && end > offset {
            // Cheap when the next chunk is in the remembered leaf.
            return Ok(Some(self.locate(store, cache, end)?));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_lru_evicts_oldest_to_budget() {
        let mut lru = ByteLru::new(100);
        lru.put(1, "a", 40);
        lru.put(2, "b", 40);
        assert_eq!(lru.get(&1), Some("a"));
        lru.put(3, "c", 40); // evicts 2, the least recently used
        assert_eq!(lru.get(&2), None);
        assert_eq!(lru.get(&1), Some("a"));
        assert_eq!(lru.bytes(), 80);
        lru.put(4, "huge", 101);
        assert_eq!(lru.get(&4), None);
    }

    #[test]
    fn offset_table_rejects_unordered_and_non_hex() {
        let id = ObjectId::EMPTY_BLOB;
        let mk = |names: &[&str]| {
            let mut entries: Vec<tree::Entry> = names
                .iter()
                .map(|n| tree::Entry {
                    mode: tree::Mode::Blob,
                    name: n.as_bytes().to_vec(),
                    id,
                })
                .collect();
            tree::encode(&mut entries)
        };
        assert!(OffsetTable::parse(&id, &mk(&["00", "10", "20"])).is_ok());
        assert!(OffsetTable::parse(&id, &mk(&["01", "10"])).is_err());
        assert!(OffsetTable::parse(&id, &mk(&["00", "zz"])).is_err());
        assert!(OffsetTable::parse(&id, &mk(&[])).is_err());
    }
}
