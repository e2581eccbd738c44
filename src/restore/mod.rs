//! Materialises view nodes on disk: directories, files (sparse where the
//! data has zero blocks), symlinks, fifos, sockets and devices, hardlink
//! groups re-linked, and metadata applied last (a directory's after its
//! children, so that its times and a read-only mode stick).
//!
//! Trust: the target directory is the user's; everything the snapshot
//! holds, and everything already inside the target, is not. Every entry is
//! created, replaced or removed relative to a descriptor of a directory
//! this module opened itself without following symlinks (see [`at`]), and
//! every name is checked with [`tree::check_name`] again here, so no name
//! and no symlink can take a write or a removal outside the target.

mod at;
mod listing;
pub mod plan;
mod sparse;
mod workers;

use crate::meta::{ids, Applier, ApplyOptions, Metadata};
use crate::object::tree::{self, UnsafeName};
use crate::repo::Repo;
use crate::view::{ContentReader, Directory, Node, NodeType, ViewError};
use listing::{announce, Listings, Unsaved};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use workers::{FileJob, Outstanding, Pool};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot restore {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A directory that could not be listed (a tree missing or damaged),
    /// named by where it was going.
    #[error("cannot restore {path}: {source}")]
    List { path: PathBuf, source: ViewError },
    #[error("{path}: not restored, not a file name: {reason}")]
    UnsafeName { path: PathBuf, reason: UnsafeName },
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("restore stopped after an earlier error")]
    Stopped,
    #[error("a restore thread panicked (a bug): the files it was writing are incomplete")]
    WorkerPanicked,
    #[error("the restore thread listing directories stopped or fell out of step (a bug): the restore is incomplete")]
    ListingLost,
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub numeric_ids: bool,
    /// Threads writing files' content; 0 or 1: the calling thread alone.
    pub threads: usize,
    /// Leave what exists in the target as it is, with a warning each:
    /// files, links and specials are not replaced, a non-directory where
    /// a directory would go keeps that whole directory out, and an
    /// existing directory (the target too) keeps its metadata.
    pub no_clobber: bool,
    /// The target was created for this restore: with `no_clobber` too it
    /// gets the saved metadata of a directory restored into it, there
    /// being nothing of the user's to keep.
    pub target_is_new: bool,
}

pub struct Restorer<'r> {
    repo: &'r dyn Repo,
    apply_options: ApplyOptions,
    applier: Applier,
    threads: usize,
    no_clobber: bool,
    target_is_new: bool,
    /// The target, opened once; all writes go below this descriptor.
    root: OwnedFd,
    root_path: PathBuf,
    /// Files and directories get their metadata through the descriptor
    /// restore holds; symlinks and specials through
    /// `/proc/self/fd/<dir>/<name>` when that reaches the directory we
    /// hold open, so that those path-based calls resolve no directory by
    /// name either.
    via_proc: bool,
    /// The directories from below the target down to the one being
    /// restored.
    levels: Vec<Level>,
    /// Files restored into the target itself still with the workers.
    top_outstanding: Outstanding,
    /// hardlink_target (a group key, as in bup) -> names from the target
    /// down to the first restored member.
    links: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// Directories done but for files still with the workers: their
    /// metadata waits (see [`workers`]).
    deferred: Vec<Deferred>,
    /// What entries with no saved metadata get: their snapshot's time
    /// (set per call) and this process's owner.
    unsaved: Unsaved,
    pub warnings: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    /// Entries left as they were by `--no-clobber`.
    pub skipped: u64,
}

impl<'r> Restorer<'r> {
    /// A restorer writing into the existing directory `target`.
    pub fn new(
        repo: &'r dyn Repo,
        opts: &RestoreOptions,
        target: &Path,
    ) -> Result<Restorer<'r>, RestoreError> {
        let root = at::open_root(target).map_err(|source| RestoreError::Write {
            path: target.to_path_buf(),
            source,
        })?;
        let via_proc = proc_reaches(&root);
        let apply_options = ApplyOptions {
            numeric_ids: opts.numeric_ids,
        };
        Ok(Restorer {
            repo,
            apply_options,
            applier: Applier::new(apply_options),
            threads: opts.threads,
            no_clobber: opts.no_clobber,
            target_is_new: opts.target_is_new,
            root,
            root_path: target.to_path_buf(),
            via_proc,
            levels: Vec::new(),
            top_outstanding: Outstanding::default(),
            links: HashMap::new(),
            deferred: Vec::new(),
            unsaved: Unsaved {
                time: 0,
                uid: ids::euid(),
                gid: ids::egid(),
            },
            warnings: Vec::new(),
            files: 0,
            bytes: 0,
            skipped: 0,
        })
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    /// Counts the entries the view left out (it has logged them already).
    fn note_skipped(&mut self, dir: &Directory) {
        self.warnings
            .extend(dir.skipped.iter().map(ToString::to_string));
    }

    fn root(&self) -> Result<OwnedFd, RestoreError> {
        self.root.try_clone().map_err(|source| RestoreError::Write {
            path: self.root_path.clone(),
            source,
        })
    }

    /// Where an entry of the current directory is, for messages.
    fn shown(&self, name: &[u8]) -> PathBuf {
        let mut path = self.root_path.clone();
        path.extend(self.levels.iter().map(|l| OsStr::from_bytes(&l.name)));
        path.push(OsStr::from_bytes(name));
        path
    }

    /// Restores `node` into the target under its own name, replacing what
    /// has that name there. `snapshot_time` is the time of the snapshot it
    /// is from, which entries with no saved metadata get.
    pub fn restore(&mut self, node: &Node, snapshot_time: i64) -> Result<(), RestoreError> {
        self.unsaved.time = snapshot_time;
        let mut node = node.clone();
        self.unsaved.fill(std::slice::from_mut(&mut node));
        let root = self.root()?;
        self.run(std::slice::from_ref(&node), |this, crew| {
            this.restore_entry(crew, root.as_fd(), &node)
        })
    }

    /// Restores the entries of a directory node into the target itself.
    pub fn restore_contents(
        &mut self,
        node: &Node,
        snapshot_time: i64,
    ) -> Result<(), RestoreError> {
        self.unsaved.time = snapshot_time;
        let dir = self
            .unsaved
            .list(self.repo, node)
            .map_err(|source| RestoreError::List {
                path: self.root_path.clone(),
                source,
            })?;
        self.note_skipped(&dir);
        // The lister announces what the directories below will need.
        announce(self.repo, &dir.entries);
        let root = self.root()?;
        self.run(&dir.entries, |this, crew| {
            this.restore_children(crew, root.as_fd(), &dir.entries)
        })?;
        if self.no_clobber && !self.target_is_new {
            return Ok(());
        }
        if let Some(meta) = &dir.meta {
            // The target itself is reached by the path the user gave.
            let path = self.root_path.clone();
            self.apply_meta(&path, &path, meta);
        }
        Ok(())
    }

    /// Runs `walk` through `tops` with its helpers: the lister of the
    /// directories below them, and the file workers (if more than one
    /// thread is asked for); waits for them, then applies the metadata
    /// that waited.
    fn run(
        &mut self,
        tops: &[Node],
        walk: impl FnOnce(&mut Self, &mut Crew<'_>) -> Result<(), RestoreError>,
    ) -> Result<(), RestoreError> {
        let (repo, threads, apply_options) = (self.repo, self.threads, self.apply_options);
        let unsaved = self.unsaved;
        let result = std::thread::scope(|scope| {
            let mut crew = Crew {
                pool: (threads > 1).then(|| Pool::start(scope, repo, threads, apply_options)),
                listings: Listings::start(scope, repo, tops, unsaved),
            };
            let mut result = walk(self, &mut crew);
            let Crew { pool, listings } = crew;
            if !listings.finish() {
                result = result.and(Err(RestoreError::ListingLost));
            }
            if let Some(pool) = pool {
                let (bytes, warnings, worked) = pool.finish();
                self.bytes += bytes;
                self.warnings.extend(warnings);
                result = result.and(worked);
            }
            result
        });
        // Every file is written now. After an error, like the directories
        // the walk had not finished, the waiting ones keep their
        // restore-time metadata.
        let deferred = std::mem::take(&mut self.deferred);
        if result.is_ok() {
            for d in deferred {
                self.apply_meta_open(d.dir.as_fd(), &d.shown, &d.meta);
            }
        }
        result
    }

    /// Applies the metadata of directories whose files are all written.
    fn apply_ready(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let (ready, waiting) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.outstanding.load(Ordering::Acquire) == 0);
        self.deferred = waiting;
        for d in ready {
            self.apply_meta_open(d.dir.as_fd(), &d.shown, &d.meta);
        }
    }

    fn restore_children(
        &mut self,
        crew: &mut Crew<'_>,
        dir: BorrowedFd<'_>,
        entries: &[Node],
    ) -> Result<(), RestoreError> {
        for child in entries {
            self.restore_entry(crew, dir, child)?;
        }
        Ok(())
    }

    fn restore_entry(
        &mut self,
        crew: &mut Crew<'_>,
        dir: BorrowedFd<'_>,
        node: &Node,
    ) -> Result<(), RestoreError> {
        let shown = self.shown(&node.name);
        // The view serves no such name; checked again because this is
        // where a bad one would do harm.
        tree::check_name(&node.name).map_err(|reason| RestoreError::UnsafeName {
            path: shown.clone(),
            reason,
        })?;
        let write_err = |source| RestoreError::Write {
            path: shown.clone(),
            source,
        };
        let name = at::cname(&node.name).map_err(write_err)?;
        if node.node_type == NodeType::Directory {
            return self.restore_dir(crew, dir, &name, &shown, node);
        }
        if !self.in_created_dir() && at::stat_at(dir, &name).map_err(write_err)?.is_some() {
            if self.no_clobber {
                self.keep_existing(&shown);
                return Ok(());
            }
            at::remove_at(dir, &name).map_err(write_err)?;
        }
        self.files += 1;
        match node.node_type {
            NodeType::Regular => {
                if self.link_to_group(dir, &name, &shown, node) {
                    // The group's first member carries the metadata.
                    return Ok(());
                }
                let file = at::create_file_at(dir, &name, 0o600).map_err(write_err)?;
                if let Some(pool) = &crew.pool {
                    // Content and metadata on a worker.
                    let outstanding = self
                        .levels
                        .last()
                        .map_or(&self.top_outstanding, |l| &l.outstanding)
                        .clone();
                    return pool.submit(FileJob {
                        shown,
                        file,
                        node: node.clone(),
                        outstanding,
                    });
                }
                let reader = ContentReader::of_node(self.repo.objects(), node);
                self.bytes += sparse::write_sparse(&file, reader, &shown)?;
                if let Some(meta) = &node.meta {
                    self.apply_meta_open(file.as_fd(), &shown, meta);
                }
                return Ok(());
            }
            NodeType::Symlink => {
                let mut target = Vec::new();
                io::copy(
                    &mut ContentReader::new(self.repo.objects(), node.content()),
                    &mut target,
                )
                .map_err(|source| RestoreError::Read {
                    path: shown.clone(),
                    source,
                })?;
                // No symlink can hold a NUL: the stored target is damaged.
                // One bad link should not cost the rest of the restore.
                let Ok(target) = CString::new(target) else {
                    self.files -= 1;
                    self.warn(format!(
                        "{}: not restored: its saved symlink target contains a NUL byte (damaged repository)",
                        shown.display()
                    ));
                    return Ok(());
                };
                at::symlink_at(&target, dir, &name).map_err(write_err)?;
            }
            NodeType::Special => {
                // The view only calls a node special when .bupm says so.
                // Created with no permissions; the saved mode is applied
                // with the rest of the metadata.
                let (mode, rdev) = node
                    .meta
                    .as_ref()
                    .map_or((libc::S_IFIFO, 0), |m| (m.mode, m.rdev));
                at::mknod_at(dir, &name, mode & libc::S_IFMT, rdev as libc::dev_t)
                    .map_err(write_err)?;
            }
            NodeType::Directory => {}
        }
        self.finish(dir, &name, &shown, node.meta.as_ref());
        Ok(())
    }

    fn in_created_dir(&self) -> bool {
        self.levels.last().is_some_and(|l| l.created)
    }

    fn restore_dir(
        &mut self,
        crew: &mut Crew<'_>,
        parent: BorrowedFd<'_>,
        name: &CStr,
        shown: &Path,
        node: &Node,
    ) -> Result<(), RestoreError> {
        let write_err = |source| RestoreError::Write {
            path: shown.to_path_buf(),
            source,
        };
        let found = if self.in_created_dir() {
            None
        } else {
            at::stat_at(parent, name).map_err(write_err)?
        };
        let existed = match found {
            Some(st) if at::is_dir(&st) => true,
            Some(_) if self.no_clobber => {
                self.keep_existing(shown);
                crew.listings.skip();
                return Ok(());
            }
            other => {
                if other.is_some() {
                    at::remove_at(parent, name).map_err(write_err)?;
                }
                // Writable by us while children are created; the saved mode
                // comes last.
                at::mkdir_at(parent, name, 0o777).map_err(write_err)?;
                false
            }
        };
        // O_NOFOLLOW: if the name was swapped for a symlink since, this
        // fails instead of entering it.
        let dir = at::open_dir_at(parent, name).map_err(write_err)?;
        let listing = crew
            .listings
            .take(node)
            .ok_or(RestoreError::ListingLost)?
            .map_err(|source| RestoreError::List {
                path: shown.to_path_buf(),
                source,
            })?;
        self.note_skipped(&listing);
        self.levels.push(Level {
            name: name.to_bytes().to_vec(),
            created: !existed,
            outstanding: Outstanding::default(),
        });
        let result = self.restore_children(crew, dir.as_fd(), &listing.entries);
        let outstanding = self.levels.pop().map(|l| l.outstanding).unwrap_or_default();
        result?;
        // An existing directory is not clobbered either: its metadata stays.
        let meta = if existed && self.no_clobber {
            None
        } else {
            listing.meta.as_ref().or(node.meta.as_ref())
        };
        match meta {
            Some(meta) if outstanding.load(Ordering::Acquire) > 0 => {
                // Its files are still being written: the metadata waits,
                // with the directory held open.
                self.deferred.push(Deferred {
                    dir,
                    shown: shown.to_path_buf(),
                    meta: meta.clone(),
                    outstanding,
                });
            }
            Some(meta) => self.apply_meta_open(dir.as_fd(), shown, meta),
            None => {}
        }
        self.apply_ready();
        Ok(())
    }

    /// `--no-clobber` met something in the way at `shown`: it stays, and
    /// the exit status says the restore is partial.
    fn keep_existing(&mut self, shown: &Path) {
        self.skipped += 1;
        self.warn(format!(
            "{}: exists, not replaced (--no-clobber)",
            shown.display()
        ));
    }

    /// Links `name` to the first restored member of the node's hardlink
    /// group, if there is one. False when the node is the group's first
    /// member (remembered here) or when linking fails (warned); the caller
    /// then restores a copy.
    fn link_to_group(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        shown: &Path,
        node: &Node,
    ) -> bool {
        let Some(group) = node.meta.as_ref().and_then(|m| m.hardlink_target.as_ref()) else {
            return false;
        };
        let Some(first) = self.links.get(group).cloned() else {
            let mut path: Vec<Vec<u8>> = self.levels.iter().map(|l| l.name.clone()).collect();
            path.push(name.to_bytes().to_vec());
            self.links.insert(group.clone(), path);
            return false;
        };
        match self.link_at_path(&first, dir, name) {
            Ok(()) => true,
            Err(e) => {
                let mut first_shown = self.root_path.clone();
                first_shown.extend(first.iter().map(|c| OsStr::from_bytes(c)));
                self.warn(format!(
                    "{}: cannot hardlink to {}: {e}; restoring a copy",
                    shown.display(),
                    first_shown.display()
                ));
                false
            }
        }
    }

    /// Hard-links the entry at `first` (names from the target down) as
    /// `name` in `dir`, walking down from the target without following a
    /// symlink.
    fn link_at_path(&self, first: &[Vec<u8>], dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        let Some((last, parents)) = first.split_last() else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        let mut cur = self.root.try_clone()?;
        for component in parents {
            cur = at::open_dir_at(cur.as_fd(), &at::cname(component)?)?;
        }
        at::link_at(cur.as_fd(), &at::cname(last)?, dir, name)
    }

    /// Applies the saved metadata to `name` in `dir`.
    fn finish(&mut self, dir: BorrowedFd<'_>, name: &CStr, shown: &Path, meta: Option<&Metadata>) {
        if let Some(meta) = meta {
            let path = meta_path(self.via_proc, &dir, name, shown);
            self.apply_meta(&path, shown, meta);
        }
    }

    fn apply_meta(&mut self, path: &Path, shown: &Path, meta: &Metadata) {
        let problems = workers::warnings(self.applier.apply(path, meta), shown);
        self.warnings.extend(problems);
    }

    fn apply_meta_open(&mut self, fd: BorrowedFd<'_>, shown: &Path, meta: &Metadata) {
        let problems = workers::apply_meta_open(&mut self.applier, fd, shown, meta);
        self.warnings.extend(problems);
    }
}

/// The path metadata is applied through (to symlinks and specials, which
/// restore does not hold open): `/proc/self/fd/<dir>/<name>` when that
/// reaches the directory held open (no directory resolved by name), else
/// the path shown.
fn meta_path(via_proc: bool, dir: &impl AsRawFd, name: &CStr, shown: &Path) -> PathBuf {
    if via_proc {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        p.push(OsStr::from_bytes(name.to_bytes()));
        p
    } else {
        // Every directory on this path was created or opened by us
        // without following a symlink, so only a concurrent swap inside
        // the target could redirect these calls.
        shown.to_path_buf()
    }
}

/// A directory the walk is in.
struct Level {
    name: Vec<u8>,
    /// Whether this restore created it. In a directory it created nothing
    /// else has a name (a racing process that adds one makes the create
    /// fail: O_EXCL, mkdirat, symlinkat), so its entries are created
    /// without first looking for one there (a lookup that misses is a
    /// directory search on disk, 7% of a restore's CPU).
    created: bool,
    /// Its files still with the workers.
    outstanding: Outstanding,
}

/// The threads helping one restore call's walk.
struct Crew<'scope> {
    /// Write files' content; none when one thread is asked for.
    pool: Option<Pool<'scope>>,
    /// Lists directories ahead of the walk.
    listings: Listings<'scope>,
}

/// A directory's metadata waiting for its files (see [`workers`]).
struct Deferred {
    dir: OwnedFd,
    shown: PathBuf,
    meta: Metadata,
    outstanding: Outstanding,
}

/// True when `/proc/self/fd/<fd>` leads to the directory `fd` holds (procfs
/// is mounted and is what it should be).
fn proc_reaches(fd: &OwnedFd) -> bool {
    let via_proc = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let direct = fd
        .try_clone()
        .and_then(|dup| std::fs::File::from(dup).metadata());
    match (via_proc, direct) {
        (Ok(p), Ok(d)) => p.dev() == d.dev() && p.ino() == d.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectId;
    use crate::repo::Repository;
    use std::fs;

    #[test]
    fn restorer_refuses_names_that_leave_the_target_even_if_served() {
        // The view never serves these; the restorer must not rely on that.
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(&tmp.path().join("repo")).expect("init");
        let area = tmp.path().join("area");
        let out = area.join("out");
        fs::create_dir_all(&out).expect("mkdir");
        fs::write(area.join("x"), b"sentinel").expect("write");
        let mut restorer = Restorer::new(&repo, &RestoreOptions::default(), &out).expect("open");
        let abs = area.join("x");
        for name in [&b".."[..], b".", b"", b"../x", abs.as_os_str().as_bytes()] {
            for node_type in [NodeType::Regular, NodeType::Directory, NodeType::Symlink] {
                let node = Node {
                    name: name.to_vec(),
                    node_type,
                    id: ObjectId::EMPTY_BLOB,
                    chunked: false,
                    git_mode: crate::object::tree::Mode::Blob,
                    meta: None,
                };
                let result = restorer.restore(&node, 0);
                assert!(
                    matches!(result, Err(RestoreError::UnsafeName { .. })),
                    "{} {node_type:?}: {result:?}",
                    name.escape_ascii()
                );
            }
        }
        assert_eq!(fs::read(area.join("x")).expect("sentinel"), b"sentinel");
        assert_eq!(fs::read_dir(&out).expect("read").count(), 0);
        assert_eq!(fs::read_dir(&area).expect("read").count(), 2);
    }
}
