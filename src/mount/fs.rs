//! The `fuser::Filesystem` implementation: maps kernel requests onto the
//! view and its answers back onto attributes and errnos.
//!
//! Two kinds of data: the top levels (backup names, snapshot lists, `latest`,
//! tags) come from refs and may change at any time, so they are re-read at
//! most every [`LIVE_TTL`] and the kernel caches them that long; everything
//! inside a snapshot is addressed by hashes and never changes, so the kernel
//! may cache it for [`FROZEN_TTL`] and keep file pages across opens.
//!
//! Which repository an inode lies in, and the per-repository listings,
//! come from [`super::repos`]; the namespace above a repository (one
//! directory per repository under `--repos`) is the [`InodeKind::Repos`]
//! root, whose entries that module lists.

use super::attr;
use super::inodes::{InodeKind, InodeTable, NodeInfo, ROOT};
use super::links::LinkCounts;
use super::names::latest;
use super::repos::{DirCache, Mounted, RepoIx, RepoState, Repositories};
use crate::repo::Repository;
use crate::view::random::{ChunkCache, FileReader, Prefetcher};
use crate::view::{content_size, NodeType, ViewError};
use fuser::{
    AccessFlags, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long listings that follow refs are trusted.
pub const LIVE_TTL: Duration = Duration::from_secs(1);
/// How long immutable snapshot contents are cached by the kernel.
pub const FROZEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How far ahead of a sequential reader blobs are inflated: several of the
/// kernel's (up to 1 MiB) requests, so the workers never wait for them.
const READ_AHEAD: u64 = 8 << 20;

pub struct RewindFs {
    pub(super) repos: Repositories,
    pub(super) inodes: InodeTable,
    chunks: Arc<ChunkCache>,
    /// The chunk cache's share of the budget before what the inode table
    /// holds is taken out of it.
    chunk_budget: usize,
    links: LinkCounts,
    /// Inflates ahead of sequential readers; its threads start on first
    /// use, after the daemon forked, never before.
    ahead: Arc<Prefetcher>,
    /// The kernel agreed to skip OPEN (and RELEASE) for files: every file's
    /// reader lives with its inode.
    no_open: AtomicBool,
    /// Starts the allocator trimmer (after the daemon forked).
    trimmer: std::sync::Once,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mounted_at: SystemTime,
}

/// What went wrong, as an errno; damage is logged with the object it names.
pub(super) fn errno(e: &ViewError, what: &str) -> Errno {
    match e {
        ViewError::NotFound(_) => Errno::ENOENT,
        ViewError::NotADirectory(_) => Errno::ENOTDIR,
        _ => {
            tracing::error!("{what}: {e}");
            Errno::EIO
        }
    }
}

impl RewindFs {
    pub fn new(source: Mounted, cache_bytes: usize) -> RewindFs {
        // Directories get a quarter of the budget, hardlink counts and delta
        // bases (repacked repositories) a sixteenth each, chunks the rest.
        // Per-thread buffers (a request's reply, a pack read window) and
        // the packs' indexes come on top.
        let dirs = cache_bytes / 4;
        let links = cache_bytes / 16;
        let bases = cache_bytes / 16;
        let chunks = Arc::new(ChunkCache::new(cache_bytes - dirs - links - bases));
        let repos = Repositories::new(source, chunks.clone(), Arc::new(DirCache::new(dirs)), bases);
        let root = if repos.is_directory() {
            InodeKind::Repos
        } else {
            InodeKind::RepoRoot
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        RewindFs {
            repos,
            inodes: InodeTable::new(root),
            chunks,
            chunk_budget: cache_bytes - dirs - links - bases,
            links: LinkCounts::new(links),
            ahead: Prefetcher::new(cores.min(4)),
            no_open: AtomicBool::new(false),
            trimmer: std::sync::Once::new(),
            uid: crate::meta::ids::euid(),
            gid: crate::meta::ids::egid(),
            mounted_at: SystemTime::now(),
        }
    }

    fn size_of(&self, repo: &Repository, info: &NodeInfo) -> Result<u64, ViewError> {
        if let Some(s) = info.size.get() {
            return Ok(*s);
        }
        let node = &info.node;
        let size = match (node.node_type, node.meta.as_ref()) {
            (NodeType::Directory | NodeType::Special, _) => 0,
            (NodeType::Symlink, Some(m)) if m.symlink_target.is_some() => {
                m.symlink_target.as_ref().map_or(0, |t| t.len() as u64)
            }
            (_, Some(m)) if m.size.is_some() && node.node_type == NodeType::Regular => {
                m.size.unwrap_or(0)
            }
            _ => content_size(repo.objects(), node.content())?,
        };
        Ok(*info.size.get_or_init(|| size))
    }

    /// Attributes and how long the kernel may keep them.
    pub(super) fn attr_of(
        &self,
        ino: u64,
        repo: RepoIx,
        kind: &InodeKind,
    ) -> Result<(fuser::FileAttr, Duration), ViewError> {
        Ok(match kind {
            InodeKind::Repos | InodeKind::RepoRoot | InodeKind::Tags => (
                attr::synthetic_dir(ino, self.uid, self.gid, self.mounted_at),
                LIVE_TTL,
            ),
            // Dated by the tip, read again as the tip moves.
            InodeKind::Backup(name) => {
                let time = self.repos.get(repo)?.backup(name)?.time;
                let time = time.map_or(self.mounted_at, seconds);
                (attr::synthetic_dir(ino, self.uid, self.gid, time), LIVE_TTL)
            }
            // node_of resolves these before anything asks.
            InodeKind::Pending(name) => {
                return Err(ViewError::NotFound(
                    String::from_utf8_lossy(name).into_owned(),
                ))
            }
            InodeKind::Latest(name) => {
                let (target, time) = latest(&*self.repos.get(repo)?, name)?;
                let a = attr::latest_link(ino, target.len(), self.uid, self.gid, seconds(time));
                (a, LIVE_TTL)
            }
            InodeKind::Node(info) => {
                let st = self.repos.get(repo)?;
                let size = self.size_of(&st.repo, info)?;
                // A node's contents never change under its inode (snapshot
                // roots and tags are salted with their commit); only a link
                // count still being counted is provisional.
                let (nlink, ttl) = match info.hardlink() {
                    Some((snapshot, target)) => {
                        match self.links.nlink(&st.repo, snapshot, target) {
                            (n, true) => (n, FROZEN_TTL),
                            (n, false) => (n, LIVE_TTL),
                        }
                    }
                    None => (1, FROZEN_TTL),
                };
                let a = attr::node_attr(ino, info, size, nlink, self.uid, self.gid);
                (a, ttl)
            }
        })
    }

    /// Inodes the kernel holds cannot be evicted (`cp -a` of a big tree
    /// holds tens of thousands), so their memory is taken out of the chunk
    /// cache's share, down to a quarter of it.
    fn rebalance(&self) {
        self.trimmer.call_once(start_trimmer);
        let held = self.inodes.bytes();
        let budget = self
            .chunk_budget
            .saturating_sub(held)
            .max(self.chunk_budget / 4);
        self.chunks.set_budget(budget);
    }

    /// The reader of a regular file's content, made on first read.
    fn reader_of(&self, ino: INodeNo) -> Result<(Arc<NodeInfo>, u64, Arc<RepoState>), Errno> {
        let held = self.node_of(ino)?;
        match held.kind {
            InodeKind::Node(info) if info.node.node_type == NodeType::Regular => {
                let st = self.repos.get(held.repo).map_err(|e| errno(&e, "open"))?;
                let size = self
                    .size_of(&st.repo, &info)
                    .map_err(|e| errno(&e, "open"))?;
                // cat-file and restore refuse a file whose content and
                // metadata disagree on its size (ContentReader::of_node);
                // so does the mount, with the same error, at open.
                let check = info.size_check.get_or_init(|| {
                    let recorded = info.node.recorded_size()?;
                    let content = match content_size(st.repo.objects(), info.node.content()) {
                        Ok(c) if c == recorded => return None,
                        Ok(c) => c,
                        Err(e) => return Some(e.to_string()),
                    };
                    Some(
                        ViewError::SizeDisagrees {
                            id: info.node.id,
                            content,
                            recorded,
                        }
                        .to_string(),
                    )
                });
                if let Some(message) = check {
                    tracing::error!("open: {message}");
                    return Err(Errno::EIO);
                }
                Ok((info, size, st))
            }
            InodeKind::Node(info) if info.node.node_type == NodeType::Directory => {
                Err(Errno::EISDIR)
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

impl Filesystem for RewindFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // As much kernel read-ahead as allowed: inflating is cheap per byte,
        // expensive per request.
        let _ = config
            .set_max_readahead(4 << 20)
            .or_else(|max| config.set_max_readahead(max));
        let _ = config.set_max_background(64);
        // Attributes come with directory listings (no lookup per entry for
        // `ls -l` or `cp -a`); lookups in one directory run in parallel.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // Symlink targets never change under an inode (`latest` gets a
            // new one when it moves).
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        // Files need no OPEN/RELEASE round trip: their content never
        // changes, so the kernel keeps their pages (its default without
        // OPEN is FOPEN_KEEP_CACHE).
        if config
            .add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT)
            .is_ok()
        {
            self.no_open.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent_held = match self.node_of(parent) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let name = name.as_bytes();
        let result = self.child(parent.0, &parent_held, name).and_then(|c| {
            let ino = self.inodes.assign(c.key, c.repo, c.kind.clone());
            match self.attr_of(ino, c.repo, &c.kind) {
                Ok((a, ttl)) => Ok((a, ttl, c.live)),
                Err(e) => {
                    self.inodes.forget(ino, 1);
                    Err(e)
                }
            }
        });
        self.rebalance();
        match result {
            Ok((attr, attr_ttl, live)) => {
                let entry_ttl = if live { LIVE_TTL } else { FROZEN_TTL };
                reply.entry_with_ttls(&attr_ttl, &entry_ttl, &attr, Generation(0))
            }
            Err(e) => reply.error(errno(&e, "lookup")),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let held = match self.node_of(ino) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        match self.attr_of(ino.0, held.repo, &held.kind) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(errno(&e, "getattr")),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let held = match self.node_of(ino) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        match self.read_link(&held) {
            Ok(t) => reply.data(&t),
            Err(ViewError::NotFound(_)) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(&e, "readlink")),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        // Checked here (not only at the first read) so that damage shows at
        // open, as before the kernel stopped asking.
        if let Err(e) = self.reader_of(ino) {
            return reply.error(e);
        }
        if self.no_open.load(Ordering::Relaxed) {
            // The kernel takes this as "no OPEN needed from now on".
            return reply.error(Errno::ENOSYS);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let (info, file_size, st) = match self.reader_of(ino) {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let reader = info
            .reader
            .get_or_init(|| FileReader::new(info.node.content(), file_size));
        // One buffer per serving thread, reused: a fresh megabyte per
        // request would be a fresh mmap, faulted in page by page.
        thread_local! {
            static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let result = OUT.with(|out| {
            let mut out = out.borrow_mut();
            out.clear();
            reader.read_at(
                st.repo.objects(),
                &self.chunks,
                offset,
                size as usize,
                &mut out,
            )?;
            Ok::<_, ViewError>(std::mem::take(&mut *out))
        });
        match result {
            Ok(out) => {
                let end = offset + out.len() as u64;
                reply.data(&out);
                OUT.with(|b| *b.borrow_mut() = out);
                let ahead =
                    reader.plan_ahead(st.repo.objects(), &self.chunks, offset, end, READ_AHEAD);
                if !ahead.is_empty() {
                    self.ahead.queue(ahead, &st.ahead_load);
                }
            }
            Err(e) => {
                let path = String::from_utf8_lossy(&info.node.name).into_owned();
                reply.error(errno(&e, &format!("reading {path} at {offset}")))
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush on a read-only file system; ENOSYS tells the
        // kernel not to send FLUSH again (one round trip less per close).
        reply.error(Errno::ENOSYS)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.node_of(ino).map(|h| h.kind) {
            Ok(InodeKind::Node(info)) if info.node.node_type != NodeType::Directory => {
                reply.error(Errno::ENOTDIR)
            }
            Ok(InodeKind::Latest(_)) => reply.error(Errno::ENOTDIR),
            // Inside a snapshot nothing changes: the kernel may keep the
            // listing itself.
            Ok(InodeKind::Node(_)) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (held, entries) = match self.listing(ino) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        let parent = held.parent;
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (
                if ino.0 == ROOT { ROOT } else { parent },
                FileType::Directory,
                &b".."[..],
            ),
        ];
        let all = dots.into_iter().chain(
            entries
                .iter()
                .map(|(name, ft, key)| (self.inodes.peek(key), *ft, name.as_slice())),
        );
        for (i, (child, ft, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, ft, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (held, entries) = match self.listing(ino) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        let parent = held.parent;
        // "." and ".." carry no reference (the kernel skips them); their
        // attributes are not used.
        let dot = |i| attr::synthetic_dir(i, self.uid, self.gid, self.mounted_at);
        let up = if ino.0 == ROOT { ROOT } else { parent };
        let dots = [(ino.0, &b"."[..]), (up, &b".."[..])];
        for (i, (child, name)) in dots.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(*child),
                i as u64 + 1,
                OsStr::from_bytes(name),
                &Duration::ZERO,
                &dot(*child),
                Generation(0),
            ) {
                return reply.ok();
            }
        }
        let skip = (offset as usize).saturating_sub(2);
        for (i, (name, ft, key)) in entries.iter().enumerate().skip(skip) {
            // Every entry returned is a reference the kernel will forget.
            let (child, attr, ttl) = self.plus_entry(ino.0, &held, name, *ft, key);
            if reply.add(
                INodeNo(child),
                i as u64 + 3,
                OsStr::from_bytes(name),
                &ttl,
                &attr,
                Generation(0),
            ) {
                // Did not fit: the kernel never sees this one.
                self.inodes.forget(child, 1);
                break;
            }
        }
        self.rebalance();
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, self.inodes.len() as u64, 0, 4096, 255, 4096)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = match self.node_of(ino).map(|h| h.kind) {
            Ok(InodeKind::Node(info)) => info.node.meta.as_ref().and_then(|m| {
                m.xattrs
                    .iter()
                    .find(|(k, _)| k.as_slice() == name.as_bytes())
                    .map(|(_, v)| v.clone())
            }),
            Ok(_) => None,
            Err(e) => return reply.error(e),
        };
        match value {
            // `ls -l` asks every file for its security label; "not
            // supported" makes coreutils stop asking for the rest of the
            // mount (it remembers that per device).
            None if not_served(name.as_bytes()) => reply.error(Errno::ENOTSUP),
            None => reply.error(Errno::NO_XATTR),
            Some(v) => xattr_reply(reply, &v, size),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut names = Vec::new();
        match self.node_of(ino).map(|h| h.kind) {
            Ok(InodeKind::Node(info)) => {
                for (k, _) in info.node.meta.iter().flat_map(|m| m.xattrs.iter()) {
                    names.extend_from_slice(k);
                    names.push(0);
                }
            }
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        xattr_reply(reply, &names, size)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self.node_of(ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    // Everything that would change the file system.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mknod(&self, _: &Request, _: INodeNo, _: &OsStr, _: u32, _: u32, _: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn mkdir(&self, _: &Request, _: INodeNo, _: &OsStr, _: u32, _: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _: &Request, _: INodeNo, _: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _: &Request, _: INodeNo, _: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn symlink(&self, _: &Request, _: INodeNo, _: &OsStr, _: &std::path::Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn rename(
        &self,
        _: &Request,
        _: INodeNo,
        _: &OsStr,
        _: INodeNo,
        _: &OsStr,
        _: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn link(&self, _: &Request, _: INodeNo, _: INodeNo, _: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn create(
        &self,
        _: &Request,
        _: INodeNo,
        _: &OsStr,
        _: u32,
        _: u32,
        _: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _: &Request,
        _: INodeNo,
        _: &OsStr,
        _: &[u8],
        _: i32,
        _: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _: &Request, _: INodeNo, _: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }
}

fn seconds(t: i64) -> SystemTime {
    attr::system_time(crate::meta::Timespec { sec: t, nsec: 0 })
}

/// How often freed memory is handed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// The caches free and allocate blobs of every size all the time; glibc
/// keeps what is freed inside its arenas, so the process would grow past
/// the budget by the fragmentation. A background thread hands free pages
/// back every few seconds (malloc_trim also releases free pages in the
/// middle of an arena).
fn start_trimmer() {
    let spawned = std::thread::Builder::new()
        .name("rewind-trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_EVERY);
            // SAFETY: malloc_trim takes an integer and only hands pages
            // glibc holds free back to the kernel, under its arena locks.
            unsafe { libc::malloc_trim(0) };
        });
    if let Err(e) = spawned {
        tracing::debug!("no allocator trimming thread: {e}");
    }
}

/// xattr names answered "not supported" when the file has no such saved
/// attribute: security labels (SELinux and the like), which describe the
/// saving host's policy. The cost of a listing that stops asking is only
/// that a later file's saved label is not marked by `ls`. ACLs
/// (`system.posix_acl_*`) keep "no data": a tool that stopped asking for
/// them would copy files without their saved ACLs.
fn not_served(name: &[u8]) -> bool {
    name.starts_with(b"security.")
}

/// getxattr/listxattr's protocol: size 0 asks for the length; too small a
/// buffer is ERANGE.
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}
