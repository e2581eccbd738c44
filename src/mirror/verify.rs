//! `rewind mirror verify`: every object the manifest names is read back,
//! decrypted and checked against its size and checksum (what a restore
//! from the bucket would need), and every object kept for its grace period
//! is there.

use super::manifest::FileEntry;
use super::{workers, Bucket, MirrorError, Progress, Sealer};
use std::io::{Read, Write};

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub files_checked: u64,
    pub bytes_checked: u64,
    /// One line per object that is missing, damaged or unreadable.
    pub problems: Vec<String>,
}

pub fn verify(
    bucket: &Bucket,
    sealer: &Sealer,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<VerifyReport, MirrorError> {
    let manifest = super::existing_manifest(bucket, sealer)?;
    let files: Vec<(&String, &FileEntry)> = manifest.files.iter().collect();
    progress.start(files.len() as u64, manifest.stored_bytes());
    let outcomes = workers::each(&files, jobs, |(path, entry)| {
        let outcome = check_file(bucket, sealer, path, entry, progress);
        progress.file_done();
        match outcome {
            Ok(()) => Ok(None),
            // A store that cannot be reached stops the check; a bad object
            // is a finding, and the others are still checked.
            Err(e @ MirrorError::Bucket { .. }) => Err(e),
            Err(e) => Ok(Some(e.to_string())),
        }
    })?;
    let mut report = VerifyReport {
        files_checked: files.len() as u64,
        bytes_checked: manifest.stored_bytes(),
        problems: outcomes.into_iter().flatten().collect(),
    };
    for (path, retired) in &manifest.retired {
        let name = sealer.object_name(path);
        if bucket.size_of(&name)? != Some(retired.stored_size) {
            report.problems.push(format!(
                "{}/{name} ({path}, kept for the grace period) is missing or has the wrong size",
                bucket.url()
            ));
        }
    }
    Ok(report)
}

fn check_file(
    bucket: &Bucket,
    sealer: &Sealer,
    path: &str,
    entry: &FileEntry,
    progress: &dyn Progress,
) -> Result<(), MirrorError> {
    read_checked(bucket, sealer, path, entry, &mut std::io::sink(), progress)
}

/// Downloads the object of the file at `path` and writes its plaintext to
/// `out`, checking it on the way: the stored size, every age chunk's tag,
/// the size and the BLAKE3 checksum the manifest gives. `out` may have
/// received bytes when this fails: the caller writes to a temporary file.
pub(super) fn read_checked(
    bucket: &Bucket,
    sealer: &Sealer,
    path: &str,
    entry: &FileEntry,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<(), MirrorError> {
    let name = sealer.object_name(path);
    let what = format!("{}/{name} ({path})", bucket.url());
    let download = bucket.download(&name)?;
    if download.size != entry.stored_size {
        return Err(MirrorError::Damaged {
            what,
            detail: format!(
                "{} bytes in the bucket, the manifest says {}",
                download.size, entry.stored_size
            ),
        });
    }
    let counted = CountedRead {
        inner: download,
        progress,
    };
    let mut plain = sealer.open(counted, &what)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = plain.read(&mut buf).map_err(|e| {
            super::bucket::TransferFailed::behind(&e).unwrap_or_else(|| MirrorError::Damaged {
                what: what.clone(),
                detail: e.to_string(),
            })
        })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > entry.size {
            return Err(MirrorError::Damaged {
                what,
                detail: format!("longer than the {} bytes the manifest says", entry.size),
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| MirrorError::Seal(format!("writing {path}: {e}")))?;
    }
    if total != entry.size || *hasher.finalize().as_bytes() != entry.blake3 {
        return Err(MirrorError::Damaged {
            what,
            detail: "its content does not match the manifest's checksum".into(),
        });
    }
    Ok(())
}

/// Counts the bytes that arrive, for the progress bar.
struct CountedRead<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountedRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}
