//! `rewind mirror push`: send what the bucket lacks, then the manifest.
//!
//! 1. Hold gc off (shared lock) and other pushes of this repository out.
//! 2. Read the local repository (refs first) and the bucket's manifest.
//! 3. Upload every pack, index and loose object the manifest lacks,
//!    several at once, each checked (the store verifies each request's
//!    SHA-256; the stored size is compared after). An object already there
//!    under its name (a killed push's) is not sent again.
//! 4. Write the new manifest: from now on the bucket serves the new refs.
//! 5. Only then delete the objects of files gc removed locally whose grace
//!    period is over; the manifest names them as doomed until they are.

use super::local::Inventory;
use super::manifest::{FileEntry, Manifest, Retired};
use super::{workers, Bucket, MirrorError, Progress, Sealer};
use crate::repo::lockfile::{LockFile, Mode};
use crate::repo::{gc_lock, Repository};
use std::io::{Read, Write};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// How long a file gc removed stays in the bucket (seconds).
    pub grace_secs: i64,
    /// Transfers at once.
    pub jobs: usize,
    /// The time of this push (epoch seconds).
    pub now: i64,
}

pub const DEFAULT_GRACE_SECS: i64 = 14 * 86400;
pub const DEFAULT_JOBS: usize = 8;

/// More files to send than this, and the bucket is listed once to find
/// those an interrupted push sent already.
const LIST_ABOVE: usize = 64;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub files_sent: u64,
    pub bytes_sent: u64,
    /// Files the bucket had already (from an earlier or interrupted push).
    pub files_skipped: u64,
    pub bytes_skipped: u64,
    /// Objects deleted from the bucket (grace period over).
    pub files_deleted: u64,
    /// Whether a new manifest was written (false: the bucket was current).
    pub published: bool,
}

pub fn push(
    repo: &Repository,
    bucket: &Bucket,
    sealer: &Sealer,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport, MirrorError> {
    let lock_path = repo.path().join("rewind/mirror.lock");
    let lock = LockFile::open(&lock_path).map_err(MirrorError::io("opening", &lock_path))?;
    if !lock
        .try_lock(Mode::Exclusive)
        .map_err(MirrorError::io("locking", &lock_path))?
    {
        return Err(MirrorError::Usage(format!(
            "another mirror push of {} is running (it holds {}); try again when it ends",
            repo.path().display(),
            lock_path.display()
        )));
    }
    let _gc_held_off = gc_lock::hold_off_gc(repo)?;
    let local = Inventory::read(repo)?;
    let old = super::read_manifest(bucket, sealer)?
        .unwrap_or_else(|| Manifest::new(opts.now, sealer.is_encrypted()));

    let mut report = PushReport::default();
    let mut new = Manifest::new(opts.now, sealer.is_encrypted());
    new.head = local.head.clone();
    new.refs = local.refs.clone();
    new.small = local.small.clone();

    // Each pack with its index, each with its size: what the bucket lacks.
    let mut to_send: Vec<Vec<(String, u64)>> = Vec::new();
    for unit in &local.units {
        let mut missing = Vec::new();
        for path in &unit.files {
            match old.files.get(path) {
                Some(entry) => {
                    new.files.insert(path.clone(), *entry);
                }
                None => missing.push((path.clone(), local.size(path)?)),
            }
        }
        if !missing.is_empty() {
            to_send.push(missing);
        }
    }
    progress.start(
        to_send.iter().map(|u| u.len() as u64).sum(),
        to_send
            .iter()
            .flatten()
            .map(|(_, size)| sealer.stored_size(*size))
            .sum(),
    );
    // What a killed push left is found by one listing when much is to be
    // sent (a first push), by a HEAD per file when little is.
    let files_to_send: usize = to_send.iter().map(Vec::len).sum();
    let already = if files_to_send > LIST_ABOVE {
        Some(bucket.list_sizes()?)
    } else {
        None
    };
    let sent = workers::each(&to_send, opts.jobs, |unit| {
        let mut done = Vec::new();
        for (path, size) in unit {
            let name = sealer.object_name(path);
            let there = match &already {
                Some(listed) => listed.get(&name).copied(),
                None => bucket.size_of(&name)?,
            };
            let (entry, was_there) = send_file(repo, bucket, sealer, path, *size, there, progress)?;
            progress.file_done();
            done.push((path.clone(), entry, was_there));
        }
        Ok(done)
    })?;
    for (path, entry, was_there) in sent.into_iter().flatten() {
        if was_there {
            report.files_skipped += 1;
            report.bytes_skipped += entry.stored_size;
        } else {
            report.files_sent += 1;
            report.bytes_sent += entry.stored_size;
        }
        new.files.insert(path, entry);
    }

    // What the repository no longer has: kept for the grace period, then
    // deleted once a manifest without it is in place.
    let mut doomed: Vec<String> = old.doomed.clone();
    let gone = old
        .files
        .iter()
        .filter(|(path, _)| !new.files.contains_key(*path))
        .map(|(path, e)| {
            (
                path.clone(),
                Retired {
                    since: opts.now,
                    stored_size: e.stored_size,
                },
            )
        });
    for (path, retired) in old.retired.clone().into_iter().chain(gone) {
        if new.files.contains_key(&path) {
            continue;
        }
        if retired.since.saturating_add(opts.grace_secs) <= opts.now {
            doomed.push(path);
        } else {
            new.retired.insert(path, retired);
        }
    }
    doomed.sort();
    doomed.dedup();
    doomed.retain(|path| !new.files.contains_key(path));
    new.doomed = doomed;

    if same_content(&old, &new) {
        return Ok(report);
    }
    super::write_manifest(bucket, sealer, &new)?;
    report.published = true;
    if !new.doomed.is_empty() {
        for path in &new.doomed {
            bucket.delete(&sealer.object_name(path))?;
            report.files_deleted += 1;
        }
        new.doomed.clear();
        super::write_manifest(bucket, sealer, &new)?;
    }
    Ok(report)
}

/// Whether two manifests say the same but for their time: then a push has
/// nothing to publish.
fn same_content(old: &Manifest, new: &Manifest) -> bool {
    let mut old = old.clone();
    old.created = new.created;
    old == *new
}

/// Sends one file unless the bucket has it already; returns its entry and
/// whether it was there.
fn send_file(
    repo: &Repository,
    bucket: &Bucket,
    sealer: &Sealer,
    path: &str,
    size: u64,
    there: Option<u64>,
    progress: &dyn Progress,
) -> Result<(FileEntry, bool), MirrorError> {
    let local = repo.path().join(path);
    let name = sealer.object_name(path);
    if let Some(stored_size) = there.filter(|s| sealer.could_hold(size, *s)) {
        // A killed push's upload: objects appear whole or not at all, and a
        // file's name stands for its content (packs are named by it), so
        // only the checksum for the manifest is missing.
        let mut hasher = blake3::Hasher::new();
        let file = std::fs::File::open(&local).map_err(MirrorError::io("reading", &local))?;
        copy_hashing(file, &mut std::io::sink(), &mut hasher, size, &local)?;
        progress.bytes(stored_size);
        let entry = FileEntry {
            size,
            stored_size,
            blake3: *hasher.finalize().as_bytes(),
        };
        return Ok((entry, true));
    }
    let mut hash = None;
    let mut sent = 0;
    bucket.upload(
        &name,
        sealer.stored_size(size),
        &mut |out: &mut dyn Write| {
            let file = std::fs::File::open(&local).map_err(MirrorError::io("reading", &local))?;
            let mut hasher = blake3::Hasher::new();
            let counted = Counted {
                inner: out,
                progress,
                count: 0,
            };
            let mut sealed = sealer.seal(counted)?;
            copy_hashing(file, &mut sealed, &mut hasher, size, &local)?;
            let counted = sealed.finish().map_err(|e| upload_error(bucket, path, e))?;
            sent = counted.count;
            hash = Some(*hasher.finalize().as_bytes());
            Ok(())
        },
    )?;
    // A single request's body was checked by the store against its SHA-256;
    // a multipart upload is checked part by part, and its assembly here.
    let assembled = if sent > super::bucket::PART_SIZE as u64 {
        bucket.size_of(&name)?
    } else {
        Some(sent)
    };
    match assembled {
        Some(got) if got == sent => {}
        got => {
            return Err(MirrorError::Bucket {
                url: format!("{}/{name}", bucket.url()),
                detail: format!(
                    "the store holds {} bytes after the upload of {path}, not the {sent} sent: push again",
                    got.map_or("no".to_string(), |g| g.to_string())
                ),
            })
        }
    }
    let entry = FileEntry {
        size,
        stored_size: sent,
        blake3: hash.expect("set by a successful upload"),
    };
    Ok((entry, false))
}

fn upload_error(bucket: &Bucket, path: &str, e: std::io::Error) -> MirrorError {
    MirrorError::Bucket {
        url: bucket.url().to_string(),
        detail: format!("uploading {path}: {e}"),
    }
}

/// Copies exactly `size` bytes of `input` into `out`, hashing them; a file
/// that changed size meanwhile is an error (packs never change).
fn copy_hashing(
    mut input: impl Read,
    out: &mut dyn Write,
    hasher: &mut blake3::Hasher,
    size: u64,
    path: &std::path::Path,
) -> Result<(), MirrorError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = input
            .read(&mut buf[..want])
            .map_err(MirrorError::io("reading", path))?;
        if n == 0 {
            return Err(MirrorError::Usage(format!(
                "{} shrank while it was being mirrored: is something rewriting the repository?",
                path.display()
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| MirrorError::Seal(format!("sending {}: {e}", path.display())))?;
        left -= n as u64;
    }
    Ok(())
}

/// Counts the bytes that reach the bucket, for the progress bar.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    progress: &'a dyn Progress,
    count: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.bytes(n as u64);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
