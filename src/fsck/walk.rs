//! Walking every snapshot of every ref to check that every object it
//! needs exists, and naming the snapshot paths that use a bad object.
//!
//! Memory stays bounded by the packs' object counts, not by a set of ids:
//! each pack gets two bits per idx position, "visited" (a shared subtree is
//! walked once) and "tainted" (the tree holds, somewhere below, a damaged
//! or missing object), and objects are found with one search of a
//! [`PackLookup`] (8 bytes per object) instead of one per pack. Only bad
//! objects, which are few, are kept by id.
//!
//! The first walk marks; if anything is bad, a second walk goes down only
//! tainted trees, in every snapshot, and collects the paths that lead to
//! each bad object: the shared subtrees the first walk skipped are exactly
//! where the second one must look again.

use super::packs::Packs;
use crate::object::tree::{self, demangle, Demangled, Mode};
use crate::object::{commit, Kind, ObjectId};
use crate::pack::PackLookup;
use crate::repo::{Objects, Repo};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Paths kept per bad object (the count goes on).
const MAX_PATHS: usize = 8;

/// What is wrong with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Stored but damaged: its pack, offset and the damage.
    Damaged {
        pack: String,
        offset: Option<u64>,
        detail: String,
    },
    /// Not in any pack, nor loose.
    Missing,
    /// Readable, but not what its place needs (a blob where a tree must be).
    Malformed { detail: String },
}

#[derive(Clone, Debug)]
pub struct BadObject {
    pub kind: Option<Kind>,
    pub bad: Bad,
    /// `name/snapshot/path` of the snapshots that use it (at most MAX_PATHS).
    pub paths: Vec<String>,
    pub more_paths: u64,
}

/// A damaged copy of an object another pack holds intact: the pack needs
/// repair, the snapshots do not (they read the sound copy).
#[derive(Clone, Debug)]
pub struct SparedCopy {
    pub id: ObjectId,
    pub kind: Option<Kind>,
    /// Always [`Bad::Damaged`]: where the damaged copy is, and why.
    pub damage: Bad,
    /// The pack holding the sound copy.
    pub sound_in: String,
}

/// What the walk found.
#[derive(Default)]
pub struct Walked {
    pub refs: u64,
    pub snapshots: u64,
    pub bad: BTreeMap<ObjectId, BadObject>,
    pub spared: Vec<SparedCopy>,
}

struct Bits {
    visited: Vec<Vec<u64>>,
    tainted: Vec<Vec<u64>>,
    /// Objects found loose (outside every pack): few, kept by id.
    loose_visited: HashSet<ObjectId>,
    loose_tainted: HashSet<ObjectId>,
}

fn get(bits: &[u64], k: usize) -> bool {
    bits[k / 64] & (1 << (k % 64)) != 0
}

fn set(bits: &mut [u64], k: usize) {
    bits[k / 64] |= 1 << (k % 64);
}

/// Where an object is, for the walk.
#[derive(Clone, Copy)]
enum At {
    Packed(usize, usize),
    Loose,
    Nowhere,
}

struct Walker<'a> {
    packs: &'a Packs,
    /// Where each id is, over the packs whose data file exists: the
    /// objects of a pack without one are missing, and a copy in another
    /// pack is the one found. Of several readable copies, the one in the
    /// pack listed first (by name) that the pack check did not find
    /// damaged.
    lookup: PackLookup,
    /// (pack, rank) of the copies the pack check found damaged.
    damaged_copies: HashSet<(usize, usize)>,
    objects: &'a dyn Objects,
    bits: Bits,
    bad: BTreeMap<ObjectId, BadObject>,
    snapshots: u64,
}

/// Walks every branch and tag of `repo`. `damaged` are the objects the
/// pack check found damaged (with where and why), `damaged_at` the (pack,
/// offset) of every damaged copy: an object with a sound copy in another
/// pack is read from there and is not bad, only its damaged copy is
/// reported (in [`Walked::spared`]).
pub fn walk(
    repo: &dyn Repo,
    packs: &Packs,
    mut damaged: HashMap<ObjectId, (Option<Kind>, Bad)>,
    damaged_at: &[(usize, u64)],
) -> Result<Walked, crate::repo::Error> {
    let sizes =
        |p: &super::packs::Pack| vec![0u64; p.index.as_ref().map_or(0, |i| i.len().div_ceil(64))];
    let lookup = PackLookup::new(
        packs
            .packs
            .iter()
            .map(|p| p.file.as_ref().and(p.index.clone()))
            .collect(),
    )?;
    let damaged_copies: HashSet<(usize, usize)> = damaged_at
        .iter()
        .filter_map(|&(p, offset)| {
            let rank = packs.packs.get(p)?.index.as_ref()?.offset_rank(offset)?;
            Some((p, rank))
        })
        .collect();
    let mut spared = Vec::new();
    damaged.retain(|id, (kind, bad)| {
        let sound = lookup
            .copies(id)
            .find(|copy| !damaged_copies.contains(copy));
        match sound {
            Some((p, _)) => {
                spared.push(SparedCopy {
                    id: *id,
                    kind: *kind,
                    damage: bad.clone(),
                    sound_in: packs.packs[p].name.clone(),
                });
                false
            }
            None => true,
        }
    });
    spared.sort_by_key(|s| s.id);
    let mut w = Walker {
        packs,
        lookup,
        damaged_copies,
        objects: repo.objects(),
        bits: Bits {
            visited: packs.packs.iter().map(sizes).collect(),
            tainted: packs.packs.iter().map(sizes).collect(),
            loose_visited: HashSet::new(),
            loose_tainted: HashSet::new(),
        },
        bad: damaged
            .into_iter()
            .map(|(id, (kind, bad))| {
                (
                    id,
                    BadObject {
                        kind,
                        bad,
                        paths: Vec::new(),
                        more_paths: 0,
                    },
                )
            })
            .collect(),
        snapshots: 0,
    };
    let refs = roots(repo)?;
    for (_, tip) in &refs {
        w.mark_history(tip);
    }
    if w.bad.values().any(|b| b.paths.is_empty()) {
        for (label, tip) in &refs {
            w.attribute(repo, label, tip);
        }
    }
    Ok(Walked {
        refs: refs.len() as u64,
        snapshots: w.snapshots,
        bad: w.bad,
        spared,
    })
}

/// Branches as `name`, tags as `.tag/name`: the first component of a
/// path in `rewind ls`.
fn roots(repo: &dyn Repo) -> Result<Vec<(String, ObjectId)>, crate::repo::Error> {
    let mut out: Vec<(String, ObjectId)> = repo
        .list_refs("refs/heads/")?
        .into_iter()
        .map(|(n, id)| (n.trim_start_matches("refs/heads/").to_string(), id))
        .collect();
    out.extend(
        repo.list_refs("refs/tags/")?
            .into_iter()
            .map(|(n, id)| (format!(".tag/{}", n.trim_start_matches("refs/tags/")), id)),
    );
    Ok(out)
}

impl Walker<'_> {
    fn locate(&self, id: &ObjectId) -> At {
        let found = if self.damaged_copies.is_empty() {
            self.lookup.find(id)
        } else {
            // A sound copy if there is one; else the damaged one, which
            // the walk reports.
            self.lookup
                .copies(id)
                .find(|copy| !self.damaged_copies.contains(copy))
                .or_else(|| self.lookup.find(id))
        };
        match found {
            Some((p, k)) => At::Packed(p, k),
            None if self.objects.contains(id) => At::Loose,
            None => At::Nowhere,
        }
    }

    fn visited(&self, at: At, id: &ObjectId) -> bool {
        match at {
            At::Packed(p, k) => get(&self.bits.visited[p], k),
            At::Loose => self.bits.loose_visited.contains(id),
            At::Nowhere => false,
        }
    }

    fn set_visited(&mut self, at: At, id: &ObjectId) {
        match at {
            At::Packed(p, k) => set(&mut self.bits.visited[p], k),
            At::Loose => {
                self.bits.loose_visited.insert(*id);
            }
            At::Nowhere => {}
        }
    }

    fn tainted(&self, at: At, id: &ObjectId) -> bool {
        if self.bad.contains_key(id) {
            return true;
        }
        match at {
            At::Packed(p, k) => get(&self.bits.tainted[p], k),
            At::Loose => self.bits.loose_tainted.contains(id),
            At::Nowhere => true,
        }
    }

    fn set_tainted(&mut self, at: At, id: &ObjectId) {
        match at {
            At::Packed(p, k) => set(&mut self.bits.tainted[p], k),
            At::Loose => {
                self.bits.loose_tainted.insert(*id);
            }
            At::Nowhere => {}
        }
    }

    fn mark_bad(&mut self, id: ObjectId, kind: Option<Kind>, bad: Bad) {
        self.bad.entry(id).or_insert(BadObject {
            kind,
            bad,
            paths: Vec::new(),
            more_paths: 0,
        });
    }

    /// Reads `id`, which must be of `kind`; a failure is recorded as bad.
    fn read(&mut self, at: At, id: &ObjectId, kind: Kind) -> Option<Vec<u8>> {
        let (k, data) = self.read_any(at, id)?;
        if k == kind {
            return Some(data);
        }
        let detail = format!("is a {}, its place needs a {}", k.name(), kind.name());
        self.mark_bad(*id, Some(k), Bad::Malformed { detail });
        None
    }

    /// Reads `id` whatever its kind; a failure is recorded as bad.
    fn read_any(&mut self, at: At, id: &ObjectId) -> Option<(Kind, Vec<u8>)> {
        if self.bad.contains_key(id) {
            return None;
        }
        let read = match at {
            At::Packed(p, k) => {
                self.packs
                    .read(p, k, self.objects)
                    .map_err(|detail| Bad::Damaged {
                        pack: self.packs.packs[p].name.clone(),
                        offset: self.packs.packs[p]
                            .index
                            .as_ref()
                            .and_then(|i| i.by_rank(k))
                            .map(|(_, e)| e.offset),
                        detail,
                    })
            }
            At::Loose => self
                .objects
                .read(id)
                .map(|o| (o.kind, o.data))
                .map_err(|e| Bad::Damaged {
                    pack: "loose objects".into(),
                    offset: None,
                    detail: e.to_string(),
                }),
            At::Nowhere => Err(Bad::Missing),
        };
        match read {
            Ok(found) => Some(found),
            Err(bad) => {
                self.mark_bad(*id, None, bad);
                None
            }
        }
    }

    /// Marks the history from `tip`: every parent of every commit; a tag
    /// may name a tree, a blob or an annotated tag too.
    fn mark_history(&mut self, tip: &ObjectId) {
        let mut stack = vec![*tip];
        while let Some(id) = stack.pop() {
            let at = self.locate(&id);
            if self.visited(at, &id) {
                continue;
            }
            let Some((kind, body)) = self.read_any(at, &id) else {
                if let Some(b) = self.bad.get_mut(&id) {
                    // Reached as a parent: a commit.
                    b.kind = b.kind.or((id != *tip).then_some(Kind::Commit));
                }
                continue;
            };
            match kind {
                Kind::Tree => self.mark_tree(id),
                Kind::Blob => self.set_visited(at, &id),
                Kind::Tag => {
                    self.set_visited(at, &id);
                    // "object <hex>" is the first line of a tag.
                    match body
                        .strip_prefix(b"object ")
                        .and_then(|r| ObjectId::from_hex(r.get(..40)?))
                    {
                        Some(target) => stack.push(target),
                        None => self.mark_bad(
                            id,
                            Some(Kind::Tag),
                            Bad::Malformed {
                                detail: "the tag names no object".into(),
                            },
                        ),
                    }
                }
                Kind::Commit => {
                    self.set_visited(at, &id);
                    match commit::decode(&body) {
                        Ok(c) => {
                            self.snapshots += 1;
                            self.mark_tree(c.tree);
                            stack.extend(c.parents.iter().rev());
                        }
                        Err(e) => self.mark_bad(
                            id,
                            Some(Kind::Commit),
                            Bad::Malformed {
                                detail: e.to_string(),
                            },
                        ),
                    }
                }
            }
        }
    }

    /// Marks the tree `root` and everything below it, post-order, setting
    /// "tainted" on every tree above a bad object.
    fn mark_tree(&mut self, root: ObjectId) {
        struct Frame {
            id: ObjectId,
            at: At,
            entries: std::vec::IntoIter<tree::Entry>,
            tainted: bool,
        }
        let at = self.locate(&root);
        if self.visited(at, &root) && !matches!(at, At::Nowhere) {
            return;
        }
        let Some(first) = self.open_tree(at, root) else {
            return;
        };
        let mut stack = vec![Frame {
            id: root,
            at,
            entries: first.into_iter(),
            tainted: false,
        }];
        while let Some(top) = stack.last_mut() {
            let Some(entry) = top.entries.next() else {
                let done = stack.pop().expect("non-empty");
                if done.tainted {
                    self.set_tainted(done.at, &done.id);
                    if let Some(parent) = stack.last_mut() {
                        parent.tainted = true;
                    }
                }
                continue;
            };
            match entry.mode {
                Mode::Commit => {}
                Mode::Tree => {
                    let at = self.locate(&entry.id);
                    if self.visited(at, &entry.id) {
                        if self.tainted(at, &entry.id) {
                            top.tainted = true;
                        }
                        continue;
                    }
                    match self.open_tree(at, entry.id) {
                        Some(children) => stack.push(Frame {
                            id: entry.id,
                            at,
                            entries: children.into_iter(),
                            tainted: false,
                        }),
                        None => top.tainted = true,
                    }
                }
                _ => {
                    let at = self.locate(&entry.id);
                    match at {
                        At::Nowhere => {
                            self.mark_bad(entry.id, Some(Kind::Blob), Bad::Missing);
                            top.tainted = true;
                        }
                        _ => {
                            self.set_visited(at, &entry.id);
                            if self.bad.contains_key(&entry.id) {
                                top.tainted = true;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Marks `id` visited and returns its entries; `None` (and the object
    /// recorded bad) when it cannot be read or parsed.
    fn open_tree(&mut self, at: At, id: ObjectId) -> Option<Vec<tree::Entry>> {
        self.set_visited(at, &id);
        let body = self.read(at, &id, Kind::Tree)?;
        match tree::decode(&body) {
            Ok(entries) => Some(entries),
            Err(e) => {
                self.mark_bad(
                    id,
                    Some(Kind::Tree),
                    Bad::Malformed {
                        detail: e.to_string(),
                    },
                );
                None
            }
        }
    }

    fn add_path(&mut self, id: &ObjectId, path: &str) {
        if let Some(b) = self.bad.get_mut(id) {
            if b.paths.len() < MAX_PATHS {
                if !b.paths.iter().any(|p| p == path) {
                    b.paths.push(path.to_string());
                }
            } else {
                b.more_paths += 1;
            }
        }
    }

    /// Names the paths of the snapshots reachable from `tip` by first
    /// parents that lead to a bad object.
    fn attribute(&mut self, repo: &dyn Repo, label: &str, tip: &ObjectId) {
        // Snapshot names as `rewind ls` shows them; commits without a
        // name (damaged history) go by id.
        let names: HashMap<ObjectId, String> = crate::view::snapshots::snapshots(repo, tip)
            .map(|list| list.into_iter().map(|s| (s.commit, s.name)).collect())
            .unwrap_or_default();
        let mut next = Some(*tip);
        let mut seen = HashSet::new();
        while let Some(id) = next.take() {
            if !seen.insert(id) {
                break;
            }
            if self.bad.contains_key(&id) {
                let snap = names
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "the snapshot".into());
                self.add_path(
                    &id,
                    &format!(
                        "history of {label} from {snap} on (older snapshots cannot be reached)"
                    ),
                );
                break;
            }
            let at = self.locate(&id);
            let Some((kind, body)) = self.packed_or_loose(at, &id) else {
                break;
            };
            // Without the whole history `rewind ls` names nothing; the
            // author time names a snapshot as it would (bar a -N suffix).
            let snap = names.get(&id).cloned().unwrap_or_else(|| {
                commit::decode(&body).map_or_else(
                    |_| id.to_hex()[..12].to_string(),
                    |c| crate::time::snapshot_name(c.author.time),
                )
            });
            let prefix = format!("{label}/{snap}");
            if kind == Kind::Tree {
                // A tag naming a tree directly.
                self.attribute_tree(&id, label);
                break;
            }
            if kind != Kind::Commit {
                break;
            }
            let Ok(c) = commit::decode(&body) else { break };
            self.attribute_tree(&c.tree, &prefix);
            next = c.parents.first().copied();
        }
    }

    fn packed_or_loose(&self, at: At, id: &ObjectId) -> Option<(Kind, Vec<u8>)> {
        match at {
            At::Packed(p, k) => self.packs.read(p, k, self.objects).ok(),
            At::Loose => self.objects.read(id).ok().map(|o| (o.kind, o.data)),
            At::Nowhere => None,
        }
    }

    /// Collects the paths below the tree `root` (shown as `prefix`) that
    /// lead to bad objects, descending only into tainted trees.
    fn attribute_tree(&mut self, root: &ObjectId, prefix: &str) {
        if self.bad.contains_key(root) {
            self.add_path(root, &format!("{prefix}/"));
            return;
        }
        if !self.tainted(self.locate(root), root) {
            return;
        }
        // (tree, its path, whether it is a chunked file's tree)
        let mut stack = vec![(*root, prefix.to_string(), false)];
        while let Some((id, path, in_file)) = stack.pop() {
            let at = self.locate(&id);
            let Some((_, body)) = self.packed_or_loose(at, &id) else {
                continue;
            };
            let Ok(entries) = tree::decode(&body) else {
                continue;
            };
            for e in entries {
                if e.mode == Mode::Commit {
                    continue;
                }
                let child = if in_file {
                    path.clone()
                } else {
                    let (name, how) = demangle(&e.name, e.mode);
                    let name = String::from_utf8_lossy(name);
                    match how {
                        Demangled::Metadata => format!("{path}/.bupm (metadata of {path})"),
                        _ => format!("{path}/{name}"),
                    }
                };
                let chunked = in_file
                    || (e.mode.is_tree() && demangle(&e.name, e.mode).1 == Demangled::Chunked)
                    || (e.mode.is_tree() && e.name == b".bupm");
                if self.bad.contains_key(&e.id) {
                    self.add_path(&e.id, &child);
                    continue;
                }
                if e.mode.is_tree() && self.tainted(self.locate(&e.id), &e.id) {
                    stack.push((e.id, child, chunked));
                }
            }
        }
    }
}
