//! The `rewind` command: parse arguments, set up logging, run, and turn the
//! outcome into an exit status (0 success, 1 partial, 2 error).

use clap::Parser;
use rewind::cli::Cli;
use rewind::commands::{run, Status};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    // --quiet drops the summary and progress, never the warnings: under
    // cron they are what tells an admin that a file was not saved.
    let level = match (cli.quiet, cli.verbose) {
        (true, _) | (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REWIND_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(rewind::progress::StderrWriter)
        .without_time()
        .with_target(false)
        .init();
    match run(&cli) {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Partial) => ExitCode::from(1),
        Err(e) => {
            // A closed pipe (`rewind cat-file ... | head`) is not an error.
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("rewind: error: {e}");
            ExitCode::from(2)
        }
    }
}
