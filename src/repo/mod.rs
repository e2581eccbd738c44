//! The repository: a bare SHA-1 git repository that bup 0.33 and git can read.
//!
//! `Repository` owns the layout (init/open), the object store (`store`:
//! packs and loose objects) and refs (`refs`: lock + compare-and-swap).
//! Writing new objects goes through `pack::PackWriter`; call
//! `objects().refresh()` after publishing so readers see the new packs.

pub mod error;
pub(crate) mod fsutil;
pub mod known;
mod loose;
pub mod refs;
pub mod store;
pub mod under;

pub use error::Error;
pub use refs::check_ref_name;
pub use store::{Object, ObjectStore};

use crate::object::ObjectId;
use crate::pack::PackWriter;
use std::path::{Path, PathBuf};

const CONFIG: &str = "[core]\n\
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
    objects: ObjectStore,
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
        let objects = ObjectStore::open(&path.join("objects"))?;
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
