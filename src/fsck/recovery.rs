//! Recovery data for packs (`rewind fsck --generate`, `--repair`): a
//! Reed-Solomon code over each pack and its index, kept beside the
//! repository's own files in `rewind/recovery/pack-<sha>.recovery`.
//!
//! Not in `objects/pack`: `bup fsck` takes `pack-*.par2` there for its own
//! and git counts unknown files there as garbage; `rewind/` is ours, and
//! git, `git gc` and bup ignore it.
//!
//! A file (pack or idx) is cut into blocks of `block` bytes (the last one
//! padded with zeros). Blocks are dealt round-robin into `stripes`
//! stripes: block `i` is original shard `i / stripes` of stripe
//! `i % stripes`. So a damaged run of contiguous blocks (a bad sector
//! range, a torn write) costs every stripe about the same share, and each
//! stripe repairs its share alone with its `m` parity shards (about 10% of
//! its `k` data shards). Memory is one stripe (at most 64 MiB). Each data
//! and parity block has a CRC-32 in the file, which locates the damage:
//! Reed-Solomon decoding needs to know which shards are wrong.
//!
//! Layout (big-endian):
//! ```text
//! "RWRECOV1"
//! 2 sections (pack, idx), each: length u64, last 20 bytes of the file
//!   (its trailer checksum), block u32, stripes u32, k u32, m u32
//! per section: CRC-32 of each data block (stripes * k, in stripe order),
//!   then of each parity block (stripes * m)
//! SHA-1 of everything above
//! per section: parity blocks, stripes * m * block bytes
//! ```
//! Every field is untrusted: sizes are checked against limits and against
//! the file's length before anything is allocated or read.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RWRECOV1";
const SECTION_LEN: usize = 8 + 20 + 16;
pub const HEAD_LEN: usize = 8 + 2 * SECTION_LEN;
/// Parity as a share of the data, in percent.
const PARITY_PERCENT: u64 = 10;
const MIN_BLOCK: u64 = 16;
const MAX_BLOCK: u64 = 1 << 20;
/// Blocks a file is cut into, at least (small files) or about.
const TARGET_BLOCKS: u64 = 4096;
const STRIPE_BYTES: u64 = 16 << 20;
/// Limits for what a file may claim (far above what we write).
const MAX_FILE_LEN: u64 = 1 << 42;
const MAX_STRIPES: u64 = 1 << 20;
const MAX_TABLES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: damaged recovery data ({detail}): generate it again with `rewind fsck --generate` once the pack is sound", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{what}: {damaged} damaged blocks in stripe {stripe}, only {usable} parity blocks to repair them: beyond what the recovery data can repair")]
    Beyond {
        what: String,
        stripe: u64,
        damaged: u64,
        usable: u64,
    },
    #[error("Reed-Solomon: {0}")]
    Code(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How one file is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    pub len: u64,
    pub tail: [u8; 20],
    pub block: u64,
    pub stripes: u64,
    pub k: u64,
    pub m: u64,
}

impl Section {
    /// The layout for a file of `len` bytes.
    pub fn for_len(len: u64, tail: [u8; 20]) -> Section {
        let block = len
            .div_ceil(TARGET_BLOCKS)
            .next_multiple_of(MIN_BLOCK)
            .clamp(MIN_BLOCK, MAX_BLOCK);
        let n = len.div_ceil(block).max(1);
        let stripe_bytes = STRIPE_BYTES.max(64 * block);
        let stripes = (n * block).div_ceil(stripe_bytes).max(1);
        let k = n.div_ceil(stripes);
        let m = (k * PARITY_PERCENT).div_ceil(100).max(1);
        Section {
            len,
            tail,
            block,
            stripes,
            k,
            m,
        }
    }

    fn data_blocks(&self) -> u64 {
        self.stripes * self.k
    }

    fn parity_blocks(&self) -> u64 {
        self.stripes * self.m
    }

    fn parity_bytes(&self) -> u64 {
        self.parity_blocks() * self.block
    }

    /// Checks what a file claims, so that every later computation fits.
    fn check(&self) -> Result<(), String> {
        if self.len > MAX_FILE_LEN {
            return Err(format!("length {} is too large", self.len));
        }
        if self.block < 2 || self.block > MAX_BLOCK || !self.block.is_multiple_of(2) {
            return Err(format!("block size {} is invalid", self.block));
        }
        if self.stripes == 0 || self.stripes > MAX_STRIPES {
            return Err(format!("{} stripes is invalid", self.stripes));
        }
        if !ReedSolomonEncoder::supports(self.k as usize, self.m as usize) {
            return Err(format!(
                "{} + {} shards per stripe is invalid",
                self.k, self.m
            ));
        }
        if self.data_blocks() * self.block < self.len {
            return Err("the blocks do not cover the file".into());
        }
        if self.data_blocks() * self.block > self.len + self.stripes * self.block {
            return Err("more blocks than the file needs".into());
        }
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.tail);
        for v in [self.block, self.stripes, self.k, self.m] {
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
    }

    fn decode(b: &[u8]) -> Section {
        let u32_at = |i: usize| u64::from(u32::from_be_bytes(b[i..i + 4].try_into().expect("4")));
        Section {
            len: u64::from_be_bytes(b[..8].try_into().expect("8")),
            tail: b[8..28].try_into().expect("20"),
            block: u32_at(28),
            stripes: u32_at(32),
            k: u32_at(36),
            m: u32_at(40),
        }
    }

    /// Block `j` of stripe `g` is block `j * stripes + g` of the file.
    fn block_of(&self, g: u64, j: u64) -> u64 {
        j * self.stripes + g
    }
}

/// A parsed recovery file: layouts and CRC tables (parity read on demand).
pub struct Recovery {
    pub path: PathBuf,
    pub sections: [Section; 2],
    /// Per section: data CRCs (stripe-major: `g * k + j`), parity CRCs
    /// (`g * m + r`).
    crcs: Tables,
    /// Where each section's parity starts in the file.
    parity_at: [u64; 2],
    file: File,
}

/// Per section: data CRCs and parity CRCs.
type Tables = [(Vec<u32>, Vec<u32>); 2];

/// The tables' length for these sections, if it is within limits.
fn tables_len(sections: &[Section; 2]) -> Option<u64> {
    let mut total = 0u64;
    for s in sections {
        total = total.checked_add(
            s.data_blocks()
                .checked_add(s.parity_blocks())?
                .checked_mul(4)?,
        )?;
    }
    (total <= MAX_TABLES).then_some(total)
}

/// Parses the front of a recovery file (head, tables, SHA-1) of a file
/// `file_len` bytes long. Pure: the fuzz target calls it.
pub fn parse_front(front: &[u8], file_len: u64) -> Result<([Section; 2], Tables), String> {
    if front.len() < HEAD_LEN || &front[..8] != MAGIC {
        return Err("not a rewind recovery file".into());
    }
    let sections = [
        Section::decode(&front[8..8 + SECTION_LEN]),
        Section::decode(&front[8 + SECTION_LEN..HEAD_LEN]),
    ];
    for s in &sections {
        s.check()?;
    }
    let tables = tables_len(&sections).ok_or("its tables are too large")?;
    let front_len = HEAD_LEN as u64 + tables + 20;
    if front.len() as u64 != front_len {
        return Err(format!(
            "its front is {} bytes, not {front_len}",
            front.len()
        ));
    }
    let parity: u64 = sections.iter().map(|s| s.parity_bytes()).sum();
    if front_len + parity != file_len {
        return Err(format!(
            "it is {file_len} bytes, its layout says {}",
            front_len + parity
        ));
    }
    let (body, sum) = front.split_at(front.len() - 20);
    if Sha1::digest(body)[..] != sum[..] {
        return Err("checksum mismatch".into());
    }
    let mut words = body[HEAD_LEN..]
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes(w.try_into().expect("4")));
    let mut take = |n: u64| -> Vec<u32> { words.by_ref().take(n as usize).collect() };
    let crcs = [
        (
            take(sections[0].data_blocks()),
            take(sections[0].parity_blocks()),
        ),
        (
            take(sections[1].data_blocks()),
            take(sections[1].parity_blocks()),
        ),
    ];
    Ok((sections, crcs))
}

impl Recovery {
    pub fn load(path: &Path) -> Result<Recovery, RecoveryError> {
        let corrupt = |detail: String| RecoveryError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::open(path).map_err(io(path))?;
        let file_len = file.metadata().map_err(io(path))?.len();
        let mut head = [0u8; HEAD_LEN];
        file.read_exact_at(&mut head, 0)
            .map_err(|_| corrupt(format!("it is only {file_len} bytes")))?;
        if &head[..8] != MAGIC {
            return Err(corrupt("not a rewind recovery file".into()));
        }
        let sections = [
            Section::decode(&head[8..8 + SECTION_LEN]),
            Section::decode(&head[8 + SECTION_LEN..]),
        ];
        for s in &sections {
            s.check().map_err(corrupt)?;
        }
        let tables = tables_len(&sections).ok_or_else(|| corrupt("tables too large".into()))?;
        let front_len = HEAD_LEN as u64 + tables + 20;
        if front_len > file_len {
            return Err(corrupt(format!("it is only {file_len} bytes")));
        }
        let mut front = vec![0u8; front_len as usize];
        file.read_exact_at(&mut front, 0).map_err(io(path))?;
        let (sections, crcs) = parse_front(&front, file_len).map_err(corrupt)?;
        let parity_at = [front_len, front_len + sections[0].parity_bytes()];
        Ok(Recovery {
            path: path.to_path_buf(),
            sections,
            crcs,
            parity_at,
            file,
        })
    }

    /// Reads parity block `r` of stripe `g` of section `sec`; `None` if its
    /// CRC says it is damaged.
    fn parity(&self, sec: usize, g: u64, r: u64) -> Result<Option<Vec<u8>>, RecoveryError> {
        let s = &self.sections[sec];
        let n = g * s.m + r;
        let mut buf = vec![0u8; s.block as usize];
        self.file
            .read_exact_at(&mut buf, self.parity_at[sec] + n * s.block)
            .map_err(io(&self.path))?;
        Ok((crc32fast::hash(&buf) == self.crcs[sec].1[n as usize]).then_some(buf))
    }
}

/// Reads block `i` of `file` (zeros past its end, or when absent).
fn read_block(
    file: Option<&File>,
    path: &Path,
    s: &Section,
    i: u64,
) -> Result<Vec<u8>, RecoveryError> {
    let mut buf = vec![0u8; s.block as usize];
    let start = i * s.block;
    let want = s.len.saturating_sub(start).min(s.block) as usize;
    if let Some(file) = file {
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..want], start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(path)(e)),
            }
        }
    }
    Ok(buf)
}

/// Writes the parity of `src` (`s.len` bytes) into `out` at `parity_at`;
/// returns the data and parity CRC tables.
fn encode_section(
    src: &File,
    src_path: &Path,
    s: &Section,
    out: &File,
    out_path: &Path,
    parity_at: u64,
) -> Result<(Vec<u32>, Vec<u32>), RecoveryError> {
    let mut data_crcs = Vec::with_capacity(s.data_blocks() as usize);
    let mut parity_crcs = Vec::with_capacity(s.parity_blocks() as usize);
    let mut enc = ReedSolomonEncoder::new(s.k as usize, s.m as usize, s.block as usize)
        .map_err(|e| RecoveryError::Code(e.to_string()))?;
    for g in 0..s.stripes {
        for j in 0..s.k {
            let block = read_block(Some(src), src_path, s, s.block_of(g, j))?;
            data_crcs.push(crc32fast::hash(&block));
            enc.add_original_shard(&block)
                .map_err(|e| RecoveryError::Code(e.to_string()))?;
        }
        let result = enc
            .encode()
            .map_err(|e| RecoveryError::Code(e.to_string()))?;
        for (r, shard) in result.recovery_iter().enumerate() {
            parity_crcs.push(crc32fast::hash(shard));
            let at = parity_at + (g * s.m + r as u64) * s.block;
            out.write_all_at(shard, at).map_err(io(out_path))?;
        }
    }
    Ok((data_crcs, parity_crcs))
}

/// The last 20 bytes of a file (a pack's or an idx's own checksum).
pub fn tail_of(file: &File, len: u64, path: &Path) -> Result<[u8; 20], RecoveryError> {
    let mut tail = [0u8; 20];
    if len >= 20 {
        file.read_exact_at(&mut tail, len - 20).map_err(io(path))?;
    }
    Ok(tail)
}

/// Writes the recovery file `dest` for the pack and idx at these paths,
/// atomically (temporary file in the same directory, fsync, rename, fsync
/// of the directory).
pub fn generate(pack: &Path, idx: &Path, dest: &Path) -> Result<(), RecoveryError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = [
        File::open(pack).map_err(io(pack))?,
        File::open(idx).map_err(io(idx))?,
    ];
    let paths = [pack, idx];
    let mut sections = [Section::for_len(0, [0; 20]); 2];
    for i in 0..2 {
        let len = files[i].metadata().map_err(io(paths[i]))?.len();
        sections[i] = Section::for_len(len, tail_of(&files[i], len, paths[i])?);
    }
    let tables = tables_len(&sections).expect("our own layouts fit");
    let front_len = HEAD_LEN as u64 + tables + 20;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp_recovery_")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let out = tmp.as_file();
    let mut front = Vec::with_capacity(front_len as usize);
    front.extend_from_slice(MAGIC);
    sections[0].encode(&mut front);
    sections[1].encode(&mut front);
    let mut at = front_len;
    let mut crcs = Vec::new();
    for i in 0..2 {
        crcs.push(encode_section(
            &files[i],
            paths[i],
            &sections[i],
            out,
            tmp.path(),
            at,
        )?);
        at += sections[i].parity_bytes();
    }
    for (data, parity) in &crcs {
        for c in data.iter().chain(parity) {
            front.extend_from_slice(&c.to_be_bytes());
        }
    }
    let sum: [u8; 20] = Sha1::digest(&front).into();
    front.extend_from_slice(&sum);
    out.write_all_at(&front, 0).map_err(io(tmp.path()))?;
    out.sync_all().map_err(io(tmp.path()))?;
    use std::os::unix::fs::PermissionsExt;
    out.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io(tmp.path()))?;
    tmp.persist(dest).map_err(|e| io(dest)(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What repairing one section found.
#[derive(Debug, Default)]
pub struct SectionRepair {
    /// Blocks that were damaged (and are repaired in the output).
    pub damaged_blocks: u64,
}

/// Rebuilds section `sec` of `rec` from the current file at `current`
/// (damaged, shorter, longer or missing) into a new temporary file in
/// `tmp_dir`. `Ok(None)`: the file is intact, nothing to write.
pub fn repair_section(
    rec: &Recovery,
    sec: usize,
    current: &Path,
    tmp_dir: &Path,
) -> Result<Option<(tempfile::NamedTempFile, SectionRepair)>, RecoveryError> {
    let s = rec.sections[sec];
    let what = crate::fsck::packs::file_name(current);
    let file = File::open(current).ok();
    let cur_len = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.len());
    let mut fixes: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut damaged_total = 0;
    let mut dec = None;
    for g in 0..s.stripes {
        let mut damaged = Vec::new();
        for j in 0..s.k {
            let block = read_block(file.as_ref(), current, &s, s.block_of(g, j))?;
            if crc32fast::hash(&block) != rec.crcs[sec].0[(g * s.k + j) as usize] {
                damaged.push(j);
            }
        }
        if damaged.is_empty() {
            continue;
        }
        damaged_total += damaged.len() as u64;
        let mut parity = Vec::new();
        for r in 0..s.m {
            if parity.len() >= damaged.len() {
                break;
            }
            if let Some(p) = rec.parity(sec, g, r)? {
                parity.push((r, p));
            }
        }
        if parity.len() < damaged.len() {
            return Err(RecoveryError::Beyond {
                what,
                stripe: g,
                damaged: damaged.len() as u64,
                usable: parity.len() as u64,
            });
        }
        let code = |e: reed_solomon_simd::Error| RecoveryError::Code(e.to_string());
        let dec = match dec.as_mut() {
            Some(d) => d,
            None => dec.insert(
                ReedSolomonDecoder::new(s.k as usize, s.m as usize, s.block as usize)
                    .map_err(code)?,
            ),
        };
        for j in 0..s.k {
            if damaged.binary_search(&j).is_err() {
                let block = read_block(file.as_ref(), current, &s, s.block_of(g, j))?;
                dec.add_original_shard(j as usize, &block).map_err(code)?;
            }
        }
        for (r, p) in &parity {
            dec.add_recovery_shard(*r as usize, p).map_err(code)?;
        }
        let result = dec.decode().map_err(code)?;
        for &j in &damaged {
            let block = result
                .restored_original(j as usize)
                .ok_or_else(|| RecoveryError::Code(format!("block {j} was not restored")))?;
            if crc32fast::hash(block) != rec.crcs[sec].0[(g * s.k + j) as usize] {
                return Err(RecoveryError::Corrupt {
                    path: rec.path.clone(),
                    detail: format!("stripe {g} decodes to blocks that fail their CRC-32"),
                });
            }
            fixes.push((s.block_of(g, j), block.to_vec()));
        }
    }
    if fixes.is_empty() && cur_len == Some(s.len) {
        return Ok(None);
    }
    fixes.sort_by_key(|f| f.0);
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp_repair_")
        .tempfile_in(tmp_dir)
        .map_err(io(tmp_dir))?;
    let mut fixes = fixes.into_iter().peekable();
    let n = s.len.div_ceil(s.block);
    for i in 0..n {
        let block = match fixes.peek() {
            Some((b, _)) if *b == i => fixes.next().expect("peeked").1,
            _ => read_block(file.as_ref(), current, &s, i)?,
        };
        let keep = (s.len - i * s.block).min(s.block) as usize;
        tmp.write_all(&block[..keep]).map_err(io(current))?;
    }
    tmp.as_file().sync_all().map_err(io(current))?;
    Ok(Some((
        tmp,
        SectionRepair {
            damaged_blocks: damaged_total,
        },
    )))
}

/// Where the recovery file of the pack `pack-<sha>` of the repository at
/// `repo` lives.
pub fn path_for(repo: &Path, pack_name: &str) -> PathBuf {
    repo.join("rewind/recovery")
        .join(format!("{pack_name}.recovery"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contiguous run of a few percent of the blocks must be
    /// repairable at every size the layout produces.
    #[test]
    fn layout_spreads_parity_over_stripes() {
        for len in [1_072u64, 5_000, 1 << 20, 100 << 20, 1 << 30, 5 << 30] {
            let s = Section::for_len(len, [0; 20]);
            s.check().unwrap();
            let n = len.div_ceil(s.block);
            // A run of 5% of the file touches at most this many blocks...
            let run = (len / 20).div_ceil(s.block) + 1;
            // ...dealt round-robin over the stripes.
            let per_stripe = run.div_ceil(s.stripes);
            assert!(per_stripe <= s.m, "len {len}: {s:?} n {n} run {run}");
            assert!(s.k * s.block <= (64 << 20) + s.block, "{s:?}");
        }
    }

    #[test]
    fn front_with_absurd_sizes_is_an_error_not_an_allocation() {
        let mut front = MAGIC.to_vec();
        let s = Section {
            len: u64::MAX,
            tail: [0; 20],
            block: 0xffff_fffe,
            stripes: 0xffff_ffff,
            k: 0xffff_ffff,
            m: 0xffff_ffff,
        };
        s.encode(&mut front);
        s.encode(&mut front);
        assert!(parse_front(&front, 1 << 40).is_err());
        assert!(parse_front(&front[..10], 10).is_err());
    }
}
