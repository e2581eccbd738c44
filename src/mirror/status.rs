//! `rewind mirror status`: how a repository and its mirror differ, from the
//! manifest and a listing of the repository (no bucket listing, no object
//! read): cheap enough for a monitoring check.

use super::local::Inventory;
use super::{Bucket, MirrorError, Sealer};
use crate::repo::Repository;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorState {
    /// When the bucket's manifest was written; `None`: no mirror yet.
    pub pushed: Option<i64>,
    /// Files the repository has that the mirror lacks, and their bytes.
    pub files_behind: u64,
    pub bytes_behind: u64,
    /// The mirror's refs or HEAD differ from the repository's.
    pub refs_differ: bool,
    /// Bytes the bucket holds for the live files, and for retired ones.
    pub stored_bytes: u64,
    pub retired_bytes: u64,
}

impl MirrorState {
    pub fn in_sync(&self) -> bool {
        self.pushed.is_some() && self.files_behind == 0 && !self.refs_differ
    }
}

pub fn status(
    repo: &Repository,
    bucket: &Bucket,
    sealer: &Sealer,
) -> Result<MirrorState, MirrorError> {
    let local = Inventory::read(repo)?;
    let manifest = super::read_manifest(bucket, sealer)?;
    let (mut files_behind, mut bytes_behind) = (0, 0);
    for path in local.files() {
        if !manifest
            .as_ref()
            .is_some_and(|m| m.files.contains_key(path))
        {
            files_behind += 1;
            bytes_behind += local.size(path)?;
        }
    }
    Ok(MirrorState {
        pushed: manifest.as_ref().map(|m| m.created),
        files_behind,
        bytes_behind,
        refs_differ: manifest
            .as_ref()
            .is_none_or(|m| m.refs != local.refs || m.head != local.head),
        stored_bytes: manifest.as_ref().map_or(0, |m| m.stored_bytes()),
        retired_bytes: manifest
            .as_ref()
            .map_or(0, |m| m.retired.values().map(|r| r.stored_size).sum()),
    })
}
