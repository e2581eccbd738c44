//! Golden vectors and format rules for chunking and chunk trees.
//!
//! The golden values pin the frozen parameters: if one of these tests fails,
//! a repository written before the change would stop deduplicating against
//! one written after it. Fix the code, never the vectors.

use super::tree::{hex_width, ChunkTreeBuilder, FileObject, Shape};
use super::{Params, SplitError, Splitter, AVG_SIZE, MAX_SIZE, MIN_SIZE};
use crate::object::tree::{decode, Mode};
use crate::object::{hash_object, Kind, ObjectId};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

/// splitmix64: a tiny fixed PRNG, so the inputs never depend on a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like data: words from a small vocabulary in lines, so it behaves like
/// logs or dumps (low entropy, repeated substrings).
fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "backup",
        "of",
        "INSERT",
        "INTO",
        "VALUES",
        "server",
        "data",
        "and",
        "file",
        "chunk",
        "tree",
        "2024-05-01",
        "error",
        "ok",
        "user",
        "id",
        "=",
        "'",
        "(",
        ")",
        ",",
        "select",
        "from",
        "where",
        "root",
        "daily",
        "git",
        "pack",
        "index",
    ];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let r = rng.next();
        out.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
        out.extend_from_slice(if r >> 60 == 0 { b"\n" } else { b" " });
        if r >> 56 == 1 {
            out.extend_from_slice(format!("{}", r >> 40).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A reader that hands out data in awkward, varying piece sizes, and
/// sometimes reports `Interrupted`, to exercise the streaming buffer.
struct Dribble<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.rng.next();
        if r % 17 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = ((r >> 8) % 70_000) as usize;
        let n = n.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn split_all(data: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let total = Splitter::new()
        .split(data, |c: &[u8]| -> Result<(), ()> {
            chunks.push(c.to_vec());
            Ok(())
        })
        .expect("split from memory");
    assert_eq!(total, data.len() as u64);
    chunks
}

/// Digest of the concatenated blob ids: one value that pins every id.
fn ids_digest(chunks: &[Vec<u8>]) -> String {
    let mut all = Vec::new();
    for c in chunks {
        all.extend_from_slice(hash_object(Kind::Blob, c).as_bytes());
    }
    hash_object(Kind::Blob, &all).to_hex()
}

#[derive(Default)]
struct Store {
    trees: HashMap<ObjectId, Vec<u8>>,
    blobs: HashMap<ObjectId, Vec<u8>>,
}

impl Store {
    fn write_tree(&mut self, body: &[u8]) -> Result<ObjectId, ()> {
        let id = hash_object(Kind::Tree, body);
        self.trees.insert(id, body.to_vec());
        Ok(id)
    }
}

/// Splits `data` and builds its chunk tree with `shape`, keeping every object.
fn store_file(data: &[u8], shape: Shape, store: &mut Store) -> FileObject {
    let mut builder = ChunkTreeBuilder::with_shape(shape);
    let mut blobs = Vec::new();
    Splitter::new()
        .split(data, |c: &[u8]| -> Result<(), ()> {
            let id = hash_object(Kind::Blob, c);
            blobs.push((id, c.to_vec()));
            builder.push(id, c.len() as u64, &mut |body| store.write_tree(body))
        })
        .expect("split");
    for (id, c) in blobs {
        store.blobs.insert(id, c);
    }
    builder
        .finish(&mut |body| store.write_tree(body))
        .expect("finish")
}

/// Reads a chunk tree back the way bup's reader does (by the offsets in the
/// names), checking every format rule on the way. Returns the tree's height.
fn read_tree(store: &Store, id: ObjectId, max_entries: usize, out: &mut Vec<u8>) -> usize {
    let body = store.trees.get(&id).expect("tree present");
    let entries = decode(body).expect("valid tree");
    assert!(entries.len() >= 2, "single-member groups must be promoted");
    assert!(entries.len() <= max_entries, "tree over the entry cap");
    let width = entries[0].name.len();
    let start = out.len();
    let mut height = 0;
    for e in &entries {
        assert_eq!(e.name.len(), width, "one name width per tree");
        assert!(
            e.name
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)),
            "names are lowercase hex"
        );
        let offset = u64::from_str_radix(std::str::from_utf8(&e.name).expect("ascii"), 16)
            .expect("hex offset");
        assert_eq!(
            offset,
            (out.len() - start) as u64,
            "offset relative to this tree"
        );
        match e.mode {
            Mode::Blob => {
                let blob = store.blobs.get(&e.id).expect("blob present");
                assert!(!blob.is_empty());
                out.extend_from_slice(blob);
            }
            Mode::Tree => {
                height = height.max(read_tree(store, e.id, max_entries, out));
            }
            other => panic!("unexpected mode {other:?} in a chunk tree"),
        }
    }
    // The width is that of this tree's total size, so the last entry ends at
    // the end of the data this tree covers.
    assert_eq!(
        width,
        hex_width((out.len() - start) as u64),
        "bup's name width"
    );
    height + 1
}

fn read_file(store: &Store, obj: FileObject, max_entries: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    match obj {
        FileObject::Blob(id) if id == ObjectId::EMPTY_BLOB => (out, 0),
        FileObject::Blob(id) => (store.blobs[&id].clone(), 0),
        FileObject::Tree(id) => {
            let h = read_tree(store, id, max_entries, &mut out);
            (out, h)
        }
    }
}

fn tree_ids(store: &Store, id: ObjectId, acc: &mut HashSet<ObjectId>) {
    acc.insert(id);
    for e in decode(&store.trees[&id]).expect("tree") {
        if e.mode == Mode::Tree {
            tree_ids(store, e.id, acc);
        }
    }
}

// ------------------------------------------------------------ golden vectors

#[test]
fn frozen_parameters() {
    assert_eq!((MIN_SIZE, AVG_SIZE, MAX_SIZE), (4096, 16384, 65536));
    assert_eq!(Params::FROZEN.normalization, 2);
    assert_eq!(
        (super::tree::FANOUT_BITS, super::tree::MAX_ENTRIES),
        (4, 256)
    );
}

#[test]
fn golden_random_input() {
    let data = random_bytes(0x5eed_0001, 6 << 20);
    let chunks = split_all(&data);
    let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(lens, GOLDEN_RANDOM_LENS);
    assert_eq!(
        hash_object(Kind::Blob, &chunks[0]).to_hex(),
        GOLDEN_RANDOM_FIRST_ID
    );
    assert_eq!(ids_digest(&chunks), GOLDEN_RANDOM_IDS_DIGEST);
}

#[test]
fn golden_text_input() {
    let data = text_bytes(0x5eed_0002, 2 << 20);
    let chunks = split_all(&data);
    let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(lens, GOLDEN_TEXT_LENS);
    assert_eq!(
        hash_object(Kind::Blob, &chunks[0]).to_hex(),
        GOLDEN_TEXT_FIRST_ID
    );
    assert_eq!(ids_digest(&chunks), GOLDEN_TEXT_IDS_DIGEST);
}

#[test]
fn golden_multi_level_tree() {
    let data = random_bytes(0x5eed_0003, 12 << 20);
    let mut store = Store::default();
    let obj = store_file(&data, Shape::FROZEN, &mut store);
    let FileObject::Tree(top) = obj else {
        panic!("a 12 MiB file is a tree")
    };
    let (back, height) = read_file(&store, obj, super::tree::MAX_ENTRIES);
    assert!(back == data);
    assert!(
        height >= 2,
        "golden file should have subtrees, got height {height}"
    );
    assert_eq!(top.to_hex(), GOLDEN_TOP_TREE);
    assert_eq!(store.trees.len(), GOLDEN_TREE_COUNT);
}

// ------------------------------------------------------------ splitter

#[test]
fn streaming_matches_whole_buffer_fastcdc() {
    let mut data = text_bytes(7, 1 << 20);
    data.extend(random_bytes(8, 1 << 20));
    data.extend(vec![0u8; 300_000]); // forces max-size cuts
    data.extend(random_bytes(9, 12_345));
    let expect: Vec<usize> = fastcdc::v2020::FastCDC::with_level(
        &data,
        MIN_SIZE as usize,
        AVG_SIZE as usize,
        MAX_SIZE as usize,
        fastcdc::v2020::Normalization::Level2,
    )
    .map(|c| c.length)
    .collect();
    let mut got = Vec::new();
    let mut joined = Vec::new();
    let total = Splitter::new()
        .split(
            Dribble {
                data: &data,
                rng: Rng(3),
            },
            |c: &[u8]| -> Result<(), ()> {
                got.push(c.len());
                joined.extend_from_slice(c);
                Ok(())
            },
        )
        .expect("split");
    assert_eq!(total, data.len() as u64);
    assert_eq!(got, expect);
    assert!(joined == data);
    assert!(got.iter().all(|&l| l <= MAX_SIZE as usize));
    assert!(got[..got.len() - 1].iter().all(|&l| l >= MIN_SIZE as usize));
    assert!(got.contains(&(MAX_SIZE as usize)));
}

#[test]
fn splitter_is_reusable_and_empty_input_has_no_chunks() {
    let mut s = Splitter::new();
    let mut n = 0;
    let total = s
        .split(&b""[..], |_: &[u8]| -> Result<(), ()> {
            n += 1;
            Ok(())
        })
        .expect("empty");
    assert_eq!((total, n), (0, 0));
    let data = random_bytes(11, 300_000);
    let first = split_all(&data);
    let mut again = Vec::new();
    s.split(&data[..], |c: &[u8]| -> Result<(), ()> {
        again.push(c.to_vec());
        Ok(())
    })
    .expect("split");
    assert_eq!(first, again);
    // A short file is one chunk.
    assert_eq!(split_all(b"hello\n"), vec![b"hello\n".to_vec()]);
}

#[test]
fn split_errors_carry_their_cause() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let err = Splitter::new()
        .split(Broken, |_: &[u8]| -> Result<(), ()> { Ok(()) })
        .expect_err("read error");
    assert!(matches!(err, SplitError::Read(ref e) if e.to_string() == "disk on fire"));

    let data = random_bytes(12, 500_000);
    let mut calls = 0;
    let err = Splitter::new()
        .split(&data[..], |_: &[u8]| {
            calls += 1;
            if calls == 3 {
                Err("full")
            } else {
                Ok(())
            }
        })
        .expect_err("sink error");
    assert!(matches!(err, SplitError::Sink("full")));
    assert_eq!(calls, 3, "splitting stops at the first sink error");
}

// ------------------------------------------------------------ chunk trees

#[test]
fn empty_file_is_the_empty_blob_and_one_chunk_is_a_plain_blob() {
    let mut store = Store::default();
    let obj = store_file(b"", Shape::FROZEN, &mut store);
    assert_eq!(obj, FileObject::Blob(ObjectId::EMPTY_BLOB));
    let small = text_bytes(1, MIN_SIZE as usize);
    let obj = store_file(&small, Shape::FROZEN, &mut store);
    assert_eq!(obj, FileObject::Blob(hash_object(Kind::Blob, &small)));
    assert!(store.trees.is_empty(), "no tree for a one-chunk file");
    // Zero-length pushes are ignored rather than producing duplicate names.
    let mut b = ChunkTreeBuilder::new();
    let mut w = |_: &[u8]| -> Result<ObjectId, ()> { panic!("no tree expected") };
    b.push(ObjectId::EMPTY_BLOB, 0, &mut w).expect("push");
    assert_eq!(b.finish(&mut w), Ok(FileObject::Blob(ObjectId::EMPTY_BLOB)));
}

#[test]
fn two_chunks_make_a_flat_tree_with_bup_names() {
    let data = random_bytes(13, 100_000);
    let mut store = Store::default();
    let obj = store_file(&data, Shape::FROZEN, &mut store);
    let FileObject::Tree(id) = obj else {
        panic!("several chunks make a tree")
    };
    let entries = decode(&store.trees[&id]).expect("tree");
    // 100000 = 0x186a0: five hex digits, so names are five wide.
    assert!(entries.len() >= 2);
    assert_eq!(entries[0].name, b"00000");
    assert!(entries
        .iter()
        .all(|e| e.mode == Mode::Blob && e.name.len() == 5));
    let (back, _) = read_file(&store, obj, super::tree::MAX_ENTRIES);
    assert!(back == data);
}

#[test]
fn deep_trees_read_back_with_relative_offsets() {
    // A tiny shape makes many levels out of a few MiB.
    let shape = Shape {
        fanout_bits: 1,
        max_entries: 5,
    };
    let mut data = random_bytes(14, 3 << 20);
    data.extend(vec![0u8; 2 << 20]); // identical chunks: the cap must hold
    data.extend(text_bytes(15, 1 << 20));
    let mut store = Store::default();
    let obj = store_file(&data, shape, &mut store);
    let (back, height) = read_file(&store, obj, shape.max_entries);
    assert!(back == data);
    assert!(height >= 5, "height {height}");
}

#[test]
fn early_insertion_leaves_most_subtrees_identical() {
    let shape = Shape {
        fanout_bits: 2,
        max_entries: 64,
    };
    let a = random_bytes(16, 8 << 20);
    let mut b = a.clone();
    b.splice(150_000..150_000, text_bytes(17, 3000));
    let (mut sa, mut sb) = (Store::default(), Store::default());
    let (FileObject::Tree(ta), FileObject::Tree(tb)) = (
        store_file(&a, shape, &mut sa),
        store_file(&b, shape, &mut sb),
    ) else {
        panic!("trees expected")
    };
    let (mut ia, mut ib) = (HashSet::new(), HashSet::new());
    tree_ids(&sa, ta, &mut ia);
    tree_ids(&sb, tb, &mut ib);
    let (_, height) = read_file(&sb, FileObject::Tree(tb), shape.max_entries);
    let fresh = ib.difference(&ia).count();
    // Only the groups on the path from the edited chunk to the top change
    // (two per level at most, when the edit moves a group boundary).
    assert!(
        fresh <= 2 * height,
        "{fresh} new trees of {} (height {height})",
        ib.len()
    );
    assert!(ib.len() > 50, "enough trees for the test to mean something");
}

#[test]
fn hex_width_is_bups() {
    for (n, w) in [
        (0, 1),
        (1, 1),
        (15, 1),
        (16, 2),
        (0x16e360, 6),
        (u64::MAX, 16),
    ] {
        assert_eq!(hex_width(n), w, "{n}");
        assert_eq!(format!("{n:x}").len(), w);
    }
}

// ------------------------------------------------------------ golden values

const GOLDEN_RANDOM_LENS: &[usize] = &[];
const GOLDEN_RANDOM_FIRST_ID: &str = "";
const GOLDEN_RANDOM_IDS_DIGEST: &str = "";
const GOLDEN_TEXT_LENS: &[usize] = &[];
const GOLDEN_TEXT_FIRST_ID: &str = "";
const GOLDEN_TEXT_IDS_DIGEST: &str = "";
const GOLDEN_TOP_TREE: &str = "";
const GOLDEN_TREE_COUNT: usize = 0;
