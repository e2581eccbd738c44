//! Directories listed for the restore's walk ahead of it, on a thread of
//! their own.
//!
//! Before the walk can create a directory's entries it needs the
//! directory's listing: its tree and `.bupm` read, inflated, hashed and
//! parsed. On the walk's own thread that was a quarter of its CPU time in
//! a local restore, plus the cold reads of the packs it waited for, and
//! over SSH a wait for the server at each level; and the walk, creating
//! every entry, is a restore's longest thread. So the lister walks the
//! same tree in the same order (depth first, entries in listing order)
//! and queues each listing with its depth; the walk takes them in turn
//! ([`Listings::take`]) and drops those of a directory it does not enter
//! ([`Listings::skip`]). Each listing's entries are announced to the
//! object store as it is listed, so that a server streams what the walk
//! and the workers will read, in about that order.
//!
//! Memory stays bounded: at most [`MAX_AHEAD`] entries wait in the queue
//! (a single listing however large).

use crate::locks::{lock, wait};
use crate::meta::Metadata;
use crate::object::ObjectId;
use crate::repo::Repo;
use crate::view::{self, Directory, Node, NodeType, ViewError};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};

/// Entries listed and not taken by the walk yet, at most (each listing
/// counts one more, so that empty directories are bounded too).
const MAX_AHEAD: usize = 16 << 10;

/// What entries with no saved metadata get (see [`Node::unsaved_meta`]):
/// their snapshot's time, and the owner restoring them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Unsaved {
    pub time: i64,
    pub uid: u32,
    pub gid: u32,
}

impl Unsaved {
    fn meta(&self, node: &Node) -> Metadata {
        node.unsaved_meta(self.time, self.uid, self.gid)
    }

    /// Gives files, symlinks and specials with no saved metadata what
    /// stands for it. Directories get theirs when they are listed.
    pub fn fill(&self, entries: &mut [Node]) {
        for node in entries {
            if node.meta.is_none() && node.node_type != NodeType::Directory {
                node.meta = Some(self.meta(node));
            }
        }
    }

    /// Lists the directory `node`, its entries with no saved metadata
    /// (and the directory itself) given what stands for it.
    pub fn list(&self, repo: &dyn Repo, node: &Node) -> Result<Directory, ViewError> {
        let mut dir = view::list_dir(repo, &node.id)?;
        if dir.meta.is_none() && node.meta.is_none() {
            dir.meta = Some(self.meta(node));
        }
        self.fill(&mut dir.entries);
        Ok(dir)
    }
}

/// One directory's listing, in the walk's order.
struct Listed {
    id: ObjectId,
    /// Levels below the restore's top entries.
    depth: usize,
    listing: Result<Directory, ViewError>,
}

impl Listed {
    fn weight(&self) -> usize {
        1 + self.listing.as_ref().map_or(0, |d| d.entries.len())
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Listed>,
    /// The items' weight (see [`Listed::weight`]).
    weight: usize,
    /// The walk is over: the lister stops.
    closed: bool,
    /// The lister is over (done, stopped or panicked): nothing more comes.
    done: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a listing is queued or the lister is over.
    ready: Condvar,
    /// Signalled when a listing is taken or the walk is over.
    room: Condvar,
}

/// The listings of the directories below some top entries, ahead of the
/// walk that restores them.
pub(super) struct Listings<'scope> {
    shared: Arc<Shared>,
    thread: Option<ScopedJoinHandle<'scope, ()>>,
    /// Directories the walk will not enter, whose listings (and their
    /// subdirectories') are dropped before the next take.
    skips: usize,
}

impl<'scope> Listings<'scope> {
    /// Starts listing the directories among `tops` and below them.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'env dyn Repo,
        tops: &'env [Node],
        unsaved: Unsaved,
    ) -> Listings<'scope> {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            scope.spawn(move || list_all(repo, &shared, tops, unsaved))
        };
        Listings {
            shared,
            thread: Some(thread),
            skips: 0,
        }
    }

    /// The listing of `node`, the next directory the walk enters; `None`
    /// if the lister is gone or out of step with the walk (a bug).
    pub fn take(&mut self, node: &Node) -> Option<Result<Directory, ViewError>> {
        let mut queue = lock(&self.shared.queue);
        while self.skips > 0 {
            let skipped;
            (queue, skipped) = self.next(queue);
            let depth = skipped?.depth;
            loop {
                queue = self.wait_front(queue);
                match queue.items.front() {
                    Some(below) if below.depth > depth => {
                        (queue, _) = self.next(queue);
                    }
                    _ => break,
                }
            }
            self.skips -= 1;
        }
        let (_queue, listed) = self.next(queue);
        let listed = listed?;
        (listed.id == node.id).then_some(listed.listing)
    }

    /// The walk will not enter the next directory: its listing and those
    /// below it are dropped.
    pub fn skip(&mut self) {
        self.skips += 1;
    }

    fn wait_front<'q>(&self, mut queue: MutexGuard<'q, Queue>) -> MutexGuard<'q, Queue> {
        while queue.items.is_empty() && !queue.done {
            queue = wait(&self.shared.ready, queue);
        }
        queue
    }

    /// The next listing, waited for; `None` if the lister is over.
    fn next<'q>(&self, queue: MutexGuard<'q, Queue>) -> (MutexGuard<'q, Queue>, Option<Listed>) {
        let mut queue = self.wait_front(queue);
        let listed = queue.items.pop_front();
        if let Some(listed) = &listed {
            queue.weight -= listed.weight();
            self.shared.room.notify_one();
        }
        (queue, listed)
    }

    /// Stops the lister and waits for it; false if it panicked.
    pub fn finish(mut self) -> bool {
        self.close();
        self.thread.take().is_none_or(|t| t.join().is_ok())
    }

    fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.room.notify_all();
    }
}

impl Drop for Listings<'_> {
    /// A walk that stops early (an error) lets the lister go, which may
    /// be waiting for room; the scope then joins it.
    fn drop(&mut self) {
        self.close();
    }
}

/// Marks the lister over however it ends, a panic included: the walk may
/// be waiting for a listing.
struct Over<'a>(&'a Shared);

impl Drop for Over<'_> {
    fn drop(&mut self) {
        lock(&self.0.queue).done = true;
        self.0.ready.notify_all();
    }
}

/// The lister: depth first through the directories among `tops`, in the
/// order the walk restores them, until done or the walk is over. An error
/// is queued for the walk to report when it reaches that directory, and
/// nothing below it is listed.
fn list_all(repo: &dyn Repo, shared: &Shared, tops: &[Node], unsaved: Unsaved) {
    let _over = Over(shared);
    // Per level: the directories of the one above still to list.
    let mut stack: Vec<std::vec::IntoIter<Node>> = vec![directories(tops).into_iter()];
    while let Some(level) = stack.last_mut() {
        let Some(node) = level.next() else {
            stack.pop();
            continue;
        };
        if lock(&shared.queue).closed {
            return;
        }
        let listing = unsaved.list(repo, &node);
        let below = match &listing {
            Ok(dir) => {
                announce(repo, &dir.entries);
                directories(&dir.entries)
            }
            Err(_) => Vec::new(),
        };
        let listed = Listed {
            id: node.id,
            depth: stack.len() - 1,
            listing,
        };
        if !push(shared, listed) {
            return;
        }
        if !below.is_empty() {
            stack.push(below.into_iter());
        }
    }
}

/// Tells the store what `entries` will need, in the order they are
/// restored (a server streams it; a local store reads ahead).
pub(super) fn announce(repo: &dyn Repo, entries: &[Node]) {
    let ids: Vec<ObjectId> = entries.iter().map(|n| n.id).collect();
    repo.objects().will_need(&ids);
}

fn directories(entries: &[Node]) -> Vec<Node> {
    entries
        .iter()
        .filter(|n| n.node_type == NodeType::Directory)
        .cloned()
        .collect()
}

/// Queues `listed` once there is room; false if the walk is over.
fn push(shared: &Shared, listed: Listed) -> bool {
    let weight = listed.weight();
    let mut queue = lock(&shared.queue);
    while !queue.closed && !queue.items.is_empty() && queue.weight + weight > MAX_AHEAD {
        queue = wait(&shared.room, queue);
    }
    if queue.closed {
        return false;
    }
    queue.weight += weight;
    queue.items.push_back(listed);
    shared.ready.notify_one();
    true
}
