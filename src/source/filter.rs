//! Which entries a save skips: `--exclude` globs, `--exclude-from` files and
//! `--one-file-system`.
//!
//! A pattern containing `/` is matched against the whole absolute path (`*`
//! stays within one component, `**` crosses them); a pattern without `/` is
//! matched against the entry's name alone, so `*.tmp` excludes such files at
//! any depth. An excluded directory is not descended into.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid --exclude pattern {pattern:?}: {source}")]
    BadPattern {
        pattern: String,
        source: globset::Error,
    },
    #[error("cannot read --exclude-from file {path}: {source}")]
    ExcludeFrom {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Filter {
    by_path: GlobSet,
    by_name: GlobSet,
}

impl Filter {
    pub fn new(
        patterns: &[String],
        exclude_from: &[std::path::PathBuf],
    ) -> Result<Filter, FilterError> {
        let mut all: Vec<String> = patterns.to_vec();
        for file in exclude_from {
            let text =
                std::fs::read_to_string(file).map_err(|source| FilterError::ExcludeFrom {
                    path: file.clone(),
                    source,
                })?;
            all.extend(
                text.lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        let (mut by_path, mut by_name) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for pattern in all {
            // A trailing slash means "this directory"; the walker matches
            // directories by their path without one.
            let trimmed = if pattern.len() > 1 {
                pattern.trim_end_matches('/')
            } else {
                &pattern
            };
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| FilterError::BadPattern {
                    pattern: pattern.clone(),
                    source,
                })?;
            if trimmed.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().expect("globs were validated one by one");
        Ok(Filter {
            by_path: build(by_path),
            by_name: build(by_name),
        })
    }

    pub fn excludes(&self, path: &Path) -> bool {
        if self.by_path.is_match(path) {
            return true;
        }
        match path.file_name() {
            Some(name) => self.by_name.is_match(Path::new(name)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_paths_or_names() {
        let f = Filter::new(
            &["*.tmp".into(), "/var/cache".into(), "/srv/*/logs/".into()],
            &[],
        )
        .unwrap();
        assert!(f.excludes(Path::new("/home/a/b/x.tmp")));
        assert!(f.excludes(Path::new("/var/cache")));
        assert!(!f.excludes(Path::new("/var/cache2")));
        assert!(!f.excludes(Path::new("/var/cached/x")));
        assert!(f.excludes(Path::new("/srv/www/logs")));
        assert!(!f.excludes(Path::new("/srv/www/a/logs")));
        assert!(!f.excludes(Path::new("/home/a/tmp")));
    }

    #[test]
    fn bad_patterns_and_missing_files_are_errors() {
        assert!(matches!(
            Filter::new(&["a[".into()], &[]),
            Err(FilterError::BadPattern { .. })
        ));
        assert!(matches!(
            Filter::new(&[], &["/nonexistent/excludes".into()]),
            Err(FilterError::ExcludeFrom { .. })
        ));
    }
}
