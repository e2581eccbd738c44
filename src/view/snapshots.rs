//! Backup names (branches) and their snapshots, named as bup names them:
//! the author time in the reader's local time zone, `-N` suffixes for
//! adjacent same-second saves, and `latest` for the tip.

use super::ViewError;
use crate::object::{commit, Kind, ObjectId};
use crate::repo::Repo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub commit: ObjectId,
    pub tree: ObjectId,
    /// Author time, epoch seconds.
    pub time: i64,
}

/// Backup names, sorted, with their tip commits.
pub fn backups(repo: &dyn Repo) -> Result<Vec<(String, ObjectId)>, ViewError> {
    Ok(repo
        .list_refs("refs/heads/")?
        .into_iter()
        .map(|(name, id)| (name.trim_start_matches("refs/heads/").to_string(), id))
        .collect())
}

/// Lightweight tags, sorted, with what they point at.
pub fn tags(repo: &dyn Repo) -> Result<Vec<(String, ObjectId)>, ViewError> {
    Ok(repo
        .list_refs("refs/tags/")?
        .into_iter()
        .map(|(name, id)| (name.trim_start_matches("refs/tags/").to_string(), id))
        .collect())
}

/// Reads and parses one commit.
pub fn read_commit(repo: &dyn Repo, id: &ObjectId) -> Result<commit::Commit, ViewError> {
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
///
/// What each commit says (tree, first parent, author time) is kept in
/// [`CommitCache`]: a name with thousands of snapshots (one pack per save)
/// is then listed without opening a pack. A history that comes back to a
/// commit already met is a cycle: through the cache it means the cache is
/// damaged (commit ids hash their parents, so real commits cannot loop),
/// and the history is walked again from the commits alone, rewriting the
/// cache; from the commits alone it is an error naming the commit.
pub fn snapshots(repo: &dyn Repo, tip: &ObjectId) -> Result<Vec<Snapshot>, ViewError> {
    let cache = CommitCache::load(repo);
    let mut newest_first = match follow(repo, tip, &cache)? {
        Walked::Done {
            newest_first,
            learned,
        } => {
            if learned.len() >= CACHE_AFTER {
                cache.save(repo, learned);
            }
            newest_first
        }
        Walked::CacheLoops(id) => {
            tracing::warn!(
                "{}: commit {id} is its own ancestor there: the commit cache is damaged; \
                 rebuilding it from the commits",
                CommitCache::path(repo).display()
            );
            let fresh = CommitCache::default();
            match follow(repo, tip, &fresh)? {
                Walked::Done {
                    newest_first,
                    learned,
                } => {
                    // Always written: it replaces the damaged file.
                    fresh.save(repo, learned);
                    newest_first
                }
                Walked::CacheLoops(id) => return Err(history_loops(id)),
            }
        }
    };
    suffix_duplicates(&mut newest_first);
    newest_first.reverse();
    Ok(newest_first)
}

/// How a walk of first parents ended.
enum Walked {
    /// Newest first, with the facts read from commits (not the cache).
    Done {
        newest_first: Vec<Snapshot>,
        learned: Vec<(ObjectId, CommitFacts)>,
    },
    /// The walk met this commit twice and some step came from the cache.
    CacheLoops(ObjectId),
}

fn history_loops(id: ObjectId) -> ViewError {
    ViewError::Malformed {
        id,
        detail: "the commit is its own ancestor (its history loops); the repository is damaged"
            .into(),
    }
}

/// Follows first parents from `tip`, from `cache` where it knows a commit
/// and from the commit itself otherwise. Every commit is visited once: the
/// walk ends even when what it reads loops.
fn follow(repo: &dyn Repo, tip: &ObjectId, cache: &CommitCache) -> Result<Walked, ViewError> {
    let mut learned = Vec::new();
    let mut newest_first = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut used_cache = false;
    let mut next = Some(*tip);
    while let Some(id) = next {
        if !seen.insert(id) {
            return if used_cache {
                Ok(Walked::CacheLoops(id))
            } else {
                Err(history_loops(id))
            };
        }
        let facts = match cache.get(&id) {
            Some(f) => {
                used_cache = true;
                *f
            }
            None => {
                let commit = read_commit(repo, &id)?;
                let f = CommitFacts {
                    tree: commit.tree,
                    parent: commit.parents.first().copied(),
                    time: commit.author.time,
                };
                learned.push((id, f));
                f
            }
        };
        newest_first.push(Snapshot {
            name: crate::time::snapshot_name(facts.time),
            commit: id,
            tree: facts.tree,
            time: facts.time,
        });
        next = facts.parent;
    }
    Ok(Walked::Done {
        newest_first,
        learned,
    })
}

/// After a branch was rewritten (`prune`): drops the commits of `gone`
/// from the commit cache and adds what `new` commits say (id, tree, first
/// parent, author time), so that the next listing of the branch reads no
/// pack and the cache does not keep growing with commits no branch
/// reaches. Only an existing cache is updated (short histories keep none);
/// a failed write is only logged, as for every cache.
pub fn note_rewrite(
    repo: &dyn Repo,
    gone: &[ObjectId],
    new: &[(ObjectId, ObjectId, Option<ObjectId>, i64)],
) {
    if !CommitCache::path(repo).exists() {
        return;
    }
    let mut cache = CommitCache::load(repo);
    for id in gone {
        cache.map.remove(id);
    }
    let learned = new
        .iter()
        .map(|&(id, tree, parent, time)| (id, CommitFacts { tree, parent, time }))
        .collect();
    cache.save(repo, learned);
}

/// File name under the repository's `rewind/` directory.
pub const COMMIT_CACHE_NAME: &str = "commits.cache";
const CACHE_MAGIC: &[u8; 8] = b"RWCMTS\0\x01";
const CACHE_RECORD: usize = 20 + 20 + 1 + 20 + 8;
/// Commits read from packs in one listing before the cache is (re)written:
/// short histories list fast anyway and leave no file behind.
const CACHE_AFTER: usize = 64;

/// What a listing needs from a commit. A commit's id is the hash of its
/// content, so these facts can never go stale: a cached entry is right for
/// as long as the commit exists, and only commits reachable from a current
/// tip are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CommitFacts {
    tree: ObjectId,
    parent: Option<ObjectId>,
    time: i64,
}

/// `rewind/commits.cache`: magic, then per commit its id, tree, a parent
/// flag and first parent, author time (big-endian i64), then the SHA-1 of
/// all of that. A cache: any doubt (missing, torn, damaged, other version)
/// means empty, and a failed write is only logged.
#[derive(Default)]
struct CommitCache {
    map: std::collections::HashMap<ObjectId, CommitFacts>,
}

impl CommitCache {
    fn path(repo: &dyn Repo) -> std::path::PathBuf {
        repo.state_dir().join(COMMIT_CACHE_NAME)
    }

    fn load(repo: &dyn Repo) -> CommitCache {
        let mut map = std::collections::HashMap::new();
        let path = Self::path(repo);
        let Ok(bytes) = std::fs::read(&path) else {
            return CommitCache { map };
        };
        if let Err(why) = Self::parse(&bytes, &mut map) {
            tracing::info!("not using {}: {why}", path.display());
            map.clear();
        }
        CommitCache { map }
    }

    fn parse(
        bytes: &[u8],
        map: &mut std::collections::HashMap<ObjectId, CommitFacts>,
    ) -> Result<(), &'static str> {
        use sha1::Digest;
        if bytes.len() < 28 || &bytes[..8] != CACHE_MAGIC {
            return Err("unknown format or version");
        }
        let (body, sum) = bytes.split_at(bytes.len() - 20);
        if sha1::Sha1::digest(body)[..] != sum[..] {
            return Err("checksum mismatch");
        }
        let records = &body[8..];
        if records.len() % CACHE_RECORD != 0 {
            return Err("size does not fit its layout");
        }
        let id = |b: &[u8]| ObjectId::from_bytes(b).ok_or("bad id");
        for r in records.chunks_exact(CACHE_RECORD) {
            let parent = match r[40] {
                0 => None,
                1 => Some(id(&r[41..61])?),
                _ => return Err("bad parent flag"),
            };
            let time = i64::from_be_bytes(r[61..69].try_into().map_err(|_| "bad time")?);
            map.insert(
                id(&r[..20])?,
                CommitFacts {
                    tree: id(&r[20..40])?,
                    parent,
                    time,
                },
            );
        }
        Ok(())
    }

    fn get(&self, id: &ObjectId) -> Option<&CommitFacts> {
        self.map.get(id)
    }

    /// Writes the cache with `learned` added (temporary file, then rename).
    fn save(mut self, repo: &dyn Repo, learned: Vec<(ObjectId, CommitFacts)>) {
        use sha1::Digest;
        self.map.extend(learned);
        let mut out = Vec::with_capacity(8 + self.map.len() * CACHE_RECORD + 20);
        out.extend_from_slice(CACHE_MAGIC);
        for (id, f) in &self.map {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&f.tree.0);
            match f.parent {
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.0);
                }
                None => out.extend_from_slice(&[0; 21]),
            }
            out.extend_from_slice(&f.time.to_be_bytes());
        }
        let sum = sha1::Sha1::digest(&out);
        out.extend_from_slice(&sum);
        let path = Self::path(repo);
        // Readable by whoever may read the repository (write_atomic makes
        // it 0644, as its packs).
        let write = || -> Result<(), String> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            crate::repo::fsutil::write_atomic(&path, &out).map_err(|e| e.to_string())
        };
        // A repository this user may not write (browsing someone else's
        // backups) simply lists without the cache.
        if let Err(e) = write() {
            tracing::debug!("cannot write {}: {e}", path.display());
        }
    }
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
    use crate::repo::Repository;

    fn snap(name: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            commit: ObjectId::EMPTY_BLOB,
            tree: ObjectId::EMPTY_BLOB,
            time: 0,
        }
    }

    /// A repository whose `t` has `n` snapshots, a minute apart, all in
    /// one pack; returns the tip.
    fn history(dir: &std::path::Path, n: usize) -> ObjectId {
        let repo = Repository::init(dir).expect("init");
        let mut w = repo.pack_writer().expect("writer");
        let tree = w.write(Kind::Tree, b"").expect("tree");
        let mut parent = None;
        for i in 0..n {
            let sig = commit::Signature {
                name: b"t".to_vec(),
                email: b"t@h".to_vec(),
                time: 1_700_000_000 + 60 * i as i64,
                utc_offset_minutes: 0,
            };
            let c = commit::Commit {
                tree,
                parents: parent.into_iter().collect(),
                author: sig.clone(),
                committer: sig,
                message: b"rewind save\n".to_vec(),
            };
            parent = Some(w.write(Kind::Commit, &commit::encode(&c)).expect("commit"));
        }
        w.finish().expect("publish");
        let tip = parent.expect("commits");
        repo.update_ref("refs/heads/t", tip, None).expect("ref");
        tip
    }

    #[test]
    fn long_histories_list_from_the_commit_cache_and_survive_its_damage() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("repo");
        let tip = history(&dir, 100);
        let list = |dir: &std::path::Path| {
            let repo = Repository::open(dir).expect("open");
            snapshots(&repo, &tip)
        };
        let first = list(&dir).expect("list");
        assert_eq!(first.len(), 100);
        assert_eq!(first.last().map(|s| s.commit), Some(tip));
        assert!(first.windows(2).all(|w| w[0].time < w[1].time));
        let cache = dir.join("rewind").join(COMMIT_CACHE_NAME);
        assert!(cache.exists(), "a long history leaves a cache");

        // Answered from the cache alone: no pack is read (or even opened).
        let pack_dir = dir.join("objects/pack");
        let away = tmp.path().join("packs-away");
        std::fs::rename(&pack_dir, &away).expect("move packs");
        std::fs::create_dir(&pack_dir).expect("mkdir");
        assert_eq!(list(&dir).expect("list from cache"), first);
        std::fs::remove_dir(&pack_dir).expect("rmdir");
        std::fs::rename(&away, &pack_dir).expect("packs back");

        // A damaged cache is ignored (and rewritten): the same listing.
        let mut bytes = std::fs::read(&cache).expect("read cache");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&cache, &bytes).expect("damage");
        assert_eq!(list(&dir).expect("list past damage"), first);
        assert_ne!(std::fs::read(&cache).expect("reread"), bytes);
        // Truncated, or of another version: the same.
        std::fs::write(&cache, &bytes[..bytes.len() - 7]).expect("truncate");
        assert_eq!(list(&dir).expect("list past truncation"), first);
        std::fs::write(&cache, b"RWCMTS\0\x09").expect("version");
        assert_eq!(list(&dir).expect("list past version"), first);
    }

    /// Runs `f` on a thread of its own and fails the test if it has not
    /// returned within `secs` (instead of the test hanging).
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .expect("the history walk did not end")
    }

    /// A commit-cache entry whose parent is itself (or an older commit's
    /// parent pointing back at the tip) made `ls` loop until killed,
    /// growing without bound. The walk notices the cycle, ignores the
    /// cache, lists from the commits, and rewrites the cache.
    #[test]
    fn commit_cache_cycle_is_rebuilt_not_followed_forever() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("repo");
        let tip = history(&dir, 100);
        let list = move |dir: std::path::PathBuf| {
            within(60, move || {
                let repo = Repository::open(&dir).expect("open");
                snapshots(&repo, &tip)
            })
        };
        let first = list(dir.clone()).expect("list");
        let oldest = first[0].commit;
        let parent_of_tip = first[98].commit;
        for (who, points_to) in [(tip, tip), (oldest, tip), (parent_of_tip, tip)] {
            // Forge the loop with a valid checksum: only the walk can see it.
            let repo = Repository::open(&dir).expect("open");
            let mut cache = CommitCache::load(&repo);
            assert_eq!(cache.map.len(), 100, "the cache holds the whole history");
            cache.map.get_mut(&who).expect("cached").parent = Some(points_to);
            cache.save(&repo, Vec::new());
            assert_eq!(list(dir.clone()).expect("list past the loop"), first);
            // Rebuilt from the commits: it no longer loops.
            let repo = Repository::open(&dir).expect("open");
            let rebuilt = CommitCache::load(&repo);
            assert_eq!(rebuilt.map.len(), 100);
            assert_eq!(
                rebuilt.get(&tip).and_then(|f| f.parent),
                Some(parent_of_tip)
            );
            assert_eq!(rebuilt.get(&oldest).and_then(|f| f.parent), None);
        }
    }

    #[test]
    fn short_histories_leave_no_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("repo");
        let tip = history(&dir, 3);
        let repo = Repository::open(&dir).expect("open");
        assert_eq!(snapshots(&repo, &tip).expect("list").len(), 3);
        assert!(!dir.join("rewind").join(COMMIT_CACHE_NAME).exists());
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
