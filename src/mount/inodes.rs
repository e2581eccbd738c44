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

use crate::view::Node;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

pub const ROOT: u64 = 1;

/// What an inode stands for.
#[derive(Clone, Debug)]
pub enum InodeKind {
    Root,
    /// `/.tag`
    Tags,
    /// `/<name>`
    Backup(String),
    /// `/<name>/latest`: its target is read live.
    Latest(String),
    /// A snapshot root, a tag's content, or anything inside a snapshot.
    Node(Arc<NodeInfo>),
}

/// A node of a snapshot and what was computed about it once.
#[derive(Debug)]
pub struct NodeInfo {
    pub node: Node,
    /// File size, computed on first need (from `.bupm` or the chunk tree).
    pub size: OnceLock<u64>,
}

impl NodeInfo {
    pub fn new(node: Node) -> Arc<NodeInfo> {
        Arc::new(NodeInfo {
            node,
            size: OnceLock::new(),
        })
    }
}

#[derive(PartialEq, Eq, Clone, Debug)]
struct Key {
    parent: u64,
    name: Vec<u8>,
    salt: Option<[u8; 20]>,
}

struct Slot {
    key: Key,
    kind: InodeKind,
    lookups: u64,
}

pub struct InodeTable {
    slots: RwLock<HashMap<u64, Slot>>,
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

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut slots = HashMap::new();
        slots.insert(
            ROOT,
            Slot {
                key: Key {
                    parent: 0,
                    name: Vec::new(),
                    salt: None,
                },
                kind: InodeKind::Root,
                lookups: 1,
            },
        );
        InodeTable {
            slots: RwLock::new(slots),
        }
    }

    pub fn get(&self, ino: u64) -> Option<(u64, InodeKind)> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(&ino).map(|s| (s.key.parent, s.kind.clone()))
    }

    /// The number for (parent, name, salt), registering one more kernel
    /// reference to it (a lookup reply).
    pub fn assign(&self, parent: u64, name: &[u8], salt: Option<[u8; 20]>, kind: InodeKind) -> u64 {
        let key = Key {
            parent,
            name: name.to_vec(),
            salt,
        };
        let mut ino = fix(hash_key(&key));
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        loop {
            match slots.entry(ino) {
                Entry::Vacant(v) => {
                    v.insert(Slot {
                        key,
                        kind,
                        lookups: 1,
                    });
                    return ino;
                }
                Entry::Occupied(mut o) if o.get().key == key => {
                    o.get_mut().lookups += 1;
                    return ino;
                }
                Entry::Occupied(_) => ino = fix(ino.wrapping_add(1)),
            }
        }
    }

    /// The number (parent, name, salt) has or would get, without a kernel
    /// reference (for readdir's d_ino).
    pub fn peek(&self, parent: u64, name: &[u8], salt: Option<[u8; 20]>) -> u64 {
        let key = Key {
            parent,
            name: name.to_vec(),
            salt,
        };
        let mut ino = fix(hash_key(&key));
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        loop {
            match slots.get(&ino) {
                Some(s) if s.key != key => ino = fix(ino.wrapping_add(1)),
                _ => return ino,
            }
        }
    }

    /// The kernel dropped `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        if let Entry::Occupied(mut o) = slots.entry(ino) {
            let s = o.get_mut();
            s.lookups = s.lookups.saturating_sub(n);
            if s.lookups == 0 {
                o.remove();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_across_forget_and_distinct_per_salt() {
        let t = InodeTable::new();
        let a = t.assign(ROOT, b"etc", None, InodeKind::Backup("etc".into()));
        assert_eq!(
            t.assign(ROOT, b"etc", None, InodeKind::Backup("etc".into())),
            a
        );
        assert_eq!(t.peek(ROOT, b"etc", None), a);
        t.forget(a, 2);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.assign(ROOT, b"etc", None, InodeKind::Backup("etc".into())),
            a
        );
        let salted = t.assign(ROOT, b"etc", Some([1; 20]), InodeKind::Tags);
        assert_ne!(salted, a);
        assert!(a > ROOT && salted > ROOT);
    }
}
