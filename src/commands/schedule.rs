//! `rewind schedule install|remove|show`.

use super::{load_config, Error, Status};
use crate::cli::{Cli, ScheduleCommand};
use crate::schedule::{self, Flavor, Job};
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
    let flavor = Flavor::detect(root);
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
    }
    for (path, text) in installed {
        writeln!(out, "# {}", path.display())?;
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    Ok(Status::Success)
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
