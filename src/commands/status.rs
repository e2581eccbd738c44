//! `rewind status`: one line per backup, for people and for monitoring.
//! The first line is the overall state (OK, WARNING, CRITICAL, UNKNOWN) as
//! a Nagios plugin prints it, and the exit status is the plugin's code (0,
//! 1, 2, 3).
//!
//! Which backups: those the configuration file lists, in its repository.
//! Without a configuration file (a backup server keeps none for its
//! clients' backups), or when `-d` names another repository than the
//! configured one, every backup name the repository holds: its branches and
//! the names its run records mention (a first run that failed left no
//! branch). With `--repos DIR`, every name of every repository under DIR,
//! rows named `<repository>/<name>`; no configuration is read.

use super::save::{human_bytes, json_string};
use super::{configured_location, load_config, location, open_location, Error, Status};
use crate::cli::{Cli, StatusArgs};
use crate::config::{ConfigError, DEFAULT_MAX_AGE_SECS};
use crate::repo::under::{self, Found};
use crate::repo::{Repo, Repository};
use crate::run::health::{judge, Health, State, Tip};
use crate::run::record::{self, Record};
use crate::view::snapshots::{self, read_commit};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

struct Row {
    /// What the row is called: the backup name, or `<repository>/<name>`
    /// under `--repos`, or the repository alone for a row about all of it.
    name: String,
    /// The repository's name under `--repos`.
    repository: Option<String>,
    /// The backup name; `None` for a row about a whole repository.
    backup: Option<String>,
    tip: Option<Tip>,
    last: Option<Record>,
    max_age_secs: u64,
    health: Health,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> Status {
    let now = crate::time::now();
    let (state, text) = match gather(cli, args, now) {
        Ok(rows) => {
            let state = rows
                .iter()
                .map(|r| r.health.state)
                .max()
                .unwrap_or(State::Ok);
            let text = if args.json {
                json(state, None, &rows, now)
            } else {
                text(state, &rows, now)
            };
            (state, text)
        }
        Err(e) => {
            let message = e.to_string();
            let text = if args.json {
                json(State::Unknown, Some(&message), &[], now)
            } else {
                format!("UNKNOWN: {message}\n")
            };
            (State::Unknown, text)
        }
    };
    let mut out = std::io::stdout().lock();
    // Nothing better to do if stdout is gone; the exit code still tells.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Status::Exit(state.code())
}

fn gather(cli: &Cli, args: &StatusArgs, now: i64) -> Result<Vec<Row>, Error> {
    let override_age = args
        .max_age
        .as_deref()
        .map(|a| {
            crate::config::parse_duration(a)
                .map_err(|m| super::UsageError(format!("--max-age: {m}")))
        })
        .transpose()?;
    let default_age = override_age.unwrap_or(DEFAULT_MAX_AGE_SECS);
    if let Some(dir) = &args.repos {
        return repos_rows(dir, default_age, now);
    }
    let config = match load_config(cli) {
        Ok(config) => config,
        // Only the default file may be missing: one named with --config or
        // REWIND_CONFIG that is not there is a mistake to report.
        Err(ConfigError::Missing { .. }) if cli.config.is_none() => {
            let repo = open_location(cli, &location(cli)?)?;
            return repository_rows(&*repo, None, default_age, now);
        }
        Err(e) => return Err(e.into()),
    };
    let repo = open_location(cli, &configured_location(cli, &config)?)?;
    if names_another_repository(cli, &config)? {
        return repository_rows(&*repo, None, default_age, now);
    }
    let records = record::load_from(&*repo)?;
    let mut rows = Vec::new();
    for b in &config.backups {
        let tip = tip_of(&*repo, &b.name)?;
        let last = records.backup.get(&b.name).cloned();
        let max_age_secs = override_age.unwrap_or(b.max_age_secs);
        let health = judge(tip.as_ref(), last.as_ref(), max_age_secs, now);
        rows.push(Row {
            name: b.name.clone(),
            repository: None,
            backup: Some(b.name.clone()),
            tip,
            last,
            max_age_secs,
            health,
        });
    }
    Ok(rows)
}

/// Whether `-d` names a repository other than the configured one: the
/// configured backups say nothing about it, so its own names are reported.
fn names_another_repository(cli: &Cli, config: &crate::config::Config) -> Result<bool, Error> {
    use crate::remote::Location;
    if cli.repo.is_none() && cli.remote.is_none() {
        return Ok(false);
    }
    let Some(configured) = &config.repository else {
        return Ok(false);
    };
    let same = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    Ok(match (location(cli)?, configured) {
        (Location::Local(a), Location::Local(b)) => same(&a) != same(b),
        (a, b) => a != *b,
    })
}

fn tip_of(repo: &dyn Repo, name: &str) -> Result<Option<Tip>, Error> {
    Ok(match repo.read_ref(&format!("refs/heads/{name}"))? {
        Some(id) => Some(Tip {
            commit: id.to_string(),
            time: read_commit(repo, &id)?.author.time,
        }),
        None => None,
    })
}

/// Every backup name of `repo`: its branches and the names its run records
/// mention. `prefix` is the repository's name under `--repos`. A repository
/// without any name is one WARNING row: an instance that never saved.
fn repository_rows(
    repo: &dyn Repo,
    prefix: Option<&str>,
    max_age_secs: u64,
    now: i64,
) -> Result<Vec<Row>, Error> {
    let records = record::load_from(repo)?;
    let names: BTreeSet<String> = snapshots::backups(repo)?
        .into_iter()
        .map(|(name, _)| name)
        .chain(records.backup.keys().cloned())
        .collect();
    let shown = |name: &str| match prefix {
        Some(p) => format!("{p}/{name}"),
        None => name.to_string(),
    };
    if names.is_empty() {
        let name = prefix.map_or_else(|| repo.location(), str::to_string);
        return Ok(vec![Row {
            name,
            repository: prefix.map(str::to_string),
            backup: None,
            tip: None,
            last: None,
            max_age_secs,
            health: Health {
                state: State::Warning,
                reason: "no snapshot yet: the repository has never been saved to".into(),
            },
        }]);
    }
    let mut rows = Vec::new();
    for name in names {
        let tip = tip_of(repo, &name)?;
        let last = records.backup.get(&name).cloned();
        let health = judge(tip.as_ref(), last.as_ref(), max_age_secs, now);
        rows.push(Row {
            name: shown(&name),
            repository: prefix.map(str::to_string),
            backup: Some(name),
            tip,
            last,
            max_age_secs,
            health,
        });
    }
    Ok(rows)
}

/// `--repos DIR`: the rows of every repository under `dir`. A repository
/// that cannot be read is one UNKNOWN row and the others are still
/// reported; a directory holding no repository at all is an error (a
/// mistyped DIR must not look healthy).
fn repos_rows(dir: &Path, max_age_secs: u64, now: i64) -> Result<Vec<Row>, Error> {
    let found = under::list(dir)?;
    if found.is_empty() {
        return Err(Box::new(super::UsageError(format!(
            "no repositories under {}: each backup is a repository in a directory of its own there",
            dir.display()
        ))));
    }
    let mut rows = Vec::new();
    for c in found {
        let name = c.name.to_string_lossy().into_owned();
        let result = match c.found {
            Found::Unreadable(why) => Err(format!("cannot read {}: {why}", c.path.display())),
            Found::Repository => Repository::open(&c.path)
                .map_err(Error::from)
                .and_then(|repo| repository_rows(&repo, Some(&name), max_age_secs, now))
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(mut more) => rows.append(&mut more),
            Err(reason) => rows.push(Row {
                name: name.clone(),
                repository: Some(name),
                backup: None,
                tip: None,
                last: None,
                max_age_secs,
                health: Health {
                    state: State::Unknown,
                    reason,
                },
            }),
        }
    }
    Ok(rows)
}

/// The figures of the record that made the newest snapshot, if a run did.
fn saved_figures(row: &Row) -> Option<&record::Saved> {
    let tip = row.tip.as_ref()?;
    row.last
        .as_ref()?
        .saved
        .as_ref()
        .filter(|s| s.commit == tip.commit)
}

fn text(state: State, rows: &[Row], now: i64) -> String {
    let problems: Vec<String> = rows
        .iter()
        .filter(|r| r.health.state != State::Ok)
        .map(|r| format!("{}: {}", r.name, first_words(&r.health.reason)))
        .collect();
    let mut out = if problems.is_empty() {
        match rows.len() {
            1 => "OK: 1 backup fresh".to_string(),
            n => format!("OK: {n} backups fresh"),
        }
    } else {
        format!("{}: {}", state.as_str(), problems.join("; "))
    };
    // Performance data, for graphs: each snapshot's age in seconds, with
    // its max-age as the critical threshold ('label'=value;warn;crit).
    let perf: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let t = r.tip.as_ref()?;
            // A label holding '=' must be quoted (names have no quotes).
            let label = format!("{}_age", r.name);
            let label = if label.contains('=') {
                format!("'{label}'")
            } else {
                label
            };
            Some(format!(
                "{label}={}s;;{}",
                now.saturating_sub(t.time).max(0),
                r.max_age_secs
            ))
        })
        .collect();
    if !perf.is_empty() {
        out.push_str(" | ");
        out.push_str(&perf.join(" "));
    }
    out.push('\n');
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in rows {
        let snapshot = match &r.tip {
            Some(t) => format!(
                "{}  age {}",
                crate::time::snapshot_name(t.time),
                crate::config::format_duration(now.saturating_sub(t.time).max(0) as u64)
            ),
            None => "no snapshot".into(),
        };
        let size = match saved_figures(r) {
            Some(s) => format!(
                "  {}, {} read, {} added",
                crate::progress::count(s.files, "file", "files"),
                human_bytes(s.bytes_read),
                human_bytes(s.bytes_added)
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<width$}  {:<8}  {snapshot}{size}  ({})\n",
            r.name,
            r.health.state.as_str(),
            r.health.reason
        ));
    }
    out
}

fn json(state: State, error: Option<&str>, rows: &[Row], now: i64) -> String {
    let opt_num = |v: Option<i64>| v.map_or("null".to_string(), |n| n.to_string());
    let backups: Vec<String> =
        rows.iter()
            .map(|r| {
                let saved = saved_figures(r);
                let last = match &r.last {
                    Some(l) => format!(
                        "{{\"time\":{},\"result\":{},\"error\":{},\"warnings\":{}}}",
                        l.time,
                        json_string(l.result.as_str()),
                        l.error.as_deref().map_or("null".into(), json_string),
                        l.warnings
                    ),
                    None => "null".into(),
                };
                let opt_str =
                    |v: Option<&String>| v.map_or("null".to_string(), |s| json_string(s));
                format!(
                    concat!(
                        "{{\"name\":{},\"repository\":{},\"backup\":{},\"state\":{},\"reason\":{},\"snapshot\":{},\"commit\":{},",
                        "\"time\":{},\"age_seconds\":{},\"max_age_seconds\":{},",
                        "\"files\":{},\"bytes_read\":{},\"bytes_added\":{},\"last_run\":{}}}"
                    ),
                    json_string(&r.name),
                    opt_str(r.repository.as_ref()),
                    opt_str(r.backup.as_ref()),
                    json_string(r.health.state.as_str()),
                    json_string(&r.health.reason),
                    r.tip.as_ref().map_or("null".into(), |t| json_string(
                        &crate::time::snapshot_name(t.time)
                    )),
                    r.tip
                        .as_ref()
                        .map_or("null".into(), |t| json_string(&t.commit)),
                    opt_num(r.tip.as_ref().map(|t| t.time)),
                    opt_num(r.tip.as_ref().map(|t| now.saturating_sub(t.time).max(0))),
                    r.max_age_secs,
                    opt_num(saved.map(|s| s.files as i64)),
                    opt_num(saved.map(|s| s.bytes_read as i64)),
                    opt_num(saved.map(|s| s.bytes_added as i64)),
                    last,
                )
            })
            .collect();
    format!(
        "{{\"state\":{},\"error\":{},\"backups\":[{}]}}\n",
        json_string(state.as_str()),
        error.map_or("null".into(), json_string),
        backups.join(",")
    )
}

/// A reason cut for the first line, which monitoring shows in one line of
/// a table; the backup's own line and --json have it whole.
fn first_words(reason: &str) -> String {
    const MAX: usize = 300;
    if reason.chars().count() <= MAX {
        return reason.to_string();
    }
    let cut: String = reason.chars().take(MAX).collect();
    format!("{cut}...")
}
