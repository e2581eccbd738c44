//! Which pack holds an object, and at which rank, over every pack at once.
//!
//! gc's mark and fsck's walk ask this for every object of a repository.
//! Asking each pack's index in turn costs one search per pack, and a year
//! of daily saves leaves hundreds of packs. [`PackLookup`] answers with one
//! search: the entries of every index merged into one array sorted by id,
//! each entry 8 bytes (pack number, position in that pack's id order; the
//! ids themselves are compared through the indexes, which are in memory
//! anyway), under a fan-out on the first two id bytes (2^16 + 1 u32s, 256
//! KiB). 10^7 objects take 80 MB here beside what their indexes take.
//!
//! Building is a k-way merge of the indexes' sorted ids: O(N log P) for N
//! entries in P packs, written straight into the array sized up front, with
//! only one id per pack held in the merge heap.
//!
//! Several packs may hold the same id (git allows it: a repack that has
//! published its new pack and not yet deleted the old one, a save that
//! wrote again what a damaged pack held). Every copy is kept, and copies of
//! one id are ordered by pack number: [`PackLookup::find`] answers the copy
//! in the lowest-numbered pack, so a caller states which copy it prefers by
//! the order in which it gives the packs; [`PackLookup::copies`] lists them
//! all, in that order, for a caller that must choose (fsck passes over a
//! copy it found damaged).

use super::PackIndex;
use crate::object::ObjectId;
use crate::repo::Error;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Buckets of the fan-out: the first two bytes of an id.
const FANOUT: usize = 1 << 16;

/// One entry: the object at `position` (id order) of pack `pack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    pack: u32,
    position: u32,
}

/// Every id of a set of pack indexes, sorted, for lookups across all of
/// them at once (see the module documentation).
pub struct PackLookup {
    /// By pack number; `None` for a pack left out (it has no entries).
    indexes: Vec<Option<Arc<PackIndex>>>,
    /// Sorted by (id, pack number).
    slots: Vec<Slot>,
    /// `fanout[b]..fanout[b + 1]`: the slots whose ids start with the two
    /// bytes `b` (big-endian).
    fanout: Vec<u32>,
}

fn bucket(id: &ObjectId) -> usize {
    usize::from(u16::from_be_bytes([id.0[0], id.0[1]]))
}

impl PackLookup {
    /// Merges `indexes`; a pack's number is its position in the list, and
    /// a `None` stands for a pack the caller leaves out (its number stays
    /// taken, so numbers agree with the caller's own list). Fails only if
    /// the packs hold 2^32 or more entries together.
    pub fn new(indexes: Vec<Option<Arc<PackIndex>>>) -> Result<PackLookup, Error> {
        let started = std::time::Instant::now();
        let total: u64 = indexes.iter().flatten().map(|i| i.len() as u64).sum();
        let too_many = || Error::TooManyObjects {
            objects: total,
            packs: indexes.len() as u64,
        };
        if total >= u64::from(u32::MAX) || indexes.len() >= u32::MAX as usize {
            return Err(too_many());
        }
        // The heap holds each pack's next id; ties between packs holding
        // the same id pop in pack order, so copies sit in pack order.
        let mut heap: BinaryHeap<Reverse<(ObjectId, u32, u32)>> = indexes
            .iter()
            .enumerate()
            .filter_map(|(p, index)| {
                let first = *index.as_ref()?.ids().first()?;
                Some(Reverse((first, p as u32, 0)))
            })
            .collect();
        let mut slots = Vec::with_capacity(total as usize);
        let mut fanout = vec![0u32; FANOUT + 1];
        while let Some(mut top) = heap.peek_mut() {
            let Reverse((id, pack, position)) = *top;
            slots.push(Slot { pack, position });
            fanout[bucket(&id) + 1] += 1;
            let ids = indexes[pack as usize]
                .as_ref()
                .expect("only listed packs enter the heap")
                .ids();
            match ids.get(position as usize + 1) {
                // Replacing the top sifts once, where pop and push would
                // sift twice.
                Some(&next) => *top = Reverse((next, pack, position + 1)),
                None => {
                    std::collections::binary_heap::PeekMut::pop(top);
                }
            }
        }
        for b in 0..FANOUT {
            fanout[b + 1] += fanout[b];
        }
        let lookup = PackLookup {
            indexes,
            slots,
            fanout,
        };
        tracing::debug!(
            "pack lookup: {} entries of {} packs in {} bytes, merged in {:?}",
            lookup.len(),
            lookup.indexes.len(),
            lookup.memory_bytes(),
            started.elapsed()
        );
        Ok(lookup)
    }

    fn id_of(&self, slot: Slot) -> &ObjectId {
        let index = self.indexes[slot.pack as usize]
            .as_ref()
            .expect("only listed packs have slots");
        &index.ids()[slot.position as usize]
    }

    fn answer(&self, slot: Slot) -> (usize, usize) {
        let index = self.indexes[slot.pack as usize]
            .as_ref()
            .expect("only listed packs have slots");
        let rank = index
            .rank_at(slot.position as usize)
            .expect("positions come from the index itself");
        (slot.pack as usize, rank)
    }

    /// The copy of `id` in the lowest-numbered pack holding it: (pack
    /// number, rank in that pack's offset order).
    pub fn find(&self, id: &ObjectId) -> Option<(usize, usize)> {
        self.copies(id).next()
    }

    /// Every copy of `id`, by increasing pack number.
    pub fn copies<'a>(&'a self, id: &'a ObjectId) -> impl Iterator<Item = (usize, usize)> + 'a {
        let b = bucket(id);
        let bucket = &self.slots[self.fanout[b] as usize..self.fanout[b + 1] as usize];
        // The first slot of `id`: copies of one id are adjacent.
        let first = self.lower_bound(bucket, id);
        bucket[first..]
            .iter()
            .take_while(move |&&s| self.id_of(s) == id)
            .map(|&s| self.answer(s))
    }

    /// The first position in `bucket` (slots whose ids share their first
    /// two bytes with `id`) whose id is not below `id`. Each probe loads
    /// an id from some pack's index, most likely a cache miss, so the
    /// position is first guessed from the id's next bytes (ids are SHA-1
    /// hashes, uniformly spread) and the search gallops out from there:
    /// about two probes instead of a binary search's log2 of the bucket.
    /// Whatever the ids, the answer is a binary search's; only the cost
    /// changes.
    fn lower_bound(&self, bucket: &[Slot], id: &ObjectId) -> usize {
        let n = bucket.len();
        if n == 0 {
            return 0;
        }
        // The first eight bytes as one integer almost always decide, with
        // no call to a byte-wise compare.
        let prefix = |x: &ObjectId| u64::from_be_bytes(x.0[..8].try_into().expect("8 bytes"));
        let key = prefix(id);
        let below = |i: usize| {
            let probe = self.id_of(bucket[i]);
            match prefix(probe).cmp(&key) {
                Ordering::Equal => probe.0[8..] < id.0[8..],
                order => order == Ordering::Less,
            }
        };
        // Bits 16..80 of the id, as a fraction of the bucket.
        let fraction = u64::from_be_bytes(id.0[2..10].try_into().expect("8 bytes"));
        let guess = ((u128::from(fraction) * n as u128) >> 64) as usize;
        let (from, to) = if below(guess) {
            let mut from = guess + 1;
            let mut step = 1;
            loop {
                let probe = guess + step;
                if probe >= n {
                    break (from, n);
                }
                if !below(probe) {
                    break (from, probe);
                }
                from = probe + 1;
                step *= 2;
            }
        } else {
            let mut to = guess;
            let mut step = 1;
            loop {
                let Some(probe) = guess.checked_sub(step) else {
                    break (0, to);
                };
                if below(probe) {
                    break (probe + 1, to);
                }
                to = probe;
                step *= 2;
            }
        };
        // The answer is in from..=to: below(from - 1) and !below(to).
        let (mut lo, mut hi) = (from, to);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Entries, counting every copy.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes this lookup holds beside the indexes it shares.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.fanout.capacity() * std::mem::size_of::<u32>()
            + self.indexes.capacity() * std::mem::size_of::<Option<Arc<PackIndex>>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::idx::{encode_v2, IdxEntry};
    use std::path::Path;

    fn id(n: u32) -> ObjectId {
        crate::object::hash_object(crate::object::Kind::Blob, &n.to_be_bytes())
    }

    /// An index of `ids`, at offsets in the reverse of id order, so that
    /// rank and position differ and a confusion of the two shows.
    fn index(ids: &[ObjectId]) -> Arc<PackIndex> {
        let mut sorted = ids.to_vec();
        sorted.sort();
        let n = sorted.len() as u64;
        let mut entries: Vec<IdxEntry> = sorted
            .iter()
            .enumerate()
            .map(|(i, &id)| IdxEntry {
                id,
                offset: 12 + (n - i as u64) * 10,
                crc32: 0,
            })
            .collect();
        let bytes = encode_v2(&mut entries, &[0; 20]);
        Arc::new(PackIndex::parse(Path::new("t.idx"), &bytes).expect("valid idx"))
    }

    fn lookup(packs: &[Arc<PackIndex>]) -> PackLookup {
        PackLookup::new(packs.iter().cloned().map(Some).collect()).expect("small")
    }

    /// What asking every pack in turn answers: the reference.
    fn naive(packs: &[Arc<PackIndex>], id: &ObjectId) -> Vec<(usize, usize)> {
        packs
            .iter()
            .enumerate()
            .filter_map(|(p, i)| i.rank_of(id).map(|r| (p, r)))
            .collect()
    }

    #[test]
    fn one_pack_answers_as_its_index() {
        let ids: Vec<ObjectId> = (0..5000).map(id).collect();
        let packs = [index(&ids)];
        let l = lookup(&packs);
        assert_eq!(l.len(), 5000);
        for x in &ids {
            assert_eq!(l.find(x), Some((0, packs[0].rank_of(x).unwrap())), "{x}");
        }
        for n in 5000..6000 {
            assert_eq!(l.find(&id(n)), None);
        }
    }

    #[test]
    fn many_packs_agree_with_asking_each_pack() {
        // 40 packs of overlapping ranges: most ids in one pack, some in
        // two or three.
        let packs: Vec<Arc<PackIndex>> = (0..40u32)
            .map(|p| index(&(p * 200..p * 200 + 260).map(id).collect::<Vec<_>>()))
            .collect();
        let l = lookup(&packs);
        for n in 0..8500 {
            let x = id(n);
            let all = naive(&packs, &x);
            assert_eq!(l.copies(&x).collect::<Vec<_>>(), all, "{x}");
            assert_eq!(l.find(&x), all.first().copied(), "{x}");
        }
    }

    #[test]
    fn duplicates_across_packs_answer_the_lowest_numbered_pack() {
        let shared = id(7);
        let a = index(&[id(1), shared, id(2)]);
        let b = index(&[id(3)]);
        let c = index(&[shared, id(4), id(5), id(6)]);
        let l = lookup(&[a.clone(), b.clone(), c.clone()]);
        let in_a = (0, a.rank_of(&shared).unwrap());
        let in_c = (2, c.rank_of(&shared).unwrap());
        assert_eq!(l.find(&shared), Some(in_a));
        assert_eq!(l.copies(&shared).collect::<Vec<_>>(), vec![in_a, in_c]);
        // The caller's order is the preference.
        let l = lookup(&[c.clone(), b, a.clone()]);
        assert_eq!(l.find(&shared), Some((0, c.rank_of(&shared).unwrap())));
        assert_eq!(l.copies(&shared).count(), 2);
        // One pack listed twice: both copies.
        let l = lookup(&[a.clone(), a.clone()]);
        for x in [id(1), shared, id(2)] {
            let r = a.rank_of(&x).unwrap();
            assert_eq!(l.copies(&x).collect::<Vec<_>>(), vec![(0, r), (1, r)]);
        }
    }

    #[test]
    fn empty_and_left_out_packs_answer_nothing() {
        let empty = index(&[]);
        let full = index(&[id(1), id(2)]);
        let l = PackLookup::new(vec![
            Some(empty.clone()),
            None,
            Some(full.clone()),
            Some(empty.clone()),
        ])
        .unwrap();
        assert_eq!(l.find(&id(1)), Some((2, full.rank_of(&id(1)).unwrap())));
        assert_eq!(l.find(&id(3)), None);
        // A pack left out is not answered even though it holds the id.
        let l = PackLookup::new(vec![None, Some(full.clone())]).unwrap();
        assert_eq!(l.copies(&id(2)).collect::<Vec<_>>().len(), 1);
        let l = PackLookup::new(vec![Some(full), None]).unwrap();
        assert_eq!(l.find(&id(2)).map(|(p, _)| p), Some(0));
        for l in [
            PackLookup::new(vec![]).unwrap(),
            PackLookup::new(vec![None, None]).unwrap(),
            lookup(&[empty]),
        ] {
            assert!(l.is_empty());
            assert_eq!(l.find(&id(1)), None);
            assert_eq!(l.find(&ObjectId([0; 20])), None);
            assert_eq!(l.find(&ObjectId([0xff; 20])), None);
        }
    }

    /// Ids at the edges of fan-out buckets (first two bytes 0000, 00ff,
    /// 0100, fffe, ffff, with the rest all zeros or all ones) and their
    /// absent neighbours, which fall into the next or previous bucket.
    #[test]
    fn ids_at_fanout_boundaries_are_found_and_neighbours_are_not() {
        let edge = |hi: u8, lo: u8, rest: u8| {
            let mut raw = [rest; 20];
            raw[0] = hi;
            raw[1] = lo;
            ObjectId(raw)
        };
        let mut present = Vec::new();
        for (hi, lo) in [
            (0x00, 0x00),
            (0x00, 0xff),
            (0x01, 0x00),
            (0xff, 0xfe),
            (0xff, 0xff),
        ] {
            present.push(edge(hi, lo, 0x00));
            present.push(edge(hi, lo, 0xff));
        }
        // Split over two packs, one id in both.
        let a = index(&present[..6]);
        let b = index(&present[5..]);
        let packs = [a, b];
        let l = lookup(&packs);
        for x in &present {
            assert_eq!(l.copies(x).collect::<Vec<_>>(), naive(&packs, x), "{x}");
            assert!(l.find(x).is_some(), "{x}");
        }
        for x in &present {
            for delta in [1u8, 255] {
                let mut y = *x;
                y.0[19] = y.0[19].wrapping_add(delta);
                if !present.contains(&y) {
                    assert_eq!(l.find(&y), None, "{y}");
                }
            }
        }
        for (hi, lo) in [(0x00, 0x01), (0x00, 0xfe), (0x01, 0x01), (0xff, 0xfd)] {
            assert_eq!(l.find(&edge(hi, lo, 0x00)), None);
        }
    }

    /// Buckets crowded at one end, so that every guess from the id's bytes
    /// is far off, with duplicates: answers stay those of asking each pack.
    #[test]
    fn skewed_buckets_agree_with_asking_each_pack() {
        let crowd = |fill: u8, n: u32| -> Vec<ObjectId> {
            (0..n)
                .map(|i| {
                    let mut b = [fill; 20];
                    b[0] = 0x42;
                    b[1] = 0x17;
                    b[16..].copy_from_slice(&i.to_be_bytes());
                    ObjectId(b)
                })
                .collect()
        };
        let low = crowd(0x00, 300);
        let high = crowd(0xff, 300);
        let packs = [
            index(&low[..200]),
            index(&high),
            index(&low[150..]),
            index(&[low[7], high[299]]),
        ];
        let l = lookup(&packs);
        let mut probes: Vec<ObjectId> = low.iter().chain(&high).copied().collect();
        for x in low.iter().chain(&high) {
            for delta in [1u8, 255] {
                let mut y = *x;
                y.0[19] = y.0[19].wrapping_add(delta);
                probes.push(y);
            }
        }
        probes.push(crowd(0x80, 1)[0]);
        for p in &probes {
            assert_eq!(l.copies(p).collect::<Vec<_>>(), naive(&packs, p), "{p}");
        }
    }

    /// 8 bytes per entry, plus the fan-out and a pointer per pack.
    #[test]
    fn memory_is_eight_bytes_per_entry_plus_the_fanout() {
        let packs: Vec<Arc<PackIndex>> = (0..10u32)
            .map(|p| index(&(p * 1000..p * 1000 + 1000).map(id).collect::<Vec<_>>()))
            .collect();
        let l = lookup(&packs);
        assert_eq!(l.len(), 10_000);
        assert_eq!(l.memory_bytes(), 10_000 * 8 + (FANOUT + 1) * 4 + 10 * 8);
    }
}
