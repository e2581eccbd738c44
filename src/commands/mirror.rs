//! `rewind mirror keygen|push|pull|status|verify`: one repository (`-d`)
//! or every repository under a folder (`--all`), each against its own
//! prefix of the bucket; a bar on a terminal and one summary line each.

use super::save::{human_bytes, json_string};
use super::{Error, Status, UsageError};
use crate::cli::{Cli, MirrorCommand, MirrorPlace, MirrorStatusArgs};
use crate::mirror::push::PushOptions;
use crate::mirror::{self, Bucket, BucketOptions, MirrorError, Sealer};
use crate::repo::under::{self, Found};
use crate::repo::Repository;
use crate::run::health::State;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub fn run(cli: &Cli, command: &MirrorCommand) -> Result<Status, Error> {
    match command {
        MirrorCommand::Keygen(args) => {
            let recipient = mirror::seal::keygen(&args.path)?;
            println!("{recipient}");
            if !cli.quiet {
                eprintln!(
                    "wrote {}: keep a copy somewhere other than the backup server (a mirror cannot be read without it)",
                    args.path.display()
                );
            }
            Ok(Status::Success)
        }
        MirrorCommand::Push(args) => {
            let place = Place::open(&args.place)?;
            let grace = crate::config::parse_duration(&args.grace).map_err(UsageError)?;
            let opts = PushOptions {
                grace_secs: grace as i64,
                jobs: args.place.jobs as usize,
                now: crate::time::now(),
            };
            let repos = repositories(cli, args.all.as_deref())?;
            let mut failed = false;
            for (name, path) in &repos {
                let bucket = place.bucket_for(name.as_deref());
                if let Err(e) = push_one(cli, path, &bucket, &place.sealer, &opts) {
                    eprintln!("error: mirror push {}: {e}", path.display());
                    failed = true;
                }
            }
            Ok(if failed {
                Status::Exit(2)
            } else {
                Status::Success
            })
        }
        MirrorCommand::Pull(args) => {
            let place = Place::open(&args.place)?;
            let jobs = args.place.jobs as usize;
            let names = if args.all {
                let names = mirrored_names(&place)?;
                std::fs::create_dir_all(&args.dest)
                    .map_err(MirrorError::io("creating directory", &args.dest))?;
                names.into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            let mut failed = false;
            for name in names {
                let bucket = place.bucket_for(name.as_deref());
                let dest = match &name {
                    Some(name) => args.dest.join(name),
                    None => args.dest.clone(),
                };
                let bar = Bar::new(cli, "pull");
                let started = Instant::now();
                match mirror::pull::pull(&bucket, &dest, &place.sealer, jobs, &bar) {
                    Ok(r) => {
                        bar.clear();
                        if !cli.quiet {
                            eprintln!(
                                "mirror pull {} -> {}: {} objects received ({}), {} kept from an earlier pull, {} refs, {:.1}s",
                                bucket.url(),
                                dest.display(),
                                r.files_received,
                                human_bytes(r.bytes_received),
                                r.files_kept,
                                r.refs,
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                    Err(e) => {
                        bar.clear();
                        eprintln!(
                            "error: mirror pull {} -> {}: {e}",
                            bucket.url(),
                            dest.display()
                        );
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                Status::Exit(2)
            } else {
                Status::Success
            })
        }
        MirrorCommand::Verify(args) => {
            let place = Place::open(&args.place)?;
            let names = if args.all {
                mirrored_names(&place)?.into_iter().map(Some).collect()
            } else {
                vec![None]
            };
            let mut worst = Status::Success;
            for name in names {
                let bucket = place.bucket_for(name.as_deref());
                let bar = Bar::new(cli, "verify");
                let outcome =
                    mirror::verify::verify(&bucket, &place.sealer, args.place.jobs as usize, &bar);
                bar.clear();
                match outcome {
                    Ok(r) if r.problems.is_empty() => {
                        if !cli.quiet {
                            eprintln!(
                                "mirror verify {}: {} objects ({}) read back, decrypted and matched",
                                bucket.url(),
                                r.files_checked,
                                human_bytes(r.bytes_checked)
                            );
                        }
                    }
                    Ok(r) => {
                        for problem in &r.problems {
                            eprintln!("damaged: {problem}");
                        }
                        eprintln!(
                            "mirror verify {}: {} of {} objects are damaged or missing: push again from the repository to replace them",
                            bucket.url(),
                            r.problems.len(),
                            r.files_checked
                        );
                        if worst == Status::Success {
                            worst = Status::Partial;
                        }
                    }
                    Err(e) => {
                        eprintln!("error: mirror verify {}: {e}", bucket.url());
                        worst = Status::Exit(2);
                    }
                }
            }
            Ok(worst)
        }
        MirrorCommand::Status(args) => status(cli, args),
    }
}

/// The bucket and the key of a command.
struct Place {
    bucket: Bucket,
    sealer: Sealer,
}

impl Place {
    fn open(args: &MirrorPlace) -> Result<Place, Error> {
        let sealer = match (&args.key, args.plain) {
            (Some(path), _) => Sealer::from_key_file(path)?,
            (None, true) => Sealer::Plain,
            (None, false) => {
                return Err(Box::new(UsageError(
                    "no mirror key: give --key KEYFILE (make one with `rewind mirror keygen KEYFILE`), or --plain to mirror unencrypted".into(),
                )))
            }
        };
        let bucket = Bucket::open(
            &args.url,
            &BucketOptions {
                endpoint: args.endpoint.clone(),
            },
        )?;
        Ok(Place { bucket, sealer })
    }

    fn bucket_for(&self, name: Option<&str>) -> Bucket {
        match name {
            Some(name) => self.bucket.child(name),
            None => self.bucket.clone(),
        }
    }
}

/// `-d` (one repository, mirrored at URL itself) or `--all DIR` (each
/// repository under DIR, at URL/NAME).
fn repositories(cli: &Cli, all: Option<&Path>) -> Result<Vec<(Option<String>, PathBuf)>, Error> {
    super::check_repos_alone(cli, all)?;
    if cli.remote.is_some() {
        return Err(Box::new(UsageError(
            "mirror reads repositories on this machine (the backup server): run it there, with -d or --all".into(),
        )));
    }
    let Some(dir) = all else {
        return Ok(vec![(None, super::repo_path(cli)?)]);
    };
    let mut found = Vec::new();
    for c in under::list(dir)? {
        let name = c.name.to_string_lossy().into_owned();
        match c.found {
            Found::Repository => found.push((Some(name), c.path)),
            Found::Unreadable(why) => {
                return Err(Box::new(UsageError(format!(
                    "cannot read {}: {why}",
                    c.path.display()
                ))))
            }
        }
    }
    if found.is_empty() {
        return Err(Box::new(UsageError(format!(
            "no repositories under {}: each is a repository in a directory of its own there",
            dir.display()
        ))));
    }
    Ok(found)
}

/// The repositories a whole-server mirror holds.
fn mirrored_names(place: &Place) -> Result<Vec<String>, Error> {
    let names = place.bucket.list_children()?;
    if names.is_empty() {
        return Err(Box::new(UsageError(format!(
            "{}: no mirrored repositories there (check the URL)",
            place.bucket.url()
        ))));
    }
    Ok(names)
}

fn push_one(
    cli: &Cli,
    path: &Path,
    bucket: &Bucket,
    sealer: &Sealer,
    opts: &PushOptions,
) -> Result<(), Error> {
    let repo = super::open_at(path)?;
    let bar = Bar::new(cli, "push");
    let started = Instant::now();
    let outcome = mirror::push::push(&repo, bucket, sealer, opts, &bar);
    bar.clear();
    let r = outcome?;
    if !cli.quiet {
        eprintln!(
            "mirror push {} -> {}: {}, {:.1}s",
            path.display(),
            bucket.url(),
            push_summary(&r),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The figures of a push, for its one summary line (here and in `run`).
pub(super) fn push_summary(r: &mirror::push::PushReport) -> String {
    format!(
        "{} objects sent ({}), {} already there ({}), {} deleted after their grace period, {}",
        r.files_sent,
        human_bytes(r.bytes_sent),
        r.files_skipped,
        human_bytes(r.bytes_skipped),
        r.files_deleted,
        if r.published {
            "manifest updated"
        } else {
            "nothing new"
        },
    )
}

struct Row {
    repository: PathBuf,
    url: String,
    state: State,
    reason: String,
    mirror: Option<mirror::status::MirrorState>,
}

fn status(cli: &Cli, args: &MirrorStatusArgs) -> Result<Status, Error> {
    let max_age = crate::config::parse_duration(&args.max_age).map_err(UsageError)? as i64;
    let place = Place::open(&args.place)?;
    let now = crate::time::now();
    let mut rows = Vec::new();
    for (name, path) in repositories(cli, args.all.as_deref())? {
        let bucket = place.bucket_for(name.as_deref());
        let outcome = Repository::open(&path)
            .map_err(MirrorError::from)
            .and_then(|repo| mirror::status::status(&repo, &bucket, &place.sealer));
        let (state, reason, mirror) = match outcome {
            Ok(m) => {
                let (state, reason) = judge(&m, now, max_age);
                (state, reason, Some(m))
            }
            Err(e @ (MirrorError::Bucket { .. } | MirrorError::Io { .. })) => {
                (State::Unknown, e.to_string(), None)
            }
            Err(e) => (State::Critical, e.to_string(), None),
        };
        rows.push(Row {
            repository: path,
            url: bucket.url().to_string(),
            state,
            reason,
            mirror,
        });
    }
    let worst = rows.iter().map(|r| r.state).max().unwrap_or(State::Ok);
    if args.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let m = r.mirror.as_ref();
                let num = |v: Option<u64>| v.map_or("null".into(), |n| n.to_string());
                format!(
                    "{{\"repository\":{},\"url\":{},\"state\":{},\"reason\":{},\"pushed\":{},\"in_sync\":{},\"files_behind\":{},\"bytes_behind\":{},\"stored_bytes\":{},\"retired_bytes\":{}}}",
                    json_string(&r.repository.display().to_string()),
                    json_string(&r.url),
                    json_string(r.state.as_str()),
                    json_string(&r.reason),
                    m.and_then(|m| m.pushed).map_or("null".into(), |t| t.to_string()),
                    m.is_some_and(|m| m.in_sync()),
                    num(m.map(|m| m.files_behind)),
                    num(m.map(|m| m.bytes_behind)),
                    num(m.map(|m| m.stored_bytes)),
                    num(m.map(|m| m.retired_bytes)),
                )
            })
            .collect();
        println!(
            "{{\"state\":{},\"mirrors\":[{}]}}",
            json_string(worst.as_str()),
            items.join(",")
        );
    } else {
        let bad = rows.iter().filter(|r| r.state != State::Ok).count();
        println!(
            "MIRROR {} - {} of {} mirrors need attention",
            worst.as_str(),
            bad,
            rows.len()
        );
        for r in &rows {
            println!(
                "{} {} -> {}: {}",
                r.state.as_str(),
                r.repository.display(),
                r.url,
                r.reason
            );
        }
    }
    Ok(Status::Exit(worst.code()))
}

/// OK when the mirror has everything, or its last push is recent enough;
/// WARNING when it is behind and older than `max_age`, CRITICAL at twice
/// that or when there is no mirror at all.
fn judge(m: &mirror::status::MirrorState, now: i64, max_age: i64) -> (State, String) {
    let Some(pushed) = m.pushed else {
        return (
            State::Critical,
            "never pushed: no mirror at this URL".into(),
        );
    };
    let age = now.saturating_sub(pushed).max(0);
    let when = format!(
        "last change pushed {} ({} ago)",
        crate::time::log_stamp(pushed),
        human_age(age)
    );
    if m.in_sync() {
        return (
            State::Ok,
            format!(
                "in sync, {} in the bucket; {when}",
                human_bytes(m.stored_bytes)
            ),
        );
    }
    let behind = format!(
        "{} files ({}) not pushed{}; {when}",
        m.files_behind,
        human_bytes(m.bytes_behind),
        if m.refs_differ { ", refs differ" } else { "" }
    );
    let state = if age >= 2 * max_age {
        State::Critical
    } else if age >= max_age {
        State::Warning
    } else {
        State::Ok
    };
    (state, behind)
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// Bytes, objects, rate and time left, on a terminal only.
struct Bar {
    bar: Option<ProgressBar>,
    files: AtomicU64,
    done: AtomicU64,
}

impl Bar {
    fn new(cli: &Cli, verb: &str) -> Bar {
        let bar = crate::progress::should_draw(cli.quiet, false).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "mirror {verb} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Bar {
            bar,
            files: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl mirror::Progress for Bar {
    fn start(&self, files: u64, bytes: u64) {
        self.files.store(files, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
            bar.set_position(0);
            bar.set_message(format!("0/{files} objects"));
        }
    }

    fn bytes(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn file_done(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            let files = self.files.load(Ordering::Relaxed);
            bar.set_message(format!("{done}/{files} objects"));
        }
    }
}
