//! Dump sources: a command whose standard output is saved as one regular
//! file of the snapshot (`pg_dump app` as `/var/lib/postgresql/backup/app.sql`).
//!
//! This module owns running the commands, their failure rules and the
//! metadata of the file they make; the walker only places the stored result
//! in the snapshot's skeleton (`VirtualDir::place_dump`).
//!
//! - The command runs under `/bin/sh -c` (as in cron), with standard input
//!   from `/dev/null`, the environment and working directory of the save.
//! - Its standard output is chunked as it arrives, like any file's content:
//!   no temporary file, no size limit, deduplicated against the repository.
//! - Its standard error is kept, bounded to the last [`STDERR_TAIL`] bytes,
//!   to be shown if the dump fails (or logged if it succeeds anyway).
//! - A dump that exits non-zero, is killed by a signal, writes nothing, or
//!   whose output cannot be read is an error for the whole save: a snapshot
//!   that looks complete but holds a truncated dump is worse than none. The
//!   objects already queued stay in the unpublished temporary pack, which is
//!   deleted, and the branch does not move.
//! - Every dump runs before the walk, so a failing one costs no walk and
//!   the change index's racy-time margin starts after the dumps.

use super::skeleton::VirtualDir;
use super::stream::{store_stream, StreamError};
use super::{ObjectSink, SaveError};
use crate::chunk::tree::FileObject;
use crate::chunk::Splitter;
use crate::locks::lock;
use crate::meta::ids::IdNames;
use crate::meta::record::encode_entry;
use crate::meta::{Metadata, Timespec};
use crate::progress::Progress;
use crate::source::command::CommandSource;
use crate::source::paths;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How much of a dump's standard error is kept: enough for any real error
/// message, bounded whatever the command prints.
pub const STDERR_TAIL: usize = 64 << 10;

/// How long to wait for standard error to close once the command has exited
/// and its output ended. Only a background process left behind by the
/// command can hold it open longer; its later messages are not waited for.
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// The file mode of every dump: a dump of a database holds everything in it.
pub const DUMP_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("--as {}: {reason}", .path.display())]
    BadPath { path: PathBuf, reason: String },
    #[error("dump `{command}` for {}: cannot run /bin/sh: {source}", .path.display())]
    Spawn {
        command: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "dump `{command}` for {} failed: {failure}; no snapshot was made{}",
        .path.display(),
        show_stderr(.stderr)
    )]
    Failed {
        command: String,
        path: PathBuf,
        failure: DumpFailure,
        /// The end of what the command wrote to standard error.
        stderr: String,
    },
}

/// Why a dump's output cannot be trusted.
#[derive(Debug)]
pub enum DumpFailure {
    /// The shell exited with this non-zero status.
    Exit(i32),
    /// The shell was killed by this signal.
    Signal(i32),
    /// Exit status 0, but not one byte of output: a dump is never empty, so
    /// the command most likely wrote its output elsewhere.
    Empty,
    /// Reading the command's output failed.
    Read(io::Error),
}

impl fmt::Display for DumpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpFailure::Exit(code) => write!(f, "it exited with status {code}"),
            DumpFailure::Signal(sig) => match signal_name(*sig) {
                Some(name) => write!(f, "it was killed by signal {sig} ({name})"),
                None => write!(f, "it was killed by signal {sig}"),
            },
            DumpFailure::Empty => write!(f, "it wrote nothing to standard output"),
            DumpFailure::Read(e) => write!(f, "reading its output failed: {e}"),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

fn show_stderr(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        return "; it wrote nothing to standard error".to_string();
    }
    let mut out = String::from("; its standard error ended with:");
    for line in stderr.trim_end().lines() {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

/// What one successful dump stored, for the summary.
#[derive(Clone, Debug)]
pub struct DumpReport {
    pub command: String,
    pub path: PathBuf,
    /// Bytes of output saved (the file's size).
    pub bytes: u64,
    pub seconds: f64,
    /// The end of its standard error (empty if it wrote none).
    pub stderr: String,
}

/// A dump's output, stored, with its `.bupm` record: what the walker puts
/// in the snapshot tree at the dump's path.
#[derive(Debug)]
pub(super) struct DumpedFile {
    pub object: FileObject,
    pub record: Vec<u8>,
    pub size: u64,
}

/// Checks every `--as` path before anything runs: absolute, normal, not
/// the root, not the same as or inside another dump's path, and free in
/// the skeleton built from the source paths.
pub(super) fn check(commands: &[CommandSource], skeleton: &VirtualDir) -> Result<(), DumpError> {
    for (i, source) in commands.iter().enumerate() {
        let bad = |reason: String| DumpError::BadPath {
            path: source.path.clone(),
            reason,
        };
        let names = snapshot_names(&source.path).map_err(|r| bad(r.to_string()))?;
        for other in &commands[..i] {
            if other.path == source.path {
                return Err(bad("another dump is saved at the same path".into()));
            }
            if source.path.starts_with(&other.path) || other.path.starts_with(&source.path) {
                return Err(bad(format!(
                    "it and the dump at {} cannot both be saved: one would be a \
                     directory holding the other",
                    other.path.display()
                )));
            }
        }
        if let Some(reason) = skeleton.dump_conflict(&names) {
            return Err(bad(reason));
        }
    }
    Ok(())
}

/// The component names of a dump's path in the snapshot. `--as` is where
/// the file appears in the snapshot: it is not re-rooted by `--strip` or
/// `--graft`, which describe where live paths go.
fn snapshot_names(path: &Path) -> Result<Vec<Vec<u8>>, &'static str> {
    if !path.is_absolute() {
        return Err("must be an absolute path (where the dump appears in the snapshot)");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err("must not contain '..'");
    }
    let names = paths::components(path);
    if names.is_empty() {
        return Err("must name a file, not the root of the snapshot");
    }
    Ok(names)
}

/// Runs every dump, stores its output, and places it in `skeleton`.
/// Stops at the first failure: the save is abandoned anyway, and later
/// dumps would only add load for nothing.
pub(super) fn run_all(
    commands: &[CommandSource],
    skeleton: &mut VirtualDir,
    sink: &mut ObjectSink,
    progress: &Progress,
) -> Result<Vec<DumpReport>, SaveError> {
    let mut splitter = Splitter::new();
    let mut names = IdNames::default();
    let mut reports = Vec::with_capacity(commands.len());
    for source in commands {
        let (dumped, report) = run_one(source, sink, &mut splitter, progress, &mut names)?;
        let names = snapshot_names(&source.path).map_err(|r| DumpError::BadPath {
            path: source.path.clone(),
            reason: r.to_string(),
        })?;
        skeleton
            .place_dump(&names, dumped)
            .map_err(|reason| DumpError::BadPath {
                path: source.path.clone(),
                reason,
            })?;
        reports.push(report);
    }
    Ok(reports)
}

fn run_one(
    source: &CommandSource,
    sink: &mut ObjectSink,
    splitter: &mut Splitter,
    progress: &Progress,
    names: &mut IdNames,
) -> Result<(DumpedFile, DumpReport), SaveError> {
    let started = Instant::now();
    progress.set_current(&source.path);
    tracing::info!("dump `{}` into {}", source.command, source.path.display());
    // In its own process group, so that an interrupted save stops the
    // shell and everything it started (see `interrupt`); a Ctrl-C on the
    // terminal reaches it through rewind.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&source.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| DumpError::Spawn {
            command: source.command.clone(),
            path: source.path.clone(),
            source: e,
        })?;
    let forwarding = crate::interrupt::ChildGroup::register(child.id());
    let stderr = StderrTail::start(child.stderr.take());
    let stdout = child.stdout.take().expect("stdout was piped");
    // Fewer wake-ups of the command and of the chunker per MiB.
    crate::pipe::widen(stdout.as_fd());
    let stored = store_stream(stdout, sink, splitter, Some(progress));
    // The pipe is closed by now (`store_stream` consumed it), so a command
    // that was still writing gets SIGPIPE instead of blocking forever.
    let (object, size) = match stored {
        Ok(stored) => (Ok(stored.0), stored.1),
        Err(StreamError::Read(e)) => (Err(DumpFailure::Read(e)), 0),
        Err(StreamError::Save(e)) => {
            // The repository failed, or the save was interrupted, not the
            // dump: stop the command and all it started (they may be blocked
            // on their next write, or silent) and report the real error.
            if let Ok(group) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) with plain integers; the group is the
                // child's own (process_group(0)), not yet reaped, so its id
                // cannot have been reused.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let status = child.wait().map_err(|e| DumpError::Spawn {
        command: source.command.clone(),
        path: source.path.clone(),
        source: e,
    })?;
    drop(forwarding);
    // A command stopped by the forwarded signal failed because the save
    // was interrupted: say that, not that the dump failed.
    super::stop_if_interrupted()?;
    // The file's times: the content was final when the command ended, as a
    // dump written to a file would show in its mtime.
    let finished = SystemTime::now();
    let stderr = stderr.finish();
    let object = match (object, failure_of(status)) {
        (Err(read), _) => Err(read),
        (Ok(_), Some(failure)) => Err(failure),
        (Ok(_), None) if size == 0 => Err(DumpFailure::Empty),
        (Ok(object), None) => Ok(object),
    };
    let object = object.map_err(|failure| DumpError::Failed {
        command: source.command.clone(),
        path: source.path.clone(),
        failure,
        stderr: stderr.clone(),
    })?;
    if !stderr.trim().is_empty() {
        tracing::warn!(
            "dump `{}` for {} succeeded but wrote to standard error:{}",
            source.command,
            source.path.display(),
            indent(&stderr)
        );
    }
    let record = encode_record(&dump_metadata(size, finished, names));
    Ok((
        DumpedFile {
            object,
            record,
            size,
        },
        DumpReport {
            command: source.command.clone(),
            path: source.path.clone(),
            bytes: size,
            seconds: started.elapsed().as_secs_f64(),
            stderr,
        },
    ))
}

fn failure_of(status: ExitStatus) -> Option<DumpFailure> {
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(code), _) => Some(DumpFailure::Exit(code)),
        (None, Some(sig)) => Some(DumpFailure::Signal(sig)),
        // Neither an exit nor a signal (stopped/continued): never returned
        // by wait() without WUNTRACED; treat as a failure all the same.
        (None, None) => Some(DumpFailure::Exit(-1)),
    }
}

fn indent(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| format!("\n    {l}"))
        .collect()
}

/// A dump's metadata: a regular file, mode 0600, owned by whoever runs the
/// save (the user the command ran as), all three times when it finished.
fn dump_metadata(size: u64, finished: SystemTime, names: &mut IdNames) -> Metadata {
    let (uid, gid) = (crate::meta::ids::euid(), crate::meta::ids::egid());
    let time = Timespec::from_system_time(finished).unwrap_or_default();
    Metadata {
        mode: libc::S_IFREG | DUMP_MODE,
        uid,
        gid,
        user: names.user_name(uid).map(<[u8]>::to_vec).unwrap_or_default(),
        group: names
            .group_name(gid)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        atime: time,
        mtime: time,
        ctime: time,
        size: Some(size),
        ..Metadata::default()
    }
}

fn encode_record(meta: &Metadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    encode_entry(Some(meta), &mut out);
    out
}

/// Reads a command's standard error on a thread, keeping only the end.
struct StderrTail {
    tail: Arc<Mutex<Tail>>,
    done: Option<mpsc::Receiver<()>>,
}

#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    /// Bytes dropped from the front to stay bounded.
    dropped: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Trim in steps, not per read, so the copying stays linear.
        if self.buf.len() >= 2 * STDERR_TAIL {
            let cut = self.buf.len() - STDERR_TAIL;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    /// The last `STDERR_TAIL` bytes as text, from a line start when cut.
    fn text(&self) -> String {
        let mut start = self.buf.len().saturating_sub(STDERR_TAIL);
        let dropped = self.dropped + start as u64;
        if dropped > 0 {
            if let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
                start += nl + 1;
            }
        }
        let text = String::from_utf8_lossy(&self.buf[start..]);
        if dropped > 0 {
            format!("[... earlier output cut]\n{text}")
        } else {
            text.into_owned()
        }
    }
}

impl StderrTail {
    fn start(pipe: Option<std::process::ChildStderr>) -> StderrTail {
        let tail = Arc::new(Mutex::new(Tail::default()));
        let Some(mut pipe) = pipe else {
            return StderrTail { tail, done: None };
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&tail);
        let spawned = std::thread::Builder::new()
            .name("dump-stderr".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => lock(&shared).push(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => StderrTail {
                tail,
                done: Some(rx),
            },
            // Without a reader the command could block on a full stderr
            // pipe; the pipe was moved into the failed closure and is
            // closed, so it gets EPIPE instead.
            Err(e) => {
                tracing::warn!("cannot read a dump's standard error: {e}");
                StderrTail { tail, done: None }
            }
        }
    }

    /// What was read, once standard error closed (or after a short grace,
    /// if a leftover background process holds it open).
    fn finish(self) -> String {
        if let Some(done) = self.done {
            let _ = done.recv_timeout(STDERR_GRACE);
        }
        let tail = lock(&self.tail);
        tail.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_is_bounded_and_starts_at_a_line() {
        let mut tail = Tail::default();
        for i in 0..50_000 {
            tail.push(format!("line {i}\n").as_bytes());
            assert!(tail.buf.len() < 2 * STDERR_TAIL + 64);
        }
        let text = tail.text();
        assert!(
            text.starts_with("[... earlier output cut]\nline "),
            "{}",
            &text[..60]
        );
        assert!(text.ends_with("line 49999\n"));
        assert!(text.len() <= STDERR_TAIL + 64);
        let mut short = Tail::default();
        short.push(b"oops\n");
        assert_eq!(short.text(), "oops\n");
    }

    #[test]
    fn dump_paths_must_be_absolute_and_normal() {
        assert!(snapshot_names(Path::new("db.sql")).is_err());
        assert!(snapshot_names(Path::new("/")).is_err());
        assert!(snapshot_names(Path::new("/a/../b")).is_err());
        assert_eq!(
            snapshot_names(Path::new("/var//lib/./db.sql")).unwrap(),
            vec![b"var".to_vec(), b"lib".to_vec(), b"db.sql".to_vec()]
        );
    }

    #[test]
    fn failures_describe_themselves() {
        let e = DumpError::Failed {
            command: "pg_dump nope".into(),
            path: PathBuf::from("/b/app.sql"),
            failure: DumpFailure::Exit(1),
            stderr: "pg_dump: error: database \"nope\" does not exist\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "dump `pg_dump nope` for /b/app.sql failed: it exited with status 1; no snapshot \
             was made; its standard error ended with:\n    pg_dump: error: database \"nope\" \
             does not exist"
        );
        let quiet = DumpError::Failed {
            command: "true".into(),
            path: PathBuf::from("/x"),
            failure: DumpFailure::Empty,
            stderr: String::new(),
        };
        assert!(quiet.to_string().ends_with(
            "it wrote nothing to standard output; no snapshot was made; it wrote nothing to \
             standard error"
        ));
    }
}
