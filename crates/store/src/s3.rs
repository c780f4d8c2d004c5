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
//!
//! Credentials never leave the store in text: [`S3Store`]'s `Debug`, [`ObjectStore::url`] and
//! every error message (and error source) go through [`redact`], which removes URL userinfo,
//! the configured access key id, secret key and session token, anything shaped like an AWS
//! access key id, and the signature material S3 error bodies echo (`AWSAccessKeyId`,
//! `StringToSign`, `CanonicalRequest`, `Credential=`, `Signature=`, security tokens).

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
pub struct S3Store {
    /// The store URL, redacted.
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
    /// The configured access key id, secret key and session token: cut out of every message.
    secrets: Vec<String>,
}

/// Only what identifies the store, without credentials (`AmazonS3`'s own `Debug` shows the
/// access key id).
impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.url)
            .field("endpoint", &redact(&self.endpoint, &self.secrets))
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
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
        // Secrets given as settings, to cut out of the messages below (the environment's are
        // added once the builder has read them).
        let mut secrets: Vec<String> = settings
            .iter()
            .filter(|(n, _)| is_secret_setting(n))
            .map(|(_, v)| v.to_string())
            .collect();
        let shown = redact(url, &secrets);
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid!("store URL {shown:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid!(
                "store URL {shown:?} names no bucket (s3://bucket/prefix)"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| {
                Error::new(
                    e.kind(),
                    redact(&format!("store URL {url:?}: bad prefix: {e}"), &secrets),
                )
            })?;
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
                    format!("store {shown:?}: unknown S3 setting {name:?}"),
                    Redacted::of(&e, &secrets),
                )
            })?;
            builder = builder.with_config(key, *value);
        }
        for key in [
            AmazonS3ConfigKey::AccessKeyId,
            AmazonS3ConfigKey::SecretAccessKey,
            AmazonS3ConfigKey::Token,
        ] {
            if let Some(v) = builder.get_config_value(&key) {
                secrets.push(v);
            }
        }
        secrets.retain(|v| !v.is_empty());
        let shown = redact(url, &secrets);
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
            Error::with_source(
                ErrorKind::Invalid,
                format!("cannot configure {shown}"),
                Redacted::of(&e, &secrets),
            )
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
            .map_err(|e| Error::io(format!("cannot start the I/O runtime for {shown}"), e))?;
        Ok(S3Store {
            url: shown.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            prefix,
            s3,
            endpoint,
            region,
            http,
            bucket_ready: AtomicBool::new(false),
            rt,
            secrets,
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
            Redacted::of(&e, &self.secrets),
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
        let cred = self.s3.credentials().get_credential().await.map_err(|e| {
            Error::with_source(
                ErrorKind::Unavailable,
                format!("no credentials for {}", self.url),
                Redacted::of(&e, &self.secrets),
            )
        })?;
        // The credentials in use may come from elsewhere (instance metadata, web identity).
        let mut secrets = self.secrets.clone();
        secrets.extend([cred.key_id.clone(), cred.secret_key.clone()]);
        secrets.extend(cred.token.clone());
        let fail = |what: &str| {
            Error::unavailable(redact(
                &format!("cannot create bucket of {}: {what}", self.url),
                &secrets,
            ))
        };
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

/// Whether an `object_store` setting name holds a credential.
fn is_secret_setting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential"]
        .iter()
        .any(|w| n.contains(w))
}

/// An error's text (its whole source chain), redacted: what an error from `object_store` or the
/// HTTP client becomes before it is kept as the source of a Shale [`Error`].
#[derive(Debug)]
struct Redacted(String);

impl Redacted {
    fn of(e: &(dyn std::error::Error + 'static), secrets: &[String]) -> Self {
        let mut text = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            src = s.source();
        }
        Redacted(redact(&text, secrets))
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

const HIDDEN: &str = "***";

/// `text` without credentials: every value in `secrets`, the userinfo of URLs
/// (`scheme://user:pass@host`), anything shaped like an AWS access key id, and the signature
/// material S3 answers echo (XML elements, `Credential=`/`Signature=` parameters, security
/// token headers and query parameters).
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut s = text.to_string();
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(|v| v.as_str())
        .filter(|v| v.len() >= 4)
        .collect();
    secrets.sort_by_key(|v| std::cmp::Reverse(v.len())); // longest first: no partial leftovers
    for v in secrets {
        s = s.replace(v, HIDDEN);
    }
    s = redact_userinfo(&s);
    for tag in [
        "AWSAccessKeyId",
        "StringToSign",
        "StringToSignBytes",
        "CanonicalRequest",
        "CanonicalRequestBytes",
        "SignatureProvided",
        "Token",
        "SessionToken",
        "SecretAccessKey",
    ] {
        s = redact_element(&s, tag);
    }
    for key in [
        "credential=",
        "signature=",
        "x-amz-credential=",
        "x-amz-signature=",
        "x-amz-security-token=",
        "x-amz-security-token:",
        "x-amz-security-token\": ",
        "awsaccesskeyid=",
        "authorization:",
        "authorization\": ",
    ] {
        s = redact_after(&s, key);
    }
    redact_key_ids(&s)
}

/// `scheme://user:pass@host...` → `scheme://***@host...`, everywhere in `s`.
fn redact_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')' | ',')
                    || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str(HIDDEN);
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `<tag>...</tag>` → `<tag>***</tag>`.
fn redact_element(s: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        out.push_str(&rest[..i + open.len()]);
        let body = &rest[i + open.len()..];
        let end = body.find(&close).unwrap_or(body.len());
        out.push_str(HIDDEN);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// The value after `key` (ASCII, matched ignoring case) up to the next delimiter → `***`. An
/// `authorization` value runs to the end of its line.
fn redact_after(s: &str, key: &str) -> String {
    let lower = s.to_ascii_lowercase(); // same byte offsets as `s`
    let whole_line = key.starts_with("authorization");
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find(key) {
        let start = at + i + key.len();
        out.push_str(&s[at..start]);
        let value = &s[start..];
        let skip = value.len() - value.trim_start_matches(' ').len();
        let end = value[skip..]
            .find(|c: char| {
                if whole_line {
                    c == '\n' || c == '\r' || c == '"'
                } else {
                    matches!(c, ',' | '&' | '"' | '\'' | '<' | ';' | ')') || c.is_whitespace()
                }
            })
            .map_or(value.len(), |e| e + skip);
        if end > skip {
            out.push_str(&value[..skip]);
            out.push_str(HIDDEN);
        } else {
            out.push_str(&value[..end]);
        }
        at = start + end;
    }
    out.push_str(&s[at..]);
    out
}

/// Anything shaped like an AWS access key id (`AKIA`/`ASIA` + 16 upper-case letters or digits).
fn redact_key_ids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 20 <= b.len() {
        let shaped = (b[i..].starts_with(b"AKIA") || b[i..].starts_with(b"ASIA"))
            && b[i + 4..i + 20]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 20).is_none_or(|c| !c.is_ascii_alphanumeric());
        if shaped {
            out.push_str(&s[copied..i]);
            out.push_str(HIDDEN);
            i += 20;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLEsessionTOKEN0123456789";
    const USERPASS: &str = "hunter2-userinfo";

    fn leaks(text: &str) -> Vec<&'static str> {
        [KEY_ID, SECRET, TOKEN, USERPASS, "wJalrXUtnFEMI"]
            .into_iter()
            .filter(|s| text.contains(s))
            .collect()
    }

    fn with_credentials(url: &str) -> Result<S3Store> {
        S3Store::open_with(
            url,
            &[
                ("aws_access_key_id", KEY_ID),
                ("aws_secret_access_key", SECRET),
                ("aws_session_token", TOKEN),
                // Nothing listens on the discard port: every request fails fast.
                (
                    "aws_endpoint",
                    &format!("http://admin:{USERPASS}@127.0.0.1:9"),
                ),
                ("aws_allow_http", "true"),
            ],
        )
    }

    #[test]
    fn debug_url_and_errors_hide_credentials() {
        let store = with_credentials("s3://bucket/some/prefix").expect("sends no request");
        let shown = format!("{store:?} {:#?} {}", store, store.url());
        assert!(leaks(&shown).is_empty(), "{:?} in {shown}", leaks(&shown));
        assert!(shown.contains("s3://bucket/some/prefix"), "{shown}");
        // Requests fail (connection refused, after the retries): their errors, sources
        // included, show no secret either.
        let mut texts = Vec::new();
        if let Err(e) = store.get("k") {
            texts.push(format!("{e} | {e:?}"));
        }
        if let Err(e) = store.put("k", Bytes::from_static(b"x"), PutMode::Overwrite) {
            texts.push(format!("{e} | {e:?}"));
        }
        if let Err(e) = store.ensure_bucket() {
            texts.push(format!("{e} | {e:?}"));
        }
        assert!(!texts.is_empty(), "nothing listens on 127.0.0.1:9");
        for t in &texts {
            assert!(leaks(t).is_empty(), "{:?} in {t}", leaks(t));
        }
    }

    #[test]
    fn a_url_with_userinfo_is_redacted() {
        let url = format!("s3://{KEY_ID}:{USERPASS}@bucket/p");
        let text = match with_credentials(&url) {
            Ok(s) => format!("{s:?} {}", s.url()),
            Err(e) => format!("{e} {e:?}"),
        };
        assert!(leaks(&text).is_empty(), "{:?} in {text}", leaks(&text));
        let text = match S3Store::open_with(&format!("s4://u:{USERPASS}@b"), &[]) {
            Ok(s) => format!("{s:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        assert!(leaks(&text).is_empty(), "{text}");
    }

    #[test]
    fn s3_error_bodies_and_headers_are_redacted() {
        let body = format!(
            "<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId>\
             <StringToSign>AWS4-HMAC-SHA256\n20240101T000000Z</StringToSign>\
             <CanonicalRequest>PUT\n/b\nx-amz-security-token:{TOKEN}\n</CanonicalRequest>\
             </Error> Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101/us-east-1/s3, \
             Signature=0123abcd\n?X-Amz-Security-Token={TOKEN}&X-Amz-Credential=ASIAQQQQQQQQQQQQQQQQ \
             http://admin:{USERPASS}@host:1/b"
        );
        let r = redact(&body, &[]);
        assert!(leaks(&r).is_empty(), "{:?} in {r}", leaks(&r));
        assert!(!r.contains("0123abcd") && !r.contains("ASIAQQQQ"), "{r}");
        assert!(
            r.contains("SignatureDoesNotMatch") && r.contains("http://***@host:1/b"),
            "{r}"
        );
        // Known secrets are cut wherever they appear, and plain text is left alone.
        let r = redact(&format!("a {SECRET} b"), &[SECRET.to_string()]);
        assert_eq!(r, "a *** b");
        assert_eq!(
            redact("get of object \"k\" in s3://b/p: failed", &[]),
            "get of object \"k\" in s3://b/p: failed"
        );
    }
}
