//! Reading a copy through a real FUSE mount, with every way that can end
//! (read, hang, panic, the mount process dying) told apart.

use crate::common::{exit_code, run_limited, Mount, NotMounted};
use crate::fixture::{rw, READ_BACK};
use crate::outcome::excerpt;
use crate::LIMIT;
use std::path::Path;
use std::process::Command;

#[derive(Debug)]
pub enum MountRead {
    /// `find` of `one/latest` (tab-separated lines) and each of
    /// [`READ_BACK`]'s bytes, or what the reading tool said.
    Read {
        listing: Result<String, String>,
        files: Vec<(String, Result<Vec<u8>, String>)>,
    },
    Hang(String),
    Panic(String),
    /// The mount process ended by itself: exit code, its standard error.
    Died(i32, String),
}

/// Mounts `repo` on `dir/mnt`, reads `one/latest` with `find` and `cat`
/// (child processes, so that a read that never returns can be killed), and
/// unmounts.
pub fn mount_read(home: &Path, repo: &Path, dir: &Path) -> MountRead {
    let started = Mount::at(rw(home, repo).command(), &dir.join("mnt"))
        .args(&["--threads", "2"])
        .within(LIMIT)
        .try_start();
    let mut mount = match started {
        Ok(m) => m,
        Err(NotMounted::Exited { log, .. }) if log.contains("panicked") => {
            return MountRead::Panic(log)
        }
        Err(NotMounted::Exited { status, log }) => return MountRead::Died(exit_code(status), log),
        Err(NotMounted::TimedOut { .. }) => return MountRead::Hang("not mounted in time".into()),
    };
    let snap = mount.latest("one");
    let mut hang = None;
    let listing = match run_limited(
        Command::new("find")
            .arg(&snap)
            .args(["-mindepth", "1", "-printf", "%P\t%y\t%m\t%s\t%l\n"]),
        LIMIT,
    ) {
        None => {
            hang = Some("find".to_owned());
            Err("hang".to_owned())
        }
        Some(o) if o.code == 0 => {
            let mut lines = o.lines();
            lines.sort();
            Ok(lines.join("\n"))
        }
        Some(o) => Err(format!("exit {}: {}", o.code, excerpt(&o.stderr))),
    };
    let mut files = Vec::new();
    for p in READ_BACK {
        if hang.is_some() {
            break;
        }
        let r = match run_limited(Command::new("cat").arg(snap.join(p)), LIMIT) {
            None => {
                hang = Some(format!("cat {p}"));
                Err("hang".to_owned())
            }
            Some(o) if o.code == 0 => Ok(o.stdout),
            Some(o) => Err(format!("exit {}: {}", o.code, excerpt(&o.stderr))),
        };
        files.push((p.to_owned(), r));
    }
    let ended = mount.stop();
    let text = mount.log_text();
    if text.contains("panicked") {
        return MountRead::Panic(text);
    }
    if let Some(what) = hang {
        return MountRead::Hang(format!("{what} through the mount; log: {}", excerpt(&text)));
    }
    match ended {
        Some(code) if code >= 128 => MountRead::Died(code, text),
        None => MountRead::Hang(format!(
            "the mount did not end after unmount; log: {}",
            excerpt(&text)
        )),
        _ => MountRead::Read { listing, files },
    }
}

pub fn fuse_ready() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "CI=true: the damage test needs /dev/fuse and fusermount3"
    );
    ok
}
