//! Messages about the configuration file in its own words: serde's
//! errors explained (a list of tables written with one bracket, a
//! misspelt table), and every error placed at its file, line and column.

use super::ConfigError;
use std::path::Path;

/// The tables that are lists (`[[NAME]]`, any number of them).
const TABLE_LISTS: &[&str] = &["backup", "backup.dump"];

/// serde's message in the words of the file: a list of tables written
/// with single brackets, and a misspelt key or table with what was meant.
pub(super) fn explain(text: &str, offset: usize, message: &str) -> String {
    let header = table_header(text, offset);
    if message.starts_with("invalid type: map, expected a sequence") {
        if let Some(name) = header
            .as_ref()
            .filter(|h| TABLE_LISTS.contains(&h.as_str()))
        {
            let what = if name == "backup" {
                "a backup"
            } else {
                "a dump"
            };
            return format!(
                "{what} is written [[{name}]], with two brackets (there may be several), not [{name}]"
            );
        }
    }
    // serde lists the struct's fields, each a key this version reads; a
    // plural of a list of tables gets the table meant.
    if let Some(key) = unknown_key(message) {
        // `[[backups]]`, `dumps = ...` in a backup, `[[backup.dumps]]`.
        let mut names = vec![key.to_string()];
        if let Some(h) = &header {
            names.push(h.clone());
            names.push(format!("{h}.{key}"));
        }
        let meant = TABLE_LISTS
            .iter()
            .find(|t| names.iter().any(|n| n.strip_suffix('s') == Some(**t)));
        if let Some(meant) = meant {
            return format!("{message}; did you mean [[{meant}]]?");
        }
    }
    message.to_string()
}

/// `backups` from serde's "unknown field `backups`, expected ...".
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// The name of the table header (`[name]` or `[[name]]`) at or before
/// byte `offset`: the table the error is in.
fn table_header(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text[..end].lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?;
        let inner = inner.split(']').next()?.trim_start_matches('[').trim();
        (!inner.is_empty()).then(|| inner.to_string())
    })
}

/// The line (from 1) of byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A [`ConfigError::At`] for byte `offset` of `text`.
pub(super) fn at(path: &Path, text: &str, offset: usize, message: String) -> ConfigError {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = line_of(text, offset);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    // One line: toml's messages sometimes span several.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    ConfigError::At {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}
