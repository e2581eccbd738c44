//! `rewind schedule install|remove|show`.

use super::{load_config, Error, Status};
use crate::cli::{Cli, ScheduleCommand};
use crate::schedule::{self, Flavor, Job, Scheduler};
use std::io::Write;
use std::path::Path;

pub fn run(cli: &Cli, command: &ScheduleCommand) -> Result<Status, Error> {
    match command {
        ScheduleCommand::Install(args) => install(cli, &args.at, &args.root.root),
        ScheduleCommand::Remove(args) => remove(cli, &args.root),
        ScheduleCommand::Show(args) => show(&args.root),
    }
}

/// Whether to drive systemctl: only for the running system.
fn is_real_root(root: &Path) -> bool {
    root == Path::new("/")
}

fn install(cli: &Cli, at: &str, root: &Path) -> Result<Status, Error> {
    let (hour, minute) = schedule::parse_at(at)?;
    // A schedule of a configuration that does not load would fail nightly
    // and silently: refuse it now.
    let config = load_config(cli)?;
    crate::config::check_trusted(&config)?;
    let job = Job {
        exe: std::env::current_exe()?,
        config: config.path.clone(),
        hour,
        minute,
        user: current_user(),
    };
    // Refused before anything is written: a schedule that nothing runs
    // is a backup that silently never happens.
    let flavor = schedule::probe(root).flavor()?;
    let files = schedule::render(flavor, &job)?;
    // The other flavour's files from an earlier install would run the
    // backups twice.
    remove_flavor(flavor.other(), root, cli.quiet)?;
    let written = schedule::write(root, &files)?;
    if flavor == Flavor::Systemd && is_real_root(root) {
        schedule::systemctl(&["daemon-reload"])?;
        schedule::systemctl(&["enable", "--now", "rewind.timer"])?;
    }
    if !cli.quiet {
        for path in &written {
            eprintln!("installed {}", path.display());
        }
        eprintln!(
            "`rewind run` will run daily at {hour:02}:{minute:02} with {}{}",
            job.config.display(),
            if flavor == Flavor::Systemd && !is_real_root(root) {
                " (not enabled: systemctl is not run for --root)"
            } else {
                ""
            }
        );
    }
    Ok(Status::Success)
}

fn remove_flavor(
    flavor: Flavor,
    root: &Path,
    quiet: bool,
) -> Result<Vec<std::path::PathBuf>, Error> {
    let present = flavor.files().iter().any(|rel| root.join(rel).exists());
    if !present {
        return Ok(Vec::new());
    }
    if flavor == Flavor::Systemd && is_real_root(root) {
        // Stop and disable before the unit files go; a failure here (no
        // systemd running any more) must not keep the files in place.
        if let Err(e) = schedule::systemctl(&["disable", "--now", "rewind.timer"]) {
            tracing::warn!("{e}");
        }
    }
    let removed = schedule::delete(root, flavor)?;
    if flavor == Flavor::Systemd && is_real_root(root) {
        if let Err(e) = schedule::systemctl(&["daemon-reload"]) {
            tracing::warn!("{e}");
        }
    }
    if !quiet {
        for path in &removed {
            eprintln!("removed {}", path.display());
        }
    }
    Ok(removed)
}

fn remove(cli: &Cli, root: &Path) -> Result<Status, Error> {
    let mut removed = remove_flavor(Flavor::Systemd, root, cli.quiet)?;
    removed.extend(remove_flavor(Flavor::Cron, root, cli.quiet)?);
    if removed.is_empty() && !cli.quiet {
        eprintln!("no schedule installed under {}", root.display());
    }
    Ok(Status::Success)
}

fn show(root: &Path) -> Result<Status, Error> {
    let installed = schedule::installed(root)?;
    let mut out = std::io::stdout().lock();
    if installed.is_empty() {
        writeln!(out, "no schedule installed under {}", root.display())?;
        out.flush()?;
        return Ok(Status::Success);
    }
    let time = installed
        .iter()
        .find_map(|(_, text)| schedule::installed_time(text));
    let systemd = installed
        .iter()
        .any(|(path, _)| path.ends_with("rewind.timer"));
    for (path, text) in &installed {
        writeln!(out, "# {}", path.display())?;
        out.write_all(text.as_bytes())?;
    }
    writeln!(out, "{}", activity(root, systemd, time))?;
    out.flush()?;
    Ok(Status::Success)
}

/// One line: whether what should run the installed files does, and when
/// the next run is due.
fn activity(root: &Path, systemd: bool, time: Option<(u8, u8)>) -> String {
    let next = match time {
        Some((hour, minute)) => format!(
            "; next run {}",
            crate::time::listing_time(crate::time::next_local(crate::time::now(), hour, minute))
        ),
        None => String::new(),
    };
    let scheduler = schedule::probe(root);
    match (systemd, &scheduler) {
        (true, Scheduler::Systemd) if is_real_root(root) => {
            if schedule::systemctl(&["is-active", "--quiet", "rewind.timer"]).is_ok() {
                format!("active: the systemd timer rewind.timer is running{next}")
            } else {
                "NOT active: the systemd timer rewind.timer is not running; start it with `systemctl enable --now rewind.timer`".into()
            }
        }
        (true, Scheduler::Systemd) => {
            format!("systemd runs under {}; the timer is enabled when installed on the running system{next}", root.display())
        }
        (false, Scheduler::Cron { daemon, running: true }) => {
            format!("active: cron ({}) is running{next}", daemon.display())
        }
        // Installed for a scheduler that is not there (any more): say why
        // nothing will run, as install would.
        (false, Scheduler::Systemd) => "NOT active: systemd is the init system and does not read /etc/cron.d; run `rewind schedule install` again to switch to a timer".into(),
        (true, _) => "NOT active: systemd is not the init system here; run `rewind schedule install` again to switch to cron".into(),
        (false, other) => match other.flavor() {
            Err(e) => format!("NOT active: {e}"),
            Ok(_) => format!("active{next}"),
        },
    }
}

/// The user cron runs the job as: whoever installs it.
fn current_user() -> String {
    use crate::meta::ids;
    // getpwuid_r, not getpwuid: the latter's static buffer may be
    // overwritten by a lookup on another thread while we copy from it.
    ids::user_entry(ids::euid())
        .map(|pw| String::from_utf8_lossy(&pw.name).into_owned())
        .unwrap_or_else(|| "root".into())
}
