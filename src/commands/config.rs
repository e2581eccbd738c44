//! `rewind config init|check`.

use super::{configured_location, load_config, open_location, Error, Status, UsageError};
use crate::cli::{Cli, ConfigCommand};
use crate::config::{format_duration, TEMPLATE};
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
            let mut out = std::io::stdout().lock();
            writeln!(out, "configuration {}: ok", config.path.display())?;
            writeln!(out, "repository {}", repo.location())?;
            for b in &config.backups {
                writeln!(
                    out,
                    "backup {}: {} paths, {} excludes, {} dumps{}, max-age {}",
                    b.name,
                    b.paths.len(),
                    b.excludes.len() + b.exclude_from.len(),
                    b.dumps.len(),
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
            out.flush()?;
            // What the file cannot say wrong but a run would fail on.
            let mut problems = missing_files(&config);
            problems.extend(mirror_problem(&config, &location));
            for p in &problems {
                eprintln!("rewind: {p}");
            }
            match problems.len() {
                0 => Ok(Status::Success),
                n => Err(Box::new(UsageError(format!(
                    "{n} problem(s) in {} would fail `rewind run`",
                    config.path.display()
                )))),
            }
        }
    }
}

/// Paths and exclude files that do not exist: the save of their backup
/// would fail.
fn missing_files(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    for b in &config.backups {
        for p in &b.paths {
            if std::fs::symlink_metadata(p).is_err() {
                problems.push(format!(
                    "backup {}: path {} does not exist",
                    b.name,
                    p.display()
                ));
            }
        }
        for f in &b.exclude_from {
            if std::fs::metadata(f).is_err() {
                problems.push(format!(
                    "backup {}: exclude-from file {} cannot be read",
                    b.name,
                    f.display()
                ));
            }
        }
    }
    problems
}

/// Why the mirror push of a run would fail, as far as this machine can
/// tell without the network: a server's repository (named with -r), a key
/// file that does not load.
fn mirror_problem(
    config: &crate::config::Config,
    location: &crate::remote::Location,
) -> Option<String> {
    let m = config.mirror.as_ref()?;
    if let crate::remote::Location::Ssh(target) = location {
        return Some(format!(
            "mirror: the repository {target} is on a server: the mirror is pushed where the repository is"
        ));
    }
    let key = m.key.as_ref()?;
    crate::mirror::Sealer::from_key_file(key)
        .err()
        .map(|e| e.to_string())
}
