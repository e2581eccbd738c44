//! `rewind mount`: every snapshot as a plain read-only directory tree.
//!
//! A thin adapter over [`crate::view`]: [`fs`] answers kernel requests,
//! [`inodes`] numbers what the kernel holds, [`attr`] turns `.bupm` records
//! into attributes. This file owns the lifecycle: checking the mount point,
//! mounting, detaching into the background once the mount works (so errors
//! reach the caller), logging there ([`log`]), and unmounting on
//! SIGINT/SIGTERM.

mod attr;
mod fs;
mod inodes;
mod links;
pub mod log;
mod names;
mod repos;

pub use fs::{RewindFs, FROZEN_TTL, LIVE_TTL};
pub use repos::Mounted;

use fuser::{Config, MountOption, Session, SessionACL};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "{}: stale mount point (\"Transport endpoint is not connected\": a previous mount's \
         process is gone); run `rewind umount {}` first",
        path.display(),
        path.display()
    )]
    Stale { path: PathBuf },
    #[error("{}: cannot use as a mount point: {source}", path.display())]
    MountPoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("mounting on {}: {source}", path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmounting {}: {detail}", path.display())]
    Unmount { path: PathBuf, detail: String },
    #[error("{}: not mounted (nothing to unmount)", path.display())]
    NotMounted { path: PathBuf },
    #[error("{}: cannot open the log file: {source}", path.display())]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{action}: {source}")]
    Os {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

pub struct MountConfig {
    pub mountpoint: PathBuf,
    /// Stay attached to the terminal instead of detaching.
    pub foreground: bool,
    /// Let other users in, with the kernel enforcing the saved permissions.
    pub allow_other: bool,
    /// Byte budget for decoded trees, directories and inflated chunks.
    pub cache_bytes: usize,
    /// Threads serving kernel requests.
    pub threads: usize,
    /// Append log lines here once mounted; without it a detached mount logs
    /// to syslog and a foreground one to standard error.
    pub log_file: Option<PathBuf>,
}

/// [`MountError::Stale`] for "Transport endpoint is not connected" (the
/// mount point went stale between the check and its use: the advice to run
/// `rewind umount` instead of the bare OS error), else `other`.
fn stale_or(
    path: &Path,
    source: io::Error,
    other: impl FnOnce(PathBuf, io::Error) -> MountError,
) -> MountError {
    if source.raw_os_error() == Some(libc::ENOTCONN) {
        MountError::Stale {
            path: path.to_path_buf(),
        }
    } else {
        other(path.to_path_buf(), source)
    }
}

/// Refuses a stale or unusable mount point with a message that says what to do.
pub fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::NotADirectory {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(stale_or(path, source, |path, source| {
            MountError::MountPoint { path, source }
        })),
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: all-zero bytes are a valid sigset_t (an array of integers);
    // sigemptyset/sigaddset write only into `set`, a live local, and
    // cannot fail for these valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Detaches from the terminal after the mount works: the parent exits 0
/// without running destructors (which would unmount), the child carries on
/// in a new session with standard streams on /dev/null.
fn daemonize() -> Result<(), MountError> {
    let os = |action| move |source| MountError::Os { action, source };
    // SAFETY: the process is single-threaded here: the pack scan's scoped
    // workers were joined, the request threads start with session.spawn(),
    // the read-ahead, link-count and trimmer threads on first use, the log
    // forwarder after this returns. So the
    // child gets a consistent copy (no lock held by a thread that vanished)
    // and may go on running ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => return Err(os("fork")(io::Error::last_os_error())),
        0 => {}
        // SAFETY: _exit(2) never returns and has no preconditions; skipping
        // destructors and atexit handlers is the point (they would unmount).
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid takes no arguments; open gets a static NUL-terminated
    // path; dup2/close only touch descriptor numbers: 0-2 become /dev/null
    // and `null` is closed once, only when it is not one of them. No Rust
    // object owns 0-2 (std's handles refer to the numbers, not own them).
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let _ = std::env::set_current_dir("/");
    Ok(())
}

/// Mounts `source` and serves it until unmounted or signalled.
pub fn run(source: Mounted, cfg: &MountConfig) -> Result<(), MountError> {
    check_mountpoint(&cfg.mountpoint)?;
    // Absolute: the daemon changes to / before it uses the path again.
    let mountpoint = cfg.mountpoint.canonicalize().map_err(|source| {
        stale_or(&cfg.mountpoint, source, |path, source| {
            MountError::MountPoint { path, source }
        })
    })?;
    let mut options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName(format!("rewind:{}", source.path().display())),
        MountOption::Subtype("rewind".into()),
    ];
    let acl = if cfg.allow_other {
        // Others may browse, but only what the saved modes allow them.
        options.push(MountOption::DefaultPermissions);
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = acl;
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = true;

    // Signals are taken synchronously by the main thread; block them before
    // any thread exists so every thread inherits the mask.
    let set = signal_set();
    // SAFETY: `set` is a live, initialised sigset_t read by the call; a
    // null old-set pointer is allowed. It changes only this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    // Opened first: a log file that cannot be written is the caller's error.
    let sink = match &cfg.log_file {
        Some(path) => Some(log::Sink::file(path).map_err(|source| MountError::LogFile {
            path: path.clone(),
            source,
        })?),
        None if !cfg.foreground => Some(log::Sink::Syslog),
        None => None,
    };
    // A long-lived reader: scan the packs now (opening a repository defers
    // it to first use), so the first listing does not wait for it. Under
    // --repos each repository is opened, and scanned, on first use.
    if let Mounted::One(repo) = &source {
        if let Err(e) = repo.objects().refresh() {
            tracing::warn!("scanning packs: {e}");
        }
    }
    // glibc gives each thread that allocates its own arena and keeps what
    // is freed there; with a dozen threads that is tens of megabytes above
    // what the caches hold. Two arenas keep memory close to the budget.
    // SAFETY: mallopt takes two integers and only changes glibc's allocator
    // parameters, which it does under the allocator's own lock; an unknown
    // or refused setting just returns 0.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let fs = RewindFs::new(source, cfg.cache_bytes.max(4 << 20));
    let session = Session::new(fs, &mountpoint, &config).map_err(|source| {
        stale_or(&mountpoint, source, |path, source| MountError::Mount {
            path,
            source,
        })
    })?;
    if !cfg.foreground {
        daemonize()?;
    }
    // Dropped last (declared before the session): the unmount's own lines
    // still get written.
    let _log = match sink {
        Some(sink) => Some(log::redirect_stderr(sink).map_err(|source| MountError::Os {
            action: "redirecting the log",
            source,
        })?),
        None => None,
    };
    tracing::info!("mounted on {}", mountpoint.display());
    let background = session.spawn().map_err(|source| MountError::Os {
        action: "starting the request threads",
        source,
    })?;
    raise_readahead(&mountpoint);
    loop {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: `set` and `timeout` are live, initialised locals read by
        // the call; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            tracing::info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = background.umount_and_join() {
                // Busy (a shell inside it): detach lazily so we still exit.
                tracing::warn!("unmount: {e}; detaching lazily");
                let _ = lazy_unmount(&mountpoint);
            }
            return Ok(());
        }
        if background.guard.is_finished() {
            // Unmounted from outside (fusermount3 -u, umount). Dropping the
            // session would unmount its mount point again, and by now that
            // may be a new mount made there after ours went away: leak the
            // finished session instead (the process is about to exit).
            std::mem::forget(background);
            return Ok(());
        }
    }
}

/// The kernel reads ahead through a FUSE mount by at most its bdi's
/// `read_ahead_kb` (128 KiB by default), whatever the file system asks for;
/// bigger requests mean fewer round trips. Needs root; harmless otherwise.
///
/// The device number comes from `/proc/self/mountinfo`, not from a stat of
/// the mount point: a stat goes through our own request threads and holds
/// the mount busy meanwhile, so an unmount right after the mount came up
/// (`fusermount3 -u`) failed with EBUSY now and then.
fn raise_readahead(mountpoint: &Path) {
    let Some(device) = std::fs::read("/proc/self/mountinfo")
        .ok()
        .and_then(|info| mount_device(&info, mountpoint))
    else {
        return;
    };
    let path = format!("/sys/class/bdi/{device}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, "1024") {
        tracing::debug!("{path}: {e} (read-ahead stays at the kernel default)");
    }
}

/// The `major:minor` of the newest mount on `mountpoint` in a mountinfo
/// table (proc(5): the third field, and the fifth with space, tab, newline
/// and backslash escaped as octal).
fn mount_device(mountinfo: &[u8], mountpoint: &Path) -> Option<String> {
    let wanted = mountpoint.as_os_str().as_encoded_bytes();
    mountinfo
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let device = fields.nth(2)?;
            let point = fields.nth(1)?;
            (unescape_mountinfo(point) == wanted).then_some(device)
        })
        .and_then(|d| std::str::from_utf8(d).ok())
        .map(str::to_string)
}

/// Whether anything is mounted on `path`, from `/proc/self/mountinfo`;
/// `None` if that cannot be told. The path is made absolute by resolving
/// its parent only: a stat of a stale mount point itself fails.
fn is_mounted(path: &Path) -> Option<bool> {
    let absolute = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                std::env::current_dir().ok()?
            } else {
                parent.canonicalize().ok()?
            };
            parent.join(name)
        }
        _ => path.canonicalize().ok()?,
    };
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    Some(mount_device(&info, &absolute).is_some())
}

fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

fn lazy_unmount(path: &Path) -> Result<(), MountError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        MountError::Unmount {
            path: path.to_path_buf(),
            detail: "path contains a NUL byte".into(),
        }
    })?;
    // SAFETY: c is NUL-terminated and outlives the call, which only reads it.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let status = Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(path)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(MountError::Unmount {
            path: path.to_path_buf(),
            detail: format!("fusermount3 -u -z: {other:?}"),
        }),
    }
}

/// `rewind umount`: `fusermount3 -u`, falling back to umount(2) when we are
/// root. Works on stale mounts (whose process died) too.
pub fn unmount(path: &Path) -> Result<(), MountError> {
    let output = Command::new("fusermount3")
        .arg("-u")
        .arg("--")
        .arg(path)
        .output();
    let why = match output {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run fusermount3: {e}"),
    };
    // One line that says so, rather than fusermount3's "entry for ... not
    // found in /etc/mtab" (or umount's EINVAL).
    if is_mounted(path) == Some(false) {
        return Err(MountError::NotMounted {
            path: path.to_path_buf(),
        });
    }
    if crate::meta::ids::euid() == 0 {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            MountError::Unmount {
                path: path.to_path_buf(),
                detail: "path contains a NUL byte".into(),
            }
        })?;
        // SAFETY: c is NUL-terminated and outlives the call, which only reads it.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        return Err(MountError::Unmount {
            path: path.to_path_buf(),
            detail: format!("{why}; umount: {e}"),
        });
    }
    Err(MountError::Unmount {
        path: path.to_path_buf(),
        detail: why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_device_is_the_newest_mount_on_the_path_with_escapes_undone() {
        let info = b"22 1 0:21 / /proc rw - proc proc rw\n\
            40 22 0:50 / /mnt/back\\040ups rw - fuse.rewind rewind ro\n\
            41 22 0:51 / /mnt/back\\040ups rw - fuse.rewind rewind ro\n\
            42 22 0:52 / /mnt/other rw - fuse.rewind rewind ro\n";
        assert_eq!(
            mount_device(info, Path::new("/mnt/back ups")).as_deref(),
            Some("0:51")
        );
        assert_eq!(mount_device(info, Path::new("/mnt/back")), None);
        assert_eq!(mount_device(b"garbage\n\n1 2", Path::new("/x")), None);
        assert_eq!(unescape_mountinfo(b"a\\134b\\9\\0"), b"a\\b\\9\\0");
    }
}
