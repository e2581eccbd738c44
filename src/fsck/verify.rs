//! Checking every pack byte by byte: the frame (header, object count,
//! trailer SHA-1 over the whole pack, the trailer the idx records), that
//! the idx's entries tile the pack exactly, and every object (CRC-32 of its
//! raw bytes against the idx, inflated to its declared size, deltas
//! applied, SHA-1 against the id the idx gives it).
//!
//! One reader thread reads the packs front to back in large blocks of whole
//! entries (sequential reads, whatever the disk) and hashes them for the
//! trailer; worker threads, one per core, take the blocks and check their
//! objects. At most a few blocks are in flight, so memory is bounded by the
//! block size, not by the pack.

use super::packs::{check_raw, Packs};
use crate::object::{hash_object, Kind, ObjectId};
use crate::pack::inflate::inflate_exact;
use crate::pack::{EntryKind, PACK_HEADER_LEN, PACK_SIGNATURE, PACK_TRAILER_LEN};
use crate::progress::Progress;
use crate::repo::Objects;
use sha1::{Digest, Sha1};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

/// Bytes of whole entries read at once (an entry bigger than this is read
/// alone).
const BLOCK: u64 = 4 << 20;
/// An entry bigger than this is not held in a block: it is hashed for the
/// trailer in pieces and its object read on its own by a worker.
const HUGE_ENTRY: u64 = 64 << 20;

/// Something wrong in one pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Index into `Packs::packs`.
    pub pack: usize,
    /// The object, when the damage is in one entry.
    pub id: Option<ObjectId>,
    pub kind: Option<Kind>,
    pub offset: Option<u64>,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Verified {
    pub packs: u64,
    pub objects: u64,
    /// Bytes of packs read.
    pub bytes: u64,
    pub findings: Vec<Finding>,
}

impl Verified {
    /// Whether pack `p` has any finding.
    pub fn pack_damaged(&self, p: usize) -> bool {
        self.findings.iter().any(|f| f.pack == p)
    }
}

enum Job {
    /// `bytes` are the pack's bytes from offset `start`, holding entries of
    /// ranks `ranks` whole.
    Block {
        pack: usize,
        start: u64,
        bytes: Vec<u8>,
        ranks: std::ops::Range<usize>,
    },
    /// One entry too big for a block.
    Huge { pack: usize, rank: usize },
}

/// Checks the packs whose positions are in `which`.
pub fn verify(
    packs: &Packs,
    which: &[usize],
    objects: &dyn Objects,
    progress: &Progress,
) -> Verified {
    let findings = Mutex::new(Vec::new());
    let object_count = AtomicU64::new(0);
    let total: u64 = which.iter().map(|&p| packs.packs[p].len).sum();
    let total_objects: u64 = which
        .iter()
        .filter_map(|&p| packs.packs[p].index.as_ref())
        .map(|i| i.len() as u64)
        .sum();
    progress.set_totals(total, total_objects);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16);
    let (send, receive) = sync_channel::<Job>(workers * 2);
    let receive = Mutex::new(receive);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| work(packs, &receive, objects, progress, &findings, &object_count));
        }
        // The reader runs here; dropping `send` at its end stops the workers.
        for &p in which {
            read_pack(packs, p, &send, progress, &findings);
        }
        drop(send);
    });
    let mut findings = findings.into_inner().unwrap_or_else(|e| e.into_inner());
    findings.sort_by_key(|f| (f.pack, f.offset));
    Verified {
        packs: which.len() as u64,
        objects: object_count.into_inner(),
        bytes: total,
        findings,
    }
}

fn record(findings: &Mutex<Vec<Finding>>, f: Finding) {
    findings.lock().unwrap_or_else(|e| e.into_inner()).push(f);
}

fn pack_finding(pack: usize, detail: String) -> Finding {
    Finding {
        pack,
        id: None,
        kind: None,
        offset: None,
        detail,
    }
}

/// Reads pack `p` front to back: frame checks and the trailer here, the
/// objects handed to the workers.
fn read_pack(
    packs: &Packs,
    p: usize,
    send: &std::sync::mpsc::SyncSender<Job>,
    progress: &Progress,
    findings: &Mutex<Vec<Finding>>,
) {
    let pack = &packs.packs[p];
    let fail = |detail: String| record(findings, pack_finding(p, detail));
    let Some(index) = pack.index.as_ref() else {
        fail(pack.idx_error.clone().unwrap_or_default());
        return;
    };
    let Some(file) = pack.file.as_ref() else {
        fail(pack.pack_error.clone().unwrap_or_default());
        return;
    };
    let io_fail = |e: std::io::Error| {
        fail(format!("reading {}: {e}", pack.pack_path.display()));
    };
    let n = index.len();
    if pack.len < PACK_HEADER_LEN + PACK_TRAILER_LEN {
        fail(format!("pack is too short ({} bytes)", pack.len));
        all_entries_lost(packs, p, 0, findings);
        return;
    }
    let mut head = [0u8; PACK_HEADER_LEN as usize];
    if let Err(e) = file.read_exact_at(&mut head, 0) {
        return io_fail(e);
    }
    let version = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let count = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if &head[..4] != PACK_SIGNATURE || !(version == 2 || version == 3) {
        fail("pack header is damaged".into());
    } else if count as usize != n {
        fail(format!("pack header says {count} objects, its index {n}"));
    }
    let mut sha = Sha1::new();
    sha.update(head);
    let data_end = pack.data_end();
    let mut pos = PACK_HEADER_LEN;
    let mut rank = 0usize;
    while rank < n {
        let (_, first) = index.by_rank(rank).expect("rank < len");
        if first.offset != pos {
            fail(format!(
                "bytes {pos}..{} belong to no object of the index",
                first.offset
            ));
            if first.offset < pos || first.offset > data_end {
                all_entries_lost(packs, p, rank, findings);
                break;
            }
            if let Err(e) = hash_range(file, pos, first.offset, &mut sha) {
                return io_fail(e);
            }
            pos = first.offset;
        }
        // Gather whole entries up to BLOCK bytes (at least one).
        let start = pos;
        let mut end = start;
        let mut last = rank;
        while last < n {
            let (_, e) = index.by_rank(last).expect("rank < len");
            let e_end = e.next.unwrap_or(data_end);
            if e_end > data_end || e_end <= e.offset {
                break;
            }
            if last > rank && e_end - start > BLOCK {
                break;
            }
            end = e_end;
            last += 1;
            if end - start > BLOCK {
                break;
            }
        }
        if last == rank {
            // The entry at `rank` runs past the end of the pack.
            fail(format!(
                "the pack ends inside its entries (it is {} bytes): truncated or damaged",
                pack.len
            ));
            all_entries_lost(packs, p, rank, findings);
            pos = data_end;
            break;
        }
        if last == rank + 1 && end - start > HUGE_ENTRY {
            if let Err(e) = hash_range(file, start, end, &mut sha) {
                return io_fail(e);
            }
            progress.add_bytes_read(end - start);
            let _ = send.send(Job::Huge { pack: p, rank });
        } else {
            let mut bytes = vec![0u8; (end - start) as usize];
            if let Err(e) = file.read_exact_at(&mut bytes, start) {
                return io_fail(e);
            }
            sha.update(&bytes);
            progress.add_bytes_read(end - start);
            let _ = send.send(Job::Block {
                pack: p,
                start,
                bytes,
                ranks: rank..last,
            });
        }
        pos = end;
        rank = last;
    }
    if pos < data_end {
        fail(format!(
            "bytes {pos}..{data_end} after the last object belong to no object"
        ));
        if let Err(e) = hash_range(file, pos, data_end, &mut sha) {
            return io_fail(e);
        }
    }
    let mut trailer = [0u8; PACK_TRAILER_LEN as usize];
    if let Err(e) = file.read_exact_at(&mut trailer, data_end) {
        return io_fail(e);
    }
    progress.add_bytes_read(PACK_HEADER_LEN + PACK_TRAILER_LEN);
    let actual: [u8; 20] = sha.finalize().into();
    if actual != trailer {
        fail("the pack's trailer checksum does not match its content".into());
    }
    if &trailer != index.pack_checksum() {
        fail("the pack's trailer is not the one its index records".into());
    }
}

/// Records every entry from `rank` on as damaged: the pack does not hold it.
fn all_entries_lost(packs: &Packs, p: usize, from: usize, findings: &Mutex<Vec<Finding>>) {
    let Some(index) = packs.packs[p].index.as_ref() else {
        return;
    };
    for k in from..index.len() {
        let (id, e) = index.by_rank(k).expect("rank < len");
        record(
            findings,
            Finding {
                pack: p,
                id: Some(id),
                kind: None,
                offset: Some(e.offset),
                detail: "the entry lies beyond the end of the pack".into(),
            },
        );
    }
}

fn hash_range(file: &std::fs::File, from: u64, to: u64, sha: &mut Sha1) -> std::io::Result<()> {
    let mut buf = vec![0u8; (to - from).min(BLOCK) as usize];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        sha.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

fn work(
    packs: &Packs,
    jobs: &Mutex<Receiver<Job>>,
    objects: &dyn Objects,
    progress: &Progress,
    findings: &Mutex<Vec<Finding>>,
    count: &AtomicU64,
) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        match job {
            Job::Block {
                pack,
                start,
                bytes,
                ranks,
            } => {
                let index = packs.packs[pack]
                    .index
                    .as_ref()
                    .expect("read packs have one");
                for rank in ranks {
                    let (id, e) = index.by_rank(rank).expect("rank < len");
                    let from = (e.offset - start) as usize;
                    let to = e.next.map_or(bytes.len(), |n| (n - start) as usize);
                    let outcome = check_entry(
                        packs,
                        pack,
                        rank,
                        e.offset,
                        &bytes[from..to],
                        e.crc,
                        id,
                        objects,
                    );
                    count.fetch_add(1, Ordering::Relaxed);
                    progress.add_file();
                    if let Err((kind, detail)) = outcome {
                        record(
                            findings,
                            Finding {
                                pack,
                                id: Some(id),
                                kind,
                                offset: Some(e.offset),
                                detail,
                            },
                        );
                    }
                }
            }
            Job::Huge { pack, rank } => {
                let index = packs.packs[pack]
                    .index
                    .as_ref()
                    .expect("read packs have one");
                let (id, e) = index.by_rank(rank).expect("rank < len");
                count.fetch_add(1, Ordering::Relaxed);
                progress.add_file();
                if let Err(detail) = packs.read(pack, rank, objects) {
                    record(
                        findings,
                        Finding {
                            pack,
                            id: Some(id),
                            kind: None,
                            offset: Some(e.offset),
                            detail,
                        },
                    );
                }
            }
        }
    }
}

/// Checks one entry whose raw bytes are `raw`: its CRC-32, its stream and
/// its id. Deltas are resolved through `packs` (their bases are elsewhere
/// in the pack, or in other packs).
#[allow(clippy::too_many_arguments)]
fn check_entry(
    packs: &Packs,
    pack: usize,
    rank: usize,
    offset: u64,
    raw: &[u8],
    crc: Option<u32>,
    id: ObjectId,
    objects: &dyn Objects,
) -> Result<(), (Option<Kind>, String)> {
    // The kind first, so that a CRC failure still names a blob or a tree.
    let kind = crate::pack::parse_entry_header(offset, &raw[..raw.len().min(32)])
        .ok()
        .and_then(|h| match h.kind {
            EntryKind::Base(k) => Some(k),
            _ => None,
        });
    let header = check_raw(offset, raw, crc).map_err(|d| (kind, d))?;
    match header.kind {
        EntryKind::Base(kind) => {
            let zdata = &raw[(header.data_offset - offset) as usize..];
            let data = inflate_exact(zdata, header.size).map_err(|d| (Some(kind), d))?;
            if hash_object(kind, &data) != id {
                return Err((
                    Some(kind),
                    format!("content does not hash to its id ({} bytes)", data.len()),
                ));
            }
            Ok(())
        }
        EntryKind::OfsDelta { .. } | EntryKind::RefDelta { .. } => packs
            .read(pack, rank, objects)
            .map(|_| ())
            .map_err(|d| (None, d)),
    }
}
