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
use crate::pack::PackWriter;
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
