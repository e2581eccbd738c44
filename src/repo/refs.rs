//! Refs: names, loose ref files, `packed-refs`, and compare-and-swap updates.
//!
//! Updates follow git's locking convention so git, bup and we exclude each
//! other: create `<ref>.lock` with O_EXCL, re-read the current value under the
//! lock, compare with what the caller expects, write the new value into the
//! lock file, fsync, rename it over the ref, fsync the directory. A loose ref
//! shadows the same name in `packed-refs`; we never rewrite `packed-refs`.
//!
//! A process killed while it holds `<ref>.lock` leaves the file behind, and
//! git's convention alone would then block every later save until an admin
//! removes it. So rewind also holds a kernel lock (flock, released when the
//! process dies) on `rewind/refs.guard` while it holds any ref lock: a ref
//! lock that outlives a wait while we hold the guard was not made by a live
//! rewind, and is removed as stale.

use super::fsutil::fsync_dir;
use super::Error;
use crate::object::ObjectId;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for a lock held by someone else before giving up (or,
/// holding the guard, before calling it stale). git and bup hold ref locks
/// for milliseconds.
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the guard; other rewinds hold it for at most about
/// LOCK_TIMEOUT.
const GUARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The guard file, relative to the git directory.
const GUARD_PATH: &str = "rewind/refs.guard";
/// Symbolic refs nest at most this deep (git uses 5 as well).
const MAX_SYMREF_DEPTH: usize = 5;

/// Checks `name` against git's `check-ref-format` rules (full names only).
pub fn check_ref_name(name: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::BadRefName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "@" {
        return bad("is \"@\"");
    }
    if name.starts_with('/') || name.ends_with('/') {
        return bad("begins or ends with '/'");
    }
    if name.ends_with('.') {
        return bad("ends with '.'");
    }
    if name.contains("..") {
        return bad("contains \"..\"");
    }
    if name.contains("@{") {
        return bad("contains \"@{\"");
    }
    for c in name.chars() {
        if c.is_ascii_control() {
            return bad("contains a control character");
        }
        if matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\') {
            return bad("contains one of space ~ ^ : ? * [ \\");
        }
    }
    for component in name.split('/') {
        if component.is_empty() {
            return bad("contains an empty component (\"//\")");
        }
        if component.starts_with('.') {
            return bad("has a component starting with '.'");
        }
        if component.ends_with(".lock") {
            return bad("has a component ending with \".lock\"");
        }
    }
    Ok(())
}

/// Full names we update: below `refs/`, with at least one more component.
fn check_updatable(name: &str) -> Result<(), Error> {
    check_ref_name(name)?;
    if !name.starts_with("refs/") || name.len() <= "refs/".len() {
        return Err(Error::BadRefName {
            name: name.to_string(),
            reason: "must start with \"refs/\"",
        });
    }
    Ok(())
}

/// What a loose ref file holds.
enum Loose {
    Id(ObjectId),
    Symbolic(String),
}

/// Reads the loose ref `name` in `git_dir`; `None` if there is no such file.
fn read_loose(git_dir: &Path, name: &str) -> Result<Option<Loose>, Error> {
    let path = git_dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::IsADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io("reading ref", path)(e)),
    };
    let text = text.trim_ascii_end();
    if let Some(target) = text.strip_prefix(b"ref: ") {
        let target =
            String::from_utf8(target.trim_ascii().to_vec()).map_err(|_| Error::BadRef {
                path: path.clone(),
                detail: "symbolic ref target is not UTF-8".into(),
            })?;
        return Ok(Some(Loose::Symbolic(target)));
    }
    match ObjectId::from_hex(text) {
        Some(id) => Ok(Some(Loose::Id(id))),
        None => Err(Error::BadRef {
            path,
            detail: format!("not an object id: {:?}", String::from_utf8_lossy(text)),
        }),
    }
}

/// All entries of `packed-refs` (empty if the file does not exist), in file order.
pub(crate) fn read_packed(git_dir: &Path) -> Result<Vec<(String, ObjectId)>, Error> {
    let path = git_dir.join("packed-refs");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", path)(e)),
    };
    let bad = |line: usize, what: &str| Error::BadRef {
        path: path.clone(),
        detail: format!("line {line} {what}: repair or remove that line"),
    };
    // git refuses the same: a last line without its newline was cut short.
    let Some(body) = text.strip_suffix(b"\n") else {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let lines = text.split(|&b| b == b'\n').count();
        return Err(bad(lines, "is unterminated (the file was cut short?)"));
    };
    let mut out = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        // Only the first line may be the "# pack-refs with:" traits header:
        // a '#' further down is a ref line whose start was damaged, and
        // skipping it would hide a backup without a word.
        if n == 0 {
            if let Some(traits) = line.strip_prefix(b"# pack-refs with:") {
                // Traits are words like "peeled" and "sorted"; anything
                // else (a ref line joined on by a lost newline) is damage.
                if !traits
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b == b'-' || b == b' ')
                {
                    return Err(bad(1, "is not a \"# pack-refs with:\" header"));
                }
                continue;
            }
        }
        // '^' is the peeled id of the (annotated) tag on the line above.
        if let Some(peeled) = line.strip_prefix(b"^") {
            if out.is_empty()
                || ObjectId::from_hex(peeled.strip_suffix(b"\r").unwrap_or(peeled)).is_none()
            {
                return Err(bad(n + 1, "is not \"^<40 hex digits>\" after a ref"));
            }
            continue;
        }
        match parse_packed_line(line) {
            Some((id, name)) => {
                check_ref_name(name)
                    .map_err(|e| bad(n + 1, &format!("names no valid ref ({e})")))?;
                out.push((name.to_string(), id));
            }
            None => return Err(bad(n + 1, "is not \"<40 hex digits> <ref name>\"")),
        }
    }
    Ok(out)
}

/// One `<40 hex digits> <name>` line of `packed-refs`; `None` for
/// anything else, whatever its length (every slice is checked: a short
/// line once panicked every command that read refs).
fn parse_packed_line(line: &[u8]) -> Option<(ObjectId, &str)> {
    let (hex, rest) = line.split_at_checked(40)?;
    let name = rest.strip_prefix(b" ")?;
    let name = std::str::from_utf8(name).ok()?.trim_end_matches('\r');
    if name.is_empty() {
        return None;
    }
    Some((ObjectId::from_hex(hex)?, name))
}

/// Resolves `name` (following symbolic refs): loose file first, then packed-refs.
pub(crate) fn read_ref(git_dir: &Path, name: &str) -> Result<Option<ObjectId>, Error> {
    let mut name = name.to_string();
    for _ in 0..=MAX_SYMREF_DEPTH {
        if name != "HEAD" {
            check_ref_name(&name)?;
        }
        match read_loose(git_dir, &name)? {
            Some(Loose::Id(id)) => return Ok(Some(id)),
            Some(Loose::Symbolic(target)) => name = target,
            None => {
                return Ok(read_packed(git_dir)?
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, id)| id))
            }
        }
    }
    Err(Error::BadRef {
        path: git_dir.join(&name),
        detail: format!("symbolic refs nested deeper than {MAX_SYMREF_DEPTH}"),
    })
}

/// Refs whose full name starts with `prefix`, loose and packed merged (loose
/// wins), sorted by name. Dangling symbolic refs are left out.
pub(crate) fn list_refs(git_dir: &Path, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
    let mut found = std::collections::BTreeMap::new();
    for (name, id) in read_packed(git_dir)? {
        if name.starts_with(prefix) {
            found.insert(name, id);
        }
    }
    // Walk the deepest directory that the prefix fully names.
    let dir_part = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut loose = Vec::new();
    walk(&git_dir.join(dir_part), dir_part, &mut loose)?;
    for name in loose {
        if !name.starts_with(prefix) || check_ref_name(&name).is_err() {
            continue;
        }
        if let Some(id) = read_ref(git_dir, &name)? {
            found.insert(name, id);
        }
    }
    Ok(found.into_iter().collect())
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(Error::io("listing refs in", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("listing refs in", dir))?;
        let Ok(file_name) = entry.file_name().into_string() else {
            continue; // not UTF-8: cannot be a valid ref name
        };
        let name = if rel.is_empty() {
            file_name
        } else {
            format!("{rel}/{file_name}")
        };
        let ft = entry
            .file_type()
            .map_err(Error::io("listing refs in", dir))?;
        if ft.is_dir() {
            walk(&entry.path(), &name, out)?;
        } else if ft.is_file() && !name.ends_with(".lock") {
            out.push(name);
        }
    }
    Ok(())
}

/// A held `<ref>.lock`; removed on drop unless committed.
pub(crate) struct RefLock {
    lock_path: PathBuf,
    target: PathBuf,
    file: Option<File>,
    /// Declared last: released after the lock file is gone.
    _guard: Guard,
}

/// An exclusive flock on `rewind/refs.guard`, held while a ref lock is.
struct Guard {
    _file: File,
}

impl Guard {
    fn acquire(git_dir: &Path) -> Result<Guard, Error> {
        let path = git_dir.join(GUARD_PATH);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Guard { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < GUARD_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::RefLocked { lock: path });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("locking", path)(e)),
            }
        }
    }
}

impl RefLock {
    /// Creates the lock file for `target` (a ref file inside `git_dir`),
    /// waiting a while if another process holds it, and removing it if it
    /// was left behind by a process that died.
    pub(crate) fn acquire(git_dir: &Path, target: &Path) -> Result<RefLock, Error> {
        let mut lock_path = target.as_os_str().to_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating ref directory", parent))?;
        }
        let guard = Guard::acquire(git_dir)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut removed_stale = false;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(file) => {
                    return Ok(RefLock {
                        lock_path,
                        target: target.to_path_buf(),
                        file: Some(file),
                        _guard: guard,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if start.elapsed() >= LOCK_TIMEOUT {
                        // No live rewind holds it (we hold the guard), and
                        // git or bup would have finished long ago.
                        if removed_stale {
                            return Err(Error::RefLocked { lock: lock_path });
                        }
                        tracing::warn!(
                            "removing stale lock {} left by an interrupted process",
                            lock_path.display()
                        );
                        match std::fs::remove_file(&lock_path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(Error::io("removing stale lock", lock_path)(e)),
                        }
                        removed_stale = true;
                        continue;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::io("creating lock", lock_path)(e)),
            }
        }
    }

    /// Writes `contents` as the new value and renames it into place.
    pub(crate) fn commit(mut self, contents: &[u8]) -> Result<(), Error> {
        let mut file = self.file.take().expect("lock file is open until commit");
        file.write_all(contents)
            .and_then(|_| file.sync_all())
            .map_err(Error::io("writing", &self.lock_path))?;
        drop(file);
        std::fs::rename(&self.lock_path, &self.target)
            .map_err(Error::io("renaming lock over", &self.target))?;
        // The lock file is gone now; do not remove anything on drop.
        self.lock_path = PathBuf::new();
        if let Some(dir) = self.target.parent() {
            fsync_dir(dir)?;
        }
        Ok(())
    }
}

impl Drop for RefLock {
    fn drop(&mut self) {
        if !self.lock_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

/// Moves `name` to `new` if it currently is `expected_old` (`None`: the ref
/// must not exist yet).
pub(crate) fn update_ref(
    git_dir: &Path,
    name: &str,
    new: ObjectId,
    expected_old: Option<ObjectId>,
) -> Result<(), Error> {
    check_updatable(name)?;
    let path = git_dir.join(name);
    let lock = RefLock::acquire(git_dir, &path)?;
    let current = match read_loose(git_dir, name)? {
        Some(Loose::Id(id)) => Some(id),
        Some(Loose::Symbolic(_)) => {
            return Err(Error::BadRef {
                path,
                detail: "is a symbolic ref; refusing to overwrite it".into(),
            })
        }
        None => read_packed(git_dir)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id),
    };
    if current != expected_old {
        return Err(Error::RefChanged {
            name: name.to_string(),
            expected: expected_old,
            found: current,
        });
    }
    lock.commit(format!("{new}\n").as_bytes())
}

/// Deletes `name` if it currently is `expected_old`. Only loose refs:
/// rewind never rewrites `packed-refs` (which `git gc` writes).
pub(crate) fn delete_ref(git_dir: &Path, name: &str, expected_old: ObjectId) -> Result<(), Error> {
    check_updatable(name)?;
    let path = git_dir.join(name);
    let _lock = RefLock::acquire(git_dir, &path)?;
    let current = match read_loose(git_dir, name)? {
        Some(Loose::Id(id)) => Some(id),
        Some(Loose::Symbolic(_)) => {
            return Err(Error::BadRef {
                path,
                detail: "is a symbolic ref; refusing to delete it".into(),
            })
        }
        None => {
            if read_packed(git_dir)?.iter().any(|(n, _)| n == name) {
                return Err(Error::BadRef {
                    path: git_dir.join("packed-refs"),
                    detail: format!("{name} is a packed ref, which rewind does not delete"),
                });
            }
            None
        }
    };
    if current != Some(expected_old) {
        return Err(Error::RefChanged {
            name: name.to_string(),
            expected: Some(expected_old),
            found: current,
        });
    }
    std::fs::remove_file(&path).map_err(Error::io("removing ref", &path))?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The branch HEAD names (`refs/heads/<branch>`), if HEAD is symbolic.
pub(crate) fn head_branch(git_dir: &Path) -> Result<Option<String>, Error> {
    Ok(match read_loose(git_dir, "HEAD")? {
        Some(Loose::Symbolic(target)) => target.strip_prefix("refs/heads/").map(str::to_string),
        _ => None,
    })
}

/// Points HEAD at `refs/heads/<branch>` if HEAD is symbolic and its target
/// does not exist (so `git clone` checks out something real). A detached
/// HEAD or one naming an existing branch is left alone. Returns whether HEAD changed.
pub(crate) fn set_head_if_dangling(git_dir: &Path, branch: &str) -> Result<bool, Error> {
    let target = format!("refs/heads/{branch}");
    check_updatable(&target)?;
    let head = git_dir.join("HEAD");
    let lock = RefLock::acquire(git_dir, &head)?;
    match read_loose(git_dir, "HEAD")? {
        Some(Loose::Symbolic(current))
            if current == target || read_ref(git_dir, &current)?.is_some() =>
        {
            return Ok(false);
        }
        Some(Loose::Symbolic(_)) => {}
        Some(Loose::Id(_)) => return Ok(false),
        None => {}
    }
    lock.commit(format!("ref: {target}\n").as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(text: &[u8]) -> Result<Vec<(String, ObjectId)>, Error> {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("packed-refs"), text).expect("write");
        read_packed(tmp.path())
    }

    /// Every line shorter than "<40 hex> <name>" used to slice past its end
    /// (`line[41..]` was evaluated even when the length check failed).
    #[test]
    fn packed_refs_short_line_is_an_error_not_a_panic() {
        let id = "55ff5a47e4242967ea6df6be01c76efb22fe3cfc";
        let good = format!("# pack-refs with: peeled\n{id} refs/heads/main\n^{id}\n");
        assert_eq!(
            packed(good.as_bytes()).expect("valid"),
            [(
                "refs/heads/main".to_string(),
                ObjectId::from_hex(id.as_bytes()).unwrap()
            )]
        );
        for len in 1..=41 {
            let line = format!("{good}{}\n", &format!("{id} x")[..len]);
            match packed(line.as_bytes()) {
                Err(Error::BadRef { path, detail }) => {
                    assert!(path.ends_with("packed-refs"), "{path:?}");
                    assert!(detail.starts_with("line 4 "), "{detail}");
                }
                other => panic!("a {len}-byte line gave {other:?}"),
            }
        }
        // Non-ASCII where the separator or the id should be: no char
        // boundary is ever assumed.
        for bad in ["\u{e9}".repeat(30), format!("{}\u{e9}x", &id[..39])] {
            assert!(packed(format!("{bad}\n").as_bytes()).is_err(), "{bad}");
        }
        assert!(packed(format!("{id}\trefs/heads/x\n").as_bytes()).is_err());
        assert!(packed(format!("{id} \n").as_bytes()).is_err());
        assert!(packed(b"\xff\xfe\n").is_err());
    }

    /// Found by the damage test: git refuses these packed-refs files
    /// ("unexpected line", "unterminated line", "packed refname is
    /// dangerous"); rewind silently listed something else.
    #[test]
    fn packed_refs_damage_git_refuses_is_an_error_not_a_different_listing() {
        let id = "55ff5a47e4242967ea6df6be01c76efb22fe3cfc";
        let header = "# pack-refs with: peeled fully-peeled sorted \n";
        // The header's newline zeroed: the first ref joins the header.
        let joined = format!("# pack-refs with: peeled{id} refs/heads/one\n{id} refs/heads/two\n");
        // Cut mid-line (no final newline).
        let cut = format!("{header}{id} refs/heads/one\n{id} refs/he");
        // A name with a control character or a NUL.
        let control = format!("{header}{id} refs/heads/two\x0b\n");
        let nul = format!("{header}{id} refs/heads\0\0x\n");
        // A '#' line that is not the first.
        let late_hash = format!("{header}{id} refs/heads/one\n# {id} refs/heads/two\n");
        // A peeled line before any ref, or not an id.
        let orphan = format!("{header}^{id}\n{id} refs/heads/one\n");
        let bad_peel = format!("{header}{id} refs/tags/v1\n^{}\n", &id[..39]);
        for (what, text) in [
            ("joined header", joined),
            ("cut", cut),
            ("control", control),
            ("nul", nul),
            ("late hash", late_hash),
            ("orphan peel", orphan),
            ("bad peel", bad_peel),
        ] {
            match packed(text.as_bytes()) {
                Err(Error::BadRef { detail, .. }) => {
                    assert!(detail.starts_with("line "), "{what}: {detail}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // What git writes is still read.
        let good = format!("{header}{id} refs/heads/one\n{id} refs/tags/v1\n^{id}\n");
        assert_eq!(packed(good.as_bytes()).expect("valid").len(), 2);
        assert!(packed(b"").expect("empty").is_empty());
    }

    #[test]
    fn ref_name_rules() {
        for ok in [
            "refs/heads/main",
            "refs/heads/a-b_c.d",
            "refs/tags/v1.0",
            "refs/heads/x/y",
            "HEAD",
        ] {
            assert!(check_ref_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "@",
            "/refs/x",
            "refs/x/",
            "refs/x.",
            "refs/a..b",
            "refs/a@{b",
            "refs/a b",
            "refs/a~1",
            "refs/a^",
            "refs/a:b",
            "refs/a?",
            "refs/a*",
            "refs/a[",
            "refs/a\\b",
            "refs/a\x01",
            "refs/a\x7f",
            "refs//a",
            "refs/.hidden",
            "refs/a.lock",
            "refs/a.lock/b",
        ] {
            assert!(
                matches!(check_ref_name(bad), Err(Error::BadRefName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(check_updatable("HEAD").is_err());
        assert!(check_updatable("refs/").is_err());
    }
}
