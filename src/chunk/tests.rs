//! Golden vectors and format rules for chunking and chunk trees.
//!
//! The golden values pin the frozen parameters: if one of these tests fails,
//! a repository written before the change would stop deduplicating against
//! one written after it. Fix the code, never the vectors.

use super::tree::{hex_width, ChunkTreeBuilder, FileObject, Shape};
use super::{is_zero, Params, SplitError, Splitter, AVG_SIZE, MAX_SIZE, MIN_SIZE};
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
        if r.is_multiple_of(17) {
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
    // And the readers' strict parser accepts what the builder wrote.
    let level = crate::chunk::parse::ChunkLevel::parse(&id, body).expect("strict parse");
    level
        .fit(&id, (out.len() - start) as u64)
        .expect("fits its range");
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
    assert_eq!((MIN_SIZE, AVG_SIZE, MAX_SIZE), (4096, 8192, 65536));
    assert_eq!(Params::FROZEN.normalization, 2);
    assert_eq!(
        (super::tree::FANOUT_BITS, super::tree::MAX_ENTRIES),
        (6, 1024)
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
    let expect = reference_cut_lengths(&data);
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

/// Runs of zeros are cut without the gear hash (`Splitter::zero_cut`):
/// the cuts must stay exactly FastCDC's, including runs just shorter or
/// longer than `max`, a non-zero byte at the last position FastCDC looks
/// at, and a file that ends inside a run.
#[test]
fn zero_runs_cut_as_fastcdc_does() {
    let max = MAX_SIZE as usize;
    let mut data = Vec::new();
    for (i, run) in [
        max - 1,
        max,
        max + 1,
        2 * max,
        3 * max + 4097,
        MIN_SIZE as usize,
        100,
        5 * max,
    ]
    .into_iter()
    .enumerate()
    {
        data.extend(vec![0u8; run]);
        data.push(1 + i as u8);
        data.extend(random_bytes(20 + i as u64, 3_000 + 1_000 * i));
    }
    // A non-zero byte exactly at the end of a chunk's window.
    data.extend(vec![0u8; max - 1]);
    data.push(7);
    data.extend(vec![0u8; 2 * max + 123]); // ends inside a run
    let expect = reference_cut_lengths(&data);
    for reader_seed in [1, 2, 3] {
        let mut got = Vec::new();
        Splitter::new()
            .split(
                Dribble {
                    data: &data,
                    rng: Rng(reader_seed),
                },
                |c: &[u8]| -> Result<(), ()> {
                    got.push(c.len());
                    Ok(())
                },
            )
            .expect("split");
        assert_eq!(got, expect);
    }
    assert!(expect.contains(&max));
}

#[test]
fn is_zero_finds_any_non_zero_byte() {
    assert!(is_zero(&[]));
    assert!(is_zero(&[0u8; 5000]));
    for len in [1, 15, 16, 17, 511, 512, 513, 5000] {
        for at in [0, len / 2, len - 1] {
            let mut v = vec![0u8; len];
            v[at] = 0x80;
            assert!(!is_zero(&v), "len {len} at {at}");
        }
    }
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

const GOLDEN_RANDOM_LENS: &[usize] = &[
    9314, 10543, 13846, 14995, 10160, 10307, 9234, 8529, 8550, 8597, 10750, 9434, 9922, 8647,
    13486, 9591, 9856, 12080, 11026, 8704, 10131, 11617, 10566, 8478, 10021, 10653, 8606, 6812,
    10568, 11926, 6697, 14514, 10643, 12365, 12646, 8268, 6687, 9047, 13657, 13246, 6770, 9780,
    10178, 13693, 8755, 8342, 8314, 11788, 11159, 9491, 8244, 10058, 9991, 8871, 5148, 8680, 11199,
    11182, 6738, 8458, 11160, 8610, 10629, 8746, 9663, 10564, 9337, 12443, 8920, 9134, 13660, 8489,
    6712, 4189, 13755, 9111, 11021, 9148, 11472, 5527, 8810, 10222, 8102, 5008, 8449, 6657, 8846,
    8973, 10110, 8963, 10686, 4779, 16078, 8505, 8012, 9971, 10705, 14327, 8256, 10468, 10473,
    11704, 9835, 10870, 8598, 8403, 8696, 7742, 7286, 10744, 12811, 9322, 5338, 8420, 10573, 11923,
    8296, 9955, 12061, 4722, 9128, 10409, 5179, 9183, 11310, 8983, 9280, 6691, 10204, 10192, 10189,
    9947, 14419, 10434, 5881, 8454, 12891, 9935, 9624, 8720, 9819, 9668, 9068, 10928, 5521, 12515,
    12715, 8351, 10259, 9950, 16382, 7209, 8234, 10042, 8313, 9746, 8549, 8819, 10251, 12688,
    18931, 16775, 8333, 9066, 11786, 8268, 10029, 10630, 8883, 14835, 9639, 10838, 10565, 11132,
    9329, 10439, 8249, 8971, 9029, 8906, 11425, 8745, 12047, 9785, 9347, 8669, 8523, 9646, 10184,
    12837, 10949, 11503, 9856, 9891, 10549, 9413, 10122, 8356, 10113, 9096, 8858, 11396, 9141,
    15224, 8495, 9308, 8512, 13106, 8504, 9325, 10742, 10332, 9865, 11028, 8453, 10109, 10826,
    8534, 9078, 8707, 8652, 8310, 9560, 8481, 10826, 9545, 8903, 14344, 9436, 10020, 12630, 13723,
    10248, 10373, 10674, 9109, 8596, 8834, 8546, 10977, 8615, 11328, 8297, 9563, 9842, 8407, 9185,
    17710, 8795, 9067, 10450, 10283, 10594, 8092, 5167, 10193, 11186, 8887, 5876, 10457, 10964,
    9089, 9442, 12100, 9416, 9055, 8310, 8417, 10373, 8670, 13157, 10979, 10580, 11456, 4221, 8595,
    8699, 10233, 9199, 8928, 11925, 8624, 9492, 9462, 9499, 16664, 7296, 4306, 10705, 10596, 8535,
    11591, 8755, 14145, 8756, 9129, 8533, 8449, 14387, 12712, 9802, 8564, 5857, 7179, 8764, 8509,
    9527, 8639, 9158, 9906, 8834, 8373, 9456, 7917, 4786, 10209, 6946, 11413, 8378, 6270, 8600,
    7665, 12055, 10199, 4772, 5796, 7649, 9421, 10293, 9393, 13159, 8649, 7169, 5166, 8358, 8662,
    8353, 8572, 8345, 9663, 10123, 9585, 8002, 8724, 10086, 9386, 11418, 11472, 8756, 8347, 8476,
    10602, 8961, 10039, 11585, 9595, 15418, 9061, 4892, 8453, 8916, 5901, 11620, 8308, 8312, 4299,
    7749, 12225, 10634, 9955, 6696, 8944, 13134, 9750, 4818, 8361, 8909, 8461, 11193, 10468, 6967,
    9134, 8484, 8572, 8386, 10094, 9751, 9310, 7162, 11297, 9493, 11715, 8509, 8277, 9523, 9938,
    8295, 4361, 15537, 10895, 11119, 12734, 9055, 9943, 8815, 10229, 8368, 9904, 12793, 4519, 8368,
    10655, 8218, 8936, 10269, 9307, 10069, 15193, 9075, 5016, 9981, 11062, 6266, 8366, 8272, 10286,
    6189, 9573, 11116, 9113, 8829, 9546, 10553, 13488, 11692, 8451, 6422, 14662, 5376, 15861, 9516,
    13418, 9330, 10556, 12558, 8942, 9153, 12023, 5616, 10609, 9480, 12688, 12262, 8885, 8468,
    11828, 10611, 9654, 5505, 8283, 8792, 20014, 11846, 8409, 9397, 8415, 10218, 9162, 4319, 9596,
    6637, 11095, 8295, 9766, 8273, 9866, 7225, 14675, 8303, 9038, 9116, 10289, 12168, 9441, 10029,
    9332, 9942, 12271, 8403, 15166, 8537, 4389, 8707, 9236, 8412, 12278, 8872, 8359, 8923, 8224,
    8556, 10167, 9048, 11923, 9909, 9578, 13924, 8199, 12665, 9870, 9726, 10931, 10434, 8234,
    10698, 5311, 10575, 10615, 7487, 8945, 12331, 15956, 10634, 11860, 8290, 10654, 13009, 7419,
    8444, 12455, 10492, 8369, 13755, 10235, 6227, 8429, 12288, 8544, 12575, 9701, 5503, 9340, 9525,
    6613, 10855, 11023, 11857, 7295, 9749, 8567, 7088, 9226, 7533, 4434, 9054, 14276, 8823, 5807,
    9875, 8307, 10324, 14583, 8530, 9040, 5639, 8438, 9018, 11376, 9475, 6506, 13431, 8250, 7165,
    8749, 9146, 9085, 8342, 10442, 12595, 9879, 12490, 8400, 8702, 8729, 5710, 12271, 8986, 9862,
    11327, 8563, 9815, 10790, 12188, 10099, 7802, 4214, 12262, 9629, 8542, 5771, 10610, 12740,
    10231, 8268, 9833, 9763, 11611, 9442, 5240, 16648, 9562, 9163, 8636, 7291, 5075, 10236, 11758,
    10110, 11225, 9820, 10260, 14307, 9083, 8636, 9101, 8259, 9389, 7087, 10642, 8951, 10482, 8931,
    9140, 8703, 10023, 8757, 9375, 10552, 13005, 9815, 9727, 8685, 9505, 15384, 9880, 13236, 10093,
    15444, 7528, 8484,
];
const GOLDEN_RANDOM_FIRST_ID: &str = "1bfa91b2b8b05366cd21f59c04b79491c947267d";
const GOLDEN_RANDOM_IDS_DIGEST: &str = "141489ca86b45700f0822eb316dc31ce6308f39a";
const GOLDEN_TEXT_LENS: &[usize] = &[
    10076, 11622, 8732, 9408, 4758, 9538, 11331, 10636, 5067, 9437, 10778, 9967, 6380, 6182, 10146,
    12983, 9613, 11391, 8796, 10626, 12636, 9296, 11113, 8347, 16082, 12570, 9688, 12035, 8252,
    12000, 11852, 9027, 9541, 9063, 8818, 8408, 9049, 15295, 10859, 8473, 8480, 12026, 8470, 10803,
    8209, 9040, 8575, 9134, 17066, 8867, 8360, 12099, 9450, 12462, 8739, 12433, 8197, 8745, 9867,
    9797, 8386, 10289, 13034, 8461, 11367, 11955, 11185, 13508, 10335, 12044, 9959, 11884, 11008,
    9557, 13710, 9872, 11397, 8642, 9600, 16722, 8556, 10863, 12162, 9687, 9346, 9783, 8378, 9119,
    10086, 9843, 9154, 9075, 9801, 5258, 8859, 8400, 10257, 8243, 25501, 7652, 8739, 10472, 8292,
    9505, 8709, 9287, 18625, 9696, 6414, 12961, 12606, 8982, 9063, 9523, 8267, 10862, 9303, 8228,
    11766, 9799, 9766, 9674, 8553, 4574, 10498, 11402, 10579, 10242, 8830, 19314, 8818, 8218, 9737,
    10254, 10737, 8989, 8477, 11311, 9097, 12564, 6253, 13558, 10129, 12949, 9917, 8658, 5350,
    9241, 9260, 8175, 6453, 8792, 12884, 10242, 8657, 9598, 9499, 9772, 14508, 5417, 9093, 11673,
    12133, 10668, 9753, 8234, 11760, 9115, 8660, 9479, 9963, 13111, 8396, 8334, 10267, 4117, 7953,
    6962, 17540, 9889, 9703, 8907, 11811, 12063, 5169, 8986, 7256, 8789, 11583, 11370, 10517,
    12058, 14969, 10082, 11343, 8865, 10449, 9114, 8692, 14185, 12116, 9167, 4757, 7370, 7367,
    12078, 9350, 10182, 6081,
];
const GOLDEN_TEXT_FIRST_ID: &str = "0b42e2feb77887b61e58e0543bf8c79d28b1bd10";
const GOLDEN_TEXT_IDS_DIGEST: &str = "833e29116b7db8cc95bff168fb690193ae348fa6";
const GOLDEN_TOP_TREE: &str = "68cc2820ace1828f9c93049e1c25ec4e60c0e214";
const GOLDEN_TREE_COUNT: usize = 24;

/// Chunk lengths of FastCDC run over the whole of `data` at once, with our
/// parameters: what the streaming splitter must reproduce.
fn reference_cut_lengths(data: &[u8]) -> Vec<usize> {
    fastcdc::v2020::FastCDC::with_level(
        data,
        MIN_SIZE as usize,
        AVG_SIZE as usize,
        MAX_SIZE as usize,
        fastcdc::v2020::Normalization::Level2,
    )
    .map(|c| c.length)
    .collect()
}
