//! `rewind prune`: plan every name first (nothing changes if one fails),
//! print the plan, then rewrite each branch and point the run records at
//! the rewritten commits. Also the printing `rewind run` uses when a
//! retention is configured.

use super::{Error, Status, UsageError};
use crate::cli::{Cli, PruneArgs};
use crate::prune::{self, Outcome, Plan};
use crate::repo::Repo;
use crate::retention::{Rules, Span};
use std::io::Write;

/// The rules given on the command line (refused when empty).
fn rules(args: &PruneArgs) -> Result<Rules, Error> {
    let within = match &args.keep_within {
        Some(text) => Some(Span::parse(text)?),
        None => None,
    };
    let rules = Rules {
        last: args.keep_last.unwrap_or(0),
        hourly: args.keep_hourly.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
        monthly: args.keep_monthly.unwrap_or(0),
        yearly: args.keep_yearly.unwrap_or(0),
        within,
    };
    if rules.is_empty() {
        return Err(crate::retention::RetentionError::NoRules.into());
    }
    Ok(rules)
}

pub fn run(cli: &Cli, repo: &dyn Repo, args: &PruneArgs) -> Result<Status, Error> {
    let rules = rules(args)?;
    let names = if args.names.is_empty() {
        crate::view::snapshots::backups(repo)?
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    } else {
        for name in &args.names {
            crate::save::validate_name(name)
                .map_err(|e| UsageError(format!("{e}: see `rewind ls` for the names")))?;
        }
        args.names.clone()
    };
    let plans = names
        .iter()
        .map(|name| prune::plan(repo, name, &rules))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = std::io::stdout().lock();
    if !cli.quiet || args.dry_run {
        for plan in &plans {
            print_plan(&mut out, plan)?;
        }
        out.flush()?;
    }
    if args.dry_run {
        if !cli.quiet {
            eprintln!("{}", summary(&plans, true));
        }
        return Ok(Status::Success);
    }
    let outcomes = apply(repo, &plans)?;
    let landed: usize = outcomes.iter().map(|o| o.landed_meanwhile).sum();
    if landed > 0 && !cli.quiet {
        eprintln!("{landed} snapshots saved during the prune were kept");
    }
    if !cli.quiet {
        eprintln!("{}", summary(&plans, false));
    }
    Ok(Status::Success)
}

/// Carries out `plans` in order, then points the run records at the
/// rewritten commits (a failure there is only a warning: the snapshots
/// are pruned; `rewind status` may then miss a warning of the last run).
pub(crate) fn apply(repo: &dyn Repo, plans: &[Plan]) -> Result<Vec<Outcome>, Error> {
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        outcomes.push(prune::execute(repo, plan)?);
    }
    if outcomes.iter().any(|o| !o.rewritten.is_empty()) {
        let updated = crate::run::record::load_from(repo).and_then(|mut records| {
            let mut changed = false;
            for (plan, outcome) in plans.iter().zip(&outcomes) {
                changed |= prune::update_records(&mut records, &plan.backup, &outcome.rewritten);
            }
            if changed {
                crate::run::record::store(repo, &records)?;
            }
            Ok(())
        });
        if let Err(e) = updated {
            tracing::warn!("{e}; `rewind status` may not know which run made the newest snapshots");
        }
    }
    Ok(outcomes)
}

/// The plan of one name: a heading, then `+ keep` / `- remove` per
/// snapshot, oldest first, with the reasons that keep it.
pub(crate) fn print_plan(out: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} snapshots, keep {}, remove {}",
        plan.backup,
        plan.snapshots.len(),
        plan.kept(),
        plan.removed()
    )?;
    for s in &plan.snapshots {
        if s.decision.keep() {
            writeln!(out, "  + keep    {}  {}", s.name, s.decision.explain())?;
        } else {
            writeln!(out, "  - remove  {}", s.name)?;
        }
    }
    Ok(())
}

/// One line: how many snapshots of each name are (or would be) removed.
pub(crate) fn summary(plans: &[Plan], dry_run: bool) -> String {
    let removed: usize = plans.iter().map(Plan::removed).sum();
    let total: usize = plans.iter().map(|p| p.snapshots.len()).sum();
    let per_name: Vec<String> = plans
        .iter()
        .map(|p| format!("{} {} of {}", p.backup, p.removed(), p.snapshots.len()))
        .collect();
    format!(
        "prune: {} {removed} of {total} snapshots ({}){}",
        if dry_run { "would remove" } else { "removed" },
        if per_name.is_empty() {
            "no backup names".to_string()
        } else {
            per_name.join(", ")
        },
        if dry_run { "; nothing was changed" } else { "" }
    )
}
