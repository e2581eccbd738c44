//! The `rewind` command: parse arguments, set up logging, run, and turn the
//! outcome into an exit status (0 success, 1 partial, 2 error).

use clap::Parser;
use rewind::cli::Cli;
use rewind::commands::{run, Status, REPORT_TARGET};
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
    if let Err(e) = init_logging(&cli) {
        eprintln!("rewind: error: {e}");
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Partial) => ExitCode::from(1),
        Ok(Status::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`rewind cat-file ... | head`) is not an error.
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("rewind: error: {e}");
            tracing::error!(target: REPORT_TARGET, "{e}");
            ExitCode::from(2)
        }
    }
}

/// Standard error gets warnings (with -v info, -vv debug; `REWIND_LOG`
/// overrides); `--log-file` gets at least info, each line stamped as a
/// detached mount stamps its log lines. Summary lines (target
/// `REPORT_TARGET`) are printed by the commands themselves, so they go to
/// the file only.
fn init_logging(cli: &Cli) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    // --quiet drops the summary and progress, never the warnings: under
    // cron they are what tells an admin that a file was not saved.
    let level = match (cli.quiet, cli.verbose) {
        (true, _) | (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let report_off = || {
        format!("{REPORT_TARGET}=off")
            .parse()
            .expect("a valid directive")
    };
    let stderr_filter = EnvFilter::try_from_env("REWIND_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level))
        .add_directive(report_off());
    // Colour codes only on a terminal: under cron, in a pipe or in a mount's
    // log file they are noise around the one line an admin has to read.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(rewind::progress::StderrWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .with_filter(stderr_filter);
    // A mount forwards its whole standard error to the file itself once
    // it runs (src/mount/log.rs); a second copy here would double lines.
    let file_layer = match (&cli.log_file, &cli.command) {
        (Some(path), command) if !matches!(command, rewind::cli::Command::Mount(_)) => {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            let file_level = if cli.verbose >= 2 { "debug" } else { "info" };
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false)
                    .with_timer(rewind::mount::log::Stamp)
                    .with_filter(EnvFilter::new(file_level)),
            )
        }
        _ => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .init();
    Ok(())
}
