//! bup 0.33 and rewind read each other's repositories; the comparator used
//! everywhere is itself checked here against bup.

mod common;
use common::*;
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
    // bup 0.33.7 with --sparse preserves everything the comparator checks.
    assert_same_tree(&zoo, &out.join("zoo"));

    // Without --sparse bup writes the holes out as zeros: the comparator must
    // notice exactly that and nothing else.
    let dense = env.path("dense");
    run(env
        .bup()
        .args(["restore", "-C"])
        .arg(&dense)
        .arg(snap_path("z", "latest", &zoo)))
    .success();
    let d = compare_trees(&zoo, &dense.join("zoo"));
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
