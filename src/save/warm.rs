//! Warming the kernel's caches ahead of the walk, for saves that start on
//! a cold page cache (a nightly cron job).
//!
//! The walker is one thread and visits paths one at a time: on a cold
//! cache each directory listing, each `lstat` and each small file's first
//! read is a synchronous disk round trip, during which the whole pipeline
//! waits (measured on the benchmark's 50,000 small files: reading them one
//! after another took 10.6 s, eight at a time 3.4 s). Here a few helper
//! threads walk the same trees in the same order, a bounded distance
//! ahead of the walker, listing directories and `lstat`-ing every entry, so
//! that the disk has several requests to work on and the walker finds the
//! inodes cached. Files that probably changed since the last save (their
//! ctime is recent, or there was no last save) also get the head of their
//! content requested with `POSIX_FADV_WILLNEED`; files the change index
//! will vouch for are never read.
//!
//! Purely a hint: the helpers never read file data themselves, open files
//! read-only without moving access times and never open anything but
//! regular files; errors are ignored, and nothing they do changes what is
//! saved.

use crate::meta::capture::lstat;
use crate::meta::Timespec;
use crate::source::filter::Filter;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Helper threads: mostly asleep in the kernel waiting for the disk, so
/// more than the cores; enough requests in flight for an SSD's queue.
const THREADS: usize = 8;
/// How many entries the helpers may get ahead of the walker: bounds the
/// page cache they fill (at most `AHEAD` file heads) and keeps what they
/// warmed from being evicted before the walker gets there.
const AHEAD: u64 = 4096;
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

/// A directory to list, and the device it must stay on (`--one-file-system`).
struct Dir {
    path: PathBuf,
    device: Option<u64>,
}

struct State {
    /// Directories still to list; a stack, so that the helpers go depth
    /// first in name order, as the walker does.
    stack: Vec<Dir>,
    /// Helpers running, and those of them waiting for work.
    helpers: usize,
    idle: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Entries the helpers have looked at, and entries the walker has.
    warmed: AtomicU64,
    walked: AtomicU64,
    filter: Filter,
    data: WarmData,
}

/// The helper threads; stopped (and joined) on drop.
pub(super) struct Warmer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Warmer {
    /// Starts warming the trees under `roots` (in the walker's order), each
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
                helpers: THREADS,
                idle: 0,
                stop: false,
            }),
            work: Condvar::new(),
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
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
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
    while let Some(dir) = next_dir(shared) {
        loop {
            let warmed = shared.warmed.load(Ordering::Relaxed);
            let walked = shared.walked.load(Ordering::Relaxed);
            if walked > warmed + AHEAD {
                // The walker outruns us: the cache is warm already, and
                // going on would only cost CPU.
                stop(shared);
                return;
            }
            if warmed <= walked + AHEAD {
                break;
            }
            // Stay a bounded distance ahead of the walker.
            if shared.state.lock().map_or(true, |s| s.stop) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let subdirs = warm_dir(shared, &dir);
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        // Reversed, so that the first subdirectory is listed next.
        state.stack.extend(subdirs.into_iter().rev());
        drop(state);
        shared.work.notify_all();
    }
}

fn stop(shared: &Shared) {
    shared.state.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
    shared.work.notify_all();
}

/// The next directory to list; `None` when the walk is over (nothing left
/// and every helper idle) or stopped.
fn next_dir(shared: &Shared) -> Option<Dir> {
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if state.stop {
            return None;
        }
        if let Some(dir) = state.stack.pop() {
            return Some(dir);
        }
        state.idle += 1;
        if state.idle >= state.helpers {
            // Nobody is listing anything that could add work: done.
            state.stop = true;
            shared.work.notify_all();
            return None;
        }
        state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
        state.idle -= 1;
    }
}

/// Lists `dir`, looks at every entry the walker will look at, and returns
/// its subdirectories in name order.
fn warm_dir(shared: &Shared, dir: &Dir) -> Vec<Dir> {
    let Ok(iter) = std::fs::read_dir(&dir.path) else {
        return Vec::new();
    };
    let mut names: Vec<Vec<u8>> = iter
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    let mut subdirs = Vec::new();
    for name in names {
        let path = dir.path.join(OsStr::from_bytes(&name));
        if shared.filter.excludes(&path) {
            continue;
        }
        shared.warmed.fetch_add(1, Ordering::Relaxed);
        let Ok(st) = lstat(&path) else { continue };
        match st.file_type() {
            libc::S_IFDIR if dir.device.is_none_or(|d| d == st.dev) => {
                subdirs.push(Dir {
                    path,
                    device: dir.device,
                });
            }
            libc::S_IFREG if st.size > 0 => {
                let changed = match shared.data {
                    WarmData::All => true,
                    WarmData::ChangedSince(t) => st.ctime >= t,
                };
                if changed {
                    warm_head(&path);
                }
            }
            _ => {}
        }
    }
    subdirs
}

/// Asks the kernel to start reading the head of the regular file `path`.
/// Anything else (devices, FIFOs) is never opened: opening can have effects.
fn warm_head(path: &std::path::Path) {
    // O_NONBLOCK: should the path have become a FIFO since, do not hang.
    let Ok(file) = super::walk::open_noatime(path, libc::O_NONBLOCK) else {
        return;
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        _ => return,
    }
    // SAFETY: a plain syscall on a descriptor we own; a hint, errors ignored.
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
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        touch(&b.join("empty"), b"");
        expected += 3;
        let filter = Filter::new(&["*.tmp".to_string()], &[]).unwrap();
        let warmer = Warmer::start(vec![(a, None), (b, None)], filter, WarmData::All);
        assert_eq!(warmer.wait(), expected);
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
