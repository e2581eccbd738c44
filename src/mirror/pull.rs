//! `rewind mirror pull`: rebuild a repository from its mirror, the
//! disaster-recovery path ("the backup server is gone").
//!
//! Files are written under temporary names, checked (size and BLAKE3 of the
//! decrypted bytes; decryption itself rejects any altered byte), fsynced
//! and renamed: a pack before its index. Refs and the small files follow,
//! HEAD last, so a half-pulled folder never opens as a repository, and a
//! pull run again over it keeps the files that arrived whole.

use super::local::units_of;
use super::manifest::Manifest;
use super::{workers, Bucket, MirrorError, Progress, Sealer};
use crate::repo::{fsutil, Repository};
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullReport {
    pub files_received: u64,
    pub bytes_received: u64,
    /// Files a previous, interrupted pull had written whole already.
    pub files_kept: u64,
    pub refs: usize,
}

pub fn pull(
    bucket: &Bucket,
    dest: &Path,
    sealer: &Sealer,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<PullReport, MirrorError> {
    if dest.join("HEAD").exists() {
        return Err(MirrorError::Usage(format!(
            "{} is a repository already: pull into a new or empty folder",
            dest.display()
        )));
    }
    // An interrupted pull left objects/pack and no HEAD: it is resumed.
    // Anything else in the folder is somebody's: leave it alone.
    let has_other_files = std::fs::read_dir(dest)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if has_other_files && !dest.join("objects/pack").is_dir() {
        return Err(MirrorError::Usage(format!(
            "{} is not empty: pull into a new or empty folder",
            dest.display()
        )));
    }
    let manifest = super::existing_manifest(bucket, sealer)?;
    for dir in ["objects/pack", "objects/info", "refs/heads", "refs/tags"] {
        let d = dest.join(dir);
        std::fs::create_dir_all(&d).map_err(MirrorError::io("creating directory", &d))?;
    }
    let units = units_of(&manifest.files);
    progress.start(
        manifest.files.len() as u64,
        manifest.files.values().map(|f| f.stored_size).sum(),
    );
    let outcomes = workers::each(&units, jobs, |unit| {
        let mut kept = 0u64;
        let mut received = 0u64;
        for path in &unit.files {
            if fetch_file(bucket, sealer, &manifest, dest, path, progress)? {
                kept += 1;
            } else {
                received += manifest.files[path.as_str()].stored_size;
            }
            progress.file_done();
        }
        Ok((kept, received, unit.files.len() as u64))
    })?;
    let mut report = PullReport::default();
    for (kept, received, files) in outcomes {
        report.files_kept += kept;
        report.files_received += files - kept;
        report.bytes_received += received;
    }
    for dir in ["objects/pack", "objects"] {
        fsutil::fsync_dir(&dest.join(dir))?;
    }
    write_refs_and_head(dest, &manifest)?;
    report.refs = manifest.refs.len();
    check_refs_resolve(dest, &manifest)?;
    Ok(report)
}

/// Fetches one file into place unless a whole copy is there already
/// (returns true then).
fn fetch_file(
    bucket: &Bucket,
    sealer: &Sealer,
    manifest: &Manifest,
    dest: &Path,
    path: &str,
    progress: &dyn Progress,
) -> Result<bool, MirrorError> {
    let entry = manifest.files[path];
    let target = dest.join(path);
    if let Ok(meta) = std::fs::metadata(&target) {
        if meta.len() == entry.size && hash_file(&target)? == entry.blake3 {
            progress.bytes(entry.stored_size);
            return Ok(true);
        }
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(MirrorError::io("creating directory", dir))?;
    }
    let dir = target.parent().expect("repository paths have a folder");
    let temp = tempfile::Builder::new()
        .prefix(".mirror-pull-")
        .tempfile_in(dir)
        .map_err(MirrorError::io("creating a file in", dir))?;
    let mut out = fsutil::WriteBehind::new(temp.as_file());
    super::verify::read_checked(bucket, sealer, path, &entry, &mut out, progress)?;
    temp.as_file()
        .sync_all()
        .map_err(MirrorError::io("syncing", temp.path()))?;
    temp.persist(&target)
        .map_err(|e| MirrorError::io("renaming into", &target)(e.error))?;
    Ok(false)
}

fn hash_file(path: &Path) -> Result<[u8; 32], MirrorError> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path).map_err(MirrorError::io("reading", path))?;
    std::io::copy(&mut file, &mut hasher).map_err(MirrorError::io("reading", path))?;
    Ok(*hasher.finalize().as_bytes())
}

/// Small files, then refs as loose ref files, then HEAD: the file whose
/// presence makes the folder a repository comes last.
fn write_refs_and_head(dest: &Path, manifest: &Manifest) -> Result<(), MirrorError> {
    for (path, bytes) in &manifest.small {
        let target = dest.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(MirrorError::io("creating directory", dir))?;
        }
        fsutil::write_atomic(&target, bytes)?;
    }
    for (name, id) in &manifest.refs {
        let target = dest.join(name);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(MirrorError::io("creating directory", dir))?;
        }
        fsutil::write_atomic(&target, format!("{id}\n").as_bytes())?;
    }
    if !manifest.small.contains_key("config") {
        fsutil::write_atomic(&dest.join("config"), crate::repo::CONFIG.as_bytes())?;
    }
    fsutil::fsync_dir(dest)?;
    fsutil::write_atomic(
        &dest.join("HEAD"),
        format!("{}\n", manifest.head).as_bytes(),
    )?;
    fsutil::fsync_dir(dest)?;
    Ok(())
}

/// Every ref's commit is in the pulled objects (the manifest promised so).
fn check_refs_resolve(dest: &Path, manifest: &Manifest) -> Result<(), MirrorError> {
    let repo = Repository::open(dest)?;
    for (name, id) in &manifest.refs {
        if repo.objects().read_header(id).is_err() {
            return Err(MirrorError::Damaged {
                what: format!("the pulled repository {}", dest.display()),
                detail: format!("{name} points at {id}, which no pulled pack holds"),
            });
        }
    }
    Ok(())
}
