//! Backup names (branches) and their snapshots, named as bup names them:
//! the author time in the reader's local time zone, `-N` suffixes for
//! adjacent same-second saves, and `latest` for the tip. Every commit
//! reachable from the tip is a snapshot, merged-in ones too.

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

/// All snapshots of the branch whose tip is `tip`, oldest first: every
/// commit reachable from the tip (merge commits' other parents too, as
/// bup 0.33 lists them), in the reverse of `git rev-list`'s order, so the
/// tip is last. Linear history is its chain of first parents.
///
/// What each commit says (tree, parents, author and committer times) is
/// kept in [`CommitCache`]: a name with thousands of snapshots (one pack
/// per save) is then listed without opening a pack. A history in which a
/// commit is its own ancestor is a cycle: through the cache it means the
/// cache is damaged (commit ids hash their parents, so real commits cannot
/// loop), and the history is walked again from the commits alone,
/// rewriting the cache; from the commits alone it is an error naming the
/// commit.
pub fn snapshots(repo: &dyn Repo, tip: &ObjectId) -> Result<Vec<Snapshot>, ViewError> {
    let cache = CommitCache::load(repo);
    let walked = walk(repo, tip, &cache)?;
    let mut newest_first = match find_cycle(&walked.order) {
        None => {
            if walked.learned.len() >= CACHE_AFTER {
                cache.save(repo, walked.learned);
            }
            walked.order
        }
        Some(id) if walked.used_cache => {
            tracing::warn!(
                "{}: commit {id} is its own ancestor there: the commit cache is damaged; \
                 rebuilding it from the commits",
                CommitCache::path(repo).display()
            );
            let fresh = CommitCache::default();
            let again = walk(repo, tip, &fresh)?;
            if let Some(id) = find_cycle(&again.order) {
                return Err(history_loops(id));
            }
            // Always written: it replaces the damaged file.
            fresh.save(repo, again.learned);
            again.order
        }
        Some(id) => return Err(history_loops(id)),
    }
    .into_iter()
    .map(|(id, f)| Snapshot {
        name: crate::time::snapshot_name(f.author_time),
        commit: id,
        tree: f.tree,
        time: f.author_time,
    })
    .collect::<Vec<_>>();
    suffix_duplicates(&mut newest_first);
    newest_first.reverse();
    Ok(newest_first)
}

/// A walk of a branch's history.
struct Walked {
    /// Every commit reached, in `git rev-list` order (newest first).
    order: Vec<(ObjectId, CommitFacts)>,
    /// The facts read from commits (not the cache).
    learned: Vec<(ObjectId, CommitFacts)>,
    used_cache: bool,
}

fn history_loops(id: ObjectId) -> ViewError {
    ViewError::Malformed {
        id,
        detail: "the commit is its own ancestor (its history loops); the repository is damaged"
            .into(),
    }
}

/// Walks every commit reachable from `tip` in `git rev-list`'s default
/// order, which bup's names follow: the newest commit (by committer time)
/// of those waiting comes next, the earliest queued first among equal
/// times, and a commit's parents join the queue when it is listed. Facts
/// come from `cache` where it knows a commit and from the commit itself
/// otherwise. Every commit is queued once: the walk ends even when what it
/// reads loops ([`find_cycle`] tells).
fn walk(repo: &dyn Repo, tip: &ObjectId, cache: &CommitCache) -> Result<Walked, ViewError> {
    use std::cmp::Reverse;
    let mut walked = Walked {
        order: Vec::new(),
        learned: Vec::new(),
        used_cache: false,
    };
    let mut seen = std::collections::HashSet::new();
    // Ordered by (committer time, earliest queued); `waiting` holds what
    // the queue's sequence numbers stand for.
    let mut queue = std::collections::BinaryHeap::new();
    let mut waiting: Vec<Option<(ObjectId, CommitFacts)>> = Vec::new();
    let facts_of = |id: &ObjectId, walked: &mut Walked| -> Result<CommitFacts, ViewError> {
        if let Some(f) = cache.get(id) {
            walked.used_cache = true;
            return Ok(f.clone());
        }
        let f = CommitFacts::of(&read_commit(repo, id)?);
        walked.learned.push((*id, f.clone()));
        Ok(f)
    };
    seen.insert(*tip);
    let f = facts_of(tip, &mut walked)?;
    queue.push((f.commit_time, Reverse(0usize)));
    waiting.push(Some((*tip, f)));
    while let Some((_, Reverse(seq))) = queue.pop() {
        let Some((id, f)) = waiting.get_mut(seq).and_then(Option::take) else {
            continue;
        };
        for parent in &f.parents {
            if seen.insert(*parent) {
                let pf = facts_of(parent, &mut walked)?;
                queue.push((pf.commit_time, Reverse(waiting.len())));
                waiting.push(Some((*parent, pf)));
            }
        }
        walked.order.push((id, f));
    }
    Ok(walked)
}

/// A commit that is its own ancestor in what `order` says of parents, if
/// any: after taking away, again and again, the commits no other commit
/// names as a parent, those left lie on or above a cycle.
fn find_cycle(order: &[(ObjectId, CommitFacts)]) -> Option<ObjectId> {
    use std::collections::HashMap;
    let index: HashMap<ObjectId, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let mut children = vec![0usize; order.len()];
    for (_, f) in order {
        for p in &f.parents {
            if let Some(&i) = index.get(p) {
                children[i] += 1;
            }
        }
    }
    let mut free: Vec<usize> = (0..order.len()).filter(|&i| children[i] == 0).collect();
    let mut left = order.len();
    while let Some(i) = free.pop() {
        left -= 1;
        for p in &order[i].1.parents {
            if let Some(&j) = index.get(p) {
                children[j] -= 1;
                if children[j] == 0 {
                    free.push(j);
                }
            }
        }
    }
    if left == 0 {
        return None;
    }
    (0..order.len())
        .find(|&i| children[i] > 0)
        .map(|i| order[i].0)
}

/// After a branch was rewritten (`prune`): drops the commits of `gone`
/// from the commit cache and adds what the `new` commits say, so that the
/// next listing of the branch reads no pack and the cache does not keep
/// growing with commits no branch reaches. Only an existing cache is
/// updated (short histories keep none); a failed write is only logged, as
/// for every cache.
pub fn note_rewrite(repo: &dyn Repo, gone: &[ObjectId], new: &[(ObjectId, commit::Commit)]) {
    if !CommitCache::path(repo).exists() {
        return;
    }
    let mut cache = CommitCache::load(repo);
    for id in gone {
        cache.map.remove(id);
    }
    let learned = new
        .iter()
        .map(|(id, c)| (*id, CommitFacts::of(c)))
        .collect();
    cache.save(repo, learned);
}

/// File name under the repository's `rewind/` directory.
pub const COMMIT_CACHE_NAME: &str = "commits.cache";
const CACHE_MAGIC: &[u8; 8] = b"RWCMTS\0\x02";
/// A record without its parents: id, tree, author and committer times,
/// the number of parents.
const CACHE_RECORD: usize = 20 + 20 + 8 + 8 + 4;
/// Commits read from packs in one listing before the cache is (re)written:
/// short histories list fast anyway and leave no file behind.
const CACHE_AFTER: usize = 64;

/// What a listing needs from a commit. A commit's id is the hash of its
/// content, so these facts can never go stale: a cached entry is right for
/// as long as the commit exists, and only commits reachable from a current
/// tip are looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CommitFacts {
    tree: ObjectId,
    parents: Vec<ObjectId>,
    /// Names the snapshot.
    author_time: i64,
    /// Orders the walk, as git's.
    commit_time: i64,
}

impl CommitFacts {
    fn of(c: &commit::Commit) -> CommitFacts {
        CommitFacts {
            tree: c.tree,
            parents: c.parents.clone(),
            author_time: c.author.time,
            commit_time: c.committer.time,
        }
    }
}

/// `rewind/commits.cache`: magic, then per commit its id, tree, author
/// and committer times (big-endian i64), the number of parents (big-endian
/// u32) and the parents, then the SHA-1 of all of that. A cache: any doubt
/// (missing, torn, damaged, other version) means empty, and a failed write
/// is only logged.
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
        let id = |b: &[u8]| ObjectId::from_bytes(b).ok_or("bad id");
        let time = |b: &[u8]| b.try_into().map(i64::from_be_bytes).map_err(|_| "bad time");
        let mut rest = &body[8..];
        while !rest.is_empty() {
            if rest.len() < CACHE_RECORD {
                return Err("size does not fit its layout");
            }
            let (r, after) = rest.split_at(CACHE_RECORD);
            let count = u32::from_be_bytes(r[56..60].try_into().map_err(|_| "bad count")?);
            let len = (count as usize)
                .checked_mul(20)
                .filter(|&n| n <= after.len())
                .ok_or("size does not fit its layout")?;
            let (parents, after) = after.split_at(len);
            map.insert(
                id(&r[..20])?,
                CommitFacts {
                    tree: id(&r[20..40])?,
                    parents: parents.chunks_exact(20).map(id).collect::<Result<_, _>>()?,
                    author_time: time(&r[40..48])?,
                    commit_time: time(&r[48..56])?,
                },
            );
            rest = after;
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
        let mut out = Vec::with_capacity(8 + self.map.len() * (CACHE_RECORD + 20) + 20);
        out.extend_from_slice(CACHE_MAGIC);
        for (id, f) in &self.map {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&f.tree.0);
            out.extend_from_slice(&f.author_time.to_be_bytes());
            out.extend_from_slice(&f.commit_time.to_be_bytes());
            // A commit with more than 4 billion parents does not fit in a
            // pack either.
            out.extend_from_slice(&(f.parents.len() as u32).to_be_bytes());
            for p in &f.parents {
                out.extend_from_slice(&p.0);
            }
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

/// bup's rule: a run of adjacent snapshots (in `git rev-list` order) with
/// the same name gets `-N` suffixes, zero-padded to the digits of
/// `run - 1`, the newest highest.
///
/// Where that still leaves two snapshots one name (same-second saves that
/// are not adjacent: `--date` out of order, merged histories), bup shows
/// only one of them and the others cannot be reached; rewind numbers all
/// the snapshots sharing the date that way instead, as if they were one
/// run, so that every snapshot has a name of its own.
fn suffix_duplicates(newest_first: &mut [Snapshot]) {
    let dates: Vec<String> = newest_first.iter().map(|s| s.name.clone()).collect();
    suffix_runs(newest_first);
    let mut count = std::collections::HashMap::new();
    for s in newest_first.iter() {
        *count.entry(s.name.clone()).or_insert(0usize) += 1;
    }
    let clashing: std::collections::HashSet<&String> = newest_first
        .iter()
        .zip(&dates)
        .filter(|(s, _)| count[&s.name] > 1)
        .map(|(_, date)| date)
        .collect();
    if clashing.is_empty() {
        return;
    }
    let mut members: std::collections::HashMap<&String, usize> = std::collections::HashMap::new();
    for date in &dates {
        if clashing.contains(date) {
            *members.entry(date).or_insert(0) += 1;
        }
    }
    let mut left = members.clone();
    for (snap, date) in newest_first.iter_mut().zip(&dates) {
        if let Some(n) = left.get_mut(date) {
            *n -= 1;
            let width = (members[date] - 1).to_string().len();
            snap.name = format!("{date}-{:0width$}", *n);
        }
    }
}

fn suffix_runs(newest_first: &mut [Snapshot]) {
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
            cache.map.get_mut(&who).expect("cached").parents = vec![points_to];
            cache.save(&repo, Vec::new());
            assert_eq!(list(dir.clone()).expect("list past the loop"), first);
            // Rebuilt from the commits: it no longer loops.
            let repo = Repository::open(&dir).expect("open");
            let rebuilt = CommitCache::load(&repo);
            assert_eq!(rebuilt.map.len(), 100);
            assert_eq!(
                rebuilt.get(&tip).map(|f| f.parents.clone()),
                Some(vec![parent_of_tip])
            );
            assert_eq!(rebuilt.get(&oldest).map(|f| f.parents.len()), Some(0));
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

    /// bup names `a, b, a` (newest first) `a, b, a`, and its listing
    /// keeps one of the two `a`: the other snapshot cannot be reached.
    /// Every snapshot of such a date is numbered instead, newest highest;
    /// dates whose runs already give distinct names keep bup's names.
    #[test]
    fn same_date_apart_is_numbered_not_hidden() {
        let names = |list: &[&str]| {
            let mut l: Vec<_> = list.iter().map(|n| snap(n)).collect();
            suffix_duplicates(&mut l);
            l.into_iter().map(|s| s.name).collect::<Vec<_>>()
        };
        assert_eq!(names(&["a", "b", "a"]), ["a-1", "b", "a-0"]);
        assert_eq!(
            names(&["a", "a", "b", "a", "a", "c", "c"]),
            ["a-3", "a-2", "b", "a-1", "a-0", "c-1", "c-0"]
        );
        // bup's own names are unique here, and kept.
        assert_eq!(names(&["a", "a", "b", "a"]), ["a-1", "a-0", "b", "a"]);
    }
}
