//! Fuzz targets: one function per decoder of bytes that come from a
//! repository, a peer or a user, each of which must return (an error or a
//! value) on any input: never panic, hang or allocate what a length field
//! claims.
//!
//! The same functions serve two drivers: the coverage-guided libFuzzer
//! binary in `tests/fuzz/` (built on stable Rust with LLVM's sanitizer
//! coverage, see `scripts/fuzz`) and `tests/fuzz_corpus.rs`, which replays
//! every kept input (the seed corpus and each input that ever failed) as an
//! ordinary test.
//!
//! Formats protected by a SHA-1 trailer (idx, object table, commit cache,
//! change index) take their input *without* the trailer and get a valid one
//! appended here: otherwise nearly every mutation would stop at the
//! checksum and the decoder behind it would never be exercised. A damaged
//! file with a matching checksum is exactly what a hostile peer can send.
//!
//! File-based decoders read from a scratch directory per thread, under
//! `/dev/shm` when it exists, rewritten for every input.

use crate::object::tree;
use crate::object::ObjectId;
use crate::repo::Repository;
use crate::view::{self, random, Content, ContentReader, NodeType};
use sha1::{Digest, Sha1};
use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A fuzz target: a name (the corpus directory) and the function to call.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "idx",
        run: idx,
    },
    Target {
        name: "pack_entry_header",
        run: pack_entry_header,
    },
    Target {
        name: "delta",
        run: delta,
    },
    Target {
        name: "tree",
        run: tree,
    },
    Target {
        name: "chunk_tree",
        run: chunk_tree,
    },
    Target {
        name: "commit",
        run: commit,
    },
    Target {
        name: "bupm",
        run: bupm,
    },
    Target {
        name: "loose_object",
        run: loose_object,
    },
    Target {
        name: "refs",
        run: refs,
    },
    Target {
        name: "date",
        run: date,
    },
    Target {
        name: "config",
        run: config,
    },
    Target {
        name: "runs_toml",
        run: runs_toml,
    },
    Target {
        name: "recovery",
        run: recovery,
    },
    Target {
        name: "change_index",
        run: change_index,
    },
    Target {
        name: "object_table",
        run: object_table,
    },
    Target {
        name: "commit_cache",
        run: commit_cache,
    },
    Target {
        name: "repository",
        run: repository,
    },
    Target {
        name: "remote_responses",
        run: remote_responses,
    },
    Target {
        name: "remote_session",
        run: remote_session,
    },
    Target {
        name: "mirror_manifest",
        run: mirror_manifest,
    },
    Target {
        name: "zlib_exact",
        run: zlib_exact,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// `body` followed by its SHA-1, the trailer of idx files and our caches.
fn with_sha1_trailer(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&Sha1::digest(body));
    out
}

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// An empty scratch directory, the same one for every call on this thread.
fn scratch() -> PathBuf {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dir = slot.get_or_insert_with(|| {
            let base = Path::new("/dev/shm");
            let made = if base.is_dir() {
                tempfile::Builder::new()
                    .prefix("rewind-fuzz")
                    .tempdir_in(base)
            } else {
                tempfile::Builder::new().prefix("rewind-fuzz").tempdir()
            };
            made.expect("a scratch directory for fuzzing")
        });
        let path = dir.path().to_path_buf();
        for entry in std::fs::read_dir(&path).expect("list scratch").flatten() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        path
    })
}

fn write(path: &Path, bytes: &[u8]) {
    try_write(path, bytes).expect("scratch write");
}

fn try_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// An empty bare repository in the scratch directory, made by our own init.
fn scratch_repo() -> (PathBuf, Repository) {
    let dir = scratch().join("repo");
    let repo = Repository::init(&dir).expect("init scratch repository");
    (dir, repo)
}

/// Splits an input in two at a position its first two bytes choose.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let at = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    rest.split_at(at.min(rest.len()))
}

/// A pack index (v1 or v2); input without the trailing SHA-1.
/// The front of a recovery file (`fsck::recovery`), its SHA-1 made to
/// match; the file's length is the front plus the first 4 bytes' worth of
/// parity (so that the layout check is reached, and sometimes passes).
pub fn recovery(data: &[u8]) {
    let extra = data.get(..4).map_or(0, |b| {
        u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    });
    let front = with_sha1_trailer(data.get(4..).unwrap_or_default());
    let file_len = front.len() as u64 + extra;
    if let Ok((sections, _)) = crate::fsck::recovery::parse_front(&front, file_len) {
        for s in sections {
            assert!(
                s.block > 0 && s.stripes > 0,
                "parse_front let {s:?} through"
            );
        }
    }
}

pub fn idx(data: &[u8]) {
    let bytes = with_sha1_trailer(data);
    let Ok(index) = crate::pack::idx::PackIndex::parse(Path::new("fuzz.idx"), &bytes) else {
        return;
    };
    let mut n = 0usize;
    for entry in index.entries() {
        assert!(index.find(&entry.id).is_some(), "listed id not found");
        let _ = index.offset_rank(entry.offset);
        n += 1;
    }
    assert_eq!(n, index.len(), "entries() disagrees with len()");
    let _ = index.lookup(&ObjectId([0xab; 20]));
    let _ = index.first_bytes();
}

/// A pack entry header at an arbitrary offset.
pub fn pack_entry_header(data: &[u8]) {
    let (offset, buf) = match data.split_first_chunk::<8>() {
        Some((o, rest)) => (u64::from_le_bytes(*o), rest),
        None => (0, data),
    };
    let _ = crate::pack::parse_entry_header(offset, buf);
}

/// A git delta applied to a base; the first two bytes say where they split.
pub fn delta(data: &[u8]) {
    let (base, delta) = split(data);
    let sizes = crate::pack::delta::parse_sizes(delta);
    if let Ok(result) = crate::pack::delta::apply(base, delta) {
        let (_, target, _) = sizes.expect("apply accepted what parse_sizes refused");
        assert_eq!(result.len() as u64, target, "delta result size");
    }
}

/// A git tree object's body, then each entry's name demangled.
pub fn tree(data: &[u8]) {
    if let Ok(entries) = tree::decode(data) {
        for e in &entries {
            let _ = tree::demangle(&e.name, e.mode);
        }
    }
}

/// One level of a chunk tree (a file's `name.bup`): its length (u64 LE)
/// then the tree's body. What the parser accepts must add up.
pub fn chunk_tree(data: &[u8]) {
    let Some((len, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*len);
    let id = ObjectId([0x33; 20]);
    let Ok(level) = crate::chunk::parse::ChunkLevel::parse(&id, body) else {
        return;
    };
    let entries = level.entries();
    assert_eq!(entries.first().map(|e| e.offset), Some(0), "first offset");
    assert!(
        entries.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets ascend"
    );
    if level.fit(&id, len).is_ok() {
        let total = (0..entries.len()).try_fold(0u64, |sum, i| sum.checked_add(level.span(i, len)));
        assert_eq!(
            total,
            Some(len),
            "the spans of a level that fits add up to it"
        );
    }
}

/// A commit object's body.
pub fn commit(data: &[u8]) {
    let _ = crate::object::commit::decode(data);
}

/// A `.bupm` metadata stream, whole and streamed.
pub fn bupm(data: &[u8]) {
    let whole = crate::meta::record::decode_all(data);
    let mut reader = crate::meta::record::BupmReader::new(data);
    let mut streamed = 0usize;
    while let Ok(Some(_)) = reader.next_entry() {
        streamed += 1;
    }
    if let Ok(all) = whole {
        assert_eq!(all.len(), streamed, "decode_all and BupmReader disagree");
    }
}

/// A loose object file (zlib of "<kind> <size>\0<data>").
pub fn loose_object(data: &[u8]) {
    let (_, repo) = scratch_repo();
    let id = ObjectId([0x5a; 20]);
    let hex = id.to_hex();
    write(
        &repo.objects().objects_dir().join(&hex[..2]).join(&hex[2..]),
        data,
    );
    let _ = repo.objects().read_header(&id);
    let _ = repo.objects().read(&id);
}

/// `packed-refs`, a loose ref and `HEAD`: the first two bytes split the
/// input into packed-refs and the rest, which is split again at its first
/// newline into `refs/heads/x` and `HEAD`.
pub fn refs(data: &[u8]) {
    let (dir, repo) = scratch_repo();
    let (packed, rest) = split(data);
    let (loose, head) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => rest.split_at(at + 1),
        None => (rest, &[][..]),
    };
    write(&dir.join("packed-refs"), packed);
    write(&dir.join("refs/heads/x"), loose);
    if !head.is_empty() {
        write(&dir.join("HEAD"), head);
    }
    let _ = repo.list_refs("refs/");
    let _ = repo.read_ref("refs/heads/x");
    let _ = repo.read_ref("refs/heads/main");
    let _ = repo.head_branch();
}

/// `--date` text.
pub fn date(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::time::parse_date(text);
        let _ = crate::config::parse_duration(text);
    }
}

/// `rewind.toml`.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::parse(Path::new("/etc/rewind.toml"), text);
    }
}

/// A mirror's manifest as a bucket returns it (after decryption, which a
/// bucket's owner cannot forge without the key, but damage in a plain
/// mirror or a bug can reach): every path it names must be one a pull may
/// write.
pub fn mirror_manifest(data: &[u8]) {
    use crate::mirror::manifest::{path_kind, Manifest};
    use crate::mirror::Sealer;
    if let Ok(m) = Manifest::decode(data, "fuzz", &Sealer::Plain) {
        for path in m.files.keys().chain(m.retired.keys()).chain(&m.doomed) {
            assert!(path_kind(path).is_some(), "{path}");
            assert!(!path.contains(".."), "{path}");
        }
        for name in m.refs.keys() {
            assert!(name.starts_with("refs/") && !name.contains(".."), "{name}");
        }
        assert!(
            matches!(Manifest::decode(&m.encode(&Sealer::Plain), "fuzz", &Sealer::Plain), Ok(back) if back == m)
        );
    }
}

/// `rewind/runs.toml`, the run records `status` reads.
pub fn runs_toml(data: &[u8]) {
    let dir = scratch();
    write(&crate::run::record::records_path(&dir), data);
    let _ = crate::run::record::load(&dir);
}

/// Change index magic and the trailer after the entry stream (entry count,
/// commit id); see `save::index`.
const CHANGE_INDEX_MAGIC: &[u8; 8] = b"RWCHIDX\n";
const CHANGE_INDEX_TRAILER: usize = 8 + 20;

/// A change index (`rewind/index/<name>`). The input is a version byte (odd:
/// version 1, uncompressed; even: version 2), the uncompressed entry stream,
/// the entry count and the commit id; this target compresses the stream for
/// version 2 and adds the header and the SHA-1, so that mutations reach the
/// entry decoder instead of stopping in zstd or at the checksum.
pub fn change_index(data: &[u8]) {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let Some(split) = rest.len().checked_sub(CHANGE_INDEX_TRAILER) else {
        return;
    };
    let (entries, trailer) = rest.split_at(split);
    let version: u32 = if version % 2 == 1 { 1 } else { 2 };
    let mut file = CHANGE_INDEX_MAGIC.to_vec();
    file.extend_from_slice(&version.to_be_bytes());
    if version == 1 {
        file.extend_from_slice(entries);
    } else {
        file.extend_from_slice(&zstd::bulk::compress(entries, 1).expect("zstd compresses"));
    }
    file.extend_from_slice(trailer);
    let path = scratch().join("index");
    write(&path, &with_sha1_trailer(&file));
    let verified = crate::save::index::verify(&path);
    if let Ok(Some(mut reader)) = crate::save::index::IndexReader::open(&path) {
        // Drains the reader: every entry is decoded on the way.
        let _ = reader.take(&[0xff; 64]);
        if let Ok(summary) = verified {
            assert_eq!(summary.entries, reader.summary().entries);
        }
    }
}

/// The [`change_index`] input for a change index file written by a save.
pub fn change_index_input(file: &[u8]) -> Option<Vec<u8>> {
    let body = file.get(12..file.len().checked_sub(20)?)?;
    let (stream, trailer) = body.split_at(body.len().checked_sub(CHANGE_INDEX_TRAILER)?);
    let version = u32::from_be_bytes(file.get(8..12)?.try_into().ok()?);
    let entries = match version {
        1 => stream.to_vec(),
        _ => zstd::stream::decode_all(stream).ok()?,
    };
    let mut input = vec![if version == 1 { 1 } else { 0 }];
    input.extend_from_slice(&entries);
    input.extend_from_slice(trailer);
    Some(input)
}

/// A repository in the scratch directory holding one small pack (the same
/// on every call), for the object table to cover.
fn scratch_repo_with_pack() -> (PathBuf, Repository) {
    let (dir, repo) = scratch_repo();
    let mut writer = repo.pack_writer().expect("pack writer");
    for i in 0..64u32 {
        writer
            .write(
                crate::object::Kind::Blob,
                format!("object {i}\n").as_bytes(),
            )
            .expect("write blob");
    }
    writer.finish().expect("publish pack");
    repo.objects().refresh().expect("refresh");
    (dir, repo)
}

/// The object table `rewind/objects.midx` with its Bloom filter, without
/// its SHA-1, over a repository with one pack (the seed table covers it).
pub fn object_table(data: &[u8]) {
    let (dir, repo) = scratch_repo_with_pack();
    let rewind_dir = dir.join("rewind");
    write(
        &rewind_dir.join(crate::repo::known::MIDX_NAME),
        &with_sha1_trailer(data),
    );
    let known = crate::repo::known::KnownObjects::open_with(repo.objects(), &rewind_dir, 8);
    for i in 0..4u32 {
        let id = crate::object::hash_object(
            crate::object::Kind::Blob,
            format!("object {i}\n").as_bytes(),
        );
        let _ = known.contains(&id);
    }
    let _ = known.contains(&ObjectId([0x11; 20]));
}

/// The [`object_table`] input that the current code writes for its pack.
pub fn object_table_input() -> Vec<u8> {
    let (dir, repo) = scratch_repo_with_pack();
    let rewind_dir = dir.join("rewind");
    let _ = crate::repo::known::KnownObjects::open_with(repo.objects(), &rewind_dir, 0);
    let table =
        std::fs::read(rewind_dir.join(crate::repo::known::MIDX_NAME)).expect("table written");
    table[..table.len() - 20].to_vec()
}

/// `rewind/commits.cache`, without its SHA-1, behind a branch whose tip is
/// the first cached commit (so the listing walks the cache).
pub fn commit_cache(data: &[u8]) {
    let (dir, repo) = scratch_repo();
    write(
        &dir.join("rewind").join(view::snapshots::COMMIT_CACHE_NAME),
        &with_sha1_trailer(data),
    );
    let tip = data
        .get(8..28)
        .and_then(ObjectId::from_bytes)
        .unwrap_or(ObjectId([0x22; 20]));
    let _ = view::snapshots::snapshots(&repo, &tip);
}

/// Whole repositories: the input is a list of files (see [`pack_files`]),
/// written into an empty repository, which is then read the way `ls -l`,
/// `cat-file`, `restore` and a mount read it. Bounded work per input.
pub fn repository(data: &[u8]) {
    let (dir, _) = scratch_repo();
    for (name, bytes) in unpack_files(data) {
        // A name may clash with a directory (`refs`, or a file named
        // before a path beneath it): such a file cannot exist, skip it.
        let _ = try_write(&dir.join(name), bytes);
    }
    let Ok(repo) = Repository::open(&dir) else {
        return;
    };
    let mut budget = Budget {
        nodes: 256,
        bytes: 4 << 20,
    };
    let Ok(backups) = view::snapshots::backups(&repo) else {
        return;
    };
    for (name, tip) in backups.into_iter().take(4) {
        let Ok(snapshots) = view::snapshots::snapshots(&repo, &tip) else {
            continue;
        };
        let src = view::namespace::Direct::new(&repo);
        for snapshot in snapshots.iter().rev().take(2) {
            let path = format!("{name}/{}", snapshot.name);
            let _ = view::namespace::resolve(&src, path.as_bytes(), false);
            read_tree(&repo, &snapshot.tree, 0, &mut budget);
        }
    }
    let src = view::namespace::Direct::new(&repo);
    let _ = view::namespace::resolve(&src, b"/.tag", false)
        .and_then(|tags| view::namespace::list(&src, &tags));
    if let Ok(tags) = view::snapshots::tags(&repo) {
        for (tag, _) in tags.into_iter().take(4) {
            let _ = view::namespace::resolve(&src, format!(".tag/{tag}").as_bytes(), false);
        }
    }
}

struct Budget {
    nodes: usize,
    bytes: u64,
}

/// Reads a saved directory as the commands do, within `budget`; checks that
/// the streaming and the random-access readers agree.
fn read_tree(repo: &Repository, id: &ObjectId, depth: usize, budget: &mut Budget) {
    if depth > 32 || budget.nodes == 0 {
        return;
    }
    let Ok(dir) = view::list_dir_with_meta(repo, id) else {
        return;
    };
    for node in dir.entries {
        if budget.nodes == 0 {
            return;
        }
        budget.nodes -= 1;
        match node.node_type {
            NodeType::Directory => read_tree(repo, &node.id, depth + 1, budget),
            _ => read_content(repo, node.content(), budget),
        }
    }
}

fn read_content(repo: &Repository, content: Content, budget: &mut Budget) {
    let Ok(size) = view::content_size(repo.objects(), content) else {
        return;
    };
    if size > budget.bytes {
        return;
    }
    budget.bytes -= size;
    let mut streamed = Vec::new();
    let streamed_ok = ContentReader::new(repo.objects(), content)
        .take(size + 1)
        .read_to_end(&mut streamed)
        .is_ok();
    let cache = random::ChunkCache::new(1 << 20);
    let reader = random::FileReader::new(content, size);
    let mut random_bytes = Vec::new();
    let random_ok = reader
        .read_at(repo.objects(), &cache, 0, size as usize, &mut random_bytes)
        .is_ok();
    if streamed_ok && random_ok {
        assert!(
            streamed == random_bytes,
            "cat-file/restore and the mount read different bytes"
        );
    }
}

/// Files of a repository as one input: per file a name length (u8), the
/// name (relative to the repository, no `..`), a length (u32 LE) and the
/// bytes. The seed corpus holds real repositories in this form.
pub fn pack_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let name = name.as_bytes();
        out.push(u8::try_from(name.len()).expect("short names"));
        out.extend_from_slice(name);
        out.extend_from_slice(
            &u32::try_from(bytes.len())
                .expect("small files")
                .to_le_bytes(),
        );
        out.extend_from_slice(bytes);
    }
    out
}

/// The inverse of [`pack_files`]; stops at the first record that does not
/// fit, and skips names that would leave the repository.
fn unpack_files(mut data: &[u8]) -> Vec<(&str, &[u8])> {
    let mut files = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let Some((name, rest)) = rest.split_at_checked(usize::from(len)) else {
            break;
        };
        let Some((size, rest)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let size = (u32::from_le_bytes(*size) as usize).min(rest.len());
        let (bytes, rest) = rest.split_at(size);
        data = rest;
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let safe = !name.is_empty()
            && !name.starts_with('/')
            && !name.contains('\0')
            && name
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if safe {
            files.push((name, bytes));
        }
    }
    files
}

/// What a server sends a client: a stream of frames, each decoded as a
/// response (`remote::wire`).
pub fn remote_responses(data: &[u8]) {
    use crate::remote::wire::{read_frame, Response};
    let mut input = data;
    while let Ok((tag, body)) = read_frame(&mut input) {
        let _ = Response::decode(tag, &body);
    }
}

/// A zlib stream that must hold exactly N bytes (`pack::inflate`: objects
/// a client or a server sent, pack entries fsck reads): the first 8 bytes
/// are N (little-endian, any value: it is a claim), the rest the stream.
/// The one-call path (libdeflate, for streams this small) and the
/// streaming path must agree with each other and with flate2's reader:
/// the same bytes, or all three refuse.
pub fn zlib_exact(data: &[u8]) {
    use crate::pack::inflate::{inflate_exact, stream_exact};
    let Some((size, zdata)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    let whole = inflate_exact(zdata, size);
    let mut streamed = Vec::new();
    let pieces = stream_exact(zdata, size, &mut |p| streamed.extend_from_slice(p));
    let reference = {
        use std::io::Read;
        let mut z = flate2::read::ZlibDecoder::new(zdata);
        let mut out = Vec::new();
        let read = (&mut z).take(size.saturating_add(1)).read_to_end(&mut out);
        (read.is_ok() && out.len() as u64 == size && z.total_in() as usize == zdata.len())
            .then_some(out)
    };
    match (whole, pieces, reference) {
        (Ok(one_call), Ok(()), Some(reference)) => {
            assert!(one_call == reference, "one call differs from flate2");
            assert!(streamed == reference, "streamed differs from flate2");
        }
        (Err(_), Err(_), None) => {}
        (whole, pieces, reference) => panic!(
            "disagree on {size} bytes: one call {:?}, streamed {:?}, flate2 {:?}",
            whole.map(|v| v.len()),
            pieces,
            reference.map(|v| v.len())
        ),
    }
}

/// Seed inputs for `zlib_exact`: streams that take one call and that
/// stream, stored and deflated, with their true size.
pub fn zlib_exact_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use std::io::Write;
    let text: Vec<u8> = b"rewind keeps every day ".repeat(20);
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut seeds = Vec::new();
    for (name, data, level) in [
        ("empty", &[][..], 1),
        ("text", &text[..], 1),
        ("text-stored", &text[..], 0),
        ("noise-big", &noise[..], 1),
    ] {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
        z.write_all(data).expect("to memory");
        let mut input = (data.len() as u64).to_le_bytes().to_vec();
        input.extend_from_slice(&z.finish().expect("to memory"));
        seeds.push((name, input));
    }
    seeds
}

/// A whole client session as `rewind server` reads it: the input is the
/// stream of request frames after the greeting; this target adds the magic,
/// the version and the opening of a fresh repository holding one pack, so
/// that mutations reach object checks, ref updates and reads. The server
/// runs restricted to the scratch directory and append-only.
pub fn remote_session(data: &[u8]) {
    use crate::remote::wire::{Request, MAGIC, VERSION};
    let (dir, _repo) = scratch_repo_with_pack();
    let mut session = MAGIC.to_vec();
    let greeting = [
        Request::Hello {
            min: VERSION,
            max: VERSION,
        },
        Request::Open {
            path: dir.as_os_str().as_encoded_bytes().to_vec(),
            create: false,
        },
    ];
    for request in greeting {
        request.write(&mut session).expect("to memory");
    }
    session.extend_from_slice(data);
    crate::remote::server::serve_bytes(&session, dir.parent().unwrap_or(&dir));
}

/// Seed inputs for `remote_session`: a save (a blob, a tree and a commit
/// sent, the pack finished, the branch created, then moved forward), reads
/// of objects, refs and the shared file, and a refused deletion.
pub fn remote_session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::object::{hash_object, Kind};
    use crate::remote::wire::Request;
    let put = |kind: Kind, data: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, data).expect("to memory");
        let zdata = z.finish().expect("to memory");
        let id = hash_object(kind, data);
        (
            id,
            Request::PutObject {
                id,
                kind,
                size: data.len() as u64,
                zdata,
            },
        )
    };
    let (blob, put_blob) = put(Kind::Blob, b"hello\n");
    let mut tree_body = b"100644 hello\0".to_vec();
    tree_body.extend_from_slice(&blob.0);
    let (tree, put_tree) = put(Kind::Tree, &tree_body);
    let commit_text = |parent: Option<ObjectId>| {
        let mut c = format!("tree {tree}\n");
        if let Some(p) = parent {
            c.push_str(&format!("parent {p}\n"));
        }
        c.push_str(
            "author a <a@b> 1700000000 +0000\ncommitter a <a@b> 1700000000 +0000\n\nrewind save\n",
        );
        c.into_bytes()
    };
    let (first, put_first) = put(Kind::Commit, &commit_text(None));
    let (second, put_second) = put(Kind::Commit, &commit_text(Some(first)));
    let frames = |requests: Vec<Request>| {
        let mut out = Vec::new();
        for r in requests {
            r.write(&mut out).expect("to memory");
        }
        out
    };
    let name = "refs/heads/etc".to_string();
    vec![
        (
            "save",
            frames(vec![
                Request::ListPacks,
                Request::ReadRef { name: name.clone() },
                put_blob,
                put_tree,
                put_first,
                Request::FinishPack,
                Request::UpdateRef {
                    name: name.clone(),
                    new: first,
                    old: None,
                },
                put_second,
                Request::FinishPack,
                Request::UpdateRef {
                    name: name.clone(),
                    new: second,
                    old: Some(first),
                },
                Request::SetHeadIfDangling {
                    branch: "etc".into(),
                },
            ]),
        ),
        (
            "read",
            frames(vec![
                Request::ListRefs {
                    prefix: "refs/".into(),
                },
                Request::GetObjects {
                    ids: vec![blob, tree, hash_object(Kind::Blob, b"object 1\n")],
                    expand: true,
                },
                Request::ReadHeader {
                    id: hash_object(Kind::Blob, b"object 2\n"),
                },
                Request::ReadShared {
                    name: "runs.toml".into(),
                },
                Request::WriteShared {
                    name: "runs.toml".into(),
                    bytes: b"[backup.etc]\ntime = 1\nresult = \"ok\"\nduration_seconds = 1.0\n"
                        .to_vec(),
                },
                Request::DeleteRef { name, old: first },
            ]),
        ),
    ]
}

/// Seed inputs for `remote_responses`: one of every answer.
pub fn remote_responses_seed() -> Vec<u8> {
    use crate::object::Kind;
    use crate::remote::wire::{write_pieces, ErrorCode, Response};
    let id = ObjectId([7; 20]);
    let mut out = Vec::new();
    for r in [
        Response::Hello { version: 1 },
        Response::Ok,
        Response::Error {
            code: ErrorCode::NoRepository,
            message: "no repository".into(),
        },
        Response::Packs {
            names: vec![format!("pack-{}.idx", "0".repeat(40))],
        },
        Response::Refs {
            refs: vec![("refs/heads/etc".into(), id)],
        },
        Response::Ref { id: Some(id) },
        Response::RefChanged { found: None },
        Response::Object {
            id,
            kind: Kind::Blob,
            size: 3,
        },
    ] {
        r.write(&mut out).expect("to memory");
    }
    write_pieces(&mut out, b"abc").expect("to memory");
    for r in [
        Response::ObjectMissing {
            id,
            corrupt: false,
            message: "not found".into(),
        },
        Response::Header {
            kind: Kind::Tree,
            size: 10,
        },
        Response::Bool { value: true },
        Response::NoFile,
        Response::Also {
            id,
            kind: Kind::Blob,
            size: 0,
        },
    ] {
        r.write(&mut out).expect("to memory");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_files_unpack_to_the_same_files() {
        let files = vec![
            ("HEAD".to_string(), b"ref: refs/heads/x\n".to_vec()),
            ("objects/pack/p.idx".to_string(), vec![0u8; 300]),
        ];
        let packed = pack_files(&files);
        let unpacked: Vec<(String, Vec<u8>)> = unpack_files(&packed)
            .into_iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect();
        assert_eq!(unpacked, files);
    }

    #[test]
    fn unpacking_skips_names_that_leave_the_repository() {
        let files = vec![
            ("../x".to_string(), b"1".to_vec()),
            ("/etc/passwd".to_string(), b"2".to_vec()),
            ("a/./b".to_string(), b"3".to_vec()),
            ("nul\0name".to_string(), b"5".to_vec()),
            ("ok".to_string(), b"4".to_vec()),
        ];
        let packed = pack_files(&files);
        let names: Vec<&str> = unpack_files(&packed).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ok"]);
    }

    #[test]
    fn every_target_has_a_unique_name() {
        let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
    }
}
