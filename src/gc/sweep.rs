//! The sweep: which packs to keep, rewrite or delete (a plan, printable in
//! a dry run), then the copy of live entries into new packs, published
//! before any old pack is deleted.
//!
//! Entries are copied as stored: the raw bytes (header and zlib stream)
//! are read, checked against the CRC-32 their index lists, and the stream
//! is appended to the new pack unchanged. A delta (git-repacked
//! repositories) is read whole through the store (its id checked) and
//! compressed again; so is an entry of a v1 index (no CRC) or one whose
//! CRC does not match, and if that read fails too, gc stops before
//! deleting anything: damage is never copied into a pack with a fresh,
//! valid checksum.

use super::mark::Marks;
use super::{GcError, GcOptions, GcProgress};
use crate::pack::writer::{Compressor, DEFAULT_LEVEL};
use crate::pack::{parse_entry_header, EntryKind, PACK_HEADER_LEN, PACK_TRAILER_LEN};
use crate::repo::{Objects, PackOut, PackRead, PackStorage};

/// What happens to one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    /// Its live entries are copied into new packs, then it is deleted.
    Rewrite,
    /// Nothing in it is live.
    Delete,
}

#[derive(Clone, Debug)]
pub struct PackPlan {
    /// Position in [`Marks::packs`].
    pub pack: usize,
    pub live_objects: u64,
    pub dead_objects: u64,
    /// Bytes of live entries (header and stream).
    pub live_bytes: u64,
    /// Bytes of all entries.
    pub entry_bytes: u64,
    pub action: Action,
}

/// The most read at once from a run of live entries: one read serves many
/// small entries.
const WINDOW: u64 = 8 << 20;

/// Decides each pack's fate from the marks.
pub fn plan(marks: &Marks, opts: &GcOptions) -> Vec<PackPlan> {
    let mut plans: Vec<PackPlan> = marks
        .packs
        .iter()
        .enumerate()
        .map(|(k, pack)| {
            let data_end = pack.size.saturating_sub(PACK_TRAILER_LEN);
            let mut p = PackPlan {
                pack: k,
                live_objects: 0,
                dead_objects: 0,
                live_bytes: 0,
                entry_bytes: data_end.saturating_sub(PACK_HEADER_LEN),
                action: Action::Keep,
            };
            for rank in 0..pack.index.len() {
                let Some((_, e)) = pack.index.by_rank(rank) else {
                    break;
                };
                let len = e.next.unwrap_or(data_end).saturating_sub(e.offset);
                if marks.is_marked(k, rank) {
                    p.live_objects += 1;
                    p.live_bytes += len;
                } else {
                    p.dead_objects += 1;
                }
            }
            p
        })
        .collect();
    let small = |p: &PackPlan| marks.packs[p.pack].size < opts.small_pack_bytes;
    let dead = |p: &PackPlan| p.entry_bytes.saturating_sub(p.live_bytes);
    for p in &mut plans {
        if !marks.packs[p.pack].keep && p.live_objects == 0 {
            p.action = Action::Delete;
        }
    }
    // Unused bytes may stay up to `threshold` of the live ones (as
    // restic's --max-unused): the packs with the largest unused share go
    // first, where a byte copied gives the most space back, and a pack
    // that is mostly live is not copied for the little it would free.
    let live: u64 = plans.iter().map(|p| p.live_bytes).sum();
    let allowed = (opts.threshold * live as f64) as u64;
    let mut unused: u64 = plans
        .iter()
        .filter(|p| p.action == Action::Keep)
        .map(dead)
        .sum();
    let mut candidates: Vec<usize> = (0..plans.len())
        .filter(|&i| {
            let p = &plans[i];
            p.action == Action::Keep && !marks.packs[p.pack].keep && p.dead_objects > 0
        })
        .collect();
    let share = |p: &PackPlan| dead(p) as f64 / p.entry_bytes.max(1) as f64;
    candidates.sort_by(|&a, &b| share(&plans[b]).total_cmp(&share(&plans[a])));
    for i in candidates {
        if unused <= allowed {
            break;
        }
        unused -= dead(&plans[i]);
        plans[i].action = Action::Rewrite;
    }
    // Small packs left as they are are merged into the new packs once
    // there are many (reads look up fewer indexes; opening a snapshot root
    // in each of hundreds of packs is what makes a big `ls -l` slow), not
    // before: merging copies all their live bytes.
    let small_kept = plans
        .iter()
        .filter(|p| p.action == Action::Keep && !marks.packs[p.pack].keep && small(p))
        .count();
    if small_kept >= opts.pack_limit.max(2) {
        for p in &mut plans {
            if p.action == Action::Keep && !marks.packs[p.pack].keep && small(p) {
                p.action = Action::Rewrite;
            }
        }
    }
    plans
}

/// Copies the live entries of the packs to rewrite into new packs, oldest
/// pack first; returns the names of the packs published and the bytes
/// copied.
///
/// Only the live entries are read (runs of them, see [`live_runs`]), and
/// the kernel is told which ones [`AHEAD`] bytes before they are needed:
/// the disk reads ahead while this thread checks and writes, instead of
/// each read waiting for it, and the dead bytes between runs (most of a
/// pack old enough to be rewritten) are not read at all.
pub fn copy_live(
    storage: &dyn PackStorage,
    objects: &dyn Objects,
    marks: &Marks,
    plans: &[PackPlan],
    opts: &GcOptions,
    progress: &dyn GcProgress,
) -> Result<Vec<String>, GcError> {
    let mut order: Vec<&PackPlan> = plans
        .iter()
        .filter(|p| p.action == Action::Rewrite)
        .collect();
    order.sort_by(|a, b| {
        let (pa, pb) = (&marks.packs[a.pack], &marks.packs[b.pack]);
        pa.mtime.cmp(&pb.mtime).then_with(|| pa.name.cmp(&pb.name))
    });
    let total: u64 = order.iter().map(|p| p.live_bytes).sum();
    let entries: u64 = order.iter().map(|p| p.live_objects).sum();
    let mut done = 0u64;
    let mut read = 0u64;
    let mut out = storage.new_packs(opts.pack_size_bytes, entries)?;
    let mut compressor = None;
    let advice = |k: usize| -> Result<Option<Advice>, GcError> {
        let Some(plan) = order.get(k) else {
            return Ok(None);
        };
        let pack = storage.open_pack(&marks.packs[plan.pack].name)?;
        Ok(Some(Advice::new(pack, live_runs(marks, plan.pack))))
    };
    let mut next = advice(0)?;
    for (k, plan) in order.iter().enumerate() {
        let pack = &marks.packs[plan.pack];
        let data_end = pack.size.saturating_sub(PACK_TRAILER_LEN);
        let Some(mut current) = next.take() else {
            break;
        };
        current.advise(current.start() + AHEAD);
        // The next pack's first runs are on their way while this one's
        // last are copied.
        next = advice(k + 1)?;
        if let Some(n) = &mut next {
            n.advise(n.start() + AHEAD / 2);
        }
        let mut window = Window::default();
        for rank in 0..pack.index.len() {
            if !marks.is_marked(plan.pack, rank) {
                continue;
            }
            let Some((id, entry)) = pack.index.by_rank(rank) else {
                break;
            };
            let end = entry.next.unwrap_or(data_end);
            let (raw, filled) = window.get(&current, &pack.name, entry.offset, end, data_end)?;
            if let Some(bytes) = filled {
                read += bytes;
                current.advise(entry.offset + AHEAD);
            }
            let crc_ok = entry.crc.is_some_and(|crc| crc32fast::hash(raw) == crc);
            let header = parse_entry_header(entry.offset, raw).ok();
            match header {
                Some(h) if crc_ok => match h.kind {
                    EntryKind::Base(kind) => {
                        let start = (h.data_offset - entry.offset) as usize;
                        out.append_compressed(id, kind, h.size, &raw[start..])?;
                    }
                    EntryKind::OfsDelta { .. } | EntryKind::RefDelta { .. } => {
                        recompress(objects, out.as_mut(), &mut compressor, id)?
                    }
                },
                _ => recompress(objects, out.as_mut(), &mut compressor, id)?,
            }
            done += end - entry.offset;
            if rank % 1024 == 0 {
                progress.copied(done, total);
            }
        }
        progress.copied(done, total);
    }
    tracing::debug!("gc: {done} bytes of live entries copied ({read} bytes read), publishing");
    Ok(out.finish()?)
}

/// Live entries this close are read as one run, the dead bytes between
/// them included. In the packs of a month of daily saves, live entries lie
/// in clumps a few KiB apart: at 16 KiB, 4,098 runs hold the 125 MB of live
/// entries of 17 packs in 176 MB (at 256 KiB: 110 runs, 357 MB; the packs
/// are 390 MB), and since the runs are asked for ahead, the disk serves
/// them queued and in order, not one seek each.
const GAP: u64 = 16 << 10;

/// How far ahead of the copy the kernel is asked to read the runs (one
/// pack's worth of a month of daily saves): enough to keep the disk busy,
/// little enough not to push out of the page cache what the copy needs.
const AHEAD: u64 = 32 << 20;

/// Pack `k`'s live entries (by [`Marks`]), in offset order, as byte
/// ranges, neighbours less than [`GAP`] apart merged. Bounds are checked
/// where the entries are read ([`Window::get`]).
fn live_runs(marks: &Marks, k: usize) -> Vec<(u64, u64)> {
    let pack = &marks.packs[k];
    let data_end = pack.size.saturating_sub(PACK_TRAILER_LEN);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for rank in 0..pack.index.len() {
        if !marks.is_marked(k, rank) {
            continue;
        }
        let Some((_, e)) = pack.index.by_rank(rank) else {
            break;
        };
        let end = e.next.unwrap_or(data_end).max(e.offset);
        match runs.last_mut() {
            Some(last) if e.offset >= last.1 && e.offset - last.1 < GAP => last.1 = end,
            _ => runs.push((e.offset, end)),
        }
    }
    runs
}

/// One pack to copy from, its runs, and how far into them the kernel was
/// asked to read.
struct Advice<'a> {
    pack: Box<dyn PackRead + 'a>,
    runs: Vec<(u64, u64)>,
    /// The run being asked for, and the offset it was asked for up to.
    advised: usize,
    advised_to: u64,
}

impl<'a> Advice<'a> {
    fn new(pack: Box<dyn PackRead + 'a>, runs: Vec<(u64, u64)>) -> Advice<'a> {
        Advice {
            pack,
            runs,
            advised: 0,
            advised_to: 0,
        }
    }

    fn start(&self) -> u64 {
        self.runs.first().map_or(0, |r| r.0)
    }

    /// Asks for what is not asked for yet of the runs before `upto` (a
    /// long run in part: a git pack may be one run of a GiB).
    fn advise(&mut self, upto: u64) {
        while let Some(&(from, to)) = self.runs.get(self.advised) {
            let from = from.max(self.advised_to);
            if from >= upto {
                break;
            }
            let stop = to.min(upto);
            // (A length of 0 would mean "to the end of the file".)
            if stop > from {
                self.pack.will_need(from, stop - from);
            }
            self.advised_to = stop;
            if stop < to {
                break;
            }
            self.advised += 1;
        }
    }
}

/// Reads `id` whole through the store (which resolves deltas and checks
/// the id) and appends it compressed anew.
fn recompress(
    objects: &dyn Objects,
    out: &mut dyn PackOut,
    compressor: &mut Option<Compressor>,
    id: crate::object::ObjectId,
) -> Result<(), GcError> {
    let object = objects.read(&id)?;
    let c = compressor.get_or_insert_with(|| Compressor::new(DEFAULT_LEVEL));
    let (zdata, _) = c.compress(&object.data);
    out.append_compressed(id, object.kind, object.data.len() as u64, zdata)?;
    Ok(())
}

/// A piece of one pack read ahead.
#[derive(Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
    /// The run of `runs` that the last read was in.
    run: usize,
}

impl Window {
    /// The bytes `[from, to)` of pack `name` (read from `source`), whose
    /// entries end at `data_end`, and how many bytes were read for them
    /// (none if they were held). A read covers the rest of the run of
    /// `source` that holds `from`, up to [`WINDOW`] bytes.
    fn get(
        &mut self,
        source: &Advice,
        name: &str,
        from: u64,
        to: u64,
        data_end: u64,
    ) -> Result<(&[u8], Option<u64>), GcError> {
        if to < from || to > data_end {
            return Err(GcError::Repo(crate::repo::Error::DamagedPack {
                path: name.into(),
                detail: format!("its index puts an entry at {from}..{to}, outside its entries"),
            }));
        }
        let inside = self.start <= from && to <= self.start + self.bytes.len() as u64;
        let mut filled = None;
        if !inside {
            let runs = &source.runs;
            while runs.get(self.run).is_some_and(|r| r.1 <= from) {
                self.run += 1;
            }
            let run_end = runs
                .get(self.run)
                .filter(|r| r.0 <= from)
                .map_or(to, |r| r.1.min(data_end));
            let len = (to - from).max(WINDOW.min(run_end.saturating_sub(from)));
            self.bytes = source.pack.read(from, len as usize)?;
            self.start = from;
            filled = Some(len);
        }
        let a = (from - self.start) as usize;
        let b = (to - self.start) as usize;
        Ok((&self.bytes[a..b], filled))
    }
}
