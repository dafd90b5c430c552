//! [`BlobStore`] on S3: bodies streamed and size-checked before they are read, content
//! type and `Cache-Control` stored as the object's own headers, and a conditional write
//! (`If-None-Match: *`) for writers that must not replace an object.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::{Bytes, BytesMut};
use pipeline_core::blob::{Blob, BlobError, BlobMeta, BlobStore, PutOptions};

use protocol::keys::{guess_content_type, validate_bucket, validate_key};

use crate::error::AwsError;

/// Codes S3 answers for a missing object or bucket (HEAD has no body, so only `NotFound`).
const MISSING: &[&str] = &["NoSuchKey", "NoSuchBucket", "NotFound"];

/// Buckets on S3 (or an emulator). Cheap to clone: clones share the client.
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: Client,
}

impl S3BlobStore {
    /// A store on `client` (build it with [`AwsConfig::s3_client`](crate::AwsConfig::s3_client)).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client, for calls this store does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Writes the object only when no object has the key; returns whether it wrote.
    /// A redelivered job can use it to leave a finished output alone.
    ///
    /// # Errors
    /// [`BlobError::InvalidName`] or a storage failure.
    pub async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<bool, BlobError> {
        match self.put_object(bucket, key, body, options, true).await {
            Ok(()) => Ok(true),
            Err(e) if e.status == Some(412) || e.has_code(&["PreconditionFailed", "ConditionalRequestConflict"]) => {
                Ok(false)
            }
            Err(e) => Err(missing_or(e, bucket, key)),
        }
    }

    /// Creates a bucket; one this account already owns is fine.
    ///
    /// # Errors
    /// [`BlobError::InvalidName`], or a storage failure (a name another account owns).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), BlobError> {
        validate_bucket(bucket)?;
        let mut req = self.client.create_bucket().bucket(bucket);
        // us-east-1 refuses a location constraint; every other region requires one.
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            let conf = CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build();
            req = req.create_bucket_configuration(conf);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::from_sdk("CreateBucket", &e);
                if e.has_code(&["BucketAlreadyOwnedByYou"]) { Ok(()) } else { Err(e.into()) }
            }
        }
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        options: &PutOptions,
        if_absent: bool,
    ) -> Result<(), AwsError> {
        let content_type = options.content_type.clone().unwrap_or_else(|| guess_content_type(key).to_owned());
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .content_type(content_type)
            .set_cache_control(options.cache_control.clone())
            .body(ByteStream::from(body));
        if if_absent {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| AwsError::from_sdk("PutObject", &e))
    }
}

/// [`BlobError::NotFound`] for S3's "no such key/bucket", the service error otherwise.
fn missing_or(e: AwsError, bucket: &str, key: &str) -> BlobError {
    if e.has_code(MISSING) || e.status == Some(404) {
        BlobError::NotFound { bucket: bucket.into(), key: key.into() }
    } else {
        e.into()
    }
}

fn size_of(len: Option<i64>) -> u64 {
    len.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn content_type_or_guess(stored: Option<&str>, key: &str) -> String {
    match stored {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => guess_content_type(key).to_owned(),
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Blob, BlobError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| missing_or(AwsError::from_sdk("GetObject", &e), bucket, key))?;
        let too_large = |size| BlobError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes };
        // Refuse on the announced length before reading; dropping the body closes the stream.
        let announced = out.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(size) = announced.filter(|&s| s > max_bytes) {
            return Err(too_large(size));
        }
        let meta = BlobMeta {
            key: key.to_owned(),
            size: announced.unwrap_or(0),
            content_type: content_type_or_guess(out.content_type(), key),
            cache_control: out.cache_control().map(str::to_owned),
            version: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
        };
        // Read chunk by chunk, so a body longer than announced still stops at the limit.
        let mut stream = out.body;
        let mut buf = BytesMut::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| BlobError::Service { message: format!("reading s3://{bucket}/{key}: {e}"), retryable: true })?
        {
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > max_bytes {
                return Err(too_large(buf.len() as u64));
            }
        }
        let body = buf.freeze();
        Ok(Blob { meta: BlobMeta { size: body.len() as u64, ..meta }, body })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<BlobMeta, BlobError> {
        validate_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| missing_or(AwsError::from_sdk("HeadObject", &e), bucket, key))?;
        Ok(BlobMeta {
            key: key.to_owned(),
            size: size_of(out.content_length()),
            content_type: content_type_or_guess(out.content_type(), key),
            cache_control: out.cache_control().map(str::to_owned),
            version: out.e_tag().map(|t| t.trim_matches('"').to_owned()),
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, options: &PutOptions) -> Result<(), BlobError> {
        validate_key(key)?;
        validate_bucket(bucket)?;
        self.put_object(bucket, key, body, options, false).await.map_err(|e| missing_or(e, bucket, key))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self.client.delete_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::from_sdk("DeleteObject", &e);
                if e.has_code(&["NoSuchKey"]) { Ok(()) } else { Err(missing_or(e, bucket, key)) }
            }
        }
    }

    /// Listings carry no headers: each entry's content type is guessed from its key and
    /// its `Cache-Control` is `None`; [`head`](BlobStore::head) an object for the stored ones.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| missing_or(AwsError::from_sdk("ListObjectsV2", &e), bucket, prefix))?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                all.push(BlobMeta {
                    key: key.to_owned(),
                    size: size_of(obj.size()),
                    content_type: guess_content_type(key).to_owned(),
                    cache_control: None,
                    version: obj.e_tag().map(|t| t.trim_matches('"').to_owned()),
                });
            }
        }
        // S3 lists in UTF-8 byte order already; sort anyway so emulators agree.
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }
}
