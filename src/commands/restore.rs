use super::{resolve_following, Error, Status, UsageError};
use crate::cli::RestoreArgs;
use crate::repo::Repo;
use crate::restore::plan::{Action, Planned, Planner};
use crate::restore::{RestoreError, RestoreOptions, Restorer};
use crate::view::namespace::Direct;
use crate::view::{Item, Node, NodeType};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub fn run(repo: &dyn Repo, args: &RestoreArgs) -> Result<Status, Error> {
    // Check every path before writing anything.
    let mut nodes = Vec::new();
    // One view for every path: the refs are read once.
    let src = Direct::new(repo);
    for path in &args.paths {
        let path = path.as_bytes();
        match resolve_following(&src, path)? {
            (Item::Node(node), time) => nodes.push((path, node, time)),
            _ => {
                return Err(Box::new(UsageError(format!(
                    "{}: not inside a snapshot; name one, e.g. NAME/latest/ or NAME/latest/etc",
                    String::from_utf8_lossy(path)
                ))))
            }
        }
    }
    if args.dry_run {
        return dry_run(repo, args, &nodes);
    }
    let target_is_new = !args.outdir.exists();
    std::fs::create_dir_all(&args.outdir).map_err(|e| {
        UsageError(format!(
            "cannot create --outdir {}: {e}",
            args.outdir.display()
        ))
    })?;
    let mut restorer = Restorer::new(
        repo,
        &RestoreOptions {
            numeric_ids: args.numeric_ids,
            threads: args
                .threads
                .map_or_else(|| default_threads(repo), usize::from),
            no_clobber: args.no_clobber,
            target_is_new,
        },
        &args.outdir,
    )?;
    for (path, node, time) in nodes {
        if names_contents(path) && node.node_type == NodeType::Directory {
            restorer.restore_contents(&node, time)?;
        } else {
            restorer.restore(&node, time)?;
        }
    }
    Ok(Status::from_warnings(&restorer.warnings))
}

/// Each entry the restore would write, one line on standard output: the
/// target path and what would happen to it. Exits as the restore would
/// for what can be known without writing: 1 if `--no-clobber` would keep
/// something.
fn dry_run(
    repo: &dyn Repo,
    args: &RestoreArgs,
    nodes: &[(&[u8], Box<Node>, i64)],
) -> Result<Status, Error> {
    let planner = Planner::new(repo, &args.outdir, args.no_clobber);
    let mut out = std::io::stdout().lock();
    let mut kept = 0u64;
    let mut print = |p: Planned| -> Result<(), RestoreError> {
        let what = match p.action {
            Action::Create => "would create",
            Action::Replace => "would replace",
            Action::Keep => {
                kept += 1;
                "would keep (exists, --no-clobber)"
            }
        };
        let slash = if p.is_dir { "/" } else { "" };
        writeln!(out, "{what} {}{slash}", p.path.display()).map_err(|source| RestoreError::Write {
            path: PathBuf::from("standard output"),
            source,
        })
    };
    for (path, node, _) in nodes {
        if names_contents(path) && node.node_type == NodeType::Directory {
            planner.contents(node, &mut print)?;
        } else {
            planner.entry(node, &mut print)?;
        }
    }
    out.flush()?;
    Ok(if kept > 0 {
        Status::Partial
    } else {
        Status::Success
    })
}

/// Whether a path asks for a directory's contents rather than the
/// directory: `etc/` and `etc/.`, as bup restore and rsync read them.
fn names_contents(path: &[u8]) -> bool {
    path.ends_with(b"/") || path.ends_with(b"/.")
}

/// One per core: reading, inflating and hashing are CPU work, and the
/// files' writes overlap with them. One more when objects come from a
/// server: a worker waiting for its next object leaves a core idle (over
/// a loopback sshd on 2 cores, 8 alternating restores each: 2.39 s with
/// 2, 2.33 s with 3, medians). More than 8 only adds memory.
fn default_threads(repo: &dyn Repo) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores + usize::from(repo.reads_wait_on_peer())).min(8)
}
