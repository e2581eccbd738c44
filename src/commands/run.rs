//! `rewind run`: every configured backup, in order, under the run lock,
//! then the prune of each backup name that has a retention configured,
//! then a gc if the configuration asks for one, then, on its day, the push
//! of the off-site mirror.
//! One summary line per backup, per prune, for the gc and the mirror
//! (problems always, the rest unless --quiet), and an exit status for cron:
//! 0 all saved, 1 some saved with warnings, 2 a backup, a prune, the gc or
//! the mirror push failed (or the run could not start).

use super::save::human_bytes;
use super::{configured_location, load_config, open_location, Error, Status};
use crate::cli::{Cli, RunArgs};
use crate::config::Config;
use crate::progress::{self, Progress, Renderer};
use crate::remote::Location;
use crate::run::{self, lock, record};
use std::io::Write;
use std::sync::Arc;

/// Tracing target of the summary lines: printed on stderr by this module
/// and also sent to the log file (`main` keeps this target off stderr).
pub const REPORT_TARGET: &str = "rewind::report";

/// How a summary line is logged in the log file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

/// A line for the user (unless quiet and all went well) and the log file.
fn report(quiet: bool, level: Level, line: &str) {
    if !quiet || level != Level::Info {
        eprintln!("{line}");
    }
    match level {
        Level::Info => tracing::info!(target: REPORT_TARGET, "{line}"),
        Level::Warn => tracing::warn!(target: REPORT_TARGET, "{line}"),
        Level::Error => tracing::error!(target: REPORT_TARGET, "{line}"),
    }
}

pub fn run(cli: &Cli, args: &RunArgs) -> Result<Status, Error> {
    let config = load_config(cli)?;
    let location = configured_location(cli, &config)?;
    // Before anything else, and in a dry run too: what makes the run
    // refuse to start makes the dry run fail alike.
    crate::config::check_trusted(&config)?;
    if args.dry_run {
        return dry_run(&config, &location);
    }
    let repo = open_location(cli, &location)?;
    // One run at a time per repository and machine: beside a local
    // repository, in the client's cache for a server's.
    let state = repo.state_dir();
    let _lock = lock::acquire(state.parent().unwrap_or(&state))?;
    let mut records = match record::load_from(&*repo) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}; starting new records");
            record::Records::default()
        }
    };
    let started = std::time::Instant::now();
    let (mut partial, mut failed) = (Vec::new(), Vec::new());
    let mut records_ok = true;
    // A signal stops the save under way cleanly (its dump command too) and
    // then the run, before its next step (see `interrupt`).
    crate::interrupt::install();
    let total = config.backups.len();
    for backup in &config.backups {
        let progress = Progress::new();
        let renderer = Renderer::start(
            Arc::clone(&progress),
            progress::should_draw(cli.quiet, false),
            "saving",
        );
        let done = run::run_backup(&*repo, backup, Some(progress));
        renderer.finish();
        match &done.outcome {
            Ok(o) => {
                let s = &o.stats;
                let line = format!(
                    "{}: saved {}: {}, {} read, {} new, {:.1}s{}",
                    done.name,
                    crate::time::snapshot_name(o.time),
                    super::save::entries_summary(s),
                    human_bytes(s.bytes_read),
                    human_bytes(s.bytes_written),
                    done.elapsed,
                    super::save::warnings_summary(o.warnings.len()),
                );
                if o.warnings.is_empty() {
                    report(cli.quiet, Level::Info, &line);
                } else {
                    // Shown even with --quiet: cron mails it.
                    report(cli.quiet, Level::Warn, &line);
                    partial.push(done.name.clone());
                }
            }
            // The error says that nothing was committed.
            Err(e) if crate::interrupt::pending().is_some() => {
                report(cli.quiet, Level::Error, &format!("{}: {e}", done.name));
                failed.push(done.name.clone());
            }
            Err(e) => {
                report(
                    cli.quiet,
                    Level::Error,
                    &format!("{}: FAILED, nothing saved: {e}", done.name),
                );
                failed.push(done.name.clone());
            }
        }
        let previous = records.backup.get(&done.name);
        let rec = done.record(previous);
        records.backup.insert(done.name.clone(), rec);
        if let Err(e) = record::store(&*repo, &records) {
            tracing::error!("{e}; `rewind status` will not know how this run went");
            records_ok = false;
        }
        if let Some(signal) = crate::interrupt::pending() {
            return Ok(interrupted(
                cli.quiet,
                signal,
                &format!("backup {}", done.name),
            ));
        }
    }
    // After every backup, so that a prune never delays a save; only the
    // names whose save worked this time (a failing backup keeps all it has).
    for backup in &config.backups {
        let Some(rules) = &backup.retention else {
            continue;
        };
        if let Some(signal) = crate::interrupt::pending() {
            return Ok(interrupted(cli.quiet, signal, "the backups"));
        }
        if failed.contains(&backup.name) {
            report(
                cli.quiet,
                Level::Warn,
                &format!("{}: not pruned: its backup failed", backup.name),
            );
            continue;
        }
        match prune_one(&*repo, &backup.name, rules, &mut records) {
            Ok(line) => report(cli.quiet, Level::Info, &line),
            Err(e) => {
                report(
                    cli.quiet,
                    Level::Error,
                    &format!("{}: prune FAILED: {e}", backup.name),
                );
                failed.push(format!("{} (prune)", backup.name));
            }
        }
        if let Err(e) = record::store(&*repo, &records) {
            tracing::error!("{e}; `rewind status` will not know how this run went");
            records_ok = false;
        }
    }
    // Last: space comes back only from what the prunes removed, and a gc
    // waits for nothing of this run's.
    if let Some(signal) = crate::interrupt::pending() {
        return Ok(interrupted(cli.quiet, signal, "the backups and prunes"));
    }
    if config.gc {
        let gc_started = std::time::Instant::now();
        match crate::gc::gc(&*repo, &crate::gc::GcOptions::default(), &crate::gc::Quiet) {
            Ok(o) => report(
                cli.quiet,
                Level::Info,
                &super::gc::summary(&*repo, &o, false, gc_started.elapsed()),
            ),
            Err(e) => {
                report(cli.quiet, Level::Error, &format!("gc FAILED: {e}"));
                failed.push("gc".into());
            }
        }
    }
    // Last of all: the mirror then carries this run's snapshots, and none
    // of the prunes' or the gc's leftovers.
    if let Some(mirror) = &config.mirror {
        let weekday = crate::time::local_weekday(crate::time::now());
        if !mirror.day.is_due(weekday) {
            report(
                cli.quiet,
                Level::Info,
                &format!("mirror: not today (pushes {})", mirror.day.when()),
            );
        } else {
            // A push is safe to kill at any moment (its manifest goes
            // last) but does not look for a signal: one now ends the run.
            crate::interrupt::restore_default();
            if let Some(signal) = crate::interrupt::pending() {
                return Ok(interrupted(cli.quiet, signal, "the backups, prunes and gc"));
            }
            let mirror_started = std::time::Instant::now();
            match push_mirror(&location, mirror) {
                Ok(r) => report(
                    cli.quiet,
                    Level::Info,
                    &mirror_summary(mirror, &r, mirror_started.elapsed()),
                ),
                Err(e) => {
                    report(
                        cli.quiet,
                        Level::Error,
                        &format!("mirror push to {} FAILED: {e}", mirror.url),
                    );
                    failed.push("mirror".into());
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if !failed.is_empty() {
        report(
            cli.quiet,
            Level::Error,
            &format!(
                "run: {} of {} failed ({}), {:.1}s",
                failed.len(),
                backups(total),
                failed.join(", "),
                elapsed
            ),
        );
        return Ok(Status::Exit(2));
    }
    if !partial.is_empty() || !records_ok {
        report(
            cli.quiet,
            Level::Warn,
            &format!(
                "run: {} saved, {} with warnings ({}), {:.1}s",
                backups(total),
                partial.len(),
                partial.join(", "),
                elapsed
            ),
        );
        return Ok(Status::Partial);
    }
    report(
        cli.quiet,
        Level::Info,
        &format!("run: {} saved, {elapsed:.1}s", backups(total)),
    );
    Ok(Status::Success)
}

/// Why `location` cannot be mirrored by this run, if it cannot: the push
/// reads the repository's files (the config refuses a server's
/// `repository`, but `-r` may name one).
fn mirror_blocker(location: &Location) -> Option<String> {
    match location {
        Location::Local(_) => None,
        Location::Ssh(target) => Some(format!(
            "the repository {target} is on a server: the mirror is pushed where the repository is (configure [mirror] there)"
        )),
    }
}

/// Pushes the local repository at `location` to the configured mirror, as
/// `rewind mirror push` does, with no progress bar (a run is for cron).
fn push_mirror(
    location: &Location,
    mirror: &crate::config::Mirror,
) -> Result<crate::mirror::push::PushReport, Error> {
    use crate::mirror::{self, push, Bucket, BucketOptions, Sealer};
    let path = match location {
        Location::Local(path) => path,
        Location::Ssh(_) => {
            let why = mirror_blocker(location).unwrap_or_default();
            return Err(Box::new(super::UsageError(why)));
        }
    };
    let sealer = match &mirror.key {
        Some(key) => Sealer::from_key_file(key)?,
        None => Sealer::Plain,
    };
    let bucket = Bucket::open(
        &mirror.url,
        &BucketOptions {
            endpoint: mirror.endpoint.clone(),
        },
    )?;
    let repo = crate::repo::Repository::open(path)?;
    let opts = push::PushOptions {
        grace_secs: i64::try_from(mirror.grace_secs).unwrap_or(i64::MAX),
        jobs: push::DEFAULT_JOBS,
        now: crate::time::now(),
    };
    Ok(push::push(&repo, &bucket, &sealer, &opts, &mirror::Quiet)?)
}

/// The line of a mirror push, with the figures `rewind mirror push` gives.
fn mirror_summary(
    mirror: &crate::config::Mirror,
    r: &crate::mirror::push::PushReport,
    elapsed: std::time::Duration,
) -> String {
    format!(
        "mirror: pushed to {}: {}, {:.1}s",
        mirror.url,
        super::mirror::push_summary(r),
        elapsed.as_secs_f64()
    )
}

/// Reports a run stopped by `signal` after `step`; the exit status a
/// shell gives a process the signal killed. A backup it interrupted has
/// been reported (and recorded) as failed, with the reason.
fn interrupted(quiet: bool, signal: i32, step: &str) -> Status {
    report(
        quiet,
        Level::Error,
        &format!(
            "run: interrupted by {} after {step}; the rest of the run was not done",
            crate::interrupt::signal_name(signal)
        ),
    );
    Status::Exit(crate::interrupt::exit_status(signal))
}

/// Prunes one backup name to `rules`; the line to report.
fn prune_one(
    repo: &dyn crate::repo::Repo,
    name: &str,
    rules: &crate::retention::Rules,
    records: &mut record::Records,
) -> Result<String, Error> {
    let plan = crate::prune::plan(repo, name, rules)?;
    let outcome = crate::prune::execute(repo, &plan)?;
    crate::prune::update_records(records, name, &outcome.rewritten);
    Ok(format!(
        "{name}: pruned {} of {} snapshots ({} kept{})",
        plan.removed(),
        plan.snapshots.len(),
        plan.kept() + outcome.landed_meanwhile,
        match outcome.landed_meanwhile {
            0 => String::new(),
            n => format!(", {n} saved meanwhile"),
        }
    ))
}

/// What a run would do, on standard output; runs no command, takes no lock.
/// Each backup goes through the checks the run makes before saving it
/// (`run::check_backup`): a backup the run would fail is reported as
/// failing and the exit status is the one the run would have (2 failed,
/// 1 warnings such as a missing path).
fn dry_run(config: &Config, location: &Location) -> Result<Status, Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "configuration {}", config.path.display())?;
    match location {
        Location::Ssh(target) => writeln!(
            out,
            "repository {target} (on a server: not contacted by a dry run)"
        )?,
        Location::Local(repo) => writeln!(out, "repository {}", repo.display())?,
    }
    let (mut partial, mut failed) = (Vec::new(), Vec::new());
    // A local repository is read for the prune plans; a server's is not
    // contacted. One that cannot be opened fails the run: the dry run too.
    let local = match location {
        Location::Local(path) => match super::open_at(path) {
            Ok(repo) => Some(repo),
            Err(e) => {
                eprintln!("run would FAIL: {e}");
                failed.push("the repository".to_string());
                None
            }
        },
        Location::Ssh(_) => None,
    };
    for b in &config.backups {
        writeln!(out, "backup {}:", b.name)?;
        // On stderr as the run prints them, so that cron or a user sees
        // them whatever happens to standard output.
        match run::check_backup(b) {
            Ok(warnings) if warnings.is_empty() => {}
            Ok(warnings) => {
                for w in &warnings {
                    eprintln!("{}: warning: {w}", b.name);
                }
                partial.push(b.name.clone());
            }
            Err(e) => {
                eprintln!("{}: would FAIL, nothing would be saved: {e}", b.name);
                failed.push(b.name.clone());
            }
        }
        for p in &b.paths {
            writeln!(out, "  would save {}", p.display())?;
        }
        for e in &b.excludes {
            writeln!(out, "  excluding {e}")?;
        }
        for f in &b.exclude_from {
            writeln!(out, "  excluding the patterns in {}", f.display())?;
        }
        if b.one_file_system {
            writeln!(out, "  staying on each path's file system")?;
        }
        for d in &b.dumps {
            writeln!(
                out,
                "  would run `{}` and save its output as {}",
                d.command,
                d.path.display()
            )?;
        }
        match &b.retention {
            None => writeln!(out, "  no retention: every snapshot is kept")?,
            Some(rules) => {
                writeln!(out, "  then would prune with {rules}")?;
                match &local {
                    None => writeln!(
                        out,
                        "  (the plan needs the repository's snapshots: not shown)"
                    )?,
                    Some(repo) => match crate::prune::plan(repo, &b.name, rules) {
                        Ok(plan) => {
                            writeln!(
                                out,
                                "  plan on the snapshots there now (without the one this run makes):"
                            )?;
                            super::prune::print_plan(&mut out, &plan)?;
                        }
                        Err(crate::prune::PruneError::NoSuchName(_)) => {
                            writeln!(out, "  (no snapshot yet: nothing to prune)")?
                        }
                        Err(e) => return Err(e.into()),
                    },
                }
            }
        }
    }
    if config.gc {
        writeln!(
            out,
            "then would gc: reclaim what no snapshot uses and merge small packs"
        )?;
    }
    match &config.mirror {
        None => writeln!(out, "no mirror: nothing is copied off-site")?,
        Some(m) => {
            let due = m.day.is_due(crate::time::local_weekday(crate::time::now()));
            if due {
                writeln!(
                    out,
                    "then would push the mirror to {} ({})",
                    m.url,
                    m.day.when()
                )?;
            } else {
                writeln!(
                    out,
                    "mirror: not today (pushes {} to {})",
                    m.day.when(),
                    m.url
                )?;
            }
            // What would fail the push and can be seen without the
            // network: a server's repository, a key file that does not
            // load. A failure on another day is shown but is not this
            // run's.
            let problem = match mirror_blocker(location) {
                Some(why) => Some(why),
                None => m.key.as_ref().and_then(|key| {
                    crate::mirror::Sealer::from_key_file(key)
                        .err()
                        .map(|e| e.to_string())
                }),
            };
            if let Some(why) = problem {
                if due {
                    eprintln!("mirror: would FAIL: {why}");
                    failed.push("the mirror".to_string());
                } else {
                    eprintln!(
                        "mirror: warning: the push {} would fail: {why}",
                        m.day.when()
                    );
                }
            }
        }
    }
    out.flush()?;
    drop(out);
    let total = config.backups.len();
    if !failed.is_empty() {
        eprintln!("dry run: the run would FAIL ({})", failed.join(", "));
        return Ok(Status::Exit(2));
    }
    if !partial.is_empty() {
        eprintln!(
            "dry run: {} would be saved, {} with warnings ({})",
            backups(total),
            partial.len(),
            partial.join(", ")
        );
        return Ok(Status::Partial);
    }
    Ok(Status::Success)
}

/// "1 backup", "2 backups".
fn backups(n: usize) -> String {
    if n == 1 {
        "1 backup".into()
    } else {
        format!("{n} backups")
    }
}
