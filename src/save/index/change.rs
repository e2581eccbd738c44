//! The change index as one save sees it: the previous file read ahead on
//! a thread of its own, the new one written as the walk goes.

use super::{index_in, key_cmp, Entry, IndexError, IndexReader, IndexWriter, RACY_MARGIN_SECS};
use crate::meta::{Stat, Timespec};
use crate::object::ObjectId;
use crate::repo::known::KnownObjects;
use crate::repo::Repo;
use std::cmp::Ordering;
use std::io;
use std::sync::Arc;

/// The change index as one save uses it: the previous index (if valid) to
/// look paths up, and the new one being written. Problems with either are
/// logged and make the save slower, never wrong, and never fail it.
pub(in crate::save) struct ChangeIndex {
    known: Arc<KnownObjects>,
    old: Option<Prefetched>,
    /// The object of the entry [`ChangeIndex::lookup`] returned last, and
    /// whether the prefetching thread found it packed.
    last_taken: Option<(ObjectId, bool)>,
    new: Option<IndexWriter>,
    /// Paths with mtime or ctime at or after this are not recorded.
    racy_from: Timespec,
    pub racy: u64,
}

impl ChangeIndex {
    /// The change index of backup `name` in `repo`'s state directory;
    /// `known` answers whether the objects it names are still stored.
    pub fn open(
        repo: &dyn Repo,
        known: Arc<KnownObjects>,
        name: &str,
        started: std::time::SystemTime,
    ) -> Self {
        let path = index_in(&repo.state_dir(), name);
        let old = match IndexReader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}; every file will be read");
                None
            }
        };
        let new = match IndexWriter::create(&path) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("{e}; the next save will read every file again");
                None
            }
        };
        let start = Timespec::from_system_time(started).unwrap_or_default();
        let old = old.and_then(|reader| match Prefetched::start(reader, known.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    "change index {}: cannot start a thread to read it ({e}); every file will be read",
                    path.display()
                );
                None
            }
        });
        ChangeIndex {
            known,
            old,
            last_taken: None,
            new,
            racy_from: Timespec {
                sec: start.sec - RACY_MARGIN_SECS,
                ..start
            },
            racy: 0,
        }
    }

    /// The previous entry for `key` if it shows the path unchanged (same
    /// stat, same kind of object). The caller still checks the object with
    /// [`ChangeIndex::has_object`] before relying on it.
    pub fn unchanged(&mut self, key: &[u8], st: &Stat) -> Option<Entry> {
        self.lookup(key, st).0
    }

    /// Like [`ChangeIndex::unchanged`], also telling whether `key` was in
    /// the previous index at all (a changed path rather than a new one).
    pub fn lookup(&mut self, key: &[u8], st: &Stat) -> (Option<Entry>, bool) {
        match self.old.as_mut().and_then(|old| old.take(key)) {
            Some((entry, present)) if entry.matches(st) => {
                self.last_taken = Some((entry.id, present));
                (Some(entry), true)
            }
            Some(_) => (None, true),
            None => (None, false),
        }
    }

    /// Whether the repository still holds `id` (a gc may have removed it).
    ///
    /// Asked for every reused path: the object of the entry just taken was
    /// already looked up by the prefetching thread; anything else is asked
    /// of the store.
    pub fn has_object(&self, id: &ObjectId) -> bool {
        self.last_taken == Some((*id, true)) || self.known.contains(id)
    }

    /// Records how `key` was saved in this run, unless it is too recent to
    /// be told apart from a change made right after we looked.
    pub fn record(&mut self, key: &[u8], entry: &Entry) {
        if entry.mtime >= self.racy_from || entry.ctime >= self.racy_from {
            self.racy += 1;
            return;
        }
        let Some(w) = self.new.as_mut() else { return };
        if let Err(e) = w.push(key, entry) {
            tracing::warn!("{e}; the next save will read every file again");
            self.new = None;
        }
    }

    /// Publishes the new index; call after the branch moved to `commit`.
    pub fn publish(self, commit: ObjectId) -> Result<(), IndexError> {
        let Some(w) = self.new else { return Ok(()) };
        if w.out_of_order > 0 {
            tracing::info!(
                "{} paths not indexed: the sources are not walked in path order",
                w.out_of_order
            );
        }
        w.publish(commit).map(|_| ())
    }
}

/// One previous entry: its key, the entry, and whether its object was
/// found in the packs open when the save began.
type Ahead = (Vec<u8>, Entry, bool);

/// Entries handed over at a time, and batches in flight: bounds the memory
/// the thread may fill ahead of the walk (~300 KB).
const AHEAD_BATCH: usize = 256;
const AHEAD_BATCHES: usize = 4;

/// The previous index, decompressed, decoded and its objects looked up on
/// a thread of its own, ahead of the walk, which only merges it with the
/// paths it meets. The existence check is the same as asking the store,
/// done earlier: the packs are those open when the save began.
struct Prefetched {
    batches: std::sync::mpsc::Receiver<Vec<Ahead>>,
    batch: std::vec::IntoIter<Ahead>,
    current: Option<Ahead>,
}

impl Prefetched {
    fn start(mut reader: IndexReader, packed: Arc<KnownObjects>) -> io::Result<Prefetched> {
        let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD_BATCHES);
        std::thread::Builder::new()
            .name("index-read".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(AHEAD_BATCH);
                while let Some((key, entry)) = reader.next_entry() {
                    let present = packed.contains(&entry.id);
                    batch.push((key, entry, present));
                    if batch.len() == AHEAD_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(AHEAD_BATCH));
                        if tx.send(full).is_err() {
                            return; // the save is over
                        }
                    }
                }
                let _ = tx.send(batch);
            })?;
        Ok(Prefetched {
            batches: rx,
            batch: Vec::new().into_iter(),
            current: None,
        })
    }

    fn next(&mut self) -> Option<Ahead> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(e);
            }
            self.batch = self.batches.recv().ok()?.into_iter();
        }
    }

    /// As [`IndexReader::take`], with whether the object was found.
    fn take(&mut self, key: &[u8]) -> Option<(Entry, bool)> {
        loop {
            if self.current.is_none() {
                self.current = Some(self.next()?);
            }
            let (k, _, _) = self.current.as_ref()?;
            match key_cmp(k, key) {
                Ordering::Less => self.current = None,
                Ordering::Equal => {
                    let (_, entry, present) = self.current.take()?;
                    return Some((entry, present));
                }
                Ordering::Greater => return None,
            }
        }
    }
}
