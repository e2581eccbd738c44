//! A foreground `rewind mount` run by a test: started, waited for until the
//! kernel shows a file system on the mount point, and on the way out
//! unmounted with `fusermount3` and reaped, so that a failing test leaves
//! neither a mount nor a process behind. Its standard error goes to a log
//! file that the test may read.
//!
//! Whether something is mounted is judged by the device number, not by
//! asking rewind.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::exit_code;

/// How long a mount may take to appear unless the caller says otherwise.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// How long [`Mount::stop`] waits for the process to end after unmounting.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// How long dropping a [`Mount`] waits before killing the process.
const DROP_WITHIN: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// Whether a file system other than its parent's is mounted on `path`
/// (false for a stale mount point, which cannot be statted).
pub fn is_mounted(path: &Path) -> bool {
    let (Ok(m), Some(parent)) = (fs::metadata(path), path.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// `fusermount3 ARGS MNT`, quietly: failing to unmount what is not mounted
/// is expected on the way out.
fn fusermount(args: &[&str], mnt: &Path) {
    let _ = Command::new("fusermount3")
        .args(args)
        .arg(mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Why a mount did not come up.
#[derive(Debug)]
pub enum NotMounted {
    /// The process ended before the mount appeared.
    Exited { status: ExitStatus, log: String },
    /// No mount within the time allowed; the process has been stopped.
    TimedOut { log: String },
}

/// A `rewind mount --foreground` about to be started; see [`Mount::at`].
pub struct Mounting {
    rewind: Command,
    mnt: PathBuf,
    log: PathBuf,
    within: Duration,
}

impl Mounting {
    /// Options after `mount --foreground`, before the mount point.
    pub fn args(mut self, extra: &[&str]) -> Mounting {
        self.rewind.args(extra);
        self
    }

    /// Where standard error goes, instead of `mount.log` beside the mount
    /// point.
    pub fn log(mut self, log: &Path) -> Mounting {
        self.log = log.to_path_buf();
        self
    }

    /// How long the mount may take to appear.
    pub fn within(mut self, limit: Duration) -> Mounting {
        self.within = limit;
        self
    }

    /// Starts the mount and waits for it; panics with the log if it does
    /// not come up.
    #[track_caller]
    pub fn start(self) -> Mount {
        match self.try_start() {
            Ok(m) => m,
            Err(NotMounted::Exited { status, log }) => {
                panic!("rewind mount exited with {status}: {log}")
            }
            Err(NotMounted::TimedOut { log }) => panic!("not mounted: {log}"),
        }
    }

    /// Starts the mount and waits for it, for tests that count a mount
    /// that fails as one outcome among others.
    pub fn try_start(mut self) -> Result<Mount, NotMounted> {
        fs::create_dir_all(&self.mnt).expect("mkdir mount point");
        let child = self
            .rewind
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&self.log).expect("mount log"))
            .spawn()
            .expect("spawn rewind mount");
        let mut m = Mount {
            child: Some(child),
            path: self.mnt,
            log: self.log,
        };
        let deadline = Instant::now() + self.within;
        while !is_mounted(&m.path) {
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                // Reaped: nothing is left to stop.
                m.child = None;
                return Err(NotMounted::Exited {
                    status,
                    log: m.log_text(),
                });
            }
            if Instant::now() > deadline {
                m.stop();
                return Err(NotMounted::TimedOut { log: m.log_text() });
            }
            std::thread::sleep(POLL);
        }
        Ok(m)
    }
}

/// A running foreground `rewind mount`. Dropping it unmounts lazily
/// (`fusermount3 -u -z`) what is still mounted or stale there, and reaps
/// the process, killing it if it does not end.
pub struct Mount {
    child: Option<Child>,
    pub path: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// `rewind` is the binary with its global options (`-d REPO`, the
    /// environment); `mount --foreground`, the options given with
    /// [`Mounting::args`] and `mnt` (created if missing) are added.
    pub fn at(mut rewind: Command, mnt: &Path) -> Mounting {
        rewind.args(["mount", "--foreground"]);
        Mounting {
            rewind,
            mnt: mnt.to_path_buf(),
            log: mnt.with_file_name("mount.log"),
            within: READY_WITHIN,
        }
    }

    /// What the mount has written to standard error so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `BRANCH/latest` in the mount.
    pub fn latest(&self, branch: &str) -> PathBuf {
        self.path.join(branch).join("latest")
    }

    /// `BRANCH/latest/NAME` in the mount.
    pub fn file(&self, branch: &str, name: &str) -> PathBuf {
        self.latest(branch).join(name)
    }

    /// The process id, while the process is held here.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the mount process").id()
    }

    /// The process, for a test that ends it itself; dropping the `Mount`
    /// still unmounts.
    pub fn take_child(&mut self) -> Child {
        self.child
            .take()
            .expect("the mount process was already taken")
    }

    /// Unmounts (`fusermount3 -u`) and waits for the process: its exit
    /// code, or `None` if it had to be killed (and the mount point was
    /// then detached lazily).
    pub fn stop(&mut self) -> Option<i32> {
        fusermount(&["-u"], &self.path);
        let ended = self.reap(STOP_WITHIN);
        if ended.is_none() {
            fusermount(&["-u", "-z"], &self.path);
        }
        ended
    }

    /// Waits up to `grace` for the process to end; kills it after that.
    fn reap(&mut self, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(exit_code(status));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.path) || fs::metadata(&self.path).is_err() {
            fusermount(&["-u", "-z"], &self.path);
        }
        self.reap(DROP_WITHIN);
    }
}
