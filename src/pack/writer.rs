//! Writing new packs (whole objects, no deltas) and publishing them crash-safely.
//!
//! Publish order, so that a crash at any point leaves either nothing visible
//! or a complete pack: entries go to `objects/tmp_pack_XXXXXX` (outside
//! `objects/pack`, where git would flag stray files); `finish` patches the
//! object count if the pack ended short of its planned count (and then
//! re-hashes it), appends the SHA-1 trailer, fsyncs, writes the idx to
//! `objects/tmp_idx_XXXXXX` and fsyncs it, renames the pack and then the idx
//! into `objects/pack/pack-<sha>.{pack,idx}` (readers look for the idx, so it
//! appears last), and fsyncs `objects/pack`. bup's caches (`*.midx`,
//! `bup.bloom`) are then deleted because they no longer cover every pack.
//! Dropping an unfinished writer deletes its temporary files.

use super::idx::{encode_v2, IdxEntry};
use super::{encode_entry_header, PACK_HEADER_LEN, PACK_SIGNATURE};
use crate::object::{hash_object, Kind, ObjectId};
use crate::repo::fsutil::{self, fsync_dir};
use crate::repo::Error;
use sha1::{Digest, Sha1};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Default size at which a pack is published and a new one started (as
/// bup's default `pack.packSizeLimit`, rounded to 1 GiB).
pub const DEFAULT_SIZE_LIMIT: u64 = 1 << 30;

/// Default number of objects after which a pack is published and a new
/// one started. A pack's trailer is the SHA-1 of everything before it,
/// header included, and the header holds the object count: a pack whose
/// count is known when it starts is hashed as it is written, while one
/// closed early (the end of a save, the size limit) must be read back and
/// hashed at publish, at the end of the save when nothing else runs. So
/// packs are planned to hold this many objects: only the last pack of a
/// save is read back. 2^16 objects of ~10 KiB chunks are ~650 MB, under
/// the size limit; a first save of 1.7 GB (225,000 objects) writes four
/// packs and reads back ~130 MB instead of 1.1 GB.
pub const DEFAULT_OBJECT_LIMIT: u32 = 1 << 16;

/// Objects smaller than this are always deflated (a byte histogram of
/// fewer bytes says too little).
const SAMPLE_MIN: usize = 4 << 10;
/// Objects up to this size are sampled whole; larger ones in four pieces
/// of `SAMPLE_PIECE` bytes spread over the object. Sampling 4 KiB of a
/// ~10 KiB chunk instead of all of it (up to 16 KiB, as before) changed the
/// decision for 4 of ~50,000 chunks of the benchmark's VM image (3.6 KB of
/// space) and none of the dump or the random files, for 2.5x less work.
const SAMPLE_WHOLE: usize = 4 << 10;
const SAMPLE_PIECE: usize = 1 << 10;
/// Order-0 entropy (bits per byte) above which an object is stored
/// (zlib level 0) without trying deflate. Random, compressed or encrypted
/// data measures ~7.95 on a 4 KiB sample; text 4-6. At 7.5 Huffman coding
/// alone could save at most ~6%, and deflate rarely finds matches in such
/// data, so trying costs its whole speed (~100-170 MB/s) for nothing.
const INCOMPRESSIBLE_BITS: f64 = 7.5;

/// How the last object was stored (for tests and statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub objects: u64,
    pub duplicates: u64,
    /// Objects stored uncompressed because they looked incompressible.
    pub stored: u64,
    pub raw_bytes: u64,
    pub packed_bytes: u64,
}

/// The deflate level for compressible objects (libdeflate's scale, 0-12).
///
/// Measured on 8 KiB chunks of the benchmark data (CPU time of one thread,
/// share of the input left): SQL dump, libdeflate 1: 166 MB/s, 0.346;
/// zlib-rs 2 (the level used before): 104 MB/s, 0.351; libdeflate 6:
/// 90 MB/s, 0.328. Source files: 134 MB/s 0.363 vs 87 MB/s 0.369. Level 1
/// is faster and smaller than what bup writes (its zlib level 1); higher
/// levels buy 2-5% of space for 1.5-2x the CPU.
pub const DEFAULT_LEVEL: u32 = 1;

pub struct PackWriter {
    objects_dir: PathBuf,
    pack_dir: PathBuf,
    level: u32,
    size_limit: u64,
    object_limit: u32,
    current: Option<OpenPack>,
    /// Every id written by this writer, including packs already rolled over.
    written: HashSet<ObjectId>,
    published: Vec<PathBuf>,
    /// Made at the first [`write`](Self::write): a pipeline that
    /// compresses on its own threads never needs it.
    compressor: Option<Compressor>,
    header: Vec<u8>,
    stats: WriteStats,
}

/// Turns object bytes into the zlib stream of a pack entry, storing
/// (level 0) what does not compress. Owns its deflate state and output
/// buffer so that both are reused across objects: one per thread in a
/// parallel pipeline.
pub struct Compressor {
    deflate: libdeflater::Compressor,
    /// Output buffer; only ever grows (a fresh or zero-filled buffer per
    /// object costs page faults and memsets), shrunk after a huge object.
    out: Vec<u8>,
}

/// An output buffer larger than this (after an unusually large object) is
/// released at the next ordinary object.
const OUT_KEEP: usize = 1 << 20;

impl Compressor {
    /// A compressor for deflate `level` (libdeflate's scale, clamped to
    /// 0..=12).
    pub fn new(level: u32) -> Compressor {
        let level = libdeflater::CompressionLvl::new(level.min(12) as i32)
            .expect("levels 0..=12 are valid");
        Compressor {
            deflate: libdeflater::Compressor::new(level),
            out: Vec::new(),
        }
    }

    /// The zlib stream of `data`: deflated, or stored (level 0) when it does
    /// not compress, first by a sample test, then by the real result.
    /// Returns the stream and whether it was stored. The slice is valid
    /// until the next call.
    pub fn compress(&mut self, data: &[u8]) -> (&[u8], bool) {
        let limit = stored_len(data.len());
        if self.out.len() > OUT_KEEP && limit <= OUT_KEEP {
            self.out = Vec::new();
        }
        if self.out.len() < limit {
            self.out.resize(limit, 0);
        }
        let mut result = None;
        if !looks_incompressible(data) {
            // An output room of exactly the stored length: libdeflate gives
            // up (returns no length) as soon as deflate would not pay.
            if let Ok(n) = self.deflate.zlib_compress(data, &mut self.out[..limit]) {
                result = Some((n, false));
            }
        }
        let (n, stored) = result.unwrap_or_else(|| (store_into(data, &mut self.out), true));
        (&self.out[..n], stored)
    }
}

struct OpenPack {
    tmp: NamedTempFile,
    out: BufWriter<File>,
    offset: u64,
    /// Bytes already handed to the kernel's writeback (see `start_writeback`).
    writeback_started: u64,
    entries: Vec<IdxEntry>,
    /// The object count written in the header.
    planned: u32,
    /// SHA-1 of everything written so far: the trailer, if the pack ends
    /// with `planned` objects.
    hasher: Sha1,
}

impl PackWriter {
    /// A writer for the repository whose object directory is `objects_dir`
    /// (`<repo>/objects`). Nothing touches the disk until the first write.
    pub fn new(objects_dir: &Path) -> Result<PackWriter, Error> {
        let pack_dir = objects_dir.join("pack");
        if !pack_dir.is_dir() {
            return Err(Error::Io {
                action: "opening pack directory",
                path: pack_dir,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        Ok(PackWriter {
            objects_dir: objects_dir.to_path_buf(),
            pack_dir,
            level: DEFAULT_LEVEL,
            size_limit: DEFAULT_SIZE_LIMIT,
            object_limit: DEFAULT_OBJECT_LIMIT,
            current: None,
            written: HashSet::new(),
            published: Vec::new(),
            compressor: None,
            header: Vec::with_capacity(32),
            stats: WriteStats::default(),
        })
    }

    /// Deflate level for compressible objects (default [`DEFAULT_LEVEL`]).
    pub fn set_compression_level(&mut self, level: u32) {
        self.level = level.min(12);
        self.compressor = None;
    }

    /// Pack size after which the current pack is published and a new one begun.
    pub fn set_size_limit(&mut self, bytes: u64) {
        self.size_limit = bytes.max(PACK_HEADER_LEN + 1);
    }

    /// Number of objects after which the current pack is published and a
    /// new one begun (see [`DEFAULT_OBJECT_LIMIT`]). Applies to packs begun
    /// after the call.
    pub fn set_object_limit(&mut self, objects: u32) {
        self.object_limit = objects.max(1);
    }

    /// The deflate level this writer compresses with (for a pipeline that
    /// compresses on other threads with its own [`Compressor`]s).
    pub fn compression_level(&self) -> u32 {
        self.level
    }

    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    /// Whether this writer already wrote `id` (in any of its packs).
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.written.contains(id)
    }

    /// Hashes and writes an object; returns its id. Writing an id this writer
    /// already holds is a no-op (a pack must not hold duplicates).
    pub fn write(&mut self, kind: Kind, data: &[u8]) -> Result<ObjectId, Error> {
        let id = hash_object(kind, data);
        self.write_with_id(id, kind, data)?;
        Ok(id)
    }

    /// Writes an object whose id the caller computed with `hash_object`.
    pub fn write_with_id(&mut self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<(), Error> {
        debug_assert_eq!(id, hash_object(kind, data), "caller passed a wrong id");
        if self.written.contains(&id) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let level = self.level;
        let mut compressor = self
            .compressor
            .take()
            .unwrap_or_else(|| Compressor::new(level));
        let (zdata, stored) = compressor.compress(data);
        let result = self.append_compressed(id, kind, data.len() as u64, zdata, stored);
        self.compressor = Some(compressor);
        result
    }

    /// Appends an entry compressed elsewhere (by a [`Compressor`] on a worker
    /// thread): `zdata` is the complete zlib stream of the `size` bytes whose
    /// id is `id`. The caller vouches that they belong together; a duplicate
    /// id is skipped as in [`write_with_id`](Self::write_with_id).
    pub fn append_compressed(
        &mut self,
        id: ObjectId,
        kind: Kind,
        size: u64,
        zdata: &[u8],
        stored: bool,
    ) -> Result<(), Error> {
        if self.written.contains(&id) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.header.clear();
        encode_entry_header(kind, size, &mut self.header);
        if self.current.is_none() {
            self.current = Some(self.start_pack()?);
        }
        let pack = self.current.as_mut().expect("just opened");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.header);
        crc.update(zdata);
        let tmp_path = pack.tmp.path().to_path_buf();
        pack.out
            .write_all(&self.header)
            .and_then(|_| pack.out.write_all(zdata))
            .map_err(Error::io("writing pack", tmp_path))?;
        pack.hasher.update(&self.header);
        pack.hasher.update(zdata);
        pack.entries.push(IdxEntry {
            id,
            offset: pack.offset,
            crc32: crc.finalize(),
        });
        let entry_len = (self.header.len() + zdata.len()) as u64;
        pack.offset += entry_len;
        if pack.offset - pack.writeback_started >= fsutil::WRITEBACK_STEP {
            start_writeback(pack);
        }
        self.written.insert(id);
        self.stats.objects += 1;
        self.stats.stored += u64::from(stored);
        self.stats.raw_bytes += size;
        self.stats.packed_bytes += entry_len;
        if pack.offset >= self.size_limit || pack.entries.len() as u64 >= u64::from(pack.planned) {
            let pack = self.current.take().expect("open");
            let paths = self.publish(pack)?;
            self.published.extend(paths);
        }
        Ok(())
    }

    /// Publishes the current pack (if it holds anything) and returns the
    /// paths of every pack and idx this writer published, in order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, Error> {
        if let Some(pack) = self.current.take() {
            let paths = self.publish(pack)?;
            self.published.extend(paths);
        }
        Ok(std::mem::take(&mut self.published))
    }

    fn start_pack(&self) -> Result<OpenPack, Error> {
        let tmp = tempfile::Builder::new()
            .prefix("tmp_pack_")
            .rand_bytes(6)
            .tempfile_in(&self.objects_dir)
            .map_err(Error::io("creating temporary pack in", &self.objects_dir))?;
        let file = tmp
            .reopen()
            .map_err(Error::io("opening temporary pack", tmp.path()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; 12];
        header[..4].copy_from_slice(PACK_SIGNATURE);
        header[4..8].copy_from_slice(&2u32.to_be_bytes());
        // The planned count; `publish` patches it if the pack ends early.
        let planned = self.object_limit;
        header[8..12].copy_from_slice(&planned.to_be_bytes());
        out.write_all(&header)
            .map_err(Error::io("writing pack", tmp.path()))?;
        let mut hasher = Sha1::new();
        hasher.update(header);
        Ok(OpenPack {
            tmp,
            out,
            offset: PACK_HEADER_LEN,
            writeback_started: 0,
            entries: Vec::new(),
            planned,
            hasher,
        })
    }

    fn publish(&mut self, pack: OpenPack) -> Result<Vec<PathBuf>, Error> {
        let OpenPack {
            tmp,
            out,
            offset: _,
            writeback_started: _,
            mut entries,
            planned,
            hasher,
        } = pack;
        let tmp_path = tmp.path().to_path_buf();
        let mut file = out
            .into_inner()
            .map_err(|e| Error::io("writing pack", &tmp_path)(e.into_error()))?;
        let count = u32::try_from(entries.len()).map_err(|_| Error::Io {
            action: "writing pack (more than 2^32 objects)",
            path: tmp_path.clone(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        let io = |action| Error::io(action, &tmp_path);
        let hasher = if count == planned {
            // Hashed as written, header and count included.
            hasher
        } else {
            // Ended early: the count in the header changes, and with it
            // the hash of everything after it; read the pack back.
            file.write_all_at(&count.to_be_bytes(), 8)
                .map_err(io("patching object count of"))?;
            file.seek(SeekFrom::Start(0))
                .map_err(io("reading back pack"))?;
            let mut hasher = Sha1::new();
            // Small reads: each piece is hashed while still in the cache.
            let mut buf = vec![0u8; 128 << 10];
            loop {
                let n = file.read(&mut buf).map_err(io("reading back pack"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            hasher
        };
        let checksum: [u8; 20] = hasher.finalize().into();
        file.write_all(&checksum)
            .map_err(io("writing pack trailer"))?;
        set_read_only(&file).map_err(io("setting permissions of"))?;
        file.sync_all().map_err(io("syncing pack"))?;

        let idx_bytes = encode_v2(&mut entries, &checksum);
        let mut idx_tmp = tempfile::Builder::new()
            .prefix("tmp_idx_")
            .rand_bytes(6)
            .tempfile_in(&self.objects_dir)
            .map_err(Error::io("creating temporary idx in", &self.objects_dir))?;
        let idx_tmp_path = idx_tmp.path().to_path_buf();
        idx_tmp
            .write_all(&idx_bytes)
            .and_then(|_| set_read_only(idx_tmp.as_file()))
            .and_then(|_| idx_tmp.as_file().sync_all())
            .map_err(Error::io("writing idx", &idx_tmp_path))?;

        let name = format!("pack-{}", ObjectId(checksum));
        let pack_path = self.pack_dir.join(format!("{name}.pack"));
        let idx_path = self.pack_dir.join(format!("{name}.idx"));
        tmp.persist(&pack_path)
            .map_err(|e| Error::io("publishing pack as", &pack_path)(e.error))?;
        idx_tmp
            .persist(&idx_path)
            .map_err(|e| Error::io("publishing idx as", &idx_path)(e.error))?;
        fsync_dir(&self.pack_dir)?;
        remove_bup_caches(&self.pack_dir)?;
        Ok(vec![pack_path, idx_path])
    }
}

/// Starts writeback of what has reached the pack file so far (see
/// [`fsutil::start_writeback`]).
fn start_writeback(pack: &mut OpenPack) {
    let written = pack.offset - pack.out.buffer().len() as u64;
    fsutil::start_writeback(pack.out.get_ref(), pack.writeback_started, written);
    pack.writeback_started = pack.writeback_started.max(written);
}

/// git makes packs and indexes read-only; so do we.
fn set_read_only(file: &File) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(0o444))
}

/// Length of `n` bytes as zlib stored blocks: 2-byte header, 5 bytes per
/// block of up to 65535 bytes, 4-byte Adler-32.
fn stored_len(n: usize) -> usize {
    2 + 5 * n.div_ceil(65535).max(1) + n + 4
}

/// Whether a byte histogram of (a sample of) `data` says deflate would not
/// pay. A wrong "incompressible" costs some repository space, never data.
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE_MIN {
        return false;
    }
    // Four interleaved tables: consecutive equal bytes would otherwise
    // make each increment wait for the previous one (a store-to-load
    // chain); this runs over most of a save's bytes.
    let mut counts = [[0u32; 256]; 4];
    let mut n = 0usize;
    let mut count = |piece: &[u8]| {
        let mut quads = piece.chunks_exact(4);
        for q in &mut quads {
            counts[0][usize::from(q[0])] += 1;
            counts[1][usize::from(q[1])] += 1;
            counts[2][usize::from(q[2])] += 1;
            counts[3][usize::from(q[3])] += 1;
        }
        for &b in quads.remainder() {
            counts[0][usize::from(b)] += 1;
        }
        n += piece.len();
    };
    if data.len() <= SAMPLE_WHOLE {
        count(data);
    } else {
        let step = (data.len() - SAMPLE_PIECE) / 3;
        for i in 0..4 {
            count(&data[i * step..i * step + SAMPLE_PIECE]);
        }
    }
    // H = log2(n) - sum(c * log2(c)) / n
    let sum: f64 = (0..256)
        .map(|b| counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b])
        .filter(|&c| c > 1)
        .map(|c| {
            let c = f64::from(c);
            c * c.log2()
        })
        .sum();
    let n = n as f64;
    n.log2() - sum / n > INCOMPRESSIBLE_BITS
}

/// Writes `data` at the start of `out` (at least [`stored_len`] long) as a
/// zlib stream of stored blocks (what zlib level 0 makes), without running
/// deflate at all: header 78 01, blocks of at most 65,535 bytes each with
/// its length and the length's complement, and the Adler-32 of the data.
/// Returns the length written.
fn store_into(data: &[u8], out: &mut [u8]) -> usize {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&[0x78, 0x01]);
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        put(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        let len = block.len() as u16;
        put(&[u8::from(last)]);
        put(&len.to_le_bytes());
        put(&(!len).to_le_bytes());
        put(block);
    }
    put(&zlib_rs::adler32::adler32(1, data).to_be_bytes());
    at
}

/// bup regenerates these caches; a stale one could claim an object exists.
/// Deletes bup's caches (`*.midx`, `bup.bloom`), which stop covering
/// every pack when one is added or removed.
pub(crate) fn remove_bup_caches(pack_dir: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(pack_dir).map_err(Error::io("listing", pack_dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", pack_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".midx") || name == "bup.bloom" {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing bup cache", entry.path())(e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(z)
            .read_to_end(&mut out)
            .expect("valid zlib stream");
        out
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn stored_blocks_are_valid_zlib_of_the_predicted_length() {
        for n in [0usize, 1, 1000, 65535, 65536, 131070, 200_000] {
            let data = noise(n);
            let mut out = vec![0u8; stored_len(n)];
            let len = store_into(&data, &mut out);
            assert_eq!(len, stored_len(n), "n={n}");
            assert_eq!(inflate(&out), data, "n={n}");
        }
    }

    #[test]
    fn compressor_stores_noise_and_deflates_text() {
        let mut c = Compressor::new(DEFAULT_LEVEL);
        let noisy = noise(100_000);
        let (z, stored) = c.compress(&noisy);
        assert!(stored);
        assert_eq!(z.len(), stored_len(noisy.len()));
        assert_eq!(inflate(z), noisy);
        let text: Vec<u8> = (0..3000)
            .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row {i}');\n").into_bytes())
            .collect();
        let (z, stored) = c.compress(&text);
        assert!(!stored);
        assert!(z.len() < text.len() / 3);
        assert_eq!(inflate(z), text);
        // Small objects skip the histogram: deflate is tried, and never
        // gives more than the stored length (libdeflate may emit stored
        // blocks itself, or give up and leave it to `store_into`).
        let small = noise(3000);
        let (z, _) = c.compress(&small);
        assert!(z.len() <= stored_len(small.len()));
        assert_eq!(inflate(z), small);
        // Half zeros, half noise: compressible, so deflated.
        let mut mixed = vec![0u8; 8192];
        mixed.extend_from_slice(&noise(8192));
        let (z, stored) = c.compress(&mixed);
        assert!(!stored);
        assert_eq!(inflate(z), mixed);
        // A huge object, then a small one: both right (the buffer shrinks).
        let huge = noise(3 << 20);
        assert_eq!(inflate(c.compress(&huge).0), huge);
        let (z, _) = c.compress(b"hello hello hello");
        assert_eq!(inflate(z), b"hello hello hello");
        assert!(c.out.len() <= OUT_KEEP);
        let (z, _) = c.compress(b"");
        assert_eq!(inflate(z), b"");
    }

    #[test]
    fn entropy_test_separates_uniform_bytes_from_narrower_sets() {
        // Exactly 8 bits per byte, whole (<= 16 KiB) and sampled (> 16 KiB).
        let all: Vec<u8> = (0..=255u8).cycle().take(8192).collect();
        assert!(looks_incompressible(&all));
        let all: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        assert!(looks_incompressible(&all));
        // 7 bits per byte, and 1 bit: below the threshold.
        let half: Vec<u8> = (0..128u8).cycle().take(8191).collect();
        assert!(!looks_incompressible(&half));
        let two: Vec<u8> = [b'a', b'b'].iter().copied().cycle().take(50_001).collect();
        assert!(!looks_incompressible(&two));
        // Too small to judge, however random.
        assert!(!looks_incompressible(&noise(SAMPLE_MIN - 1)));
        assert!(looks_incompressible(&noise(SAMPLE_MIN)));
    }

    #[test]
    fn stored_length_formula_matches_zlib_level_0() {
        use flate2::{Compress, Compression, FlushCompress};
        for n in [0usize, 1, 1000, 65535, 65536, 200_000] {
            let data = vec![0x5au8; n];
            let mut z = Compress::new(Compression::none(), true);
            let mut out = Vec::with_capacity(n + 1024);
            z.compress_vec(&data, &mut out, FlushCompress::Finish)
                .unwrap();
            assert!(
                out.len() <= stored_len(n) + 5,
                "n={n}: {} vs {}",
                out.len(),
                stored_len(n)
            );
        }
    }
}
