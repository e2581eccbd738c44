//! `rewind config init|check`.

use super::{configured_location, load_config, open_location, Error, Status, UsageError};
use crate::cli::{Cli, ConfigCommand};
use crate::config::{format_duration, TEMPLATE};
use crate::progress::count;
use std::io::Write;

pub fn run(cli: &Cli, command: &ConfigCommand) -> Result<Status, Error> {
    match command {
        ConfigCommand::Init => {
            let mut out = std::io::stdout().lock();
            out.write_all(TEMPLATE.as_bytes())?;
            out.flush()?;
            Ok(Status::Success)
        }
        ConfigCommand::Check => {
            let config = load_config(cli)?;
            crate::config::check_trusted(&config)?;
            let location = configured_location(cli, &config)?;
            // Opening it proves the path is a repository (and a server
            // reachable); a config whose repository does not exist yet is
            // an error worth seeing now.
            let repo = open_location(cli, &location)?;
            // What the file cannot say wrong but a run would fail on.
            let mut problems = missing_files(&config);
            problems.extend(mirror_problem(&config, &location));
            let mut out = std::io::stdout().lock();
            writeln!(out, "repository {}", repo.location())?;
            for b in &config.backups {
                writeln!(
                    out,
                    "backup {}: {}, {}, {}{}, max-age {}",
                    b.name,
                    count(b.paths.len() as u64, "path", "paths"),
                    count(
                        (b.excludes.len() + b.exclude_from.len()) as u64,
                        "exclude",
                        "excludes"
                    ),
                    count(b.dumps.len() as u64, "dump", "dumps"),
                    if b.one_file_system {
                        ", one file system"
                    } else {
                        ""
                    },
                    format_duration(b.max_age_secs)
                )?;
            }
            match &config.mirror {
                None => writeln!(out, "mirror: none (nothing is copied off-site)")?,
                Some(m) => writeln!(
                    out,
                    "mirror {}: {}, pushed by `rewind run` {}, grace {}{}",
                    m.url,
                    match &m.key {
                        Some(key) => format!("encrypted with {}", key.display()),
                        None => "NOT encrypted (plain = true)".into(),
                    },
                    m.day.when(),
                    format_duration(m.grace_secs),
                    match &m.endpoint {
                        Some(e) => format!(", endpoint {e}"),
                        None => String::new(),
                    }
                )?,
            }
            // "ok" only for a file with nothing wrong in it.
            if problems.is_empty() {
                writeln!(out, "configuration {}: ok", config.path.display())?;
            }
            out.flush()?;
            for (line, p) in &problems {
                eprintln!("rewind: {}:{line}: {p}", config.path.display());
            }
            match problems.len() {
                0 => Ok(Status::Success),
                n => Err(Box::new(UsageError(format!(
                    "{} in {} would fail `rewind run`",
                    count(n as u64, "problem", "problems"),
                    config.path.display()
                )))),
            }
        }
    }
}

/// Paths and exclude files that do not exist: the save of their backup
/// would fail. Each with its line in the file.
fn missing_files(config: &crate::config::Config) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    for b in &config.backups {
        for (p, line) in b.paths.iter().zip(&b.path_lines) {
            if std::fs::symlink_metadata(p).is_err() {
                problems.push((
                    line.0,
                    format!("backup {}: path {} does not exist", b.name, p.display()),
                ));
            }
        }
        for (f, line) in b.exclude_from.iter().zip(&b.exclude_from_lines) {
            if std::fs::metadata(f).is_err() {
                problems.push((
                    line.0,
                    format!(
                        "backup {}: exclude-from file {} cannot be read",
                        b.name,
                        f.display()
                    ),
                ));
            }
        }
    }
    problems
}

/// Why the mirror push of a run would fail, as far as this machine can
/// tell without the network: a server's repository (named with -r), a key
/// file that does not load. With the line of the mirror's key (or url).
fn mirror_problem(
    config: &crate::config::Config,
    location: &crate::remote::Location,
) -> Option<(usize, String)> {
    let m = config.mirror.as_ref()?;
    let line = config.mirror_line.0;
    if let crate::remote::Location::Ssh(target) = location {
        return Some((line, format!(
            "mirror: the repository {target} is on a server: the mirror is pushed where the repository is"
        )));
    }
    let key = m.key.as_ref()?;
    crate::mirror::Sealer::from_key_file(key)
        .err()
        .map(|e| (line, e.to_string()))
}
