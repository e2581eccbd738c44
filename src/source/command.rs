//! Dump sources: a command whose standard output is saved as one regular
//! file of the snapshot (`mysqldump ... ` saved as `/var/lib/mysql/backup/bugs.sql`),
//! streamed, never through a temp file.

use std::path::PathBuf;

/// One command and the absolute path its output takes in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSource {
    /// Run with `/bin/sh -c`, so pipes and redirections work as in cron.
    pub command: String,
    /// Where the output appears in the snapshot (absolute, as saved paths are).
    pub path: PathBuf,
}
