//! A place mirrors are kept: an S3 bucket (or an S3-compatible store) at
//! `s3://BUCKET/PREFIX`, or a local folder at `file:///PATH` (a disk taken
//! off-site). Both are an `object_store::ObjectStore` behind one `dyn`; the
//! rest of the mirror sees only [`Bucket`]'s blocking calls, made from its
//! own worker threads while a small tokio runtime drives the requests.
//!
//! Requests are retried with exponential backoff by object_store; what still
//! fails becomes one [`MirrorError::Bucket`] line that says what to check.

use super::credentials::Credentials;
use super::MirrorError;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// Files up to this size go up in one request; larger ones in parts of
/// this size, several at once.
pub const PART_SIZE: usize = 8 << 20;

/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 3;

/// Chunks of a download received ahead of its reader. Each is at most the
/// HTTP client's read buffer (well under 1 MiB), so this bounds memory while
/// the network keeps going as the reader decrypts, hashes and writes.
const CHUNKS_AHEAD: usize = 8;

#[derive(Debug, Default, Clone)]
pub struct BucketOptions {
    /// `--endpoint`: an S3-compatible server's URL (wins over the
    /// environment's and the profile's).
    pub endpoint: Option<String>,
}

#[derive(Clone)]
pub struct Bucket {
    /// The URL as the user would write it, for messages.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// Inside the store, with a trailing `/` unless empty.
    prefix: String,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl Bucket {
    pub fn open(url: &str, opts: &BucketOptions) -> Result<Bucket, MirrorError> {
        let url = url.trim_end_matches('/').to_string();
        let usage = |detail: String| MirrorError::Usage(detail);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rewind-s3")
            .enable_all()
            .build()
            .map_err(|e| usage(format!("cannot start the S3 client's threads: {e}")))?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(usage(format!(
                        "{url}: no bucket name: write s3://BUCKET or s3://BUCKET/PREFIX"
                    )));
                }
                (Arc::new(s3_store(bucket, opts, &url)?), with_slash(prefix))
            } else if let Some(path) = url.strip_prefix("file://") {
                let path = std::path::Path::new(path);
                if !path.is_absolute() {
                    return Err(usage(format!(
                        "{url}: a file:// URL names an absolute path: file:///mnt/offsite/mirror"
                    )));
                }
                std::fs::create_dir_all(path).map_err(|e| MirrorError::Bucket {
                    url: url.clone(),
                    detail: format!("cannot create the folder: {e}"),
                })?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(path).map_err(|e| {
                        MirrorError::Bucket {
                            url: url.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                (Arc::new(store), String::new())
            } else {
                return Err(usage(format!(
                    "{url}: a mirror is at s3://BUCKET[/PREFIX] or file:///PATH"
                )));
            };
        Ok(Bucket {
            url,
            store,
            prefix,
            runtime: Arc::new(runtime),
        })
    }

    /// The mirror of one repository of many (`--all`): `URL/NAME`.
    pub fn child(&self, name: &str) -> Bucket {
        Bucket {
            url: format!("{}/{name}", self.url),
            store: self.store.clone(),
            prefix: format!("{}{name}/", self.prefix),
            runtime: self.runtime.clone(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, name: &str) -> StorePath {
        StorePath::from(format!("{}{name}", self.prefix))
    }

    fn failed(&self, name: &str, e: object_store::Error) -> MirrorError {
        let url = if name.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{name}", self.url)
        };
        MirrorError::Bucket {
            url,
            detail: explain(&e),
        }
    }

    /// A whole object no larger than `max` bytes; `None` if there is none.
    pub fn get_small(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, MirrorError> {
        let path = self.path(name);
        let result = self.runtime.block_on(async {
            let got = match self.store.get(&path).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if got.meta.size > max {
                return Ok(Some(Err(got.meta.size)));
            }
            got.bytes().await.map(|b| Some(Ok(b.to_vec())))
        });
        match result.map_err(|e| self.failed(name, e))? {
            None => Ok(None),
            Some(Ok(bytes)) => Ok(Some(bytes)),
            Some(Err(size)) => Err(MirrorError::Damaged {
                what: format!("{}/{name}", self.url),
                detail: format!("{size} bytes, more than the {max} such an object may have"),
            }),
        }
    }

    /// Stores `bytes` as `name` in one request (replacing it atomically).
    pub fn put_small(&self, name: &str, bytes: Vec<u8>) -> Result<(), MirrorError> {
        let path = self.path(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.failed(name, e))
    }

    /// The size of `name`, or `None` if the bucket has no such object.
    pub fn size_of(&self, name: &str) -> Result<Option<u64>, MirrorError> {
        let path = self.path(name);
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// Deletes `name`; an object already gone is no error.
    pub fn delete(&self, name: &str) -> Result<(), MirrorError> {
        let path = self.path(name);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(name, e)),
        }
    }

    /// Uploads `size` bytes that `fill` writes, as `name`: one request for a
    /// small object, parts in parallel for a large one. The object appears
    /// only once complete; a failed upload is aborted.
    pub fn upload(
        &self,
        name: &str,
        size: u64,
        fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), MirrorError>,
    ) -> Result<(), MirrorError> {
        if size <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            fill(&mut buf)?;
            return self.put_small(name, buf);
        }
        let path = self.path(name);
        let upload = self
            .runtime
            .block_on(self.store.put_multipart(&path))
            .map_err(|e| self.failed(name, e))?;
        // WriteMultipart spawns each part's request on the runtime.
        let _entered = self.runtime.enter();
        let mut parts = Parts {
            runtime: &self.runtime,
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)),
            error: None,
        };
        let filled = fill(&mut parts);
        let upload = parts.upload.take().expect("taken only here");
        let outcome = match (filled, parts.error.take()) {
            (Ok(()), None) => self.runtime.block_on(upload.finish()).map(|_| ()),
            (_, Some(e)) => {
                let _ = self.runtime.block_on(upload.abort());
                Err(e)
            }
            (Err(e), None) => {
                let _ = self.runtime.block_on(upload.abort());
                return Err(e);
            }
        };
        outcome.map_err(|e| self.failed(name, e))
    }

    /// A reader of the object `name`, streamed as it arrives.
    pub fn download(&self, name: &str) -> Result<Download, MirrorError> {
        let path = self.path(name);
        let got = self
            .runtime
            .block_on(self.store.get(&path))
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => MirrorError::Missing {
                    what: format!("{}/{name}", self.url),
                },
                e => self.failed(name, e),
            })?;
        let got_size = got.meta.size;
        // Received by a task of the runtime, not when the reader asks: a
        // reader that waits for each chunk leaves the connection idle while
        // it decrypts, and receiving then costs as much again.
        let (sender, chunks) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        let mut stream = got.into_stream();
        self.runtime.spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                // A reader gone (dropped on an error) ends the transfer.
                if sender.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Download {
            size: got_size,
            chunks,
            chunk: bytes_empty(),
            what: format!("{}/{name}", self.url),
        })
    }

    /// Fails (naming the bucket) unless the bucket exists: a GET of a
    /// missing object says "not found" alike whether the object or the
    /// whole bucket is missing, and some stores accept writes into a bucket
    /// that was never created.
    pub fn check_exists(&self) -> Result<(), MirrorError> {
        self.list_children().map(|_| ())
    }

    /// Every object under this bucket's prefix and its size, by name
    /// relative to the prefix: one request per thousand objects, where
    /// asking for each would be one per object.
    pub fn list_sizes(&self) -> Result<std::collections::HashMap<String, u64>, MirrorError> {
        let prefix = (!self.prefix.is_empty()).then(|| StorePath::from(self.prefix.as_str()));
        let listed: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(prefix.as_ref()).try_collect())
            .map_err(|e| self.failed("", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let name = meta
                    .location
                    .as_ref()
                    .strip_prefix(&self.prefix)?
                    .to_string();
                Some((name, meta.size))
            })
            .collect())
    }

    /// The names of the folders right under this bucket's prefix (the
    /// repositories of a whole-server mirror).
    pub fn list_children(&self) -> Result<Vec<String>, MirrorError> {
        let prefix = (!self.prefix.is_empty()).then(|| StorePath::from(self.prefix.as_str()));
        let listed = self
            .runtime
            .block_on(self.store.list_with_delimiter(prefix.as_ref()))
            .map_err(|e| self.failed("", e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn with_slash(prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

fn s3_store(
    bucket: &str,
    opts: &BucketOptions,
    url: &str,
) -> Result<object_store::aws::AmazonS3, MirrorError> {
    use object_store::aws::{AmazonS3Builder, Checksum};
    let creds = Credentials::from_environment();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(creds.region.as_deref().unwrap_or("us-east-1"))
        // The store checks each request body against this checksum.
        .with_checksum_algorithm(Checksum::SHA256)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(10),
                base: 2.0,
            },
            max_retries: 6,
            retry_timeout: Duration::from_secs(120),
        });
    let static_keys = creds.access_key_id.is_some() && creds.secret_access_key.is_some();
    if let (Some(id), Some(secret)) = (&creds.access_key_id, &creds.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = &creds.session_token {
            builder = builder.with_token(token);
        }
    }
    if let Some(endpoint) = opts.endpoint.as_ref().or(creds.endpoint.as_ref()) {
        let plain_http = endpoint.starts_with("http://");
        builder = builder.with_endpoint(endpoint).with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(plain_http)
                // Reading the system's trust store (some 150 files) costs
                // tens of milliseconds a run; with plain HTTP and keys
                // given (no credential service to reach over TLS), no
                // certificate is ever checked.
                .with_no_system_certificates(plain_http && static_keys),
        );
    }
    builder.build().map_err(|e| MirrorError::Bucket {
        url: url.to_string(),
        detail: explain(&e),
    })
}

/// One line from an object_store error: what went wrong and what to check,
/// then the store's own words, trimmed.
fn explain(e: &object_store::Error) -> String {
    // Matched against the store's words, most specific first; status codes
    // with their reason phrase, since object names are hex.
    const HINTS: &[(&[&str], &str)] = &[
        (
            // No key in the environment or the profile files: object_store
            // then asks the EC2 instance metadata service, which is not there.
            &["169.254.169.254"],
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (an EC2 instance role is tried last)",
        ),
        (
            &["NoSuchBucket"],
            "the bucket does not exist: create it, or check the URL",
        ),
        (
            &[
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
                "403 Forbidden",
                "401 Unauthorized",
            ],
            "credentials refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS profile) and the bucket's policy",
        ),
        (
            &[
                "QuotaExceeded",
                "EntityTooLarge",
                "InsufficientStorage",
                "StorageFull",
                "507 Insufficient Storage",
                "No space",
            ],
            "the store refused the data: is the bucket full or over its quota?",
        ),
        (
            &[
                "500 Internal Server Error",
                "502 Bad Gateway",
                "503 Service Unavailable",
            ],
            "the store keeps failing the request: is the bucket full or read-only, or the store failing? (nothing was published)",
        ),
        (
            &[
                "error sending request",
                "Connection refused",
                "dns error",
                "timed out",
                "tcp connect",
            ],
            // A store that refuses a body may also just drop the
            // connection: the same words as one that cannot be reached.
            "cannot reach the store, or it dropped the request: check the endpoint and the network, and that the bucket is not full or read-only",
        ),
    ];
    let text = e.to_string();
    let denied = matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    );
    let hint = HINTS
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| text.contains(n)))
        .map(|(_, hint)| *hint)
        .or(denied.then_some(HINTS[2].1))
        .unwrap_or("");
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = if text.len() > 300 {
        format!("{}...", &text[..text.floor_char_boundary(300)])
    } else {
        text
    };
    if hint.is_empty() {
        text
    } else {
        format!("{hint} ({text})")
    }
}

fn bytes_empty() -> bytes::Bytes {
    bytes::Bytes::new()
}

/// Parts of a multipart upload, written through `Write`: waits while
/// [`PARTS_IN_FLIGHT`] are uploading, so memory stays bounded.
struct Parts<'a> {
    runtime: &'a tokio::runtime::Runtime,
    upload: Option<WriteMultipart>,
    error: Option<object_store::Error>,
}

impl Write for Parts<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let upload = self.upload.as_mut().expect("present until finished");
        if let Err(e) = self
            .runtime
            .block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
        {
            let io = std::io::Error::other(e.to_string());
            self.error = Some(e);
            return Err(io);
        }
        upload.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A download that broke off, as the payload of the `io::Error` that
/// [`Download`] returns: readers stacked on it (decryption) pass it through
/// unchanged, and it is told apart from bytes that arrived damaged.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {detail}")]
pub struct TransferFailed {
    url: String,
    detail: String,
}

impl TransferFailed {
    /// The bucket error behind `e`, if a download's failure is what it is.
    pub fn behind(e: &std::io::Error) -> Option<MirrorError> {
        let failed = e.get_ref()?.downcast_ref::<TransferFailed>()?;
        Some(MirrorError::Bucket {
            url: failed.url.clone(),
            detail: failed.detail.clone(),
        })
    }
}

/// An object being downloaded, read as it arrives.
pub struct Download {
    pub size: u64,
    chunks: tokio::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    what: String,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(TransferFailed {
                        url: self.what.clone(),
                        detail: format!("the download broke off: {}", explain(&e)),
                    }))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}
