//! Validation of the parsed file ([`super::RawConfig`]) into a
//! [`super::Config`]: every value checked, each error at its line.

use super::explain::{at, line_of};
use super::*;

pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| at(path, text, span.start, message);
    let default_retention = match &raw.retention {
        Some(r) => Some(retention_rules(r, "[retention]").map_err(|(span, m)| err(span, m))?),
        None => None,
    };
    let repository = match &raw.repository {
        Some(r) => Some(repository_path(r).map_err(|m| err(r.span(), m))?),
        None => None,
    };
    let mirror = match &raw.mirror {
        Some(m) => {
            if let Some(crate::remote::Location::Ssh(target)) = &repository {
                return Err(err(
                    m.span(),
                    format!("[mirror] needs the repository on this machine; {target} is on a server: configure the mirror there (its own `rewind run` or `rewind mirror push`), where the repository is"),
                ));
            }
            Some(mirror_section(m.get_ref()).map_err(|(span, m)| err(span, m))?)
        }
        None => None,
    };
    let gc = match &raw.gc {
        Some(g) if *g.get_ref() => {
            if let Some(crate::remote::Location::Ssh(target)) = &repository {
                return Err(err(
                    g.span(),
                    format!("gc = true needs the repository on this machine; {target} is on a server: run `rewind gc` there (e.g. from its cron)"),
                ));
            }
            true
        }
        _ => false,
    };
    let default_age = match &raw.max_age {
        Some(a) => parse_duration(a.get_ref()).map_err(|m| err(a.span(), m))?,
        None => DEFAULT_MAX_AGE_SECS,
    };
    let mut backups: Vec<Backup> = Vec::new();
    for spanned in &raw.backups {
        let b = spanned.get_ref();
        let name = b.name.get_ref().clone();
        crate::save::validate_name(&name).map_err(|e| err(b.name.span(), e.to_string()))?;
        if backups.iter().any(|other| other.name == name) {
            return Err(err(
                b.name.span(),
                format!("backup {name:?} is configured twice; names must be unique"),
            ));
        }
        let absolute = |p: &Spanned<String>, what: &str| {
            let pb = PathBuf::from(p.get_ref());
            if pb.is_absolute() {
                Ok(pb)
            } else {
                Err(err(
                    p.span(),
                    format!(
                        "{what} {:?} of backup {name:?} must be an absolute path (start with /)",
                        p.get_ref()
                    ),
                ))
            }
        };
        let paths = b
            .paths
            .iter()
            .map(|p| absolute(p, "path"))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude_from = b
            .exclude_from
            .iter()
            .map(|p| absolute(p, "exclude-from file"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut dumps = Vec::new();
        for d in &b.dumps {
            let d = d.get_ref();
            if d.command.get_ref().trim().is_empty() {
                return Err(err(
                    d.command.span(),
                    format!("empty dump command in backup {name:?}"),
                ));
            }
            let path = absolute(&d.path, "dump path (`as`)")?;
            // The save would refuse it too, but only at run time.
            if let Some(inside) = paths.iter().find(|p| path.starts_with(p)) {
                return Err(err(
                    d.path.span(),
                    format!(
                        "dump path {} of backup {name:?} lies inside its path {}; give the dump a path outside the saved directories",
                        path.display(),
                        inside.display()
                    ),
                ));
            }
            dumps.push(CommandSource {
                command: d.command.get_ref().clone(),
                path,
            });
        }
        if paths.is_empty() && dumps.is_empty() {
            return Err(err(
                spanned.span(),
                format!(
                    "backup {name:?} has nothing to save: give it `paths` or a [[backup.dump]]"
                ),
            ));
        }
        let max_age_secs = match &b.max_age {
            Some(a) => parse_duration(a.get_ref()).map_err(|m| err(a.span(), m))?,
            None => default_age,
        };
        let retention = match &b.retention {
            Some(r) => Some(
                retention_rules(r, &format!("[backup.retention] of backup {name:?}"))
                    .map_err(|(span, m)| err(span, m))?,
            ),
            None => default_retention,
        };
        backups.push(Backup {
            name,
            paths,
            excludes: b.excludes.clone(),
            exclude_from,
            one_file_system: b.one_file_system,
            dumps,
            max_age_secs,
            retention,
            path_lines: b
                .paths
                .iter()
                .map(|p| Line(line_of(text, p.span().start)))
                .collect(),
            exclude_from_lines: b
                .exclude_from
                .iter()
                .map(|p| Line(line_of(text, p.span().start)))
                .collect(),
        });
    }
    if backups.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            message: "no backups configured: add a [[backup]] table (see `rewind config init`)"
                .into(),
        });
    }
    let mirror_line = Line(raw.mirror.as_ref().map_or(0, |m| {
        let m = m.get_ref();
        let span = m.key.as_ref().map_or(m.url.span(), |k| k.span());
        line_of(text, span.start)
    }));
    Ok(Config {
        path: path.to_path_buf(),
        repository,
        backups,
        gc,
        mirror,
        mirror_line,
    })
}

/// Checks a `[mirror]` section: an error (with where) for a URL that is
/// neither s3:// nor file:///, a relative key path, no key without
/// `plain = true` (a mirror is encrypted unless asked not to be), a key
/// and `plain = true` both, an endpoint that is not http(s), a bad day or
/// grace.
fn mirror_section(m: &RawMirror) -> Result<Mirror, (std::ops::Range<usize>, String)> {
    let url = m.url.get_ref().trim_end_matches('/').to_string();
    let bad_url = || {
        (
            m.url.span(),
            format!(
                "invalid mirror url {:?}: write s3://BUCKET, s3://BUCKET/PREFIX or file:///PATH",
                m.url.get_ref()
            ),
        )
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(bad_url());
        }
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad_url());
        }
    } else {
        return Err(bad_url());
    }
    let plain = m.plain.as_ref().is_some_and(|p| *p.get_ref());
    let key = match (&m.key, &m.plain) {
        (Some(k), Some(p)) if *p.get_ref() => {
            return Err((
                p.span(),
                format!("[mirror] has both a key ({}) and plain = true: remove one (a mirror is encrypted with the key, or plain)", k.get_ref()),
            ))
        }
        (Some(k), _) => {
            let path = PathBuf::from(k.get_ref());
            if !path.is_absolute() {
                return Err((
                    k.span(),
                    format!(
                        "mirror key {:?} must be an absolute path (start with /)",
                        k.get_ref()
                    ),
                ));
            }
            Some(path)
        }
        (None, _) if plain => None,
        (None, _) => {
            let span = m.plain.as_ref().map_or(m.url.span(), |p| p.span());
            return Err((
                span,
                "[mirror] has no key: give `key = \"/PATH\"` (make one with `rewind mirror keygen /PATH`, and keep a copy off this machine), or `plain = true` to mirror unencrypted".into(),
            ));
        }
    };
    let endpoint = match &m.endpoint {
        Some(e) => {
            let text = e.get_ref().trim_end_matches('/');
            if !(text.starts_with("http://") || text.starts_with("https://"))
                || text
                    .split_once("://")
                    .is_some_and(|(_, host)| host.is_empty())
            {
                return Err((
                    e.span(),
                    format!(
                        "invalid mirror endpoint {:?}: write the S3 server's URL, e.g. https://s3.example.net or http://127.0.0.1:9000",
                        e.get_ref()
                    ),
                ));
            }
            Some(text.to_string())
        }
        None => None,
    };
    let day = match &m.day {
        Some(d) => MirrorDay::parse(d.get_ref()).map_err(|msg| (d.span(), msg))?,
        None => MirrorDay::default(),
    };
    let grace_secs = match &m.grace {
        Some(g) => parse_duration(g.get_ref()).map_err(|msg| (g.span(), msg))?,
        // The default of `rewind mirror push --grace`.
        None => crate::mirror::push::DEFAULT_GRACE_SECS.unsigned_abs(),
    };
    Ok(Mirror {
        url,
        key,
        endpoint,
        day,
        grace_secs,
    })
}

/// The rules of a retention table; an error (with where) for an invalid
/// `keep-within` or a table that keeps nothing.
fn retention_rules(
    raw: &Spanned<RawRetention>,
    what: &str,
) -> Result<crate::retention::Rules, (std::ops::Range<usize>, String)> {
    let r = raw.get_ref();
    let within = match &r.keep_within {
        Some(w) => Some(
            crate::retention::Span::parse(w.get_ref()).map_err(|e| (w.span(), e.to_string()))?,
        ),
        None => None,
    };
    let rules = crate::retention::Rules {
        last: r.keep_last.unwrap_or(0),
        hourly: r.keep_hourly.unwrap_or(0),
        daily: r.keep_daily.unwrap_or(0),
        weekly: r.keep_weekly.unwrap_or(0),
        monthly: r.keep_monthly.unwrap_or(0),
        yearly: r.keep_yearly.unwrap_or(0),
        within,
    };
    if rules.is_empty() {
        return Err((
            raw.span(),
            format!("{what} keeps nothing: give it at least one keep-* key above 0 (e.g. keep-daily = 7), or remove it to keep every snapshot"),
        ));
    }
    Ok(rules)
}

/// A repository value: an absolute local path, `user@host:path` or
/// `ssh://user@host:port/path`.
fn repository_path(value: &Spanned<String>) -> Result<crate::remote::Location, String> {
    use crate::remote::Location;
    let v = value.get_ref();
    if v.is_empty() {
        return Err("empty repository path".into());
    }
    match Location::parse(v).map_err(|e| e.to_string())? {
        Location::Local(path) if !path.is_absolute() => Err(format!(
            "repository {v:?} must be an absolute path (start with /) or a server's (user@host:/path)"
        )),
        location => Ok(location),
    }
}
