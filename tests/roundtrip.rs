//! Save and restore through `rewind` alone: what goes in comes out, and the
//! listing, path-rewriting and selection options do what the CLI promises.

mod common;
use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `rewind ls [-l] PATH` lines, asserting success.
fn ls(env: &Env, long: bool, path: impl AsRef<std::ffi::OsStr>) -> Vec<String> {
    let mut r = env.rw().arg("ls");
    if long {
        r = r.arg("-l");
    }
    r.arg(path).run().success().lines()
}

fn cat(env: &Env, path: impl AsRef<std::ffi::OsStr>) -> Vec<u8> {
    env.rw().arg("cat-file").arg(path).run().success().stdout
}

#[test]
fn zoo_roundtrip_is_exact() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("zoo", None, &zoo);

    // Restoring the directory itself gives DIR/zoo with everything intact.
    let out = env.path("out");
    env.restore(&out, &snap_path("zoo", "latest", &zoo));
    assert_same_tree(&zoo, &out.join("zoo"));

    // A trailing slash restores the contents straight into DIR.
    let out2 = env.path("out2");
    env.restore(&out2, &with_slash(&snap_path("zoo", "latest", &zoo)));
    assert!(
        !out2.join("zoo").exists(),
        "trailing slash must not add a level"
    );
    assert_same_below_root(&zoo, &out2);

    // A single file and a single subdirectory.
    let out3 = env.path("out3");
    env.restore(&out3, &snap_path("zoo", "latest", &zoo.join("hard")));
    env.restore(&out3, &snap_path("zoo", "latest", &zoo.join(zoo::BIG)));
    assert_same_tree(&zoo.join("hard"), &out3.join("hard"));
    assert_eq!(
        fs::read(out3.join(zoo::BIG)).unwrap(),
        fs::read(zoo.join(zoo::BIG)).unwrap()
    );
    assert_fsck(&env.repo, false);
}

#[test]
fn second_save_sees_changes_and_first_stays_intact() {
    let env = Env::init();
    let src = env.path("src");
    make_zoo(&src);
    env.save("n", Some("1500000000"), &src);
    let first = env.path("first-copy");
    cp_a(&src, &first);

    // Change content (same size, new mtime), delete, add, chmod, retarget.
    let big = src.join(zoo::BIG);
    let mut data = fs::read(&big).unwrap();
    data[2_000_000] ^= 0xff;
    fs::write(&big, &data).unwrap();
    fs::remove_file(src.join("names/with space")).unwrap();
    write(&src.join("added.txt"), b"new in the second save\n");
    chmod(&src.join(zoo::REGULAR), 0o640);
    fs::remove_file(src.join("links/rel")).unwrap();
    std::os::unix::fs::symlink("elsewhere", src.join("links/rel")).unwrap();
    env.save("n", Some("1500000100"), &src);

    let snaps = snapshot_names(&ls(&env, false, "n"));
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let o1 = env.path("o1");
    let o2 = env.path("o2");
    env.restore(
        &o1,
        &snap_path("n", &utc_snapshot_name(1_500_000_000), &src),
    );
    env.restore(&o2, &snap_path("n", "latest", &src));
    let d = compare_with(
        &first,
        &o1.join("src"),
        &Compare {
            atime: false,
            root_meta: false,
            ..Compare::default()
        },
    );
    assert!(d.is_empty(), "first snapshot changed:\n{}", d.join("\n"));
    assert_same_tree(&src, &o2.join("src"));
    assert_fsck(&env.repo, false);
}

#[test]
fn snapshots_are_named_by_date_in_local_time_with_latest() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    let dates = [1_401_210_344i64, 1_401_296_744, 1_500_000_000];
    for (i, d) in dates.iter().enumerate() {
        write(&src.join("gen"), format!("generation {i}\n").as_bytes());
        env.save("n", Some(&d.to_string()), &src);
    }
    env.save("other", Some("1500000000"), &src);

    let names = env.rw().arg("ls").run().success().lines();
    let mut roots: Vec<&str> = names
        .iter()
        .map(|s| s.trim().trim_end_matches('/'))
        .collect();
    roots.sort();
    assert_eq!(roots, ["n", "other"], "rewind ls with no path: {names:?}");

    let listing = ls(&env, false, "n");
    let mut got = snapshot_names(&listing);
    got.sort();
    let want: Vec<String> = dates.iter().map(|&d| utc_snapshot_name(d)).collect();
    assert_eq!(got, want, "listing: {listing:?}");
    assert_eq!(want[0], "2014-05-27-170544");
    assert!(
        listing.iter().any(|l| l.trim().starts_with("latest")),
        "`latest` missing: {listing:?}"
    );

    // Names follow the reader's TZ, not the writer's.
    let tokyo = env.rw().tz("Asia/Tokyo").args(["ls", "n"]).run().success();
    let mut got = snapshot_names(&tokyo.lines());
    got.sort();
    let want_tokyo: Vec<String> = dates
        .iter()
        .map(|&d| utc_snapshot_name(d + 9 * 3600))
        .collect();
    assert_eq!(got, want_tokyo);

    for (i, d) in dates.iter().enumerate() {
        let p = snap_path("n", &utc_snapshot_name(*d), &src.join("gen"));
        assert_eq!(cat(&env, &p), format!("generation {i}\n").as_bytes());
    }
    let p = snap_path("n", "latest", &src.join("gen"));
    assert_eq!(cat(&env, &p), b"generation 2\n");
}

#[test]
fn same_second_saves_get_distinct_ordered_snapshots() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    // Explicitly the same date, then as fast as possible with no date.
    for (name, date) in [("fixed", Some("1401210344")), ("now", None)] {
        for i in 0..3 {
            write(&src.join("gen"), format!("{name} {i}\n").as_bytes());
            env.save(name, date, &src);
        }
        let mut snaps = snapshot_names(&ls(&env, false, name));
        assert_eq!(snaps.len(), 3, "{name}: {snaps:?}");
        snaps.sort();
        snaps.dedup();
        assert_eq!(snaps.len(), 3, "{name}: names not distinct");
        // Sorted names are in save order.
        for (i, s) in snaps.iter().enumerate() {
            let got = cat(&env, snap_path(name, s, &src.join("gen")));
            assert_eq!(got, format!("{name} {i}\n").as_bytes(), "{name}/{s}");
        }
        let latest = cat(&env, snap_path(name, "latest", &src.join("gen")));
        assert_eq!(latest, format!("{name} 2\n").as_bytes());
    }
}

#[test]
fn ls_lists_demangled_names() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("z", None, &zoo);

    let plain = listed_names(
        &env.rw()
            .arg("ls")
            .arg(snap_path("z", "latest", &zoo.join("plain")))
            .run()
            .success(),
    );
    let mut plain: Vec<String> = plain
        .into_iter()
        .map(|l| l.split(" -> ").next().unwrap().to_owned())
        .collect();
    plain.sort();
    assert_eq!(
        plain,
        [
            "a.txt",
            "b.conf",
            "c-chunked.dat",
            "link-to-a",
            "owned",
            "run.sh",
            "subdir"
        ]
    );

    let names = listed_names(
        &env.rw()
            .arg("ls")
            .arg(snap_path("z", "latest", &zoo.join("names")))
            .run()
            .success(),
    );
    for want in [
        "with space",
        " leading space",
        "x.bup",
        "x.bupm",
        "x.bupl",
        "x.bup.bupl",
        "chunky.bup",
        "d.bup",
        "e.bupm",
        "-dash",
        "\u{fc}n\u{ef}c\u{f6}de",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want:?} missing from {names:?}"
        );
    }
    for mangled in [
        "x.bup.bupl.bupl",
        "x.bupm.bupl",
        "x.bupl.bupl",
        "chunky.bup.bup",
        "d.bup.bupl",
        "e.bupm.bupl",
        ".bupm.bupl",
    ] {
        assert!(
            !names.iter().any(|n| n == mangled),
            "mangled name {mangled:?} leaked into {names:?}"
        );
    }

    // The snapshot root holds the absolute path's first component.
    let first = zoo
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap()
        .to_owned();
    let root = listed_names(&env.rw().args(["ls", "z/latest"]).run().success());
    assert!(root.contains(&first), "{first:?} not in {root:?}");
}

#[test]
fn ls_long_shows_mode_owner_size_and_mtime() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("z", None, &zoo);
    let (nuid, _) = user_ids("nobody");
    assert_eq!(nuid, 65534);

    for dir in ["plain", "modes", "special", "owners"] {
        let lines = ls(&env, true, snap_path("z", "latest", &zoo.join(dir)));
        let parsed = parse_ls_long(&lines);
        for e in fs::read_dir(zoo.join(dir)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_str().unwrap().to_owned();
            let md = fs::symlink_metadata(e.path()).unwrap();
            let Some(l) = parsed.iter().find(|l| l.name == name) else {
                panic!("{dir}/{name} missing from ls -l:\n{}", lines.join("\n"));
            };
            assert_eq!(l.mode, mode_string(md.mode()), "{dir}/{name}: {l:?}");
            let owner = match (md.uid(), md.gid()) {
                (0, 0) => "root/root".to_owned(),
                (65534, 65534) => "nobody/nogroup".to_owned(),
                (u, g) => format!("{u}/{g}"),
            };
            assert_eq!(l.owner, owner, "{dir}/{name}");
            if md.is_file() || md.file_type().is_symlink() {
                assert_eq!(l.size, md.len().to_string(), "{dir}/{name} size");
            }
            // mtime in the reader's TZ (UTC here), to the minute at least.
            let stamp = utc_snapshot_name(md.mtime());
            let (date, hm) = (
                &stamp[..10],
                format!("{}:{}", &stamp[11..13], &stamp[13..15]),
            );
            assert!(
                l.middle.contains(date) && l.middle.contains(&hm),
                "{dir}/{name}: mtime {date} {hm} not in {l:?}"
            );
        }
        assert_eq!(
            parsed.len(),
            fs::read_dir(zoo.join(dir)).unwrap().count(),
            "{lines:?}"
        );
    }
}

#[test]
fn cat_file_outputs_exact_bytes() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.save("z", None, &zoo);
    let rels: &[&[u8]] = &[
        b"regular.txt",
        b"empty",
        b"big.bin",
        b"sparse.img",
        b"plain/c-chunked.dat",
        b"names/with space",
        b"names/new\nline",
        b"names/bad-\xff\xfe-utf8",
        b"names/x.bup",
        b"names/.bupm",
        b"names/chunky.bup",
        b"names/d.bup/inside",
        b"hard/sub/a3",
        b"modes/m0000",
    ];
    for rel in rels {
        let p = raw(&zoo, rel);
        let got = cat(&env, snap_path("z", "latest", &p));
        let want = fs::read(&p).unwrap();
        assert!(
            got == want,
            "cat-file {} differs ({} vs {} bytes)",
            p.display(),
            got.len(),
            want.len()
        );
    }
}

#[test]
fn strip_puts_the_source_at_the_root() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    let plain = zoo.join("plain");
    env.rw()
        .args(["save", "-n", "s", "--strip"])
        .arg(&plain)
        .run()
        .success();
    let root = listed_names(&env.rw().args(["ls", "s/latest"]).run().success());
    assert!(root.iter().any(|n| n == "a.txt"), "{root:?}");
    assert_eq!(cat(&env, "s/latest/a.txt"), b"alpha\n");
    let out = env.path("out");
    env.restore(&out, std::ffi::OsStr::new("s/latest/subdir"));
    assert_same_tree(&plain.join("subdir"), &out.join("subdir"));
    let out2 = env.path("out2");
    env.restore(&out2, std::ffi::OsStr::new("s/latest/"));
    assert_same_below_root(&plain, &out2);
}

#[test]
fn strip_path_removes_only_the_prefix() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.rw()
        .args(["save", "-n", "sp", "--strip-path"])
        .arg(&zoo)
        .arg(zoo.join("plain"))
        .arg(zoo.join("links"))
        .run()
        .success();
    assert_eq!(cat(&env, "sp/latest/plain/a.txt"), b"alpha\n");
    let root = listed_names(&env.rw().args(["ls", "sp/latest"]).run().success());
    let mut root: Vec<&str> = root.iter().map(String::as_str).collect();
    root.sort();
    assert_eq!(root, ["links", "plain"]);
    let out = env.path("out");
    env.restore(&out, std::ffi::OsStr::new("sp/latest/links"));
    assert_same_tree(&zoo.join("links"), &out.join("links"));
}

#[test]
fn graft_moves_sources_to_new_paths() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    let mut g1 = zoo.join("plain").into_os_string();
    g1.push("=/srv/data");
    let mut g2 = zoo.join("hard").into_os_string();
    g2.push("=/other/place/hard");
    env.rw()
        .args(["save", "-n", "g", "--graft"])
        .arg(&g1)
        .arg("--graft")
        .arg(&g2)
        .arg(zoo.join("plain"))
        .arg(zoo.join("hard"))
        .run()
        .success();
    assert_eq!(cat(&env, "g/latest/srv/data/a.txt"), b"alpha\n");
    let out = env.path("out");
    env.restore(&out, std::ffi::OsStr::new("g/latest/srv/data"));
    assert_same_tree(&zoo.join("plain"), &out.join("data"));
    env.restore(&out, std::ffi::OsStr::new("g/latest/other/place/hard"));
    assert_same_tree(&zoo.join("hard"), &out.join("hard"));
    // Only the grafted roots exist; the original paths are gone.
    let root = listed_names(&env.rw().args(["ls", "g/latest"]).run().success());
    let mut root: Vec<&str> = root.iter().map(String::as_str).collect();
    root.sort();
    assert_eq!(root, ["other", "srv"]);
}

/// A tree for the exclusion tests and the paths that must survive.
fn exclusion_tree(dir: &Path) {
    mkdir(&dir.join("sub/deeper"));
    mkdir(&dir.join("cache/inner"));
    write(&dir.join("keep.txt"), b"keep\n");
    write(&dir.join("skip.tmp"), b"skip\n");
    write(&dir.join("sub/keep2"), b"keep\n");
    write(&dir.join("sub/deeper/deep.tmp"), b"skip\n");
    write(&dir.join("cache/big"), b"skip\n");
    write(&dir.join("cache/inner/x"), b"skip\n");
}

fn check_excluded(env: &Env, name: &str, src: &Path) {
    let out = env.path(&format!("out-{name}"));
    env.restore(&out, &snap_path(name, "latest", src));
    let r = out.join(src.file_name().unwrap());
    for kept in ["keep.txt", "sub/keep2"] {
        assert!(r.join(kept).is_file(), "{name}: {kept} should be saved");
    }
    for gone in [
        "skip.tmp",
        "sub/deeper/deep.tmp",
        "cache/big",
        "cache/inner/x",
    ] {
        assert!(!r.join(gone).exists(), "{name}: {gone} should be excluded");
    }
    assert!(
        r.join("sub/deeper").is_dir(),
        "{name}: only the file is excluded"
    );
}

#[test]
fn exclude_globs_and_paths() {
    let env = Env::init();
    let src = env.path("src");
    exclusion_tree(&src);
    env.rw()
        .args(["save", "-n", "ex", "--exclude"])
        .arg(src.join("cache"))
        .args(["--exclude", "*.tmp"])
        .arg(&src)
        .run()
        .success();
    check_excluded(&env, "ex", &src);

    let list = env.path("excludes");
    let mut text = src.join("cache").as_os_str().as_bytes().to_vec();
    text.extend_from_slice(b"\n*.tmp\n");
    write(&list, &text);
    env.rw()
        .args(["save", "-n", "exf", "--exclude-from"])
        .arg(&list)
        .arg(&src)
        .run()
        .success();
    check_excluded(&env, "exf", &src);

    // Without exclusions everything is there (the fixture is not vacuous).
    env.save("all", None, &src);
    let out = env.path("out-all");
    env.restore(&out, &snap_path("all", "latest", &src));
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn one_file_system_stays_on_the_source_device() {
    let env = Env::init();
    let src = env.path("src");
    mkdir(&src);
    write(&src.join("here"), b"on the root fs\n");
    let mnt = TmpfsMount::new(&src.join("mnt"), "4m");
    write(&mnt.path.join("inner"), b"on another fs\n");

    env.rw()
        .args(["save", "-n", "x", "--one-file-system"])
        .arg(&src)
        .run()
        .success();
    env.save("all", None, &src);
    let out = env.path("out");
    env.restore(&out, &snap_path("x", "latest", &src));
    assert!(out.join("src/here").is_file());
    assert!(
        !out.join("src/mnt/inner").exists(),
        "crossed into the tmpfs"
    );
    let out2 = env.path("out2");
    env.restore(&out2, &snap_path("all", "latest", &src));
    assert_eq!(
        fs::read(out2.join("src/mnt/inner")).unwrap(),
        b"on another fs\n"
    );
    drop(mnt);
}

/// Author time of the tip of a branch, from git itself.
fn tip_author_time(env: &Env, name: &str) -> i64 {
    let out = run(env.git().args(["log", "-1", "--format=%at", name]));
    out.stdout_str().trim().parse().expect("author time")
}

#[test]
fn date_accepts_epoch() {
    let env = Env::init();
    let src = env.path("src");
    exclusion_tree(&src);
    env.save("e", Some("1401210344"), &src);
    assert_eq!(snapshot_names(&ls(&env, false, "e")), ["2014-05-27-170544"]);
    assert_eq!(tip_author_time(&env, "e"), 1_401_210_344);
}

#[test]
fn date_accepts_iso8601_utc() {
    let env = Env::init();
    let src = env.path("src");
    exclusion_tree(&src);
    env.save("i", Some("2014-05-27T17:05:44Z"), &src);
    assert_eq!(snapshot_names(&ls(&env, false, "i")), ["2014-05-27-170544"]);
    assert_eq!(tip_author_time(&env, "i"), 1_401_210_344);
}

#[test]
fn date_accepts_iso8601_with_offset() {
    let env = Env::init();
    let src = env.path("src");
    exclusion_tree(&src);
    env.save("o", Some("2014-05-27T19:05:44+02:00"), &src);
    assert_eq!(tip_author_time(&env, "o"), 1_401_210_344);
}

#[test]
fn several_paths_in_one_save() {
    let env = Env::init();
    let zoo = env.path("zoo");
    make_zoo(&zoo);
    env.rw()
        .args(["save", "-n", "m"])
        .arg(zoo.join("plain"))
        .arg(zoo.join("hard"))
        .run()
        .success();
    let out = env.path("out");
    env.restore(&out, &snap_path("m", "latest", &zoo.join("plain")));
    env.restore(&out, &snap_path("m", "latest", &zoo.join("hard")));
    assert_same_tree(&zoo.join("plain"), &out.join("plain"));
    assert_same_tree(&zoo.join("hard"), &out.join("hard"));
    // Unsaved siblings are not in the snapshot.
    let listed = listed_names(
        &env.rw()
            .arg("ls")
            .arg(snap_path("m", "latest", &zoo))
            .run()
            .success(),
    );
    let mut listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    listed.sort();
    assert_eq!(listed, ["hard", "plain"]);
}

/// Regression: a directory whose only file is empty referenced the empty
/// blob without storing it (the chunker names it, the caller must write it;
/// fifos happened to write it in bigger trees), so restore, `git fsck` and
/// bup failed on "object not found".
#[test]
fn regression_lone_empty_file_is_stored() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    env.save("e", None, &src);
    let out = env.path("out");
    env.restore(&out, &snap_path("e", "latest", &src));
    assert_eq!(fs::read(out.join("src/empty")).unwrap(), b"");
    assert!(cat(&env, snap_path("e", "latest", &src.join("empty"))).is_empty());
    // Env's drop runs `git fsck --strict`, which fails on the missing blob.
}

/// Big files not in the page cache are read around it (`O_DIRECT`, on a
/// thread ahead of the walker); cached ones through it. Either way the
/// snapshot must be the same, byte for byte and id for id.
#[test]
fn cold_and_cached_big_files_make_the_same_snapshot() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // 20 MiB: text, a 5 MiB hole, random bytes, and a tail ending mid-block.
    let path = src.join("disk.img");
    let text: Vec<u8> = (0..(6 << 20))
        .map(|i: u32| b"select * from t where id = 42;\n"[(i % 31) as usize])
        .collect();
    let random = noise(0x2545_f491_4f6c_dd1d, (8 << 20) + 123);
    drop_cached(&write_pieces(
        &path,
        &[(0, text), (11 << 20, random)],
        20 << 20,
    ));
    env.save("cold", Some("1500000000"), &src);
    fs::read(&path).unwrap(); // now cached
    env.save("hot", Some("1500000000"), &src);
    // The file's object (its chunk tree); metadata differs (reading it
    // here moved its atime).
    // A chunked file is stored as `NAME.bup` (bup's name mangling).
    let in_tree = format!("{}.bup", path.to_str().unwrap().trim_start_matches('/'));
    let object = |name: &str| {
        let out = env
            .git()
            .args(["rev-parse", &format!("{name}:{in_tree}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}:{in_tree}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(object("cold"), object("hot"));

    let out = env.path("out");
    env.restore(&out, &snap_path("cold", "latest", &src));
    assert!(fs::read(out.join("src/disk.img")).unwrap() == fs::read(&path).unwrap());
    assert_fsck(&env.repo, false);
}
