//! The seam between what rewind does with a repository (save, list,
//! restore, report) and where the repository is: a local folder
//! ([`super::Repository`]) or a backup server reached over SSH
//! (`crate::remote`). A bucket will be a third.
//!
//! Callers hold a `&dyn Repo`. What crosses the seam is what a remote can
//! do in few round trips: existence answered from a local set
//! ([`KnownObjects`]), new objects as a stream of compressed entries
//! ([`PackSink`]), refs read and moved with compare-and-swap, objects read
//! one at a time or announced ahead in batches ([`Objects::will_need`]).
//! Rewind's own per-repository files (change indexes, the commit cache,
//! the object table) live in [`Repo::state_dir`]: inside a local
//! repository, in a cache directory on the client for a remote one.

use super::known::KnownObjects;
use super::store::{Object, ObjectStore, Verify};
use super::Error;
use crate::object::{Kind, ObjectId};
use crate::pack::writer::WriteStats;
use crate::pack::{PackIndex, PackWriter};
use std::path::PathBuf;

/// Reading objects. Every object returned has been checked against its id
/// (or, for [`Verify::EntryChecksums`], by checks as strong against damage).
pub trait Objects: Send + Sync {
    fn read_with(&self, id: &ObjectId, verify: Verify) -> Result<Object, Error>;

    fn read(&self, id: &ObjectId) -> Result<Object, Error> {
        self.read_with(id, Verify::Hash)
    }

    /// Kind and size without the whole object where the place allows.
    fn read_header(&self, id: &ObjectId) -> Result<(Kind, u64), Error>;

    /// Whether `id` is stored (as far as this place can tell cheaply).
    fn contains(&self, id: &ObjectId) -> bool;

    /// Advice: these objects will be read soon, in this order.
    fn will_need(&self, _ids: &[ObjectId]) {}

    /// For long-lived readers: notice packs that appeared or went.
    fn follow_changes(&self) {}
}

/// Where a save's new objects go, already compressed: a temporary pack in
/// a local folder, or a stream to a server that writes its own. Packs are
/// published whole (a full one may be published before
/// [`PackSink::finish`], when it reaches the size limit), and nothing is
/// referenced before a ref moves after `finish` returned.
pub trait PackSink: Send {
    /// Appends the complete zlib stream `zdata` of the `size` bytes whose
    /// id is `id` (the caller hashed them).
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error>;

    fn stats(&self) -> WriteStats;

    /// Makes every appended object durable and readable in the repository.
    fn finish(self: Box<Self>) -> Result<(), Error>;
}

/// A repository, wherever it is.
pub trait Repo: Send + Sync {
    /// How messages name this repository (a path or an SSH location).
    fn location(&self) -> String;

    fn objects(&self) -> &dyn Objects;

    /// Whether reading an object waits on another machine (a server over
    /// SSH) rather than on this one's disk and CPU: readers then block
    /// for answers, and more of them than cores keep the cores busy.
    fn reads_wait_on_peer(&self) -> bool {
        false
    }

    /// Resolves a full ref name (or "HEAD").
    fn read_ref(&self, full_name: &str) -> Result<Option<ObjectId>, Error>;

    /// Refs whose names start with `prefix`, sorted by name.
    fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error>;

    /// Compare-and-swap: sets `full_name` to `new` only if it currently is
    /// `expected_old` (`None`: the ref must not exist).
    fn update_ref(
        &self,
        full_name: &str,
        new: ObjectId,
        expected_old: Option<ObjectId>,
    ) -> Result<(), Error>;

    /// Points HEAD at `branch` if HEAD's target does not exist.
    fn set_head_if_dangling(&self, branch: &str) -> Result<bool, Error>;

    /// The objects stored when a save begins, for its "already stored?"
    /// questions. A false "present" would make a snapshot name a missing
    /// object, so every doubt answers "absent".
    fn known_objects(&self) -> KnownObjects;

    /// The objects stored as this machine last learned of them, without
    /// asking the repository (a remote one's cached pack indexes), and the
    /// names of the index files (`pack-<sha>.idx`) that knowledge rests
    /// on: a save walks with it while the connection is still being made.
    /// `None` where [`Repo::known_objects`] costs no wait (a local folder)
    /// or nothing is cached. A pack may have gone since (a gc), and a false
    /// "present" would make a snapshot name a missing object: a save that
    /// starts with this set checks [`Repo::current_indexes`] before it
    /// writes its commit, and saves again if one it relied on is gone.
    fn known_objects_cached(&self) -> Option<(KnownObjects, Vec<String>)> {
        None
    }

    /// The names of the repository's pack index files now
    /// (`pack-<sha>.idx`), with this machine's copies brought up to date
    /// where it keeps some. From this call to the end of the session
    /// (over SSH) or of the write lock (locally), gc deletes none of them.
    fn current_indexes(&self) -> Result<Vec<String>, Error>;

    /// A sink for a save's new objects.
    fn pack_sink(&self) -> Result<Box<dyn PackSink>, Error>;

    /// Where rewind keeps its own files for this repository (change
    /// indexes, the commit cache, the object table): caches that any doubt
    /// may discard.
    fn state_dir(&self) -> PathBuf;

    /// A small file rewind keeps in the repository itself (`runs.toml`, the
    /// outcome of the last runs): its bytes, `None` if there is none.
    fn read_shared(&self, name: SharedFile) -> Result<Option<Vec<u8>>, Error>;

    /// Replaces a shared file whole, atomically.
    fn write_shared(&self, name: SharedFile, bytes: &[u8]) -> Result<(), Error>;

    /// Held by a writer from before it asks [`Repo::known_objects`] until
    /// its ref has moved: a gc waits for it, and it waits for a running gc
    /// (`waiting` is called once if it has to). `None` where the other end
    /// holds it for us (a server holds it for its session).
    fn lock_for_write(
        &self,
        _waiting: &dyn Fn(&str),
    ) -> Result<Option<super::gc_lock::WriteLock>, Error> {
        Ok(None)
    }

    /// The pack-level operations gc needs, where the repository's files
    /// are reachable; `None` over SSH (gc runs on the server).
    fn pack_storage(&self) -> Option<&dyn PackStorage> {
        None
    }
}

/// A pack as gc sees it: its name (`pack-<sha>`), its verified index, and
/// what decides how it is treated.
#[derive(Clone)]
pub struct StoredPack {
    pub name: String,
    pub index: std::sync::Arc<PackIndex>,
    /// Bytes of the pack file (header, entries, trailer).
    pub size: u64,
    /// Modification time, epoch seconds: older packs are copied first, so
    /// a consolidated pack keeps history in order.
    pub mtime: i64,
    /// git's `pack-<sha>.keep`: never rewritten or deleted.
    pub keep: bool,
}

/// What gc does with packs, in operations small enough for any place that
/// stores them (a folder today, a bucket later: issue 14): list them with
/// their indexes, read a range of one, publish new ones, delete old ones,
/// and keep writers out meanwhile. Reading and checking objects still goes
/// through [`Repo::objects`].
pub trait PackStorage {
    /// Takes the writers' lock exclusive (see `repo::gc_lock`). With
    /// `wait`, waits for running saves (calling `waiting` once first);
    /// without, `Ok(None)` while one runs.
    fn lock_out_writers(
        &self,
        wait: bool,
        waiting: &dyn Fn(),
    ) -> Result<Option<super::gc_lock::GcLock>, Error>;

    /// Every pack now. A pack whose index does not open or whose frame
    /// disagrees with its index is an error naming it: liveness cannot be
    /// judged with it, and deleting around damage could make it worse.
    fn list_packs(&self) -> Result<Vec<StoredPack>, Error>;

    /// Pack `name`, to read ranges of.
    fn open_pack(&self, name: &str) -> Result<Box<dyn PackRead + '_>, Error>;

    /// A writer of new packs of at most about `target_size` bytes each, for
    /// `entries` entries in all: packs planned with their exact count are
    /// hashed as they are written, never read back (a different count is
    /// still written right, only slower).
    fn new_packs(&self, target_size: u64, entries: u64) -> Result<Box<dyn PackOut>, Error>;

    /// Removes pack `name` (its index first, so that no reader finds an
    /// index without its pack, then the pack and its companion files).
    fn delete_pack(&self, name: &str) -> Result<(), Error>;

    /// Drops history that no longer exists: entries of git's reflogs
    /// (`logs/`) naming an object for which `live` is false, which `git
    /// fsck` would otherwise report as invalid. Called before anything is
    /// deleted.
    fn forget_dead_history(&self, live: &dyn Fn(&ObjectId) -> bool) -> Result<(), Error>;

    /// After the deletions: makes them durable and drops caches (bup's
    /// midx and bloom) that name packs that are gone.
    fn settle(&self) -> Result<(), Error>;
}

/// One pack gc copies from.
pub trait PackRead {
    /// `len` bytes from `offset` (inside the pack's entries).
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error>;

    /// Asks for `len` bytes from `offset` to be fetched now, without
    /// waiting, because [`read`](Self::read) will want them soon. Only
    /// advice: nothing happens where it cannot be given.
    fn will_need(&self, _offset: u64, _len: u64) {}
}

/// New packs for gc: entries appended as stored, published whole.
pub trait PackOut {
    /// As [`PackSink::append_compressed`].
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
    ) -> Result<(), Error>;

    /// Publishes what is left and returns the names (`pack-<sha>`) of every
    /// pack published, durable and readable.
    fn finish(self: Box<Self>) -> Result<Vec<String>, Error>;
}

/// The files of a repository's `rewind/` directory that every client of
/// the repository shares (unlike the caches of [`Repo::state_dir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedFile {
    /// `rewind/runs.toml`: the outcome of each backup's last run.
    Runs,
}

impl SharedFile {
    pub fn file_name(self) -> &'static str {
        match self {
            SharedFile::Runs => "runs.toml",
        }
    }

    /// The largest such file a server accepts or a client reads.
    pub const MAX_BYTES: usize = 4 << 20;
}

impl Objects for ObjectStore {
    fn read_with(&self, id: &ObjectId, verify: Verify) -> Result<Object, Error> {
        ObjectStore::read_with(self, id, verify)
    }

    fn read_header(&self, id: &ObjectId) -> Result<(Kind, u64), Error> {
        ObjectStore::read_header(self, id)
    }

    fn contains(&self, id: &ObjectId) -> bool {
        ObjectStore::contains(self, id)
    }

    fn will_need(&self, ids: &[ObjectId]) {
        ObjectStore::will_need(self, ids)
    }

    fn follow_changes(&self) {
        ObjectStore::follow_changes(self)
    }
}

impl PackSink for PackWriter {
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error> {
        PackWriter::append_compressed(self, id, kind, size, zdata, stored)
    }

    fn stats(&self) -> WriteStats {
        PackWriter::stats(self)
    }

    fn finish(self: Box<Self>) -> Result<(), Error> {
        PackWriter::finish(*self).map(|_| ())
    }
}
