//! `rewind fsck [--generate] [--repair]`: problems on standard output, one
//! line each, then a one-line summary. Exit status: 0 sound (or every
//! damaged pack repaired), 1 damage or missing objects remain, 2 the check
//! could not run.

use super::save::human_bytes;
use super::{open_at, repo_path, Error, Status, UsageError};
use crate::cli::{Cli, FsckArgs};
use crate::fsck;
use crate::progress::{self, Progress, Renderer};
use std::io::Write;
use std::sync::Arc;

pub fn run(cli: &Cli, args: &FsckArgs) -> Result<Status, Error> {
    if let Some(remote) = &cli.remote {
        return Err(Box::new(UsageError(format!(
            "{remote}: fsck reads the pack files themselves: run it on the machine that holds the repository (`rewind -d PATH fsck`)"
        ))));
    }
    let path = repo_path(cli)?;
    let repo = open_at(&path)?;
    let started = std::time::Instant::now();
    let draw = progress::should_draw(cli.quiet, false);
    let mut check = checked(&repo, draw)?;
    let mut out = std::io::stdout().lock();
    for line in check.problems() {
        writeln!(out, "{line}")?;
    }
    if args.repair && !check.is_sound() {
        let progress = Progress::new();
        let renderer = Renderer::start(Arc::clone(&progress), draw, "repairing");
        let repaired = fsck::repair(&repo, &check, &progress);
        renderer.finish();
        for r in &repaired {
            writeln!(out, "{}", r.message)?;
        }
        if repaired.iter().any(|r| r.ok) {
            // The final word is a fresh check of the whole repository.
            repo.objects().refresh()?;
            check = checked(&repo, draw)?;
            for line in check.problems() {
                writeln!(out, "after repair: {line}")?;
            }
        }
    }
    let mut generated = String::new();
    if args.generate {
        let g = fsck::generate(repo.path(), &check)?;
        for name in &g.skipped {
            writeln!(
                out,
                "no recovery data written for {name}: it is damaged (repair it first)"
            )?;
        }
        generated = format!(
            "; recovery data: {} written, {} up to date{}",
            g.written,
            g.up_to_date,
            if g.removed > 0 {
                format!(", {} stale removed", g.removed)
            } else {
                String::new()
            }
        );
    }
    let damaged = check
        .verified
        .findings
        .iter()
        .filter(|f| f.id.is_none())
        .count()
        + check
            .walked
            .bad
            .values()
            .filter(|b| !matches!(b.bad, fsck::walk::Bad::Missing))
            .count()
        + check.walked.spared.len();
    let missing = check
        .walked
        .bad
        .values()
        .filter(|b| matches!(b.bad, fsck::walk::Bad::Missing))
        .count();
    if !cli.quiet || !check.is_sound() {
        writeln!(
            out,
            "checked {} packs, {} objects, {}, {} snapshots of {} refs in {:.1}s: {}{generated}",
            check.verified.packs,
            check.verified.objects,
            human_bytes(check.verified.bytes),
            check.walked.snapshots,
            check.walked.refs,
            started.elapsed().as_secs_f64(),
            if check.is_sound() {
                "no damage".to_string()
            } else {
                format!("{damaged} damaged, {missing} missing")
            }
        )?;
    }
    out.flush()?;
    Ok(if check.is_sound() {
        Status::Success
    } else {
        Status::Exit(1)
    })
}

fn checked(repo: &crate::repo::Repository, draw: bool) -> Result<fsck::Check, Error> {
    let progress = Progress::new();
    let renderer = Renderer::start(Arc::clone(&progress), draw, "checking");
    let check = fsck::check(repo, &progress)?;
    renderer.finish();
    Ok(check)
}
