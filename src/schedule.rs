//! `rewind schedule`: a daily `rewind run` from a systemd timer where
//! systemd is the init system (`/run/systemd/system` exists), else from
//! `/etc/cron.d/rewind` where a cron daemon that reads it is installed and
//! running ([`probe`]). Where nothing would run the job, install refuses:
//! a schedule file that no daemon reads is a backup that silently never
//! happens.
//!
//! Every file written starts with [`MARKER`]; remove and show touch only
//! files that carry it, so a hand-written unit of the same name is never
//! deleted. All paths are under a root directory (`/` normally) so that
//! packagers and tests can install into a staging tree.

use std::path::{Path, PathBuf};

/// First line of every file install writes.
pub const MARKER: &str =
    "# Installed by `rewind schedule install`; remove with `rewind schedule remove`.";

pub const SERVICE: &str = "etc/systemd/system/rewind.service";
pub const TIMER: &str = "etc/systemd/system/rewind.timer";
pub const CRON: &str = "etc/cron.d/rewind";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Systemd,
    Cron,
}

impl Flavor {
    /// The files of this flavour, relative to the root.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Flavor::Systemd => &[SERVICE, TIMER],
            Flavor::Cron => &[CRON],
        }
    }

    pub fn other(self) -> Flavor {
        match self {
            Flavor::Systemd => Flavor::Cron,
            Flavor::Cron => Flavor::Systemd,
        }
    }
}

/// What would run a schedule under a root, as [`probe`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// systemd is the init system (sd_booted(3)'s test: `/run/systemd/system`).
    Systemd,
    /// A cron daemon that reads `/etc/cron.d` (Debian's cron, cronie),
    /// installed at `daemon` (absolute, as on the running system), and
    /// whether a cron process runs.
    Cron { daemon: PathBuf, running: bool },
    /// Only busybox's crond, which reads `/var/spool/cron/crontabs` and
    /// never `/etc/cron.d`.
    BusyboxCron { daemon: PathBuf },
    /// Neither systemd nor a cron daemon.
    Nothing,
}

/// Where cron daemons are installed: Debian's `cron`, cronie's `crond`
/// (Fedora, Arch, Alpine's cronie package), and busybox's applet link.
const CRON_DAEMONS: &[&str] = &[
    "usr/sbin/cron",
    "usr/sbin/crond",
    "usr/bin/crond",
    "sbin/crond",
    "usr/local/sbin/crond",
];

/// The names a running cron daemon has in `/proc/PID/comm`.
const CRON_PROCESSES: &[&str] = &["cron", "crond"];

/// Finds what would run a schedule under `root`: systemd as init, else
/// the first cron daemon installed (whether it runs is read from
/// `<root>/proc/*/comm`, which for `/` is the running system's).
pub fn probe(root: &Path) -> Scheduler {
    if root.join("run/systemd/system").is_dir() {
        return Scheduler::Systemd;
    }
    let mut busybox = None;
    for rel in CRON_DAEMONS {
        let path = root.join(rel);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let daemon = Path::new("/").join(rel);
        let is_busybox = std::fs::read_link(&path)
            .is_ok_and(|target| target.file_name().is_some_and(|n| n == "busybox"));
        if is_busybox {
            busybox.get_or_insert(daemon);
        } else {
            return Scheduler::Cron {
                daemon,
                running: cron_running(root),
            };
        }
    }
    match busybox {
        Some(daemon) => Scheduler::BusyboxCron { daemon },
        None => Scheduler::Nothing,
    }
}

/// Whether a process named cron or crond runs under `root`'s `/proc`.
fn cron_running(root: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(root.join("proc")) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let is_pid = e
            .file_name()
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|comm| CRON_PROCESSES.contains(&comm.trim_end()))
    })
}

impl Scheduler {
    /// The flavour of files to write, or why nothing would run them.
    pub fn flavor(&self) -> Result<Flavor, ScheduleError> {
        match self {
            Scheduler::Systemd => Ok(Flavor::Systemd),
            Scheduler::Cron { running: true, .. } => Ok(Flavor::Cron),
            Scheduler::Cron {
                daemon,
                running: false,
            } => Err(ScheduleError::CronStopped {
                daemon: daemon.clone(),
            }),
            Scheduler::BusyboxCron { daemon } => Err(ScheduleError::BusyboxCron {
                daemon: daemon.clone(),
            }),
            Scheduler::Nothing => Err(ScheduleError::NoScheduler),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("nothing here would run a schedule: systemd is not the init system and no cron daemon is installed; install one (e.g. `apt-get install cron`, `dnf install cronie`, `apk add cronie`), start it, and run install again")]
    NoScheduler,
    #[error("cron is installed ({}) but not running, so the schedule would never run: start it (e.g. `service cron start`, or `crond` on Alpine) and run install again", daemon.display())]
    CronStopped { daemon: PathBuf },
    #[error("the only cron here is busybox's ({}), which does not read /etc/cron.d: install cron or cronie (e.g. `apk add cronie`), start it, and run install again", daemon.display())]
    BusyboxCron { daemon: PathBuf },
    #[error("--at {0:?}: expected a time of day HH:MM, e.g. 22:00")]
    BadTime(String),
    #[error("{what} {} contains characters that cannot be written safely into a cron line or unit file; use a path of letters, digits and / . _ - + @ = , :", path.display())]
    UnsafePath { what: &'static str, path: PathBuf },
    #[error("{} exists but was not installed by rewind; move it away first", path.display())]
    NotOurs { path: PathBuf },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Systemctl { command: String, detail: String },
}

/// "22:00" -> (22, 0).
pub fn parse_at(text: &str) -> Result<(u8, u8), ScheduleError> {
    let bad = || ScheduleError::BadTime(text.to_string());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

/// What the schedule runs.
#[derive(Clone, Debug)]
pub struct Job {
    /// Absolute path of the rewind binary.
    pub exe: PathBuf,
    /// Absolute path of the configuration.
    pub config: PathBuf,
    pub hour: u8,
    pub minute: u8,
    /// The user cron runs the job as.
    pub user: String,
}

fn check_safe(what: &'static str, path: &Path) -> Result<String, ScheduleError> {
    let text = path.to_str().unwrap_or("");
    // No spaces, quotes, '%' (a newline to cron) or '$' (expanded by both).
    let safe = text.starts_with('/')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@=,:".contains(&b));
    if safe {
        Ok(text.to_string())
    } else {
        Err(ScheduleError::UnsafePath {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// The files of `flavor` for `job`, relative to the root, with contents.
pub fn render(flavor: Flavor, job: &Job) -> Result<Vec<(&'static str, String)>, ScheduleError> {
    let exe = check_safe("the rewind binary", &job.exe)?;
    let config = check_safe("the configuration", &job.config)?;
    // Quiet: under cron any output is mailed, so only problems are printed.
    let command = format!("{exe} --config {config} --quiet run");
    Ok(match flavor {
        Flavor::Systemd => vec![
            (
                SERVICE,
                format!(
                    "{MARKER}\n[Unit]\nDescription=rewind backups (rewind run)\nDocumentation=man:rewind-run(1)\n\n\
                     [Service]\nType=oneshot\nExecStart={command}\nNice=10\nIOSchedulingClass=idle\n"
                ),
            ),
            (
                TIMER,
                format!(
                    "{MARKER}\n[Unit]\nDescription=Daily rewind backups\nDocumentation=man:rewind-schedule(1)\n\n\
                     [Timer]\nOnCalendar=*-*-* {:02}:{:02}:00\nPersistent=true\n\n\
                     [Install]\nWantedBy=timers.target\n",
                    job.hour, job.minute
                ),
            ),
        ],
        Flavor::Cron => vec![(
            CRON,
            format!(
                "{MARKER}\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
                 {} {} * * * {} {command}\n",
                job.minute, job.hour, job.user
            ),
        )],
    })
}

/// The files under `root` that carry the marker, with their contents.
pub fn installed(root: &Path) -> Result<Vec<(PathBuf, String)>, ScheduleError> {
    let mut found = Vec::new();
    for rel in [SERVICE, TIMER, CRON] {
        let path = root.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.starts_with(MARKER) => found.push((path, text)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ScheduleError::Io {
                    action: "reading",
                    path,
                    source,
                })
            }
        }
    }
    Ok(found)
}

/// Writes the files (replacing earlier versions of ours, refusing others').
pub fn write(root: &Path, files: &[(&'static str, String)]) -> Result<Vec<PathBuf>, ScheduleError> {
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = root.join(rel);
        ensure_ours_or_absent(&path)?;
        let dir = path.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).map_err(|source| ScheduleError::Io {
            action: "creating directory",
            path: dir.to_path_buf(),
            source,
        })?;
        crate::repo::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| {
            ScheduleError::Io {
                action: "writing",
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Removes our files of `flavor` under `root`; returns those removed.
pub fn delete(root: &Path, flavor: Flavor) -> Result<Vec<PathBuf>, ScheduleError> {
    let mut removed = Vec::new();
    for rel in flavor.files() {
        let path = root.join(rel);
        if !path.exists() {
            continue;
        }
        ensure_ours_or_absent(&path)?;
        std::fs::remove_file(&path).map_err(|source| ScheduleError::Io {
            action: "removing",
            path: path.clone(),
            source,
        })?;
        removed.push(path);
    }
    Ok(removed)
}

fn ensure_ours_or_absent(path: &Path) -> Result<(), ScheduleError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.starts_with(MARKER) => Ok(()),
        Ok(_) => Err(ScheduleError::NotOurs {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(ScheduleError::NotOurs {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(ScheduleError::Io {
            action: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The time of day in a file that install wrote: the cron line's minute
/// and hour, or the timer's `OnCalendar=*-*-* HH:MM:00`.
pub fn installed_time(text: &str) -> Option<(u8, u8)> {
    for line in text.lines() {
        if let Some(at) = line.strip_prefix("OnCalendar=*-*-* ") {
            return parse_at(at.strip_suffix(":00")?).ok();
        }
        let mut fields = line.split_whitespace();
        if let (Some(m), Some(h), Some("*"), Some("*"), Some("*")) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) {
            return Some((h.parse().ok()?, m.parse().ok()?));
        }
    }
    None
}

/// Runs `systemctl ARGS` (only ever for the real root).
pub fn systemctl(args: &[&str]) -> Result<(), ScheduleError> {
    let command = format!("systemctl {}", args.join(" "));
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| ScheduleError::Systemctl {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScheduleError::Systemctl {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(parse_at("22:00").unwrap(), (22, 0));
        assert_eq!(parse_at("7:05").unwrap(), (7, 5));
        for bad in ["24:00", "12:60", "12", "12:5", ":30", "ab:cd", "1:2:3"] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_that_a_shell_or_cron_would_mangle_are_refused() {
        let job = |exe: &str| Job {
            exe: exe.into(),
            config: "/etc/rewind.toml".into(),
            hour: 1,
            minute: 2,
            user: "root".into(),
        };
        let cron = render(Flavor::Cron, &job("/usr/bin/rewind")).unwrap();
        assert!(cron[0]
            .1
            .ends_with("\n2 1 * * * root /usr/bin/rewind --config /etc/rewind.toml --quiet run\n"));
        for bad in ["/opt/my rewind", "/a%b", "/a$b", "rel/rewind", "/a'b"] {
            assert!(render(Flavor::Cron, &job(bad)).is_err(), "{bad}");
        }
    }
}
