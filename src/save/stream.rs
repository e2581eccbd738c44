//! Storing one stream (a file's content, a dump's output, a large
//! `.bupm`): split into chunks, put into the sink, shaped into a chunk
//! tree; and opening source files for it.

use super::{ObjectSink, SaveError};
use crate::chunk::tree::{ChunkTreeBuilder, FileObject};
use crate::chunk::{SplitError, Splitter};
use crate::object::Kind;
use crate::progress::Progress;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens without updating the access time where the kernel allows it, and
/// tells the kernel the file is read front to back (a larger readahead
/// window: cold big files then read at disk speed).
pub(super) fn open_for_reading(path: &Path) -> io::Result<File> {
    let file = open_noatime(path, 0)?;
    // SAFETY: `file` keeps the descriptor open for the call; posix_fadvise
    // takes only integers and touches no memory. A hint: errors ignored.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
    Ok(file)
}

/// Opens `path` read-only, never through a symlink, without moving its
/// access time where the kernel allows it (O_NOATIME needs ownership).
pub(super) fn open_noatime(path: &Path, extra_flags: i32) -> io::Result<File> {
    let open = |flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags | extra_flags | libc::O_NOFOLLOW)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
        other => other,
    }
}

pub(super) enum StreamError {
    Read(io::Error),
    Save(SaveError),
}

/// Streams up to this many bytes are hashed on the walker; the chunks of
/// longer ones past this point are hashed on the sink's workers. Waiting
/// for a worker's ids at the end of a stream means waiting for the whole
/// queue ahead of them (several MiB of compression on a first save), which
/// costs more than hashing a small file here: when every multi-chunk file
/// waited, a first save took 10-30% longer.
const INLINE_PREFIX: u64 = 1 << 20;

/// Splits a stream into chunks, stores them, and shapes the chunk tree.
///
/// Past the first [`INLINE_PREFIX`] bytes, chunks are hashed on the sink's
/// workers while this thread reads and cuts the next ones; their ids come
/// back in order and feed the chunk tree builder as they arrive, so at most
/// the sink's batches in flight are waited for at the end of the stream. A
/// read error mid-stream drops the ids still in flight; the chunks already
/// put are written (nothing refers to them), as before.
pub(super) fn store_stream(
    reader: impl Read,
    sink: &mut ObjectSink,
    splitter: &mut Splitter,
    progress: Option<&Progress>,
) -> Result<(FileObject, u64), StreamError> {
    let result = split_and_build(reader, sink, splitter, progress);
    if result.is_err() {
        // An error of the sink itself comes out of every later call too.
        let _ = sink.forget_deferred();
    }
    result
}

fn split_and_build(
    reader: impl Read,
    sink: &mut ObjectSink,
    splitter: &mut Splitter,
    progress: Option<&Progress>,
) -> Result<(FileObject, u64), StreamError> {
    let mut builder = ChunkTreeBuilder::new();
    // Lengths of the chunks put whose ids have not been taken yet, oldest
    // first; bounded by the sink's batches in flight.
    let mut pending: VecDeque<u64> = VecDeque::new();
    let mut offset = 0u64;
    let size = splitter
        .split(reader, |chunk: &[u8]| -> Result<(), SaveError> {
            // Per chunk (about 8 KiB): a signal stops even a huge file or
            // a dump within a moment.
            super::stop_if_interrupted()?;
            let len = chunk.len() as u64;
            if let Some(p) = progress {
                p.add_bytes_read(len);
            }
            let inline = offset < INLINE_PREFIX;
            offset += len;
            if inline {
                // Every id before this one is known: nothing is deferred yet.
                let id = sink.put(Kind::Blob, chunk)?;
                return builder.push(id, len, &mut |body: &[u8]| sink.put(Kind::Tree, body));
            }
            sink.put_deferred(Kind::Blob, chunk)?;
            pending.push_back(len);
            take_ids(sink, &mut builder, &mut pending, false)
        })
        .map_err(|e| match e {
            SplitError::Read(e) => StreamError::Read(e),
            SplitError::Sink(e) => StreamError::Save(e),
        })?;
    take_ids(sink, &mut builder, &mut pending, true).map_err(StreamError::Save)?;
    let object = builder
        .finish(&mut |body: &[u8]| sink.put(Kind::Tree, body))
        .map_err(StreamError::Save)?;
    if size == 0 {
        // No chunk was stored for an empty stream: the builder names the
        // empty blob, which must exist like any other object.
        sink.put(Kind::Blob, b"").map_err(StreamError::Save)?;
    }
    Ok((object, size))
}

/// Feeds the ids of chunks put into the builder, in order: those known
/// now, or (`wait`) all of them. Waiting, a chunk whose id never comes is
/// an error: a chunk tree without it would make a wrong file, so the save
/// must not go on (this was an `assert!`, which aborted a cron save).
fn take_ids(
    sink: &mut ObjectSink,
    builder: &mut ChunkTreeBuilder,
    pending: &mut VecDeque<u64>,
    wait: bool,
) -> Result<(), SaveError> {
    while let Some(&len) = pending.front() {
        let Some(id) = sink.next_id(wait)? else {
            break;
        };
        pending.pop_front();
        builder.push(id, len, &mut |body: &[u8]| sink.put(Kind::Tree, body))?;
    }
    if wait && !pending.is_empty() {
        return Err(SaveError::LostChunkIds {
            missing: pending.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Repository;

    /// A chunk put whose id the sink never hands back used to trip an
    /// `assert!` and abort the whole process (a cron save with it); it
    /// is now an error that stops this save with a message.
    #[test]
    fn lost_chunk_ids_are_a_save_error_not_an_abort() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let mut sink = ObjectSink::for_tests(&repo);
        let mut builder = ChunkTreeBuilder::new();
        // Two chunks the walk believes it put; the sink received none.
        let mut pending: VecDeque<u64> = VecDeque::from([8192, 4096]);
        // Not waiting, unknown ids are simply not known yet.
        assert!(take_ids(&mut sink, &mut builder, &mut pending, false).is_ok());
        match take_ids(&mut sink, &mut builder, &mut pending, true) {
            Err(e @ SaveError::LostChunkIds { missing: 2 }) => {
                assert!(e.to_string().contains("no snapshot was written"), "{e}");
            }
            other => panic!("expected LostChunkIds, got {other:?}"),
        }
    }

    #[test]
    fn a_read_error_mid_stream_does_not_disturb_the_next_stream() {
        struct FailAfter(Vec<u8>, usize);
        impl Read for FailAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                let n = buf.len().min(self.0.len() - self.1).min(50_000);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut x = 1u64;
        let data: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (x >> 56) as u8
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let alone = {
            let repo = Repository::init(&tmp.path().join("alone")).unwrap();
            let mut sink = ObjectSink::for_tests(&repo);
            let stored = store_stream(&data[1 << 20..], &mut sink, &mut Splitter::new(), None);
            let Ok(stored) = stored else {
                panic!("storing from memory failed")
            };
            sink.publish().unwrap();
            stored
        };
        let repo = Repository::init(&tmp.path().join("repo")).unwrap();
        let mut sink = ObjectSink::for_tests(&repo);
        let mut splitter = Splitter::new();
        let failed = store_stream(
            FailAfter(data[..2 << 20].to_vec(), 0),
            &mut sink,
            &mut splitter,
            None,
        );
        assert!(
            matches!(failed, Err(StreamError::Read(ref e)) if e.raw_os_error() == Some(libc::EIO))
        );
        let next = store_stream(&data[1 << 20..], &mut sink, &mut splitter, None);
        let Ok(next) = next else {
            panic!("storing from memory failed")
        };
        assert_eq!(next, alone);
        sink.publish().unwrap();
    }
}
