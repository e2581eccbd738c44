//! What `rewind server` checks before it trusts what a client sent: that
//! every object inflates to its size and hashes to its id (before it goes
//! into a pack), and that a ref moves only to a commit whose history and
//! trees are complete in the repository (and, for an append-only key,
//! only forward).

use super::server::Refusal;
use super::wire::ErrorCode;
use crate::object::{commit, object_hasher, tree, Kind, ObjectId};
use crate::pack::inflate::inflate_exact_into;
use crate::repo::Repository;
use sha1::Digest;
use std::collections::{HashMap, HashSet};

/// The largest object either side accepts, inflated.
pub(super) const MAX_OBJECT: u64 = 1 << 32;
/// The most commits one ref update may add (a history rewritten whole).
const MAX_NEW_COMMITS: usize = 1_000_000;

/// Inflates `zdata` and hashes the result as a `kind` object, in pieces:
/// it must be exactly `size` bytes, end exactly where `zdata` ends, and
/// hash to `id`.
pub(super) fn check_compressed(
    id: &ObjectId,
    kind: Kind,
    size: u64,
    zdata: &[u8],
) -> Result<(), String> {
    if size > MAX_OBJECT {
        return Err(format!("object {id} claims {size} bytes"));
    }
    let mut hasher = object_hasher(kind, size);
    inflate_exact_into(zdata, size, &mut |piece| hasher.update(piece))
        .map_err(|why| format!("object {id}: {why}"))?;
    if ObjectId(hasher.finalize().into()) != *id {
        return Err(format!("object {id}: its bytes do not hash to its id"));
    }
    Ok(())
}

/// Whether `name` may move from `old` to `new`: the new commit and every
/// commit, tree and blob it adds to the history exist; in append-only mode
/// `old` must be an ancestor of `new`.
pub(super) fn check_update(
    repo: &Repository,
    new: ObjectId,
    old: Option<ObjectId>,
    append_only: bool,
    name: &str,
) -> Result<(), Refusal> {
    crate::repo::check_ref_name(name)?;
    let store = repo.objects();
    let incomplete =
        |why: String| Refusal(ErrorCode::Failed, format!("refusing to move {name}: {why}"));
    // The commits new brings, newest first, down to old (or a root).
    let mut commits = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![new];
    let mut reaches_old = old.is_none();
    while let Some(id) = todo.pop() {
        if Some(id) == old {
            reaches_old = true;
            continue;
        }
        if !seen.insert(id) {
            continue;
        }
        if seen.len() > MAX_NEW_COMMITS {
            return Err(incomplete("the update adds too many commits".into()));
        }
        let object = store
            .read(&id)
            .map_err(|e| incomplete(format!("commit {id}: {e}")))?;
        if object.kind != Kind::Commit {
            return Err(incomplete(format!(
                "{id} is a {}, not a commit",
                object.kind.name()
            )));
        }
        let c =
            commit::decode(&object.data).map_err(|e| incomplete(format!("commit {id}: {e}")))?;
        todo.extend(c.parents.iter().copied());
        commits.push(c);
    }
    if append_only && !reaches_old {
        return Err(Refusal(
            ErrorCode::AppendOnly,
            format!(
                "this key is append-only: {name} may only move forward, and {new} does not descend from its tip {}",
                old.map(|o| o.to_string()).unwrap_or_default()
            ),
        ));
    }
    // Each new commit's tree is checked against the tree of a commit known
    // complete: the old tip's (the server checked it when it was published).
    let base = match old {
        Some(o) => {
            let object = store.read(&o)?;
            commit::decode(&object.data)
                .map(|c| Some(c.tree))
                .unwrap_or(None)
        }
        None => None,
    };
    let mut complete = HashSet::new();
    for c in &commits {
        check_tree(repo, c.tree, base, &mut complete).map_err(incomplete)?;
    }
    Ok(())
}

/// Checks that tree `root` and everything under it exist, skipping what
/// `base` (a complete tree) shares with it.
fn check_tree(
    repo: &Repository,
    root: ObjectId,
    base: Option<ObjectId>,
    complete: &mut HashSet<ObjectId>,
) -> Result<(), String> {
    let store = repo.objects();
    let entries_of = |id: &ObjectId| -> Result<Vec<tree::Entry>, String> {
        let object = store.read(id).map_err(|e| format!("tree {id}: {e}"))?;
        if object.kind != Kind::Tree {
            return Err(format!("{id} is a {}, not a tree", object.kind.name()));
        }
        tree::decode(&object.data).map_err(|e| format!("tree {id}: {e}"))
    };
    let mut todo = vec![(root, base)];
    while let Some((id, base)) = todo.pop() {
        if Some(id) == base || complete.contains(&id) {
            continue;
        }
        let entries = entries_of(&id)?;
        let base_entries = match base {
            Some(b) => entries_of(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        // By name: a directory of many thousand entries is compared in one
        // pass, not one search per entry.
        let by_name: HashMap<&[u8], &tree::Entry> = base_entries
            .iter()
            .map(|b| (b.name.as_slice(), b))
            .collect();
        for e in entries {
            let in_base = by_name.get(e.name.as_slice()).copied();
            if in_base.is_some_and(|b| b.id == e.id) {
                continue;
            }
            match e.mode {
                tree::Mode::Tree => {
                    let sub_base = in_base.filter(|b| b.mode.is_tree()).map(|b| b.id);
                    todo.push((e.id, sub_base));
                }
                // A submodule's commit lives in another repository.
                tree::Mode::Commit => {}
                _ => {
                    if !store.contains(&e.id) {
                        return Err(format!(
                            "object {} (named {:?} in tree {id}) is missing",
                            e.id,
                            String::from_utf8_lossy(&e.name)
                        ));
                    }
                }
            }
        }
        complete.insert(id);
    }
    Ok(())
}
