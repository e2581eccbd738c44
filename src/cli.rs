//! Command-line definitions (clap). No logic: `commands` does the work.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rewind",
    version,
    about = "Daily backups into plain git repositories that bup can read",
    after_help = "Exit status: 0 success; 1 partial success (some files could not be saved or restored: \
                  see the warnings); 2 error (nothing was changed)."
)]
pub struct Cli {
    /// Repository path (default: $REWIND_REPO, else ~/.rewind)
    #[arg(
        short = 'd',
        long = "repo",
        global = true,
        env = "REWIND_REPO",
        value_name = "PATH"
    )]
    pub repo: Option<PathBuf>,

    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more about what is done (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an empty repository
    Init,
    /// Save paths as a new snapshot of a backup name
    Save(SaveArgs),
    /// List backup names, snapshots, or files in a snapshot
    Ls(LsArgs),
    /// Write a saved file's content to standard output
    CatFile(CatFileArgs),
    /// Restore saved files and directories
    Restore(RestoreArgs),
    /// Show every snapshot as a read-only directory tree
    Mount(MountArgs),
    /// Unmount a rewind mount (also a stale one)
    Umount(UmountArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Backup name (one branch per name)
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: String,

    /// Snapshot time: epoch seconds or ISO-8601 (default: now)
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,

    /// Store each path's contents at the root of the snapshot
    #[arg(long, conflicts_with_all = ["strip_path", "graft"])]
    pub strip: bool,

    /// Remove PREFIX from the stored paths
    #[arg(long = "strip-path", value_name = "PREFIX", conflicts_with = "graft")]
    pub strip_path: Vec<PathBuf>,

    /// Store paths under OLD as if they were under NEW
    #[arg(long, value_name = "OLD=NEW")]
    pub graft: Vec<String>,

    /// Skip paths matching GLOB ('*.tmp' matches names, '/var/cache' paths)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Read exclude patterns from FILE, one per line
    #[arg(long = "exclude-from", value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,

    /// Do not cross file-system boundaries
    #[arg(short = 'x', long = "one-file-system")]
    pub one_file_system: bool,

    /// Print one JSON object with the outcome on standard output at the end
    #[arg(long)]
    pub json: bool,

    /// Save the standard output of CMD (run with /bin/sh -c) as the file
    /// given by the matching --as
    #[arg(long = "from-command", value_name = "CMD")]
    pub from_command: Vec<String>,

    /// Absolute path in the snapshot of the matching --from-command's output
    #[arg(long = "as", value_name = "PATH")]
    pub as_path: Vec<PathBuf>,

    /// Files and directories to save
    #[arg(required_unless_present = "from_command", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Long listing: mode, owner/group, size, modification time, name
    #[arg(short = 'l')]
    pub long: bool,

    /// Show numeric ids instead of user and group names
    #[arg(long = "numeric-ids")]
    pub numeric_ids: bool,

    /// NAME, NAME/SNAPSHOT or NAME/SNAPSHOT/PATH (default: the backup names)
    #[arg(value_name = "PATH")]
    pub path: Option<OsString>,
}

#[derive(Args, Debug)]
pub struct CatFileArgs {
    /// NAME/SNAPSHOT/PATH of a file
    #[arg(value_name = "PATH")]
    pub path: OsString,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Directory to restore into (created if missing)
    #[arg(short = 'C', long = "outdir", value_name = "DIR", required = true)]
    pub outdir: PathBuf,

    /// Restore owners by number, not by user and group name
    #[arg(long = "numeric-ids")]
    pub numeric_ids: bool,

    /// NAME/SNAPSHOT/PATH; a trailing '/' restores a directory's contents
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Stay in the foreground (default: detach once mounted)
    #[arg(short = 'f', long)]
    pub foreground: bool,

    /// Let other users browse; the kernel enforces the saved permissions
    #[arg(long = "allow-other")]
    pub allow_other: bool,

    /// Memory for cached trees and file chunks, e.g. 256M or 1G
    #[arg(long = "cache-size", value_name = "SIZE", default_value = "256M")]
    pub cache_size: String,

    /// Threads serving requests
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,

    /// Append log lines (e.g. a damaged object) to FILE; default once
    /// detached: syslog, facility daemon
    #[arg(long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Empty directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}
