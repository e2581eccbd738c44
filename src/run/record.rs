//! What the last `rewind run` did for each backup, kept in
//! `<repo>/rewind/runs.toml` so that `rewind status` can report a backup
//! whose last run failed (its newest snapshot alone would look merely old)
//! and the size of what was saved.
//!
//! Rewritten whole, atomically (temporary file, fsync, rename), after each
//! backup of a run; the run lock serialises writers.

use crate::repo::{Repo, SharedFile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Result {
    /// Saved without warnings.
    Ok,
    /// Saved, but some files could not be read.
    Partial,
    /// Nothing was committed.
    Failed,
}

impl Result {
    pub fn as_str(self) -> &'static str {
        match self {
            Result::Ok => "ok",
            Result::Partial => "partial",
            Result::Failed => "failed",
        }
    }
}

/// The last run of one backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the save started, epoch seconds.
    pub time: i64,
    pub result: Result,
    /// The error that failed the backup, on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: u64,
    pub duration_seconds: f64,
    /// The last snapshot a run made of this backup (carried over from the
    /// previous record when this run failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<Saved>,
}

/// Figures of a snapshot made by a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub commit: String,
    /// Snapshot (author) time, epoch seconds.
    pub time: i64,
    /// Files in the snapshot (dumps included).
    pub files: u64,
    /// Bytes read from new or changed files.
    pub bytes_read: u64,
    /// Bytes of new objects the save added to the repository (compressed).
    pub bytes_added: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    #[serde(default)]
    pub backup: BTreeMap<String, Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read run records {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("run records {} are damaged: {detail}; delete the file (the next run writes it again)", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("cannot read or write run records: {0}")]
    Repo(#[from] crate::repo::Error),
}

pub fn records_path(repo: &Path) -> PathBuf {
    repo.join("rewind").join("runs.toml")
}

/// The records of the local repository at `repo`; empty when no run wrote any.
pub fn load(repo: &Path) -> std::result::Result<Records, RecordError> {
    let path = records_path(repo);
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
        Err(source) => Err(RecordError::Read { path, source }),
    }
}

/// The records of `repo`, wherever it is; empty when no run wrote any.
pub fn load_from(repo: &dyn Repo) -> std::result::Result<Records, RecordError> {
    let path = PathBuf::from(format!("{}/rewind/runs.toml", repo.location()));
    match repo.read_shared(SharedFile::Runs)? {
        Some(bytes) => parse(&path, bytes),
        None => Ok(Records::default()),
    }
}

/// Whether `bytes` are run records (a server checks what a client sends).
pub fn parse_bytes(bytes: &[u8]) -> std::result::Result<Records, RecordError> {
    parse(Path::new("runs.toml"), bytes.to_vec())
}

/// Decodes the bytes of `path` (named in errors).
fn parse(path: &Path, bytes: Vec<u8>) -> std::result::Result<Records, RecordError> {
    let path = path.to_path_buf();
    // Bytes that are not text are damage like any other, with the same
    // advice, not a failure to read the file.
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(RecordError::Damaged {
                path,
                detail: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            })
        }
    };
    toml::from_str(&text).map_err(|e| RecordError::Damaged {
        path,
        detail: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

/// Replaces the records of `repo` (atomically; a server does the same).
pub fn store(repo: &dyn Repo, records: &Records) -> std::result::Result<(), RecordError> {
    let mut text =
        String::from("# Written by `rewind run` after each backup; read by `rewind status`.\n");
    // Serialising plain strings, numbers and maps cannot fail.
    text.push_str(&toml::to_string(records).expect("run records serialise"));
    repo.write_shared(SharedFile::Runs, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_records_that_are_not_utf8_are_damaged_with_the_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = records_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"[backup.db]\ntime = 1\xff\n").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, RecordError::Damaged { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("not UTF-8") && text.contains("delete the file"),
            "{text}"
        );
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Records::default());
        let mut records = Records::default();
        records.backup.insert(
            "db".into(),
            Record {
                time: 1_700_000_000,
                result: Result::Failed,
                error: Some("dump `false` exited with status 1".into()),
                warnings: 0,
                duration_seconds: 0.25,
                saved: Some(Saved {
                    commit: "00".repeat(20),
                    time: 1_699_990_000,
                    files: 2,
                    bytes_read: 10,
                    bytes_added: 5,
                }),
            },
        );
        let repo = crate::repo::Repository::init(dir.path()).unwrap();
        store(&repo, &records).unwrap();
        assert_eq!(load(dir.path()).unwrap(), records);
        std::fs::write(records_path(dir.path()), "backup = 3").unwrap();
        assert!(matches!(load(dir.path()), Err(RecordError::Damaged { .. })));
    }
}
