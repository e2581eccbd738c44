//! The repositories directly under one directory: a backup server's
//! `/home/backup`, holding one repository per instance (`web`, `db`, ...).
//! `rewind status --repos` and `rewind mount --repos` start from this list.
//!
//! A subdirectory counts when it has a repository's layout (see
//! [`Repository::looks_like`]); other entries (files, a `lost+found`, a
//! half-made directory) are left out without a word. A subdirectory that
//! cannot even be listed is kept, as [`Found::Unreadable`]: whether it holds
//! a repository is unknown, and monitoring must say so rather than forget it.

use super::Repository;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One entry of the directory that is, or may be, a repository.
#[derive(Debug)]
pub struct Candidate {
    /// The entry's name in the directory (the repository's name).
    pub name: OsString,
    pub path: PathBuf,
    /// Device and inode of the directory: a repository removed and made
    /// again under the same name is a different one.
    pub identity: (u64, u64),
    pub found: Found,
}

#[derive(Debug)]
pub enum Found {
    Repository,
    /// The directory could not be listed; the error, on one line.
    Unreadable(String),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list repositories under {}: {source}", dir.display())]
pub struct ListError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The repositories under `dir`, sorted by name. Symbolic links to
/// directories count (an admin may link a repository kept elsewhere).
pub fn list(dir: &Path) -> Result<Vec<Candidate>, ListError> {
    let fail = |source| ListError {
        dir: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let path = entry.path();
        // A dangling link or an entry removed meanwhile: not a repository.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let found = match std::fs::read_dir(&path) {
            Err(e) => Found::Unreadable(e.to_string()),
            Ok(_) if Repository::looks_like(&path) => Found::Repository,
            Ok(_) => continue,
        };
        out.push(Candidate {
            name: entry.file_name(),
            path,
            identity: (meta.dev(), meta.ino()),
            found,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repositories_are_listed_and_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(&dir.path().join("web")).unwrap();
        Repository::init(&dir.path().join("db")).unwrap();
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("db"), dir.path().join("linked")).unwrap();
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|c| c.name.into_string().unwrap())
            .collect();
        assert_eq!(names, ["db", "linked", "web"]);
        let e = list(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("cannot list repositories under "));
    }
}
