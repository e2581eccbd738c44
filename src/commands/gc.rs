//! `rewind gc`: runs [`crate::gc::gc`] with a bar on a terminal and prints
//! a one-line summary.

use super::save::human_bytes;
use super::{Error, Status, UsageError};
use crate::cli::{Cli, GcArgs};
use crate::gc::{self, GcOptions, GcProgress};
use crate::progress;
use crate::repo::Repo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn run(cli: &Cli, repo: &dyn Repo, args: &GcArgs) -> Result<Status, Error> {
    if !(0.0..=100.0).contains(&args.threshold) {
        return Err(Box::new(UsageError(format!(
            "--threshold {} is not a percentage between 0 and 100",
            args.threshold
        ))));
    }
    let opts = GcOptions {
        threshold: args.threshold / 100.0,
        dry_run: args.dry_run,
        wait: !args.no_wait,
        pack_limit: args.pack_limit as usize,
        ..GcOptions::default()
    };
    let bar = Bar::new(progress::should_draw(cli.quiet, false));
    let started = std::time::Instant::now();
    let outcome = gc::gc(repo, &opts, &bar);
    bar.clear();
    let o = outcome?;
    if !cli.quiet {
        eprintln!("{}", summary(repo, &o, args.dry_run, started.elapsed()));
    }
    Ok(Status::Success)
}

/// The one line that says what a gc did (or would do).
pub(crate) fn summary(
    repo: &dyn Repo,
    o: &gc::GcOutcome,
    dry_run: bool,
    took: std::time::Duration,
) -> String {
    let verb = if dry_run {
        "would reclaim"
    } else {
        "reclaimed"
    };
    format!(
        "gc {}: {verb} {} ({} -> {}), {} packs rewritten, {} deleted, {} written ({} -> {} packs), {} objects kept, {} removed, {:.1}s",
        repo.location(),
        human_bytes(o.bytes_reclaimed()),
        human_bytes(o.bytes_before),
        human_bytes(o.bytes_after),
        o.packs_rewritten,
        o.packs_deleted,
        o.packs_written,
        o.packs_before,
        o.packs_after,
        o.objects_kept,
        o.objects_removed,
        took.as_secs_f64()
    )
}

/// A spinner while marking, a bar while copying; nothing off a terminal.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new(enabled: bool) -> Bar {
        if !enabled {
            return Bar(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        bar.set_style(
            ProgressStyle::with_template("{spinner} gc {elapsed} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Bar(Some(bar))
    }

    fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl GcProgress for Bar {
    fn waiting(&self) {
        match &self.0 {
            Some(bar) => bar.set_message("waiting for running saves to finish"),
            None => tracing::info!("gc: waiting for running saves to finish"),
        }
    }

    fn marked(&self, objects: u64) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!("marking: {objects} objects in use"));
        }
    }

    fn copied(&self, bytes: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!(
                "copying live objects: {} of {}",
                human_bytes(bytes),
                human_bytes(total)
            ));
        }
    }

    fn deleting(&self) {
        if let Some(bar) = &self.0 {
            bar.set_message("deleting old packs");
        }
    }
}
