//! Backup names (branches) and their snapshots, named as bup names them:
//! the author time in the reader's local time zone, `-N` suffixes for
//! adjacent same-second saves, and `latest` for the tip.

use super::ViewError;
use crate::object::{commit, Kind, ObjectId};
use crate::repo::Repository;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub commit: ObjectId,
    pub tree: ObjectId,
    /// Author time, epoch seconds.
    pub time: i64,
}

/// Backup names, sorted, with their tip commits.
pub fn backups(repo: &Repository) -> Result<Vec<(String, ObjectId)>, ViewError> {
    Ok(repo
        .list_refs("refs/heads/")?
        .into_iter()
        .map(|(name, id)| (name.trim_start_matches("refs/heads/").to_string(), id))
        .collect())
}

/// Lightweight tags, sorted, with what they point at.
pub fn tags(repo: &Repository) -> Result<Vec<(String, ObjectId)>, ViewError> {
    Ok(repo
        .list_refs("refs/tags/")?
        .into_iter()
        .map(|(name, id)| (name.trim_start_matches("refs/tags/").to_string(), id))
        .collect())
}

/// Reads and parses one commit.
pub fn read_commit(repo: &Repository, id: &ObjectId) -> Result<commit::Commit, ViewError> {
    let object = repo.objects().read(id)?;
    if object.kind != Kind::Commit {
        return Err(ViewError::WrongKind {
            id: *id,
            expected: "commit",
        });
    }
    commit::decode(&object.data).map_err(|e| ViewError::Malformed {
        id: *id,
        detail: e.to_string(),
    })
}

/// All snapshots of the branch whose tip is `tip`, oldest first, following
/// first parents (bup writes linear history).
pub fn snapshots(repo: &Repository, tip: &ObjectId) -> Result<Vec<Snapshot>, ViewError> {
    let mut newest_first = Vec::new();
    let mut next = Some(*tip);
    while let Some(id) = next {
        let commit = read_commit(repo, &id)?;
        newest_first.push(Snapshot {
            name: crate::time::snapshot_name(commit.author.time),
            commit: id,
            tree: commit.tree,
            time: commit.author.time,
        });
        next = commit.parents.first().copied();
        if newest_first.len() > 100_000_000 {
            return Err(ViewError::Malformed {
                id: *tip,
                detail: "history does not end".into(),
            });
        }
    }
    suffix_duplicates(&mut newest_first);
    newest_first.reverse();
    Ok(newest_first)
}

/// bup's rule: a run of adjacent snapshots with the same name gets `-N`
/// suffixes, zero-padded to the digits of `run - 1`, the newest highest.
fn suffix_duplicates(newest_first: &mut [Snapshot]) {
    let mut start = 0;
    while start < newest_first.len() {
        let mut end = start + 1;
        while end < newest_first.len() && newest_first[end].name == newest_first[start].name {
            end += 1;
        }
        let run = end - start;
        if run > 1 {
            let width = (run - 1).to_string().len();
            for (i, snap) in newest_first[start..end].iter_mut().enumerate() {
                snap.name = format!("{}-{:0width$}", snap.name, run - 1 - i);
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            commit: ObjectId::EMPTY_BLOB,
            tree: ObjectId::EMPTY_BLOB,
            time: 0,
        }
    }

    #[test]
    fn duplicate_names_get_descending_suffixes() {
        let mut list: Vec<_> = ["b", "a", "a", "c"].iter().map(|n| snap(n)).collect();
        suffix_duplicates(&mut list);
        let names: Vec<_> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a-1", "a-0", "c"]);
        let mut many: Vec<_> = (0..11).map(|_| snap("x")).collect();
        suffix_duplicates(&mut many);
        assert_eq!(many[0].name, "x-10");
        assert_eq!(many[10].name, "x-00");
    }
}
