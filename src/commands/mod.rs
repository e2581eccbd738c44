//! One function per subcommand: turn parsed arguments into calls on the
//! library and print results. Errors bubble up to `main`, which prints them
//! and picks the exit status.

mod config;
mod fsck;
mod gc;
mod ls;
mod mirror;
mod mount;
mod prune;
mod restore;
mod run;
mod save;
mod schedule;
mod status;

use crate::cli::{Cli, Command};
use crate::remote::{Location, Remote, SshOptions};
use crate::repo::{Repo, Repository};
use crate::view::{self, Item, ViewError};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub use run::REPORT_TARGET;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How a command that did not fail went.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// Done, but some entries could not be handled (already reported).
    Partial,
    /// Finished with this exit status, whose meaning the command defines
    /// and has already reported (`run`: 2 when a backup failed; `status`:
    /// the Nagios plugin codes).
    Exit(u8),
}

impl Status {
    fn from_warnings(warnings: &[String]) -> Status {
        if warnings.is_empty() {
            Status::Success
        } else {
            Status::Partial
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The repository path, made absolute: a mount daemon changes its working
/// directory to `/` after detaching, and must still find the repository.
pub fn repo_path(cli: &Cli) -> Result<PathBuf, Error> {
    let path = match (&cli.repo, std::env::var_os("HOME")) {
        (Some(p), _) => p.clone(),
        (None, Some(home)) => PathBuf::from(home).join(".rewind"),
        (None, None) => {
            return Err(Box::new(UsageError(
                "no repository given: use -d PATH or set REWIND_REPO (HOME is not set)".into(),
            )))
        }
    };
    if path.as_os_str().is_empty() {
        return Err(Box::new(UsageError(
            "empty repository path: use -d PATH or set REWIND_REPO".into(),
        )));
    }
    Ok(crate::source::paths::absolute(
        &path,
        &std::env::current_dir()?,
    ))
}

/// Where the repository of a command is: `-r LOCATION`, else `-d` (or
/// `REWIND_REPO`), else `~/.rewind`.
fn location(cli: &Cli) -> Result<Location, Error> {
    match &cli.remote {
        Some(text) => absolute_location(Location::parse(text)?),
        None => Ok(Location::Local(repo_path(cli)?)),
    }
}

fn absolute_location(location: Location) -> Result<Location, Error> {
    Ok(match location {
        Location::Local(p) => Location::Local(crate::source::paths::absolute(
            &p,
            &std::env::current_dir()?,
        )),
        remote => remote,
    })
}

fn open(cli: &Cli) -> Result<Box<dyn Repo>, Error> {
    open_location(cli, &location(cli)?)
}

fn ssh_options(cli: &Cli) -> SshOptions {
    SshOptions {
        ssh: cli.ssh.clone(),
        remote_rewind: cli.remote_rewind.clone(),
    }
}

/// Opens the repository at `location`, over SSH if it is a server's.
fn open_location(cli: &Cli, location: &Location) -> Result<Box<dyn Repo>, Error> {
    Ok(match location {
        Location::Local(path) => Box::new(open_at(path)?),
        Location::Ssh(target) => Box::new(Remote::start(target, &ssh_options(cli), false)?),
    })
}

/// The configuration named by `--config` / `REWIND_CONFIG` / the default.
fn load_config(cli: &Cli) -> Result<crate::config::Config, crate::config::ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    crate::config::load(&crate::config::resolve_path(cli.config.as_deref(), &cwd))
}

/// The repository of configured commands: `-r`, then `-d`/`REWIND_REPO`,
/// then the configuration's `repository`, then the default of [`repo_path`].
fn configured_location(cli: &Cli, config: &crate::config::Config) -> Result<Location, Error> {
    match (&cli.remote, &cli.repo, &config.repository) {
        (None, None, Some(location)) => Ok(location.clone()),
        _ => location(cli),
    }
}

/// `--repos DIR` names many repositories and `-d` one: both at once is a
/// usage error. clap folds `REWIND_REPO` into `-d`; a user's everyday
/// repository in the environment must not forbid `--repos`, so a `-d` equal
/// to `REWIND_REPO` is taken as coming from it (and ignored).
fn check_repos_alone(cli: &Cli, repos: Option<&std::path::Path>) -> Result<(), UsageError> {
    let Some(dir) = repos else {
        return Ok(());
    };
    if let Some(remote) = &cli.remote {
        return Err(UsageError(format!(
            "--repos {} reads the repositories under a directory of this machine; -r {remote} names a server's: give one of them",
            dir.display()
        )));
    }
    let Some(repo) = &cli.repo else {
        return Ok(());
    };
    if std::env::var_os("REWIND_REPO").is_some_and(|env| env == repo.as_os_str()) {
        return Ok(());
    }
    Err(UsageError(format!(
        "--repos {} and -d {} name repositories twice: give one of them",
        dir.display(),
        repo.display()
    )))
}

fn open_at(path: &std::path::Path) -> Result<Repository, Error> {
    let path = path.to_path_buf();
    match Repository::open(&path) {
        Ok(repo) => Ok(repo),
        Err(crate::repo::Error::NotARepository { .. }) if !path.exists() => Err(Box::new(UsageError(format!(
            "no repository at {}: create one with `rewind -d {} init`, or name another with -d or REWIND_REPO",
            path.display(),
            path.display()
        )))),
        Err(e) => Err(e.into()),
    }
}

pub fn run(cli: &Cli) -> Result<Status, Error> {
    match &cli.command {
        Command::Init => {
            let location = location(cli)?;
            let shown = match &location {
                Location::Local(path) => {
                    Repository::init(path)?;
                    path.display().to_string()
                }
                Location::Ssh(target) => {
                    let remote = Remote::connect(target, &ssh_options(cli), true)?;
                    // The cache learns that the repository has no packs
                    // (dropping copies of a repository that was there
                    // before): the first save then walks while ssh connects.
                    // Only a cache: the repository is made either way.
                    if let Err(e) = remote.current_indexes() {
                        tracing::debug!("{e}; the first save will ask the server first");
                    }
                    target.to_string()
                }
            };
            if !cli.quiet {
                eprintln!("initialized empty repository in {shown}");
            }
            Ok(Status::Success)
        }
        Command::Save(args) => save::run(cli, &*open(cli)?, args),
        Command::Ls(args) => ls::run(&*open(cli)?, args),
        Command::CatFile(args) => ls::cat_file(&*open(cli)?, args.path.as_bytes()),
        Command::Restore(args) => restore::run(&*open(cli)?, args),
        Command::Mount(args) => {
            check_repos_alone(cli, args.repos.as_deref())?;
            mount::run(cli, args)
        }
        Command::Umount(args) => mount::umount(args),
        Command::Gc(args) => gc::run(cli, &*open(cli)?, args),
        Command::Prune(args) => prune::run(cli, &*open(cli)?, args),
        Command::Config(command) => config::run(cli, command),
        Command::Run(args) => run::run(cli, args),
        Command::Status(args) => {
            check_repos_alone(cli, args.repos.as_deref())?;
            Ok(status::run(cli, args))
        }
        Command::Schedule(command) => schedule::run(cli, command),
        Command::Server(args) => server(args),
        Command::Fsck(args) => fsck::run(cli, args),
        Command::Mirror(command) => mirror::run(cli, command),
    }
}

/// `rewind server`: the protocol on stdin/stdout; log lines on stderr
/// reach the client's terminal through ssh.
fn server(args: &crate::cli::ServerArgs) -> Result<Status, Error> {
    let opts = crate::remote::server::ServerOptions {
        restrict_to: args.restrict_to.clone(),
        append_only: args.append_only,
    };
    // Our own descriptors of the pipes from sshd, without std's buffering
    // (serve buffers 1 MiB each way; a line-buffered stdout would also
    // write at every newline byte of a pack), and wider pipes: fewer
    // wake-ups of sshd and of this process.
    use std::os::fd::AsFd;
    let input = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let output = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    crate::pipe::widen(input.as_fd());
    crate::pipe::widen(output.as_fd());
    crate::remote::server::serve(&opts, input, output)?;
    Ok(Status::Success)
}

/// Resolves a view path, following `latest` even as the last component, as
/// `ls` and `cp` follow a symlink named on the command line. With it, the
/// time of the snapshot on the way ([`view::namespace::resolve_timed`]).
///
/// `src` is the command's one view of the repository: what it read of the
/// refs to resolve the path serves the listing after it too.
pub(crate) fn resolve_following(
    src: &view::namespace::Direct,
    path: &[u8],
) -> Result<(Item, i64), ViewError> {
    view::namespace::resolve_timed(src, path, true).map_err(|e| e.reached_from(path))
}
