//! Pack index files: encoding idx v2, and reading v2 (and bup-era v1) for lookups.
//!
//! idx v2: "\xfftOc", version 2, a 256-entry fan-out (big-endian u32: number
//! of ids whose first byte is <= i), the sorted ids, one CRC-32 per entry (of
//! its raw bytes in the pack), 31-bit offsets (MSB set: index into the
//! following table of 64-bit offsets, used only for offsets >= 2^31), the
//! pack's trailer checksum, then the SHA-1 of all preceding idx bytes.
//! idx v1: fan-out, then (u32 offset, id) pairs, the two checksums.
//!
//! An index is read whole into memory at open and verified (checksum, sorted
//! ids, sane offsets), so later lookups can trust its structure.

use crate::object::ObjectId;
use crate::repo::Error;
use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

const IDX_V2_MAGIC: [u8; 4] = [0xff, b't', b'O', b'c'];
const FANOUT_LEN: usize = 256 * 4;
/// Offsets at or above this go to the 64-bit table (as `git index-pack` does).
const MAX_OFFSET32: u64 = 0x7fff_ffff;

/// One pack entry as the idx records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxEntry {
    pub id: ObjectId,
    pub offset: u64,
    /// CRC-32 of the entry's raw bytes in the pack (header and zlib data).
    pub crc32: u32,
}

/// Encodes an idx v2 for a pack holding `entries` (sorted here by id; ids
/// must be distinct) whose trailer checksum is `pack_checksum`.
pub fn encode_v2(entries: &mut [IdxEntry], pack_checksum: &[u8; 20]) -> Vec<u8> {
    entries.sort_unstable_by_key(|e| e.id);
    let n = entries.len();
    let mut out = Vec::with_capacity(8 + FANOUT_LEN + n * 28 + 40);
    out.extend_from_slice(&IDX_V2_MAGIC);
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut counts = [0u32; 256];
    for e in entries.iter() {
        counts[usize::from(e.id.0[0])] += 1;
    }
    let mut running = 0u32;
    for c in counts {
        running += c;
        out.extend_from_slice(&running.to_be_bytes());
    }
    for e in entries.iter() {
        out.extend_from_slice(&e.id.0);
    }
    for e in entries.iter() {
        out.extend_from_slice(&e.crc32.to_be_bytes());
    }
    let mut large = Vec::new();
    for e in entries.iter() {
        let word = if e.offset > MAX_OFFSET32 {
            let slot = large.len() as u32;
            large.push(e.offset);
            0x8000_0000 | slot
        } else {
            e.offset as u32
        };
        out.extend_from_slice(&word.to_be_bytes());
    }
    for off in large {
        out.extend_from_slice(&off.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum);
    let own: [u8; 20] = Sha1::digest(&out).into();
    out.extend_from_slice(&own);
    out
}

/// One entry of an index, found by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    /// v2 only.
    pub crc: Option<u32>,
    /// Where the next entry starts (`None` for the last one).
    pub next: Option<u64>,
    /// Rank among all entries in offset order (see [`PackIndex::offset_rank`]).
    pub rank: usize,
}

/// A verified, in-memory pack index.
pub struct PackIndex {
    path: PathBuf,
    version: u32,
    fanout: [u32; 256],
    ids: Vec<ObjectId>,
    offsets: Vec<u64>,
    /// CRC-32s (v2 only).
    crcs: Vec<u32>,
    /// Entry positions sorted by offset: finds where an entry ends (the next
    /// entry's offset) and an entry's CRC when only its offset is known.
    by_offset: Vec<u32>,
    /// The inverse: each entry's rank in offset order, so that an entry
    /// found by id needs no second search to find where it ends.
    rank: Vec<u32>,
    pack_checksum: [u8; 20],
}

impl PackIndex {
    pub fn open(path: &Path) -> Result<PackIndex, Error> {
        let bytes = std::fs::read(path).map_err(Error::io("reading pack index", path))?;
        PackIndex::parse(path, &bytes)
    }

    /// Parses and verifies idx bytes; `path` is only used in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<PackIndex, Error> {
        let bad = |detail: String| Error::BadIndex {
            path: path.to_path_buf(),
            detail,
        };
        if bytes.len() < FANOUT_LEN + 40 {
            return Err(bad(format!("too short ({} bytes)", bytes.len())));
        }
        let (body, own) = bytes.split_at(bytes.len() - 20);
        let actual: [u8; 20] = Sha1::digest(body).into();
        if actual[..] != own[..] {
            return Err(bad("checksum mismatch".into()));
        }
        let pack_checksum: [u8; 20] = body[body.len() - 20..].try_into().expect("20 bytes");
        let (version, fan_start) = if bytes[..4] == IDX_V2_MAGIC {
            let v = be32(&bytes[4..8]);
            if v != 2 {
                return Err(bad(format!("unsupported version {v}")));
            }
            (2, 8)
        } else {
            (1, 0)
        };
        let mut fanout = [0u32; 256];
        let mut prev = 0;
        for (i, slot) in fanout.iter_mut().enumerate() {
            let v = be32(&bytes[fan_start + 4 * i..]);
            if v < prev {
                return Err(bad("fan-out table is not monotonic".into()));
            }
            *slot = v;
            prev = v;
        }
        let n = fanout[255] as usize;
        let table = fan_start + FANOUT_LEN;
        // The object count is checked against the file's size before any
        // memory is reserved for it: a count of 2^32-1 in a small file once
        // made this reserve ~80 GB and abort the process.
        let per_object = if version == 2 { 28 } else { 24 };
        let fixed = n
            .checked_mul(per_object)
            .and_then(|b| b.checked_add(table + 40))
            .filter(|&f| f <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "size {} is too small for the {n} objects its fan-out counts",
                    bytes.len()
                ))
            })?;
        let mut ids = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n);
        let mut crcs = Vec::new();
        if version == 2 {
            // ids, crcs, 32-bit offsets, then 8 bytes per large offset, then 40.
            // What follows the fixed part is the 8-byte offsets of objects
            // beyond 2 GiB, which git, bup and rewind write one per object
            // that needs one. Bytes left over mean the fan-out counts fewer
            // objects than the file holds: a zeroed or otherwise damaged
            // fan-out, whose checksum is right if it was damaged before the
            // checksum was written.
            let fanout_damaged = || {
                bad(format!(
                    "size {} does not fit the {n} objects its fan-out table counts: \
                     the fan-out table is damaged",
                    bytes.len()
                ))
            };
            let extra = bytes.len() - fixed;
            if !extra.is_multiple_of(8) {
                return Err(fanout_damaged());
            }
            let large_count = extra / 8;
            let mut large_used = 0;
            let crc_start = table + n * 20;
            let off_start = crc_start + n * 4;
            let large_start = off_start + n * 4;
            for i in 0..n {
                ids.push(
                    ObjectId::from_bytes(&bytes[table + 20 * i..table + 20 * i + 20]).expect("20"),
                );
                crcs.push(be32(&bytes[crc_start + 4 * i..]));
                let word = be32(&bytes[off_start + 4 * i..]);
                let offset = if word & 0x8000_0000 != 0 {
                    large_used += 1;
                    let slot = (word & 0x7fff_ffff) as usize;
                    if slot >= large_count {
                        return Err(bad(format!("large offset slot {slot} out of range")));
                    }
                    let at = large_start + 8 * slot;
                    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
                } else {
                    u64::from(word)
                };
                offsets.push(offset);
            }
            if large_count > large_used {
                return Err(fanout_damaged());
            }
        } else {
            if bytes.len() != fixed {
                return Err(bad(format!(
                    "size {} does not fit the {n} objects its fan-out table counts: \
                     the fan-out table is damaged (v1)",
                    bytes.len()
                )));
            }
            for i in 0..n {
                let at = table + 24 * i;
                offsets.push(u64::from(be32(&bytes[at..])));
                ids.push(ObjectId::from_bytes(&bytes[at + 4..at + 24]).expect("20"));
            }
        }
        for (i, pair) in ids.windows(2).enumerate() {
            if pair[0] >= pair[1] {
                return Err(bad(format!("ids not strictly sorted at entry {}", i + 1)));
            }
        }
        // The fan-out must agree with the ids' first bytes, or lookups would miss.
        let mut start = 0usize;
        for (b, &end) in fanout.iter().enumerate() {
            let end = end as usize;
            if ids[start..end].iter().any(|id| usize::from(id.0[0]) != b) {
                return Err(bad(format!("fan-out disagrees with ids at byte {b:02x}")));
            }
            start = end;
        }
        let mut by_offset: Vec<u32> = (0..n as u32).collect();
        by_offset.sort_unstable_by_key(|&i| offsets[i as usize]);
        for pair in by_offset.windows(2) {
            if offsets[pair[0] as usize] == offsets[pair[1] as usize] {
                return Err(bad(format!(
                    "two objects share offset {}",
                    offsets[pair[0] as usize]
                )));
            }
        }
        let mut rank = vec![0u32; n];
        for (k, &i) in by_offset.iter().enumerate() {
            rank[i as usize] = k as u32;
        }
        Ok(PackIndex {
            path: path.to_path_buf(),
            version,
            fanout,
            ids,
            offsets,
            crcs,
            by_offset,
            rank,
            pack_checksum,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The checksum of the pack this index describes (its trailer).
    pub fn pack_checksum(&self) -> &[u8; 20] {
        &self.pack_checksum
    }

    /// A 256-bit set of the first bytes of the ids in this index.
    pub fn first_bytes(&self) -> [u64; 4] {
        let mut mask = [0u64; 4];
        let mut below = 0;
        for (b, &upto) in self.fanout.iter().enumerate() {
            if upto > below {
                mask[b / 64] |= 1 << (b % 64);
            }
            below = upto;
        }
        mask
    }

    /// The pack offset of `id`: fan-out narrows to ids sharing the first
    /// byte, then a binary search.
    pub fn lookup(&self, id: &ObjectId) -> Option<u64> {
        self.find(id).map(|e| e.offset)
    }

    /// The entry of `id`: where it starts and ends and its CRC-32.
    pub fn find(&self, id: &ObjectId) -> Option<Entry> {
        let b = usize::from(id.0[0]);
        let lo = if b == 0 {
            0
        } else {
            self.fanout[b - 1] as usize
        };
        let hi = self.fanout[b] as usize;
        let i = lo + search_uniform(&self.ids[lo..hi], id)?;
        let k = self.rank[i] as usize;
        Some(Entry {
            offset: self.offsets[i],
            crc: self.crcs.get(i).copied(),
            next: self.by_offset.get(k + 1).map(|&j| self.offsets[j as usize]),
            rank: k,
        })
    }

    /// The rank of the entry starting exactly at `offset` among all entries
    /// in offset order (0-based), if one starts there.
    pub fn offset_rank(&self, offset: u64) -> Option<usize> {
        self.by_offset
            .binary_search_by_key(&offset, |&i| self.offsets[i as usize])
            .ok()
    }

    /// For the entry starting exactly at `offset`: its CRC-32 (v2 only) and
    /// the offset of the next entry (`None` for the last one).
    pub fn entry_at(&self, offset: u64) -> Option<(Option<u32>, Option<u64>)> {
        let k = self
            .by_offset
            .binary_search_by_key(&offset, |&i| self.offsets[i as usize])
            .ok()?;
        let crc = self.crcs.get(self.by_offset[k] as usize).copied();
        let next = self.by_offset.get(k + 1).map(|&i| self.offsets[i as usize]);
        Some((crc, next))
    }

    /// The entry of rank `k` in offset order (0-based) and its id: a
    /// verifier reading a pack front to back learns which id each entry
    /// must hash to, and where it ends.
    pub fn by_rank(&self, k: usize) -> Option<(ObjectId, Entry)> {
        let i = *self.by_offset.get(k)? as usize;
        Some((
            self.ids[i],
            Entry {
                offset: self.offsets[i],
                crc: self.crcs.get(i).copied(),
                next: self.by_offset.get(k + 1).map(|&j| self.offsets[j as usize]),
                rank: k,
            },
        ))
    }

    /// Every id, sorted (strictly: the index was verified at open).
    pub fn ids(&self) -> &[ObjectId] {
        &self.ids
    }

    /// The rank in offset order of the entry at `position` in id order
    /// (the inverse of the order [`PackIndex::by_rank`] walks).
    pub fn rank_at(&self, position: usize) -> Option<usize> {
        self.rank.get(position).map(|&k| k as usize)
    }

    /// The position of `id` in offset order, if this index lists it.
    pub fn rank_of(&self, id: &ObjectId) -> Option<usize> {
        self.find(id).map(|e| e.rank)
    }

    /// All entries in id order (crc32 is 0 for v1 indexes).
    pub fn entries(&self) -> impl Iterator<Item = IdxEntry> + '_ {
        self.ids.iter().enumerate().map(|(i, &id)| IdxEntry {
            id,
            offset: self.offsets[i],
            crc32: self.crcs.get(i).copied().unwrap_or(0),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Finds `id` in `ids`, sorted ids that share their first byte. Ids are
/// SHA-1 hashes, uniformly spread, so the position of `id` is first
/// guessed from its next bytes and the search gallops out from there: one
/// or two cache lines are touched instead of the ~8 far-apart probes of a
/// binary search over a bucket of a few hundred ids. Whatever the ids, the
/// answer is that of a binary search; only the cost changes.
fn search_uniform(ids: &[ObjectId], id: &ObjectId) -> Option<usize> {
    // The first eight bytes as one integer almost always decide, without
    // a byte-wise compare per step.
    let prefix = |x: &ObjectId| u64::from_be_bytes(x.0[..8].try_into().expect("8 bytes"));
    let key = prefix(id);
    let order = |probe: &ObjectId| {
        prefix(probe)
            .cmp(&key)
            .then_with(|| probe.0[8..].cmp(&id.0[8..]))
    };
    let n = ids.len();
    if n == 0 {
        return None;
    }
    // The 56 bits after the shared first byte, as a fraction of the bucket.
    let guess = ((u128::from(key << 8) * n as u128) >> 64) as usize;
    let (from, to) = match order(&ids[guess]) {
        Ordering::Equal => return Some(guess),
        Ordering::Less => {
            // ids[guess] < id: gallop right until an id passes it.
            let mut step = 1;
            let mut from = guess + 1;
            loop {
                let probe = guess + step;
                if probe >= n {
                    break (from, n);
                }
                match order(&ids[probe]) {
                    Ordering::Equal => return Some(probe),
                    Ordering::Less => from = probe + 1,
                    Ordering::Greater => break (from, probe),
                }
                step *= 2;
            }
        }
        Ordering::Greater => {
            let mut step = 1;
            let mut to = guess;
            loop {
                let Some(probe) = guess.checked_sub(step) else {
                    break (0, to);
                };
                match order(&ids[probe]) {
                    Ordering::Equal => return Some(probe),
                    Ordering::Greater => to = probe,
                    Ordering::Less => break (probe + 1, to),
                }
                step *= 2;
            }
        }
    };
    ids[from..to].binary_search_by(order).ok().map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ObjectId {
        crate::object::hash_object(crate::object::Kind::Blob, &n.to_be_bytes())
    }

    /// The guessing search finds exactly what a binary search finds: in
    /// uniform buckets, and in skewed ones where every guess is far off.
    #[test]
    fn search_uniform_agrees_with_binary_search() {
        let uniform: Vec<ObjectId> = (0..3000).map(id).collect();
        // Same first byte, the rest crowded at either end or in the middle.
        let crowd = |fill: u8, n: u32| -> Vec<ObjectId> {
            (0..n)
                .map(|i| {
                    let mut b = [fill; 20];
                    b[0] = 0x42;
                    b[16..].copy_from_slice(&i.to_be_bytes());
                    ObjectId(b)
                })
                .collect()
        };
        let mut mixed = crowd(0x00, 50);
        mixed.extend(crowd(0xff, 50));
        for (name, mut ids) in [
            ("uniform", uniform),
            ("low", crowd(0x00, 300)),
            ("high", crowd(0xff, 300)),
            ("middle", crowd(0x80, 300)),
            ("both ends", mixed),
            ("one", crowd(0x13, 1)),
        ] {
            ids.sort();
            ids.dedup();
            // Each bucket of one first byte, as `find` searches them.
            for first in 0..=255u8 {
                let bucket: Vec<ObjectId> =
                    ids.iter().filter(|x| x.0[0] == first).copied().collect();
                let mut probes = bucket.clone();
                // Absent ids just beside every present one.
                for x in &bucket {
                    for delta in [1u8, 255] {
                        let mut y = *x;
                        y.0[19] = y.0[19].wrapping_add(delta);
                        probes.push(y);
                    }
                }
                probes.push(ObjectId([first; 20]));
                for p in &probes {
                    assert_eq!(
                        search_uniform(&bucket, p),
                        bucket.binary_search(p).ok(),
                        "{name}: {p}"
                    );
                }
            }
        }
        assert_eq!(search_uniform(&[], &id(1)), None);
    }

    #[test]
    fn first_bytes_marks_exactly_the_first_bytes_present() {
        let mut entries: Vec<IdxEntry> = [0x00u8, 0x41, 0x41, 0x80, 0xff]
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let mut raw = [0u8; 20];
                raw[0] = b;
                raw[19] = i as u8;
                IdxEntry {
                    id: ObjectId(raw),
                    offset: 12 + i as u64 * 10,
                    crc32: 0,
                }
            })
            .collect();
        let bytes = encode_v2(&mut entries, &[0; 20]);
        let index = PackIndex::parse(Path::new("t.idx"), &bytes).expect("valid idx");
        let mask = index.first_bytes();
        for b in 0..256usize {
            let set = mask[b / 64] & (1 << (b % 64)) != 0;
            assert_eq!(set, [0x00, 0x41, 0x80, 0xff].contains(&b), "byte {b:#x}");
        }
    }

    #[test]
    fn round_trip_with_large_offsets() {
        let mut entries: Vec<IdxEntry> = (0..300u32)
            .map(|n| IdxEntry {
                id: id(n),
                // Every third object beyond 4 GiB, one exactly at the 31-bit limit.
                offset: match n % 3 {
                    0 => 12 + u64::from(n) * 100,
                    1 => (5u64 << 30) + u64::from(n),
                    _ => MAX_OFFSET32 - 149 + u64::from(n),
                },
                crc32: n * 7,
            })
            .collect();
        let bytes = encode_v2(&mut entries, &[9; 20]);
        let large = entries.iter().filter(|e| e.offset > MAX_OFFSET32).count();
        assert!(large > 100);
        assert_eq!(bytes.len(), 8 + 1024 + 300 * 28 + large * 8 + 40);
        let idx = PackIndex::parse(Path::new("t.idx"), &bytes).unwrap();
        assert_eq!(idx.len(), 300);
        assert_eq!(idx.pack_checksum(), &[9; 20]);
        for e in &entries {
            assert_eq!(idx.lookup(&e.id), Some(e.offset), "{}", e.id);
        }
        assert_eq!(idx.entries().collect::<Vec<_>>(), entries);
        assert_eq!(idx.lookup(&id(1000)), None);
        // The exact 31-bit limit stays in the small table, as git does.
        let small_limit = entries.iter().find(|e| e.offset == MAX_OFFSET32).unwrap();
        let pos = entries.iter().position(|e| e == small_limit).unwrap();
        let word = &bytes[8 + 1024 + 300 * 24 + pos * 4..][..4];
        assert_eq!(word, MAX_OFFSET32.to_be_bytes()[4..].to_vec());
    }

    /// `find` answers what `entry_at` and `offset_rank` answer by offset,
    /// including for ids that share their first eight bytes (the prefix
    /// compare must fall back to the rest).
    #[test]
    fn find_agrees_with_the_lookups_by_offset() {
        let mut entries: Vec<IdxEntry> = (0..200u32)
            .map(|n| {
                let mut raw = id(n).0;
                if n % 4 == 0 {
                    raw[..8].copy_from_slice(&[0x42; 8]);
                }
                IdxEntry {
                    id: ObjectId(raw),
                    offset: 12 + u64::from((n * 37) % 200) * 50,
                    crc32: n.wrapping_mul(2654435761),
                }
            })
            .collect();
        let bytes = encode_v2(&mut entries, &[1; 20]);
        let idx = PackIndex::parse(Path::new("f.idx"), &bytes).unwrap();
        for e in &entries {
            let found = idx.find(&e.id).expect("listed");
            assert_eq!(found.offset, e.offset);
            assert_eq!(Some((found.crc, found.next)), idx.entry_at(e.offset));
            assert_eq!(Some(found.rank), idx.offset_rank(e.offset));
            assert_eq!(found.crc, Some(e.crc32));
        }
        let mut absent = entries[0].id;
        absent.0[19] ^= 1;
        assert_eq!(idx.find(&absent), None);
    }

    #[test]
    fn empty_index() {
        let bytes = encode_v2(&mut [], &[0; 20]);
        let idx = PackIndex::parse(Path::new("e.idx"), &bytes).unwrap();
        assert!(idx.is_empty());
        assert_eq!(idx.lookup(&id(1)), None);
    }

    /// `bytes` with its trailing SHA-1 recomputed, so that only the
    /// structural checks can reject it.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len();
        let sum: [u8; 20] = Sha1::digest(&bytes[..n - 20]).into();
        bytes[n - 20..].copy_from_slice(&sum);
        bytes
    }

    /// A fan-out whose last entry claims 2^32-1 objects in a file of a few
    /// kilobytes: the reader reserved memory for that many ids (~80 GB)
    /// before comparing the count with the file's size, and the process
    /// aborted. Now the size is checked first. (The integration test
    /// `idx_with_huge_fanout_is_an_error_not_an_abort` runs this under a
    /// memory limit, where the old order fails for certain.)
    /// Ten entries with distinct ids at consecutive offsets.
    fn ten_entries() -> Vec<IdxEntry> {
        (0..10)
            .map(|n| IdxEntry {
                id: id(n),
                offset: 12 + u64::from(n),
                crc32: 0,
            })
            .collect()
    }

    #[test]
    fn idx_with_huge_fanout_is_an_error_not_an_abort() {
        let mut entries = ten_entries();
        let v2 = encode_v2(&mut entries, &[1; 20]);
        // v1 of the same entries: fan-out, (offset, id) pairs, checksums.
        let mut v1 = v2[8..8 + FANOUT_LEN].to_vec();
        for e in &entries {
            v1.extend_from_slice(&(e.offset as u32).to_be_bytes());
            v1.extend_from_slice(&e.id.0);
        }
        v1.extend_from_slice(&[1; 20]);
        v1.extend_from_slice(&[0; 20]);
        let v1 = reseal(v1);
        PackIndex::parse(Path::new("v1.idx"), &v1).expect("valid v1");
        for (bytes, fan_start) in [(v2, 8), (v1, 0)] {
            for count in [u32::MAX, 0x8000_0000, 11] {
                let mut b = bytes.clone();
                b[fan_start + 4 * 255..fan_start + 4 * 256].copy_from_slice(&count.to_be_bytes());
                let b = reseal(b);
                match PackIndex::parse(Path::new("huge.idx"), &b) {
                    Err(Error::BadIndex { detail, .. }) => {
                        assert!(detail.contains("too small"), "{count}: {detail}")
                    }
                    Err(other) => panic!("{count}: {other}"),
                    Ok(_) => panic!("{count}: accepted"),
                }
            }
        }
    }

    /// A fan-out zeroed (or lowered) before the checksum was computed: the
    /// checksum is right, and the index read as holding fewer objects than
    /// it does, so that every object beyond the count went missing with no
    /// word about the index. Now the bytes left over name the fan-out.
    #[test]
    fn zeroed_fanout_with_a_valid_checksum_names_the_fanout() {
        for count in [10u32, 11] {
            let mut entries: Vec<IdxEntry> = (0..count)
                .map(|n| IdxEntry {
                    id: id(n),
                    offset: 12 + u64::from(n),
                    crc32: 0,
                })
                .collect();
            let good = encode_v2(&mut entries, &[1; 20]);
            for fake in [0u32, count - 2] {
                let mut b = good.clone();
                for slot in 0..256 {
                    let at = 8 + 4 * slot;
                    let v = u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
                    b[at..at + 4].copy_from_slice(&v.min(fake).to_be_bytes());
                }
                let b = reseal(b);
                match PackIndex::parse(Path::new("objects/pack/z.idx"), &b) {
                    Err(e @ Error::BadIndex { .. }) => {
                        let shown = e.to_string();
                        assert!(shown.contains("fan-out table is damaged"), "{shown}");
                        assert!(shown.contains("objects/pack/z.idx"), "{shown}");
                    }
                    Err(other) => panic!("{count} as {fake}: {other}"),
                    Ok(idx) => panic!("{count} as {fake}: read as {} objects", idx.len()),
                }
            }
        }
    }

    #[test]
    fn damaged_index_is_rejected() {
        let mut entries = ten_entries();
        let bytes = encode_v2(&mut entries, &[1; 20]);
        for pos in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[pos] ^= 0x20;
            assert!(
                matches!(
                    PackIndex::parse(Path::new("d.idx"), &b),
                    Err(Error::BadIndex { .. })
                ),
                "flip at {pos} accepted"
            );
        }
        assert!(PackIndex::parse(Path::new("d.idx"), &bytes[..100]).is_err());
    }
}
