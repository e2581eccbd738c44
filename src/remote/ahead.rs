//! The client's book of objects asked for and not read yet: which are on
//! their way (in the order asked, as the server answers in order) and
//! which have arrived. Pure bookkeeping, no I/O.
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

use crate::object::{Kind, ObjectId};
use std::collections::{HashMap, VecDeque};

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

#[derive(Default)]
pub struct Ahead {
    /// Asked for, in the order asked.
    on_way: VecDeque<ObjectId>,
    on_way_count: HashMap<ObjectId, u32>,
    arrived: HashMap<ObjectId, (Arrival, u32)>,
    /// Bytes held by `arrived` (each object once, whatever its copies).
    bytes: usize,
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

    /// Of `ids` (in the order they will be read, repeats meaning repeated
    /// reads), the ones to ask for: each occurrence not already covered by
    /// a copy on its way or arrived, at most `room` of them.
    pub fn plan(&self, ids: &[ObjectId], room: usize) -> Vec<ObjectId> {
        let mut wanted: HashMap<ObjectId, u32> = HashMap::new();
        let mut batch = Vec::new();
        for id in ids {
            if batch.len() == room {
                break;
            }
            let n = wanted.entry(*id).or_insert(0);
            *n += 1;
            let have = self.on_way_count.get(id).copied().unwrap_or(0)
                + self.arrived.get(id).map_or(0, |(_, c)| *c);
            if *n > have {
                batch.push(*id);
            }
        }
        batch
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
        if let Some(n) = self.on_way_count.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.on_way_count.remove(&id);
            }
        }
        self.keep(id, arrival, 1);
    }

    /// An object sent without being asked for: kept if `budget` allows.
    pub fn extra(&mut self, id: ObjectId, arrival: Arrival, budget: usize) {
        let size = arrival.as_ref().map_or(0, Received::len);
        if self.bytes + size <= budget && !self.arrived.contains_key(&id) {
            self.keep(id, arrival, 1);
        }
    }

    fn keep(&mut self, id: ObjectId, arrival: Arrival, copies: u32) {
        match self.arrived.get_mut(&id) {
            Some((_, n)) => *n += copies,
            None => {
                self.bytes += arrival.as_ref().map_or(0, Received::len);
                self.arrived.insert(id, (arrival, copies));
            }
        }
    }

    /// One copy of an arrived object, for a read.
    pub fn take(&mut self, id: &ObjectId) -> Option<Arrival> {
        let (arrival, copies) = self.arrived.get_mut(id)?;
        if *copies > 1 {
            *copies -= 1;
            return Some(arrival.clone());
        }
        let (arrival, _) = self.arrived.remove(id)?;
        self.bytes -= arrival.as_ref().map_or(0, Received::len);
        Some(arrival)
    }

    /// An arrived object, left for its read.
    pub fn peek(&self, id: &ObjectId) -> Option<&Arrival> {
        self.arrived.get(id).map(|(a, _)| a)
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

    #[test]
    fn repeated_ids_are_asked_once_per_read_and_not_again() {
        let (a, b) = (ObjectId([1; 20]), ObjectId([2; 20]));
        let mut book = Ahead::default();
        let plan = book.plan(&[a, b, a, a], 10);
        assert_eq!(plan, vec![a, b, a, a]);
        for id in &plan {
            book.asked(*id);
        }
        // The same announcement again asks for nothing more.
        assert!(book.plan(&[a, b, a, a], 10).is_empty());
        for n in [1, 2, 1, 1] {
            book.answered(obj(n));
        }
        assert_eq!(book.on_way(), 0);
        assert_eq!(book.bytes(), 20, "each object held once");
        for _ in 0..3 {
            assert!(book.take(&a).is_some());
        }
        assert!(book.take(&a).is_none(), "three copies for three reads");
        assert!(book.take(&b).is_some());
        assert_eq!(book.bytes(), 0);
    }

    #[test]
    fn room_bounds_a_plan_and_extras_respect_the_budget() {
        let ids: Vec<ObjectId> = (0..10u8).map(|n| ObjectId([n; 20])).collect();
        let book = Ahead::default();
        assert_eq!(book.plan(&ids, 3), ids[..3].to_vec());
        let mut book = Ahead::default();
        book.extra(ids[0], obj(0), 15);
        book.extra(ids[1], obj(1), 15);
        assert!(book.has_arrived(&ids[0]) && !book.has_arrived(&ids[1]));
    }
}
