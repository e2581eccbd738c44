use super::{resolve_following, Error, Status, UsageError};
use crate::cli::RestoreArgs;
use crate::repo::Repo;
use crate::restore::{RestoreOptions, Restorer};
use crate::view::{Item, NodeType};
use std::os::unix::ffi::OsStrExt;

pub fn run(repo: &dyn Repo, args: &RestoreArgs) -> Result<Status, Error> {
    // Check every path before writing anything.
    let mut nodes = Vec::new();
    for path in &args.paths {
        let path = path.as_bytes();
        match resolve_following(repo, path)? {
            Item::Node(node) => nodes.push((path, node)),
            _ => {
                return Err(Box::new(UsageError(format!(
                    "{}: not inside a snapshot; name one, e.g. NAME/latest/ or NAME/latest/etc",
                    String::from_utf8_lossy(path)
                ))))
            }
        }
    }
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
            threads: args.threads.map_or_else(default_threads, usize::from),
        },
        &args.outdir,
    )?;
    for (path, node) in nodes {
        if path.ends_with(b"/") && node.node_type == NodeType::Directory {
            restorer.restore_contents(&node)?;
        } else {
            restorer.restore(&node)?;
        }
    }
    Ok(Status::from_warnings(&restorer.warnings))
}

/// One per core: reading, inflating and hashing are CPU work, and the
/// files' writes overlap with them. More than 8 only adds memory.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}
