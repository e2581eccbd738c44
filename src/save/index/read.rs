//! Reading an index file: the whole file's checksum first, then the
//! entries decoded forward, strictly (lengths bounded, order checked).

use super::{
    io_err, key_cmp, Entry, EntryKind, IndexError, Summary, FORMAT_VERSION, HEADER_LEN, MAGIC,
    MAX_KEY, MAX_RECORD, TAG_END, TAG_ENTRY, TRAILER_LEN, VERSION_PLAIN,
};
use crate::meta::Timespec;
use crate::object::ObjectId;
use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// Reads entries from the (decompressed) entry stream through a buffer of
/// its own, so that the many one-byte reads stay cheap whatever the source
/// is. Every failure is "damaged": the checksum passed, so it can only be
/// a bug or a file changed under us.
struct Decoder {
    inner: Box<dyn Read + Send>,
    /// Version 1: entries carry an access time, skipped.
    plain: bool,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
}

type Bad = &'static str;

impl Decoder {
    fn new(inner: Box<dyn Read + Send>, plain: bool) -> Decoder {
        Decoder {
            inner,
            plain,
            buf: vec![0u8; 1 << 16].into_boxed_slice(),
            pos: 0,
            end: 0,
        }
    }

    /// Refills the buffer; false at the end of the stream (or on an error,
    /// which the caller reports as truncation).
    #[cold]
    fn fill(&mut self) -> bool {
        self.pos = 0;
        self.end = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break 0,
            }
        };
        self.end > 0
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Bad> {
        if self.pos == self.end && !self.fill() {
            return Err("truncated");
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn read_exact(&mut self, mut out: &mut [u8]) -> Result<(), Bad> {
        while !out.is_empty() {
            if self.pos == self.end && !self.fill() {
                return Err("truncated");
            }
            let n = out.len().min(self.end - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            out = &mut out[n..];
        }
        Ok(())
    }

    /// Whether the stream has nothing after the end tag.
    fn at_end(&mut self) -> bool {
        self.pos == self.end && !self.fill()
    }

    fn uint(&mut self) -> Result<u64, Bad> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err("number out of range");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("number too long")
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        u32::try_from(self.uint()?).map_err(|_| "number out of range")
    }

    fn time(&mut self) -> Result<Timespec, Bad> {
        let z = self.uint()?;
        let sec = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return Err("bad nanoseconds");
        }
        Ok(Timespec { sec, nsec })
    }

    fn bytes(&mut self, n: u64, max: u64, buf: &mut Vec<u8>) -> Result<(), Bad> {
        if n > max {
            return Err("length out of range");
        }
        let start = buf.len();
        buf.resize(start + n as usize, 0);
        self.read_exact(&mut buf[start..])
    }

    fn id(&mut self) -> Result<ObjectId, Bad> {
        let mut raw = [0u8; 20];
        self.read_exact(&mut raw)?;
        Ok(ObjectId(raw))
    }

    /// The next entry (updating `key` in place), or None at the trailer.
    fn entry(&mut self, key: &mut Vec<u8>) -> Result<Option<Entry>, Bad> {
        match self.byte()? {
            TAG_END if self.at_end() => return Ok(None),
            TAG_END => return Err("data after the end tag"),
            TAG_ENTRY => {}
            _ => return Err("bad entry tag"),
        }
        let shared = self.uint()?;
        if shared > key.len() as u64 {
            return Err("bad key prefix");
        }
        key.truncate(shared as usize);
        let suffix = self.uint()?;
        self.bytes(suffix, MAX_KEY, key)?;
        let kind = EntryKind::from_u8(self.byte()?).ok_or("bad entry kind")?;
        let dev = self.uint()?;
        let ino = self.uint()?;
        let size = self.uint()?;
        let mode = self.u32()?;
        let nlink = self.uint()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        let mtime = self.time()?;
        let ctime = self.time()?;
        if self.plain {
            self.time()?;
        }
        let id = self.id()?;
        let children = self.uint()?;
        let len = self.uint()?;
        let mut record = Vec::new();
        self.bytes(len, MAX_RECORD, &mut record)?;
        Ok(Some(Entry {
            kind,
            dev,
            ino,
            size,
            mode,
            nlink,
            uid,
            gid,
            mtime,
            ctime,
            id,
            children,
            record,
        }))
    }
}

/// A verified index file, read forward in key order.
pub struct IndexReader {
    path: PathBuf,
    decoder: Decoder,
    /// Key of the entry under the cursor, and of the one before it.
    key: Vec<u8>,
    prev_key: Vec<u8>,
    started: bool,
    /// The entry under the cursor, not yet taken.
    current: Option<Entry>,
    done: bool,
    summary: Summary,
}

/// What [`check_file`] vouches for.
struct Checked {
    commit: ObjectId,
    entries: u64,
    version: u32,
    /// Bytes of the entry stream (as stored) after the header.
    body_len: u64,
}

/// Checks the header and the checksum of the whole file (without keeping
/// it in memory) and leaves `file` positioned after the header.
fn check_file(path: &Path, file: &mut File) -> Result<Checked, IndexError> {
    let invalid = |reason: &str| IndexError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    // The shortest index: no entry, just the end tag.
    if len < HEADER_LEN + 1 + TRAILER_LEN {
        return Err(invalid("too short (truncated?)"));
    }
    let mut reader = BufReader::with_capacity(1 << 16, &mut *file);
    let mut header = [0u8; HEADER_LEN as usize];
    reader
        .read_exact(&mut header)
        .map_err(io_err(path, "read"))?;
    if &header[..8] != MAGIC {
        return Err(invalid("not a rewind change index"));
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION && version != VERSION_PLAIN {
        return Err(invalid(&format!(
            "format version {version}, this rewind reads {VERSION_PLAIN} and {FORMAT_VERSION}"
        )));
    }
    // Hash everything before the final digest, streaming.
    let mut hasher = Sha1::new();
    hasher.update(header);
    let mut body = (&mut reader).take(len - HEADER_LEN - 20);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    drop(reader);
    // The trailer: count | commit | digest.
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(io::SeekFrom::Start(len - TRAILER_LEN))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(io_err(path, "read"))?;
    if hasher.finalize().as_slice() != &trailer[28..] {
        return Err(invalid("checksum mismatch (torn or damaged)"));
    }
    let entries = u64::from_be_bytes(trailer[..8].try_into().expect("8 bytes"));
    let commit = ObjectId(trailer[8..28].try_into().expect("20 bytes"));
    file.seek(io::SeekFrom::Start(HEADER_LEN))
        .map_err(io_err(path, "seek"))?;
    Ok(Checked {
        commit,
        entries,
        version,
        body_len: len - HEADER_LEN - TRAILER_LEN,
    })
}

/// The entry stream of a checked file positioned after its header.
fn entry_stream(path: &Path, file: File, checked: &Checked) -> Result<Decoder, IndexError> {
    let body = BufReader::with_capacity(1 << 16, file.take(checked.body_len));
    let inner: Box<dyn Read + Send> = if checked.version == VERSION_PLAIN {
        Box::new(body)
    } else {
        // single_frame: anything after the frame is damage, not a second
        // frame to decode.
        Box::new(
            zstd::stream::read::Decoder::with_buffer(body)
                .map_err(io_err(path, "start decompressing"))?
                .single_frame(),
        )
    };
    Ok(Decoder::new(inner, checked.version == VERSION_PLAIN))
}

impl IndexReader {
    /// Opens and fully verifies an index. `Ok(None)` if there is none.
    pub fn open(path: &Path) -> Result<Option<IndexReader>, IndexError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, "open")(e)),
        };
        let checked = check_file(path, &mut file)?;
        if checked.version != FORMAT_VERSION {
            tracing::debug!(
                "change index {}: format version {}, rewritten as {FORMAT_VERSION} by this save",
                path.display(),
                checked.version
            );
        }
        let mut reader = IndexReader {
            path: path.to_path_buf(),
            decoder: entry_stream(path, file, &checked)?,
            key: Vec::new(),
            prev_key: Vec::new(),
            started: false,
            current: None,
            done: false,
            summary: Summary {
                entries: checked.entries,
                commit: checked.commit,
            },
        };
        reader.advance();
        Ok(Some(reader))
    }

    /// The entry under the cursor with its key, moving past it.
    pub(super) fn next_entry(&mut self) -> Option<(Vec<u8>, Entry)> {
        let entry = self.current.take()?;
        let key = self.key.clone();
        self.advance();
        Some((key, entry))
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn advance(&mut self) {
        if self.done {
            return;
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(&self.key);
        match self.decoder.entry(&mut self.key) {
            Ok(Some(entry)) => {
                // The checksum passed, so disorder means a writer bug; the
                // merge-join would silently miss entries, so stop here.
                if self.started && key_cmp(&self.prev_key, &self.key) != Ordering::Less {
                    self.stop("entries out of order");
                } else {
                    self.started = true;
                    self.current = Some(entry);
                }
            }
            Ok(None) => {
                self.current = None;
                self.done = true;
            }
            Err(reason) => self.stop(reason),
        }
    }

    fn stop(&mut self, reason: &str) {
        tracing::warn!(
            "change index {}: {reason}; the rest is ignored",
            self.path.display()
        );
        self.current = None;
        self.done = true;
    }

    /// The entry for `key`, if the index has one. Keys must be asked in
    /// increasing [`key_cmp`] order: entries passed over are dropped, and a
    /// key asked out of order is simply not found (the caller reads the
    /// path, which is always safe).
    pub fn take(&mut self, key: &[u8]) -> Option<Entry> {
        loop {
            self.current.as_ref()?;
            match key_cmp(&self.key, key) {
                Ordering::Less => self.advance(),
                Ordering::Equal => {
                    let entry = self.current.take();
                    self.advance();
                    return entry;
                }
                Ordering::Greater => return None,
            }
        }
    }
}

/// Checks an index file completely (checksum, version, every entry, order,
/// count) without using it.
pub fn verify(path: &Path) -> Result<Summary, IndexError> {
    let invalid = |reason: String| IndexError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io_err(path, "open"))?;
    let checked = check_file(path, &mut file)?;
    let (commit, count) = (checked.commit, checked.entries);
    let mut decoder = entry_stream(path, file, &checked)?;
    let mut key = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    let mut n = 0u64;
    while decoder
        .entry(&mut key)
        .map_err(|r| invalid(r.into()))?
        .is_some()
    {
        if prev
            .as_ref()
            .is_some_and(|p| key_cmp(p, &key) != Ordering::Less)
        {
            return Err(invalid("entries out of order".into()));
        }
        prev = Some(key.clone());
        n += 1;
    }
    if n != count {
        return Err(invalid(format!("{n} entries, trailer says {count}")));
    }
    Ok(Summary { entries: n, commit })
}
