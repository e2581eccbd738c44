//! [`PackStorage`] for a repository in a local folder: what gc does to
//! `objects/pack` and to git's reflogs, in the crash-safe order.
//!
//! New packs are published by [`PackWriter`] (temporary file, fsync, idx,
//! rename, fsync of the directory) before any old one goes. An old pack
//! loses its `.idx` first: readers (this store, git, bup) find packs by
//! their index, so from then on nobody starts using it, and a reader that
//! opened it earlier keeps reading the unlinked file through its handle.
//! Its `.pack` and companions (`.rev`, `.bitmap`, recovery data) follow.
//! A kill between the two leaves a `.pack` without index, which git ignores
//! and the next gc removes.

use super::access::{PackOut, PackRead, PackStorage, StoredPack};
use super::gc_lock::{self, GcLock};
use super::{fsutil, Error, Repository};
use crate::object::{Kind, ObjectId};
use crate::pack::reader::ReadFail;
use crate::pack::writer::{remove_bup_caches, DEFAULT_OBJECT_LIMIT};
use crate::pack::{PackFile, PackWriter};
use std::path::{Path, PathBuf};

/// A `.pack` without its index, or a temporary pack, left this long ago is
/// debris of a killed writer (a live one renames its pack and index within
/// moments of each other, and gc holds the writers' lock).
const DEBRIS_AGE_SECS: u64 = 3600;

impl PackStorage for Repository {
    fn lock_out_writers(&self, wait: bool, waiting: &dyn Fn()) -> Result<Option<GcLock>, Error> {
        gc_lock::lock_for_gc(&self.path.join("rewind"), wait, waiting)
    }

    fn list_packs(&self) -> Result<Vec<StoredPack>, Error> {
        let store = self.objects();
        store.refresh()?;
        if let Some((idx, why)) = store.broken_indexes().into_iter().next() {
            return Err(Error::BadIndex {
                path: idx,
                detail: format!("{why} (gc stopped before changing anything; run `rewind fsck`)"),
            });
        }
        let mut packs = Vec::new();
        for pack in store.pack_files() {
            if let Some(why) = pack.damage().map_err(|e| read_fail(e, pack.path()))? {
                return Err(Error::DamagedPack {
                    path: pack.path().to_path_buf(),
                    detail: why.to_string(),
                });
            }
            let name = pack_name(pack.path())?;
            let mtime = std::fs::metadata(pack.path())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let keep = pack.path().with_extension("keep").exists();
            packs.push(StoredPack {
                name,
                index: pack.shared_index(),
                size: pack.file_size(),
                mtime,
                keep,
            });
        }
        Ok(packs)
    }

    fn open_pack(&self, name: &str) -> Result<Box<dyn PackRead + '_>, Error> {
        let path = self.path.join("objects/pack").join(format!("{name}.pack"));
        let pack = self
            .objects()
            .pack_files()
            .into_iter()
            .find(|p| p.path() == path)
            .ok_or_else(|| Error::Io {
                action: "reading pack",
                path: path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        Ok(Box::new(pack))
    }

    fn new_packs(&self, target_size: u64, entries: u64) -> Result<Box<dyn PackOut>, Error> {
        Ok(Box::new(LocalPackOut {
            objects_dir: self.path.join("objects"),
            target_size,
            writer: None,
            in_writer: 0,
            writer_limit: 0,
            to_come: entries,
            published: Vec::new(),
        }))
    }

    fn delete_pack(&self, name: &str) -> Result<(), Error> {
        let dir = self.path.join("objects/pack");
        remove_if_there(&dir.join(format!("{name}.idx")))?;
        remove_if_there(&dir.join(format!("{name}.pack")))?;
        remove_companions(&dir, name)
    }

    fn forget_dead_history(&self, live: &dyn Fn(&ObjectId) -> bool) -> Result<(), Error> {
        let logs = self.path.join("logs");
        let mut files = Vec::new();
        list_files(&logs, &mut files)?;
        for path in files {
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading reflog", &path)(e)),
            };
            let mut kept = Vec::with_capacity(text.len());
            for line in text.split_inclusive(|&b| b == b'\n') {
                if reflog_line_is_live(line, live) {
                    kept.extend_from_slice(line);
                }
            }
            if kept.len() != text.len() {
                fsutil::write_atomic(&path, &kept)?;
            }
        }
        Ok(())
    }

    fn settle(&self) -> Result<(), Error> {
        let dir = self.path.join("objects/pack");
        remove_debris(&self.path.join("objects"), &dir)?;
        fsutil::fsync_dir(&dir)?;
        remove_bup_caches(&dir)?;
        // Let this process's own readers drop the packs that went.
        self.objects().refresh()
    }
}

/// A pack of the store, as gc reads it.
impl PackRead for std::sync::Arc<PackFile> {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; len];
        self.read_entries_at(&mut buf, offset)
            .map_err(|e| read_fail(e, self.path()))?;
        Ok(buf)
    }

    fn will_need(&self, offset: u64, len: u64) {
        PackFile::will_need(self, offset, len);
    }
}

fn read_fail(e: ReadFail, pack: &Path) -> Error {
    match e {
        ReadFail::Io(source) => Error::Io {
            action: "reading pack",
            path: pack.to_path_buf(),
            source,
        },
        ReadFail::Corrupt(detail) => Error::DamagedPack {
            path: pack.to_path_buf(),
            detail,
        },
    }
}

/// `pack-<sha>` from `.../pack-<sha>.pack`.
fn pack_name(path: &Path) -> Result<String, Error> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Io {
            action: "naming pack",
            path: path.to_path_buf(),
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

fn remove_if_there(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path)(e)),
    }
}

/// The files `pack-<sha>.*` other than its index and pack (git's `.rev`,
/// `.bitmap`, `.mtimes`, recovery data): they describe a pack that is gone.
fn remove_companions(dir: &Path, name: &str) -> Result<(), Error> {
    let prefix = format!("{name}.");
    let entries = std::fs::read_dir(dir).map_err(Error::io("listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            remove_if_there(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes what killed writers (or a killed gc) left: temporary packs and
/// indexes in `objects/`, and `.pack` files without an index in
/// `objects/pack/`, once they are old enough not to belong to a writer at
/// work (bup and git do not take rewind's lock).
fn remove_debris(objects_dir: &Path, pack_dir: &Path) -> Result<(), Error> {
    let old = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() >= DEBRIS_AGE_SECS)
    };
    for entry in std::fs::read_dir(objects_dir)
        .map_err(Error::io("listing", objects_dir))?
        .flatten()
    {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with("tmp_pack_") || name.starts_with("tmp_idx_")) && old(&entry.path()) {
            remove_if_there(&entry.path())?;
        }
    }
    for entry in std::fs::read_dir(pack_dir)
        .map_err(Error::io("listing", pack_dir))?
        .flatten()
    {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("pack-")
            && name.ends_with(".pack")
            && !path.with_extension("idx").exists()
            && !path.with_extension("keep").exists()
            && old(&path)
        {
            tracing::info!("removing {}, a pack without index", path.display());
            remove_if_there(&path)?;
        }
    }
    Ok(())
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", dir))?;
        let ft = entry.file_type().map_err(Error::io("listing", dir))?;
        if ft.is_dir() {
            list_files(&entry.path(), out)?;
        } else if ft.is_file() && !entry.file_name().to_string_lossy().ends_with(".lock") {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// A reflog line is `<old> <new> <ident> <time> <tz>\t<message>`; it stays
/// if both ids are zero or live. A line that does not parse is not ours to
/// judge and stays.
fn reflog_line_is_live(line: &[u8], live: &dyn Fn(&ObjectId) -> bool) -> bool {
    let ok = |hex: Option<&[u8]>| match hex.and_then(ObjectId::from_hex) {
        Some(id) => id.0 == [0; 20] || live(&id),
        None => true,
    };
    ok(line.get(..40)) && ok(line.get(41..81))
}

/// gc's output: one [`PackWriter`] per [`DEFAULT_OBJECT_LIMIT`] objects,
/// so that the set of ids a writer keeps (against duplicates) stays small
/// however much is copied. Each pack is planned for the entries still to
/// come, up to that limit: the last one too is hashed as it is written.
struct LocalPackOut {
    objects_dir: PathBuf,
    target_size: u64,
    writer: Option<PackWriter>,
    in_writer: u32,
    /// The objects the current writer's pack was planned for.
    writer_limit: u32,
    /// Entries announced and not appended yet.
    to_come: u64,
    published: Vec<String>,
}

impl LocalPackOut {
    fn finish_writer(&mut self) -> Result<(), Error> {
        if let Some(writer) = self.writer.take() {
            for path in writer.finish()? {
                if path.extension().is_some_and(|e| e == "pack") {
                    self.published.push(pack_name(&path)?);
                }
            }
        }
        self.in_writer = 0;
        Ok(())
    }
}

impl PackOut for LocalPackOut {
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
    ) -> Result<(), Error> {
        if self.writer.is_none() {
            let mut w = PackWriter::new(&self.objects_dir)?;
            w.set_size_limit(self.target_size);
            self.writer_limit = self.to_come.clamp(1, u64::from(DEFAULT_OBJECT_LIMIT)) as u32;
            w.set_object_limit(self.writer_limit);
            self.writer = Some(w);
        }
        let writer = self.writer.as_mut().expect("just made");
        writer.append_compressed(id, kind, size, zdata, false)?;
        self.in_writer += 1;
        self.to_come = self.to_come.saturating_sub(1);
        if self.in_writer >= self.writer_limit {
            // The writer published this pack itself at its object limit.
            self.finish_writer()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<String>, Error> {
        self.finish_writer()?;
        Ok(std::mem::take(&mut self.published))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflog_lines_naming_dead_objects_are_dropped() {
        let a = ObjectId([0xaa; 20]);
        let b = ObjectId([0xbb; 20]);
        let zero = ObjectId([0; 20]);
        let live = |id: &ObjectId| *id == a;
        let line = |old: ObjectId, new: ObjectId| {
            format!("{old} {new} A <a@b> 1700000000 +0000\tupdate\n").into_bytes()
        };
        assert!(reflog_line_is_live(&line(zero, a), &live));
        assert!(!reflog_line_is_live(&line(a, b), &live));
        assert!(!reflog_line_is_live(&line(b, a), &live));
        assert!(reflog_line_is_live(b"not a reflog line\n", &live));
    }

    /// New packs are planned for the entries announced; whether the count
    /// announced is right, too low or too high (or an entry comes twice),
    /// what is published is sound and holds every entry once.
    #[test]
    fn packs_out_are_sound_whatever_count_was_announced() {
        use crate::pack::writer::Compressor;
        for (announced, appended) in [(3u64, 3usize), (2, 4), (5, 3), (0, 2)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let repo = Repository::init(dir.path()).expect("init");
            let mut out = repo.new_packs(1 << 30, announced).expect("new packs");
            let mut compressor = Compressor::new(1);
            let mut ids = Vec::new();
            for k in 0..appended {
                let data = format!("object {k} of {appended}").into_bytes();
                let id = crate::object::hash_object(Kind::Blob, &data);
                let (zdata, _) = compressor.compress(&data);
                out.append_compressed(id, Kind::Blob, data.len() as u64, zdata)
                    .expect("append");
                if k == 0 {
                    // Skipped by the writer: a pack holds an id once.
                    out.append_compressed(id, Kind::Blob, data.len() as u64, zdata)
                        .expect("append again");
                }
                ids.push(id);
            }
            let published = out.finish().expect("finish");
            assert!(!published.is_empty());
            let packs = repo.list_packs().expect("packs are sound");
            let entries: usize = packs.iter().map(|p| p.index.len()).sum();
            assert_eq!(entries, appended, "announced {announced}");
            for id in &ids {
                assert_eq!(repo.objects().read(id).expect("read").kind, Kind::Blob);
            }
        }
    }
}
