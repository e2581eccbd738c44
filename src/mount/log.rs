//! Where a mount's log lines go once it runs in the background.
//!
//! The process-wide tracing subscriber writes to standard error; a daemon's
//! standard error is /dev/null, which would swallow the one line naming a
//! damaged object. So after detaching, standard error becomes a pipe and a
//! thread forwards each line to the `--log-file` (appending, with a time
//! stamp) or, without one, to syslog (ident `rewind-mount`, facility daemon,
//! priority from the line's level). Redirecting the descriptor rather than
//! the subscriber also catches anything else written there, a panic message
//! included. Terminal colour codes are stripped on the way.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the lines go.
pub enum Sink {
    File { path: PathBuf, file: File },
    Syslog,
}

impl Sink {
    /// Opens `path` for appending now, while errors still reach the caller.
    pub fn file(path: &Path) -> io::Result<Sink> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Sink::File {
            path: path.to_path_buf(),
            file,
        })
    }
}

/// Forwards standard error while alive; on drop, closes the pipe and waits
/// (briefly) for the last lines to be written.
pub struct Redirect {
    thread: Option<JoinHandle<()>>,
}

/// Points standard error at a pipe drained into `sink`.
pub fn redirect_stderr(sink: Sink) -> io::Result<Redirect> {
    let mut fds = [0; 2];
    // SAFETY: fds is a live local array of exactly the two c_ints pipe2
    // writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing
    // else owns; each gets exactly one owner, which closes it once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let thread = std::thread::Builder::new()
        .name("rewind-log".into())
        .spawn(move || forward(BufReader::new(File::from(read)), sink))?;
    // SAFETY: `write` is an open descriptor owned here; dup2 only makes 2 a
    // copy of it (no Rust object owns descriptor 2). `write` itself is
    // closed on drop, the copy on 2 stays open until Redirect is dropped.
    if unsafe { libc::dup2(write.as_raw_fd(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Redirect {
        thread: Some(thread),
    })
}

impl Drop for Redirect {
    fn drop(&mut self) {
        // SAFETY: open gets a static NUL-terminated path; dup2 and close take
        // only descriptor numbers: `null` is ours, closed once after being
        // copied onto 2, which no Rust object owns. Replacing 2 closes the
        // pipe's last write end, so the forwarder sees end of file.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null >= 0 {
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn forward(mut input: BufReader<File>, sink: Sink) {
    let mut sink = sink;
    if let Sink::Syslog = sink {
        // SAFETY: openlog keeps the ident pointer, so it must stay valid for
        // the life of the process: a static C string does.
        unsafe { libc::openlog(c"rewind-mount".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    }
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match input.read_until(b'\n', &mut raw) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let line = strip_ansi(raw.strip_suffix(b"\n").unwrap_or(&raw));
        match &mut sink {
            Sink::File { path, file } => {
                let mut out = timestamp();
                out.extend_from_slice(
                    format!(" rewind-mount[{}]: ", std::process::id()).as_bytes(),
                );
                out.extend_from_slice(&line);
                out.push(b'\n');
                if let Err(e) = file.write_all(&out) {
                    // Nowhere else to say it but syslog.
                    to_syslog(format!("{}: {e}", path.display()).as_bytes());
                    to_syslog(&line);
                }
            }
            Sink::Syslog => to_syslog(&line),
        }
    }
}

fn to_syslog(line: &[u8]) {
    let text: Vec<u8> = line.iter().copied().filter(|&b| b != 0).collect();
    let Ok(text) = CString::new(text) else {
        return;
    };
    // SAFETY: the format is a static "%s", consuming exactly one argument:
    // `text`, NUL-terminated and alive until the call returns.
    unsafe { libc::syslog(priority(line), c"%s".as_ptr(), text.as_ptr()) };
}

/// The syslog priority for a line of tracing's format ("  WARN message").
fn priority(line: &[u8]) -> libc::c_int {
    let word = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    match word {
        b"ERROR" => libc::LOG_ERR,
        b"WARN" => libc::LOG_WARNING,
        b"INFO" => libc::LOG_INFO,
        b"DEBUG" | b"TRACE" => libc::LOG_DEBUG,
        // Not ours (a panic message, say): worth attention.
        _ => libc::LOG_ERR,
    }
}

/// Drops CSI sequences (ESC '[' parameters final-byte), tracing's colours.
fn strip_ansi(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] == 0x1b && line.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < line.len() && !(0x40..=0x7e).contains(&line[i]) {
                i += 1;
            }
            i += 1;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out
}

/// The same stamp and tag for tracing's own file output (`--log-file` of
/// the other commands): `2026-11-22 01:00:00 +0000 rewind[123]:`.
pub struct Stamp;

impl tracing_subscriber::fmt::time::FormatTime for Stamp {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{} rewind[{}]:",
            String::from_utf8_lossy(&timestamp()),
            std::process::id()
        )
    }
}

/// Local time now, as `date '+%F %T %z'` prints it.
fn timestamp() -> Vec<u8> {
    crate::time::log_stamp(crate::time::now()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stripped_and_levels_mapped() {
        let line = b"\x1b[31mERROR\x1b[0m reading big.bin: object 00ff is corrupt";
        let plain = strip_ansi(line);
        assert_eq!(plain, b"ERROR reading big.bin: object 00ff is corrupt");
        assert_eq!(priority(&plain), libc::LOG_ERR);
        assert_eq!(priority(b" WARN x"), libc::LOG_WARNING);
        assert_eq!(priority(b"thread panicked"), libc::LOG_ERR);
    }
}
