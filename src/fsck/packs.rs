//! fsck's own view of `objects/pack`: every `.idx` with its `.pack`, read
//! with positioned reads and checked object by object.
//!
//! The object store refuses every read from a pack whose trailer disagrees
//! with its index (see `PackFile::damage`); fsck must still read the intact
//! objects of such a pack (the trees it needs to walk the snapshots, the
//! bases of deltas) to tell exactly which objects are damaged. Every object
//! returned here hashed to its id; nothing else is trusted.

use crate::cache::ByteLru;
use crate::object::{hash_object, Kind};
use crate::pack::inflate::inflate_exact;
use crate::pack::{delta, parse_entry_header, EntryHeader, EntryKind, PackIndex};
use crate::pack::{PACK_HEADER_LEN, PACK_TRAILER_LEN};
use crate::repo::Objects;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Longest delta chain followed (as the store).
const MAX_CHAIN: usize = 10_000;
/// Delta bases kept while checking a `git gc`-repacked repository.
const BASE_CACHE_BYTES: usize = 64 << 20;
const BASE_CACHE_MAX_OBJECT: usize = 8 << 20;

/// Resolved delta bases by (pack, offset).
type BaseCache = ByteLru<(usize, u64), (Kind, Arc<Vec<u8>>)>;

/// One pack as found on disk: its index (if it could be used) and its data
/// file (if it exists).
pub struct Pack {
    /// `pack-<sha>`, the name shared by the `.pack` and the `.idx`.
    pub name: String,
    pub idx_path: PathBuf,
    pub pack_path: PathBuf,
    pub index: Option<Arc<PackIndex>>,
    /// Why the index cannot be used (missing, damaged).
    pub idx_error: Option<String>,
    pub file: Option<File>,
    /// Why the pack cannot be read (missing, unreadable).
    pub pack_error: Option<String>,
    pub len: u64,
}

impl Pack {
    /// Opens the pair named by `idx_path` and `pack_path`; what is wrong
    /// with either is recorded, not returned: fsck reports it.
    pub fn open(name: String, idx_path: PathBuf, pack_path: PathBuf) -> Pack {
        let (index, idx_error) = if idx_path.exists() {
            match PackIndex::open(&idx_path) {
                Ok(i) => (Some(Arc::new(i)), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some(format!("{} is missing", file_name(&idx_path))))
        };
        let (file, len, pack_error) = match File::open(&pack_path) {
            Ok(f) => match f.metadata() {
                Ok(m) => (Some(f), m.len(), None),
                Err(e) => (None, 0, Some(format!("{}: {e}", pack_path.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                None,
                0,
                Some(format!("{} is missing", file_name(&pack_path))),
            ),
            Err(e) => (None, 0, Some(format!("{}: {e}", pack_path.display()))),
        };
        Pack {
            name,
            idx_path,
            pack_path,
            index,
            idx_error,
            file,
            pack_error,
            len,
        }
    }

    /// End of the entries (start of the trailer).
    pub fn data_end(&self) -> u64 {
        self.len.saturating_sub(PACK_TRAILER_LEN)
    }
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Every pack of a repository, for one fsck run.
pub struct Packs {
    pub packs: Vec<Pack>,
    cache: Mutex<BaseCache>,
}

impl Packs {
    /// Every `pack-*.idx` and `pack-*.pack` in `pack_dir`, paired by name;
    /// a pack without its index (or an index without its pack) is listed
    /// with the missing half recorded.
    pub fn scan(pack_dir: &Path) -> std::io::Result<Packs> {
        let mut names = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(pack_dir)? {
            let entry = entry?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            for ext in [".idx", ".pack"] {
                if let Some(stem) = file.strip_suffix(ext) {
                    if stem.starts_with("pack-") {
                        names.insert(stem.to_string());
                    }
                }
            }
        }
        let packs = names
            .into_iter()
            .map(|stem| {
                let idx = pack_dir.join(format!("{stem}.idx"));
                let pack = pack_dir.join(format!("{stem}.pack"));
                Pack::open(stem, idx, pack)
            })
            .collect();
        Ok(Packs::from(packs))
    }

    pub fn from(packs: Vec<Pack>) -> Packs {
        Packs {
            packs,
            cache: Mutex::new(ByteLru::new(BASE_CACHE_BYTES)),
        }
    }

    /// Reads the object of rank `rank` in pack `p`, resolving deltas, and
    /// checks that it hashes to the id its index gives. `objects` serves
    /// bases of REF_DELTA entries that live in other packs or loose.
    pub fn read(
        &self,
        p: usize,
        rank: usize,
        objects: &dyn Objects,
    ) -> Result<(Kind, Vec<u8>), String> {
        let index = self.packs[p].index.as_ref().ok_or("index is unusable")?;
        let (id, entry) = index.by_rank(rank).ok_or("no such entry")?;
        let (kind, data) = self.resolve(p, entry.offset, objects)?;
        let data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
        if hash_object(kind, &data) != id {
            return Err(format!(
                "content does not hash to its id ({} of {} bytes)",
                kind.name(),
                data.len()
            ));
        }
        Ok((kind, data))
    }

    /// The raw bytes of the entry at `offset` of pack `p` (header and zlib
    /// stream, up to the next entry), checked against the idx CRC-32.
    pub fn raw_entry(&self, p: usize, offset: u64) -> Result<(EntryHeader, Vec<u8>), String> {
        let pack = &self.packs[p];
        let index = pack.index.as_ref().ok_or("index is unusable")?;
        let file = pack.file.as_ref().ok_or("pack is missing")?;
        let (crc, next) = index
            .entry_at(offset)
            .ok_or_else(|| format!("no entry of the index starts at offset {offset}"))?;
        let end = next.unwrap_or(pack.data_end());
        if offset < PACK_HEADER_LEN || end <= offset || end > pack.data_end() {
            return Err(format!(
                "entry at offset {offset} lies outside the pack's {} bytes (truncated?)",
                pack.len
            ));
        }
        let mut raw = vec![0u8; (end - offset) as usize];
        file.read_exact_at(&mut raw, offset)
            .map_err(|e| format!("reading {}: {e}", pack.pack_path.display()))?;
        let header = check_raw(offset, &raw, crc)?;
        Ok((header, raw))
    }

    /// Resolves the object at `offset` (following its delta chain).
    fn resolve(
        &self,
        p: usize,
        offset: u64,
        objects: &dyn Objects,
    ) -> Result<(Kind, Arc<Vec<u8>>), String> {
        let mut deltas: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut at = offset;
        let (kind, mut data) = loop {
            if deltas.len() > MAX_CHAIN {
                return Err("delta chain is too long".into());
            }
            if !deltas.is_empty() {
                let hit = self
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(p, at));
                if let Some(hit) = hit {
                    break hit;
                }
            }
            let (header, raw) = self.raw_entry(p, at)?;
            let zdata = &raw[(header.data_offset - header.offset) as usize..];
            let body = inflate_exact(zdata, header.size)?;
            match header.kind {
                EntryKind::Base(kind) => {
                    let data = Arc::new(body);
                    if !deltas.is_empty() {
                        self.remember(p, at, kind, &data);
                    }
                    break (kind, data);
                }
                EntryKind::OfsDelta { base_offset } => {
                    deltas.push((at, body));
                    at = base_offset;
                }
                EntryKind::RefDelta { base } => {
                    deltas.push((at, body));
                    let index = self.packs[p].index.as_ref().ok_or("index is unusable")?;
                    match index.lookup(&base) {
                        Some(o) => at = o,
                        None => {
                            let obj = objects
                                .read(&base)
                                .map_err(|e| format!("delta base {base}: {e}"))?;
                            break (obj.kind, Arc::new(obj.data));
                        }
                    }
                }
            }
        };
        while let Some((at, d)) = deltas.pop() {
            data = Arc::new(delta::apply(&data, &d)?);
            if !deltas.is_empty() {
                self.remember(p, at, kind, &data);
            }
        }
        Ok((kind, data))
    }

    fn remember(&self, p: usize, at: u64, kind: Kind, data: &Arc<Vec<u8>>) {
        if data.len() <= BASE_CACHE_MAX_OBJECT {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(
                (p, at),
                (kind, data.clone()),
                data.len(),
            );
        }
    }
}

/// Parses the header of the raw entry `raw` that starts at `offset` and
/// checks the entry's CRC-32 (idx v2) over all of it.
pub fn check_raw(offset: u64, raw: &[u8], crc: Option<u32>) -> Result<EntryHeader, String> {
    let header = parse_entry_header(offset, &raw[..raw.len().min(32)])?;
    if header.data_offset - offset > raw.len() as u64 {
        return Err(format!("entry at offset {offset} is truncated"));
    }
    if let Some(expected) = crc {
        if crc32fast::hash(raw) != expected {
            return Err(format!(
                "CRC-32 of the entry at offset {offset} does not match the index"
            ));
        }
    }
    Ok(header)
}
