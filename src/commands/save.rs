use super::{Error, Status, UsageError};
use crate::cli::{Cli, SaveArgs};
use crate::progress::{self, count, Progress, ProgressSnapshot, Renderer};
use crate::repo::Repo;
use crate::save::{save, Identity, SaveError, SaveOptions, SaveOutcome, SaveStats};
use crate::source::command::CommandSource;
use crate::source::filter::Filter;
use crate::source::paths::{absolute, Rerooting};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
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

/// `--from-command` and `--as` pair up in the order given.
fn commands(args: &SaveArgs) -> Result<Vec<CommandSource>, Error> {
    if args.from_command.len() != args.as_path.len() {
        return Err(Box::new(UsageError(format!(
            "--from-command and --as go in pairs (each command with the path of its output), \
             but {} --from-command and {} --as were given",
            args.from_command.len(),
            args.as_path.len()
        ))));
    }
    Ok(args
        .from_command
        .iter()
        .zip(&args.as_path)
        .map(|(command, path)| CommandSource {
            command: command.clone(),
            path: path.clone(),
        })
        .collect())
}

pub fn run(cli: &Cli, repo: &dyn Repo, args: &SaveArgs) -> Result<Status, Error> {
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
        commands: commands(args)?,
        progress: None,
    };
    let progress = Progress::new();
    let options = SaveOptions {
        progress: Some(Arc::clone(&progress)),
        ..options
    };
    // Dropped (and the bar erased) by `?` below if the save fails, before
    // `main` prints the error.
    let renderer = Renderer::start(
        Arc::clone(&progress),
        progress::should_draw(cli.quiet, args.json),
        "saving",
    );
    // From here a Ctrl-C stops the save cleanly instead of killing it with
    // its temporary pack left behind (see `interrupt`).
    crate::interrupt::install();
    let outcome = match save(repo, &options, &Identity::current()) {
        Err(e @ SaveError::Interrupted { signal, .. }) => {
            drop(renderer);
            eprintln!("rewind: {e}");
            return Ok(Status::Exit(crate::interrupt::exit_status(signal)));
        }
        result => result?,
    };
    renderer.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let status = Status::from_warnings(&outcome.warnings);
    if args.json {
        let json = summary_json(&args.name, &outcome, &progress.snapshot(), elapsed, &status);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json}")?;
        out.flush()?;
    } else if !cli.quiet {
        let s = &outcome.stats;
        eprintln!(
            "saved {}/{}: {}, {}{}, {} read, {} new in {}, {:.1}s{}",
            args.name,
            crate::time::snapshot_name(outcome.time),
            entries_summary(s),
            count(s.directories, "directory", "directories"),
            dumps_summary(&outcome.dumps),
            human_bytes(s.bytes_read),
            human_bytes(s.bytes_written),
            count(s.objects_written, "object", "objects"),
            elapsed,
            warnings_summary(outcome.warnings.len()),
        );
    }
    Ok(status)
}

/// "3 files (2 read, 1 unchanged), 1 symlink": the non-directories of a
/// save's summary, symlinks apart (named only when there are some).
pub(crate) fn entries_summary(s: &SaveStats) -> String {
    let mut text = format!(
        "{} ({} read, {} unchanged)",
        count(s.files_but_symlinks(), "file", "files"),
        s.files_read,
        s.files_reused
    );
    if s.symlinks > 0 {
        text.push_str(&format!(", {}", count(s.symlinks, "symlink", "symlinks")));
    }
    text
}

/// ", 2 warnings", or nothing.
pub(crate) fn warnings_summary(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(", {}", count(n as u64, "warning", "warnings")),
    }
}

/// ", 2 dumps (1.2 GiB)", or nothing for a save without dumps.
fn dumps_summary(dumps: &[crate::save::DumpReport]) -> String {
    match dumps.len() {
        0 => String::new(),
        n => format!(
            ", {} ({})",
            count(n as u64, "dump", "dumps"),
            human_bytes(dumps.iter().map(|d| d.bytes).sum())
        ),
    }
}

/// The `--json` result: one object, keys in a fixed order, every key always
/// present (null where the value is not known) so that scripts can rely on
/// the shape.
fn summary_json(
    name: &str,
    outcome: &SaveOutcome,
    progress: &ProgressSnapshot,
    elapsed: f64,
    status: &Status,
) -> String {
    let s = &outcome.stats;
    let split = |n: u64| {
        if progress.classified() {
            n.to_string()
        } else {
            "null".to_string()
        }
    };
    let warnings: Vec<String> = outcome.warnings.iter().map(|w| json_string(w)).collect();
    let dumps: Vec<String> = outcome
        .dumps
        .iter()
        .map(|d| {
            format!(
                "{{\"path\":{},\"command\":{},\"bytes\":{},\"duration_seconds\":{:.3}}}",
                json_string(&d.path.to_string_lossy()),
                json_string(&d.command),
                d.bytes,
                d.seconds
            )
        })
        .collect();
    format!(
        concat!(
            "{{\"name\":{},\"snapshot\":{},\"time\":{},\"commit\":\"{}\",\"tree\":\"{}\",",
            "\"files\":{},\"symlinks\":{},\"directories\":{},",
            "\"files_new\":{},\"files_changed\":{},\"files_unchanged\":{},",
            "\"bytes_read\":{},\"bytes_added\":{},\"objects_added\":{},\"dumps\":[{}],",
            "\"duration_seconds\":{:.3},\"status\":{},\"warnings\":[{}]}}"
        ),
        json_string(name),
        json_string(&crate::time::snapshot_name(outcome.time)),
        outcome.time,
        outcome.commit,
        outcome.tree,
        s.files_but_symlinks(),
        s.symlinks,
        s.directories,
        split(progress.files_new),
        split(progress.files_changed),
        split(progress.files_unchanged),
        s.bytes_read,
        s.bytes_written,
        s.objects_written,
        dumps.join(","),
        elapsed,
        json_string(match status {
            Status::Success => "success",
            Status::Partial | Status::Exit(_) => "partial",
        }),
        warnings.join(","),
    )
}

/// A JSON string literal. Rust strings are valid UTF-8 already (warnings
/// about non-UTF-8 paths were made lossy when formatted), so only quotes,
/// backslashes and control characters need escaping.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) use crate::progress::human_bytes;

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}e\u{7f}é"),
            "\"a\\\"b\\\\c\\nd\\u0001e\\u007fé\""
        );
    }
}
