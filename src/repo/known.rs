//! "Is this object already stored?" for a save, fast with hundreds of packs
//! and in a few bytes of memory per object.
//!
//! Three sources answer, each only for what it has verified:
//! - the object table `rewind/objects.midx`: every id of a named set of packs,
//!   sorted, on disk (read with `pread`, one small bucket per lookup), with a
//!   Bloom filter (10 bits per object) and a 2^16-entry fan-out in memory;
//! - the indexes of packs the table does not cover (packs published since it
//!   was written), looked up one by one;
//! - loose objects, but only under the `objects/xx` directories that existed
//!   when this value was made (rewind writes no loose objects).
//!
//! The table is keyed by the exact set of pack file names it covers. It is
//! used only if every one of those packs is among the packs the store has
//! open and sound (its header and trailer agree with its index); a missing
//! pack (pruned, repacked by `git gc`) or a damaged one (truncated,
//! replaced) means the table is discarded and rebuilt without it, and a
//! damaged pack's own index is not asked either. A stale "already stored" would make a save
//! reference an object that no longer exists, which is how bup lost data
//! through its `.midx`/bloom caches; a false "absent" only costs a
//! duplicate copy. So every doubt (torn file, bad checksum, unknown
//! version, read error) resolves to "absent" or "rebuild", never to
//! "present". Git never reads this file (git's own
//! `objects/pack/multi-pack-index` would be trusted by git, so we do not
//! write that).
//!
//! File layout (all integers big-endian):
//! `"RWMIDX\0\x01"`, u32 pack count, per pack a u16 name length and the
//! name (`pack-<sha>.idx`, sorted), the object ids (20 bytes each, strictly
//! sorted), the fan-out (65,536 u32: number of ids whose first two bytes are
//! <= i), u64 object count, and the SHA-1 of everything before it. It is
//! written to a temporary file, fsynced and renamed into place.

use super::store::ObjectStore;
use super::{fsutil, loose, Error};
use crate::object::ObjectId;
use crate::pack::idx::PackIndex;
use sha1::{Digest, Sha1};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"RWMIDX\0\x01";
const FANOUT: usize = 1 << 16;
const FANOUT_BYTES: u64 = FANOUT as u64 * 4;
const BLOOM_BITS_PER_ID: u64 = 10;
const BLOOM_HASHES: u64 = 7;
/// File name under the repository's `rewind/` directory.
pub const MIDX_NAME: &str = "objects.midx";
/// How many packs may sit outside the table before it is rebuilt. Each
/// costs one idx lookup per absent object; a rebuild reads every idx.
pub const DEFAULT_MAX_UNCOVERED: usize = 8;

/// What [`KnownObjects::open`] found and did, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownReport {
    /// Packs answered by the table.
    pub covered_packs: usize,
    /// Packs looked up through their own idx.
    pub uncovered_packs: usize,
    pub table_objects: u64,
    /// Whether the table was (re)written by this open.
    pub rebuilt: bool,
    /// Why an existing table was not used, if one existed.
    pub rejected: Option<String>,
    /// Packs left out because their frame disagrees with their index.
    pub damaged_packs: usize,
}

pub struct KnownObjects {
    table: Option<Table>,
    uncovered: Vec<Arc<PackIndex>>,
    /// Where loose objects are looked for (`None`: a remote's cache).
    objects_dir: Option<PathBuf>,
    /// `objects/xx` directories present at open (index = first id byte).
    loose_dirs: Box<[bool; 256]>,
    report: KnownReport,
}

impl KnownObjects {
    /// Builds the answerer for the packs `store` has open now, with the
    /// table in `rewind_dir`. Never fails: when the table cannot be read or
    /// written, lookups fall back to the packs' own indexes.
    pub fn open(store: &ObjectStore, rewind_dir: &Path) -> KnownObjects {
        KnownObjects::open_with(store, rewind_dir, DEFAULT_MAX_UNCOVERED)
    }

    /// As [`open`](Self::open), rebuilding the table once more than
    /// `max_uncovered` packs are outside it.
    pub fn open_with(store: &ObjectStore, rewind_dir: &Path, max_uncovered: usize) -> KnownObjects {
        // Only sound packs answer. A pack whose frame disagrees with its
        // index (truncated, replaced) still lists its objects in its idx:
        // trusting it made a save skip writing chunks that could no longer
        // be read, and the new snapshot was as broken as the old one.
        let (packs, damaged): (Vec<_>, Vec<_>) =
            store.pack_files().into_iter().partition(|p| p.is_sound());
        for p in &damaged {
            tracing::warn!(
                "pack {} is damaged: objects only it holds are written again",
                p.path().display()
            );
        }
        let indexes = packs.iter().map(|p| p.shared_index()).collect();
        let mut known = KnownObjects::from_indexes(
            indexes,
            rewind_dir,
            Some(store.objects_dir()),
            max_uncovered,
        );
        known.report.damaged_packs = damaged.len();
        known
    }

    /// Builds the answerer for the packs of `packs` (indexes of packs known
    /// to be sound), with the table in `rewind_dir`, and loose objects under
    /// `objects_dir` if given.
    pub fn from_indexes(
        packs: Vec<Arc<PackIndex>>,
        rewind_dir: &Path,
        objects_dir: Option<&Path>,
        max_uncovered: usize,
    ) -> KnownObjects {
        let names: Vec<String> = packs.iter().map(|p| pack_name(p)).collect();
        let (table, report) = open_table(rewind_dir, &names);
        let opened = Opened {
            table,
            report,
            pack_count: packs.len(),
        };
        KnownObjects::with_table(opened, &packs, rewind_dir, objects_dir, max_uncovered)
    }

    /// As [`from_indexes`](Self::from_indexes) for a remote's cached idx
    /// files (`name`, `path`), with no loose objects; reads only the idx
    /// files the table does not cover (the table answers for the rest, and
    /// reading every idx cold is most of the start of a re-save). `None`
    /// if a file that must be read cannot be.
    pub fn from_index_files(
        files: &[(String, PathBuf)],
        rewind_dir: &Path,
        max_uncovered: usize,
    ) -> Option<KnownObjects> {
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let (table, report) = open_table(rewind_dir, &names);
        let covered = |name: &String| table.as_ref().is_some_and(|t| t.packs.contains(name));
        let uncovered = files.iter().filter(|(n, _)| !covered(n)).count();
        // A table to rebuild is built from every index.
        let read_all = uncovered > max_uncovered;
        let mut packs = Vec::new();
        for (name, path) in files {
            if read_all || !covered(name) {
                packs.push(Arc::new(PackIndex::open(path).ok()?));
            }
        }
        let opened = Opened {
            table,
            report,
            pack_count: files.len(),
        };
        Some(KnownObjects::with_table(
            opened,
            &packs,
            rewind_dir,
            None,
            max_uncovered,
        ))
    }

    /// The answerer from the `opened` table and the indexes of `packs` (all
    /// the packs when the table must be rebuilt, else at least those it
    /// does not cover), with loose objects under `objects_dir` if given.
    fn with_table(
        opened: Opened,
        packs: &[Arc<PackIndex>],
        rewind_dir: &Path,
        objects_dir: Option<&Path>,
        max_uncovered: usize,
    ) -> KnownObjects {
        let path = rewind_dir.join(MIDX_NAME);
        let Opened {
            mut table,
            mut report,
            pack_count,
        } = opened;
        let uncovered = |t: &Option<Table>| -> Vec<Arc<PackIndex>> {
            packs
                .iter()
                .filter(|p| t.as_ref().is_none_or(|t| !t.packs.contains(&pack_name(p))))
                .cloned()
                .collect()
        };
        if uncovered(&table).len() > max_uncovered {
            match Table::build(&path, packs) {
                Ok(t) => {
                    table = Some(t);
                    report.rebuilt = true;
                }
                Err(e) => tracing::warn!(
                    "cannot write {} (lookups will be slower): {e}",
                    path.display()
                ),
            }
        }
        let uncovered = uncovered(&table);
        report.covered_packs = pack_count - uncovered.len();
        report.uncovered_packs = uncovered.len();
        report.table_objects = table.as_ref().map_or(0, |t| t.count);
        KnownObjects {
            table,
            uncovered,
            loose_dirs: match objects_dir {
                Some(dir) => loose_dirs(dir),
                None => Box::new([false; 256]),
            },
            objects_dir: objects_dir.map(Path::to_path_buf),
            report,
        }
    }

    pub fn report(&self) -> &KnownReport {
        &self.report
    }

    /// Whether `id` is stored in a pack that existed at open (or loose).
    /// Read errors answer "absent": a duplicate is harmless, a false
    /// "present" is not.
    pub fn contains(&self, id: &ObjectId) -> bool {
        if let Some(t) = &self.table {
            match t.contains(id) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!("reading {}: {e}", t.path.display()),
            }
        }
        self.uncovered.iter().any(|p| p.lookup(id).is_some())
            || self
                .objects_dir
                .as_ref()
                .is_some_and(|dir| self.loose_dirs[usize::from(id.0[0])] && loose::exists(dir, id))
    }
}

/// The table as [`open_table`] found it, for the packs that exist now.
struct Opened {
    table: Option<Table>,
    /// Why a table was not used, if one existed.
    report: KnownReport,
    /// All the packs that exist, read or not.
    pack_count: usize,
}

/// The table in `rewind_dir`, if it reads and speaks only for packs among
/// `names` (which exist now); the report says why one was not used.
fn open_table(rewind_dir: &Path, names: &[String]) -> (Option<Table>, KnownReport) {
    let path = rewind_dir.join(MIDX_NAME);
    let mut report = KnownReport::default();
    let mut table = match Table::open(&path) {
        Ok(Some(t)) => Some(t),
        Ok(None) => None,
        Err(why) => {
            tracing::info!("not using {}: {why}", path.display());
            report.rejected = Some(why);
            None
        }
    };
    if let Some(t) = &table {
        let names: std::collections::HashSet<&String> = names.iter().collect();
        if let Some(gone) = t.packs.iter().find(|name| !names.contains(name)) {
            let why = format!("it covers {gone}, which is gone or damaged");
            tracing::info!("not using {}: {why}", path.display());
            report.rejected = Some(why);
            table = None;
        }
    }
    (table, report)
}

fn pack_name(p: &PackIndex) -> String {
    p.path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn loose_dirs(objects_dir: &Path) -> Box<[bool; 256]> {
    let mut dirs = Box::new([false; 256]);
    // On a listing error assume every directory may hold objects.
    let Ok(entries) = std::fs::read_dir(objects_dir) else {
        return Box::new([true; 256]);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2 {
            if let Ok(b) = u8::from_str_radix(&name, 16) {
                dirs[usize::from(b)] = true;
            }
        }
    }
    dirs
}

/// A verified object table: the ids stay on disk, the filter and the
/// fan-out are in memory.
struct Table {
    path: PathBuf,
    file: File,
    packs: BTreeSet<String>,
    ids_start: u64,
    count: u64,
    fanout: Vec<u32>,
    bloom: Bloom,
}

impl Table {
    /// Reads and verifies the table at `path`; `Ok(None)` if there is none,
    /// `Err(reason)` if it cannot be trusted.
    fn open(path: &Path) -> Result<Option<Table>, String> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut r = HashingReader {
            inner: BufReader::with_capacity(1 << 20, &file),
            hasher: Sha1::new(),
            read: 0,
        };
        let io = |e: std::io::Error| format!("cannot read it: {e}");
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io)?;
        if &magic != MAGIC {
            return Err("unknown format or version".into());
        }
        let npacks = r.u32().map_err(io)?;
        let mut packs = BTreeSet::new();
        for _ in 0..npacks {
            let mut n = [0u8; 2];
            r.read_exact(&mut n).map_err(io)?;
            let mut name = vec![0u8; usize::from(u16::from_be_bytes(n))];
            r.read_exact(&mut name).map_err(io)?;
            let name = String::from_utf8(name).map_err(|_| "a pack name is not UTF-8")?;
            packs.insert(name);
        }
        let ids_start = r.read;
        let tail = FANOUT_BYTES + 8 + 20;
        let ids_len = len
            .checked_sub(ids_start + tail)
            .filter(|l| l % 20 == 0)
            .ok_or("its size does not fit its layout")?;
        let count = ids_len / 20;
        let mut bloom = Bloom::new(count);
        let mut counts = vec![0u32; FANOUT];
        let mut prev: Option<[u8; 20]> = None;
        for _ in 0..count {
            let mut id = [0u8; 20];
            r.read_exact(&mut id).map_err(io)?;
            if prev.is_some_and(|p| p >= id) {
                return Err("ids are not strictly sorted".into());
            }
            prev = Some(id);
            counts[prefix(&id)] += 1;
            bloom.insert(&id);
        }
        let mut fanout = vec![0u32; FANOUT];
        let mut running = 0u64;
        for (i, slot) in fanout.iter_mut().enumerate() {
            *slot = r.u32().map_err(io)?;
            running += u64::from(counts[i]);
            if u64::from(*slot) != running {
                return Err(format!("fan-out disagrees with the ids at {i:04x}"));
            }
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(io)?;
        if u64::from_be_bytes(n) != count {
            return Err("object count disagrees with its size".into());
        }
        let actual: [u8; 20] = r.hasher.finalize().into();
        let mut stored = [0u8; 20];
        r.inner.read_exact(&mut stored).map_err(io)?;
        if actual != stored {
            return Err("checksum mismatch".into());
        }
        Ok(Some(Table {
            path: path.to_path_buf(),
            file,
            packs,
            ids_start,
            count,
            fanout,
            bloom,
        }))
    }

    /// Writes a table of every id in `packs` to `path` (crash-safely) and
    /// opens it.
    fn build(path: &Path, packs: &[Arc<PackIndex>]) -> Result<Table, Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(Error::io("creating directory", dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp_midx_")
            .tempfile_in(dir)
            .map_err(Error::io("creating temporary file in", dir))?;
        let tmp_path = tmp.path().to_path_buf();
        let io = |e| Error::io("writing object table", &tmp_path)(e);
        let file = tmp.reopen().map_err(io)?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha1::new(),
        };
        let names: BTreeSet<String> = packs.iter().map(|p| pack_name(p)).collect();
        w.put(MAGIC).map_err(io)?;
        w.put(&(names.len() as u32).to_be_bytes()).map_err(io)?;
        for name in &names {
            let len = u16::try_from(name.len()).map_err(|_| {
                io(std::io::Error::other(format!(
                    "pack name {name} is too long"
                )))
            })?;
            w.put(&len.to_be_bytes()).map_err(io)?;
            w.put(name.as_bytes()).map_err(io)?;
        }
        // k-way merge of the sorted idx id lists, dropping ids held by
        // several packs.
        let mut heads = BinaryHeap::new();
        let mut iters: Vec<_> = packs.iter().map(|p| p.entries()).collect();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(e) = it.next() {
                heads.push(Reverse((e.id, i)));
            }
        }
        let mut counts = vec![0u32; FANOUT];
        let mut count = 0u64;
        let mut last: Option<ObjectId> = None;
        while let Some(Reverse((id, i))) = heads.pop() {
            if let Some(e) = iters[i].next() {
                heads.push(Reverse((e.id, i)));
            }
            if last == Some(id) {
                continue;
            }
            last = Some(id);
            w.put(&id.0).map_err(io)?;
            counts[prefix(&id.0)] += 1;
            count += 1;
        }
        let mut running = 0u32;
        for c in counts {
            running += c;
            w.put(&running.to_be_bytes()).map_err(io)?;
        }
        w.put(&count.to_be_bytes()).map_err(io)?;
        let sum: [u8; 20] = w.hasher.finalize().into();
        let mut inner = w.inner;
        inner.write_all(&sum).map_err(io)?;
        let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        tmp.persist(path)
            .map_err(|e| Error::io("replacing", path)(e.error))?;
        fsutil::fsync_dir(dir)?;
        // Re-read what we wrote: the table in use is always a verified one.
        match Table::open(path) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Error::io("reading back", path)(
                std::io::ErrorKind::NotFound.into(),
            )),
            Err(why) => Err(Error::io("reading back", path)(std::io::Error::other(why))),
        }
    }

    fn contains(&self, id: &ObjectId) -> std::io::Result<bool> {
        if !self.bloom.may_contain(&id.0) {
            return Ok(false);
        }
        let p = prefix(&id.0);
        let start = if p == 0 { 0 } else { self.fanout[p - 1] };
        let end = self.fanout[p];
        if start >= end {
            return Ok(false);
        }
        let mut buf = vec![0u8; (end - start) as usize * 20];
        self.file
            .read_exact_at(&mut buf, self.ids_start + u64::from(start) * 20)?;
        let (mut lo, mut hi) = (0usize, buf.len() / 20);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match buf[mid * 20..mid * 20 + 20].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }
}

fn prefix(id: &[u8; 20]) -> usize {
    usize::from(u16::from_be_bytes([id[0], id[1]]))
}

/// A Bloom filter over SHA-1 ids. The ids are uniformly distributed, so
/// their own bytes serve as the hash functions (double hashing).
struct Bloom {
    bits: Vec<u64>,
    nbits: u64,
}

impl Bloom {
    fn new(count: u64) -> Bloom {
        let nbits = (count * BLOOM_BITS_PER_ID).max(64).next_multiple_of(64);
        Bloom {
            bits: vec![0; (nbits / 64) as usize],
            nbits,
        }
    }

    fn positions(nbits: u64, id: &[u8; 20]) -> impl Iterator<Item = u64> {
        let h1 = u64::from_le_bytes(id[4..12].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(id[12..20].try_into().expect("8 bytes")) | 1;
        (0..BLOOM_HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % nbits)
    }

    fn insert(&mut self, id: &[u8; 20]) {
        for bit in Bloom::positions(self.nbits, id) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, id: &[u8; 20]) -> bool {
        Bloom::positions(self.nbits, id)
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha1,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hasher.update(&*buf);
        self.read += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha1,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let ids: Vec<[u8; 20]> = (0..10_000u32)
            .map(|n| crate::object::hash_object(crate::object::Kind::Blob, &n.to_be_bytes()).0)
            .collect();
        let mut bloom = Bloom::new(ids.len() as u64);
        for id in &ids {
            bloom.insert(id);
        }
        assert!(ids.iter().all(|id| bloom.may_contain(id)));
        let false_hits = (10_000..20_000u32)
            .map(|n| crate::object::hash_object(crate::object::Kind::Blob, &n.to_be_bytes()).0)
            .filter(|id| bloom.may_contain(id))
            .count();
        assert!(false_hits < 300, "{false_hits} false positives in 10,000");
    }
}
