//! The repository: a bare SHA-1 git repository that bup 0.33 and git can read.
//!
//! `Repository` owns the layout (init/open), the object store (`store`:
//! packs and loose objects) and refs (`refs`: lock + compare-and-swap).
//! Writing new objects goes through `pack::PackWriter`; call
//! `objects().refresh()` after publishing so readers see the new packs.

pub mod access;
pub mod error;
pub mod fsutil;
pub mod gc_lock;
pub mod known;
pub mod lockfile;
mod loose;
mod packs;
pub mod refs;
pub mod store;
pub mod under;

pub use access::{Objects, PackOut, PackRead, PackSink, PackStorage, Repo, SharedFile, StoredPack};
pub use error::Error;
pub use refs::check_ref_name;
pub use store::{Object, ObjectStore};

use crate::object::{Kind, ObjectId};
use crate::pack::writer::WriteStats;
use crate::pack::PackWriter;
use known::KnownObjects;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The config file of a new repository.
pub const CONFIG: &str = "[core]\n\
\trepositoryformatversion = 0\n\
\tfilemode = true\n\
\tbare = true\n\
\tlogallrefupdates = true\n\
[pack]\n\
\tindexVersion = 2\n";

const DESCRIPTION: &str =
    "Unnamed repository; edit this file 'description' to name the repository.\n";

pub struct Repository {
    path: PathBuf,
    objects: Arc<ObjectStore>,
}

impl Repository {
    /// Creates a bare repository at `path` (and its parents), without git.
    /// HEAD is written last: a half-made repository does not open.
    pub fn init(path: &Path) -> Result<Repository, Error> {
        if path.join("HEAD").exists() || path.join("objects").exists() {
            return Err(Error::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        for dir in ["objects/pack", "objects/info", "refs/heads", "refs/tags"] {
            let d = path.join(dir);
            std::fs::create_dir_all(&d).map_err(Error::io("creating directory", &d))?;
        }
        fsutil::write_atomic(&path.join("config"), CONFIG.as_bytes())?;
        fsutil::write_atomic(&path.join("description"), DESCRIPTION.as_bytes())?;
        for dir in ["objects", "refs"] {
            fsutil::fsync_dir(&path.join(dir))?;
        }
        fsutil::write_atomic(&path.join("HEAD"), b"ref: refs/heads/main\n")?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::fsync_dir(parent)?;
        }
        Repository::open(path)
    }

    /// Opens an existing bare repository (git's or bup's).
    pub fn open(path: &Path) -> Result<Repository, Error> {
        if !Repository::looks_like(path) {
            return Err(Error::NotARepository {
                path: path.to_path_buf(),
            });
        }
        let objects = Arc::new(ObjectStore::open(&path.join("objects"))?);
        Ok(Repository {
            path: path.to_path_buf(),
            objects,
        })
    }

    /// Whether `path` has the layout of a bare repository (what `open`
    /// checks before reading anything).
    pub fn looks_like(path: &Path) -> bool {
        path.join("objects/pack").is_dir()
            && path.join("HEAD").is_file()
            && path.join("refs").is_dir()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    /// A writer for new packs in this repository.
    pub fn pack_writer(&self) -> Result<PackWriter, Error> {
        PackWriter::new(&self.path.join("objects"))
    }

    /// Resolves a full ref name (or "HEAD"): loose file first, then packed-refs.
    pub fn read_ref(&self, full_name: &str) -> Result<Option<ObjectId>, Error> {
        refs::read_ref(&self.path, full_name)
    }

    /// Refs whose names start with `prefix` (e.g. "refs/heads/"), sorted by name.
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        refs::list_refs(&self.path, prefix)
    }

    /// Compare-and-swap: sets `full_name` to `new` only if it currently is
    /// `expected_old` (`None` = the ref must not exist). Uses git's
    /// `<ref>.lock` protocol; waits up to ~5 s for a lock held by another.
    pub fn update_ref(
        &self,
        full_name: &str,
        new: ObjectId,
        expected_old: Option<ObjectId>,
    ) -> Result<(), Error> {
        refs::update_ref(&self.path, full_name, new, expected_old)
    }

    /// Deletes `full_name` if it currently is `expected_old` (loose refs only).
    pub fn delete_ref(&self, full_name: &str, expected_old: ObjectId) -> Result<(), Error> {
        refs::delete_ref(&self.path, full_name, expected_old)
    }

    /// The branch HEAD points at (without "refs/heads/"), if HEAD is symbolic.
    pub fn head_branch(&self) -> Result<Option<String>, Error> {
        refs::head_branch(&self.path)
    }

    /// Points HEAD at `branch` if HEAD's current target does not exist, so a
    /// `git clone` checks out a real branch. Returns whether HEAD changed.
    pub fn set_head_if_dangling(&self, branch: &str) -> Result<bool, Error> {
        refs::set_head_if_dangling(&self.path, branch)
    }
}

impl Repo for Repository {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn objects(&self) -> &dyn Objects {
        &*self.objects
    }

    fn read_ref(&self, full_name: &str) -> Result<Option<ObjectId>, Error> {
        Repository::read_ref(self, full_name)
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        Repository::list_refs(self, prefix)
    }

    fn update_ref(
        &self,
        full_name: &str,
        new: ObjectId,
        expected_old: Option<ObjectId>,
    ) -> Result<(), Error> {
        Repository::update_ref(self, full_name, new, expected_old)
    }

    fn set_head_if_dangling(&self, branch: &str) -> Result<bool, Error> {
        Repository::set_head_if_dangling(self, branch)
    }

    fn known_objects(&self) -> KnownObjects {
        KnownObjects::open(&self.objects, &self.state_dir())
    }

    fn current_indexes(&self) -> Result<Vec<String>, Error> {
        self.objects.refresh()?;
        Ok(self
            .objects
            .pack_files()
            .iter()
            .filter_map(|p| {
                let idx = p.path().with_extension("idx");
                Some(idx.file_name()?.to_str()?.to_string())
            })
            .collect())
    }

    fn pack_sink(&self) -> Result<Box<dyn PackSink>, Error> {
        Ok(Box::new(LocalSink {
            writer: self.pack_writer()?,
            store: self.objects.clone(),
        }))
    }

    fn state_dir(&self) -> PathBuf {
        self.path.join("rewind")
    }

    fn read_shared(&self, name: SharedFile) -> Result<Option<Vec<u8>>, Error> {
        let path = self.state_dir().join(name.file_name());
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", path)(e)),
        }
    }

    fn write_shared(&self, name: SharedFile, bytes: &[u8]) -> Result<(), Error> {
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io("creating directory", &dir))?;
        fsutil::write_atomic(&dir.join(name.file_name()), bytes)
    }

    fn lock_for_write(&self, waiting: &dyn Fn(&str)) -> Result<Option<gc_lock::WriteLock>, Error> {
        gc_lock::lock_for_write(&self.state_dir(), waiting).map(Some)
    }

    fn pack_storage(&self) -> Option<&dyn PackStorage> {
        Some(self)
    }
}

/// New packs in a local folder: the store rescans once they are published,
/// so the next read or save of this process sees them.
struct LocalSink {
    writer: PackWriter,
    store: Arc<ObjectStore>,
}

impl PackSink for LocalSink {
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error> {
        self.writer.append_compressed(id, kind, size, zdata, stored)
    }

    fn stats(&self) -> WriteStats {
        self.writer.stats()
    }

    fn finish(self: Box<Self>) -> Result<(), Error> {
        let LocalSink { writer, store } = *self;
        writer.finish()?;
        store.refresh()
    }
}
