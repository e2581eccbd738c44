//! Keeps the man pages in `man/` true to the command line: every option
//! clap accepts is documented as an item in its page, every command is listed
//! in rewind(1), every page documents exit statuses 0, 1 and 2, cross
//! references point at pages that exist, and every page lints clean with
//! `groff -man -ww` and `mandoc -Tlint` (a missing linter skips its test,
//! except under CI=true, where that fails: common::require).

mod common;

use clap::CommandFactory;
use rewind::cli::Cli;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// Every page of `section` (`*.1`, `*.5`), sorted.
fn pages_of(section: &str) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(man_dir())
        .expect("man/ exists")
        .map(|e| e.expect("readable man/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == section))
        .collect();
    pages.sort();
    pages
}

/// Every command page (section 1), sorted.
fn pages() -> Vec<PathBuf> {
    let pages = pages_of("1");
    assert!(!pages.is_empty(), "no pages in man/");
    pages
}

/// Every page of every section: commands (1) and file formats (5).
fn all_pages() -> Vec<PathBuf> {
    let mut all = pages();
    all.extend(pages_of("5"));
    all
}

fn read_page(file: &str) -> String {
    let path = man_dir().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read man page {}: {e}", path.display()))
}

/// The page that documents a subcommand's own options. A subcommand missing
/// here must have `man/rewind-<name>.1`, so a new command fails this test
/// until its page exists.
fn page_for(subcommand: &str) -> String {
    match subcommand {
        "init" => "rewind.1".into(),
        "cat-file" => "rewind-ls.1".into(),
        other => format!("rewind-{other}.1"),
    }
}

/// Roff source to plain text: `\-` to `-`, font and zero-width escapes
/// removed, unbreakable spaces to spaces.
fn plain(roff: &str) -> String {
    let mut out = roff.replace("\\-", "-").replace("\\~", " ");
    for escape in ["\\fB", "\\fI", "\\fR", "\\fP", "\\&"] {
        out = out.replace(escape, "");
    }
    out
}

/// Words of a line: runs of letters, digits, `-` and `_` (so `--repo`, `-d`,
/// `0` and `REWIND_REPO` are words, and `-d` is not found inside `--date`).
fn words(line: &str) -> BTreeSet<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// The words of the item tags of a page (the line after each `.TP`), where
/// options, commands and exit statuses are documented; `section` limits
/// this to one `.SH` section.
fn tag_words(roff: &str, section: Option<&str>) -> BTreeSet<String> {
    let mut current = String::new();
    let mut after_tp = false;
    let mut found = BTreeSet::new();
    for line in roff.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            current = plain(title).trim_matches('"').to_string();
            after_tp = false;
            continue;
        }
        if after_tp && !line.starts_with(".\\\"") {
            if section.is_none_or(|s| s == current) {
                // Drop the macro name (`.BR`, `.B`, ...) but keep its words.
                let text = match line.strip_prefix('.') {
                    Some(rest) => rest.split_once(' ').map_or("", |(_, args)| args),
                    None => line,
                };
                found.extend(words(&plain(text)));
            }
            after_tp = false;
        }
        if line.trim_end() == ".TP" {
            after_tp = true;
        }
    }
    found
}

fn assert_documented(page: &str, tags: &BTreeSet<String>, word: &str, what: &str) {
    assert!(
        tags.contains(word),
        "man/{page} does not document {what} `{word}` as an item (.TP tag)"
    );
}

/// Long and short spellings of an option, as typed.
fn spellings(arg: &clap::Arg) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(long) = arg.get_long() {
        out.push(format!("--{long}"));
    }
    if let Some(short) = arg.get_short() {
        out.push(format!("-{short}"));
    }
    out
}

/// Checks the options of `sub` (and of its own subcommands, such as
/// `schedule install`) against `page_name`; returns the spellings checked.
fn check_options(
    sub: &clap::Command,
    path: &str,
    page_name: &str,
    tags: &BTreeSet<String>,
) -> usize {
    let mut checked = 0;
    // Global options (and help) are documented once, in rewind(1).
    for arg in sub
        .get_arguments()
        .filter(|a| !a.is_global_set() && a.get_id() != "help")
    {
        for spelling in spellings(arg) {
            let what = format!("option of `rewind {path}`");
            assert_documented(page_name, tags, &spelling, &what);
            checked += 1;
        }
    }
    for nested in sub.get_subcommands().filter(|s| s.get_name() != "help") {
        // A nested command is an item of its page (COMMANDS section).
        assert_documented(
            page_name,
            tags,
            nested.get_name(),
            &format!("command of `rewind {path}`"),
        );
        let nested_path = format!("{path} {}", nested.get_name());
        checked += check_options(nested, &nested_path, page_name, tags);
    }
    checked
}

#[test]
fn every_subcommand_option_is_documented_in_its_page() {
    let mut cli = Cli::command();
    cli.build();
    let mut checked = 0;
    // clap's own `help` subcommand has no options to document.
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let page_name = page_for(sub.get_name());
        let tags = tag_words(&read_page(&page_name), None);
        checked += check_options(sub, sub.get_name(), &page_name, &tags);
    }
    // save alone has more than ten spellings; an empty walk would prove nothing.
    assert!(checked > 10, "only {checked} option spellings checked");
}

#[test]
fn global_options_environment_and_commands_are_in_rewind_1() {
    let mut cli = Cli::command();
    cli.build();
    let tags = tag_words(&read_page("rewind.1"), None);
    let env_tags = tag_words(&read_page("rewind.1"), Some("ENVIRONMENT"));
    for arg in cli.get_arguments() {
        for spelling in spellings(arg) {
            assert_documented("rewind.1", &tags, &spelling, "global option");
        }
        if let Some(var) = arg.get_env() {
            let var = var.to_str().expect("env var names are ASCII");
            assert_documented("rewind.1", &env_tags, var, "environment variable");
        }
    }
    let command_tags = tag_words(&read_page("rewind.1"), Some("COMMANDS"));
    for sub in cli.get_subcommands() {
        assert_documented("rewind.1", &command_tags, sub.get_name(), "command");
    }
    for var in ["REWIND_LOG", "TZ"] {
        assert_documented("rewind.1", &env_tags, var, "environment variable");
    }
}

#[test]
fn every_page_documents_exit_statuses_0_1_and_2() {
    for page in pages() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let roff = std::fs::read_to_string(&page).expect("readable page");
        let tags = tag_words(&roff, Some("EXIT STATUS"));
        for status in ["0", "1", "2"] {
            assert_documented(&name, &tags, status, "exit status");
        }
    }
}

#[test]
fn pages_are_named_and_cross_referenced_consistently() {
    let files: BTreeSet<String> = all_pages()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let overview = plain(&read_page("rewind.1"));
    for file in &files {
        let roff = read_page(file);
        let (stem, section) = file.rsplit_once('.').expect("pages end in .SECTION");
        // .TH carries the page's own name, upper-cased.
        let th = roff
            .lines()
            .find_map(|l| l.strip_prefix(".TH "))
            .unwrap_or_else(|| panic!("man/{file} has no .TH line"));
        let title = plain(th.split_whitespace().next().unwrap_or(""));
        assert_eq!(title, stem.to_uppercase(), "man/{file}: .TH title");
        let th_section = plain(th.split_whitespace().nth(1).unwrap_or(""));
        assert_eq!(th_section, section, "man/{file}: .TH section");
        // Every rewind page reachable from the overview.
        if file != "rewind.1" {
            assert!(
                overview.contains(&format!("{stem} ({section})")),
                "rewind.1 does not refer to {stem}({section})"
            );
        }
        // Every `.BR rewind-x (1)` reference names an existing page.
        for line in plain(&roff).lines() {
            let Some(args) = line.strip_prefix(".BR ") else {
                continue;
            };
            let mut parts = args.split_whitespace();
            if let (Some(target), Some(section)) = (parts.next(), parts.next()) {
                let number = section
                    .trim_start_matches('(')
                    .split(')')
                    .next()
                    .unwrap_or("");
                if target.starts_with("rewind") && section.starts_with('(') {
                    assert!(
                        files.contains(&format!("{target}.{number}")),
                        "man/{file} refers to {target}({number}), which does not exist"
                    );
                }
            }
        }
    }
}

/// Runs a linter over every page (if it is installed: common::require).
fn lint_with(tool: &str, args: &[&str]) {
    if !common::require(tool) {
        return;
    }
    for page in all_pages() {
        let out = Command::new(tool)
            .args(args)
            .arg(&page)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        let messages = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && messages.trim().is_empty(),
            "{tool} {args:?} {}: {}\n{messages}",
            page.display(),
            out.status
        );
    }
}

#[test]
fn every_page_lints_clean_with_groff() {
    lint_with("groff", &["-man", "-ww", "-z"]);
}

#[test]
fn every_page_lints_clean_with_mandoc() {
    lint_with("mandoc", &["-Tlint", "-Wwarning"]);
}

/// Issue 16: `rewind help umount` showed MOUNTPOINT without a word about
/// it. Every argument and option of every command says what it is in
/// `--help`.
#[test]
fn every_argument_has_a_help_line() {
    fn check(cmd: &clap::Command, path: &str) -> usize {
        let mut checked = 0;
        for arg in cmd.get_arguments().filter(|a| a.get_id() != "help") {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                !help.trim().is_empty(),
                "`rewind {path}`: {} has no help text",
                arg.get_id()
            );
            checked += 1;
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            checked += check(sub, format!("{path} {}", sub.get_name()).trim());
        }
        checked
    }
    assert!(check(&Cli::command(), "") > 50);
}

/// Issue 16: `--help` said that -q prints only errors while rewind(1) (and
/// the code: warnings are logged at any level but error-only) say errors
/// and warnings. The help line and the page's item must say the same.
#[test]
fn quiet_means_errors_and_warnings_in_help_and_page() {
    let cli = Cli::command();
    let quiet = cli
        .get_arguments()
        .find(|a| a.get_id() == "quiet")
        .expect("--quiet");
    let help = quiet.get_help().expect("help").to_string();
    assert!(help.starts_with("Print only errors and warnings"), "{help}");
    let page = plain(&read_page("rewind.1"));
    let item = page
        .split_once("-q \", \" --quiet\n")
        .map(|(_, rest)| rest.lines().next().unwrap_or(""))
        .expect("-q item in rewind.1");
    assert_eq!(item, "Print only errors and warnings.");
}
