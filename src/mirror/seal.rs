//! What a mirror does to bytes and names before they reach a bucket.
//!
//! With a key file, every object is an [age](https://age-encryption.org)
//! file encrypted to the key's X25519 recipient (anyone holding the key file
//! can decrypt one with `age -d -i KEYFILE`), and its name is a keyed BLAKE3
//! hash of the repository path, so the bucket's owner learns neither file
//! names nor contents, only sizes and times. Without a key (`--plain`),
//! objects are the repository's files under their own paths.

use super::MirrorError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where the manifest of one mirrored repository lives, under its prefix.
pub const MANIFEST_NAME: &str = "rewind-mirror";

/// The key file's secret line starts with this (age-keygen's format).
const SECRET_PREFIX: &str = "AGE-SECRET-KEY-1";

/// The context string of the naming key's derivation: changing it renames
/// every object of every mirror.
const NAME_KEY_CONTEXT: &str = "rewind 2026-12 mirror object names";

/// Plaintext bytes per age STREAM chunk, each followed by a 16-byte tag.
const AGE_CHUNK: u64 = 64 << 10;
const AGE_TAG: u64 = 16;
/// The shortest header and nonce of an age file for one X25519 recipient:
/// the version line (22 bytes), the recipient stanza (54 + 44), the MAC
/// line (48) and the nonce (16), before any grease stanza (age adds one of
/// 13 bytes or more, of random length: 200 here once failed one sealing
/// in a few thousand); and the most that grease may add (generous).
const MIN_AGE_HEADER: u64 = 184;
const MAX_AGE_HEADER_EXTRA: u64 = 4096;

pub enum Sealer {
    Plain,
    Age(Box<AgeKey>),
}

pub struct AgeKey {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
    name_key: [u8; 32],
    /// Header and nonce of an age file for this recipient: constant for
    /// one X25519 recipient, measured once.
    header_len: u64,
}

impl Sealer {
    /// Reads an age identity file (as `rewind mirror keygen` or
    /// `age-keygen` writes it).
    pub fn from_key_file(path: &Path) -> Result<Sealer, MirrorError> {
        let text = std::fs::read_to_string(path).map_err(|e| MirrorError::Key {
            path: path.to_path_buf(),
            detail: format!("cannot read it: {e}"),
        })?;
        let bad = |detail: &str| MirrorError::Key {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        let mut secrets = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let secret = secrets
            .next()
            .ok_or_else(|| bad("it holds no AGE-SECRET-KEY line"))?;
        if secrets.next().is_some() {
            return Err(bad(
                "it holds more than one key line; a mirror key file holds exactly one",
            ));
        }
        if !secret.starts_with(SECRET_PREFIX) {
            return Err(bad("its key line is not an AGE-SECRET-KEY-1... secret key"));
        }
        let identity = age::x25519::Identity::from_str(secret)
            .map_err(|_| bad("its AGE-SECRET-KEY line does not decode (damaged key file?)"))?;
        Ok(Sealer::Age(Box::new(AgeKey::new(identity)?)))
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self, Sealer::Age(_))
    }

    /// The bucket name (under the repository's prefix) of the file at
    /// `path` in the repository.
    pub fn object_name(&self, path: &str) -> String {
        match self {
            Sealer::Plain => path.to_string(),
            Sealer::Age(key) => {
                let hash = blake3::keyed_hash(&key.name_key, path.as_bytes());
                format!("data/{}", hash.to_hex())
            }
        }
    }

    /// About how many bytes a file of `len` bytes takes in the bucket (age
    /// headers carry a random-length "grease" stanza: a few bytes vary).
    pub fn stored_size(&self, len: u64) -> u64 {
        match self {
            Sealer::Plain => len,
            Sealer::Age(key) => key.header_len + len + AGE_TAG * len.div_ceil(AGE_CHUNK).max(1),
        }
    }

    /// Whether an object of `stored` bytes can be this sealer's sealing of
    /// a file of `len` bytes (exact without a key).
    pub fn could_hold(&self, len: u64, stored: u64) -> bool {
        match self {
            Sealer::Plain => stored == len,
            Sealer::Age(_) => {
                let least = len + AGE_TAG * len.div_ceil(AGE_CHUNK).max(1) + MIN_AGE_HEADER;
                (least..least + MAX_AGE_HEADER_EXTRA).contains(&stored)
            }
        }
    }

    /// Seals everything written to the returned writer into `out`; call
    /// [`SealWriter::finish`] to get `out` back.
    pub fn seal<W: Write>(&self, out: W) -> Result<SealWriter<W>, MirrorError> {
        Ok(match self {
            Sealer::Plain => SealWriter::Plain(out),
            Sealer::Age(key) => {
                let encryptor = age::Encryptor::with_recipients(std::iter::once(
                    &key.recipient as &dyn age::Recipient,
                ))
                .map_err(|e| MirrorError::Seal(e.to_string()))?;
                SealWriter::Age(
                    encryptor
                        .wrap_output(out)
                        .map_err(|e| MirrorError::Seal(e.to_string()))?,
                )
            }
        })
    }

    /// Opens what [`Sealer::seal`] made. With a key, the reader fails (an
    /// `InvalidData` error) on any byte that was not sealed by this key;
    /// a wrong key fails at once with [`MirrorError::WrongKey`].
    pub fn open<'a, R: Read + 'a>(
        &self,
        input: R,
        what: &str,
    ) -> Result<Box<dyn Read + 'a>, MirrorError> {
        match self {
            Sealer::Plain => Ok(Box::new(input)),
            Sealer::Age(key) => {
                let decryptor = age::Decryptor::new(input).map_err(|e| open_error(e, what))?;
                let reader = decryptor
                    .decrypt(std::iter::once(&key.identity as &dyn age::Identity))
                    .map_err(|e| open_error(e, what))?;
                Ok(Box::new(reader))
            }
        }
    }

    /// Seals a whole small buffer.
    pub fn seal_bytes(&self, plain: &[u8]) -> Result<Vec<u8>, MirrorError> {
        let mut w = self.seal(Vec::with_capacity(
            self.stored_size(plain.len() as u64) as usize
        ))?;
        w.write_all(plain)
            .map_err(|e| MirrorError::Seal(e.to_string()))?;
        w.finish().map_err(|e| MirrorError::Seal(e.to_string()))
    }
}

fn open_error(e: age::DecryptError, what: &str) -> MirrorError {
    // A download that broke off while the header was read is not damage.
    if let age::DecryptError::Io(io) = &e {
        if let Some(failed) = super::bucket::TransferFailed::behind(io) {
            return failed;
        }
    }
    match e {
        age::DecryptError::NoMatchingKeys => MirrorError::WrongKey {
            what: what.to_string(),
        },
        other => MirrorError::Damaged {
            what: what.to_string(),
            detail: format!("not a readable age file ({other})"),
        },
    }
}

impl AgeKey {
    fn new(identity: age::x25519::Identity) -> Result<AgeKey, MirrorError> {
        use age::secrecy::ExposeSecret;
        let recipient = identity.to_public();
        let name_key = blake3::derive_key(
            NAME_KEY_CONTEXT,
            identity.to_string().expose_secret().as_bytes(),
        );
        let mut key = AgeKey {
            identity,
            recipient,
            name_key,
            header_len: 0,
        };
        // An empty file is the header, the nonce and one empty chunk's tag.
        let empty = Sealer::Age(Box::new(AgeKey {
            identity: key.identity.clone(),
            recipient: key.recipient.clone(),
            name_key,
            header_len: 0,
        }))
        .seal_bytes(&[])?;
        key.header_len = empty.len() as u64 - AGE_TAG;
        Ok(key)
    }
}

pub enum SealWriter<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> SealWriter<W> {
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            SealWriter::Plain(w) => Ok(w),
            SealWriter::Age(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SealWriter::Plain(w) => w.write(buf),
            SealWriter::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SealWriter::Plain(w) => w.flush(),
            SealWriter::Age(w) => w.flush(),
        }
    }
}

/// Writes a new key file at `path` (mode 0600, never over an existing
/// file) and returns its public recipient (`age1...`).
pub fn keygen(path: &Path) -> Result<String, MirrorError> {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::OpenOptionsExt;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let text = format!(
        "# rewind mirror key: keep a copy off the backup server; without it the mirror cannot be read\n\
         # created: {}\n\
         # public key: {recipient}\n\
         {}\n",
        crate::time::log_stamp(crate::time::now()),
        identity.to_string().expose_secret()
    );
    let failed = |e: std::io::Error| MirrorError::Key {
        path: PathBuf::from(path),
        detail: if e.kind() == std::io::ErrorKind::AlreadyExists {
            "it exists already: keygen never replaces a key (a mirror made with it would become unreadable)".into()
        } else {
            format!("cannot write it: {e}")
        },
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Sealer {
        Sealer::Age(Box::new(
            AgeKey::new(age::x25519::Identity::generate()).unwrap(),
        ))
    }

    #[test]
    fn sealed_sizes_are_what_could_hold_accepts() {
        let sealer = key();
        for len in [0usize, 1, 65535, 65536, 65537, 200_000] {
            for _ in 0..20 {
                let sealed = sealer.seal_bytes(&vec![3u8; len]).unwrap();
                assert!(
                    sealer.could_hold(len as u64, sealed.len() as u64),
                    "len {len}"
                );
                assert!(!sealer.could_hold(len as u64 + 70_000, sealed.len() as u64));
                let estimate = sealer.stored_size(len as u64);
                assert!(estimate.abs_diff(sealed.len() as u64) < 200, "len {len}");
            }
        }
        assert!(Sealer::Plain.could_hold(5, 5) && !Sealer::Plain.could_hold(5, 4));
    }

    /// age's grease stanza has a random length: over thousands of sealings
    /// the shortest header stays at or above what `could_hold` assumes.
    #[test]
    fn the_shortest_sealing_is_still_held() {
        let sealer = key();
        let mut shortest = u64::MAX;
        for _ in 0..3000 {
            let sealed = sealer.seal_bytes(b"").unwrap().len() as u64;
            shortest = shortest.min(sealed);
            assert!(sealer.could_hold(0, sealed), "{sealed} bytes");
        }
        assert!(shortest - AGE_TAG >= MIN_AGE_HEADER, "{shortest}");
    }

    #[test]
    fn sealed_bytes_open_only_with_their_key() {
        let (a, b) = (key(), key());
        let sealed = a.seal_bytes(b"pack bytes").unwrap();
        let mut out = Vec::new();
        a.open(&sealed[..], "x")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"pack bytes");
        assert!(matches!(
            b.open(&sealed[..], "x"),
            Err(MirrorError::WrongKey { .. })
        ));
    }

    #[test]
    fn a_flipped_byte_fails_to_open_instead_of_reading_garbage() {
        let a = key();
        let mut sealed = a.seal_bytes(&vec![9u8; 100_000]).unwrap();
        let n = sealed.len();
        sealed[n - 100] ^= 1;
        let mut out = Vec::new();
        let err = a
            .open(&sealed[..], "x")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn names_hide_paths_and_differ_between_keys() {
        let (a, b) = (key(), key());
        let name = a.object_name("objects/pack/pack-1.pack");
        assert!(name.starts_with("data/") && !name.contains("pack"));
        assert_eq!(name, a.object_name("objects/pack/pack-1.pack"));
        assert_ne!(name, b.object_name("objects/pack/pack-1.pack"));
        assert_eq!(Sealer::Plain.object_name("config"), "config");
    }

    #[test]
    fn keygen_writes_a_loadable_key_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let recipient = keygen(&path).unwrap();
        assert!(recipient.starts_with("age1"));
        let sealer = Sealer::from_key_file(&path).unwrap();
        assert!(sealer.is_encrypted());
        assert!(matches!(keygen(&path), Err(MirrorError::Key { .. })));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_file_without_a_secret_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "# public key: age1xyz\n").unwrap();
        let err = Sealer::from_key_file(&path).err().unwrap().to_string();
        assert!(err.contains("no AGE-SECRET-KEY"), "{err}");
        std::fs::write(&path, "AGE-SECRET-KEY-1QQQQ\n").unwrap();
        let err = Sealer::from_key_file(&path).err().unwrap().to_string();
        assert!(err.contains("does not decode"), "{err}");
    }
}
