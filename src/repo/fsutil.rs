//! Small crash-safety helpers: fsync a directory, replace a file
//! atomically, write large files out as they grow.

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

/// How much written data of a large file (a pack being written, a pulled
/// file) may wait before its writeback is started.
pub const WRITEBACK_STEP: u64 = 16 << 20;

/// Asks the kernel to start writing out bytes `from..to` of `file`, without
/// waiting. Otherwise a large file sits dirty in memory until its final
/// fsync, which then writes it all while nothing else runs. Only a hint:
/// errors show up in the fsync, which is what makes the file durable.
pub fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    if to <= from {
        return;
    }
    // SAFETY: `file` is borrowed, so its descriptor is open for the call;
    // sync_file_range takes only integers.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Writes to a file, starting writeback every [`WRITEBACK_STEP`] bytes
/// (see [`start_writeback`]), so that the fsync that ends a large file
/// waits for its last few MiB, not for all of it.
pub struct WriteBehind<'a> {
    file: &'a File,
    written: u64,
    started: u64,
}

impl<'a> WriteBehind<'a> {
    pub fn new(file: &'a File) -> WriteBehind<'a> {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl Write for WriteBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            start_writeback(self.file, self.started, self.written);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_behind_writes_every_byte_in_order_across_writeback_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut expected = Vec::new();
        {
            let mut out = WriteBehind::new(&file);
            // Odd-sized writes that straddle the steps.
            let mut i = 0u32;
            while (expected.len() as u64) < 2 * WRITEBACK_STEP + 12345 {
                let piece: Vec<u8> = (0..(1 << 20) + 7).map(|k| (k as u32 ^ i) as u8).collect();
                out.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
                i += 1;
            }
            assert!(out.started >= 2 * WRITEBACK_STEP - (1 << 21));
        }
        file.sync_all().unwrap();
        assert!(std::fs::read(&path).unwrap() == expected);
    }
}
