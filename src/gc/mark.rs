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

/// Marks everything `roots` (ref name, target) reach.
pub fn mark(
    objects: &dyn Objects,
    packs: Vec<StoredPack>,
    roots: &[(String, ObjectId)],
    progress: &dyn GcProgress,
) -> Result<Marks, GcError> {
    let mut marks = Marks::new(packs)?;
    // Depth first, so the stack holds one path's pending siblings, not a
    // whole level of the repository.
    let mut stack: Vec<(ObjectId, Expect, u32)> = Vec::new();
    for (root, (_, id)) in roots.iter().enumerate() {
        stack.push((*id, Expect::Any, root as u32));
        while let Some((id, expect, root)) = stack.pop() {
            let reached = || roots[root as usize].0.clone();
            match marks.mark(objects, &id)? {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    return Err(GcError::Missing {
                        id,
                        what: expect.name(),
                        reached_from: reached(),
                    })
                }
            }
            if marks.objects.is_multiple_of(4096) {
                progress.marked(marks.objects);
            }
            if expect == Expect::Blob {
                continue;
            }
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
                    for parent in parents {
                        stack.push((parent, Expect::Commit, root));
                    }
                    // Last in, first out: the tree is walked before the
                    // parents, keeping the stack short.
                    stack.push((tree, Expect::Tree, root));
                }
                Kind::Tree => {
                    let entries =
                        tree::decode(&object.data).map_err(|e| malformed(e.to_string()))?;
                    // The subtrees not seen yet are read next: asked for
                    // together, a cold disk serves them in one go instead
                    // of one synchronous read each.
                    let ahead: Vec<ObjectId> = entries
                        .iter()
                        .filter(|e| e.mode == tree::Mode::Tree && !marks.is_live(&e.id))
                        .map(|e| e.id)
                        .collect();
                    if ahead.len() > 1 {
                        objects.will_need(&ahead);
                    }
                    for entry in entries {
                        let expect = match entry.mode {
                            tree::Mode::Tree => Expect::Tree,
                            // A submodule's commit lives in another repository.
                            tree::Mode::Commit => continue,
                            _ => Expect::Blob,
                        };
                        stack.push((entry.id, expect, root));
                    }
                }
                Kind::Tag => {
                    let target = tag_target(&object.data).map_err(malformed)?;
                    stack.push((target, Expect::Any, root));
                }
            }
        }
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
