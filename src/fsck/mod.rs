//! `rewind fsck`: proving that a local repository is sound, and repairing
//! damaged packs from recovery data.
//!
//! A check is two passes: [`verify`] reads every pack front to back and
//! checks every byte of it (frame, trailer, idx agreement, every object
//! re-hashed); [`walk`] follows every branch and tag through commits and
//! trees and checks that every object a snapshot needs exists, then names
//! the snapshot paths that use each damaged or missing object.
//! [`recovery`] writes and applies the Reed-Solomon recovery data.

pub mod packs;
pub mod recovery;
pub mod verify;
pub mod walk;

use crate::object::{Kind, ObjectId};
use crate::progress::Progress;
use crate::repo::{Objects, Repository};
use packs::{file_name, Pack, Packs};
use std::collections::HashMap;
use std::path::Path;
use walk::Bad;

/// The result of one check.
pub struct Check {
    pub packs: Packs,
    pub verified: verify::Verified,
    pub walked: walk::Walked,
}

impl Check {
    /// Whether anything is damaged or missing.
    pub fn is_sound(&self) -> bool {
        self.verified.findings.is_empty() && self.walked.bad.is_empty()
    }

    /// The positions of packs with any damage (their own findings, or a
    /// damaged object the walk read from them).
    pub fn damaged_packs(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self.verified.findings.iter().map(|f| f.pack).collect();
        for b in self.walked.bad.values() {
            if let Bad::Damaged { pack, .. } = &b.bad {
                if let Some(p) = self.packs.packs.iter().position(|x| &x.name == pack) {
                    out.push(p);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// One line per problem, pack-level damage first, then each damaged or
    /// missing object with the snapshot paths that use it.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for f in self.verified.findings.iter().filter(|f| f.id.is_none()) {
            let pack = &self.packs.packs[f.pack];
            let objects = pack.index.as_ref().map_or(0, |i| i.len());
            let what = if pack.file.is_none() {
                format!(" (its {objects} objects are missing)")
            } else {
                String::new()
            };
            lines.push(format!("damaged: {}: {}{what}", pack.name, f.detail));
        }
        for (id, b) in &self.walked.bad {
            let kind = b.kind.map_or("object", Kind::name);
            let head = match &b.bad {
                Bad::Damaged {
                    pack,
                    offset,
                    detail,
                } => {
                    let at = offset
                        .map(|o| format!(" at offset {o}"))
                        .unwrap_or_default();
                    let file = if pack.starts_with("pack-") {
                        format!("{pack}.pack")
                    } else {
                        pack.clone()
                    };
                    format!("damaged: {kind} {id} in {file}{at} ({detail})")
                }
                Bad::Missing => format!("missing: {kind} {id}"),
                Bad::Malformed { detail } => format!("damaged: {kind} {id} ({detail})"),
            };
            let used = if b.paths.is_empty() {
                ", used by no snapshot".to_string()
            } else {
                let more = if b.more_paths > 0 {
                    format!(" and {} more", b.more_paths)
                } else {
                    String::new()
                };
                format!(", used by {}{more}", b.paths.join(", "))
            };
            lines.push(format!("{head}{used}"));
        }
        for s in &self.walked.spared {
            let kind = s.kind.map_or("object", Kind::name);
            if let Bad::Damaged {
                pack,
                offset,
                detail,
            } = &s.damage
            {
                let at = offset
                    .map(|o| format!(" at offset {o}"))
                    .unwrap_or_default();
                lines.push(format!(
                    "damaged: {kind} {} in {pack}.pack{at} ({detail}); no snapshot is affected: {}.pack holds a sound copy",
                    s.id, s.sound_in
                ));
            }
        }
        lines
    }
}

/// Checks the repository at `repo` (local).
pub fn check(repo: &Repository, progress: &Progress) -> Result<Check, crate::repo::Error> {
    let pack_dir = repo.path().join("objects/pack");
    let packs = Packs::scan(&pack_dir).map_err(crate::repo::Error::io("listing", &pack_dir))?;
    let all: Vec<usize> = (0..packs.packs.len()).collect();
    let verified = verify::verify(&packs, &all, repo.objects(), progress);
    let mut damaged: HashMap<ObjectId, (Option<Kind>, Bad)> = HashMap::new();
    let mut damaged_at = Vec::new();
    for f in &verified.findings {
        if let Some(id) = f.id {
            if let Some(offset) = f.offset {
                damaged_at.push((f.pack, offset));
            }
            damaged.insert(
                id,
                (
                    f.kind,
                    Bad::Damaged {
                        pack: packs.packs[f.pack].name.clone(),
                        offset: f.offset,
                        detail: f.detail.clone(),
                    },
                ),
            );
        }
    }
    let walked = walk::walk(repo, &packs, damaged, &damaged_at)?;
    Ok(Check {
        packs,
        verified,
        walked,
    })
}

/// What `--generate` did.
#[derive(Debug, Default)]
pub struct Generated {
    pub written: u64,
    pub up_to_date: u64,
    /// Recovery files of packs that no longer exist, removed.
    pub removed: u64,
    /// Damaged packs left without new recovery data (named).
    pub skipped: Vec<String>,
}

/// Writes recovery data for every sound pack that lacks current data, and
/// removes the recovery files of packs that are gone.
pub fn generate(repo: &Path, check: &Check) -> Result<Generated, recovery::RecoveryError> {
    let damaged = check.damaged_packs();
    let mut out = Generated::default();
    for (p, pack) in check.packs.packs.iter().enumerate() {
        let dest = recovery::path_for(repo, &pack.name);
        if damaged.contains(&p) || pack.file.is_none() || pack.index.is_none() {
            out.skipped.push(pack.name.clone());
            continue;
        }
        if is_current(&dest, pack) {
            out.up_to_date += 1;
            continue;
        }
        recovery::generate(&pack.pack_path, &pack.idx_path, &dest)?;
        out.written += 1;
    }
    let dir = repo.join("rewind/recovery");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".recovery") else {
                continue;
            };
            if !check.packs.packs.iter().any(|p| p.name == stem) {
                let _ = std::fs::remove_file(e.path());
                out.removed += 1;
            }
        }
    }
    Ok(out)
}

/// Whether the recovery file at `dest` describes this very pack and idx.
fn is_current(dest: &Path, pack: &Pack) -> bool {
    let Ok(rec) = recovery::Recovery::load(dest) else {
        return false;
    };
    let idx_len = std::fs::metadata(&pack.idx_path).map_or(0, |m| m.len());
    let idx_tail = std::fs::File::open(&pack.idx_path)
        .ok()
        .and_then(|f| recovery::tail_of(&f, idx_len, &pack.idx_path).ok());
    let pack_tail = pack.index.as_ref().map(|i| *i.pack_checksum());
    rec.sections[0].len == pack.len
        && Some(rec.sections[0].tail) == pack_tail
        && rec.sections[1].len == idx_len
        && Some(rec.sections[1].tail) == idx_tail
}

/// How repairing one pack went: a line for the user.
pub struct Repaired {
    pub pack: String,
    pub ok: bool,
    pub message: String,
}

/// Repairs every damaged pack of `check` that has recovery data. A
/// repaired pack (and idx) is verified whole before it replaces the
/// damaged one; nothing is replaced otherwise.
pub fn repair(repo: &Repository, check: &Check, progress: &Progress) -> Vec<Repaired> {
    let mut out = Vec::new();
    for p in check.damaged_packs() {
        let pack = &check.packs.packs[p];
        let (ok, message) = match repair_pack(repo, pack, progress) {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        out.push(Repaired {
            pack: pack.name.clone(),
            ok,
            message,
        });
    }
    out
}

fn repair_pack(repo: &Repository, pack: &Pack, progress: &Progress) -> Result<String, String> {
    let pack_file = file_name(&pack.pack_path);
    let rec_path = recovery::path_for(repo.path(), &pack.name);
    let elsewhere = format!(
        "copy {pack_file} and {} from another copy of the repository (a mirror, a backup of it)",
        file_name(&pack.idx_path)
    );
    if !rec_path.exists() {
        return Err(format!(
            "cannot repair {pack_file}: it has no recovery data (`rewind fsck --generate` was not run since it was written); {elsewhere}"
        ));
    }
    let rec = recovery::Recovery::load(&rec_path)
        .map_err(|e| format!("cannot repair {pack_file}: {e}; {elsewhere}"))?;
    let dir = pack.pack_path.parent().unwrap_or(Path::new("."));
    let tmp_dir = dir.parent().unwrap_or(dir);
    let fixed_pack = recovery::repair_section(&rec, 0, &pack.pack_path, tmp_dir)
        .map_err(|e| format!("cannot repair {pack_file}: {e}; {elsewhere}"))?;
    let fixed_idx = recovery::repair_section(&rec, 1, &pack.idx_path, tmp_dir)
        .map_err(|e| format!("cannot repair {pack_file}: {e}; {elsewhere}"))?;
    if fixed_pack.is_none() && fixed_idx.is_none() {
        return Err(format!(
            "cannot repair {pack_file}: it matches its recovery data, which was made from the same damage; {elsewhere}"
        ));
    }
    let candidate_pack = fixed_pack
        .as_ref()
        .map_or(pack.pack_path.clone(), |(t, _)| t.path().to_path_buf());
    let candidate_idx = fixed_idx
        .as_ref()
        .map_or(pack.idx_path.clone(), |(t, _)| t.path().to_path_buf());
    let trial = Packs::from(vec![Pack::open(
        pack.name.clone(),
        candidate_idx,
        candidate_pack,
    )]);
    let objects: &dyn Objects = repo.objects();
    let verified = verify::verify(&trial, &[0], objects, progress);
    if let Some(f) = verified.findings.first() {
        return Err(format!(
            "cannot repair {pack_file}: the repaired pack still fails its check ({}); nothing was replaced; {elsewhere}",
            f.detail
        ));
    }
    let mut blocks = 0;
    let mut what = Vec::new();
    // The pack first, then its idx: the idx names the pack's trailer, and
    // a reader that opens the pair between the two renames sees either
    // the old damage or the repaired pack with an idx that agrees.
    for (fixed, dest) in [(fixed_pack, &pack.pack_path), (fixed_idx, &pack.idx_path)] {
        if let Some((tmp, r)) = fixed {
            use std::os::unix::fs::PermissionsExt;
            let _ = tmp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o444));
            tmp.persist(dest)
                .map_err(|e| format!("cannot replace {}: {}", dest.display(), e.error))?;
            blocks += r.damaged_blocks;
            what.push(file_name(dest));
        }
    }
    crate::repo::fsutil::fsync_dir(dir).map_err(|e| e.to_string())?;
    Ok(format!(
        "repaired: {} ({blocks} damaged blocks rebuilt from recovery data, {} objects verified)",
        what.join(" and "),
        verified.objects
    ))
}
