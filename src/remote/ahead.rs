//! The client's book of objects announced and not read yet: which wait
//! their turn to be asked for (only so many are asked at a time, so that
//! what arrives ahead of its reader stays bounded), which are on their
//! way (in the order asked, as the server answers in order) and which
//! have arrived. Pure bookkeeping, no I/O.
//!
//! What arrived is kept as the server sent it, not yet inflated or
//! checked: the reader that takes it does that after letting go of the
//! connection, so that several readers (a restore's workers) inflate and
//! hash at the same time instead of one after another.
//!
//! An id may be needed several times (a disk image's zero chunks, a file
//! saved twice in one directory), and each read takes one copy, so the
//! book counts copies: a chunk list that names one id 500 times gets it
//! sent 500 times (as stored, a few bytes each for zeros) rather than
//! read once and then waited for 499 times.
//!
//! Counting copies cannot see two readers that each announce their own
//! reads of one id (a restore's workers writing parts of one disk image,
//! each announcing its chunk lists, which share the zero chunk): the
//! second announcement finds copies pending and adds none, so reads come
//! up short. Small objects read more than once are kept for those; without
//! them, restoring the benchmark's 65 MB disk image over SSH asked for its
//! zero chunk 218 times, a round trip each.

use crate::cache::ByteLru;
use crate::object::{Kind, ObjectId};
use std::collections::{HashMap, VecDeque};

/// Objects read more than once and sent in at most this many bytes are
/// kept once taken ...
const SMALL: usize = 64 << 10;
/// ... within this many bytes in all.
const RECENT_BYTES: usize = 1 << 20;

/// An object that arrived, or why it could not be given.
pub type Arrival = Result<Received, String>;

/// An object's bytes as the server sent them: claims until checked.
#[derive(Clone, Debug)]
pub struct Received {
    pub kind: Kind,
    /// The size the server gave (checked when the bytes are).
    pub size: u64,
    pub bytes: Bytes,
}

#[derive(Clone, Debug)]
pub enum Bytes {
    /// The object itself.
    Plain(Vec<u8>),
    /// One zlib stream that must inflate to exactly `size` bytes.
    Compressed(Vec<u8>),
}

impl Received {
    /// Memory held.
    pub fn len(&self) -> usize {
        match &self.bytes {
            Bytes::Plain(b) | Bytes::Compressed(b) => b.len(),
        }
    }
}

pub struct Ahead {
    /// Announced and not asked for yet, in the order they will be read;
    /// occurrences read before their turn are only uncounted in
    /// `pending_count` and skipped when they come up.
    pending: VecDeque<ObjectId>,
    pending_count: HashMap<ObjectId, u32>,
    /// Asked for, in the order asked.
    on_way: VecDeque<ObjectId>,
    on_way_count: HashMap<ObjectId, u32>,
    arrived: HashMap<ObjectId, Held>,
    /// Bytes held by `arrived` (each object once, whatever its copies).
    bytes: usize,
    /// Small objects read more than once, kept once taken, for reads no
    /// copy came for (keeping every small object cost a restore of many
    /// small files more than it saved).
    recent: ByteLru<ObjectId, Received>,
}

/// An arrived object and the reads it is for.
struct Held {
    arrival: Arrival,
    copies: u32,
    /// Filed for more than one read: worth keeping (see `recent`).
    repeated: bool,
}

impl Default for Ahead {
    fn default() -> Ahead {
        Ahead {
            pending: VecDeque::new(),
            pending_count: HashMap::new(),
            on_way: VecDeque::new(),
            on_way_count: HashMap::new(),
            arrived: HashMap::new(),
            bytes: 0,
            recent: ByteLru::new(RECENT_BYTES),
        }
    }
}

impl Ahead {
    pub fn on_way(&self) -> usize {
        self.on_way.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_on_way(&self, id: &ObjectId) -> bool {
        self.on_way_count.contains_key(id)
    }

    pub fn has_arrived(&self, id: &ObjectId) -> bool {
        self.arrived.contains_key(id)
    }

    /// Announced occurrences waiting their turn (stale ones included).
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds to the queue the occurrences of `ids` (in the order they will
    /// be read, repeats meaning repeated reads) not already covered by a
    /// copy pending, on its way or arrived, while the queue is shorter
    /// than `limit`.
    pub fn announce(&mut self, ids: &[ObjectId], limit: usize) {
        let mut wanted: HashMap<ObjectId, u32> = HashMap::new();
        for id in ids {
            if self.pending.len() >= limit {
                break;
            }
            let n = wanted.entry(*id).or_insert(0);
            *n += 1;
            let have = self.on_way_count.get(id).copied().unwrap_or(0)
                + self.arrived.get(id).map_or(0, |h| h.copies)
                + self.pending_count.get(id).copied().unwrap_or(0);
            if *n > have {
                self.pending.push_back(*id);
                *self.pending_count.entry(*id).or_insert(0) += 1;
            }
        }
    }

    /// The next announced objects to ask for, at most `room`, taken off
    /// the queue (the caller asks for them and calls [`Ahead::asked`]).
    pub fn next_batch(&mut self, room: usize) -> Vec<ObjectId> {
        let mut batch = Vec::new();
        while batch.len() < room {
            let Some(id) = self.pending.pop_front() else {
                break;
            };
            if uncount(&mut self.pending_count, &id) {
                batch.push(id);
            }
        }
        batch
    }

    /// A read came for `id` before its turn: one announced occurrence is
    /// dropped (the reader asks for it itself). False if none was pending.
    pub fn unannounce(&mut self, id: &ObjectId) -> bool {
        uncount(&mut self.pending_count, id)
    }

    pub fn asked(&mut self, id: ObjectId) {
        self.on_way.push_back(id);
        *self.on_way_count.entry(id).or_insert(0) += 1;
    }

    /// The id whose answer comes next.
    pub fn next_expected(&self) -> Option<ObjectId> {
        self.on_way.front().copied()
    }

    /// The answer for [`next_expected`](Self::next_expected) came.
    pub fn answered(&mut self, arrival: Arrival) {
        let Some(id) = self.on_way.pop_front() else {
            return;
        };
        uncount(&mut self.on_way_count, &id);
        self.keep(id, arrival);
    }

    /// An object sent without being asked for: kept if `budget` allows.
    pub fn extra(&mut self, id: ObjectId, arrival: Arrival, budget: usize) {
        let size = arrival.as_ref().map_or(0, Received::len);
        if self.bytes + size <= budget && !self.arrived.contains_key(&id) {
            self.keep(id, arrival);
        }
    }

    /// Files one copy of `id` for a read.
    fn keep(&mut self, id: ObjectId, arrival: Arrival) {
        match self.arrived.get_mut(&id) {
            Some(held) => {
                held.copies += 1;
                held.repeated = true;
            }
            None => {
                self.bytes += arrival.as_ref().map_or(0, Received::len);
                self.arrived.insert(
                    id,
                    Held {
                        arrival,
                        copies: 1,
                        repeated: false,
                    },
                );
            }
        }
    }

    /// One copy of an arrived object, or of a small one taken lately,
    /// for a read.
    pub fn take(&mut self, id: &ObjectId) -> Option<Arrival> {
        let Some(held) = self.arrived.get_mut(id) else {
            let kept = self.recent.get(id)?;
            // A copy announced for this read is not needed any more.
            uncount(&mut self.pending_count, id);
            return Some(Ok(kept));
        };
        if held.copies > 1 {
            held.copies -= 1;
            return Some(held.arrival.clone());
        }
        let held = self.arrived.remove(id)?;
        if let Ok(received) = &held.arrival {
            self.bytes -= received.len();
            if held.repeated && received.len() <= SMALL {
                self.recent.put(*id, received.clone(), received.len());
            }
        }
        Some(held.arrival)
    }

    /// An arrived object, left for its read.
    pub fn peek(&self, id: &ObjectId) -> Option<&Arrival> {
        self.arrived.get(id).map(|h| &h.arrival)
    }
}

/// Takes one from `id`'s count, removing it at zero; false if it had none.
fn uncount(counts: &mut HashMap<ObjectId, u32>, id: &ObjectId) -> bool {
    match counts.get_mut(id) {
        Some(n) if *n > 1 => {
            *n -= 1;
            true
        }
        Some(_) => {
            counts.remove(id);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(n: u8) -> Arrival {
        Ok(Received {
            kind: Kind::Blob,
            size: 10,
            bytes: Bytes::Plain(vec![n; 10]),
        })
    }

    /// Asks for the next `room` announced objects, as the client does.
    fn ask(book: &mut Ahead, room: usize) -> Vec<ObjectId> {
        let batch = book.next_batch(room);
        for id in &batch {
            book.asked(*id);
        }
        batch
    }

    #[test]
    fn repeated_ids_are_asked_once_per_read_and_not_again() {
        let (a, b) = (ObjectId([1; 20]), ObjectId([2; 20]));
        let mut book = Ahead::default();
        book.announce(&[a, b, a, a], 100);
        assert_eq!(ask(&mut book, 10), vec![a, b, a, a]);
        // The same announcement again asks for nothing more.
        book.announce(&[a, b, a, a], 100);
        assert!(ask(&mut book, 10).is_empty());
        for n in [1, 2, 1, 1] {
            book.answered(obj(n));
        }
        assert_eq!(book.on_way(), 0);
        assert_eq!(book.bytes(), 20, "each object held once");
        for _ in 0..3 {
            assert!(book.take(&a).is_some());
        }
        assert!(!book.has_arrived(&a), "three copies for three reads");
        assert!(book.take(&b).is_some());
        assert_eq!(book.bytes(), 0);
    }

    #[test]
    fn announcements_beyond_the_room_wait_their_turn_and_the_queue_is_bounded() {
        let ids: Vec<ObjectId> = (0..10u8).map(|n| ObjectId([n; 20])).collect();
        let mut book = Ahead::default();
        book.announce(&ids, 8);
        assert_eq!(book.pending(), 8, "the queue stops at its limit");
        assert_eq!(ask(&mut book, 3), ids[..3].to_vec());
        // Announcing again adds only what is neither pending nor on its way.
        book.announce(&ids, 100);
        assert_eq!(book.pending(), 7);
        assert_eq!(ask(&mut book, 100), ids[3..].to_vec());
    }

    #[test]
    fn an_object_read_before_its_turn_is_not_asked_for_again() {
        let ids: Vec<ObjectId> = (0..4u8).map(|n| ObjectId([n; 20])).collect();
        let (a, c) = (ids[0], ids[2]);
        let mut book = Ahead::default();
        book.announce(&[a, ids[1], c, a, ids[3]], 100);
        assert!(book.unannounce(&c));
        assert!(!book.unannounce(&c), "only one occurrence was pending");
        assert!(book.unannounce(&a));
        assert_eq!(ask(&mut book, 100), vec![a, ids[1], ids[3]]);
        assert_eq!(book.pending(), 0);
    }

    #[test]
    fn a_small_object_is_read_again_without_a_copy_of_its_own() {
        let (small, big) = (ObjectId([1; 20]), ObjectId([2; 20]));
        let mut book = Ahead::default();
        book.announce(&[small, small, big, big], 100);
        ask(&mut book, 10);
        let large = Received {
            kind: Kind::Blob,
            size: 1 << 20,
            bytes: Bytes::Plain(vec![0; SMALL + 1]),
        };
        for arrival in [obj(1), obj(1), Ok(large.clone()), Ok(large)] {
            book.answered(arrival);
        }
        for _ in 0..2 {
            assert!(book.take(&small).is_some() && book.take(&big).is_some());
        }
        assert_eq!(book.bytes(), 0, "taken objects no longer count");
        // Read again, announced or not: served without asking.
        book.announce(&[small], 100);
        assert!(book.take(&small).is_some(), "a small object is kept");
        assert!(
            ask(&mut book, 10).is_empty(),
            "its announced copy is dropped"
        );
        assert!(book.take(&small).is_some());
        assert!(book.take(&big).is_none(), "a large one is not kept");
        // Read once, not kept.
        let once = ObjectId([3; 20]);
        book.announce(&[once], 100);
        ask(&mut book, 10);
        book.answered(obj(3));
        assert!(book.take(&once).is_some());
        assert!(
            book.take(&once).is_none(),
            "an object read once is not kept"
        );
    }

    #[test]
    fn extras_respect_the_budget() {
        let ids: Vec<ObjectId> = (0..2u8).map(|n| ObjectId([n; 20])).collect();
        let mut book = Ahead::default();
        book.extra(ids[0], obj(0), 15);
        book.extra(ids[1], obj(1), 15);
        assert!(book.has_arrived(&ids[0]) && !book.has_arrived(&ids[1]));
    }
}
