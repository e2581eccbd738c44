//! Link counts of hardlink groups.
//!
//! A `.bupm` record says only which group a file belongs to (its
//! `hardlink_target`), not how many members the group has; that needs a walk
//! of the whole snapshot's trees and `.bupm` files. The walk runs on one
//! background thread, the first time a hardlinked file of a snapshot is
//! looked at, and its result (group key -> members) is kept per snapshot in
//! an LRU bounded in bytes. A request waits for it only briefly; until it is
//! known, members report 2 links (enough for `cp -a` and `rsync -H` to track
//! them) with a short attribute lifetime, so the kernel soon asks again and
//! gets the exact count.

use super::inodes::SnapshotRef;
use crate::cache::ByteLru;
use crate::locks::lock;
use crate::object::ObjectId;
use crate::repo::Repository;
use crate::view::{self, NodeType, ViewError};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a request waits for a scan before answering provisionally.
const SYNC_WAIT: Duration = Duration::from_millis(300);

/// Link count reported while the group size is unknown.
pub const PROVISIONAL: u32 = 2;

/// What is known of one snapshot's groups.
enum State {
    Scanning,
    Done(HashMap<Vec<u8>, u32>),
    /// Damaged, or more groups than the budget holds: counts stay
    /// provisional (but final, so the kernel stops asking).
    GaveUp,
}

struct Scan {
    state: Mutex<State>,
    done: Condvar,
}

struct Job {
    repo: Arc<Repository>,
    snapshot: u64,
    tree: ObjectId,
    scan: Arc<Scan>,
}

/// One for the whole mount: snapshot ids are hashes of their root's path
/// in the mount, distinct across repositories, and each job carries the
/// repository to scan.
pub struct LinkCounts {
    scans: Arc<Mutex<ByteLru<u64, Arc<Scan>>>>,
    budget: usize,
    /// Started on first use: after the daemon forked, never before.
    worker: OnceLock<Mutex<Sender<Job>>>,
}

/// Bytes a finished map is charged: keys plus hash-table overhead.
fn map_bytes(map: &HashMap<Vec<u8>, u32>) -> usize {
    128 + map.keys().map(|k| k.len() + 48).sum::<usize>()
}

impl LinkCounts {
    pub fn new(budget: usize) -> LinkCounts {
        LinkCounts {
            scans: Arc::new(Mutex::new(ByteLru::new(budget))),
            budget,
            worker: OnceLock::new(),
        }
    }

    /// Members of group `target` in `snapshot`, and whether that is final.
    pub fn nlink(
        &self,
        repo: &Arc<Repository>,
        snapshot: &SnapshotRef,
        target: &[u8],
    ) -> (u32, bool) {
        let scan = self.scan_of(repo, snapshot);
        let deadline = Instant::now() + SYNC_WAIT;
        let mut state = lock(&scan.state);
        loop {
            match &*state {
                State::Done(map) => return (map.get(target).copied().unwrap_or(1).max(1), true),
                State::GaveUp => return (PROVISIONAL, true),
                State::Scanning => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (PROVISIONAL, false);
            }
            state = scan
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The scan of `snapshot`, queueing one if none is cached.
    fn scan_of(&self, repo: &Arc<Repository>, snapshot: &SnapshotRef) -> Arc<Scan> {
        let mut scans = lock(&self.scans);
        if let Some(scan) = scans.get(&snapshot.id) {
            return scan;
        }
        let scan = Arc::new(Scan {
            state: Mutex::new(State::Scanning),
            done: Condvar::new(),
        });
        scans.put(snapshot.id, scan.clone(), 256);
        drop(scans);
        let job = Job {
            repo: repo.clone(),
            snapshot: snapshot.id,
            tree: snapshot.tree,
            scan: scan.clone(),
        };
        if let Err(e) = lock(self.worker()).send(job) {
            // No worker: nothing will ever finish this scan.
            tracing::warn!("hardlink counts: no worker thread: {e}");
            *lock(&scan.state) = State::GaveUp;
        }
        scan
    }

    fn worker(&self) -> &Mutex<Sender<Job>> {
        self.worker.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let scans = self.scans.clone();
            let budget = self.budget;
            let spawned = std::thread::Builder::new()
                .name("rewind-links".into())
                .spawn(move || {
                    for job in rx {
                        let state = match count_groups(&job.repo, &job.tree, budget) {
                            Ok(Some(map)) => {
                                let bytes = map_bytes(&map);
                                // Re-charged at its real size (it may have
                                // been evicted meanwhile: then it stays out).
                                let mut scans = lock(&scans);
                                if scans.get(&job.snapshot).is_some() {
                                    scans.put(job.snapshot, job.scan.clone(), bytes);
                                }
                                State::Done(map)
                            }
                            Ok(None) => {
                                tracing::warn!(
                                    "snapshot tree {}: too many hardlink groups for the cache; \
                                     link counts stay at {PROVISIONAL}",
                                    job.tree
                                );
                                State::GaveUp
                            }
                            Err(e) => {
                                tracing::error!("counting hardlinks in tree {}: {e}", job.tree);
                                State::GaveUp
                            }
                        };
                        *lock(&job.scan.state) = state;
                        job.scan.done.notify_all();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no hardlink-count thread: {e}");
            }
            Mutex::new(tx)
        })
    }
}

/// Members per group key under `root`, or None when the map would exceed
/// `budget` bytes. Every occurrence counts: a subtree saved twice (same
/// tree id at two paths) holds two sets of paths.
fn count_groups(
    repo: &Repository,
    root: &ObjectId,
    budget: usize,
) -> Result<Option<HashMap<Vec<u8>, u32>>, ViewError> {
    let mut counts: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut bytes = 0usize;
    let mut stack = vec![*root];
    while let Some(tree) = stack.pop() {
        for node in view::list_dir(repo, &tree)?.entries {
            if node.node_type == NodeType::Directory {
                stack.push(node.id);
                continue;
            }
            let Some(target) = node.meta.and_then(|m| m.hardlink_target) else {
                continue;
            };
            match counts.get_mut(&target) {
                Some(n) => *n = n.saturating_add(1),
                None => {
                    bytes += target.len() + 48;
                    if bytes > budget {
                        return Ok(None);
                    }
                    counts.insert(target, 1);
                }
            }
        }
    }
    Ok(Some(counts))
}
