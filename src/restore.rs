//! Materialises view nodes on disk: directories, files (sparse where the
//! data has zero blocks), symlinks, fifos, sockets and devices, hardlink
//! groups re-linked, and metadata applied last (a directory's after its
//! children, so that its times and a read-only mode stick).

use crate::meta::apply::{apply, ApplyOptions};
use crate::meta::Metadata;
use crate::repo::Repository;
use crate::view::{self, ContentReader, Node, NodeType, ViewError};
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Zero runs of at least this many bytes, aligned, become holes.
const SPARSE_BLOCK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot restore {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    View(#[from] ViewError),
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub numeric_ids: bool,
}

pub struct Restorer<'r> {
    repo: &'r Repository,
    options: ApplyOptions,
    /// hardlink_target (a group key, as in bup) -> first restored path.
    links: HashMap<Vec<u8>, PathBuf>,
    pub warnings: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

impl<'r> Restorer<'r> {
    pub fn new(repo: &'r Repository, opts: &RestoreOptions) -> Restorer<'r> {
        Restorer {
            repo,
            options: ApplyOptions {
                numeric_ids: opts.numeric_ids,
            },
            links: HashMap::new(),
            warnings: Vec::new(),
            files: 0,
            bytes: 0,
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    /// Restores `node` as `dest` (which must not be an existing
    /// non-directory unless it is replaceable).
    pub fn restore(&mut self, node: &Node, dest: &Path) -> Result<(), RestoreError> {
        match node.node_type {
            NodeType::Directory => {
                self.make_dir(dest)?;
                let dir = view::list_dir(self.repo, &node.id)?;
                self.restore_children(&dir.entries, dest)?;
                self.finish(dest, dir.meta.as_ref().or(node.meta.as_ref()));
            }
            _ => self.restore_leaf(node, dest)?,
        }
        Ok(())
    }

    /// Restores the entries of a directory node into the existing `dest`.
    pub fn restore_contents(&mut self, node: &Node, dest: &Path) -> Result<(), RestoreError> {
        let dir = view::list_dir(self.repo, &node.id)?;
        self.make_dir(dest)?;
        self.restore_children(&dir.entries, dest)?;
        self.finish(dest, dir.meta.as_ref());
        Ok(())
    }

    fn restore_children(&mut self, entries: &[Node], dest: &Path) -> Result<(), RestoreError> {
        for child in entries {
            let path = dest.join(OsStr::from_bytes(&child.name));
            self.restore(child, &path)?;
        }
        Ok(())
    }

    fn make_dir(&mut self, dest: &Path) -> Result<(), RestoreError> {
        match std::fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => remove(dest)?,
            Err(_) => {}
        }
        std::fs::create_dir(dest).map_err(|source| RestoreError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        // Writable by us while children are created; .bupm mode comes last.
        Ok(())
    }

    fn finish(&mut self, path: &Path, meta: Option<&Metadata>) {
        if let Some(meta) = meta {
            if let Err(problems) = apply(path, meta, &self.options) {
                for p in problems {
                    self.warn(p.to_string());
                }
            }
        }
    }

    fn restore_leaf(&mut self, node: &Node, dest: &Path) -> Result<(), RestoreError> {
        if std::fs::symlink_metadata(dest).is_ok() {
            remove(dest)?;
        }
        let write_err = |source| RestoreError::Write {
            path: dest.to_path_buf(),
            source,
        };
        self.files += 1;
        match node.node_type {
            NodeType::Regular => {
                if let Some(target) = node.meta.as_ref().and_then(|m| m.hardlink_target.clone()) {
                    if let Some(first) = self.links.get(&target) {
                        match std::fs::hard_link(first, dest) {
                            Ok(()) => return Ok(()),
                            Err(e) => self.warn(format!(
                                "{}: cannot hardlink to {}: {e}; restoring a copy",
                                dest.display(),
                                first.display()
                            )),
                        }
                    } else {
                        self.links.insert(target, dest.to_path_buf());
                    }
                }
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dest)
                    .map_err(write_err)?;
                let written = write_sparse(
                    file,
                    ContentReader::new(self.repo.objects(), node.content()),
                    dest,
                )?;
                self.bytes += written;
            }
            NodeType::Symlink => {
                let mut target = Vec::new();
                io::copy(
                    &mut ContentReader::new(self.repo.objects(), node.content()),
                    &mut target,
                )
                .map_err(|source| RestoreError::Read {
                    path: dest.to_path_buf(),
                    source,
                })?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), dest).map_err(write_err)?;
            }
            NodeType::Special => {
                // The view only calls a node special when .bupm says so.
                let (mode, rdev) = node
                    .meta
                    .as_ref()
                    .map_or((libc::S_IFIFO, 0), |m| (m.mode, m.rdev));
                mknod(dest, mode, rdev).map_err(write_err)?;
            }
            NodeType::Directory => unreachable!("directories are restored by restore()"),
        }
        self.finish(dest, node.meta.as_ref());
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), RestoreError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    result.map_err(|source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // Created with no permissions; the saved mode is applied with the rest
    // of the metadata.
    // SAFETY: c is NUL-terminated and outlives the call, which only reads it.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            (mode & libc::S_IFMT) as libc::mode_t,
            rdev as libc::dev_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes content block by block, leaving holes for aligned all-zero
/// blocks so that sparse files stay sparse. Chunk boundaries fall anywhere,
/// so a partial block is carried over to the next piece.
struct SparseWriter<'p> {
    file: File,
    path: &'p Path,
    offset: u64,
    hole_pending: bool,
    carry: Vec<u8>,
}

impl SparseWriter<'_> {
    fn error(&self, source: io::Error) -> RestoreError {
        RestoreError::Write {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Writes whole blocks starting at an aligned offset (the last one may
    /// be short only at the end of the file).
    fn write_blocks(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        let mut start = 0;
        while start < data.len() {
            let is_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
            let block_end = |s: usize| (s + SPARSE_BLOCK).min(data.len());
            if is_zero(&data[start..block_end(start)]) {
                self.hole_pending = true;
                start = block_end(start);
                continue;
            }
            // Coalesce a run of data blocks into one write.
            let mut end = block_end(start);
            while end < data.len() && !is_zero(&data[end..block_end(end)]) {
                end = block_end(end);
            }
            if self.hole_pending {
                let at = self.offset + start as u64;
                self.file
                    .seek(SeekFrom::Start(at))
                    .map_err(|e| self.error(e))?;
                self.hole_pending = false;
            }
            self.file
                .write_all(&data[start..end])
                .map_err(|e| self.error(e))?;
            start = end;
        }
        self.offset += data.len() as u64;
        Ok(())
    }

    fn write(&mut self, mut piece: &[u8]) -> Result<(), RestoreError> {
        if !self.carry.is_empty() {
            let take = (SPARSE_BLOCK - self.carry.len()).min(piece.len());
            self.carry.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.carry.len() < SPARSE_BLOCK {
                return Ok(());
            }
            let block = std::mem::take(&mut self.carry);
            self.write_blocks(&block)?;
            self.carry = block;
            self.carry.clear();
        }
        let whole = piece.len() - piece.len() % SPARSE_BLOCK;
        self.write_blocks(&piece[..whole])?;
        self.carry.extend_from_slice(&piece[whole..]);
        Ok(())
    }

    /// Writes what is left and sets the length (a trailing hole needs it).
    fn finish(mut self) -> Result<u64, RestoreError> {
        let rest = std::mem::take(&mut self.carry);
        self.write_blocks(&rest)?;
        self.file.set_len(self.offset).map_err(|e| self.error(e))?;
        Ok(self.offset)
    }
}

/// Copies content into `file`, sparse where the data has zero blocks.
/// Returns the bytes of content.
fn write_sparse(file: File, mut content: ContentReader, path: &Path) -> Result<u64, RestoreError> {
    let mut writer = SparseWriter {
        file,
        path,
        offset: 0,
        hole_pending: false,
        carry: Vec::with_capacity(SPARSE_BLOCK),
    };
    loop {
        let piece = content.next_piece().map_err(|source| RestoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if piece.is_empty() {
            return writer.finish();
        }
        writer.write(piece)?;
    }
}
