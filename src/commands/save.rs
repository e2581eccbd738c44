use super::{Error, Status, UsageError};
use crate::cli::{Cli, SaveArgs};
use crate::repo::Repository;
use crate::save::{save, Identity, SaveOptions};
use crate::source::filter::Filter;
use crate::source::paths::{absolute, Rerooting};
use std::path::PathBuf;
use std::time::Instant;

fn rerooting(args: &SaveArgs) -> Result<Rerooting, Error> {
    let cwd = std::env::current_dir()?;
    if args.strip {
        return Ok(Rerooting::Strip);
    }
    if !args.strip_path.is_empty() {
        return Ok(Rerooting::StripPrefixes(
            args.strip_path.iter().map(|p| absolute(p, &cwd)).collect(),
        ));
    }
    if !args.graft.is_empty() {
        let mut points = Vec::new();
        for g in &args.graft {
            let (old, new) = g
                .split_once('=')
                .filter(|(o, n)| !o.is_empty() && !n.is_empty())
                .ok_or_else(|| {
                    UsageError(format!(
                        "--graft {g:?}: expected OLD=NEW, e.g. --graft /srv/www=/www"
                    ))
                })?;
            points.push((
                absolute(&PathBuf::from(old), &cwd),
                absolute(&PathBuf::from(new), &cwd),
            ));
        }
        return Ok(Rerooting::Graft(points));
    }
    Ok(Rerooting::None)
}

pub fn run(cli: &Cli, repo: &Repository, args: &SaveArgs) -> Result<Status, Error> {
    let started = Instant::now();
    let date = args
        .date
        .as_deref()
        .map(crate::time::parse_date)
        .transpose()?;
    let options = SaveOptions {
        name: args.name.clone(),
        sources: args.paths.clone(),
        date,
        rerooting: rerooting(args)?,
        filter: Filter::new(&args.exclude, &args.exclude_from)?,
        one_file_system: args.one_file_system,
    };
    let outcome = save(repo, &options, &Identity::current())?;
    if !cli.quiet {
        let s = &outcome.stats;
        eprintln!(
            "saved {}/{}: {} files, {} directories, {} read, {} new in {} objects, {:.1}s{}",
            args.name,
            crate::time::snapshot_name(outcome.time),
            s.files,
            s.directories,
            human_bytes(s.bytes_read),
            human_bytes(s.bytes_written),
            s.objects_written,
            started.elapsed().as_secs_f64(),
            if outcome.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warnings", outcome.warnings.len())
            }
        );
    }
    Ok(Status::from_warnings(&outcome.warnings))
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
