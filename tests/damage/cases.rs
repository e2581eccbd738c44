//! What is damaged, and how: the kinds of repository file, the damages
//! (a byte inverted, a bit flipped, 64 bytes zeroed, a truncation) and the
//! positions in each kind of file where they are worth making.

use crate::common::run_limited;
use crate::fixture::Fixture;
use crate::LIMIT;
use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every how many cases a copy is also mounted (mounts are the slow part).
const MOUNT_EVERY: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The pack of the newest snapshot of `one` (commit, trees, `.bupm`).
    PackTip,
    /// The pack holding `big.bin`'s chunks and chunk tree.
    PackChunks,
    IdxTip,
    IdxChunks,
    /// `refs/heads/one`.
    LooseRef,
    PackedRefs,
    Head,
    Config,
    /// `rewind/index/one`.
    ChangeIndex,
    /// `rewind/objects.midx`.
    ObjectTable,
    /// `rewind/commits.cache`.
    CommitCache,
    /// `rewind/runs.toml`.
    RunRecords,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::PackTip,
        Kind::PackChunks,
        Kind::IdxTip,
        Kind::IdxChunks,
        Kind::LooseRef,
        Kind::PackedRefs,
        Kind::Head,
        Kind::Config,
        Kind::ChangeIndex,
        Kind::ObjectTable,
        Kind::CommitCache,
        Kind::RunRecords,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::PackTip => "pack (tip)",
            Kind::PackChunks => "pack (chunks)",
            Kind::IdxTip => "idx (tip)",
            Kind::IdxChunks => "idx (chunks)",
            Kind::LooseRef => "refs/heads/one",
            Kind::PackedRefs => "packed-refs",
            Kind::Head => "HEAD",
            Kind::Config => "config",
            Kind::ChangeIndex => "rewind/index/one",
            Kind::ObjectTable => "rewind/objects.midx",
            Kind::CommitCache => "rewind/commits.cache",
            Kind::RunRecords => "rewind/runs.toml",
        }
    }

    /// rewind's caches: damage must change nothing the user sees.
    pub fn is_cache(self) -> bool {
        matches!(
            self,
            Kind::ChangeIndex | Kind::ObjectTable | Kind::CommitCache
        )
    }

    /// Ref files: a damaged name is a different name, which a listing may
    /// show as git shows it.
    pub fn is_ref(self) -> bool {
        matches!(self, Kind::LooseRef | Kind::PackedRefs | Kind::Head)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Damage {
    Xor { at: u64, mask: u8 },
    Zero { at: u64, len: u64 },
    Truncate { to: u64 },
}

impl Damage {
    pub fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        match self {
            Damage::Xor { at, mask } => v[at as usize] ^= mask,
            Damage::Zero { at, len } => {
                let end = (at + len).min(v.len() as u64) as usize;
                v[at as usize..end].fill(0);
            }
            Damage::Truncate { to } => v.truncate(to as usize),
        }
        v
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Xor { at, mask } => write!(f, "xor {mask:#04x} at {at}"),
            Damage::Zero { at, len } => write!(f, "zero {len} bytes at {at}"),
            Damage::Truncate { to } => write!(f, "truncate to {to}"),
        }
    }
}

/// The damages for a file of `len` bytes at `positions`: every position
/// gets its byte inverted, and alternately a single bit flipped (which
/// keeps a hex digit a hex digit) or a 64-byte run zeroed; the file is
/// truncated to nothing, to half, by one byte, and before its last 20
/// bytes (the trailer checksum of packs, indexes and rewind's files).
pub fn damages(len: u64, positions: &BTreeSet<u64>) -> Vec<Damage> {
    let mut v = Vec::new();
    for (i, &at) in positions.iter().filter(|&&p| p < len).enumerate() {
        v.push(Damage::Xor { at, mask: 0xff });
        v.push(if i % 2 == 0 {
            Damage::Xor { at, mask: 0x01 }
        } else {
            Damage::Zero { at, len: 64 }
        });
    }
    let truncations: BTreeSet<u64> = [0, len / 2, len.saturating_sub(1), len.saturating_sub(20)]
        .into_iter()
        .filter(|&t| t < len)
        .collect();
    v.extend(truncations.into_iter().map(|to| Damage::Truncate { to }));
    v
}

/// The header, `n` positions spread through the file, and the trailer.
fn spread(len: u64, n: u64) -> BTreeSet<u64> {
    let mut s: BTreeSet<u64> = [0, 4, 8, 12].into_iter().collect();
    s.extend((1..n).map(|i| len * i / n));
    s.extend([len.saturating_sub(20), len.saturating_sub(1)]);
    s.retain(|&p| p < len);
    s
}

/// Offsets of the objects in a pack (`git verify-pack -v`) with their sizes
/// in the pack.
fn pack_objects(idx: &Path) -> Vec<(u64, u64)> {
    let out = run_limited(
        Command::new("git").arg("verify-pack").arg("-v").arg(idx),
        LIMIT,
    )
    .expect("git verify-pack finishes");
    assert_eq!(out.code, 0, "git verify-pack: {}", out.stderr);
    let mut v: Vec<(u64, u64)> = out
        .lines()
        .iter()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (t.len() >= 5 && t[0].len() == 40)
                .then(|| Some((t[4].parse().ok()?, t[3].parse().ok()?)))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// Positions in a pack: the header, each of up to `max` objects (spread
/// over the pack) at its entry header and in the middle of its data, and
/// the trailer.
fn pack_positions(pack: &Path, max: usize) -> BTreeSet<u64> {
    let len = fs::metadata(pack).expect("pack").len();
    let objects = pack_objects(&pack.with_extension("idx"));
    let step = objects.len().div_ceil(max).max(1);
    let mut s = spread(len, 2);
    for &(off, size) in objects.iter().step_by(step) {
        s.insert(off);
        s.insert(off + size / 2);
    }
    s
}

/// Positions in a version 2 pack index of `n` objects: header, fan-out
/// (first, middle and the last entry, which gives the object count), the
/// id, CRC and offset tables, and both trailing checksums.
fn idx_positions(len: u64, n: u64) -> BTreeSet<u64> {
    let ids = 8 + 256 * 4;
    let crcs = ids + 20 * n;
    let offsets = crcs + 4 * n;
    let mut s: BTreeSet<u64> = [
        0,
        4,
        7,
        8,
        8 + 128 * 4 + 3,
        8 + 255 * 4,
        8 + 255 * 4 + 3,
        ids,
        ids + 20 * (n / 2) + 19,
        crcs + 4 * (n / 2),
        offsets,
        offsets + 4 * (n / 2) + 3,
        len - 40,
        len - 20,
        len - 1,
    ]
    .into_iter()
    .collect();
    s.retain(|&p| p < len);
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Loose refs under `refs/heads`.
    Loose,
    /// After `git pack-refs --all`.
    Packed,
}

pub struct Case {
    pub kind: Kind,
    pub variant: Variant,
    /// The damaged file, relative to the repository.
    pub file: PathBuf,
    pub damage: Damage,
    pub mount: bool,
}

impl Case {
    pub fn describe(&self) -> String {
        format!(
            "{} [{}] {}",
            self.kind.label(),
            self.file.display(),
            self.damage
        )
    }
}

pub fn variant_of(kind: Kind) -> Variant {
    if kind == Kind::PackedRefs {
        Variant::Packed
    } else {
        Variant::Loose
    }
}

pub fn variant_repo<'a>(loose: &'a Path, packed: &'a Path, v: Variant) -> &'a Path {
    match v {
        Variant::Loose => loose,
        Variant::Packed => packed,
    }
}

pub fn cases(fx: &Fixture, mounts: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let variant = variant_of(kind);
        let file = fx.files[&kind].clone();
        let path = variant_repo(&fx.loose, &fx.packed, variant).join(&file);
        let len = fs::metadata(&path).expect("file").len();
        let positions = match kind {
            Kind::PackTip => pack_positions(&path, 14),
            Kind::PackChunks => pack_positions(&path, 10),
            Kind::IdxTip | Kind::IdxChunks => {
                let n = pack_objects(&path).len() as u64;
                idx_positions(len, n)
            }
            // Small text files: nearly every byte matters.
            Kind::LooseRef | Kind::Head => {
                let mut s = spread(len, 6);
                s.extend([len.saturating_sub(2)]);
                s
            }
            Kind::PackedRefs => {
                let text = fs::read(&path).expect("packed-refs");
                let mut s = spread(len, 4);
                // Each line's start, its id's last digit, its name.
                for (i, _) in text.iter().enumerate().filter(|(_, &b)| b == b'\n') {
                    for d in [1, 40, 42, 52] {
                        s.insert(i as u64 + d);
                    }
                }
                s.retain(|&p| p < len);
                s
            }
            Kind::ObjectTable => {
                let mut s = spread(len, 6);
                // Pack count, first name length, the fan-out's last entry
                // and the object count before the checksum.
                s.extend([11, 13, len - 20 - 8 - 1, len - 20 - 8 - 4 * 2]);
                s
            }
            Kind::CommitCache => {
                let mut s = spread(len, 6);
                // Inside the first records: id, tree, parent flag, parent,
                // time.
                s.extend([8 + 20, 8 + 40, 8 + 41 + 19, 8 + 61 + 7]);
                s.retain(|&p| p < len);
                s
            }
            Kind::Config | Kind::ChangeIndex | Kind::RunRecords => spread(len, 8),
        };
        for damage in damages(len, &positions) {
            cases.push(Case {
                kind,
                variant,
                file: file.clone(),
                damage,
                mount: false,
            });
        }
    }
    if mounts {
        for (i, c) in cases.iter_mut().enumerate() {
            c.mount = i % MOUNT_EVERY == 0;
        }
    }
    cases
}
