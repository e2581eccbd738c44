//! Measures candidate chunking parameters on data made by `scripts/gen-data`.
//!
//! ```text
//! scripts/gen-data D1 && cp -a D1 D2 && scripts/gen-data --next-day D2
//! cargo run --release --example chunk_study -- D1 D2 [--jobs N] [--only db,vm,media,src]
//!     [--candidates MIN/AVG/MAX/NORM,...]   (KiB; default: the built-in list)
//!     [--level N]                            (zlib level, default 1)
//! ```
//!
//! For every candidate (min/avg/max/normalisation) it splits every file of
//! day 1 and then day 2 into one object store per candidate and reports, per
//! data category and in total: stored bytes after day 1, new bytes on day 2,
//! object counts, and the splitter's speed. Stored bytes model a git pack:
//! each new object zlib level 1 (or stored blocks if that is smaller, as the
//! pack writer will do for incompressible chunks) plus `OBJ_OVERHEAD` bytes
//! (pack entry header + idx v2 entry). Chunk trees are counted for several
//! tree shapes at once, each with its own tree store.

use flate2::{Compress, Compression, FlushCompress};
use rewind::chunk::tree::{ChunkTreeBuilder, Shape};
use rewind::chunk::{Params, Splitter};
use rewind::object::{hash_object, Kind, ObjectId};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Pack entry header (~3 bytes) + idx v2 entry (20 id + 4 crc + 4 offset).
const OBJ_OVERHEAD: u64 = 31;
const CATEGORIES: [&str; 4] = ["db", "vm", "media", "src"];

const KIB: u32 = 1024;
const fn p(min: u32, avg: u32, max: u32, normalization: u32) -> Params {
    Params {
        min: min * KIB,
        avg: avg * KIB,
        max: max * KIB,
        normalization,
    }
}

const CANDIDATES: &[Params] = &[
    p(1, 4, 16, 1),
    p(2, 8, 32, 1),
    p(2, 8, 64, 2),
    p(4, 16, 64, 1),
    p(4, 16, 64, 2),
    p(8, 16, 64, 2),
    p(8, 32, 128, 1),
    p(8, 32, 128, 2),
    p(16, 64, 256, 1),
    p(16, 64, 256, 2),
];

const SHAPES: &[Shape] = &[
    Shape {
        fanout_bits: 4,
        max_entries: 256,
    },
    Shape {
        fanout_bits: 5,
        max_entries: 512,
    },
    Shape {
        fanout_bits: 6,
        max_entries: 1024,
    },
    Shape {
        fanout_bits: 7,
        max_entries: 2048,
    },
];

#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    objects: u64,
}

impl Tally {
    fn add(&mut self, stored: u64) {
        self.bytes += stored + OBJ_OVERHEAD;
        self.objects += 1;
    }
}

/// What one candidate did on one day in one category.
#[derive(Default, Clone)]
struct Day {
    input: u64,
    chunks: u64,
    blobs_new: Tally,
    trees_new: Vec<Tally>, // per shape
}

struct Zlib {
    c: Compress,
    out: Vec<u8>,
}

impl Zlib {
    /// Size of `data` as a pack would store it.
    fn stored_size(&mut self, data: &[u8]) -> u64 {
        self.c.reset();
        self.out.clear();
        self.out.reserve(data.len() + data.len() / 16 + 64);
        self.c
            .compress_vec(data, &mut self.out, FlushCompress::Finish)
            .expect("deflate into a large enough buffer");
        // Stored deflate blocks: 5 bytes per 64 KiB block, + zlib header/adler.
        let stored = data.len() as u64 + 5 * (data.len() as u64 / 65535 + 1) + 6;
        (self.out.len() as u64).min(stored)
    }
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

struct Stores {
    blobs: HashSet<ObjectId>,
    trees: Vec<HashSet<ObjectId>>,
}

fn run_day(
    level: u32,
    splitter: &mut Splitter,
    z: &mut Zlib,
    stores: &mut Stores,
    files: &[PathBuf],
) -> Day {
    let mut day = Day {
        trees_new: vec![Tally::default(); SHAPES.len()],
        ..Day::default()
    };
    for path in files {
        let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut builders: Vec<_> = SHAPES
            .iter()
            .map(|s| ChunkTreeBuilder::with_shape(*s))
            .collect();
        let trees_new = &mut day.trees_new;
        let tree_stores = &mut stores.trees;
        let blobs = &mut stores.blobs;
        let (mut chunks, mut blobs_new) = (0u64, Tally::default());
        let zr = &mut *z;
        let mut tree_z = Zlib {
            c: Compress::new(Compression::new(level), true),
            out: Vec::new(),
        };
        let n = splitter
            .split(f, |chunk: &[u8]| -> Result<(), ()> {
                chunks += 1;
                let id = hash_object(Kind::Blob, chunk);
                if blobs.insert(id) {
                    blobs_new.add(zr.stored_size(chunk));
                }
                for (i, b) in builders.iter_mut().enumerate() {
                    let (store, tally, tz) = (&mut tree_stores[i], &mut trees_new[i], &mut tree_z);
                    b.push(id, chunk.len() as u64, &mut |body: &[u8]| {
                        let tid = hash_object(Kind::Tree, body);
                        if store.insert(tid) {
                            tally.add(tz.stored_size(body));
                        }
                        Ok::<_, ()>(tid)
                    })?;
                }
                Ok(())
            })
            .expect("split");
        for (i, b) in builders.into_iter().enumerate() {
            let (store, tally, tz) = (&mut tree_stores[i], &mut trees_new[i], &mut tree_z);
            b.finish(&mut |body: &[u8]| {
                let tid = hash_object(Kind::Tree, body);
                if store.insert(tid) {
                    tally.add(tz.stored_size(body));
                }
                Ok::<_, ()>(tid)
            })
            .expect("finish");
        }
        day.input += n;
        day.chunks += chunks;
        day.blobs_new.bytes += blobs_new.bytes;
        day.blobs_new.objects += blobs_new.objects;
    }
    day
}

/// Splitter throughput over files already in the page cache (no hashing).
fn speed(params: Params, files: &[PathBuf]) -> f64 {
    let mut s = Splitter::with_params(params);
    let start = Instant::now();
    let mut total = 0;
    for path in files {
        let f = File::open(path).expect("open");
        total += s
            .split(f, |c: &[u8]| -> Result<(), ()> {
                std::hint::black_box(c.len());
                Ok(())
            })
            .expect("split");
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut jobs = 1usize;
    let mut only: Vec<String> = CATEGORIES.iter().map(|s| s.to_string()).collect();
    let mut dirs = Vec::new();
    let mut candidates = CANDIDATES.to_vec();
    let mut level = 1u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jobs" => jobs = it.next().and_then(|v| v.parse().ok()).expect("--jobs N"),
            "--candidates" => {
                // min/avg/max/normalisation in KiB, comma separated: 4/8/32/2,...
                candidates = it
                    .next()
                    .expect("--candidates LIST")
                    .split(',')
                    .map(|c| {
                        let v: Vec<u32> =
                            c.split('/').map(|x| x.parse().expect("number")).collect();
                        let [min, avg, max, n] = v[..] else {
                            panic!("candidate {c}: want min/avg/max/norm")
                        };
                        p(min, avg, max, n)
                    })
                    .collect()
            }
            "--level" => level = it.next().and_then(|v| v.parse().ok()).expect("--level N"),
            "--only" => {
                only = it
                    .next()
                    .expect("--only LIST")
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    let [d1, d2] = dirs.as_slice() else {
        eprintln!("usage: chunk_study DAY1 DAY2 [--jobs N] [--only db,vm,media,src] [--candidates MIN/AVG/MAX/NORM,...] [--level ZLIB_LEVEL]");
        std::process::exit(2);
    };
    let cats: Vec<(String, Vec<PathBuf>, Vec<PathBuf>)> = only
        .iter()
        .map(|c| (c.clone(), files_of(&d1.join(c)), files_of(&d2.join(c))))
        .collect();

    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&params) = candidates.get(i) else {
                    break;
                };
                let t = Instant::now();
                let mut splitter = Splitter::with_params(params);
                let mut z = Zlib {
                    c: Compress::new(Compression::new(level), true),
                    out: Vec::new(),
                };
                let mut stores = Stores {
                    blobs: HashSet::new(),
                    trees: vec![HashSet::new(); SHAPES.len()],
                };
                let mut per_cat = Vec::new();
                for (name, f1, _) in &cats {
                    per_cat.push((
                        name.clone(),
                        run_day(level, &mut splitter, &mut z, &mut stores, f1),
                    ));
                }
                let mut per_cat2 = Vec::new();
                for (name, _, f2) in &cats {
                    per_cat2.push((
                        name.clone(),
                        run_day(level, &mut splitter, &mut z, &mut stores, f2),
                    ));
                }
                let spd: Vec<PathBuf> = cats
                    .iter()
                    .filter(|c| c.0 == "db" || c.0 == "vm")
                    .flat_map(|c| c.1.iter().cloned())
                    .collect();
                let speed = speed(params, &spd);
                eprintln!("candidate {params:?} done in {:.0?}", t.elapsed());
                results
                    .lock()
                    .expect("lock")
                    .push((i, params, per_cat, per_cat2, speed));
            });
        }
    });
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|r| r.0);

    let shape0 = 0; // the table of chunk sizes uses the first shape
    println!(
        "## Chunk parameters (zlib level {level}; trees: fanout 2^{}, cap {})\n",
        SHAPES[0].fanout_bits, SHAPES[0].max_entries
    );
    println!("sizes in MB (10^6 bytes); day 1 = first save; day 2 = new objects after --next-day; objects = blobs + chunk trees\n");
    print!("| min/avg/max KiB, norm | split MB/s |");
    for (c, _, _) in &cats {
        print!(" {c} day1 | {c} day2 |");
    }
    println!(" total day1 | total day2 | objects day1 | objects day2 |");
    print!("|---|---|");
    for _ in &cats {
        print!("---|---|");
    }
    println!("---|---|---|---|");
    for (_, params, d1s, d2s, speed) in &results {
        print!(
            "| {}/{}/{} n{} | {:.0} |",
            params.min / KIB,
            params.avg / KIB,
            params.max / KIB,
            params.normalization,
            speed
        );
        let (mut t1, mut t2, mut o1, mut o2) = (0, 0, 0, 0);
        for ((_, a), (_, b)) in d1s.iter().zip(d2s) {
            let a_bytes = a.blobs_new.bytes + a.trees_new[shape0].bytes;
            let b_bytes = b.blobs_new.bytes + b.trees_new[shape0].bytes;
            print!(" {:.1} | {:.1} |", mb(a_bytes), mb(b_bytes));
            t1 += a_bytes;
            t2 += b_bytes;
            o1 += a.blobs_new.objects + a.trees_new[shape0].objects;
            o2 += b.blobs_new.objects + b.trees_new[shape0].objects;
        }
        println!(" {:.1} | {:.1} | {} | {} |", mb(t1), mb(t2), o1, o2);
    }

    println!("\n## Tree shapes (chunk trees only, all categories)\n");
    println!("| min/avg/max KiB, norm | fanout, cap | trees day1 | tree MB day1 | trees day2 | tree MB day2 |");
    println!("|---|---|---|---|---|---|");
    for (_, params, d1s, d2s, _) in &results {
        for (si, shape) in SHAPES.iter().enumerate() {
            let sum = |ds: &Vec<(String, Day)>| {
                ds.iter().fold((0, 0), |(o, b), (_, d)| {
                    (o + d.trees_new[si].objects, b + d.trees_new[si].bytes)
                })
            };
            let (o1, b1) = sum(d1s);
            let (o2, b2) = sum(d2s);
            println!(
                "| {}/{}/{} n{} | {}, {} | {} | {:.2} | {} | {:.2} |",
                params.min / KIB,
                params.avg / KIB,
                params.max / KIB,
                params.normalization,
                1u32 << shape.fanout_bits,
                shape.max_entries,
                o1,
                mb(b1),
                o2,
                mb(b2)
            );
        }
    }
    println!("\n## Inputs\n");
    for ((c, _), (_, d)) in results[0].2.iter().zip(&results[0].3) {
        let d1 = results[0]
            .2
            .iter()
            .find(|x| &x.0 == c)
            .map(|x| &x.1)
            .expect("cat");
        println!(
            "- {c}: day 1 {:.1} MB in {} chunks at the first candidate; day 2 {:.1} MB",
            mb(d1.input),
            d1.chunks,
            mb(d.input)
        );
    }
}
