//! A memory-bounded LRU map, shared by the readers that keep decoded data
//! around: the store's delta bases, the mount's chunks, directories and
//! hardlink scans. Bounded by the bytes its values hold, not their count.

use lru::LruCache;
use std::hash::Hash;

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

    /// Takes `key` out, with the size it was counted at.
    pub fn remove(&mut self, key: &K) -> Option<(V, usize)> {
        let (v, size) = self.map.pop(key)?;
        self.bytes -= size;
        Some((v, size))
    }

    /// Whether `key` is cached, without counting as a use.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains(key)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        while self.bytes > self.budget {
            match self.map.pop_lru() {
                Some((_, (_, s))) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Drops every entry whose key fails `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool)
    where
        K: Clone,
    {
        let gone: Vec<K> = self
            .map
            .iter()
            .filter(|(k, _)| !keep(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some((_, size)) = self.map.pop(&k) {
                self.bytes -= size;
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
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
    fn retain_drops_entries_and_their_bytes() {
        let mut lru = ByteLru::new(100);
        lru.put((1, 0), "a", 10);
        lru.put((2, 0), "b", 20);
        lru.put((1, 8), "c", 30);
        lru.retain(|(pack, _)| *pack == 1);
        assert_eq!(lru.get(&(2, 0)), None);
        assert_eq!(lru.get(&(1, 8)), Some("c"));
        assert_eq!(lru.bytes(), 40);
    }
}
