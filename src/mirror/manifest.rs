//! The manifest: what one mirrored repository is made of, written last by a
//! push and read first by a pull, status and verify.
//!
//! It lists every file the bucket holds for the repository (packs, their
//! indexes, loose objects) with size and BLAKE3 checksum, the refs and
//! HEAD, the small files (config, description, run records) inline, and
//! the files gc removed locally that the bucket keeps for a grace period.
//! Objects are uploaded before the manifest that names them, so whatever a
//! bucket's manifest says is there.
//!
//! A text format, one record per line; decoding treats it as untrusted
//! (a bucket's owner, or damage, may have changed it): every path is
//! checked against the few shapes a repository file has, so a pull can
//! never write outside its target, and no length is believed beyond the
//! bytes that are there.

use super::{MirrorError, Sealer};
use crate::object::ObjectId;
use std::collections::BTreeMap;

const MAGIC: &str = "rewind-mirror 1";

/// A manifest larger than this is refused (it would describe some
/// 400,000 files).
pub const MAX_BYTES: u64 = 64 << 20;

/// One small file, inline: larger ones are not mirrored this way.
pub const MAX_SMALL: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// When the push that wrote it started (epoch seconds).
    pub created: i64,
    pub encrypted: bool,
    /// HEAD's text, e.g. `ref: refs/heads/main`.
    pub head: String,
    /// Full ref names (`refs/heads/web`) and their objects.
    pub refs: BTreeMap<String, ObjectId>,
    /// Files stored as their own bucket objects, by repository path.
    pub files: BTreeMap<String, FileEntry>,
    /// Small files kept inline, by repository path.
    pub small: BTreeMap<String, Vec<u8>>,
    /// Files gone from the repository, kept in the bucket until their grace
    /// period ends, by repository path.
    pub retired: BTreeMap<String, Retired>,
    /// Files whose bucket objects are being deleted: named until a later
    /// manifest no longer needs to (deleting twice is harmless).
    pub doomed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    pub stored_size: u64,
    pub blake3: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    pub since: i64,
    pub stored_size: u64,
}

/// What kind of repository file a path is, if it is one a mirror carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Pack,
    PackIndex,
    Loose,
    Small,
}

/// The small files a mirror carries inline.
pub const SMALL_FILES: &[&str] = &["config", "description", "rewind/runs.toml"];

/// Classifies a repository path; `None` for any path a mirror does not
/// carry (and so must never write).
pub fn path_kind(path: &str) -> Option<PathKind> {
    if SMALL_FILES.contains(&path) {
        return Some(PathKind::Small);
    }
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if let Some(name) = path.strip_prefix("objects/pack/pack-") {
        if let Some(id) = name.strip_suffix(".pack") {
            return hex(id, 40).then_some(PathKind::Pack);
        }
        if let Some(id) = name.strip_suffix(".idx") {
            return hex(id, 40).then_some(PathKind::PackIndex);
        }
        return None;
    }
    let rest = path.strip_prefix("objects/")?;
    let (dir, file) = rest.split_once('/')?;
    (hex(dir, 2) && hex(file, 38)).then_some(PathKind::Loose)
}

impl Manifest {
    pub fn new(created: i64, encrypted: bool) -> Manifest {
        Manifest {
            created,
            encrypted,
            head: String::new(),
            refs: BTreeMap::new(),
            files: BTreeMap::new(),
            small: BTreeMap::new(),
            retired: BTreeMap::new(),
            doomed: Vec::new(),
        }
    }

    /// Bytes the bucket holds for the live files.
    pub fn stored_bytes(&self) -> u64 {
        self.files.values().map(|f| f.stored_size).sum()
    }

    /// The manifest's bytes. Each file's line names its bucket object as
    /// `sealer` names it, so that a person with the key file and the `age`
    /// tool alone knows which object holds which file.
    pub fn encode(&self, sealer: &Sealer) -> Vec<u8> {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "created {}", self.created);
        let _ = writeln!(
            out,
            "encrypted {}",
            if self.encrypted { "yes" } else { "no" }
        );
        let _ = writeln!(out, "head {}", self.head);
        for (name, id) in &self.refs {
            let _ = writeln!(out, "ref {id} {name}");
        }
        for (path, f) in &self.files {
            let hex: String = f.blake3.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(
                out,
                "file {hex} {} {} {} {path}",
                f.size,
                f.stored_size,
                sealer.object_name(path)
            );
        }
        for (path, r) in &self.retired {
            let _ = writeln!(out, "retired {} {} {path}", r.since, r.stored_size);
        }
        for path in &self.doomed {
            let _ = writeln!(out, "doomed {path}");
        }
        let mut bytes = out.into_bytes();
        for (path, content) in &self.small {
            bytes.extend_from_slice(format!("small {} {path}\n", content.len()).as_bytes());
            bytes.extend_from_slice(content);
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(b"end\n");
        bytes
    }

    /// Decodes a manifest; `what` names it in errors. Each file's object
    /// must be the one `sealer` names for its path.
    pub fn decode(bytes: &[u8], what: &str, sealer: &Sealer) -> Result<Manifest, MirrorError> {
        let bad = |line: usize, detail: &str| MirrorError::Damaged {
            what: what.to_string(),
            detail: format!("manifest line {line}: {detail}"),
        };
        let mut m = Manifest::new(0, false);
        let mut rest = bytes;
        let mut line_no = 0;
        let mut seen_created = false;
        let mut seen_encrypted = false;
        let mut seen_head = false;
        loop {
            line_no += 1;
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                return Err(bad(line_no, "ends without its `end` line (cut short?)"));
            };
            let line =
                std::str::from_utf8(&rest[..end]).map_err(|_| bad(line_no, "is not UTF-8"))?;
            rest = &rest[end + 1..];
            if line_no == 1 {
                if line != MAGIC {
                    return Err(bad(
                        1,
                        "is not `rewind-mirror 1` (not a rewind mirror, or a newer one)",
                    ));
                }
                continue;
            }
            if line == "end" {
                if !rest.is_empty() {
                    return Err(bad(line_no, "bytes follow the `end` line"));
                }
                break;
            }
            let (tag, args) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "created" => {
                    m.created = args.parse().map_err(|_| bad(line_no, "bad time"))?;
                    seen_created = true;
                }
                "encrypted" => {
                    m.encrypted = match args {
                        "yes" => true,
                        "no" => false,
                        _ => return Err(bad(line_no, "encrypted is neither yes nor no")),
                    };
                    seen_encrypted = true;
                }
                "head" => {
                    let symbolic = args.strip_prefix("ref: ").is_some_and(|r| {
                        r.starts_with("refs/") && crate::repo::check_ref_name(r).is_ok()
                    });
                    if !symbolic && ObjectId::from_hex(args.as_bytes()).is_none() {
                        return Err(bad(
                            line_no,
                            "HEAD is neither `ref: refs/...` nor an object id",
                        ));
                    }
                    m.head = args.to_string();
                    seen_head = true;
                }
                "ref" => {
                    let (id, name) = args
                        .split_once(' ')
                        .ok_or_else(|| bad(line_no, "ref without a name"))?;
                    let id = ObjectId::from_hex(id.as_bytes())
                        .ok_or_else(|| bad(line_no, "ref with a bad object id"))?;
                    // Pull writes each ref as a file under refs/: any other
                    // name could overwrite a repository file.
                    if !name.starts_with("refs/") || crate::repo::check_ref_name(name).is_err() {
                        return Err(bad(line_no, "ref with a bad name (not a refs/... name)"));
                    }
                    if m.refs.insert(name.to_string(), id).is_some() {
                        return Err(bad(line_no, "ref named twice"));
                    }
                }
                "file" => {
                    let mut parts = args.splitn(5, ' ');
                    let (Some(hash), Some(size), Some(stored), Some(object), Some(path)) = (
                        parts.next(),
                        parts.next(),
                        parts.next(),
                        parts.next(),
                        parts.next(),
                    ) else {
                        return Err(bad(line_no, "file line with missing fields"));
                    };
                    let blake3 = decode_hash(hash).ok_or_else(|| bad(line_no, "bad checksum"))?;
                    let size = size.parse().map_err(|_| bad(line_no, "bad size"))?;
                    let stored_size = stored.parse().map_err(|_| bad(line_no, "bad size"))?;
                    check_object_path(path).map_err(|d| bad(line_no, &d))?;
                    if object != sealer.object_name(path) {
                        return Err(bad(
                            line_no,
                            "names another object for its file than this key does",
                        ));
                    }
                    let entry = FileEntry {
                        size,
                        stored_size,
                        blake3,
                    };
                    if m.files.insert(path.to_string(), entry).is_some() {
                        return Err(bad(line_no, "file named twice"));
                    }
                }
                "retired" => {
                    let mut parts = args.splitn(3, ' ');
                    let (Some(since), Some(stored), Some(path)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad(line_no, "retired line with missing fields"));
                    };
                    let since = since.parse().map_err(|_| bad(line_no, "bad time"))?;
                    let stored_size = stored.parse().map_err(|_| bad(line_no, "bad size"))?;
                    check_object_path(path).map_err(|d| bad(line_no, &d))?;
                    let r = Retired { since, stored_size };
                    if m.retired.insert(path.to_string(), r).is_some() {
                        return Err(bad(line_no, "retired file named twice"));
                    }
                }
                "doomed" => {
                    check_object_path(args).map_err(|d| bad(line_no, &d))?;
                    m.doomed.push(args.to_string());
                }
                "small" => {
                    let (len, path) = args
                        .split_once(' ')
                        .ok_or_else(|| bad(line_no, "small file without a path"))?;
                    let len: usize = len.parse().map_err(|_| bad(line_no, "bad size"))?;
                    if path_kind(path) != Some(PathKind::Small) {
                        return Err(bad(
                            line_no,
                            "small file with a path a mirror does not carry",
                        ));
                    }
                    if len > MAX_SMALL || len >= rest.len() || rest[len] != b'\n' {
                        return Err(bad(line_no, "small file longer than what follows"));
                    }
                    m.small.insert(path.to_string(), rest[..len].to_vec());
                    // The content's lines and its terminator count as lines.
                    line_no += rest[..len].iter().filter(|&&b| b == b'\n').count() + 1;
                    rest = &rest[len + 1..];
                }
                _ => return Err(bad(line_no, "unknown record")),
            }
        }
        if !(seen_created && seen_encrypted && seen_head) {
            return Err(bad(line_no, "created, encrypted or head is missing"));
        }
        Ok(m)
    }
}

fn check_object_path(path: &str) -> Result<(), String> {
    match path_kind(path) {
        Some(PathKind::Pack | PathKind::PackIndex | PathKind::Loose) => Ok(()),
        _ => Err(format!(
            "{path:?} is not a pack, index or loose object path"
        )),
    }
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(1_764_000_000, true);
        m.head = "ref: refs/heads/web".into();
        m.refs.insert(
            "refs/heads/web".into(),
            ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").unwrap(),
        );
        let pack = format!("objects/pack/pack-{}.pack", "a".repeat(40));
        m.files.insert(
            pack,
            FileEntry {
                size: 10,
                stored_size: 200,
                blake3: [7; 32],
            },
        );
        m.retired.insert(
            format!("objects/pack/pack-{}.idx", "b".repeat(40)),
            Retired {
                since: 5,
                stored_size: 99,
            },
        );
        m.doomed.push(format!("objects/ab/{}", "c".repeat(38)));
        m.small
            .insert("config".into(), b"[core]\n\tbare = true\n".to_vec());
        m.small.insert("rewind/runs.toml".into(), Vec::new());
        m
    }

    #[test]
    fn encode_then_decode_is_the_same_manifest() {
        let m = sample();
        assert_eq!(
            Manifest::decode(&m.encode(&Sealer::Plain), "t", &Sealer::Plain).unwrap(),
            m
        );
    }

    #[test]
    fn paths_outside_a_repository_layout_are_refused() {
        for path in [
            "../etc/passwd",
            "objects/pack/../../x",
            "objects/pack/pack-zz.pack",
            "/etc/passwd",
            "objects/AB/cccccccccccccccccccccccccccccccccccccc",
            "hooks/post-update",
            "config/",
        ] {
            assert_eq!(path_kind(path), None, "{path}");
            let text = format!("{MAGIC}\ncreated 1\nencrypted no\nhead ref: refs/heads/a\nfile {} 1 1 {path} {path}\nend\n", "0".repeat(64));
            assert!(
                Manifest::decode(text.as_bytes(), "t", &Sealer::Plain).is_err(),
                "{path}"
            );
        }
    }

    #[test]
    fn a_ref_outside_refs_is_refused() {
        for name in ["config", "HEAD", "refs/../config", "objects/pack/x"] {
            let text = format!(
                "{MAGIC}\ncreated 1\nencrypted no\nhead ref: refs/heads/a\nref {} {name}\nend\n",
                "1".repeat(40)
            );
            assert!(
                Manifest::decode(text.as_bytes(), "t", &Sealer::Plain).is_err(),
                "{name}"
            );
        }
        let text = format!("{MAGIC}\ncreated 1\nencrypted no\nhead ref: ../../etc\nend\n");
        assert!(Manifest::decode(text.as_bytes(), "t", &Sealer::Plain).is_err());
    }

    #[test]
    fn a_cut_short_manifest_is_an_error_not_a_partial_list() {
        let bytes = sample().encode(&Sealer::Plain);
        for cut in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..cut], "t", &Sealer::Plain).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_fuzz_seed_decodes_so_mutations_start_from_a_valid_manifest() {
        let seed = include_bytes!("../../tests/fuzz/corpus/mirror_manifest/seed");
        let m = Manifest::decode(seed, "seed", &Sealer::Plain).unwrap();
        assert_eq!(m.files.len(), 3);
        assert_eq!(m.small.len(), 2);
    }

    #[test]
    fn a_minimal_manifest_decodes() {
        let text = format!(
            "{MAGIC}\ncreated 1\nencrypted no\nhead ref: refs/heads/a\nsmall 2 config\nab\nend\n"
        );
        let m = Manifest::decode(text.as_bytes(), "t", &Sealer::Plain).unwrap();
        assert_eq!(m.small["config"], b"ab");
    }

    #[test]
    fn a_small_file_length_beyond_the_end_is_an_error() {
        let text = format!("{MAGIC}\ncreated 1\nencrypted no\nhead ref: refs/heads/a\nsmall 999999 config\nab\nend\n");
        assert!(Manifest::decode(text.as_bytes(), "t", &Sealer::Plain).is_err());
    }
}
