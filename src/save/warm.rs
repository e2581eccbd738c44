//! Listing and `lstat`-ing ahead of the walk, on several threads.
//!
//! The walker is one thread and visits paths one at a time: on a cold
//! cache each directory listing, each `lstat` and each small file's first
//! read is a synchronous disk round trip, during which the whole pipeline
//! waits (measured on the benchmark's 50,000 small files: reading them one
//! after another took 10.6 s, eight at a time 3.4 s); on a warm cache the
//! system calls alone are most of an unchanged re-save. Here a few helper
//! threads walk the same trees in the same order, a bounded distance
//! ahead of the walker, listing each directory and `lstat`-ing every entry
//! (relative to the open directory: no path lookup from `/` per entry).
//! The walker takes those listings, stats included, instead of making the
//! calls again ([`Warmer::listing`]); a directory no helper has reached
//! yet it lists itself, and hands its subdirectories to the helpers.
//!
//! A listing is taken after the save started (the change index's racy
//! margin is counted from then) and every `lstat` before the path is read,
//! exactly as if the walker had made the calls itself a moment earlier:
//! a file changed after its `lstat` is saved with the older stat in the
//! index, and so is read again next time.
//!
//! Files that probably changed since the last save (their ctime is
//! recent, or there was no last save) also get the head of their content
//! requested with `POSIX_FADV_WILLNEED`; files the change index will vouch
//! for are never read. The helpers never read file data themselves, open
//! files read-only without moving access times and never open anything but
//! regular files and directories.

use super::readahead::DIRECT_MIN_SIZE;
use crate::locks::{lock, wait};
use crate::meta::capture::{lstat_at, Stat};
use crate::meta::Timespec;
use crate::source::filter::Filter;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Helper threads: mostly asleep in the kernel waiting for the disk, so
/// more than the cores; enough requests in flight for an SSD's queue.
const THREADS: usize = 8;
/// How many entries the helpers may list ahead of the walker: bounds the
/// listings held for it (a few hundred bytes an entry: ~6 MiB). Far
/// enough that on an unchanged re-save, whose cost is the `lstat`s, the
/// helpers finish most of the tree while the walker still waits for
/// something else (over SSH: the server's greeting, a few hundred
/// milliseconds).
const LIST_AHEAD: u64 = 32768;
/// How far ahead of the walker file heads are requested: bounds the page
/// cache filled (at most `WARM_AHEAD` heads) and keeps what was warmed
/// from being evicted before the walker gets there.
const WARM_AHEAD: u64 = 4096;
/// Bytes of a file's head requested at most; the walker's sequential reads
/// and the kernel's readahead cover the rest.
const HEAD_BYTES: i64 = 1 << 20;

/// Which regular files get their content warmed.
#[derive(Clone, Copy, Debug)]
pub(super) enum WarmData {
    /// Every file (no previous save to compare with).
    All,
    /// Files whose ctime is at or after this: they changed since (about)
    /// the last save, so the walker will read them.
    ChangedSince(Timespec),
}

/// One entry of a listed directory: its name and its `lstat`.
pub(super) struct Listed {
    pub name: Vec<u8>,
    pub stat: io::Result<Stat>,
}

/// A directory's entries in bytewise name order, excluded ones left out;
/// an error if it could not be listed.
pub(super) type Listing = io::Result<Vec<Listed>>;

/// A directory to list, and the device it must stay on (`--one-file-system`).
struct Dir {
    path: PathBuf,
    device: Option<u64>,
}

enum Slot {
    /// A helper is listing it.
    Busy,
    Ready(Listing),
}

struct State {
    /// Directories still to list; a stack, so that the helpers go depth
    /// first in name order, as the walker does.
    stack: Vec<Dir>,
    /// Listings made (or being made) for the walker, by path.
    slots: HashMap<PathBuf, Slot>,
    /// Directories the walker listed itself: skipped when popped.
    taken: HashSet<PathBuf>,
    /// Helpers running, and those of them waiting for work.
    helpers: usize,
    idle: usize,
    /// The walker is listing a directory whose subdirectories it will
    /// push: the helpers must not conclude that the walk is over.
    walker_listing: bool,
    /// The walker waits for a listing (wake it only then: a wake-up per
    /// directory is a system call per directory).
    walker_waiting: bool,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// New directories on the stack, or the end.
    work: Condvar,
    /// A listing became ready.
    ready: Condvar,
    /// Entries the helpers have listed, and entries the walker has passed.
    warmed: AtomicU64,
    walked: AtomicU64,
    filter: Filter,
    data: WarmData,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// The helper threads; stopped (and joined) on drop.
pub(super) struct Warmer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Warmer {
    /// Starts listing the trees under `roots` (in the walker's order), each
    /// with the device it must stay on, if any.
    pub fn start(roots: Vec<(PathBuf, Option<u64>)>, filter: Filter, data: WarmData) -> Warmer {
        let stack = roots
            .into_iter()
            .rev()
            .map(|(path, device)| Dir { path, device })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stack,
                slots: HashMap::new(),
                taken: HashSet::new(),
                helpers: THREADS,
                idle: 0,
                walker_listing: false,
                walker_waiting: false,
                stop: false,
            }),
            work: Condvar::new(),
            ready: Condvar::new(),
            warmed: AtomicU64::new(0),
            walked: AtomicU64::new(0),
            filter,
            data,
        });
        let threads: Vec<_> = (0..THREADS)
            .filter_map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("warm-{i}"))
                    .spawn(move || helper(&shared))
                    .ok()
            })
            .collect();
        if threads.len() < THREADS {
            // Some could not be started: the others must not wait for them.
            let mut state = shared.lock();
            state.helpers = threads.len();
            state.stop |= threads.is_empty();
            drop(state);
            shared.work.notify_all();
        }
        Warmer { shared, threads }
    }

    /// The walker has passed `n` more entries.
    pub fn walked(&self, n: u64) {
        self.shared.walked.fetch_add(n, Ordering::Relaxed);
    }

    /// The listing of `dir` (staying on `device`), made by a helper if one
    /// got there first (waiting for it if it is at it), else now by the
    /// caller, whose subdirectories then go to the helpers.
    pub fn listing(&self, dir: &Path, device: Option<u64>) -> Listing {
        let shared = &*self.shared;
        let mut state = shared.lock();
        loop {
            match state.slots.remove(dir) {
                Some(Slot::Ready(listing)) => return listing,
                Some(Slot::Busy) => {
                    state.slots.insert(dir.to_path_buf(), Slot::Busy);
                    state.walker_waiting = true;
                    state = wait(&shared.ready, state);
                    state.walker_waiting = false;
                }
                None => break,
            }
        }
        let helping = !state.stop;
        if helping {
            state.taken.insert(dir.to_path_buf());
            state.walker_listing = true;
        }
        drop(state);
        let listing = list_dir(dir, &shared.filter);
        if helping {
            let subdirs = listing
                .as_ref()
                .map_or(Vec::new(), |l| subdirs(dir, device, l));
            let mut state = shared.lock();
            state.walker_listing = false;
            // Reversed, so that the first subdirectory is listed next.
            state.stack.extend(subdirs.into_iter().rev());
            // Even with nothing pushed: idle helpers may be waiting to see
            // whether the walk is over.
            let wake = state.idle > 0;
            drop(state);
            if wake {
                shared.work.notify_all();
            }
        }
        listing
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        stop(&self.shared);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn helper(shared: &Shared) {
    loop {
        // Stay a bounded distance ahead of the walker.
        if !wait_for_walker(shared, shared.warmed.load(Ordering::Relaxed), LIST_AHEAD) {
            return;
        }
        let Some(dir) = next_dir(shared) else { return };
        let listing = list_dir(&dir.path, &shared.filter);
        let mut subdirs_found = Vec::new();
        // Where this directory's entries are in the walk, about: the
        // entries listed before them.
        let mut position = 0;
        let mut heads = Vec::new();
        if let Ok(entries) = &listing {
            position = shared
                .warmed
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            heads = heads_to_warm(shared, &dir.path, entries);
            subdirs_found = subdirs(&dir.path, dir.device, entries);
        }
        let pushed = subdirs_found.len();
        let mut state = shared.lock();
        // Reversed, so that the first subdirectory is listed next.
        state.stack.extend(subdirs_found.into_iter().rev());
        state.slots.insert(dir.path, Slot::Ready(listing));
        let (wake_walker, wake_helpers) = (state.walker_waiting, state.idle.min(pushed));
        drop(state);
        if wake_walker {
            shared.ready.notify_all();
        }
        for _ in 0..wake_helpers {
            shared.work.notify_one();
        }
        // After the listing is published (the walker never waits for
        // this), and only once the walker is near.
        if !heads.is_empty() {
            if !wait_for_walker(shared, position, WARM_AHEAD) {
                return;
            }
            heads.iter().for_each(|path| warm_head(path));
        }
    }
}

/// Sleeps until the walker is at most `distance` entries behind
/// `position`; false if the warmer was stopped meanwhile.
fn wait_for_walker(shared: &Shared, position: u64, distance: u64) -> bool {
    while position > shared.walked.load(Ordering::Relaxed) + distance {
        if shared.lock().stop {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn stop(shared: &Shared) {
    shared.lock().stop = true;
    shared.work.notify_all();
    shared.ready.notify_all();
}

/// The next directory to list, marked busy; `None` when the walk is over
/// (nothing left and nobody listing) or stopped.
fn next_dir(shared: &Shared) -> Option<Dir> {
    let mut state = shared.lock();
    loop {
        if state.stop {
            return None;
        }
        if let Some(dir) = state.stack.pop() {
            if state.taken.remove(&dir.path) {
                continue; // the walker got there first
            }
            state.slots.insert(dir.path.clone(), Slot::Busy);
            return Some(dir);
        }
        state.idle += 1;
        if state.idle >= state.helpers && !state.walker_listing {
            // Nobody is listing anything that could add work: done.
            state.stop = true;
            shared.work.notify_all();
            shared.ready.notify_all();
            return None;
        }
        state = wait(&shared.work, state);
        state.idle -= 1;
    }
}

/// The subdirectories of `dir` the walk goes into, in name order.
fn subdirs(dir: &Path, device: Option<u64>, entries: &[Listed]) -> Vec<Dir> {
    entries
        .iter()
        .filter_map(|e| {
            let st = e.stat.as_ref().ok()?;
            (st.file_type() == libc::S_IFDIR && device.is_none_or(|d| d == st.dev)).then(|| Dir {
                path: dir.join(OsStr::from_bytes(&e.name)),
                device,
            })
        })
        .collect()
}

/// Bytes of directory entries fetched per `getdents64` call: most
/// directories fit in one call (plus the one that finds the end).
const DIRENT_BUF: usize = 32 << 10;

thread_local! {
    /// Each listing thread's `getdents64` buffer, zeroed once: a fresh
    /// zeroed buffer per directory cost a 32 KiB memset for each of the
    /// benchmark's 12,000 directories (~2% of the helpers' time). u64s:
    /// the kernel writes 8-byte aligned records.
    static DIRENT_SPACE: RefCell<Vec<u64>> = RefCell::new(vec![0u64; DIRENT_BUF / 8]);
}

/// Lists `dir` (never through a symlink) and `lstat`s every entry the
/// filter keeps, relative to the open directory; in bytewise name order.
/// `getdents64` directly rather than `opendir`, which costs an `fstat` and
/// two `fcntl` calls per directory on top.
pub(super) fn list_dir(dir: &Path, filter: &Filter) -> Listing {
    let fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    DIRENT_SPACE.with_borrow_mut(|buf| read_names(&fd, buf, &mut names))?;
    names.sort_unstable();
    let mut out = Vec::with_capacity(names.len());
    let mut cname = Vec::new();
    for name in names {
        if filter.excludes(&dir.join(OsStr::from_bytes(&name))) {
            continue;
        }
        cname.clear();
        cname.extend_from_slice(&name);
        cname.push(0);
        // Names from the kernel hold no NUL.
        let stat = CStr::from_bytes_with_nul(&cname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in a file name"))
            .and_then(|c| lstat_at(fd.as_fd(), c));
        out.push(Listed { name, stat });
    }
    Ok(out)
}

/// Reads every name in the open directory `fd` into `names`, through
/// `buf` (the calling thread's [`DIRENT_SPACE`]).
fn read_names(fd: &File, buf: &mut [u64], names: &mut Vec<Vec<u8>>) -> io::Result<()> {
    loop {
        let space = std::mem::size_of_val(buf);
        // SAFETY: fd is an open File borrowed for the call; buf is a live,
        // exclusively borrowed slice of exactly `space` bytes, the most
        // the kernel is told it may write.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                fd.as_raw_fd(),
                buf.as_mut_ptr(),
                space,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        // SAFETY: 0 < n <= space (getdents64 never returns more than the
        // count passed), all `space` bytes of buf are initialised (zeroed
        // u64s, then whatever the kernel wrote), u8 needs no alignment,
        // and the slice borrows buf only until parse_dirents returns.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        parse_dirents(bytes, names)?;
    }
    Ok(())
}

/// The names in a `getdents64` buffer (records of: inode u64, offset i64,
/// record length u16, type u8, NUL-terminated name), without "." and "..".
fn parse_dirents(mut bytes: &[u8], names: &mut Vec<Vec<u8>>) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed directory entry");
    while !bytes.is_empty() {
        let reclen = usize::from(u16::from_ne_bytes(
            bytes
                .get(16..18)
                .ok_or_else(bad)?
                .try_into()
                .expect("2 bytes"),
        ));
        let record = bytes
            .get(..reclen)
            .filter(|_| reclen > 19)
            .ok_or_else(bad)?;
        let name = &record[19..];
        let name = &name[..name.iter().position(|&b| b == 0).ok_or_else(bad)?];
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
        bytes = &bytes[reclen..];
    }
    Ok(())
}

/// The regular files of `dir` that probably changed, whose heads the
/// kernel is to read ahead.
fn heads_to_warm(shared: &Shared, dir: &Path, entries: &[Listed]) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|e| {
            let Ok(st) = &e.stat else { return false };
            // Big files are read ahead by a thread of their own, around the
            // cache (`readahead`): warming their heads would read them twice.
            if st.file_type() != libc::S_IFREG || st.size == 0 || st.size >= DIRECT_MIN_SIZE {
                return false;
            }
            match shared.data {
                WarmData::All => true,
                WarmData::ChangedSince(t) => st.ctime >= t,
            }
        })
        .map(|e| dir.join(OsStr::from_bytes(&e.name)))
        .collect()
}

/// Asks the kernel to start reading the head of the regular file `path`.
/// Anything else (devices, FIFOs) is never opened: opening can have effects.
fn warm_head(path: &std::path::Path) {
    // O_NONBLOCK: should the path have become a FIFO since, do not hang.
    let Ok(file) = super::stream::open_noatime(path, libc::O_NONBLOCK) else {
        return;
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        _ => return,
    }
    // SAFETY: `file` keeps the descriptor open for the call; posix_fadvise
    // takes only integers and touches no memory. A hint: errors ignored.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, HEAD_BYTES, libc::POSIX_FADV_WILLNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    impl Warmer {
        /// Waits for the helpers to finish on their own; the entries they
        /// looked at.
        fn wait(mut self) -> u64 {
            for t in self.threads.drain(..) {
                t.join().unwrap();
            }
            self.shared.warmed.load(Ordering::Relaxed)
        }
    }

    fn touch(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    /// Every entry the walker would look at is looked at once, excluded
    /// paths are skipped, FIFOs are never opened (opening one would block
    /// forever), and the helpers end by themselves when the trees are done.
    #[test]
    fn helpers_visit_every_entry_once_and_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        let mut expected = 0;
        for i in 0..20 {
            let sub = a.join(format!("sub{i}"));
            std::fs::create_dir(&sub).unwrap();
            for j in 0..5 {
                touch(&sub.join(format!("f{j}")), b"data");
            }
            expected += 6;
        }
        touch(&a.join("skip.tmp"), b"excluded");
        std::os::unix::fs::symlink("sub0", a.join("link")).unwrap();
        let fifo = std::ffi::CString::new(b.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: fifo is a NUL-terminated CString that outlives the call,
        // which only reads it.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        touch(&b.join("empty"), b"");
        expected += 3;
        let filter = Filter::new(&["*.tmp".to_string()], &[]).unwrap();
        let warmer = Warmer::start(vec![(a, None), (b, None)], filter, WarmData::All);
        assert_eq!(warmer.wait(), expected);
    }

    /// The walker's view through [`Warmer::listing`] (helpers' listings,
    /// or its own where it got ahead) is exactly a plain listing of every
    /// directory, stats included, in walk order.
    #[test]
    fn listings_match_a_plain_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        std::fs::create_dir(&root).unwrap();
        for i in 0..30 {
            let sub = root.join(format!("d{i:02}"));
            std::fs::create_dir(&sub).unwrap();
            for j in 0..(i % 7) {
                touch(&sub.join(format!("f{j}")), &[b'x'; 3]);
                std::fs::create_dir_all(sub.join(format!("e{j}/g"))).unwrap();
            }
        }
        touch(&root.join("skip.tmp"), b"excluded");
        let filter = Filter::new(&["*.tmp".to_string()], &[]).unwrap();
        fn walk(
            dir: &Path,
            list: &mut dyn FnMut(&Path) -> Listing,
            out: &mut Vec<(PathBuf, Vec<u8>, u64, u64)>,
        ) {
            for e in list(dir).unwrap() {
                let st = e.stat.unwrap();
                let path = dir.join(OsStr::from_bytes(&e.name));
                out.push((path.clone(), e.name, st.ino, st.size));
                if st.file_type() == libc::S_IFDIR {
                    walk(&path, list, out);
                }
            }
        }
        let mut plain = Vec::new();
        walk(&root, &mut |d| list_dir(d, &filter), &mut plain);
        assert!(plain.iter().all(|(p, ..)| !p.ends_with("skip.tmp")));
        for _ in 0..3 {
            let warmer = Warmer::start(vec![(root.clone(), None)], filter.clone(), WarmData::All);
            let mut seen = Vec::new();
            walk(
                &root,
                &mut |d| {
                    let l = warmer.listing(d, None);
                    if let Ok(l) = &l {
                        warmer.walked(l.len() as u64);
                    }
                    l
                },
                &mut seen,
            );
            assert_eq!(seen, plain);
        }
    }

    /// Dropped before the end (the save failed, or finished first), the
    /// helpers stop and are joined.
    #[test]
    fn dropping_stops_the_helpers() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..50 {
            let sub = tmp.path().join(format!("d{i}"));
            std::fs::create_dir(&sub).unwrap();
            touch(&sub.join("f"), b"x");
        }
        let filter = Filter::new(&[], &[]).unwrap();
        let since = WarmData::ChangedSince(Timespec { sec: 0, nsec: 0 });
        drop(Warmer::start(
            vec![(tmp.path().to_path_buf(), None)],
            filter,
            since,
        ));
    }
}
