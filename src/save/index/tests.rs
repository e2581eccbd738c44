use super::write::{encode_entry, put_time};
use super::*;
use crate::repo::{Repo, Repository};
use sha1::{Digest, Sha1};
use std::sync::Arc;

fn entry(n: u64) -> Entry {
    let t = |sec| Timespec {
        sec,
        nsec: 999_999_999,
    };
    Entry {
        kind: EntryKind::Chunked,
        dev: 2049,
        ino: n,
        size: u64::MAX,
        mode: 0o100644,
        nlink: 1,
        uid: 1000,
        gid: u32::MAX,
        mtime: t(-5),
        ctime: t(1_700_000_000),
        id: ObjectId([n as u8; 20]),
        children: n,
        record: vec![n as u8; n as usize],
    }
}

fn keys() -> Vec<Vec<u8>> {
    // Post-order of /a/{b/{c}, b.c}, /a, /z
    ["/a/b/c", "/a/b", "/a/b.c", "/a", "/z"]
        .iter()
        .map(|p| path_key(Path::new(p)))
        .collect()
}

fn write(path: &Path, keys: &[Vec<u8>]) -> Summary {
    let mut w = IndexWriter::create(path).unwrap();
    for (i, k) in keys.iter().enumerate() {
        w.push(k, &entry(i as u64)).unwrap();
    }
    w.publish(ObjectId([7; 20])).unwrap()
}

#[test]
fn keys_sort_in_walk_post_order() {
    let k = keys();
    for i in 0..k.len() {
        for j in 0..k.len() {
            assert_eq!(key_cmp(&k[i], &k[j]), i.cmp(&j), "{i} {j}");
        }
    }
    assert_eq!(path_key(Path::new("/")), b"");
    assert_eq!(child_key(&path_key(Path::new("/a")), b"b"), k[1]);
}

#[test]
fn round_trip_and_merge_join() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("idx/name");
    let k = keys();
    write(&path, &k);
    let summary = verify(&path).unwrap();
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.commit, ObjectId([7; 20]));
    let mut r = IndexReader::open(&path).unwrap().unwrap();
    assert_eq!(r.take(&k[0]), Some(entry(0)));
    // /a/b is passed over, /a/b.c found
    assert_eq!(r.take(&k[2]), Some(entry(2)));
    // asking backwards finds nothing
    assert_eq!(r.take(&k[1]), None);
    assert_eq!(r.take(&path_key(Path::new("/m"))), None);
    assert_eq!(r.take(&k[4]), Some(entry(4)));
    assert_eq!(r.take(&k[4]), None);
}

#[test]
fn writer_leaves_out_keys_out_of_order() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("name");
    let k = keys();
    let mut w = IndexWriter::create(&path).unwrap();
    w.push(&k[3], &entry(3)).unwrap();
    w.push(&k[0], &entry(0)).unwrap();
    w.push(&k[3], &entry(3)).unwrap();
    w.push(&k[4], &entry(4)).unwrap();
    assert_eq!(w.out_of_order, 2);
    assert_eq!(w.publish(ObjectId([1; 20])).unwrap().entries, 2);
    assert_eq!(verify(&path).unwrap().entries, 2);
}

#[test]
fn every_damage_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("name");
    write(&path, &keys());
    let good = std::fs::read(&path).unwrap();
    // Truncation at every length, and a flipped bit at every byte.
    for len in 0..good.len() {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(IndexReader::open(&path).is_err(), "truncated to {len}");
        assert!(verify(&path).is_err());
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(IndexReader::open(&path).is_err(), "flipped byte {i}");
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(IndexReader::open(&path).is_err());
    // Another format version, even with a correct checksum, is refused.
    let mut other = good[..good.len() - 20].to_vec();
    other[11] = 3;
    let digest = Sha1::digest(&other);
    other.extend_from_slice(&digest);
    std::fs::write(&path, &other).unwrap();
    let err = IndexReader::open(&path).err().unwrap().to_string();
    assert!(err.contains("version 3"), "{err}");
    std::fs::write(&path, &good).unwrap();
    assert!(IndexReader::open(&path).unwrap().is_some());
    assert!(IndexReader::open(&tmp.path().join("none"))
        .unwrap()
        .is_none());
}

/// Version 1, as rewind wrote it before the entries were compressed:
/// the same entries stored plainly, the end tag before the trailer.
fn write_plain_v1(path: &Path, keys: &[Vec<u8>]) {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&VERSION_PLAIN.to_be_bytes());
    let mut prev: &[u8] = &[];
    for (i, k) in keys.iter().enumerate() {
        // Version 1's entry: version 2's with an access time after
        // the ctime.
        let e = entry(i as u64);
        let mut v2 = Vec::new();
        encode_entry(prev, k, &e, &mut v2);
        let mut times = Vec::new();
        put_time(&mut times, e.mtime);
        put_time(&mut times, e.ctime);
        let at = v2.windows(times.len()).position(|w| w == times).unwrap() + times.len();
        bytes.extend_from_slice(&v2[..at]);
        put_time(
            &mut bytes,
            Timespec {
                sec: i64::MIN,
                nsec: 5,
            },
        );
        bytes.extend_from_slice(&v2[at..]);
        prev = k;
    }
    bytes.push(TAG_END);
    bytes.extend_from_slice(&(keys.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&[7; 20]);
    let digest = Sha1::digest(&bytes);
    bytes.extend_from_slice(&digest);
    std::fs::write(path, bytes).unwrap();
}

/// An index written before the upgrade is used, not thrown away (the
/// first save after an upgrade must not read every file again), and
/// damage to it is still detected.
#[test]
fn plain_version_1_is_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("name");
    let k = keys();
    write_plain_v1(&path, &k);
    assert_eq!(verify(&path).unwrap().entries, 5);
    let mut r = IndexReader::open(&path).unwrap().unwrap();
    for (i, key) in k.iter().enumerate() {
        assert_eq!(r.take(key), Some(entry(i as u64)));
    }
    let good = std::fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        assert!(IndexReader::open(&path).is_err(), "flipped byte {i}");
    }
    // The same entries compressed are several times smaller once there
    // are many of them; here, just not the same bytes.
    write(&path, &k);
    assert_ne!(std::fs::read(&path).unwrap(), good);
    assert_eq!(verify(&path).unwrap().entries, 5);
}

/// The compressed stream must end with the end tag: entries after it,
/// even with a valid checksum, make the index unusable.
#[test]
fn data_after_the_end_tag_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("name");
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let mut body = Vec::new();
    encode_entry(&[], &keys()[0], &entry(0), &mut body);
    body.push(TAG_END);
    body.push(TAG_END);
    bytes.extend_from_slice(&zstd::bulk::compress(&body, 1).unwrap());
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&[7; 20]);
    let digest = Sha1::digest(&bytes);
    bytes.extend_from_slice(&digest);
    std::fs::write(&path, &bytes).unwrap();
    let err = verify(&path).unwrap_err().to_string();
    assert!(err.contains("after the end tag"), "{err}");
}

#[test]
fn racy_paths_are_not_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(&tmp.path().join("repo")).unwrap();
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let known = Arc::new(repo.known_objects());
    let mut index = ChangeIndex::open(&repo, known, "n", started);
    let mut e = entry(0);
    e.mtime = Timespec {
        sec: 1_000_000 - RACY_MARGIN_SECS - 1,
        nsec: 999_999_999,
    };
    e.ctime = e.mtime;
    index.record(&path_key(Path::new("/old")), &e);
    e.ctime.sec += 1; // within the margin
    index.record(&path_key(Path::new("/young")), &e);
    assert_eq!(index.racy, 1);
    index.publish(ObjectId([3; 20])).unwrap();
    let path = index_path(repo.path(), "n");
    assert_eq!(verify(&path).unwrap().entries, 1);
}
