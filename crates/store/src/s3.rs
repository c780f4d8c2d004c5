//! An S3 store (`s3://bucket/prefix`) over the `object_store` crate.
//!
//! Configuration comes from the usual environment: `AWS_ENDPOINT_URL` (e.g. a SeaweedFS or MinIO
//! on `http://127.0.0.1:18333`; absent means AWS itself), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (default `us-east-1`), `AWS_ALLOW_HTTP=true` for a
//! plain-HTTP endpoint, and the other `AWS_*` keys `object_store` knows.
//!
//! Conditional writes map onto HTTP preconditions, which the server must apply atomically (AWS,
//! SeaweedFS and MinIO do):
//! ```text
//!   PutMode::Create      PUT + If-None-Match: *   412/409 -> Exists
//!   PutMode::Update(v)   PUT + If-Match: v        412 -> Busy, 404 -> NotFound
//! ```
//! A [`Version`] is the ETag; S3 derives it from the content, so rewriting identical bytes keeps
//! it (the state a compare-and-swap compares is then also identical).
//!
//! Retries: `object_store` retries a request that failed in transit. If a conditional PUT did
//! succeed but its answer was lost, the retry fails its precondition, so a `Create` can report
//! `Exists` (or an `Update` `Busy`) for a write that did land. Callers that care read the object
//! back and compare.
//!
//! The trait is synchronous: the store owns a small multi-thread tokio runtime (2 workers) and
//! blocks on it; any number of threads may call at once. A caller that is itself inside a tokio
//! runtime is served from a scoped helper thread, since blocking there would panic.
//!
//! The bucket is created on first need: a PUT answered `404` makes the store send one SigV4-
//! signed `PUT /<bucket>` (CreateBucket, signed with `object_store`'s own signer, which has no
//! call for it) and retry if that created the bucket; [`S3Store::ensure_bucket`] does the same
//! up front. Reads and lists of a missing bucket see an empty store. (SeaweedFS creates a bucket
//! on the first object PUT by itself, so there the fallback never fires.)

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{
    AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer, S3ConditionalPut,
};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use crate::{validate_key, Error, ErrorKind, ObjectMeta, ObjectStore, PutMode, Result, Version};

/// A store in an S3 bucket, under an optional key prefix.
#[derive(Debug)]
pub struct S3Store {
    url: String,
    bucket: String,
    /// `""` or `"some/prefix/"`.
    prefix: String,
    s3: AmazonS3,
    /// For CreateBucket, which `object_store` does not offer.
    endpoint: String,
    region: String,
    http: HttpClient,
    bucket_ready: AtomicBool,
    rt: tokio::runtime::Runtime,
}

impl S3Store {
    /// Open `s3://bucket[/prefix]` with settings from the `AWS_*` environment. Sends no request.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &[])
    }

    /// Like [`S3Store::open`], with settings that override the environment, named as
    /// `object_store` names them (`("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_region", ..)`, `("aws_allow_http", "true")`, ...). Unknown names are `Invalid`.
    pub fn open_with(url: &str, settings: &[(&str, &str)]) -> Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid!("store URL {url:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid!(
                "store URL {url:?} names no bucket (s3://bucket/prefix)"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix)
                .map_err(|e| e.context(format!("store URL {url:?}: bad prefix")))?;
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };

        let mut builder = AmazonS3Builder::from_env();
        for (name, value) in settings {
            let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().map_err(|e| {
                Error::with_source(
                    ErrorKind::Invalid,
                    format!("store {url:?}: unknown S3 setting {name:?}"),
                    e,
                )
            })?;
            builder = builder.with_config(key, *value);
        }
        let builder = builder
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            });
        let region = builder
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let bad_config = |e: object_store::Error| {
            Error::with_source(ErrorKind::Invalid, format!("cannot configure {url}"), e)
        };
        let s3 = builder.build().map_err(bad_config)?;
        let http = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(allow_http))
            .map_err(bad_config)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shale-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(format!("cannot start the I/O runtime for {url}"), e))?;
        Ok(S3Store {
            url: url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            prefix,
            s3,
            endpoint,
            region,
            http,
            bucket_ready: AtomicBool::new(false),
            rt,
        })
    }

    /// Run `fut` to completion on the store's runtime.
    fn block_on<F: Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            // `block_on` inside a runtime panics; a plain thread is outside every runtime.
            std::thread::scope(|s| match s.spawn(|| self.rt.block_on(fut)).join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
        } else {
            self.rt.block_on(fut)
        }
    }

    fn path(&self, key: &str) -> Result<Path> {
        validate_key(key)?;
        Path::parse(format!("{}{key}", self.prefix)).map_err(|e| {
            Error::with_source(
                ErrorKind::Invalid,
                format!("object key {key:?} is not valid on S3"),
                e,
            )
        })
    }

    fn map_err(&self, op: &str, key: &str, e: object_store::Error) -> Error {
        use object_store::Error as E;
        let kind = match &e {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::AlreadyExists { .. } => ErrorKind::Exists,
            E::Precondition { .. } => ErrorKind::Busy,
            E::InvalidPath { .. } => ErrorKind::Invalid,
            E::NotSupported { .. } | E::NotImplemented { .. } => ErrorKind::Unsupported,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Io,
            // Connection failures, timeouts and 5xx answers after the retries.
            _ => ErrorKind::Unavailable,
        };
        let what = match kind {
            ErrorKind::NotFound => "not found",
            ErrorKind::Exists => "already exists",
            ErrorKind::Busy => "changed (version precondition failed)",
            _ => "failed",
        };
        Error::with_source(
            kind,
            format!("{op} of object {key:?} in {}: {what}", self.url),
            e,
        )
    }

    /// Create the bucket if it does not exist: `Ok(true)` if this call created it, `Ok(false)`
    /// if it was there already. Puts call this themselves when the bucket is missing; it is
    /// public for tools that want to prepare a bucket up front.
    pub fn ensure_bucket(&self) -> Result<bool> {
        let created = self.block_on(self.create_bucket())?;
        self.bucket_ready.store(true, Ordering::Relaxed);
        Ok(created)
    }

    /// Send CreateBucket. `Ok(true)` if this call created it, `Ok(false)` if it existed.
    async fn create_bucket(&self) -> Result<bool> {
        let fail = |what: &str| {
            Error::unavailable(format!("cannot create bucket of {}: {what}", self.url))
        };
        let cred = self.s3.credentials().get_credential().await.map_err(|e| {
            Error::with_source(
                ErrorKind::Unavailable,
                format!("no credentials for {}", self.url),
                e,
            )
        })?;
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        let uri = format!("{}/{}", self.endpoint.trim_end_matches('/'), self.bucket);
        let mut req = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&uri)
            .body(HttpRequestBody::from(body))
            .map_err(|e| fail(&format!("bad request for {uri}: {e}")))?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|e| fail(&format!("cannot sign: {e}")))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(url = %self.url, "created bucket");
            Ok(true)
        } else if status == http::StatusCode::CONFLICT {
            Ok(false) // BucketAlreadyOwnedByYou / BucketAlreadyExists
        } else {
            let body = resp.into_body().bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(fail(&format!("HTTP {status}: {text}")))
        }
    }

    async fn put_once(
        &self,
        path: &Path,
        data: Bytes,
        mode: &PutMode,
    ) -> object_store::Result<object_store::PutResult> {
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
            PutMode::Update(v) => object_store::PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.s3
            .put_opts(path, PutPayload::from_bytes(data), opts)
            .await
    }

    fn version(&self, key: &str, e_tag: Option<String>) -> Result<Version> {
        e_tag.map(Version).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} returned no ETag for object {key:?}; conditional writes need one",
                    self.url
                ),
            )
        })
    }
}

impl ObjectStore for S3Store {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        let path = self.path(key)?;
        let (data, e_tag) = self
            .block_on(async {
                let res = self.s3.get_opts(&path, GetOptions::default()).await?;
                let e_tag = res.meta.e_tag.clone();
                Ok::<_, object_store::Error>((res.bytes().await?, e_tag))
            })
            .map_err(|e| self.map_err("get", key, e))?;
        Ok((data, self.version(key, e_tag)?))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        if range.start > range.end {
            return Err(invalid!(
                "object {key:?}: read range {}..{} is reversed",
                range.start,
                range.end
            ));
        }
        self.block_on(async {
            let size_says_empty = || async {
                // S3 refuses an empty range and one starting at or past the end (416); both
                // read as empty if the object exists.
                let meta = self.s3.head(&path).await?;
                Ok::<_, object_store::Error>(meta.size <= range.start || range.is_empty())
            };
            if range.is_empty() {
                size_says_empty().await?;
                return Ok(Bytes::new());
            }
            // An end past i64::MAX ("to the end") is not a range every server parses.
            let get_range = if range.end > i64::MAX as u64 {
                GetRange::Offset(range.start)
            } else {
                GetRange::Bounded(range.clone())
            };
            let opts = GetOptions {
                range: Some(get_range),
                ..Default::default()
            };
            match self.s3.get_opts(&path, opts).await {
                Ok(res) => res.bytes().await,
                Err(e @ object_store::Error::NotFound { .. }) => Err(e),
                Err(e) => match size_says_empty().await {
                    Ok(true) => Ok(Bytes::new()),
                    Ok(false) => Err(e),
                    Err(head_err) => Err(head_err),
                },
            }
        })
        .map_err(|e| self.map_err("ranged get", key, e))
    }

    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        let path = self.path(key)?;
        let res = self.block_on(async {
            let first = self.put_once(&path, data.clone(), &mode).await;
            match first {
                Err(object_store::Error::NotFound { .. })
                    if !self.bucket_ready.load(Ordering::Relaxed) =>
                {
                    // Maybe the bucket is missing. If creating it works, this put never ran.
                    let created = self.create_bucket().await?;
                    self.bucket_ready.store(true, Ordering::Relaxed);
                    if created {
                        return Ok(self.put_once(&path, data, &mode).await);
                    }
                    Ok(first)
                }
                other => Ok(other),
            }
        })?;
        match res {
            Ok(r) => {
                self.bucket_ready.store(true, Ordering::Relaxed);
                self.version(key, r.e_tag)
            }
            Err(e @ object_store::Error::Precondition { .. })
                if matches!(mode, PutMode::Update(_)) =>
            {
                // Some servers (SeaweedFS) answer If-Match on a missing object with 412, not 404.
                match self.block_on(self.s3.head(&path)) {
                    Err(object_store::Error::NotFound { .. }) => Err(Error::not_found(format!(
                        "put of object {key:?} in {}: not found",
                        self.url
                    ))),
                    _ => Err(self.map_err("put", key, e)),
                }
            }
            Err(e) => Err(self.map_err("put", key, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.block_on(self.s3.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err("delete", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = format!("{}{prefix}", self.prefix);
        // object_store lists whole path segments; list the enclosing "directory" and filter.
        let dir = match full.rfind('/') {
            Some(i) => match Path::parse(&full[..i]) {
                Ok(p) => Some(p),
                // ".." or control characters: no stored key can start like that.
                Err(_) => return Ok(Vec::new()),
            },
            None => None,
        };
        let listed: object_store::Result<Vec<object_store::ObjectMeta>> =
            self.block_on(self.s3.list(dir.as_ref()).try_collect());
        let metas = match listed {
            Ok(m) => m,
            // Only the bucket can be missing: nothing stored yet. object_store reports that
            // as a generic error, so recognise S3's error code.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) if e.to_string().contains("NoSuchBucket") => Vec::new(),
            Err(e) => return Err(self.map_err("list", prefix, e)),
        };
        let mut out: Vec<ObjectMeta> = metas
            .into_iter()
            .filter_map(|m| {
                let loc: &str = m.location.as_ref();
                let key = loc.strip_prefix(&self.prefix)?;
                key.starts_with(prefix).then(|| ObjectMeta {
                    key: key.to_string(),
                    size: m.size,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}
