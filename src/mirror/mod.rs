//! The off-site mirror: a repository's files copied to a bucket (S3, or a
//! folder), encrypted, and a repository rebuilt from them.
//!
//! A mirror of one repository is a set of objects under a prefix: one per
//! pack, pack index and loose object (immutable, so never re-sent), and a
//! [`manifest`] written last that lists them with the refs. A push is
//! copy-then-publish like a save: a bucket's manifest never names an object
//! the bucket lacks, whenever the push is killed. What gc removed locally
//! stays in the bucket for a grace period, so a mirror taken a week ago
//! still restores. Data flows one way in each direction:
//! repository files -> [`seal`] -> [`bucket`] (push) and back (pull).

pub mod bucket;
mod credentials;
mod local;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod seal;
pub mod status;
pub mod verify;
mod workers;

pub use bucket::{Bucket, BucketOptions};
pub use manifest::Manifest;
pub use seal::Sealer;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Usage(String),
    #[error("mirror key file {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("{url}: {detail}")]
    Bucket { url: String, detail: String },
    #[error("{what}: the key does not open it (this mirror was written with another key file)")]
    WrongKey { what: String },
    #[error("{what} is damaged: {detail} (run `rewind mirror verify`; push again to replace it)")]
    Damaged { what: String, detail: String },
    #[error(
        "{what} is missing from the bucket (run `rewind mirror verify`; push again to replace it)"
    )]
    Missing { what: String },
    #[error("{0}")]
    Seal(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] crate::repo::Error),
}

impl MirrorError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> MirrorError {
        let path = path.into();
        move |source| MirrorError::Io {
            action,
            path,
            source,
        }
    }
}

/// What a long mirror operation reports as it goes (a bar on a terminal,
/// nothing under cron).
pub trait Progress: Sync {
    /// The work ahead: `files` objects of `bytes` bytes in all.
    fn start(&self, files: u64, bytes: u64);
    /// `bytes` more were sent or received.
    fn bytes(&self, bytes: u64);
    /// One more object done.
    fn file_done(&self);
}

/// For callers that show nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: u64, _: u64) {}
    fn bytes(&self, _: u64) {}
    fn file_done(&self) {}
}

/// Reads the bucket's manifest, if there is one, and checks it was written
/// the way `sealer` reads (encrypted or plain).
pub fn read_manifest(bucket: &Bucket, sealer: &Sealer) -> Result<Option<Manifest>, MirrorError> {
    use std::io::Read;
    let what = format!("{}/{}", bucket.url(), seal::MANIFEST_NAME);
    let Some(stored) = bucket.get_small(seal::MANIFEST_NAME, manifest::MAX_BYTES + (1 << 20))?
    else {
        bucket.check_exists()?;
        return Ok(None);
    };
    let sealed = stored.starts_with(b"age-encryption.org/");
    if sealed != sealer.is_encrypted() {
        return Err(MirrorError::Usage(if sealed {
            format!(
                "{}: this mirror is encrypted: give its key file with --key (or `key` in [mirror])",
                bucket.url()
            )
        } else {
            format!("{}: this mirror is not encrypted; a key cannot be added to it: mirror to a new prefix, or use --plain", bucket.url())
        }));
    }
    let mut plain = Vec::new();
    sealer
        .open(&stored[..], &what)?
        .take(manifest::MAX_BYTES)
        .read_to_end(&mut plain)
        .map_err(|e| MirrorError::Damaged {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    Manifest::decode(&plain, &what, sealer).map(Some)
}

/// The bucket's manifest, which must be there (pull, verify).
pub fn existing_manifest(bucket: &Bucket, sealer: &Sealer) -> Result<Manifest, MirrorError> {
    read_manifest(bucket, sealer)?.ok_or_else(|| MirrorError::Missing {
        what: format!(
            "{}/{} (no mirror there: check the URL)",
            bucket.url(),
            seal::MANIFEST_NAME
        ),
    })
}

/// Seals and stores `manifest` (one request: readers see the old one or
/// this one).
pub fn write_manifest(
    bucket: &Bucket,
    sealer: &Sealer,
    manifest: &Manifest,
) -> Result<(), MirrorError> {
    bucket.put_small(
        seal::MANIFEST_NAME,
        sealer.seal_bytes(&manifest.encode(sealer))?,
    )
}
