//! The error type of the storage layer (packs, loose objects, refs).
//!
//! Every variant names what it is about: a path, an object id, a pack, a ref.
//! Corruption is its own variant so that callers (a FUSE daemon, `check`) can
//! tell "the disk said no" from "the bytes are wrong" from "not there".

use crate::object::ObjectId;
use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while doing `action` on `path`.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("object {0} not found")]
    NotFound(ObjectId),

    /// The object exists but its stored bytes are damaged (or an index that
    /// would hold it is damaged). Wrong bytes are never returned instead.
    #[error("object {id} is corrupt{}: {detail}", OptPath(pack))]
    Corrupt {
        id: ObjectId,
        pack: Option<PathBuf>,
        detail: String,
    },

    /// A pack index (.idx) that cannot be used.
    #[error("pack {} is damaged: {detail}; nothing was changed (run `rewind fsck`)", path.display())]
    DamagedPack { path: PathBuf, detail: String },

    #[error("pack index {} is damaged: {detail}", path.display())]
    BadIndex { path: PathBuf, detail: String },

    #[error("{} is not a git repository (expected a bare repository with objects/pack, HEAD and refs)", path.display())]
    NotARepository { path: PathBuf },

    #[error("{} already exists (refusing to initialize over it)", path.display())]
    AlreadyExists { path: PathBuf },

    #[error(
        "ref {name} changed: expected {}, found {}",
        OptId(expected),
        OptId(found)
    )]
    RefChanged {
        name: String,
        expected: Option<ObjectId>,
        found: Option<ObjectId>,
    },

    #[error("ref lock {} is held by another process (if no other process is running, it is stale and may be removed)", lock.display())]
    RefLocked { lock: PathBuf },

    #[error("invalid ref name {name:?}: {reason}")]
    BadRefName { name: String, reason: &'static str },

    /// A repository on a server: the connection, the server's refusal, or
    /// what it sent. `detail` is one line that says what to do.
    #[error("{location}: {detail}")]
    Remote { location: String, detail: String },

    /// More pack entries than one cross-pack lookup (`pack::lookup`) can
    /// number: 2^32 - 1, which takes over 100 GiB of idx files.
    #[error("the repository's {packs} packs hold {objects} entries, more than rewind can look up at once (4,294,967,294); consolidate them with `git repack -a -d`")]
    TooManyObjects { objects: u64, packs: u64 },

    /// SIGINT or SIGTERM came while waiting for a running gc (see
    /// `gc_lock::lock_for_write`): nothing was written.
    #[error("interrupted by {} while waiting for a gc to finish", crate::interrupt::signal_name(*signal))]
    Interrupted { signal: i32 },

    /// A ref file or packed-refs line that cannot be parsed.
    #[error("bad ref in {}: {detail}", path.display())]
    BadRef { path: PathBuf, detail: String },
}

impl Error {
    /// Adapter for `map_err`: wraps an `io::Error` with what we were doing and where.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

struct OptPath<'a>(&'a Option<PathBuf>);

impl fmt::Display for OptPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " in {}", p.display()),
            None => Ok(()),
        }
    }
}

struct OptId<'a>(&'a Option<ObjectId>);

impl fmt::Display for OptId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, "{id}"),
            None => write!(f, "(no ref)"),
        }
    }
}
