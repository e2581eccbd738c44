//! Inode numbers for the mount.
//!
//! An inode number is a hash of (parent inode, name, salt), so the same path
//! gets the same number every time it is looked up, even after the kernel
//! forgot it (`find`, `du` and `rsync -H` rely on that). The salt is the
//! commit or tag target for entries whose meaning can change while mounted
//! (a snapshot name, a tag), so a moved name gets a new inode rather than
//! new contents under an inode the kernel has cached for a long time.
//!
//! The table holds only what the kernel references (lookup count > 0) and
//! drops entries on `forget`, so its size follows the kernel's dentry cache,
//! not the repository. Hash collisions are resolved by probing, never by
//! sharing.
//!
//! Each slot also says which repository its inode lies in (a
//! [`RepoIx`]; always 0 when one repository is mounted): a child is in its
//! parent's repository, except the repositories listed under `--repos`.
//!
//! Hardlinked files are the one deliberate sharing: every member of a group
//! (the same `.bupm` `hardlink_target` within one snapshot) is numbered by
//! (snapshot, target) instead of (parent, name), so `cp -a` and `rsync -H`
//! see one inode and recreate the links.

use super::repos::RepoIx;
use crate::locks::{read, write};
use crate::object::ObjectId;
use crate::view::random::FileReader;
use crate::view::Node;

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

pub const ROOT: u64 = 1;

/// What an inode stands for.
#[derive(Clone, Debug)]
pub enum InodeKind {
    /// `/` under `--repos`: one directory per repository.
    Repos,
    /// A repository's top (backup names and `.tag`): the mount's root, or
    /// `/<repository>` under `--repos`.
    RepoRoot,
    /// `/.tag`
    Tags,
    /// `/<name>`
    Backup(String),
    /// `/<name>/latest`: its target is read live.
    Latest(String),
    /// A snapshot root, a tag's content, or anything inside a snapshot.
    Node(Arc<NodeInfo>),
    /// A snapshot root announced by a directory listing (readdirplus)
    /// whose node is resolved on first use: `name` in the parent the key
    /// names. Listing thousands of snapshots must not read each one's root
    /// tree and `.bupm`.
    Pending(Vec<u8>),
}

/// The snapshot (or tag) a node lies in: hardlink groups are per snapshot.
#[derive(Debug)]
pub struct SnapshotRef {
    /// Stable for the snapshot's root path (see [`Key::snapshot_id`]).
    pub id: u64,
    /// The root tree, where a scan for link counts starts.
    pub tree: ObjectId,
    /// The author time of its commit (0 for a tagged tree): what entries
    /// saved without metadata show (see [`crate::view::Node::unsaved_meta`]).
    pub time: i64,
}

/// A node of a snapshot and what was computed about it once.
#[derive(Debug)]
pub struct NodeInfo {
    pub node: Node,
    /// None only for a tag that names a bare blob.
    pub snapshot: Option<Arc<SnapshotRef>>,
    /// File size, computed on first need (from `.bupm` or the chunk tree).
    pub size: OnceLock<u64>,
    /// Whether the content has the size the metadata records (checked at
    /// the first open; `Some` holds the error every open reports).
    pub size_check: OnceLock<Option<String>>,
    /// Where reads of this file left off, shared by every open of it (the
    /// content never changes, so neither does the reader).
    pub reader: OnceLock<FileReader>,
}

impl NodeInfo {
    pub fn new(node: Node, snapshot: Option<Arc<SnapshotRef>>) -> Arc<NodeInfo> {
        Arc::new(NodeInfo {
            node,
            snapshot,
            size: OnceLock::new(),
            size_check: OnceLock::new(),
            reader: OnceLock::new(),
        })
    }

    /// (snapshot, group key) when this node is a member of a hardlink group.
    pub fn hardlink(&self) -> Option<(&Arc<SnapshotRef>, &[u8])> {
        if self.node.node_type == crate::view::NodeType::Directory {
            return None;
        }
        let target = self.node.meta.as_ref()?.hardlink_target.as_deref()?;
        Some((self.snapshot.as_ref()?, target))
    }
}

/// What an inode number is derived from.
#[derive(PartialEq, Eq, Clone, Debug)]
pub struct Key {
    parent: u64,
    name: Vec<u8>,
    salt: Option<[u8; 20]>,
    /// `parent` is a snapshot id and `name` a hardlink group key.
    group: bool,
}

impl Key {
    /// The entry `name` of directory `parent`; `salt` is the commit or tag
    /// target for entries whose meaning follows refs.
    pub fn entry(parent: u64, name: &[u8], salt: Option<[u8; 20]>) -> Key {
        Key {
            parent,
            name: name.to_vec(),
            salt,
            group: false,
        }
    }

    /// Every member of hardlink group `target` in snapshot `snapshot`.
    pub fn group(snapshot: u64, target: &[u8]) -> Key {
        Key {
            parent: snapshot,
            name: target.to_vec(),
            salt: None,
            group: true,
        }
    }

    /// An identity for the snapshot rooted at this key: the unprobed hash,
    /// known before (and whatever) number the root itself gets.
    pub fn snapshot_id(&self) -> u64 {
        hash_key(self)
    }
}

struct Slot {
    key: Key,
    repo: RepoIx,
    kind: InodeKind,
    lookups: u64,
}

/// What the table holds for an inode.
#[derive(Clone, Debug)]
pub struct Held {
    pub parent: u64,
    pub repo: RepoIx,
    pub kind: InodeKind,
}

pub struct InodeTable {
    slots: RwLock<HashMap<u64, Slot>>,
    /// Approximate memory of the slots (see [`node_bytes`]).
    bytes: AtomicUsize,
}

/// Memory a listed node holds: the structs, and each heap allocation
/// rounded up to malloc's granularity (names are mostly short, so the
/// rounding is most of it).
pub fn node_bytes(n: &Node) -> usize {
    let heap = |len: usize| {
        if len == 0 {
            0
        } else {
            (len + 16).next_multiple_of(16)
        }
    };
    std::mem::size_of::<Node>()
        + heap(n.name.len())
        + n.meta.as_ref().map_or(0, |m| {
            std::mem::size_of::<crate::meta::Metadata>()
                + heap(m.user.len())
                + heap(m.group.len())
                + m.symlink_target.as_ref().map_or(0, |t| heap(t.len()))
                + m.hardlink_target.as_ref().map_or(0, |t| heap(t.len()))
                + heap(m.xattrs.len() * 48)
                + m.xattrs
                    .iter()
                    .map(|(k, v)| heap(k.len()) + heap(v.len()))
                    .sum::<usize>()
                + m.acl.as_ref().map_or(0, |_| 256)
        })
}

/// Memory a slot holds: the map entry and, for a node, what it carries.
fn slot_bytes(slot: &Slot) -> usize {
    let own = 96 + slot.key.name.len();
    match &slot.kind {
        InodeKind::Node(info) => own + std::mem::size_of::<NodeInfo>() + node_bytes(&info.node),
        _ => own,
    }
}

fn hash_key(key: &Key) -> u64 {
    // DefaultHasher::new() uses fixed keys: the same numbers for the life of
    // the mount (and across mounts of the same build).
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parent.hash(state);
        self.name.hash(state);
        self.salt.hash(state);
        self.group.hash(state);
    }
}

/// Never 0 (invalid) or the root's number.
fn fix(ino: u64) -> u64 {
    if ino <= ROOT {
        ino + 2
    } else {
        ino
    }
}

impl InodeTable {
    /// A table holding the root, of kind `root` ([`InodeKind::RepoRoot`]
    /// of repository 0, or [`InodeKind::Repos`]).
    pub fn new(root: InodeKind) -> InodeTable {
        let mut slots = HashMap::new();
        slots.insert(
            ROOT,
            Slot {
                key: Key::entry(0, b"", None),
                repo: 0,
                kind: root,
                lookups: 1,
            },
        );
        InodeTable {
            slots: RwLock::new(slots),
            bytes: AtomicUsize::new(0),
        }
    }

    pub fn get(&self, ino: u64) -> Option<Held> {
        let slots = read(&self.slots);
        slots.get(&ino).map(|s| Held {
            parent: s.key.parent,
            repo: s.repo,
            kind: s.kind.clone(),
        })
    }

    /// Replaces a [`InodeKind::Pending`] kind with what it resolved to, if
    /// `ino` still stands for `key`. Returns the kind now in force.
    pub fn resolve(&self, ino: u64, key: &Key, kind: InodeKind) -> Option<InodeKind> {
        let mut slots = write(&self.slots);
        let slot = slots.get_mut(&ino)?;
        if slot.key != *key {
            return None;
        }
        if matches!(slot.kind, InodeKind::Pending(_)) {
            let before = slot_bytes(slot);
            slot.kind = kind;
            self.bytes.fetch_add(slot_bytes(slot), Ordering::Relaxed);
            self.bytes.fetch_sub(before, Ordering::Relaxed);
        }
        Some(slot.kind.clone())
    }

    /// The key `ino` was derived from.
    pub fn key(&self, ino: u64) -> Option<Key> {
        let slots = read(&self.slots);
        slots.get(&ino).map(|s| s.key.clone())
    }

    /// The number for `key`, registering one more kernel reference to it
    /// (a lookup reply). A key already present keeps its first kind (for a
    /// hardlink group, the member looked up first stands for all), unless
    /// that was only [`InodeKind::Pending`].
    pub fn assign(&self, key: Key, repo: RepoIx, kind: InodeKind) -> u64 {
        let mut ino = fix(hash_key(&key));
        let mut slots = write(&self.slots);
        loop {
            match slots.entry(ino) {
                Entry::Vacant(v) => {
                    let slot = v.insert(Slot {
                        key,
                        repo,
                        kind,
                        lookups: 1,
                    });
                    self.bytes.fetch_add(slot_bytes(slot), Ordering::Relaxed);
                    return ino;
                }
                Entry::Occupied(mut o) if o.get().key == key => {
                    let slot = o.get_mut();
                    slot.lookups += 1;
                    if matches!(slot.kind, InodeKind::Pending(_))
                        && !matches!(kind, InodeKind::Pending(_))
                    {
                        // A lookup resolved what a listing announced.
                        let before = slot_bytes(slot);
                        slot.kind = kind;
                        self.bytes.fetch_add(slot_bytes(slot), Ordering::Relaxed);
                        self.bytes.fetch_sub(before, Ordering::Relaxed);
                    }
                    return ino;
                }
                Entry::Occupied(_) => ino = fix(ino.wrapping_add(1)),
            }
        }
    }

    /// The number `key` has or would get, without a kernel reference (for
    /// readdir's d_ino).
    pub fn peek(&self, key: &Key) -> u64 {
        let mut ino = fix(hash_key(key));
        let slots = read(&self.slots);
        loop {
            match slots.get(&ino) {
                Some(s) if s.key != *key => ino = fix(ino.wrapping_add(1)),
                _ => return ino,
            }
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut slots = write(&self.slots);
        if let Entry::Occupied(mut o) = slots.entry(ino) {
            let s = o.get_mut();
            s.lookups = s.lookups.saturating_sub(n);
            if s.lookups == 0 {
                let slot = o.remove();
                self.bytes.fetch_sub(slot_bytes(&slot), Ordering::Relaxed);
            }
        }
    }

    /// Approximate memory the table holds.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        read(&self.slots).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_across_forget_and_distinct_per_salt() {
        let t = InodeTable::new(InodeKind::RepoRoot);
        let etc = || Key::entry(ROOT, b"etc", None);
        let a = t.assign(etc(), 0, InodeKind::Backup("etc".into()));
        assert_eq!(t.assign(etc(), 0, InodeKind::Backup("etc".into())), a);
        assert_eq!(t.peek(&etc()), a);
        t.forget(a, 2);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.assign(etc(), 0, InodeKind::Backup("etc".into())), a);
        let salted = t.assign(Key::entry(ROOT, b"etc", Some([1; 20])), 0, InodeKind::Tags);
        assert_ne!(salted, a);
        assert!(a > ROOT && salted > ROOT);
    }

    #[test]
    fn pending_entries_resolve_once_and_keep_their_number() {
        let t = InodeTable::new(InodeKind::RepoRoot);
        let key = Key::entry(7, b"2024-01-01-000000", Some([3; 20]));
        let a = t.assign(
            key.clone(),
            0,
            InodeKind::Pending(b"2024-01-01-000000".to_vec()),
        );
        assert!(matches!(
            t.get(a),
            Some(Held {
                parent: 7,
                kind: InodeKind::Pending(_),
                ..
            })
        ));
        // Another key cannot resolve it.
        let other = Key::entry(7, b"2024-01-01-000000", Some([4; 20]));
        assert!(t.resolve(a, &other, InodeKind::Tags).is_none());
        assert!(matches!(
            t.resolve(a, &key, InodeKind::Tags),
            Some(InodeKind::Tags)
        ));
        // Resolved stays resolved; a later lookup adds a reference only.
        assert_eq!(t.assign(key.clone(), 0, InodeKind::RepoRoot), a);
        assert!(matches!(
            t.get(a),
            Some(Held {
                kind: InodeKind::Tags,
                ..
            })
        ));
        t.forget(a, 2);
        assert!(t.get(a).is_none());
        assert_eq!(t.bytes(), 0, "memory accounted back to zero");
        // A lookup of a still-pending entry resolves it too.
        let b = t.assign(key.clone(), 0, InodeKind::Pending(b"x".to_vec()));
        assert_eq!(t.assign(key, 0, InodeKind::Tags), b);
        assert!(matches!(
            t.get(b),
            Some(Held {
                kind: InodeKind::Tags,
                ..
            })
        ));
    }

    #[test]
    fn hardlink_groups_share_a_number_per_snapshot_only() {
        let t = InodeTable::new(InodeKind::RepoRoot);
        let snap1 = Key::entry(5, b"2024-01-01-000000", Some([1; 20])).snapshot_id();
        let snap2 = Key::entry(5, b"2024-01-02-000000", Some([2; 20])).snapshot_id();
        let a = t.assign(Key::group(snap1, b"/src/a"), 0, InodeKind::Tags);
        let b = t.assign(Key::group(snap1, b"/src/a"), 0, InodeKind::Tags);
        assert_eq!(a, b);
        assert_ne!(t.peek(&Key::group(snap2, b"/src/a")), a);
        // A group key never collides with an entry of the same bytes.
        assert_ne!(t.peek(&Key::entry(snap1, b"/src/a", None)), a);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one member still referenced");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
    }
}
