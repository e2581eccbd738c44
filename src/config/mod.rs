//! The configuration file (`/etc/rewind.toml`, rewind.toml(5)): where the
//! repository is, which backups `rewind run` makes and in what order, and how
//! old a backup may get before `rewind status` complains.
//!
//! This module owns the file's format: the serde shape (`Raw*`, which is
//! also what the template round-trips through), validation into [`Config`]
//! (`validate`), and errors that name the file, line and column
//! (`explain`). It does no I/O beyond reading the file.
//!
//! Keys that this version would silently ignore are refused instead, so
//! that nobody believes, say, snapshots are copied off-site when a
//! misspelt key means they are not. The `[mirror]` section (the off-site
//! copy `rewind run` pushes on its day) is checked as far as it can be
//! without the network: the URL's shape, an absolute key path, a key or an
//! explicit `plain = true`, and a repository on this machine.
//! A `[retention]` section (or a backup's own `[backup.retention]`) is
//! checked here as `rewind prune` checks its options: a section without
//! any rule is an error, never "keep nothing".

mod explain;
mod template;
mod validate;

pub use template::TEMPLATE;

use crate::source::command::CommandSource;
use explain::{at, explain};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where the configuration is looked for when neither `--config` nor
/// `REWIND_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/rewind.toml";

/// Default of `max-age`: a daily backup plus two hours of slack.
pub const DEFAULT_MAX_AGE_SECS: u64 = 26 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration at {}: create one with `rewind config init > {}` and edit it, or name another with --config or REWIND_CONFIG", path.display(), path.display())]
    Missing { path: PathBuf },
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A syntax, unknown-key, wrong-type or invalid-value error at a place
    /// in the file (line and column count from 1).
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The file as written: every key, with serde's checks (unknown keys and
/// wrong types are errors). Spans locate the values that are validated
/// after parsing.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Spanned<RawRetention>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Spanned<RawMirror>>,
    #[serde(default, rename = "backup", skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<Spanned<RawBackup>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBackup {
    pub name: Spanned<String>,
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default)]
    pub exclude_from: Vec<Spanned<String>>,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Spanned<String>>,
    #[serde(default, rename = "dump", skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<Spanned<RawDump>>,
    /// Replaces the top-level `[retention]` for this backup, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Spanned<RawRetention>>,
}

/// `[retention]` and `[backup.retention]`: the options of `rewind prune`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Spanned<String>>,
}

/// `[mirror]`: where `rewind run` pushes the repository, and when.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMirror {
    pub url: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<Spanned<bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDump {
    pub command: Spanned<String>,
    #[serde(rename = "as")]
    pub path: Spanned<String>,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// Where the repository is (an absolute local path or a server's), if
    /// the file names one.
    pub repository: Option<crate::remote::Location>,
    /// In the order of the file: `rewind run` makes them in this order.
    pub backups: Vec<Backup>,
    /// `rewind run` ends with a gc (a local repository only).
    pub gc: bool,
    /// `rewind run` pushes the repository off-site on its day, after the
    /// gc (a local repository only).
    pub mirror: Option<Mirror>,
    /// The line of the mirror's `key` (else of its `url`), for messages
    /// about it; 0 without a mirror.
    pub mirror_line: Line,
}

/// A line of the file (from 1), kept for messages only. It takes no part
/// in equality: two files that say the same are equal configurations
/// wherever their keys sit.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct Line(pub usize);

impl PartialEq for Line {
    fn eq(&self, _: &Line) -> bool {
        true
    }
}

/// A validated `[mirror]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `s3://BUCKET[/PREFIX]` or `file:///PATH`, without a trailing `/`.
    pub url: String,
    /// The age key file; `None` only with `plain = true`.
    pub key: Option<PathBuf>,
    /// An S3-compatible server's URL (else the AWS environment's or
    /// profile's, else AWS itself).
    pub endpoint: Option<String>,
    pub day: MirrorDay,
    /// How long the bucket keeps what gc removed locally.
    pub grace_secs: u64,
}

/// Which days `rewind run` pushes the mirror, in local time. Weekly by
/// default, on Saturdays: what the `s3cmd sync` cron job this replaces did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MirrorDay {
    Daily,
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    #[default]
    Saturday,
    Sunday,
}

impl MirrorDay {
    /// Monday first, as [`crate::time::local_weekday`] counts.
    const WEEK: [MirrorDay; 7] = [
        MirrorDay::Monday,
        MirrorDay::Tuesday,
        MirrorDay::Wednesday,
        MirrorDay::Thursday,
        MirrorDay::Friday,
        MirrorDay::Saturday,
        MirrorDay::Sunday,
    ];

    pub fn parse(text: &str) -> Result<MirrorDay, String> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "daily" {
            return Ok(MirrorDay::Daily);
        }
        Self::WEEK
            .into_iter()
            .find(|d| d.name() == lower)
            .ok_or_else(|| {
                format!("invalid mirror day {text:?}: use a day of the week (monday to sunday) or \"daily\"")
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            MirrorDay::Daily => "daily",
            MirrorDay::Monday => "monday",
            MirrorDay::Tuesday => "tuesday",
            MirrorDay::Wednesday => "wednesday",
            MirrorDay::Thursday => "thursday",
            MirrorDay::Friday => "friday",
            MirrorDay::Saturday => "saturday",
            MirrorDay::Sunday => "sunday",
        }
    }

    /// Whether a run on `weekday` (0 Monday .. 6 Sunday) pushes.
    pub fn is_due(self, weekday: u32) -> bool {
        self == MirrorDay::Daily || Self::WEEK.get(weekday as usize) == Some(&self)
    }

    /// "daily", "on saturdays": when, for messages.
    pub fn when(self) -> String {
        match self {
            MirrorDay::Daily => "daily".into(),
            day => format!("on {}s", day.name()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub name: String,
    /// Absolute paths to save.
    pub paths: Vec<PathBuf>,
    pub excludes: Vec<String>,
    pub exclude_from: Vec<PathBuf>,
    pub one_file_system: bool,
    /// Dump sources: each command's output saved as a file.
    pub dumps: Vec<CommandSource>,
    /// `rewind status` reports the backup stale past this age.
    pub max_age_secs: u64,
    /// What `rewind run` prunes to after its backups (the backup's own
    /// `[backup.retention]`, else the top-level `[retention]`); `None`:
    /// every snapshot is kept.
    pub retention: Option<crate::retention::Rules>,
    /// The line of each of `paths` and of `exclude_from` in the file, for
    /// messages about them (`rewind config check`).
    pub path_lines: Vec<Line>,
    pub exclude_from_lines: Vec<Line>,
}

/// Which file to read: `--config`, else `REWIND_CONFIG` (clap folds both
/// into one value), else [`DEFAULT_PATH`]; made absolute against `cwd` so
/// that a schedule can name it.
pub fn resolve_path(given: Option<&Path>, cwd: &Path) -> PathBuf {
    match given {
        Some(p) => crate::source::paths::absolute(p, cwd),
        None => PathBuf::from(DEFAULT_PATH),
    }
}

/// Dump commands run with the rights of whoever runs `rewind run`, usually
/// root: a file that another user can change is a way to root. Refused
/// when the file is writable by group or others, or owned by someone other
/// than the running user or root.
pub fn check_trusted(config: &Config) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    if config.backups.iter().all(|b| b.dumps.is_empty()) {
        return Ok(());
    }
    let path = &config.path;
    let md = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let me = crate::meta::ids::euid();
    let problem = if md.mode() & 0o022 != 0 {
        Some(format!(
            "it is writable by others (mode {:04o}): chmod go-w {}",
            md.mode() & 0o7777,
            path.display()
        ))
    } else if md.uid() != me && md.uid() != 0 {
        Some(format!(
            "it belongs to uid {}: chown it to root or to uid {me}",
            md.uid()
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(ConfigError::Invalid {
            path: path.clone(),
            message: format!("refusing to run its dump commands: {p}"),
        }),
        None => Ok(()),
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(path, &text)
}

/// Parses and validates configuration text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(
            path,
            text,
            offset,
            explain(text, offset, e.message().trim()),
        )
    })?;
    validate::validate(path, text, raw)
}

/// "26h", "90m", "1d12h", "3600s", "3600": a duration in seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid duration {text:?}: use a number with a unit, s, m, h or d (e.g. 26h, 90m, 1d12h)")
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(secs);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// A duration as `parse_duration` reads it back, largest units first.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_format_back() {
        assert_eq!(parse_duration("26h"), Ok(26 * 3600));
        assert_eq!(parse_duration("1d12h"), Ok(36 * 3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("3600"), Ok(3600));
        for bad in ["", "h", "12x", "1.5h", "12h3", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for secs in [1, 59, 3600, 26 * 3600, 86400 + 61] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
    }

    #[test]
    fn gc_is_off_by_default_and_refused_for_a_servers_repository() {
        let backup = "[[backup]]\nname = \"a\"\npaths = [\"/a\"]\n";
        let off = parse(Path::new("f"), backup).expect("valid");
        assert!(!off.gc);
        let on = parse(Path::new("f"), &format!("gc = true\n{backup}")).expect("valid");
        assert!(on.gc);
        let remote = format!("repository = \"backup@server:/srv/web\"\ngc = true\n{backup}");
        let err = parse(Path::new("f"), &remote).expect_err("gc on a server's repository");
        let text = err.to_string();
        assert!(
            text.starts_with("f:2:") && text.contains("run `rewind gc` there"),
            "{text}"
        );
        let remote_off = format!("repository = \"backup@server:/srv/web\"\ngc = false\n{backup}");
        assert!(!parse(Path::new("f"), &remote_off).expect("valid").gc);
    }

    #[test]
    fn a_backup_retention_replaces_the_global_one_whole() {
        let text = r#"
[retention]
keep-daily = 7
keep-weekly = 4

[[backup]]
name = "etc"
paths = ["/etc"]

[[backup]]
name = "db"
paths = ["/srv/db"]
[backup.retention]
keep-last = 3
keep-within = "1y6m"
"#;
        let config = parse(Path::new("f"), text).expect("valid");
        let etc = config.backups[0].retention.expect("global retention");
        assert_eq!((etc.daily, etc.weekly, etc.last), (7, 4, 0));
        let db = config.backups[1].retention.expect("own retention");
        assert_eq!((db.daily, db.weekly, db.last), (0, 0, 3));
        assert_eq!(db.within.map(|s| s.to_string()), Some("1y6m".into()));
        let none = parse(
            Path::new("f"),
            "[[backup]]\nname = \"a\"\npaths = [\"/a\"]\n",
        )
        .expect("valid");
        assert_eq!(
            none.backups[0].retention, None,
            "no section keeps everything"
        );
    }

    #[test]
    fn template_retention_example_parses_when_uncommented() {
        // Only the top-level example, before the first [[backup]].
        let top = TEMPLATE.find("[[backup]]").expect("a backup");
        let text = TEMPLATE
            .lines()
            .scan(0, |at, l| {
                let start = *at;
                *at += l.len() + 1;
                Some((start, l))
            })
            .map(|(start, l)| {
                if start < top && (l.starts_with("# keep-") || l == "# [retention]") {
                    &l[2..]
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse(Path::new("template"), &text).expect("template with retention");
        let r = config.backups[0].retention.expect("retention");
        assert_eq!((r.daily, r.weekly, r.monthly, r.yearly), (7, 4, 12, 3));
    }

    const BACKUP: &str = "[[backup]]\nname = \"a\"\npaths = [\"/a\"]\n";

    /// The configuration of `mirror` (the body of a `[mirror]` section).
    fn with_mirror(mirror: &str) -> Result<Config, ConfigError> {
        parse(Path::new("f"), &format!("{BACKUP}[mirror]\n{mirror}"))
    }

    /// The message of the error `mirror` gives, asserting it is at `line`.
    fn mirror_error(mirror: &str, line: usize) -> String {
        match with_mirror(mirror).expect_err(mirror) {
            ConfigError::At {
                line: got, message, ..
            } => {
                assert_eq!(got, line, "{message}");
                message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mirror_takes_every_key_and_defaults_to_saturdays_and_14_days() {
        let none = parse(Path::new("f"), BACKUP).expect("valid");
        assert_eq!(none.mirror, None, "no section, no mirror");
        let m = with_mirror("url = \"s3://acme/web/\"\nkey = \"/etc/k\"\n")
            .expect("valid")
            .mirror
            .expect("a mirror");
        assert_eq!(
            m,
            Mirror {
                url: "s3://acme/web".into(),
                key: Some(PathBuf::from("/etc/k")),
                endpoint: None,
                day: MirrorDay::Saturday,
                grace_secs: 14 * 86400,
            }
        );
        let m = with_mirror(
            "url = \"file:///mnt/offsite\"\nplain = true\nendpoint = \"http://127.0.0.1:9000/\"\nday = \"Daily\"\ngrace = \"3d\"\n",
        )
        .expect("valid")
        .mirror
        .expect("a mirror");
        assert_eq!(
            m,
            Mirror {
                url: "file:///mnt/offsite".into(),
                key: None,
                endpoint: Some("http://127.0.0.1:9000".into()),
                day: MirrorDay::Daily,
                grace_secs: 3 * 86400,
            }
        );
        let m = with_mirror("url = \"s3://b\"\nkey = \"/k\"\nplain = false\nday = \"tuesday\"\n")
            .expect("valid")
            .mirror
            .expect("a mirror");
        assert_eq!((m.day, m.key), (MirrorDay::Tuesday, Some("/k".into())));
    }

    #[test]
    fn mirror_errors_name_the_key_and_line() {
        // Lines: 1-3 the backup, 4 [mirror], 5 on the section's keys.
        let e = mirror_error("url = \"s3://b\"\nkey = \"/k\"\nbucket = \"b\"\n", 7);
        assert!(e.starts_with("unknown field `bucket`"), "{e}");
        let e = mirror_error("key = \"/k\"\n", 4);
        assert!(e.contains("missing field `url`"), "{e}");
        for url in [
            "acme/web",
            "s3://",
            "s3:///web",
            "file://relative/x",
            "https://b",
        ] {
            let e = mirror_error(&format!("url = \"{url}\"\nplain = true\n"), 5);
            assert!(e.starts_with("invalid mirror url"), "{url}: {e}");
        }
        let e = mirror_error("url = \"s3://b\"\n", 5);
        assert!(e.starts_with("[mirror] has no key: give `key"), "{e}");
        let e = mirror_error("url = \"s3://b\"\nplain = false\n", 6);
        assert!(e.starts_with("[mirror] has no key"), "{e}");
        let e = mirror_error("url = \"s3://b\"\nkey = \"/k\"\nplain = true\n", 7);
        assert!(e.contains("both a key (/k) and plain = true"), "{e}");
        let e = mirror_error("url = \"s3://b\"\nkey = \"mirror.key\"\n", 6);
        assert!(e.contains("must be an absolute path"), "{e}");
        let e = mirror_error("url = \"s3://b\"\nplain = \"yes\"\n", 6);
        assert!(e.contains("expected a boolean"), "{e}");
        for endpoint in ["s3.example.net", "ftp://x", "https://"] {
            let e = mirror_error(
                &format!("url = \"s3://b\"\nplain = true\nendpoint = \"{endpoint}\"\n"),
                7,
            );
            assert!(e.starts_with("invalid mirror endpoint"), "{endpoint}: {e}");
        }
        let e = mirror_error("url = \"s3://b\"\nplain = true\nday = \"weekly\"\n", 7);
        assert!(
            e.starts_with("invalid mirror day \"weekly\": use a day of the week"),
            "{e}"
        );
        let e = mirror_error("url = \"s3://b\"\nplain = true\ngrace = \"two weeks\"\n", 7);
        assert!(e.starts_with("invalid duration \"two weeks\""), "{e}");
    }

    #[test]
    fn mirror_with_a_servers_repository_is_refused() {
        let text = format!(
            "repository = \"backup@vault:/srv/web\"\n{BACKUP}[mirror]\nurl = \"s3://b\"\nplain = true\n"
        );
        let err = parse(Path::new("f"), &text).expect_err("mirror of a server's repository");
        let text = err.to_string();
        assert!(
            text.starts_with("f:5:1: [mirror] needs the repository on this machine; backup@vault:/srv/web is on a server"),
            "{text}"
        );
    }

    #[test]
    fn mirror_days_fall_due_on_their_weekday_only() {
        // 0 is Monday, as time::local_weekday counts.
        let saturday = MirrorDay::parse("saturday").unwrap();
        assert!(saturday.is_due(5));
        for other in [0, 1, 2, 3, 4, 6] {
            assert!(!saturday.is_due(other), "{other}");
        }
        assert!(MirrorDay::parse("MONDAY").unwrap().is_due(0));
        assert!(MirrorDay::parse("sunday").unwrap().is_due(6));
        assert!((0..7).all(|d| MirrorDay::Daily.is_due(d)));
        for day in MirrorDay::WEEK {
            assert_eq!(MirrorDay::parse(day.name()), Ok(day));
        }
        assert_eq!(MirrorDay::Saturday.when(), "on saturdays");
        assert_eq!(MirrorDay::Daily.when(), "daily");
        assert!(MirrorDay::parse("sat").is_err());
    }

    #[test]
    fn template_mirror_example_parses_when_uncommented() {
        let mut in_mirror = false;
        let text = TEMPLATE
            .lines()
            .map(|l| {
                if l == "# [mirror]" {
                    in_mirror = true;
                    return l[2..].to_string();
                }
                if in_mirror && !l.starts_with('#') {
                    in_mirror = false;
                }
                // Uncomment the example keys (`# key = value`), not the prose.
                match l.strip_prefix("# ") {
                    Some(rest)
                        if in_mirror
                            && rest
                                .split_once(" = ")
                                .is_some_and(|(k, _)| !k.contains(' ')) =>
                    {
                        rest.to_string()
                    }
                    _ => l.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        // plain = false with a key: the example is encrypted.
        let config = parse(Path::new("template"), &text).expect("template with a mirror");
        let m = config.mirror.expect("mirror");
        assert_eq!(m.url, "s3://acme-backups/web");
        assert_eq!(m.key, Some(PathBuf::from("/etc/rewind-mirror.key")));
        assert_eq!(m.endpoint.as_deref(), Some("https://s3.example.net"));
        assert_eq!((m.day, m.grace_secs), (MirrorDay::Saturday, 14 * 86400));
    }

    #[test]
    fn error_positions_count_lines_and_columns_from_one() {
        let text = "a = 1\nbb = 2\n";
        match at(Path::new("f"), text, 8, "x".into()) {
            ConfigError::At { line, column, .. } => assert_eq!((line, column), (2, 3)),
            other => panic!("{other:?}"),
        }
    }
}
