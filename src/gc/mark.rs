//! The mark: exactly which objects every ref reaches, as one bit per pack
//! entry.
//!
//! Each live object is marked at one place: the first pack (largest
//! first, so that what a gc consolidated stays put) whose index lists it.
//! Its bit is the entry's rank in offset order, found with one search of
//! a [`PackLookup`] over every pack (not one search per pack), so memory
//! is one bit plus the lookup's 8 bytes per stored object (10^7 objects:
//! 1.25 MB + 80 MB) beside what the indexes already take, never a set of
//! ids. Loose objects (git writes them; rewind does not) are few and kept
//! in a set. Commits and trees are read (and hashed) to find what they
//! name; blobs are only looked up, never read. A reachable object that is
//! nowhere is an error naming it and the ref it was reached from: gc stops
//! before anything is deleted.

use super::{GcError, GcProgress};
use crate::object::{tree, Kind, ObjectId};
use crate::pack::PackLookup;
use crate::repo::{Error, Objects, StoredPack};
use std::collections::HashSet;

/// What a tree or commit says the object it names is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Commit,
    Tree,
    Blob,
    /// A ref's or a tag's target: anything.
    Any,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Commit => "commit",
            Expect::Tree => "tree",
            Expect::Blob => "blob",
            Expect::Any => "object",
        }
    }
}

/// The result of a mark: which entries of which packs are live.
pub struct Marks {
    /// In the order they were looked in (largest first).
    pub packs: Vec<StoredPack>,
    bits: Vec<Vec<u64>>,
    /// Every pack's ids in one search. An id several packs hold is
    /// answered, and so marked, in the first of them in `packs`' order:
    /// exactly one copy of each live object is marked (the one in the
    /// largest pack), and the sweep drops the others.
    lookup: PackLookup,
    loose: HashSet<ObjectId>,
    /// Objects marked, packed and loose.
    pub objects: u64,
}

impl Marks {
    pub fn new(mut packs: Vec<StoredPack>) -> Result<Marks, Error> {
        packs.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
        let bits = packs
            .iter()
            .map(|p| vec![0u64; p.index.len().div_ceil(64)])
            .collect();
        let lookup = PackLookup::new(packs.iter().map(|p| Some(p.index.clone())).collect())?;
        Ok(Marks {
            packs,
            bits,
            lookup,
            loose: HashSet::new(),
            objects: 0,
        })
    }

    pub fn is_marked(&self, pack: usize, rank: usize) -> bool {
        self.bits[pack]
            .get(rank / 64)
            .is_some_and(|w| w & (1 << (rank % 64)) != 0)
    }

    /// Whether `id` was marked (packed or loose). Only the copy the
    /// lookup answers is ever marked, so only that one is asked.
    pub fn is_live(&self, id: &ObjectId) -> bool {
        self.loose.contains(id)
            || self
                .lookup
                .find(id)
                .is_some_and(|(p, r)| self.is_marked(p, r))
    }

    /// Marks an object found, and queues it to be read if it was not
    /// marked before and is not a blob (blobs are only looked up). One
    /// that is nowhere is an error naming the root it was reached from.
    fn reach(
        &mut self,
        objects: &dyn Objects,
        found: Pending,
        roots: &[(String, ObjectId)],
        pending: &mut Vec<Pending>,
    ) -> Result<(), GcError> {
        let (id, expect, root) = found;
        match self.mark(objects, &id)? {
            Some(true) => {}
            Some(false) => return Ok(()),
            None => {
                return Err(GcError::Missing {
                    id,
                    what: expect.name(),
                    reached_from: roots[root as usize].0.clone(),
                })
            }
        }
        if expect != Expect::Blob {
            pending.push(found);
        }
        Ok(())
    }

    /// Marks `id`; `Ok(true)` if it was not marked before, an error if it
    /// is nowhere.
    fn mark(&mut self, objects: &dyn Objects, id: &ObjectId) -> Result<Option<bool>, Error> {
        if let Some((p, r)) = self.lookup.find(id) {
            let word = &mut self.bits[p][r / 64];
            let bit = 1u64 << (r % 64);
            let new = *word & bit == 0;
            *word |= bit;
            self.objects += u64::from(new);
            return Ok(Some(new));
        }
        // Not in a listed pack: loose (or in a pack published since the
        // listing by a writer that ignores our lock, which gc leaves alone).
        if objects.contains(id) {
            let new = self.loose.insert(*id);
            self.objects += u64::from(new);
            return Ok(Some(new));
        }
        Ok(None)
    }
}

/// Objects to read (commits, trees, tags) taken from the work list at a
/// time: sorted by where they are stored and asked for together, a cold
/// disk serves them queued and in order instead of one synchronous read
/// each. Taken from the top of the list (the newest found), the walk stays
/// close to depth first, so the list holds a few paths' pending siblings,
/// not a whole level of the repository.
const BATCH: usize = 4096;

/// An object marked and still to be read, with the root it was reached
/// from (for the error that names it).
type Pending = (ObjectId, Expect, u32);

/// Marks everything `roots` (ref name, target) reach.
pub fn mark(
    objects: &dyn Objects,
    packs: Vec<StoredPack>,
    roots: &[(String, ObjectId)],
    progress: &dyn GcProgress,
) -> Result<Marks, GcError> {
    crate::pack::reader::read_sparsely(|| walk(objects, packs, roots, progress))
}

/// [`mark`], with this thread's pack reads sparse.
fn walk(
    objects: &dyn Objects,
    packs: Vec<StoredPack>,
    roots: &[(String, ObjectId)],
    progress: &dyn GcProgress,
) -> Result<Marks, GcError> {
    let mut marks = Marks::new(packs)?;
    let mut pending: Vec<Pending> = Vec::new();
    for (root, (_, id)) in roots.iter().enumerate() {
        marks.reach(
            objects,
            (*id, Expect::Any, root as u32),
            roots,
            &mut pending,
        )?;
    }
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    while !pending.is_empty() {
        batch.extend(pending.drain(pending.len().saturating_sub(BATCH)..));
        // Rank order is offset order within a pack.
        batch.sort_by_cached_key(|p| marks.lookup.find(&p.0).unwrap_or((usize::MAX, 0)));
        if batch.len() > 1 {
            let ids: Vec<ObjectId> = batch.iter().map(|p| p.0).collect();
            objects.will_need(&ids);
        }
        for (id, expect, root) in batch.drain(..) {
            let reached = || roots[root as usize].0.clone();
            let object = objects.read(&id).map_err(|e| match e {
                Error::NotFound(_) => GcError::Missing {
                    id,
                    what: expect.name(),
                    reached_from: reached(),
                },
                other => GcError::Repo(other),
            })?;
            let malformed = |detail: String| GcError::Malformed {
                id,
                kind: object.kind.name(),
                reached_from: reached(),
                detail,
            };
            match object.kind {
                Kind::Blob => {}
                Kind::Commit => {
                    let (tree, parents) = commit_links(&object.data).map_err(malformed)?;
                    marks.reach(objects, (tree, Expect::Tree, root), roots, &mut pending)?;
                    for parent in parents {
                        marks.reach(
                            objects,
                            (parent, Expect::Commit, root),
                            roots,
                            &mut pending,
                        )?;
                    }
                }
                Kind::Tree => {
                    let entries =
                        tree::decode(&object.data).map_err(|e| malformed(e.to_string()))?;
                    for entry in entries {
                        let expect = match entry.mode {
                            tree::Mode::Tree => Expect::Tree,
                            // A submodule's commit lives in another repository.
                            tree::Mode::Commit => continue,
                            _ => Expect::Blob,
                        };
                        marks.reach(objects, (entry.id, expect, root), roots, &mut pending)?;
                    }
                }
                Kind::Tag => {
                    let target = tag_target(&object.data).map_err(malformed)?;
                    marks.reach(objects, (target, Expect::Any, root), roots, &mut pending)?;
                }
            }
        }
        progress.marked(marks.objects);
    }
    progress.marked(marks.objects);
    Ok(marks)
}

/// The tree and parents of a commit: only those headers are read, so a
/// commit bup's strict parser would refuse (extra headers, a signature)
/// is still followed.
fn commit_links(body: &[u8]) -> Result<(ObjectId, Vec<ObjectId>), String> {
    let mut tree = None;
    let mut parents = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if let Some(hex) = line.strip_prefix(b"tree ") {
            tree = Some(ObjectId::from_hex(hex).ok_or("its tree line is not an object id")?);
        } else if let Some(hex) = line.strip_prefix(b"parent ") {
            parents.push(ObjectId::from_hex(hex).ok_or("a parent line is not an object id")?);
        }
    }
    Ok((tree.ok_or("it has no tree line")?, parents))
}

/// What an annotated tag points at.
fn tag_target(body: &[u8]) -> Result<ObjectId, String> {
    body.split(|&b| b == b'\n')
        .next()
        .and_then(|line| line.strip_prefix(b"object "))
        .and_then(ObjectId::from_hex)
        .ok_or_else(|| "it does not start with an object line".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_links_read_tree_and_parents_and_refuse_a_missing_tree() {
        let t = ObjectId([1; 20]);
        let p = ObjectId([2; 20]);
        let body = format!(
            "tree {t}\nparent {p}\nauthor a <b> 1 +0000\ncommitter a <b> 1 +0000\nencoding x\n\ntree {p}\n"
        );
        assert_eq!(commit_links(body.as_bytes()), Ok((t, vec![p])));
        assert!(commit_links(b"author a <b> 1 +0000\n\n").is_err());
        assert!(commit_links(b"tree 12\n\n").is_err());
    }
}
