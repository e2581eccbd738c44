//! Removing snapshots from a backup name: plan with the retention policy
//! ([`crate::retention`]), then rewrite the branch as `bup rm` does and
//! move its ref with compare-and-swap.
//!
//! The rewrite (bup's `rm.py`, `filter_branch`): commits older than the
//! first removed one stay as they are; every kept commit after it is
//! written again with the same tree, author, committer (names, times and
//! offsets) and message, and one parent, the previous kept commit (or none
//! when every older snapshot goes). Headers bup does not write (`encoding`,
//! `gpgsig`) and second parents are dropped, as bup drops them (a history
//! with merges, listed whole, is written again whole, into one line, so
//! that no kept snapshot is left unreachable); trees and
//! file data are not touched, so git and bup 0.33 read the result, and
//! nothing is deleted from packs: space comes back with gc.
//!
//! A save may land while a prune runs. The new commits go into a pack
//! first, then the ref moves from the tip the plan was made on; when the
//! compare-and-swap finds a newer tip whose history reaches the planned
//! one, the saves made meanwhile are written again on top of the
//! rewritten branch (kept, whatever the rules say: the plan did not see
//! them) and the swap is tried again. A tip whose history no longer
//! reaches the planned one was rewritten by someone else: an error, and
//! nothing changes.
//!
//! Tags are never moved; what they point at stays in the repository.

use crate::object::commit::{self, Commit};
use crate::object::{Kind, ObjectId};
use crate::repo::Repo;
use crate::retention::{self, Decision, RetentionError, Rules, SnapshotTime};
use crate::save::{ObjectSink, SaveError};
use crate::view::{snapshots, ViewError};
use std::collections::HashSet;
use std::sync::Arc;

/// Compare-and-swap attempts before giving up on a branch that keeps
/// moving (as many as a save makes).
const ATTEMPTS: usize = 20;
/// Commits a concurrent save may have added before the walk back to the
/// planned tip gives up: saves take seconds, a prune much less.
const MAX_NEW_COMMITS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Rules(#[from] RetentionError),
    #[error("no backup named {0:?} in the repository: see `rewind ls` for the names")]
    NoSuchName(String),
    #[error("{name}: its branch was rewritten or deleted by another process during the prune (its history no longer holds {planned}); nothing was changed: run prune again")]
    Rewritten { name: String, planned: ObjectId },
    #[error("{0}: the branch was moved by saves too many times during the prune; nothing was changed: run prune again")]
    Contended(String),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
}

/// One snapshot in a plan.
#[derive(Clone, Debug)]
pub struct Planned {
    /// As `rewind ls NAME` shows it (the reader's time zone).
    pub name: String,
    pub commit: ObjectId,
    /// Author time and offset, as the policy saw them.
    pub time: SnapshotTime,
    pub decision: Decision,
}

/// What a prune of one backup name will do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub backup: String,
    /// The tip the plan was made on: the ref moves only from here.
    pub tip: ObjectId,
    /// Oldest first.
    pub snapshots: Vec<Planned>,
    /// The commit of each snapshot, for the rewrite.
    commits: Vec<Commit>,
}

impl Plan {
    pub fn removed(&self) -> usize {
        self.snapshots.iter().filter(|s| !s.decision.keep()).count()
    }

    pub fn kept(&self) -> usize {
        self.snapshots.len() - self.removed()
    }
}

/// What a prune did to one name.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The branch tip now (the planned one if nothing was removed).
    pub tip: Option<ObjectId>,
    /// Each kept commit written again: (old id, new id). Saves that landed
    /// during the prune are among them.
    pub rewritten: Vec<(ObjectId, ObjectId)>,
    /// Snapshots saved during the prune and re-parented onto its result.
    pub landed_meanwhile: usize,
}

fn ref_name(backup: &str) -> String {
    format!("refs/heads/{backup}")
}

/// Plans the prune of `backup` under `rules` from its current tip.
pub fn plan(repo: &dyn Repo, backup: &str, rules: &Rules) -> Result<Plan, PruneError> {
    if rules.is_empty() {
        return Err(RetentionError::NoRules.into());
    }
    let tip = repo
        .read_ref(&ref_name(backup))?
        .ok_or_else(|| PruneError::NoSuchName(backup.to_string()))?;
    let listed = snapshots::snapshots(repo, &tip)?;
    let ids: Vec<ObjectId> = listed.iter().map(|s| s.commit).collect();
    repo.objects().will_need(&ids);
    // The offsets are only in the commits (the commit cache keeps times),
    // and the rewrite needs every commit anyway.
    let commits = ids
        .iter()
        .map(|id| snapshots::read_commit(repo, id))
        .collect::<Result<Vec<_>, _>>()?;
    let times: Vec<SnapshotTime> = commits
        .iter()
        .map(|c| SnapshotTime {
            time: c.author.time,
            utc_offset_minutes: c.author.utc_offset_minutes,
        })
        .collect();
    let decisions = retention::plan(&times, rules)?;
    let snapshots = listed
        .into_iter()
        .zip(times)
        .zip(decisions)
        .map(|((s, time), decision)| Planned {
            name: s.name,
            commit: s.commit,
            time,
            decision,
        })
        .collect();
    Ok(Plan {
        backup: backup.to_string(),
        tip,
        snapshots,
        commits,
    })
}

/// Writes `commits` (oldest first) again on top of `parent`, each with
/// the previous one as its only parent; publishes them. Returns the new
/// ids in the same order.
fn rewrite(
    repo: &dyn Repo,
    mut parent: Option<ObjectId>,
    commits: &[&Commit],
) -> Result<Vec<ObjectId>, PruneError> {
    let known = Arc::new(repo.known_objects());
    let mut sink = ObjectSink::new(repo, known)?;
    let mut ids = Vec::with_capacity(commits.len());
    for c in commits {
        let body = commit::encode(&reparented(c, parent));
        let id = sink.put(Kind::Commit, &body)?;
        ids.push(id);
        parent = Some(id);
    }
    sink.publish()?;
    Ok(ids)
}

/// `c` written again with `parent` as its only parent.
fn reparented(c: &Commit, parent: Option<ObjectId>) -> Commit {
    Commit {
        parents: parent.into_iter().collect(),
        ..c.clone()
    }
}

/// The commits from `tip` back to (not including) `stop`, oldest first,
/// following first parents; `None` if `stop` is not in that history.
fn commits_since(
    repo: &dyn Repo,
    tip: ObjectId,
    stop: ObjectId,
) -> Result<Option<Vec<(ObjectId, Commit)>>, PruneError> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(tip);
    while let Some(id) = next {
        if id == stop {
            found.reverse();
            return Ok(Some(found));
        }
        if !seen.insert(id) || found.len() >= MAX_NEW_COMMITS {
            return Ok(None);
        }
        let c = snapshots::read_commit(repo, &id)?;
        next = c.parents.first().copied();
        found.push((id, c));
    }
    Ok(None)
}

/// Carries out `plan`: rewrites the branch without its removed snapshots
/// and moves the ref (compare-and-swap from the planned tip, re-parenting
/// saves that land meanwhile). A plan that removes nothing changes nothing.
pub fn execute(repo: &dyn Repo, plan: &Plan) -> Result<Outcome, PruneError> {
    let Some(first) = plan.snapshots.iter().position(|s| !s.decision.keep()) else {
        return Ok(Outcome {
            tip: Some(plan.tip),
            ..Outcome::default()
        });
    };
    // A history with merges is listed whole (every commit reachable), so
    // the snapshots before the first removed one need not be ancestors of
    // the one just before it: all kept snapshots are written again then,
    // into one line, so that none is left unreachable.
    let linear = plan.commits.iter().all(|c| c.parents.len() <= 1);
    let first = if linear { first } else { 0 };
    let base = first.checked_sub(1).map(|i| plan.snapshots[i].commit);
    let kept: Vec<usize> = (first..plan.snapshots.len())
        .filter(|&i| plan.snapshots[i].decision.keep())
        .collect();
    let old: Vec<&Commit> = kept.iter().map(|&i| &plan.commits[i]).collect();
    // Held while new commits exist that no ref names yet: a gc would
    // delete them (see `repo::gc_lock`).
    let _gc_lock = crate::repo::gc_lock::hold_off_gc(repo)?;
    let new = rewrite(repo, base, &old)?;
    let mut rewritten: Vec<(ObjectId, ObjectId)> = kept
        .iter()
        .map(|&i| plan.snapshots[i].commit)
        .zip(new.iter().copied())
        .collect();
    let mut facts: Vec<(ObjectId, Commit)> = Vec::new();
    let mut parent = base;
    for (c, id) in old.iter().zip(&new) {
        facts.push((*id, reparented(c, parent)));
        parent = Some(*id);
    }
    // The tip is always kept, so the rewrite wrote at least one commit.
    let mut new_tip = new.last().copied().unwrap_or(plan.tip);
    let mut expected = plan.tip;
    let name = ref_name(&plan.backup);
    let mut landed_meanwhile = 0;
    for _ in 0..ATTEMPTS {
        match repo.update_ref(&name, new_tip, Some(expected)) {
            Ok(()) => {
                let mut gone: Vec<ObjectId> = plan
                    .snapshots
                    .iter()
                    .filter(|s| !s.decision.keep())
                    .map(|s| s.commit)
                    .collect();
                gone.extend(rewritten.iter().map(|(old, _)| *old));
                snapshots::note_rewrite(repo, &gone, &facts);
                return Ok(Outcome {
                    tip: Some(new_tip),
                    rewritten,
                    landed_meanwhile,
                });
            }
            Err(crate::repo::Error::RefChanged {
                found: Some(found), ..
            }) => {
                let Some(newer) = commits_since(repo, found, expected)? else {
                    return Err(PruneError::Rewritten {
                        name: plan.backup.clone(),
                        planned: plan.tip,
                    });
                };
                tracing::info!(
                    "{name} moved during the prune ({} new snapshots); re-parenting them onto the pruned branch",
                    newer.len()
                );
                let commits: Vec<&Commit> = newer.iter().map(|(_, c)| c).collect();
                let ids = rewrite(repo, Some(new_tip), &commits)?;
                let mut parent = new_tip;
                for ((old, c), id) in newer.iter().zip(&ids) {
                    rewritten.push((*old, *id));
                    facts.push((*id, reparented(c, Some(parent))));
                    parent = *id;
                }
                landed_meanwhile += newer.len();
                new_tip = parent;
                expected = found;
            }
            Err(crate::repo::Error::RefChanged { found: None, .. }) => {
                return Err(PruneError::Rewritten {
                    name: plan.backup.clone(),
                    planned: plan.tip,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PruneError::Contended(plan.backup.clone()))
}

/// Points the run records of `backup` at the rewritten commits, so that
/// `rewind status` still knows which run made the newest snapshot (and
/// with how many warnings). Returns whether anything changed.
pub fn update_records(
    records: &mut crate::run::record::Records,
    backup: &str,
    rewritten: &[(ObjectId, ObjectId)],
) -> bool {
    let Some(saved) = records
        .backup
        .get_mut(backup)
        .and_then(|r| r.saved.as_mut())
    else {
        return false;
    };
    match rewritten
        .iter()
        .find(|(old, _)| old.to_string() == saved.commit)
    {
        Some((_, new)) => {
            saved.commit = new.to_string();
            true
        }
        None => false,
    }
}
