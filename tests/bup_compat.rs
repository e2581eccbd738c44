//! bup 0.33 and rewind read each other's repositories; the comparator used
//! everywhere is itself checked here against bup.

mod common;
use common::*;
use std::fs;
use std::path::Path;

/// `bup index` + `bup save` of `src` into a fresh bup repo at `repo`.
fn bup_save(repo: &Path, home: &Path, name: &str, src: &Path, date: Option<&str>) {
    run(bup(repo, home).args(["index"]).arg(src)).success();
    let mut c = bup(repo, home);
    c.args(["save", "-n", name]);
    if let Some(d) = date {
        c.args(["--date", d]);
    }
    run(c.arg(src)).success();
}

#[test]
fn comparator_accepts_bup_roundtrip_of_zoo() {
    let env = Env::new();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    run(env.bup().arg("init")).success();
    bup_save(&env.repo, &env.home, "z", &zoo, None);
    let out = env.path("out");
    run(env
        .bup()
        .args(["restore", "--sparse", "-C"])
        .arg(&out)
        .arg(snap_path("z", "latest", &zoo)))
    .success();
    // bup 0.33.7 with --sparse preserves everything the comparator checks,
    // except that its restore sometimes leaves mtime 0 on the entries of
    // the odd-names directory (about every second run here): a bup defect,
    // tolerated only in this bup-only check of the comparator.
    let d: Vec<String> = compare_trees(&zoo, &out.join("zoo"))
        .into_iter()
        .filter(|line| !(line.starts_with("mtime: names") && line.ends_with("vs 0.000000000")))
        .collect();
    assert!(d.is_empty(), "{d:#?}");

    // Without --sparse bup writes the holes out as zeros: the comparator must
    // notice exactly that and nothing else.
    let dense = env.path("dense");
    run(env
        .bup()
        .args(["restore", "-C"])
        .arg(&dense)
        .arg(snap_path("z", "latest", &zoo)))
    .success();
    let d: Vec<String> = compare_trees(&zoo, &dense.join("zoo"))
        .into_iter()
        .filter(|line| !(line.starts_with("mtime: names") && line.ends_with("vs 0.000000000")))
        .collect();
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].starts_with("sparse: sparse.img:"), "{d:#?}");
}

#[test]
fn comparator_catches_each_kind_of_difference() {
    let env = Env::new();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    let copy = env.path("copy");
    cp_a(&zoo, &copy);
    assert_same_tree(&zoo, &copy);

    // Each mutation must be reported, under the expected category.
    type Mutation = (&'static str, &'static str, fn(&Path));
    let cases: &[Mutation] = &[
        ("mtime", "regular.txt", |p| {
            let md = std::fs::symlink_metadata(p).unwrap();
            use std::os::unix::fs::MetadataExt;
            set_times(
                p,
                (md.atime(), md.atime_nsec()),
                (md.mtime(), md.mtime_nsec() + 1),
            );
        }),
        ("mtime", "dirs/nested", |p| {
            let md = std::fs::symlink_metadata(p).unwrap();
            use std::os::unix::fs::MetadataExt;
            set_times(
                p,
                (md.atime(), md.atime_nsec()),
                (md.mtime() - 1, md.mtime_nsec()),
            );
        }),
        ("content", "big.bin", |p| {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .unwrap();
            let md = f.metadata().unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, 3_000_001).unwrap();
            f.write_all_at(&[b[0] ^ 0x40], 3_000_001).unwrap();
            // Keep times so only content differs.
            use std::os::unix::fs::MetadataExt;
            set_times(
                p,
                (md.atime(), md.atime_nsec()),
                (md.mtime(), md.mtime_nsec()),
            );
        }),
        ("mode", "modes/setuid", |p| chmod(p, 0o755)),
        ("owner", "owners/u1234", |p| lchown(p, 1234, 5679)),
        ("target", "links/rel", |p| {
            std::fs::remove_file(p).unwrap();
            std::os::unix::fs::symlink("../regular.txX", p).unwrap();
        }),
        ("xattr", "meta/xattr-file", |p| {
            set_xattr(p, "user.comment", b"hellO")
        }),
        ("acl", "meta/acl-file", |p| {
            sh(std::process::Command::new("setfacl")
                .arg("-m")
                .arg("u:1234:r")
                .arg(p))
        }),
        ("hardlink", "hard/a2", |p| {
            let data = std::fs::read(p).unwrap();
            std::fs::remove_file(p).unwrap();
            write(p, &data);
        }),
        ("rdev", "special/chr", |p| {
            std::fs::remove_file(p).unwrap();
            mknod(p, libc::S_IFCHR | 0o666, libc::makedev(1, 5));
        }),
        ("type", "special/fifo", |p| {
            std::fs::remove_file(p).unwrap();
            write(p, b"");
        }),
        ("sparse", "sparse.img", |p| {
            let tmp = p.with_extension("dense");
            sh(std::process::Command::new("cp")
                .arg("--sparse=never")
                .arg(p)
                .arg(&tmp));
            std::fs::rename(&tmp, p).unwrap();
        }),
        ("missing", "names/with space", |p| {
            std::fs::remove_file(p).unwrap()
        }),
        ("extra", "names/brand-new", |p| write(p, b"new")),
    ];
    for (cat, rel, mutate) in cases {
        let copy = env.path(&format!("mut-{}", rel.replace(['/', ' '], "_")));
        cp_a(&zoo, &copy);
        mutate(&copy.join(rel));
        let d = compare_trees(&zoo, &copy);
        let hit = d.iter().any(|l| l.starts_with(&format!("{cat}: {rel}")));
        assert!(hit, "mutation {cat} of {rel} not reported; got {d:#?}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

// ---------------------------------------------------------------------------
// bup reads what rewind writes

/// A rewind repository holding the zoo, saved once.
fn rewind_zoo() -> (Env, std::path::PathBuf) {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("z", None, &zoo);
    (env, zoo)
}

/// bup 0.33's `ls -l` never shows setuid, setgid or sticky bits (its
/// `xstat.mode_str` prints plain x or -); rewind follows GNU `ls -l`. Compare
/// the rest.
fn plain_mode(m: &str) -> String {
    m.chars()
        .enumerate()
        .map(|(i, c)| match (i, c) {
            (3 | 6 | 9, 's' | 't') => 'x',
            (3 | 6 | 9, 'S' | 'T') => '-',
            _ => c,
        })
        .collect()
}

#[test]
fn bup_ls_long_agrees_with_rewind() {
    let (env, zoo) = rewind_zoo();
    for dir in ["plain", "modes", "special", "owners", "hard"] {
        let p = snap_path("z", "latest", &zoo.join(dir));
        let b = run(env.bup().args(["ls", "-l"]).arg(&p)).success();
        let r = env.rw().args(["ls", "-l"]).arg(&p).run().success();
        let key = |l: &LsLine| {
            // bup prints 0 for directories; compare sizes of the rest.
            let size = if l.mode.starts_with('d') {
                "-".to_owned()
            } else {
                l.size.clone()
            };
            (l.name.clone(), plain_mode(&l.mode), l.owner.clone(), size)
        };
        let mut bk: Vec<_> = parse_ls_long(&b.lines()).iter().map(key).collect();
        let mut rk: Vec<_> = parse_ls_long(&r.lines()).iter().map(key).collect();
        bk.sort();
        rk.sort();
        assert!(!bk.is_empty());
        assert_eq!(rk, bk, "{dir}: rewind ls -l vs bup ls -l");
    }
}

#[test]
fn bup_ls_shows_rewind_snapshot_names() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    for (i, d) in ["1401210344", "1401210344", "1500000000"]
        .iter()
        .enumerate()
    {
        write(&src.join("gen"), format!("{i}").as_bytes());
        env.save("n", Some(d), &src);
    }
    env.save("m", None, &src);
    for tz in ["UTC", "Asia/Tokyo", "America/New_York"] {
        let mut b = bup(&env.repo, &env.home);
        b.env("TZ", tz).args(["ls", "n"]);
        let mut bl = run(&mut b).success().lines();
        let mut rl = env.ls_names(tz, "n");
        bl.sort();
        rl.sort();
        assert_eq!(rl, bl, "TZ={tz}");
        assert_eq!(snapshot_names(&bl).len(), 3, "{bl:?}");
    }
    let mut b = run(env.bup().arg("ls")).success().lines();
    b.sort();
    assert_eq!(b, ["m", "n"]);
    // bup resolves every snapshot rewind wrote.
    for s in snapshot_names(&run(env.bup().args(["ls", "n"])).success().lines()) {
        let p = snap_path("n", &s, &src.join("gen"));
        run(env.bup().arg("cat-file").arg(&p)).success();
    }
}

#[test]
fn bup_restores_what_rewind_saved() {
    let (env, zoo) = rewind_zoo();
    let p = snap_path("z", "latest", &zoo);
    let by_bup = env.path("by-bup");
    run(env
        .bup()
        .args(["restore", "--sparse", "-C"])
        .arg(&by_bup)
        .arg(&p))
    .success();
    assert_same_tree(&zoo, &by_bup.join("zoo"));
    let by_rewind = env.path("by-rewind");
    env.restore(&by_rewind, &p);
    assert_same_tree(&by_bup.join("zoo"), &by_rewind.join("zoo"));
}

#[test]
fn bup_checks_pass_on_rewind_repo() {
    let (env, zoo) = rewind_zoo();
    write(&zoo.join("more"), b"second save\n");
    env.save("z", None, &zoo);
    for check in [
        vec!["fsck"],
        vec!["validate-ref-links"],
        vec!["validate-object-links"],
    ] {
        let out = run(env.bup().args(&check));
        assert_eq!(
            out.code,
            0,
            "bup {check:?}: {}{}",
            out.stdout_str(),
            out.stderr
        );
    }
    // bup can keep writing into a rewind repository, and rewind reads it.
    run(env.bup().arg("index").arg(&zoo)).success();
    run(env.bup().args(["save", "-n", "z"]).arg(&zoo)).success();
    write(&zoo.join("more"), b"third save\n");
    env.save("z", None, &zoo);
    let out = env.path("out");
    env.restore(&out, &snap_path("z", "latest", &zoo));
    assert_same_tree(&zoo, &out.join("zoo"));
    assert_eq!(
        snapshot_names(&env.rw().args(["ls", "z"]).run().success().lines()).len(),
        4
    );
    assert_fsck(&env.repo, false);
}

// ---------------------------------------------------------------------------
// rewind reads what bup writes

/// A bup repository with three saves of `src` (the zoo plus a 2100-file
/// directory, so bup writes chunk trees and a chunked .bupm). The last two
/// share a date, so bup names them with -0/-1 suffixes.
fn bup_repo() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    make_zoo(&src.join("zoo"));
    make_big_dir(&src.join("many"), 2100);
    run(env.bup().arg("init")).success();
    bup_save(&env.repo, &env.home, "x", &src, Some("1401210344"));
    write(&src.join("zoo/changed"), b"after the first save\n");
    write(&src.join("many/f00007"), b"changed\n");
    bup_save(&env.repo, &env.home, "x", &src, Some("1500000000"));
    write(&src.join("zoo/changed"), b"after the second save\n");
    bup_save(&env.repo, &env.home, "x", &src, Some("1500000000"));

    // The fixture must exercise what it claims to.
    let rel = src.strip_prefix("/").unwrap().to_str().unwrap().to_owned();
    let bupm = run(env
        .git()
        .args(["ls-tree", &format!("x:{rel}/many"), ".bupm"]))
    .success();
    assert!(
        bupm.stdout_str().starts_with("040000 tree"),
        "bup did not chunk .bupm: {}",
        bupm.stdout_str()
    );
    let big = run(env
        .git()
        .args(["ls-tree", &format!("x:{rel}/zoo"), "big.bin.bup"]))
    .success();
    assert!(
        big.stdout_str().starts_with("040000 tree"),
        "{}",
        big.stdout_str()
    );
    (env, src)
}

/// Restores every snapshot of branch x with both tools and compares.
/// Restores snapshots of branch x with both tools and compares them (the
/// oldest, plus the newest when `all`), then the latest against the live
/// source.
fn restore_all_and_compare(env: &Env, src: &std::path::Path, tag: &str, all: bool) {
    let names = run(env.bup().args(["ls", "x"])).success().lines();
    let snaps = snapshot_names(&names);
    assert_eq!(snaps.len(), 3, "{names:?}");
    let mut sorted = snaps.clone();
    sorted.sort();
    // The oldest, and the newest of the same-second pair (bup's `-1`).
    let pick = if all {
        vec![&sorted[0], &sorted[2]]
    } else {
        vec![&sorted[0]]
    };
    for s in pick {
        let p = snap_path("x", s, src);
        let b = env.path(&format!("{tag}-bup-{s}"));
        let r = env.path(&format!("{tag}-rewind-{s}"));
        run(env
            .bup()
            .args(["restore", "--sparse", "-C"])
            .arg(&b)
            .arg(&p))
        .success();
        env.restore(&r, &p);
        // bup 0.33.7's restore sometimes leaves mtime 0 on the entries of
        // the odd-names directory (see comparator_accepts_bup_roundtrip_of_zoo):
        // only that difference, on bup's side, is tolerated here; rewind's
        // own restore of the latest snapshot is compared strictly with the
        // live source below.
        let d: Vec<String> = compare_trees(&b.join("src"), &r.join("src"))
            .into_iter()
            .filter(|l| !(l.starts_with("mtime: zoo/names") && l.contains(": 0.000000000 vs ")))
            .collect();
        assert!(
            d.is_empty(),
            "{} differs from {} in {} ways:\n{}",
            r.display(),
            b.display(),
            d.len(),
            d.join("\n")
        );
        fs::remove_dir_all(&b).unwrap();
        fs::remove_dir_all(&r).unwrap();
    }
    // The latest bup snapshot equals the live source.
    let r = env.path(&format!("{tag}-live"));
    env.restore(&r, &snap_path("x", "latest", src));
    let d = compare_with(
        src,
        &r.join("src"),
        &Compare {
            atime: false,
            ..Compare::default()
        },
    );
    assert!(d.is_empty(), "{}", d.join("\n"));
}

#[test]
fn rewind_restores_bup_repo_like_bup() {
    let (env, src) = bup_repo();
    restore_all_and_compare(&env, &src, "packed", true);
    // After git repacks with deltas rewind must still read everything.
    run(env.git().args(["gc", "--aggressive", "--quiet"])).success();
    restore_all_and_compare(&env, &src, "gc", false);
}

#[test]
fn rewind_ls_of_bup_repo_matches_bup_ls() {
    let (env, src) = bup_repo();
    for tz in ["UTC", "Asia/Tokyo"] {
        let mut b = bup(&env.repo, &env.home);
        b.env("TZ", tz).args(["ls", "x"]);
        let mut bl = run(&mut b).success().lines();
        let mut rl = env.ls_names(tz, "x");
        bl.sort();
        rl.sort();
        assert_eq!(rl, bl, "TZ={tz}");
    }
    // Same-second duplicates carry bup's -N suffixes, newest highest.
    let snaps = snapshot_names(&run(env.bup().args(["ls", "x"])).success().lines());
    assert!(
        snaps.contains(&"2017-07-14-024000-1".to_owned()),
        "{snaps:?}"
    );
    let newest = env
        .rw()
        .arg("cat-file")
        .arg(snap_path(
            "x",
            "2017-07-14-024000-1",
            &src.join("zoo/changed"),
        ))
        .run()
        .success();
    assert_eq!(newest.stdout, b"after the second save\n");
    // Directory listings agree too, on a directory with a chunked .bupm.
    let p = snap_path("x", "latest", &src.join("many"));
    let b = run(env.bup().args(["ls", "-l"]).arg(&p)).success();
    let r = env.rw().args(["ls", "-l"]).arg(&p).run().success();
    let key = |l: &LsLine| {
        (
            l.name.clone(),
            l.mode.clone(),
            l.owner.clone(),
            l.size.clone(),
        )
    };
    let bk: Vec<_> = parse_ls_long(&b.lines()).iter().map(key).collect();
    let mut rk: Vec<_> = parse_ls_long(&r.lines()).iter().map(key).collect();
    let mut bk2 = bk.clone();
    bk2.sort();
    rk.sort();
    assert_eq!(bk2.len(), 2100);
    assert_eq!(rk, bk2);
}
