//! The repositories a mount shows, and what the mount keeps per repository.
//!
//! A mount shows one repository (`rewind -d REPO mount`: its backup names at
//! the mount's root) or every repository under a directory (`rewind mount
//! --repos DIR`: `<repository>/<name>/...`, one level down). Inodes name
//! their repository by a small number, a [`RepoIx`], handed out here and
//! never reused while the mount lives; [`Repositories::get`] turns it into
//! the repository's [`RepoState`].
//!
//! Under a directory, the list of repositories is re-read at most every
//! [`LIVE_TTL`], as refs are: a repository made there while mounted shows
//! up, a removed one disappears (its inodes answer "not found"), and one
//! removed and made again under the same name is a new directory (new
//! inode numbers, reopened). A repository is opened on first use and at most
//! [`MAX_OPEN`] stay open (least recently used closed first), so memory and
//! open files do not grow with the number of repositories.
//!
//! The caches of trees and chunks are shared by all repositories, keyed by
//! object id: every object read is verified against its id, so the same id
//! is the same bytes whichever repository it came from.

use super::fs::LIVE_TTL;
use super::inodes::node_bytes;
use crate::cache::ByteLru;
use crate::locks::lock;
use crate::object::ObjectId;
use crate::repo::under::{self, Found};
use crate::repo::Repo;
use crate::repo::Repository;
use crate::view::namespace::{self, Backup, Snapshots, Source, Tag};
use crate::view::random::ChunkCache;
use crate::view::{self, Directory, ViewError};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which repository an inode belongs to.
pub type RepoIx = u32;

/// Repositories open at once under `--repos`.
pub const MAX_OPEN: usize = 16;

type Shared<T> = Arc<Vec<T>>;

/// What to mount.
pub enum Mounted {
    One(Box<Repository>),
    /// Every repository directly under this directory.
    Under(PathBuf),
}

impl Mounted {
    /// The path the mount is named after (`rewind:<path>` in the mount table).
    pub fn path(&self) -> &Path {
        match self {
            Mounted::One(repo) => repo.path(),
            Mounted::Under(dir) => dir,
        }
    }
}

/// Ref-derived listings with the time they were read.
#[derive(Default)]
struct Live {
    backups: Option<(Instant, Shared<Backup>)>,
    tags: Option<(Instant, Shared<Tag>)>,
    /// Per backup name: the tip the list was built from, and the list.
    snapshots: HashMap<String, (ObjectId, Arc<Snapshots>)>,
}

/// Listings of saved directories, shared by all repositories: keyed by
/// tree id, which each read verifies, so the same id is the same listing
/// whichever repository it came from.
pub struct DirCache(Mutex<ByteLru<ObjectId, Arc<Directory>>>);

impl DirCache {
    pub fn new(bytes: usize) -> DirCache {
        DirCache(Mutex::new(ByteLru::new(bytes)))
    }

    fn get(&self, repo: &Repository, tree: &ObjectId) -> Result<Arc<Directory>, ViewError> {
        if let Some(d) = lock(&self.0).get(tree) {
            return Ok(d);
        }
        let dir = Arc::new(view::list_dir(repo, tree)?);
        let size = 256 + dir.entries.iter().map(node_bytes).sum::<usize>();
        lock(&self.0).put(*tree, dir.clone(), size);
        Ok(dir)
    }
}

/// One repository as the mount sees it: the repository, its listings that
/// follow refs (re-read at most every [`LIVE_TTL`]), and its read-ahead.
/// As a [`Source`] it answers the namespace from those listings.
pub struct RepoState {
    pub repo: Arc<Repository>,
    live: Mutex<Live>,
    dirs: Arc<DirCache>,
    /// Inflates a blob of this repository into the shared chunk cache.
    pub ahead_load: Arc<dyn Fn(&ObjectId) + Send + Sync>,
}

impl RepoState {
    fn new(
        repo: Repository,
        chunks: &Arc<ChunkCache>,
        dirs: &Arc<DirCache>,
        base_bytes: usize,
    ) -> Arc<RepoState> {
        repo.objects().set_base_cache_bytes(base_bytes);
        let repo = Arc::new(repo);
        let ahead_load: Arc<dyn Fn(&ObjectId) + Send + Sync> = {
            let (repo, chunks) = (repo.clone(), chunks.clone());
            // Errors surface again, with a log line, when the reader itself
            // gets there.
            Arc::new(move |id: &ObjectId| chunks.prefetch(repo.objects(), id))
        };
        Arc::new(RepoState {
            repo,
            live: Mutex::new(Live::default()),
            dirs: dirs.clone(),
            ahead_load,
        })
    }

    /// A backup name as listed now.
    pub fn backup(&self, name: &str) -> Result<Backup, ViewError> {
        self.backups()?
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .ok_or_else(|| ViewError::NotFound(name.to_string()))
    }
}

/// `list` as read within the last [`LIVE_TTL`], or read now.
fn fresh<T>(
    slot: impl Fn(&mut Live) -> &mut Option<(Instant, Shared<T>)>,
    live: &Mutex<Live>,
    read: impl FnOnce() -> Result<Vec<T>, ViewError>,
) -> Result<Shared<T>, ViewError> {
    if let Some((at, list)) = slot(&mut lock(live)) {
        if at.elapsed() < LIVE_TTL {
            return Ok(list.clone());
        }
    }
    let list = Arc::new(read()?);
    *slot(&mut lock(live)) = Some((Instant::now(), list.clone()));
    Ok(list)
}

impl Source for RepoState {
    fn repo(&self) -> &dyn Repo {
        &*self.repo
    }

    fn backups(&self) -> Result<Shared<Backup>, ViewError> {
        fresh(
            |l| &mut l.backups,
            &self.live,
            || namespace::read_backups(&*self.repo),
        )
    }

    fn tags(&self) -> Result<Shared<Tag>, ViewError> {
        fresh(
            |l| &mut l.tags,
            &self.live,
            || namespace::read_tags(&*self.repo),
        )
    }

    /// Rebuilt only when the name's tip moved.
    fn snapshots(&self, backup: &Backup) -> Result<Arc<Snapshots>, ViewError> {
        if let Some((t, list)) = lock(&self.live).snapshots.get(&backup.name) {
            if *t == backup.tip {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(namespace::read_snapshots(&*self.repo, &backup.tip)?);
        lock(&self.live)
            .snapshots
            .insert(backup.name.clone(), (backup.tip, list.clone()));
        Ok(list)
    }

    fn directory(&self, tree: &ObjectId) -> Result<Arc<Directory>, ViewError> {
        self.dirs.get(&self.repo, tree)
    }
}

/// A repository found under the directory.
#[derive(Clone)]
pub struct Listed {
    pub name: Vec<u8>,
    pub ix: RepoIx,
    path: PathBuf,
    /// Device and inode of its directory, folded into inode numbers so
    /// that a repository made again under an old name is a new directory.
    pub identity: (u64, u64),
}

/// An open repository and the identity of the directory it was opened from.
type Opened = ((u64, u64), Arc<RepoState>);

struct Under {
    dir: PathBuf,
    listing: Mutex<Option<(Instant, Shared<Listed>)>>,
    /// Numbers handed out so far, by name (grows only with names ever seen).
    numbers: Mutex<HashMap<Vec<u8>, RepoIx>>,
    /// Open repositories; one unit each, [`MAX_OPEN`] in all.
    open: Mutex<ByteLru<RepoIx, Opened>>,
}

enum Kind {
    One(Arc<RepoState>),
    Under(Under),
}

pub struct Repositories {
    kind: Kind,
    chunks: Arc<ChunkCache>,
    dirs: Arc<DirCache>,
    /// Delta-base cache of each open repository.
    base_bytes: usize,
}

impl Repositories {
    /// `base_bytes` is the delta-base budget of the whole mount; under a
    /// directory each open repository gets its share of it.
    pub fn new(
        source: Mounted,
        chunks: Arc<ChunkCache>,
        dirs: Arc<DirCache>,
        base_bytes: usize,
    ) -> Repositories {
        let (kind, base_bytes) = match source {
            Mounted::One(repo) => (
                Kind::One(RepoState::new(*repo, &chunks, &dirs, base_bytes)),
                base_bytes,
            ),
            Mounted::Under(dir) => (
                Kind::Under(Under {
                    dir,
                    listing: Mutex::new(None),
                    numbers: Mutex::new(HashMap::new()),
                    open: Mutex::new(ByteLru::new(MAX_OPEN)),
                }),
                base_bytes / MAX_OPEN,
            ),
        };
        Repositories {
            kind,
            chunks,
            dirs,
            base_bytes,
        }
    }

    /// Whether the mount's root lists repositories (`--repos`) rather than
    /// backup names.
    pub fn is_directory(&self) -> bool {
        matches!(self.kind, Kind::Under(_))
    }

    /// The repositories under the directory now (empty for a single one).
    pub fn list(&self) -> Result<Shared<Listed>, ViewError> {
        let Kind::Under(under) = &self.kind else {
            return Ok(Arc::new(Vec::new()));
        };
        if let Some((at, list)) = &*lock(&under.listing) {
            if at.elapsed() < LIVE_TTL {
                return Ok(list.clone());
            }
        }
        let found = under::list(&under.dir)
            .map_err(|e| crate::repo::Error::io("listing repositories in", &under.dir)(e.source))?;
        let mut numbers = lock(&under.numbers);
        let list: Vec<Listed> = found
            .into_iter()
            // A directory that cannot be listed is not shown: nothing in
            // it could be read either (`rewind status --repos` reports it).
            .filter(|c| matches!(c.found, Found::Repository))
            .map(|c| {
                let name = c.name.as_bytes().to_vec();
                let next = numbers.len() as RepoIx;
                let ix = *numbers.entry(name.clone()).or_insert(next);
                Listed {
                    name,
                    ix,
                    path: c.path,
                    identity: c.identity,
                }
            })
            .collect();
        drop(numbers);
        let list = Arc::new(list);
        // Repositories that are gone are closed now: their files are not
        // held open until the LRU gets round to them. (One made again under
        // its name is reopened by `get`, which sees the new identity.)
        lock(&under.open).retain(|ix| list.iter().any(|l| l.ix == *ix));
        *lock(&under.listing) = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The repository `ix` stands for, opened if need be; "not found" once
    /// it is no longer there.
    pub fn get(&self, ix: RepoIx) -> Result<Arc<RepoState>, ViewError> {
        let under = match &self.kind {
            Kind::One(state) => return Ok(state.clone()),
            Kind::Under(under) => under,
        };
        let list = self.list()?;
        let listed = list
            .iter()
            .find(|l| l.ix == ix)
            .ok_or_else(|| ViewError::NotFound(format!("repository {ix}")))?;
        if let Some((identity, state)) = lock(&under.open).get(&ix) {
            if identity == listed.identity {
                return Ok(state);
            }
        }
        let repo = Repository::open(&listed.path)?;
        let state = RepoState::new(repo, &self.chunks, &self.dirs, self.base_bytes);
        lock(&under.open).put(ix, (listed.identity, state.clone()), 1);
        Ok(state)
    }
}
