//! Where each saved path lands in the snapshot tree: absolute paths as they
//! are, or re-rooted by `--strip`, `--strip-path` and `--graft` with bup's
//! rules (BUP-FORMAT.md A.4). Pure: no file system access.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How source paths are re-rooted in the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rerooting {
    /// Keep the absolute path (the default).
    #[default]
    None,
    /// Remove each source path itself (its parent for a non-directory).
    Strip,
    /// Remove this prefix from source paths that start with it.
    StripPrefixes(Vec<PathBuf>),
    /// Replace the first matching OLD prefix by NEW.
    Graft(Vec<(PathBuf, PathBuf)>),
}

/// One level of a snapshot path: the name in its parent (empty for the
/// root) and the live directory whose metadata it carries, if any. Synthetic
/// levels (graft targets) have none and get an empty `.bupm` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub name: Vec<u8>,
    pub real: Option<PathBuf>,
}

/// Splits an absolute, normalised path into its component names.
pub fn components(path: &Path) -> Vec<Vec<u8>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

fn prefix_levels(prefix: &Path) -> Vec<Level> {
    let mut levels = vec![Level {
        name: Vec::new(),
        real: Some(PathBuf::from("/")),
    }];
    let mut real = PathBuf::from("/");
    for name in components(prefix) {
        real.push(OsStr::from_bytes(&name));
        levels.push(Level {
            name,
            real: Some(real.clone()),
        });
    }
    levels
}

/// Maps an absolute source path to the snapshot levels from the root down to
/// the path itself. `is_dir` matters only for `--strip` of a non-directory,
/// which keeps the file's own name. The last level's `real` is the source.
pub fn snapshot_levels(source: &Path, is_dir: bool, rerooting: &Rerooting) -> Vec<Level> {
    let full = prefix_levels(source);
    let drop_prefix = |prefix: &Path| -> Option<Vec<Level>> {
        let n = components(prefix).len();
        if !source.starts_with(prefix) || n > full.len() - 1 {
            return None;
        }
        // The stripped prefix becomes the root, keeping its own metadata.
        let mut levels = full[n..].to_vec();
        levels[0].name = Vec::new();
        Some(levels)
    };
    match rerooting {
        Rerooting::None => full,
        Rerooting::Strip => {
            let prefix = if is_dir {
                source.to_path_buf()
            } else {
                source.parent().unwrap_or(Path::new("/")).to_path_buf()
            };
            drop_prefix(&prefix).unwrap_or(full)
        }
        Rerooting::StripPrefixes(prefixes) => {
            // The longest matching prefix wins, as in bup.
            let mut sorted: Vec<&PathBuf> = prefixes.iter().collect();
            sorted.sort_by_key(|p| std::cmp::Reverse(components(p).len()));
            sorted.iter().find_map(|p| drop_prefix(p)).unwrap_or(full)
        }
        Rerooting::Graft(points) => {
            for (old, new) in points {
                if !source.starts_with(old) {
                    continue;
                }
                let kept = components(old).len();
                let mut levels = vec![Level {
                    name: Vec::new(),
                    real: None,
                }];
                let new_names = components(new);
                let last_new = new_names.len();
                for (i, name) in new_names.into_iter().enumerate() {
                    // The graft target itself is the old directory.
                    let real = if i + 1 == last_new {
                        full[kept].real.clone()
                    } else {
                        None
                    };
                    levels.push(Level { name, real });
                }
                if last_new == 0 {
                    levels[0].real = full[kept].real.clone();
                }
                levels.extend_from_slice(&full[kept + 1..]);
                return levels;
            }
            full
        }
    }
}

/// Makes `path` absolute against `cwd` and removes `.` and `..` lexically.
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in cwd.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(levels: &[Level]) -> Vec<String> {
        levels
            .iter()
            .map(|l| String::from_utf8_lossy(&l.name).into_owned())
            .collect()
    }
    fn reals(levels: &[Level]) -> Vec<Option<String>> {
        levels
            .iter()
            .map(|l| l.real.as_ref().map(|p| p.display().to_string()))
            .collect()
    }

    #[test]
    fn absolute_paths_keep_every_level_with_live_metadata() {
        let levels = snapshot_levels(Path::new("/var/lib/db"), true, &Rerooting::None);
        assert_eq!(names(&levels), ["", "var", "lib", "db"]);
        assert_eq!(reals(&levels)[0].as_deref(), Some("/"));
        assert_eq!(reals(&levels)[3].as_deref(), Some("/var/lib/db"));
    }

    #[test]
    fn strip_makes_the_source_the_root() {
        let levels = snapshot_levels(Path::new("/srv/src"), true, &Rerooting::Strip);
        assert_eq!(names(&levels), [""]);
        assert_eq!(reals(&levels), [Some("/srv/src".to_string())]);
        let file = snapshot_levels(Path::new("/etc/hosts"), false, &Rerooting::Strip);
        assert_eq!(names(&file), ["", "hosts"]);
        assert_eq!(reals(&file)[0].as_deref(), Some("/etc"));
    }

    #[test]
    fn strip_path_removes_the_longest_matching_prefix() {
        let r = Rerooting::StripPrefixes(vec!["/srv".into(), "/srv/www".into()]);
        let levels = snapshot_levels(Path::new("/srv/www/site"), true, &r);
        assert_eq!(names(&levels), ["", "site"]);
        assert_eq!(reals(&levels)[0].as_deref(), Some("/srv/www"));
        let untouched = snapshot_levels(Path::new("/etc"), true, &r);
        assert_eq!(names(&untouched), ["", "etc"]);
    }

    #[test]
    fn graft_reroots_with_synthetic_parents() {
        let r = Rerooting::Graft(vec![("/srv/www".into(), "/backup/web".into())]);
        let levels = snapshot_levels(Path::new("/srv/www/site"), true, &r);
        assert_eq!(names(&levels), ["", "backup", "web", "site"]);
        assert_eq!(
            reals(&levels),
            [
                None,
                None,
                Some("/srv/www".to_string()),
                Some("/srv/www/site".to_string())
            ]
        );
        let to_root = Rerooting::Graft(vec![("/srv/www".into(), "/".into())]);
        let levels = snapshot_levels(Path::new("/srv/www"), true, &to_root);
        assert_eq!(names(&levels), [""]);
        assert_eq!(reals(&levels), [Some("/srv/www".to_string())]);
    }

    #[test]
    fn absolute_normalises_dots() {
        assert_eq!(
            absolute(Path::new("../b/./c"), Path::new("/x/a")),
            PathBuf::from("/x/b/c")
        );
        assert_eq!(
            absolute(Path::new("/../.."), Path::new("/x")),
            PathBuf::from("/")
        );
    }
}
