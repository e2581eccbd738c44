//! `rewind -r HOST:PATH`: a repository on a server, reached by running the
//! system's OpenSSH client (so `~/.ssh/config`, keys, known_hosts and the
//! agent apply) with `rewind server` on the far side.
//!
//! What makes it fast is what it does not ask: the server's pack indexes
//! are copied once into a cache directory on this machine and refreshed
//! only when the server's list of packs changed, so "is this object
//! stored?" is a local lookup and a save sends only new objects, streamed
//! without waiting for answers. Reads are announced ahead
//! ([`Objects::will_need`]) and travel in batches ([`super::session`]).
//!
//! The server is trusted no more than a disk: every object it sends is
//! hashed against its id, every index it sends is checked like a local
//! one, and names and sizes are bounded.

use super::location::SshTarget;
use super::session::Session;
pub use super::ssh::SshOptions;
use super::wire::{self, Request, Response};
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::idx::PackIndex;
use crate::pack::writer::WriteStats;
use crate::repo::known::{KnownObjects, DEFAULT_MAX_UNCOVERED};
use crate::repo::{Error, Objects, PackSink, Repo, SharedFile};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Remote {
    shared: Arc<Shared>,
}

/// The session, and where this machine keeps copies of the server's
/// indexes and the change index of its saves.
struct Shared {
    session: Session,
    cache: PathBuf,
}

impl Remote {
    /// Connects to the repository at `target`; with `create`, initializes it.
    /// Returns once the server has answered.
    pub fn connect(target: &SshTarget, opts: &SshOptions, create: bool) -> Result<Remote, Error> {
        let remote = Remote::start(target, opts, create)?;
        remote.shared.session.open()?;
        Ok(remote)
    }

    /// Starts ssh and sends the greeting without waiting for the answer:
    /// the connection is made while the caller goes on, for example a save
    /// listing its directories. Whatever went wrong is the first call's
    /// error.
    pub fn start(target: &SshTarget, opts: &SshOptions, create: bool) -> Result<Remote, Error> {
        let cache = cache_dir(target)?;
        let session = Session::start(target, opts, create)?;
        Ok(Remote {
            shared: Arc::new(Shared { session, cache }),
        })
    }

    /// Deletes `full_name` if it is `old` (for tests of what a key may do).
    pub fn delete_ref(&self, full_name: &str, old: ObjectId) -> Result<(), Error> {
        let session = &self.shared.session;
        match session.call(&Request::DeleteRef {
            name: full_name.into(),
            old,
        })? {
            Response::Ok => Ok(()),
            Response::RefChanged { found } => Err(Error::RefChanged {
                name: full_name.into(),
                expected: Some(old),
                found,
            }),
            other => Err(session.unexpected(&other)),
        }
    }
}

/// `$REWIND_CACHE_DIR`, else `$XDG_CACHE_HOME/rewind`, else
/// `~/.cache/rewind`; then `remote/<host and path>`.
fn cache_dir(target: &SshTarget) -> Result<PathBuf, Error> {
    let base = std::env::var_os("REWIND_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("rewind")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rewind")))
        .ok_or_else(|| Error::Remote {
            location: target.to_string(),
            detail: "no cache directory for the server's indexes: set HOME or REWIND_CACHE_DIR"
                .into(),
        })?;
    let text = target.to_string();
    let readable: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = hash_object(Kind::Blob, text.as_bytes()).to_string();
    Ok(base
        .join("remote")
        .join(format!("{readable}-{}", &hash[..12])))
}

/// `pack-<40 hex digits>.idx`: the only names of the server's files the
/// client writes.
fn is_idx_name(name: &str) -> bool {
    name.strip_prefix("pack-")
        .and_then(|n| n.strip_suffix(".idx"))
        .is_some_and(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Shared {
    /// Copies the server's pack indexes into the cache, fetching only new
    /// ones and dropping those the server no longer has, and reads them.
    fn sync_indexes(&self) -> Result<Vec<Arc<PackIndex>>, Error> {
        let dir = self.cache.join("idx");
        let mut indexes = Vec::new();
        for (name, fetched) in self.sync_cache()? {
            let index = match fetched {
                Some(index) => index,
                None => match PackIndex::open(&dir.join(&name)) {
                    Ok(index) => index,
                    // A copy damaged since: fetched again.
                    Err(_) => match self.fetch_usable(&name)? {
                        Some(index) => index,
                        None => continue,
                    },
                },
            };
            indexes.push(Arc::new(index));
        }
        Ok(indexes)
    }

    /// The server's pack list (which holds off its gc to the session's
    /// end), with the cache brought in step; the copies already there are
    /// not read (see [`Repo::known_objects_cached`] for who reads them).
    fn sync_index_names(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .sync_cache()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Brings the cache in step with the server's pack list: copies of
    /// packs gone are deleted, new ones fetched. Every usable index's name,
    /// with the index itself when it was just fetched (and so read).
    fn sync_cache(&self) -> Result<Vec<(String, Option<PackIndex>)>, Error> {
        let names = self.list_packs()?;
        let dir = self.cache.join("idx");
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let wanted: std::collections::HashSet<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| is_idx_name(n))
            .collect();
        let mut present = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(Error::io("listing", &dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.contains(name.as_str()) {
                present.insert(name);
            } else {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut usable = Vec::with_capacity(wanted.len());
        for name in wanted {
            if present.contains(name) {
                usable.push((name.to_string(), None));
            } else if let Some(index) = self.fetch_usable(name)? {
                usable.push((name.to_string(), Some(index)));
            }
        }
        Ok(usable)
    }

    /// [`Shared::cache_idx`], warning when the server's index is not usable.
    fn fetch_usable(&self, name: &str) -> Result<Option<PackIndex>, Error> {
        let index = self.cache_idx(name)?;
        if index.is_none() {
            tracing::warn!("the server's {name} is not usable; its objects will be sent again");
        }
        Ok(index)
    }

    fn list_packs(&self) -> Result<Vec<String>, Error> {
        match self.session.call(&Request::ListPacks)? {
            Response::Packs { names } => Ok(names),
            other => Err(self.session.unexpected(&other)),
        }
    }

    /// Fetches the server's pack index `name` (already checked to be a
    /// pack index's name) into the cache: `None` if it is not usable
    /// (checked as a local index is: checksums, order, sizes).
    fn cache_idx(&self, name: &str) -> Result<Option<PackIndex>, Error> {
        let dir = self.cache.join("idx");
        let path = dir.join(name);
        let bytes = self
            .session
            .call_for_file(&Request::GetIdx { name: name.into() }, 1 << 32)?
            .ok_or_else(|| self.session.fail(format!("the server has no {name}")))?;
        let Ok(index) = PackIndex::parse(&path, &bytes) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        crate::repo::fsutil::write_atomic(&path, &bytes)?;
        Ok(Some(index))
    }
}

impl Repo for Remote {
    fn location(&self) -> String {
        self.shared.session.location()
    }

    fn reads_wait_on_peer(&self) -> bool {
        true
    }

    fn objects(&self) -> &dyn Objects {
        &self.shared.session
    }

    fn read_ref(&self, full_name: &str) -> Result<Option<ObjectId>, Error> {
        match self.shared.session.call(&Request::ReadRef {
            name: full_name.into(),
        })? {
            Response::Ref { id } => Ok(id),
            other => Err(self.shared.session.unexpected(&other)),
        }
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, Error> {
        match self.shared.session.call(&Request::ListRefs {
            prefix: prefix.into(),
        })? {
            Response::Refs { refs } => {
                // Names from the server are checked as names read from disk.
                for (name, _) in &refs {
                    crate::repo::check_ref_name(name)?;
                    if !name.starts_with(prefix) {
                        return Err(self
                            .shared
                            .session
                            .fail(format!("the server listed {name:?} under {prefix:?}")));
                    }
                }
                Ok(refs)
            }
            other => Err(self.shared.session.unexpected(&other)),
        }
    }

    fn update_ref(
        &self,
        full_name: &str,
        new: ObjectId,
        expected_old: Option<ObjectId>,
    ) -> Result<(), Error> {
        match self.shared.session.call(&Request::UpdateRef {
            name: full_name.into(),
            new,
            old: expected_old,
        })? {
            Response::Ok => Ok(()),
            Response::RefChanged { found } => Err(Error::RefChanged {
                name: full_name.into(),
                expected: expected_old,
                found,
            }),
            other => Err(self.shared.session.unexpected(&other)),
        }
    }

    fn set_head_if_dangling(&self, branch: &str) -> Result<bool, Error> {
        match self.shared.session.call(&Request::SetHeadIfDangling {
            branch: branch.into(),
        })? {
            Response::Bool { value } => Ok(value),
            other => Err(self.shared.session.unexpected(&other)),
        }
    }

    fn known_objects(&self) -> KnownObjects {
        let indexes = match self.shared.sync_indexes() {
            Ok(i) => i,
            Err(e) => {
                // Every object is then sent (the server keeps one copy of
                // each in a pack); the save itself will meet the error.
                tracing::warn!("{e}; every object will be sent");
                Vec::new()
            }
        };
        KnownObjects::from_indexes(indexes, &self.state_dir(), None, DEFAULT_MAX_UNCOVERED)
    }

    fn known_objects_cached(&self) -> Option<(KnownObjects, Vec<String>)> {
        // Made by the first listing of the server's packs (`init`, or the
        // first save): without it nothing is known, not even "no packs".
        let dir = self.shared.cache.join("idx");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let name = entry.file_name().to_str()?.to_string();
            if is_idx_name(&name) {
                files.push((name, entry.path()));
            }
        }
        // An empty directory is a repository with no packs yet (made by
        // init, or emptied by a gc): nothing is taken for stored, so
        // everything is sent, which is right for it and safe whatever. A
        // copy that does not read: the server's list decides (None).
        let known =
            KnownObjects::from_index_files(&files, &self.state_dir(), DEFAULT_MAX_UNCOVERED)?;
        tracing::debug!(
            "starting with the cached indexes of {} packs of {} ({} outside the object table)",
            files.len(),
            self.location(),
            known.report().uncovered_packs,
        );
        Some((known, files.into_iter().map(|(name, _)| name).collect()))
    }

    fn current_indexes(&self) -> Result<Vec<String>, Error> {
        // ListPacks: the server holds gc off from now to the session's end.
        self.shared.sync_index_names()
    }

    fn pack_sink(&self) -> Result<Box<dyn PackSink>, Error> {
        Ok(Box::new(RemoteSink {
            shared: self.shared.clone(),
            stats: WriteStats::default(),
            sent: std::collections::HashSet::new(),
        }))
    }

    fn state_dir(&self) -> PathBuf {
        self.shared.cache.join("rewind")
    }

    fn read_shared(&self, name: SharedFile) -> Result<Option<Vec<u8>>, Error> {
        self.shared.session.call_for_file(
            &Request::ReadShared {
                name: name.file_name().into(),
            },
            SharedFile::MAX_BYTES as u64,
        )
    }

    fn write_shared(&self, name: SharedFile, bytes: &[u8]) -> Result<(), Error> {
        match self.shared.session.call(&Request::WriteShared {
            name: name.file_name().into(),
            bytes: bytes.to_vec(),
        })? {
            Response::Ok => Ok(()),
            other => Err(self.shared.session.unexpected(&other)),
        }
    }
}

/// A save's new objects, streamed to the server as they come; the server
/// checks and packs them and publishes on [`PackSink::finish`].
struct RemoteSink {
    shared: Arc<Shared>,
    stats: WriteStats,
    /// Ids sent in this stream (a pack holds each once).
    sent: std::collections::HashSet<ObjectId>,
}

impl PackSink for RemoteSink {
    fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error> {
        if !self.sent.insert(id) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.shared
            .session
            .send_unanswered(|w| wire::write_put_object(w, &id, kind, size, zdata))?;
        self.stats.objects += 1;
        self.stats.stored += u64::from(stored);
        self.stats.raw_bytes += size;
        self.stats.packed_bytes += zdata.len() as u64;
        Ok(())
    }

    fn stats(&self) -> WriteStats {
        self.stats
    }

    fn finish(self: Box<Self>) -> Result<(), Error> {
        let names = match self.shared.session.call(&Request::FinishPack)? {
            Response::Packs { names } => names,
            other => return Err(self.shared.session.unexpected(&other)),
        };
        // The new indexes go into the cache now, so that the next save
        // knows these objects without asking.
        for name in names {
            // A name from the server becomes a file name here: only the
            // shape of a pack index's name is accepted.
            if !is_idx_name(&name) {
                return Err(self
                    .shared
                    .session
                    .fail(format!("the server named a new pack {name:?}")));
            }
            if let Err(e) = self.shared.cache_idx(&name) {
                tracing::warn!("{e}; the next save will fetch {name}");
            }
        }
        Ok(())
    }
}
