//! Progress of a long operation (a save, later a restore or a check): a
//! handle of atomic counters that the worker threads update, and a terminal
//! renderer that reads it on its own thread and draws an `indicatif` bar.
//!
//! The split keeps the hot path cheap and free of terminal concerns: the
//! save pipeline only does relaxed atomic adds (a few nanoseconds per file
//! or chunk), never formats or writes anything, and does not know whether
//! anyone is watching. The renderer samples the counters about ten times a
//! second, draws only when standard error is a terminal and the user did not
//! ask for quiet or machine output, and is always cleared before the
//! command prints its summary or an error (also when it is dropped on an
//! error path), so no half-drawn bar is left behind. Under cron nothing is
//! drawn at all: no thread is started.
//!
//! Log lines (warnings about unreadable files) written while the bar is on
//! screen go through [`StderrWriter`], which hides the bar for the duration
//! of the write so that the warning lands on its own line.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a regular file compared with the previous snapshot, as the change
/// index sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// Not in the previous snapshot of this name.
    New,
    /// In the previous snapshot, but its size, times or inode differ: read again.
    Changed,
    /// Unchanged since the previous snapshot: its stored objects were reused
    /// without reading it.
    Unchanged,
}

/// Counters of one running operation, shared as `Arc<Progress>` between the
/// workers that update them and the renderer that reads them.
///
/// Every counter only grows, and each is updated on its own with relaxed
/// ordering: a reader may see `files` from one instant and `bytes_read`
/// from the next, which is fine for a display and for a summary taken after
/// the workers have finished (thread joins order everything before it).
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    directories: AtomicU64,
    bytes_read: AtomicU64,
    bytes_new: AtomicU64,
    warnings: AtomicU64,
    /// Expected totals when something counted them first; 0 = unknown.
    total_bytes: AtomicU64,
    total_files: AtomicU64,
    interrupted: AtomicBool,
    /// The path being worked on. A mutex, not an atomic, but only ever taken
    /// with `try_lock` by the workers, so a worker never waits for the
    /// renderer; the buffer is reused, so setting it does not allocate once
    /// it has grown to the longest path.
    current: Mutex<PathBuf>,
}

/// A consistent-enough copy of the counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub files: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub directories: u64,
    pub bytes_read: u64,
    pub bytes_new: u64,
    pub warnings: u64,
    /// `None` until [`Progress::set_totals`] was called.
    pub total_bytes: Option<u64>,
    pub total_files: Option<u64>,
}

impl ProgressSnapshot {
    /// Whether the files were reported with [`Progress::add_classified_file`]:
    /// only then are `files_new`, `files_changed` and `files_unchanged`
    /// meaningful (rather than zero because nobody counted them).
    pub fn classified(&self) -> bool {
        self.files_new + self.files_changed + self.files_unchanged > 0
    }
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// One more file (anything that is not a directory) handled, whose
    /// change state is not known.
    pub fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    /// One more regular file handled, and how it compared with the previous
    /// snapshot. Counts it in `files` too: do not also call [`add_file`].
    ///
    /// [`add_file`]: Progress::add_file
    pub fn add_classified_file(&self, change: FileChange) {
        self.files.fetch_add(1, Ordering::Relaxed);
        let counter = match change {
            FileChange::New => &self.files_new,
            FileChange::Changed => &self.files_changed,
            FileChange::Unchanged => &self.files_unchanged,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_directory(&self) {
        self.directories.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes of file content read from the source (call per read buffer or
    /// per chunk: that is what makes the rate smooth).
    pub fn add_bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes of objects added to the repository (before compression).
    pub fn add_bytes_new(&self, n: u64) {
        self.bytes_new.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_warning(&self) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
    }

    /// Announces the expected totals (for a percentage and an ETA), e.g.
    /// from a pre-count or from the previous snapshot's size. Either may be
    /// 0 for "unknown". May be called again as the estimate improves.
    pub fn set_totals(&self, bytes: u64, files: u64) {
        self.total_bytes.store(bytes, Ordering::Relaxed);
        self.total_files.store(files, Ordering::Relaxed);
    }

    /// The path now being read. Never blocks: if the renderer is copying the
    /// previous path at this instant, this update is skipped (the next file
    /// will show up a tenth of a second later).
    pub fn set_current(&self, path: &Path) {
        if let Ok(mut current) = self.current.try_lock() {
            current.as_mut_os_string().clear();
            current.push(path);
        }
    }

    pub fn current(&self) -> PathBuf {
        match self.current.lock() {
            Ok(p) => p.clone(),
            // A worker panicked while holding it: the path is only for display.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks the operation to stop at the next safe point (e.g. on SIGINT).
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Relaxed);
    }

    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let known = |v: u64| (v > 0).then_some(v);
        ProgressSnapshot {
            files: self.files.load(Ordering::Relaxed),
            files_new: self.files_new.load(Ordering::Relaxed),
            files_changed: self.files_changed.load(Ordering::Relaxed),
            files_unchanged: self.files_unchanged.load(Ordering::Relaxed),
            directories: self.directories.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_new: self.bytes_new.load(Ordering::Relaxed),
            warnings: self.warnings.load(Ordering::Relaxed),
            total_bytes: known(self.total_bytes.load(Ordering::Relaxed)),
            total_files: known(self.total_files.load(Ordering::Relaxed)),
        }
    }
}

/// Whether a progress bar should be drawn: only for a person watching a
/// terminal, never under cron, with `--quiet`, with `--json`, or on a dumb
/// terminal (which cannot move the cursor back to redraw).
pub fn should_draw(quiet: bool, machine_output: bool) -> bool {
    !quiet
        && !machine_output
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The bar on screen now, if any, so that [`StderrWriter`] can hide it while
/// a log line is written. At most one renderer draws at a time.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

const TICK: Duration = Duration::from_millis(100);

/// Draws a [`Progress`] on standard error from its own thread until
/// [`finish`](Renderer::finish) or drop. A disabled renderer (see
/// [`should_draw`]) starts no thread and draws nothing.
pub struct Renderer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Renderer {
    /// Starts drawing `progress` if `enabled`; `verb` starts the line
    /// ("saving").
    pub fn start(progress: Arc<Progress>, enabled: bool, verb: &'static str) -> Renderer {
        if !enabled {
            return Renderer {
                stop: None,
                thread: None,
                bar: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(spinner_style());
        set_active(Some(bar.clone()));
        let (stop, stopped) = mpsc::channel::<()>();
        let drawn = bar.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut has_total = false;
                loop {
                    update(&drawn, &progress, verb, &mut has_total);
                    match stopped.recv_timeout(TICK) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        // Asked to stop, or the Renderer is gone.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
        match thread {
            Ok(thread) => Renderer {
                stop: Some(stop),
                thread: Some(thread),
                bar: Some(bar),
            },
            // No thread, no bar: the operation itself must not fail for it.
            Err(_) => {
                set_active(None);
                bar.finish_and_clear();
                Renderer {
                    stop: None,
                    thread: None,
                    bar: None,
                }
            }
        }
    }

    /// Whether a bar is being drawn.
    pub fn is_drawing(&self) -> bool {
        self.bar.is_some()
    }

    /// Stops the drawing thread and erases the bar, leaving the cursor at
    /// the start of an empty line for the summary.
    pub fn finish(mut self) {
        self.stop_and_clear();
    }

    fn stop_and_clear(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The thread only draws; if it panicked, there is nothing to save.
            let _ = thread.join();
        }
        if let Some(bar) = self.bar.take() {
            set_active(None);
            bar.finish_and_clear();
        }
    }
}

impl Drop for Renderer {
    /// An error path that returns early still erases the bar before `main`
    /// prints the error.
    fn drop(&mut self) {
        self.stop_and_clear();
    }
}

fn set_active(bar: Option<ProgressBar>) {
    match ACTIVE_BAR.lock() {
        Ok(mut active) => *active = bar,
        Err(poisoned) => *poisoned.into_inner() = bar,
    }
}

/// Columns of the bar in [`bar_style`].
const BAR_COLUMNS: usize = 25;

fn spinner_style() -> ProgressStyle {
    // The templates are constants; should one ever fail to parse, fall back
    // to indicatif's default rather than fail the save. The message is the
    // whole line but the spinner: [`line`] fits it to the terminal.
    ProgressStyle::with_template("{spinner} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style(verb: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!("{verb} [{{bar:{BAR_COLUMNS}}}] {{wide_msg}}"))
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Columns left for the message by each style's fixed part.
fn fixed_columns(verb: &str, has_total: bool) -> usize {
    if has_total {
        verb.chars().count() + BAR_COLUMNS + 4
    } else {
        2
    }
}

/// The terminal's width in columns (80 when standard error is not one).
fn terminal_columns() -> usize {
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ only writes a winsize into the struct the pointer
    // refers to, which lives across the call; a bad descriptor fails.
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    if rc == 0 && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}

fn update(bar: &ProgressBar, progress: &Progress, verb: &str, has_total: &mut bool) {
    let s = progress.snapshot();
    match s.total_bytes {
        Some(total) if !*has_total => {
            bar.set_style(bar_style(verb));
            bar.set_length(total);
            *has_total = true;
        }
        Some(total) => bar.set_length(total),
        None => {}
    }
    bar.set_position(s.bytes_read);
    let timing = Timing {
        elapsed: bar.elapsed(),
        per_sec: bar.per_sec(),
        eta: (*has_total).then(|| bar.eta()),
    };
    let width = terminal_columns().saturating_sub(fixed_columns(verb, *has_total) + 1);
    let current = progress.current();
    bar.set_message(line(
        &s,
        (!*has_total).then_some(verb),
        &timing,
        &current.to_string_lossy(),
        width,
    ));
    bar.tick();
}

/// What the bar knows of time.
struct Timing {
    elapsed: Duration,
    per_sec: f64,
    /// With a bar (known totals) only.
    eta: Option<Duration>,
}

/// The paths shortened below this many columns say too little: the line
/// leaves the path out instead.
const MIN_PATH_COLUMNS: usize = 12;
/// Columns the path should get before the rate and the unchanged count
/// are shown (they are left out on a narrow terminal first).
const WANTED_PATH_COLUMNS: usize = 30;

/// The text of the progress line after the spinner or the bar, within
/// `width` columns: the counters (with `verb` first, when there is no bar
/// to follow it), then the current path shortened from the middle into
/// what is left. The rate, then the unchanged count, are dropped when
/// keeping them would leave the path fewer than [`WANTED_PATH_COLUMNS`].
fn line(s: &ProgressSnapshot, verb: Option<&str>, t: &Timing, path: &str, width: usize) -> String {
    let counters = |rate: bool, unchanged: bool| {
        let mut msg = String::new();
        match (verb, s.total_bytes) {
            (Some(verb), _) => msg.push_str(&format!(
                "{verb} {} {} read",
                clock(t.elapsed),
                human_bytes(s.bytes_read)
            )),
            (None, Some(total)) => msg.push_str(&format!(
                "{}/{}",
                human_bytes(s.bytes_read),
                human_bytes(total)
            )),
            (None, None) => msg.push_str(&format!("{} read", human_bytes(s.bytes_read))),
        }
        if rate {
            msg.push_str(&format!(", {}/s", human_bytes(t.per_sec as u64)));
        }
        if let Some(eta) = t.eta {
            msg.push_str(&format!(", ETA {}", clock(eta)));
        }
        match s.total_files {
            Some(total) => msg.push_str(&format!(", {}/{total} files", s.files)),
            None => msg.push_str(&format!(", {}", count(s.files, "file", "files"))),
        }
        if unchanged && s.classified() {
            msg.push_str(&format!(" ({} unchanged)", s.files_unchanged));
        }
        msg.push_str(&format!(", {} new", human_bytes(s.bytes_new)));
        if s.warnings > 0 {
            msg.push_str(&format!(", {}", count(s.warnings, "warning", "warnings")));
        }
        msg
    };
    let wanted = WANTED_PATH_COLUMNS.min(path.chars().count());
    let fits = |msg: &String| msg.chars().count() + 2 + wanted <= width;
    let mut msg = counters(true, true);
    for (rate, unchanged) in [(true, false), (false, false)] {
        if fits(&msg) {
            break;
        }
        msg = counters(rate, unchanged);
    }
    let room = width.saturating_sub(msg.chars().count() + 2);
    if !path.is_empty() && room >= MIN_PATH_COLUMNS {
        msg.push_str(": ");
        msg.push_str(&shorten_middle(path, room));
    }
    msg
}

/// "512 B", "1.5 KiB", "2.0 GiB": binary units, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "1:05" or "2:01:05".
fn clock(d: Duration) -> String {
    let secs = d.as_secs();
    match secs / 3600 {
        0 => format!("{}:{:02}", secs / 60, secs % 60),
        h => format!("{h}:{:02}:{:02}", secs / 60 % 60, secs % 60),
    }
}

/// "1 file", "2 files": a count with its noun in the right number.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `path` in at most `max` characters: whole components are dropped from
/// the middle and replaced by "…", keeping as many leading and trailing
/// ones as fit, taken in turn (`/var/lib/…/file.db`). The last component
/// always stays; if it alone is too long, its end is kept.
pub fn shorten_middle(path: &str, max: usize) -> String {
    let len = |s: &str| s.chars().count();
    if len(path) <= max {
        return path.to_string();
    }
    let parts: Vec<&str> = path.split('/').collect();
    let last = parts.len() - 1;
    // "…/" plus the last component, with the leading components in
    // front: `head` leading and `tail` trailing ones are kept.
    let text = |head: usize, tail: usize| {
        let mut t = parts[..head].join("/");
        if head > 0 {
            t.push('/');
        }
        t.push('…');
        for part in &parts[parts.len() - tail..] {
            t.push('/');
            t.push_str(part);
        }
        t
    };
    if len(&text(0, 1)) > max {
        let keep = max.saturating_sub(1);
        let name = parts[last];
        return format!(
            "…{}",
            name.chars()
                .skip(len(name) - keep.min(len(name)))
                .collect::<String>()
        );
    }
    // An absolute path keeps its leading "/" when it fits.
    let mut head = usize::from(parts[0].is_empty() && len(&text(1, 1)) <= max);
    let mut tail = 1;
    // At least one component stays elided: head + tail <= last.
    let (mut grow_head, mut grow_tail) = (true, true);
    while grow_head || grow_tail {
        grow_head = grow_head && head + tail < last && len(&text(head + 1, tail)) <= max;
        if grow_head {
            head += 1;
        }
        grow_tail = grow_tail && head + tail < last && len(&text(head, tail + 1)) <= max;
        if grow_tail {
            tail += 1;
        }
    }
    text(head, tail)
}

/// Standard error for log lines, hiding the progress bar (if one is on
/// screen) while each line is written. Give it to the log subscriber:
/// `tracing_subscriber::fmt().with_writer(StderrWriter)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = match ACTIVE_BAR.lock() {
            Ok(active) => active.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> StderrWriter {
        StderrWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_across_threads() {
        let p = Progress::new();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        p.add_classified_file(match i % 3 {
                            0 => FileChange::New,
                            1 => FileChange::Changed,
                            _ => FileChange::Unchanged,
                        });
                        p.add_bytes_read(10);
                        p.set_current(Path::new("/srv/www/index.html"));
                    }
                    p.add_file();
                    p.add_directory();
                    p.add_bytes_new(7);
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let s = p.snapshot();
        assert_eq!(s.files, 4004);
        assert_eq!(s.files_new, 4 * 334);
        assert_eq!(s.files_changed, 4 * 333);
        assert_eq!(s.files_unchanged, 4 * 333);
        assert_eq!(s.directories, 4);
        assert_eq!(s.bytes_read, 40_000);
        assert_eq!(s.bytes_new, 28);
        assert!(s.classified());
        assert_eq!(s.total_bytes, None);
        assert_eq!(p.current(), Path::new("/srv/www/index.html"));
    }

    #[test]
    fn unclassified_files_are_not_reported_as_unchanged() {
        let p = Progress::new();
        p.add_file();
        assert!(!p.snapshot().classified());
        p.set_totals(1000, 0);
        assert_eq!(p.snapshot().total_bytes, Some(1000));
        assert_eq!(p.snapshot().total_files, None);
    }

    #[test]
    fn set_current_reuses_and_replaces_the_path() {
        let p = Progress::new();
        p.set_current(Path::new("/a/long/path/name"));
        p.set_current(Path::new("/b"));
        assert_eq!(p.current(), Path::new("/b"));
    }

    #[test]
    fn disabled_renderer_starts_nothing() {
        let r = Renderer::start(Progress::new(), false, "saving");
        assert!(!r.is_drawing());
        r.finish();
    }

    #[test]
    fn renderer_stops_promptly_and_clears_the_active_bar() {
        // Drawn into indicatif's draw target for stderr, which hides itself
        // when stderr is not a terminal (as under `cargo test`); what is
        // tested is the thread's lifecycle, not the pixels.
        let p = Progress::new();
        let r = Renderer::start(Arc::clone(&p), true, "saving");
        assert!(r.is_drawing());
        p.add_bytes_read(1 << 20);
        p.set_totals(2 << 20, 10);
        std::thread::sleep(Duration::from_millis(250));
        let started = std::time::Instant::now();
        drop(r);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(ACTIVE_BAR.lock().expect("not poisoned").is_none());
    }

    #[test]
    fn paths_are_shortened_from_the_middle() {
        let path = "/var/lib/postgresql/16/main/base/16384/file.db";
        assert_eq!(shorten_middle(path, 100), path);
        assert_eq!(shorten_middle(path, 18), "/var/lib/…/file.db");
        assert_eq!(shorten_middle(path, 14), "/var/…/file.db");
        assert_eq!(shorten_middle(path, 20), "/var/…/16384/file.db");
        assert_eq!(shorten_middle(path, 9), "…/file.db");
        // Only the name's end is left.
        assert_eq!(shorten_middle(path, 5), "…e.db");
        assert_eq!(
            shorten_middle("relative/dir/and/name.txt", 19),
            "relative/…/name.txt"
        );
        for max in 3..path.len() {
            assert!(shorten_middle(path, max).chars().count() <= max, "{max}");
        }
    }

    #[test]
    fn the_line_fits_80_columns_shows_bytes_new_and_the_path_middle_cut() {
        let s = ProgressSnapshot {
            files: 1234,
            files_unchanged: 1200,
            files_new: 34,
            bytes_read: 3 << 30,
            bytes_new: 1536 << 20,
            ..ProgressSnapshot::default()
        };
        let t = Timing {
            elapsed: Duration::from_secs(83),
            per_sec: 100.0 * 1024.0 * 1024.0,
            eta: None,
        };
        let path = "/var/lib/postgresql/16/main/base/16384/file.db";
        // 80 columns: the rate and the unchanged count give way to the path.
        let width = 80 - fixed_columns("saving", false) - 1;
        let text = line(&s, Some("saving"), &t, path, width);
        assert_eq!(
            text,
            "saving 1:23 3.0 GiB read, 1234 files, 1.5 GiB new: /var/lib/…/16384/file.db"
        );
        assert!(text.chars().count() <= width);
        // Wide: everything, the whole path.
        let text = line(&s, Some("saving"), &t, path, 200);
        assert_eq!(
            text,
            format!("saving 1:23 3.0 GiB read, 100.0 MiB/s, 1234 files (1200 unchanged), 1.5 GiB new: {path}")
        );
        // Too narrow for a useful path: the counters alone.
        let text = line(&s, Some("saving"), &t, path, 60);
        assert_eq!(text, "saving 1:23 3.0 GiB read, 1234 files, 1.5 GiB new");
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(0, "file", "files"), "0 files");
    }
}
