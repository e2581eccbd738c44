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
                  see the warnings); 2 error (nothing was changed; for run: a backup failed, the \
                  others were made). status exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
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

    /// Repository on a server, over SSH: [USER@]HOST:PATH or
    /// ssh://[USER@]HOST[:PORT]/PATH (a local path works too)
    #[arg(short = 'r', long = "remote", global = true, value_name = "LOCATION")]
    pub remote: Option<String>,

    /// The ssh command for -r, with its options (default: ssh), split on
    /// spaces as rsync's -e
    #[arg(long = "ssh", global = true, env = "REWIND_SSH", value_name = "CMD")]
    pub ssh: Option<String>,

    /// The rewind program on the server for -r (default: rewind, found in
    /// the server's PATH)
    #[arg(
        long = "remote-rewind",
        global = true,
        env = "REWIND_REMOTE_REWIND",
        value_name = "PATH"
    )]
    pub remote_rewind: Option<String>,

    /// Print only errors and warnings (no summary, no progress)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more about what is done (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Configuration file for run, status and schedule (default:
    /// $REWIND_CONFIG, else /etc/rewind.toml)
    #[arg(long, global = true, env = "REWIND_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Also append log lines, with a time stamp, to FILE
    #[arg(long = "log-file", global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

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
    /// Remove the snapshots that retention rules do not keep
    Prune(PruneArgs),
    /// Write a configuration template, or check a configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make every configured backup, once
    Run(RunArgs),
    /// Report each configured backup's newest snapshot (monitoring)
    Status(StatusArgs),
    /// Run `rewind run` daily from a systemd timer or cron
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Reclaim the space of objects no snapshot uses; consolidate small packs
    Gc(GcArgs),
    /// Serve repositories to `rewind -r` over SSH (started by ssh, e.g. as
    /// the forced command of an authorized_keys line)
    Server(ServerArgs),
    /// Verify every object and that every snapshot is complete; write or
    /// apply recovery data for the packs
    Fsck(FsckArgs),
    /// Copy repositories off-site to an S3 bucket, encrypted; check the
    /// copy; rebuild repositories from it
    #[command(subcommand)]
    Mirror(MirrorCommand),
}

#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Write a new key file for encrypted mirrors (print its public key)
    Keygen(MirrorKeygenArgs),
    /// Send what the mirror lacks: objects first, the manifest (refs) last
    Push(MirrorPushArgs),
    /// Rebuild repositories from their mirror (disaster recovery)
    Pull(MirrorPullArgs),
    /// How each repository and its mirror differ (Nagios exit codes)
    Status(MirrorStatusArgs),
    /// Read back every object of a mirror and check it decrypts and matches
    Verify(MirrorVerifyArgs),
}

#[derive(Args, Debug)]
pub struct MirrorKeygenArgs {
    /// Where to write the key (never over an existing file)
    #[arg(value_name = "KEYFILE")]
    pub path: PathBuf,
}

/// Where a mirror is and how to read it.
#[derive(Args, Debug)]
pub struct MirrorPlace {
    /// s3://BUCKET[/PREFIX], or file:///PATH for a folder
    #[arg(value_name = "URL")]
    pub url: String,

    /// The age key file that encrypts the mirror (from `rewind mirror keygen`)
    #[arg(long, env = "REWIND_MIRROR_KEY", value_name = "KEYFILE")]
    pub key: Option<PathBuf>,

    /// Mirror without encryption (the bucket's owner can read everything)
    #[arg(long, conflicts_with = "key")]
    pub plain: bool,

    /// URL of an S3-compatible server (default: AWS_ENDPOINT_URL, the AWS
    /// profile's endpoint_url, else AWS itself)
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Transfers at once
    #[arg(long, value_name = "N", default_value_t = crate::mirror::push::DEFAULT_JOBS as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Args, Debug)]
pub struct MirrorPushArgs {
    #[command(flatten)]
    pub place: MirrorPlace,

    /// Push every repository under DIR, each to URL/NAME (not with -d)
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,

    /// Keep objects that gc removed locally this long in the bucket (e.g.
    /// 14d), so that an older mirror still restores
    #[arg(long, value_name = "DURATION", default_value = "14d")]
    pub grace: String,
}

#[derive(Args, Debug)]
pub struct MirrorPullArgs {
    #[command(flatten)]
    pub place: MirrorPlace,

    /// Pull every repository mirrored under URL, each into DEST/NAME
    #[arg(long)]
    pub all: bool,

    /// A new or empty folder for the repository (with --all: for the
    /// repositories)
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

#[derive(Args, Debug)]
pub struct MirrorStatusArgs {
    #[command(flatten)]
    pub place: MirrorPlace,

    /// Report every repository under DIR, each against URL/NAME (not with -d)
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,

    /// A mirror behind its repository is WARNING once its last push is
    /// older than AGE (e.g. 8d), CRITICAL at twice that
    #[arg(long = "max-age", value_name = "AGE", default_value = "8d")]
    pub max_age: String,

    /// Print one JSON object on standard output instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MirrorVerifyArgs {
    #[command(flatten)]
    pub place: MirrorPlace,

    /// Verify every repository mirrored under URL
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Also write recovery data for each sound pack that has none (in
    /// rewind/recovery/), and remove that of packs that are gone
    #[arg(long)]
    pub generate: bool,
    /// Repair damaged packs from their recovery data, each verified before
    /// it replaces the damaged one
    #[arg(long)]
    pub repair: bool,
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Serve only repositories at or under PATH (repeatable)
    #[arg(long = "restrict-to", value_name = "PATH")]
    pub restrict_to: Vec<PathBuf>,
    /// Add objects and snapshots only: never delete or rewrite a ref
    #[arg(long = "append-only")]
    pub append_only: bool,
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

    /// Files written at once (default: one per core, one more over SSH, at most 8)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,

    /// Leave existing files as they are (a warning each, exit status 1)
    /// instead of replacing them
    #[arg(short = 'n', long = "no-clobber")]
    pub no_clobber: bool,

    /// List what would be created, replaced or kept; write nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,

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

    /// Show every repository under DIR, one directory each (not with -d)
    #[arg(long, value_name = "DIR")]
    pub repos: Option<PathBuf>,

    /// Empty directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// Directory a `rewind mount` is mounted on
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Keep the N snapshots nearest the newest
    #[arg(long = "keep-last", value_name = "N")]
    pub keep_last: Option<u32>,

    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long = "keep-hourly", value_name = "N")]
    pub keep_hourly: Option<u32>,

    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long = "keep-daily", value_name = "N")]
    pub keep_daily: Option<u32>,

    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long = "keep-weekly", value_name = "N")]
    pub keep_weekly: Option<u32>,

    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long = "keep-monthly", value_name = "N")]
    pub keep_monthly: Option<u32>,

    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long = "keep-yearly", value_name = "N")]
    pub keep_yearly: Option<u32>,

    /// Keep every snapshot less than DURATION older than the newest (units
    /// y, m for months, w, d, h: 30d, 2w, 6m, 1y6m)
    #[arg(long = "keep-within", value_name = "DURATION")]
    pub keep_within: Option<String>,

    /// Print the plan and change nothing
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// Backup names to prune (default: every name in the repository)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a commented template with every option and its default
    Init,
    /// Read the configuration and say what it configures, or what is wrong
    Check,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Print what would be saved and dumped, change nothing, and fail (exit
    /// 2, or 1 for warnings) where the run would
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Rewrite packs, most unused first, until at most PERCENT unused bytes are left
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub threshold: f64,

    /// Print what would be reclaimed; change nothing
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// Give up at once if a save is writing, instead of waiting for it
    #[arg(long = "no-wait")]
    pub no_wait: bool,

    /// Merge the packs under 128 MiB once there are N of them
    #[arg(long = "pack-limit", value_name = "N", default_value_t = crate::gc::DEFAULT_PACK_LIMIT as u32,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub pack_limit: u32,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Report a backup whose newest snapshot is older than AGE (e.g. 26h);
    /// default: max-age from the configuration
    #[arg(long = "max-age", value_name = "AGE")]
    pub max_age: Option<String>,

    /// Print one JSON object on standard output instead of text
    #[arg(long)]
    pub json: bool,

    /// Report every backup name of every repository under DIR (not with
    /// -d; no configuration is read)
    #[arg(long, value_name = "DIR")]
    pub repos: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Install (or update) a daily `rewind run`
    Install(ScheduleInstallArgs),
    /// Remove what install installed
    Remove(ScheduleRootArgs),
    /// Print what is installed
    Show(ScheduleRootArgs),
}

#[derive(Args, Debug)]
pub struct ScheduleInstallArgs {
    /// Time of day to run, local time
    #[arg(long, value_name = "HH:MM", default_value = "22:00")]
    pub at: String,

    #[command(flatten)]
    pub root: ScheduleRootArgs,
}

#[derive(Args, Debug)]
pub struct ScheduleRootArgs {
    /// Write under DIR instead of / (for packaging and tests; systemctl is
    /// not called)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}
