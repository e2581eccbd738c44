//! `rewind gc`: reclaims the space of objects no ref reaches any more and
//! consolidates small packs, without ever deleting what a snapshot needs.
//!
//! Order, each step safe to be killed at:
//! 1. take the writers' lock exclusive (`repo::gc_lock`): no save is
//!    between "this object is stored, reuse it" and moving its ref;
//! 2. list the packs (a damaged one stops gc) and read the refs;
//! 3. mark ([`mark`]) every object the refs reach, exactly; a missing
//!    one stops gc;
//! 4. plan ([`sweep::plan`]): per pack, live and dead bytes, and whether it
//!    is kept, rewritten or deleted;
//! 5. drop reflog entries that name dead objects;
//! 6. copy the live entries of the packs to rewrite into new packs, which
//!    are published (fsynced, renamed, indexed);
//! 7. only then delete the old packs, index first.
//!
//! A kill before 7 leaves extra packs (copies); during 7, a pack without
//! its index, or none: every state is a valid repository, and the next gc
//! finishes the work. Caches stay right by their own rules: rewind's object
//! table (`repo::known`) is keyed by the set of packs it covers and is
//! rebuilt when one is gone, so a save after gc writes again what gc
//! deleted; the commit cache (`view::snapshots`) holds facts keyed by
//! commit id, which cannot go stale; readers (the mount) rescan the pack
//! directory when it changes and keep reading a deleted pack they had open.

pub mod mark;
pub mod sweep;

use crate::object::ObjectId;
use crate::repo::{Error, Repo};
use sweep::Action;

/// Small packs merged once there are this many.
pub const DEFAULT_PACK_LIMIT: usize = 50;

#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Unused bytes left in packs, at most, as a share of the live ones
    /// (0.10: 10%); packs with the largest unused share are rewritten
    /// first until that holds.
    pub threshold: f64,
    /// Packs smaller than this are consolidated into larger ones...
    pub small_pack_bytes: u64,
    /// ...once there are at least this many of them (git's
    /// `gc.autoPackLimit` is 50 too): merging copies every live byte of
    /// them, worth it for a year of daily packs, not for each day's.
    pub pack_limit: usize,
    /// Size at which a new pack is closed and the next begun.
    pub pack_size_bytes: u64,
    /// Plan only: nothing is written or deleted, no lock is taken.
    pub dry_run: bool,
    /// Wait for running saves instead of giving up.
    pub wait: bool,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            // restic's default (--max-unused 5%). At 10% a month of daily
            // saves pruned to bup's 8 snapshots left 502 MB against bup's
            // 477 MB; at 5%, 458 MB, for about 0.8 s more gc.
            threshold: 0.05,
            small_pack_bytes: 128 << 20,
            pack_limit: DEFAULT_PACK_LIMIT,
            pack_size_bytes: crate::pack::writer::DEFAULT_SIZE_LIMIT,
            dry_run: false,
            wait: true,
        }
    }
}

/// What gc did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcOutcome {
    pub packs_before: usize,
    pub packs_after: usize,
    pub packs_rewritten: usize,
    pub packs_deleted: usize,
    pub packs_written: usize,
    /// Objects marked live (packed and loose).
    pub objects_kept: u64,
    /// Pack entries not marked in the packs rewritten or deleted.
    pub objects_removed: u64,
    pub bytes_before: u64,
    /// In a dry run, an estimate (the live entries of rewritten packs).
    pub bytes_after: u64,
}

impl GcOutcome {
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// Progress of a gc, for a terminal; every method may be ignored.
pub trait GcProgress {
    /// Waiting for saves that hold the writers' lock.
    fn waiting(&self) {}
    fn marked(&self, _objects: u64) {}
    fn copied(&self, _bytes: u64, _total: u64) {}
    fn deleting(&self) {}
}

/// A progress that shows nothing.
pub struct Quiet;
impl GcProgress for Quiet {}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("gc runs where the repository is: {location} is reached over SSH; run `rewind -d PATH gc` on the server")]
    NotHere { location: String },
    #[error("a save is writing to {location}; gc did not start (run it again later, or without --no-wait to wait)")]
    Busy { location: String },
    #[error("{what} {id}, reached from {reached_from}, is missing: gc stopped before deleting anything (run `rewind fsck`)")]
    Missing {
        id: ObjectId,
        what: &'static str,
        reached_from: String,
    },
    #[error("{kind} {id}, reached from {reached_from}, cannot be read ({detail}): gc stopped before deleting anything (run `rewind fsck`)")]
    Malformed {
        id: ObjectId,
        kind: &'static str,
        reached_from: String,
        detail: String,
    },
    #[error("{0}")]
    Repo(#[from] Error),
}

/// Runs a gc of `repo` (see the module documentation for the order).
pub fn gc(
    repo: &dyn Repo,
    opts: &GcOptions,
    progress: &dyn GcProgress,
) -> Result<GcOutcome, GcError> {
    let storage = repo.pack_storage().ok_or_else(|| GcError::NotHere {
        location: repo.location(),
    })?;
    let _lock = if opts.dry_run {
        None
    } else {
        match storage.lock_out_writers(opts.wait, &|| progress.waiting())? {
            Some(lock) => Some(lock),
            None => {
                return Err(GcError::Busy {
                    location: repo.location(),
                })
            }
        }
    };
    let started = std::time::Instant::now();
    let packs = storage.list_packs()?;
    tracing::debug!(
        "gc: {} packs listed at {:?}",
        packs.len(),
        started.elapsed()
    );
    let mut roots = repo.list_refs("refs/")?;
    if let Some(head) = repo.read_ref("HEAD")? {
        roots.push(("HEAD".into(), head));
    }
    let marks = mark::mark(repo.objects(), packs, &roots, progress)?;
    tracing::debug!(
        "gc: {} objects marked at {:?}",
        marks.objects,
        started.elapsed()
    );
    let plans = sweep::plan(&marks, opts);

    let mut outcome = GcOutcome {
        packs_before: marks.packs.len(),
        objects_kept: marks.objects,
        bytes_before: marks.packs.iter().map(|p| p.size).sum(),
        ..GcOutcome::default()
    };
    for p in &plans {
        match p.action {
            Action::Keep => {}
            Action::Rewrite => outcome.packs_rewritten += 1,
            Action::Delete => outcome.packs_deleted += 1,
        }
        if p.action != Action::Keep {
            outcome.objects_removed += p.dead_objects;
        }
    }
    if opts.dry_run {
        let kept: u64 = plans
            .iter()
            .map(|p| match p.action {
                Action::Keep => marks.packs[p.pack].size,
                Action::Rewrite => p.live_bytes,
                Action::Delete => 0,
            })
            .sum();
        outcome.bytes_after = kept;
        outcome.packs_after = plans.iter().filter(|p| p.action == Action::Keep).count()
            + usize::from(outcome.packs_rewritten > 0);
        return Ok(outcome);
    }

    storage.forget_dead_history(&|id| marks.is_live(id))?;
    let published = sweep::copy_live(storage, repo.objects(), &marks, &plans, opts, progress)?;
    outcome.packs_written = published.len();
    tracing::debug!(
        "gc: {} packs published at {:?}",
        published.len(),
        started.elapsed()
    );
    progress.deleting();
    for p in plans.iter().filter(|p| p.action != Action::Keep) {
        let name = &marks.packs[p.pack].name;
        // A pack written again byte for byte has the same name: it is the
        // new pack now.
        if published.contains(name) {
            continue;
        }
        storage.delete_pack(name)?;
    }
    tracing::debug!("gc: old packs deleted at {:?}", started.elapsed());
    storage.settle()?;
    let after = storage.list_packs()?;
    tracing::debug!("gc: settled at {:?}", started.elapsed());
    outcome.packs_after = after.len();
    outcome.bytes_after = after.iter().map(|p| p.size).sum();
    Ok(outcome)
}
