//! Small crash-safety helpers: fsync a directory, replace a file atomically.

use super::Error;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Makes renames and creations inside `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

/// Writes `contents` to `path` via a temporary file in the same directory,
/// fsync, rename, fsync of the directory: readers see the old or the new file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp_")
        .tempfile_in(dir)
        .map_err(Error::io("creating temporary file in", dir))?;
    tmp.write_all(contents)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(Error::io("writing", tmp.path().to_path_buf()))?;
    // tempfile creates 0600; repository files are normally world-readable.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(Error::io("setting permissions of", path))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replacing", path)(e.error))?;
    fsync_dir(dir)
}
