//! Replays every kept fuzz input as an ordinary test: the seed corpus
//! (`tests/fuzz/corpus/<target>`, real bytes of test repositories) and every
//! input that ever made a target fail (`tests/fuzz/regressions/<target>`).
//! `scripts/fuzz` runs the same targets coverage-guided.
//!
//! `cargo test --release --test fuzz_corpus -- --ignored make_seed_corpus`
//! writes the seed corpus anew from repositories made by rewind, git and
//! bup (needs both installed).

mod common;
use common::*;
use rewind::fuzz::{self, TARGETS};
use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| p.is_file());
    files.sort();
    files
}

#[test]
fn every_target_has_a_seed_corpus_and_every_corpus_a_target() {
    let corpus = fuzz_dir().join("corpus");
    let dirs: BTreeSet<String> = fs::read_dir(&corpus)
        .expect("tests/fuzz/corpus")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let names: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(dirs, names, "corpus directories and targets differ");
    for name in &names {
        assert!(
            !files_in(&corpus.join(name)).is_empty(),
            "target {name} has no seed inputs"
        );
    }
}

#[test]
fn every_kept_input_replays_without_a_failure() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in TARGETS {
        for kind in ["corpus", "regressions"] {
            for file in files_in(&fuzz_dir().join(kind).join(target.name)) {
                let data = fs::read(&file).expect("read input");
                replayed += 1;
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.run)(&data))) {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{}: {why}", file.display()));
                }
            }
        }
    }
    assert!(replayed > TARGETS.len(), "only {replayed} inputs replayed");
    assert!(
        failures.is_empty(),
        "{} kept inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Writes `bytes` as seed `name` of `target`.
fn seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

/// Every file of a repository that a reader looks at, for the
/// `repository` target (bup's own index and caches left out).
fn repository_files(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let mut paths = Vec::new();
    walk(repo, &mut paths);
    let mut files = Vec::new();
    for p in paths {
        let rel = p
            .strip_prefix(repo)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        let wanted = rel == "HEAD"
            || rel == "packed-refs"
            || rel.starts_with("refs/")
            || rel.starts_with("objects/")
            || rel.starts_with("rewind/");
        if wanted && p.is_file() {
            files.push((rel, fs::read(&p).expect("read repository file")));
        }
    }
    files.sort();
    files
}

fn git_bytes(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(git(repo).args(args));
    assert_eq!(out.code, 0, "git {args:?}: {}", out.stderr);
    out.stdout
}

fn rewind(repo: &Path, args: &[&str]) {
    let out = run(std::process::Command::new(rewind_bin())
        .arg("-d")
        .arg(repo)
        .args(args));
    assert_eq!(out.code, 0, "rewind {args:?}: {}", out.stderr);
}

#[test]
#[ignore = "writes tests/fuzz/corpus; run by hand when a format or a target changes"]
fn make_remote_seeds() {
    for (name, bytes) in fuzz::remote_session_seeds() {
        seed("remote_session", name, &bytes);
    }
    seed(
        "remote_responses",
        "every-answer",
        &fuzz::remote_responses_seed(),
    );
}

#[test]
#[ignore = "writes tests/fuzz/corpus; run by hand when a format or a target changes"]
fn make_zlib_seeds() {
    for (name, bytes) in fuzz::zlib_exact_seeds() {
        seed("zlib_exact", name, &bytes);
    }
}

#[test]
#[ignore = "writes tests/fuzz/corpus; run by hand when a format or a target changes"]
fn make_seed_corpus() {
    make_remote_seeds();
    let tmp = tempdir();
    let src = canon(tmp.path()).join("src");
    mkdir(&src);
    write(&src.join("hosts"), b"127.0.0.1 localhost\n");
    write_random(&src.join("dump.sql"), 7, 40 << 10);
    mkdir(&src.join("conf.d"));
    write(&src.join("conf.d/a.conf"), b"a = 1\n");
    std::os::unix::fs::symlink("hosts", src.join("link")).expect("symlink");
    let repo = tmp.path().join("repo");
    rewind(&repo, &["init"]);
    let src_arg = src.to_str().expect("utf-8 path");
    rewind(&repo, &["save", "-n", "etc", src_arg]);
    write(&src.join("hosts"), b"127.0.0.1 localhost\n::1 localhost\n");
    rewind(&repo, &["save", "-n", "etc", src_arg]);
    rewind(&repo, &["save", "-n", "db", "--strip", src_arg]);
    git_bytes(&repo, &["tag", "v1", "etc"]);

    // Whole repositories: rewind's loose refs, then packed refs.
    seed(
        "repository",
        "rewind-loose-refs",
        &fuzz::pack_files(&repository_files(&repo)),
    );
    let packed = tmp.path().join("packed");
    cp_a(&repo, &packed);
    git_bytes(&packed, &["pack-refs", "--all"]);
    seed(
        "repository",
        "rewind-packed-refs",
        &fuzz::pack_files(&repository_files(&packed)),
    );

    // One file per format, from that repository.
    let pack_dir = repo.join("objects/pack");
    for (i, idx) in files_in(&pack_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .take(2)
        .enumerate()
    {
        let bytes = fs::read(&idx).expect("idx");
        seed("idx", &format!("rewind-{i}"), &bytes[..bytes.len() - 20]);
        let index = rewind::pack::idx::PackIndex::parse(&idx, &bytes).expect("parse idx");
        let pack = fs::read(idx.with_extension("pack")).expect("pack");
        for (k, entry) in index.entries().take(3).enumerate() {
            let at = entry.offset as usize;
            let mut input = entry.offset.to_le_bytes().to_vec();
            input.extend_from_slice(&pack[at..(at + 32).min(pack.len())]);
            seed("pack_entry_header", &format!("rewind-{i}-{k}"), &input);
        }
    }
    for (name, spec) in [
        ("commit-root", "etc"),
        ("commit-parent", "etc~1"),
        ("commit-stripped", "db"),
    ] {
        seed(
            "commit",
            name,
            &git_bytes(&repo, &["cat-file", "commit", spec]),
        );
    }
    let abs = src_arg.trim_start_matches('/');
    for (name, spec) in [
        ("root", "etc^{tree}".to_string()),
        ("source", format!("etc:{abs}")),
        ("chunked", format!("etc:{abs}/dump.sql.bup")),
    ] {
        seed(
            "tree",
            name,
            &git_bytes(&repo, &["cat-file", "tree", &spec]),
        );
    }
    // The chunked file's tree behind its length (40 KiB).
    let mut chunk_tree = (40u64 << 10).to_le_bytes().to_vec();
    chunk_tree.extend_from_slice(&git_bytes(
        &repo,
        &["cat-file", "tree", &format!("etc:{abs}/dump.sql.bup")],
    ));
    seed("chunk_tree", "rewind-40k", &chunk_tree);
    seed(
        "bupm",
        "source",
        &git_bytes(&repo, &["cat-file", "blob", &format!("etc:{abs}/.bupm")]),
    );
    seed(
        "bupm",
        "root",
        &git_bytes(&repo, &["cat-file", "blob", "etc:.bupm"]),
    );
    let index = fs::read(rewind::save::index::index_path(&repo, "etc")).expect("change index");
    seed(
        "change_index",
        "etc",
        &fuzz::change_index_input(&index).expect("a change index this rewind wrote"),
    );
    seed("object_table", "one-pack", &fuzz::object_table_input());

    // The commit cache (format 2), written by hand: a merge over a short
    // chain. Layout: magic, per commit id | tree | author time | committer
    // time (BE i64 each) | parent count (BE u32) | parents.
    let mut cache = b"RWCMTS\0\x02".to_vec();
    let parents: [(u8, &[u8]); 4] = [(4, &[3, 2]), (3, &[1]), (2, &[1]), (1, &[])];
    for (id, parents) in parents {
        cache.extend_from_slice(&[id; 20]);
        cache.extend_from_slice(&[9; 20]);
        let time = 1_700_000_000i64 + i64::from(id);
        cache.extend_from_slice(&time.to_be_bytes());
        cache.extend_from_slice(&time.to_be_bytes());
        cache.extend_from_slice(&(parents.len() as u32).to_be_bytes());
        for &p in parents {
            cache.extend_from_slice(&[p; 20]);
        }
    }
    seed("commit_cache", "chain", &cache);

    // Refs: packed-refs (behind its length), a loose ref, HEAD.
    let packed_refs = fs::read(packed.join("packed-refs")).expect("packed-refs");
    let tip = fs::read(repo.join("refs/heads/etc")).expect("ref");
    let mut refs = (packed_refs.len() as u16).to_le_bytes().to_vec();
    refs.extend_from_slice(&packed_refs);
    refs.extend_from_slice(&tip);
    refs.extend_from_slice(b"ref: refs/heads/x\n");
    seed("refs", "packed-loose-head", &refs);

    // A loose object as git writes it.
    let plain = tmp.path().join("plain");
    sh(git_plain().arg("init").arg("-q").arg("--bare").arg(&plain));
    let blob = tmp.path().join("blob");
    write(&blob, b"a loose blob\n");
    let id = String::from_utf8(git_bytes(
        &plain,
        &["hash-object", "-w", blob.to_str().unwrap()],
    ))
    .expect("hex");
    let id = id.trim();
    seed(
        "loose_object",
        "blob",
        &fs::read(plain.join("objects").join(&id[..2]).join(&id[2..])).expect("loose object"),
    );

    // Deltas: a copy from the base and an insert.
    let mut delta = vec![
        0u8, 0, b'h', b'e', b'l', b'l', b'o', b' ', b'w', b'o', b'r', b'l', b'd',
    ];
    delta[0] = 11; // where base and delta split (u16 LE)
    delta.extend_from_slice(&[11, 14, 0x90, 5, 3, b'!', b'!', b'!', 0x91, 6, 5]);
    seed("delta", "copy-insert", &delta);

    for (name, text) in [
        ("minutes", "2026-11-21T23:30"),
        ("seconds-offset", "2026-11-21 23:30:15+0100"),
        ("epoch", "1700000000.5"),
        ("duration", "26h"),
    ] {
        seed("date", name, text.as_bytes());
    }
    let template = run(std::process::Command::new(rewind_bin()).args(["config", "init"]));
    assert_eq!(template.code, 0, "config init: {}", template.stderr);
    seed("config", "template", &template.stdout);
    seed(
        "runs_toml",
        "one-run",
        b"[backup.etc]\ntime = 1700000000\nresult = \"ok\"\nwarnings = 0\nduration_seconds = 61.5\n\n[backup.etc.saved]\ncommit = \"0123456789abcdef0123456789abcdef01234567\"\ntime = 1700000000\nfiles = 12\nbytes_read = 4096\nbytes_added = 1024\n",
    );

    // bup: a whole repository it wrote.
    let bup_repo = tmp.path().join("bup");
    let home = tmp.path().join("home");
    mkdir(&home);
    sh(bup(&bup_repo, &home).arg("init"));
    sh(bup(&bup_repo, &home).arg("index").arg(&src));
    sh(bup(&bup_repo, &home).args(["save", "-n", "etc"]).arg(&src));
    seed(
        "repository",
        "bup",
        &fuzz::pack_files(&repository_files(&bup_repo)),
    );
}
