//! Names to inodes: the FUSE side of the namespace. Above the snapshots
//! a name is looked up and listed by [`crate::view::namespace`]; here it
//! gets its inode number (salted by the commit or tag it stands for, so a
//! moved name is a new inode), its kind in the inode table and whether it
//! follows refs (a short lifetime) or lies in a snapshot (a long one).

use super::attr;
use super::fs::{errno, RewindFs, LIVE_TTL};
use super::inodes::{Held, InodeKind, Key, NodeInfo, SnapshotRef};
use super::repos::{RepoIx, RepoState};
use crate::object::ObjectId;
use crate::view::namespace::{self, Item, Source};
use crate::view::{NodeType, ViewError};
use fuser::{Errno, FileType, INodeNo};
use std::sync::Arc;
use std::time::Duration;

/// A directory's entries: name, type, and what the child's inode number is
/// derived from.
pub(super) type Listing = Vec<(Vec<u8>, FileType, Key)>;

/// What a name in a directory resolved to.
pub(super) struct Child {
    pub(super) kind: InodeKind,
    /// What its inode number is derived from.
    pub(super) key: Key,
    /// Whether the entry follows refs (or the repositories under `--repos`).
    pub(super) live: bool,
    pub(super) repo: RepoIx,
}

impl RewindFs {
    /// Resolves `name` in `parent`.
    pub(super) fn child(
        &self,
        parent_ino: u64,
        parent: &Held,
        name: &[u8],
    ) -> Result<Child, ViewError> {
        let entry = |id: Option<ObjectId>| Key::entry(parent_ino, name, id.map(|i| i.0));
        let missing = || ViewError::NotFound(String::from_utf8_lossy(name).into_owned());
        if let InodeKind::Repos = parent.kind {
            let listed = self.repos.list()?;
            let found = listed.iter().find(|l| l.name == name).ok_or_else(missing)?;
            return Ok(Child {
                kind: InodeKind::RepoRoot,
                key: Key::entry(parent_ino, name, Some(identity_salt(found.identity))),
                live: true,
                repo: found.ix,
            });
        }
        let st = self.repos.get(parent.repo)?;
        let here = |kind, key, live| {
            Ok(Child {
                kind,
                key,
                live,
                repo: parent.repo,
            })
        };
        if let InodeKind::Node(info) = &parent.kind {
            let child = NodeInfo::new(
                namespace::child(&*st, &info.node, name)?,
                info.snapshot.clone(),
            );
            let key = match child.hardlink() {
                Some((snapshot, target)) => Key::group(snapshot.id, target),
                None => entry(None),
            };
            return here(InodeKind::Node(child), key, false);
        }
        let found = namespace::lookup(&*st, &item_of(&st, &parent.kind)?, name)?;
        let key = entry(found.id);
        let kind = match found.item {
            Item::Root => return Err(missing()),
            Item::Tags => InodeKind::Tags,
            Item::Backup(b) => InodeKind::Backup(b.name),
            // Numbered by the tip it points at: when a save moves it,
            // `latest` is a new inode, so the kernel may cache each one's
            // target (no READLINK per path walk).
            Item::Latest { backup, .. } => InodeKind::Latest(backup),
            // A snapshot's root or a tag's target, numbered by the commit
            // or tag: a moved name is a new inode.
            Item::Node(node) => {
                let snapshot = (node.node_type == NodeType::Directory).then(|| {
                    Arc::new(SnapshotRef {
                        id: key.snapshot_id(),
                        tree: node.id,
                        time: found.time.unwrap_or(0),
                    })
                });
                InodeKind::Node(NodeInfo::new(*node, snapshot))
            }
        };
        here(kind, key, true)
    }

    /// All entries of a directory inode (without "." and ".."), with the
    /// key each child's inode number is derived from (as in [`Self::child`]).
    pub(super) fn entries(&self, ino: u64, held: &Held) -> Result<Listing, ViewError> {
        if let InodeKind::Repos = held.kind {
            return Ok(self
                .repos
                .list()?
                .iter()
                .map(|l| {
                    let key = Key::entry(ino, &l.name, Some(identity_salt(l.identity)));
                    (l.name.clone(), FileType::Directory, key)
                })
                .collect());
        }
        let st = self.repos.get(held.repo)?;
        let InodeKind::Node(info) = &held.kind else {
            let listed = namespace::list(&*st, &item_of(&st, &held.kind)?)?;
            return Ok(listed
                .into_iter()
                .map(|e| {
                    let key = Key::entry(ino, &e.name, e.id.map(|i| i.0));
                    (e.name, file_type(e.node_type), key)
                })
                .collect());
        };
        if info.node.node_type != NodeType::Directory {
            return Err(ViewError::NotADirectory(
                String::from_utf8_lossy(&info.node.name).into_owned(),
            ));
        }
        let snapshot = info.snapshot.as_ref().map(|s| s.id);
        Ok(st
            .directory(&info.node.id)?
            .entries
            .iter()
            .map(|n| {
                let group = n
                    .meta
                    .as_ref()
                    .and_then(|m| m.hardlink_target.as_deref())
                    .filter(|_| n.node_type != NodeType::Directory)
                    .zip(snapshot);
                let key = match group {
                    Some((target, snapshot)) => Key::group(snapshot, target),
                    None => Key::entry(ino, &n.name, None),
                };
                (n.name.clone(), attr::file_type(n.mode()), key)
            })
            .collect())
    }

    /// A readdirplus entry: the child's number (registered), attributes and
    /// their lifetime. A snapshot in a backup's listing, and an entry whose
    /// node cannot be read, are announced unresolved with a zero lifetime,
    /// so the kernel asks again (lookup, getattr) when it needs them: a
    /// listing of thousands of snapshots does not read each one's root, and
    /// a damaged entry still lists (its own lookup gives the error).
    pub(super) fn plus_entry(
        &self,
        ino: u64,
        held: &Held,
        name: &[u8],
        ft: FileType,
        key: &Key,
    ) -> (u64, fuser::FileAttr, Duration) {
        let resolved = match held.kind {
            InodeKind::Backup(_) if name != b"latest" => None,
            _ => self.child(ino, held, name).ok().and_then(|c| {
                let child = self.inodes.assign(c.key, c.repo, c.kind.clone());
                match self.attr_of(child, c.repo, &c.kind) {
                    Ok((attr, ttl)) => {
                        Some((child, attr, if c.live { ttl.min(LIVE_TTL) } else { ttl }))
                    }
                    Err(_) => {
                        self.inodes.forget(child, 1);
                        None
                    }
                }
            }),
        };
        resolved.unwrap_or_else(|| {
            let child =
                self.inodes
                    .assign(key.clone(), held.repo, InodeKind::Pending(name.to_vec()));
            let mut attr = attr::synthetic_dir(child, self.uid, self.gid, self.mounted_at);
            attr.kind = ft;
            (child, attr, Duration::ZERO)
        })
    }

    pub(super) fn read_link(&self, held: &Held) -> Result<Vec<u8>, ViewError> {
        let st = self.repos.get(held.repo)?;
        match &held.kind {
            InodeKind::Latest(backup) => Ok(latest(&st, backup)?.0.into_bytes()),
            InodeKind::Node(info) if info.node.node_type == NodeType::Symlink => {
                namespace::symlink_target(st.repo.as_ref(), &info.node)
            }
            _ => Err(ViewError::NotFound("not a symlink".into())),
        }
    }

    /// A directory's parent, kind and entries, for readdir and readdirplus.
    pub(super) fn listing(&self, ino: INodeNo) -> Result<(Held, Listing), Errno> {
        let held = self.node_of(ino)?;
        let entries = self
            .entries(ino.0, &held)
            .map_err(|e| errno(&e, "readdir"))?;
        Ok((held, entries))
    }

    pub(super) fn node_of(&self, ino: INodeNo) -> Result<Held, Errno> {
        let held = self.inodes.get(ino.0).ok_or(Errno::ENOENT)?;
        let InodeKind::Pending(name) = &held.kind else {
            return Ok(held);
        };
        // Announced by readdirplus without its node: resolve it as a lookup
        // would, and check it is still the same entry.
        let key = self.inodes.key(ino.0).ok_or(Errno::ENOENT)?;
        let parent = self.node_of(INodeNo(held.parent))?;
        let child = self
            .child(held.parent, &parent, name)
            .map_err(|e| errno(&e, "lookup"))?;
        if child.key != key {
            return Err(Errno::ENOENT);
        }
        let kind = self
            .inodes
            .resolve(ino.0, &key, child.kind)
            .ok_or(Errno::ENOENT)?;
        Ok(Held { kind, ..held })
    }
}

/// The namespace item a directory inode above the snapshots stands for.
fn item_of(st: &RepoState, kind: &InodeKind) -> Result<Item, ViewError> {
    Ok(match kind {
        InodeKind::RepoRoot => Item::Root,
        InodeKind::Tags => Item::Tags,
        InodeKind::Backup(name) => Item::Backup(st.backup(name)?),
        InodeKind::Latest(_) => return Err(ViewError::NotADirectory("latest".into())),
        InodeKind::Node(info) => Item::Node(Box::new(info.node.clone())),
        InodeKind::Repos | InodeKind::Pending(_) => {
            return Err(ViewError::NotFound("not in a repository".into()))
        }
    })
}

/// Where `backup`'s `latest` points now, and its tip's time.
pub(super) fn latest(st: &RepoState, backup: &str) -> Result<(String, i64), ViewError> {
    let parent = Item::Backup(st.backup(backup)?);
    match namespace::lookup(st, &parent, b"latest")?.item {
        Item::Latest { target, time, .. } => Ok((target, time)),
        _ => Err(ViewError::NotFound(format!("{backup}/latest"))),
    }
}

fn file_type(t: NodeType) -> FileType {
    match t {
        NodeType::Directory => FileType::Directory,
        NodeType::Symlink => FileType::Symlink,
        NodeType::Regular | NodeType::Special => FileType::RegularFile,
    }
}

/// A repository directory's device and inode as an inode-number salt: a
/// repository removed and made again under its name is a new directory.
fn identity_salt((dev, ino): (u64, u64)) -> [u8; 20] {
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(&dev.to_le_bytes());
    salt[8..16].copy_from_slice(&ino.to_le_bytes());
    salt
}
