//! The save pipeline: walk the sources, split files into chunks, write
//! objects into a pack, build trees bottom-up (each with its `.bupm`), write
//! the commit, publish the pack, and only then move the branch with a
//! compare-and-swap. A crash at any point leaves the previous snapshot as it
//! was: unpublished packs are temp files, and the ref moves last.

mod commit;
pub mod dump;
pub mod index;
mod readahead;
mod sink;
mod skeleton;
mod sparse;
mod stream;
mod walk;
mod warm;

use crate::object::ObjectId;
use crate::repo::Repo;
use crate::source::filter::Filter;
use crate::source::paths::Rerooting;
use std::path::PathBuf;

pub use commit::Identity;
pub use dump::{DumpError, DumpFailure, DumpReport};
pub(crate) use sink::ObjectSink;

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot save {path}: {source}")]
    Source {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SIGINT or SIGTERM came (see `interrupt`): the save stopped and its
    /// temporary files were removed; the branch was not moved.
    #[error("interrupted by {}: nothing was committed; the snapshots of {name} are as they were", crate::interrupt::signal_name(*signal))]
    Interrupted { signal: i32, name: String },
    /// Every source path is missing: an empty snapshot would hide it.
    #[error("nothing to save: {} {} not exist; check the paths (a missing disk or mount?)", list_paths(paths), if paths.len() == 1 { "does" } else { "do" })]
    NoSource { paths: Vec<PathBuf> },
    #[error("invalid backup name {0:?}: use letters, digits, '.', '_' or '-' (no '/', no leading '.' or '-')")]
    BadName(String),
    #[error("--date {date} is not after the latest snapshot of {name} ({latest}); snapshots of a name must be in time order")]
    DateNotAfterLatest {
        name: String,
        date: i64,
        latest: i64,
    },
    #[error("branch {0} was moved by another save too many times; try again")]
    Contended(String),
    /// A pack the save took for stored (from this machine's cache of a
    /// remote repository's indexes) is gone: [`save`] saves again with
    /// the repository's current list, so this reaches no user.
    #[error("{index} left the repository during the save (a gc?); try again")]
    KnownPackGone { index: String },
    /// A dump source failed or cannot be placed: no snapshot is made.
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
    #[error(transparent)]
    Object(#[from] crate::object::commit::CommitError),
    /// The object writer gave back fewer chunk ids than chunks were put:
    /// a bug, reported instead of aborting (a cron save must end with a
    /// message and an exit status). No snapshot is written.
    #[error("internal error: the object writer lost the ids of {missing} chunks of a file being saved; no snapshot was written (please report this)")]
    LostChunkIds { missing: usize },
}

/// "a, b, c" for an error line.
fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to save and how; built from the command line or a config file.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    pub name: String,
    pub sources: Vec<PathBuf>,
    pub date: Option<i64>,
    pub rerooting: Rerooting,
    pub filter: Filter,
    pub one_file_system: bool,
    /// Commands whose output is saved as files (dump sources).
    pub commands: Vec<crate::source::command::CommandSource>,
    /// Live counters for a progress display; `None` when nobody watches.
    pub progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

#[derive(Clone, Debug, Default)]
pub struct SaveStats {
    /// Everything saved that is not a directory: regular files, symlinks,
    /// devices, FIFOs, sockets.
    pub files: u64,
    /// Of those, symlinks.
    pub symlinks: u64,
    pub directories: u64,
    /// Regular files whose content was read (new or changed), and bytes.
    pub files_read: u64,
    pub bytes_read: u64,
    /// Regular files unchanged since the last save (change index): their
    /// stored content was reused without reading them.
    pub files_reused: u64,
    /// Directories whose whole tree was reused from the last save.
    pub directories_reused: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
}

impl SaveStats {
    /// What is saved that is neither a directory nor a symlink: regular
    /// files, devices, FIFOs, sockets (the summaries' "files").
    pub fn files_but_symlinks(&self) -> u64 {
        self.files - self.symlinks.min(self.files)
    }
}

#[derive(Clone, Debug)]
pub struct SaveOutcome {
    pub commit: ObjectId,
    pub tree: ObjectId,
    pub time: i64,
    /// One line per file or directory that could not be saved.
    pub warnings: Vec<String>,
    pub stats: SaveStats,
    /// The dump sources saved, in the order given.
    pub dumps: Vec<DumpReport>,
}

/// Backup names become `refs/heads/<name>`: flat (bup cannot list names with
/// `/`) and safe for git.
pub fn validate_name(name: &str) -> Result<(), SaveError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && name != "latest"
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SaveError::BadName(name.to_string()))
    }
}

/// Everything a save refuses before it touches the repository or runs a
/// command: the name, the source paths (none existing is an error, some
/// missing are warnings), and where each dump would be stored.
fn prepare(opts: &SaveOptions) -> Result<skeleton::Resolved, SaveError> {
    validate_name(&opts.name)?;
    let resolved = skeleton::resolve_sources(&opts.sources, &opts.rerooting)?;
    // Every dump path is checked before any command runs.
    dump::check(&opts.commands, &resolved.root)?;
    Ok(resolved)
}

/// The checks of [`save`] without the save, for a dry run that must fail
/// where the save would: the warnings the save would start with, or the
/// error it would stop with. Reads the sources' metadata only.
pub fn check(opts: &SaveOptions) -> Result<Vec<String>, SaveError> {
    prepare(opts).map(|r| r.warnings)
}

/// Runs one save and moves `refs/heads/<name>` to the new commit.
pub fn save(
    repo: &dyn Repo,
    opts: &SaveOptions,
    identity: &Identity,
) -> Result<SaveOutcome, SaveError> {
    // A save with dumps never starts before the repository answers: a
    // second attempt would run the commands again.
    let result = match save_inner(repo, opts, identity, opts.commands.is_empty()) {
        Err(SaveError::KnownPackGone { index }) => {
            tracing::info!(
                "{index} of {} is gone since this machine last saw it (a gc?): saving again with its current packs",
                repo.location()
            );
            save_inner(repo, opts, identity, false)
        }
        other => other,
    };
    // The walk and the dumps report an interruption without the name.
    result.map_err(|e| match e {
        SaveError::Interrupted { signal, .. }
        | SaveError::Repo(crate::repo::Error::Interrupted { signal }) => SaveError::Interrupted {
            signal,
            name: opts.name.clone(),
        },
        e => e,
    })
}

/// `Err(Interrupted)` once SIGINT or SIGTERM came (see `interrupt`).
pub(crate) fn stop_if_interrupted() -> Result<(), SaveError> {
    match crate::interrupt::pending() {
        Some(signal) => Err(SaveError::Interrupted {
            signal,
            name: String::new(),
        }),
        None => Ok(()),
    }
}

/// One attempt; with `cached`, the walk may start from what this machine
/// knows of the repository's objects (see [`Repo::known_objects_cached`]).
fn save_inner(
    repo: &dyn Repo,
    opts: &SaveOptions,
    identity: &Identity,
    cached: bool,
) -> Result<SaveOutcome, SaveError> {
    let skeleton::Resolved {
        root: mut sources,
        warnings: source_warnings,
    } = prepare(opts)?;
    let ref_name = format!("refs/heads/{}", opts.name);
    // Held until the ref has moved: a gc must not delete an object this
    // save was told is stored and reuses (see `repo::gc_lock`).
    let _gc_lock = crate::repo::gc_lock::hold_off_gc(repo)?;
    // Taken before the first lstat: the change index does not record
    // paths changed this close to the save (see index::RACY_MARGIN_SECS).
    let started = std::time::SystemTime::now();
    let warmer = skeleton::start_warming(
        &sources,
        &opts.filter,
        opts.one_file_system,
        index::previous_start(&repo.state_dir(), &opts.name),
    );
    // What the repository holds as the save begins: asked by the sink
    // (write or skip?) and by the change index (is a reused object still
    // there?). Over SSH, from this machine's cache when it has one: the
    // walk then goes on while ssh connects (a few hundred milliseconds,
    // most of an unchanged re-save), and what it relied on is checked
    // against the server's list before the commit.
    let cached = cached.then(|| repo.known_objects_cached()).flatten();
    // Otherwise the repository is asked first: one that cannot be reached
    // or refuses is then the error, before anything else is done.
    let parent_read_early = match cached {
        None => Some(read_parent(repo, &ref_name)?),
        Some(_) => None,
    };
    let (known, relied_on) = match cached {
        Some((known, indexes)) => (known, Some(indexes)),
        None => (repo.known_objects(), None),
    };
    let known = std::sync::Arc::new(known);
    let progress = opts.progress.clone().unwrap_or_default();
    let mut sink = ObjectSink::new(repo, known.clone())?.with_progress(progress.clone());
    // Dumps run first: a failed one ends the save before the walk.
    let dumps = dump::run_all(&opts.commands, &mut sources, &mut sink, &progress)?;
    let change_index = index::ChangeIndex::open(repo, known, &opts.name, started);
    let mut walker = walk::Walker::new(&opts.filter, opts.one_file_system, change_index, progress);
    // First in the list: a missing path matters more than an unreadable file.
    for w in source_warnings {
        walker.warn(w);
    }
    let tree = walker.save_root(&sources, &mut sink, warmer)?;
    let walk::Walker {
        index: change_index,
        warnings,
        counts,
        ..
    } = walker;
    // The walk fills the file and directory counts; the object counts come
    // from the sink once it has published.
    let mut stats = counts;

    if let Some(relied_on) = relied_on {
        // From here to the end of the session gc deletes no pack: every
        // "stored" answer of the walk stays true if its pack is listed.
        let now: std::collections::HashSet<String> = repo.current_indexes()?.into_iter().collect();
        if let Some(gone) = relied_on.into_iter().find(|i| !now.contains(i)) {
            return Err(SaveError::KnownPackGone { index: gone });
        }
    }
    let (parent, parent_time) = match parent_read_early {
        Some(read) => read,
        None => read_parent(repo, &ref_name)?,
    };

    // Commits go into the same pack as the trees: nothing is visible before
    // the ref moves, and the ref moves only after the pack is published.
    // The last point to give up: past it the pack is published and the
    // branch moves, so a signal from here on is answered by a snapshot.
    stop_if_interrupted()?;
    let requested = opts.date.unwrap_or_else(now);
    let (commit, time) =
        commit::write_commit(&mut sink, tree, parent, parent_time, requested, identity)?;
    let written = sink.publish()?;
    stats.objects_written = written.objects_written;
    stats.bytes_written = written.bytes_written;

    let (commit, time) =
        commit::move_branch(repo, &ref_name, commit, parent, time, tree, identity)?;
    // Only now is every object the new index names reachable from a ref.
    // A failure here costs the next save time, not this snapshot.
    if let Err(e) = change_index.publish(commit) {
        tracing::warn!("{e}; the next save will read every file again");
    }
    // The snapshot is made and its branch moved: a damaged HEAD (which only
    // tells `git clone` what to check out) must not turn that into an
    // error, whose exit status says that nothing was changed.
    if let Err(e) = repo.set_head_if_dangling(&opts.name) {
        tracing::warn!("saved, but HEAD was left alone: {e}");
    }
    Ok(SaveOutcome {
        commit,
        tree,
        time,
        warnings,
        stats,
        dumps,
    })
}

/// The branch's tip, if any, and its author time.
fn read_parent(
    repo: &dyn Repo,
    ref_name: &str,
) -> Result<(Option<ObjectId>, Option<i64>), SaveError> {
    let parent = repo.read_ref(ref_name)?;
    let time = match parent {
        Some(id) => Some(commit::author_time(repo, &id)?),
        None => None,
    };
    Ok((parent, time))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_flat_and_git_safe() {
        for good in ["etc", "web-01", "db_main", "a.b", "mysql@host"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a/b", ".hidden", "-x", "a..b", "x.lock", "latest", "a b", "a~1", "a:b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
