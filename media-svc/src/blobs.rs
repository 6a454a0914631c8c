//! The files, through `object_store`: a directory in `warble dev`, an
//! S3-compatible bucket in production. Keys are `{prefix}{media_id}/{variant}`,
//! so a CDN in front of the bucket serves `{base}/{media_id}/{variant}`.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use crate::config::{BlobBackend, BlobsConfig};

/// Which file of a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The stored original.
    Original,
    /// An image's preview.
    Preview,
}

impl Variant {
    /// The variant's name in keys and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Original => "original",
            Variant::Preview => "preview",
        }
    }
}

/// A write of one large file in parts, never holding it whole
/// ([`Blobs::start_upload`]). Dropping it without [`PartUpload::finish`]
/// leaves no object behind once [`PartUpload::abort`] runs; callers abort
/// on every refusal.
pub struct PartUpload {
    writer: WriteMultipart,
}

impl PartUpload {
    /// Queues `bytes`; waits when too many parts are in flight, so a fast
    /// client cannot make the service buffer a whole file.
    pub async fn write(&mut self, bytes: &[u8]) -> object_store::Result<()> {
        self.writer.wait_for_capacity(2).await?;
        self.writer.write(bytes);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(self) -> object_store::Result<()> {
        self.writer.finish().await.map(|_| ())
    }

    /// Removes every part written so far.
    pub async fn abort(self) -> object_store::Result<()> {
        self.writer.abort().await
    }
}

/// The object store holding every media file.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The same store, when it is S3: it signs URLs and takes content types.
    s3: Option<Arc<AmazonS3>>,
    prefix: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Blobs {
    /// Opens the configured store; a filesystem store lives in `blobs.dir`
    /// or `default_dir`, created if missing.
    pub fn open(config: &BlobsConfig, default_dir: &std::path::Path) -> anyhow::Result<Self> {
        match config.backend {
            BlobBackend::Filesystem => {
                let dir = if config.dir.as_os_str().is_empty() {
                    default_dir.to_path_buf()
                } else {
                    config.dir.clone()
                };
                std::fs::create_dir_all(&dir).map_err(|error| {
                    anyhow::anyhow!(
                        "cannot create the blob directory {}: {error}",
                        dir.display()
                    )
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
                Ok(Self {
                    store: Arc::new(store),
                    s3: None,
                    prefix: String::new(),
                })
            }
            BlobBackend::S3 => {
                let s3 = &config.s3;
                let mut builder = AmazonS3Builder::new()
                    .with_region(&s3.region)
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style);
                if !s3.endpoint.is_empty() {
                    builder = builder.with_endpoint(&s3.endpoint);
                }
                if !s3.access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(s3.access_key_id.expose())
                        .with_secret_access_key(s3.secret_access_key.expose());
                }
                let store = Arc::new(builder.build()?);
                Ok(Self {
                    store: store.clone(),
                    s3: Some(store),
                    prefix: s3.prefix.clone(),
                })
            }
        }
    }

    /// A store over any `object_store` implementation (tests).
    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            s3: None,
            prefix: String::new(),
        }
    }

    /// The key of one variant of one media item.
    pub fn key(&self, media_id: u64, variant: Variant) -> Path {
        Path::from(format!("{}{media_id}/{}", self.prefix, variant.as_str()))
    }

    fn attributes(&self, content_type: &str) -> Attributes {
        let mut attributes = Attributes::new();
        // Only S3 keeps a content type; the filesystem store refuses
        // attributes, and the gateway reads the type from the metadata.
        if self.s3.is_some() {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
            attributes.insert(
                Attribute::CacheControl,
                "public, max-age=31536000, immutable".into(),
            );
        }
        attributes
    }

    /// Stores a small file in one request.
    pub async fn put(
        &self,
        media_id: u64,
        variant: Variant,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> object_store::Result<()> {
        self.store
            .put_opts(
                &self.key(media_id, variant),
                PutPayload::from(bytes),
                PutOptions {
                    attributes: self.attributes(content_type),
                    ..PutOptions::default()
                },
            )
            .await
            .map(|_| ())
    }

    /// Starts a large file, written in parts.
    pub async fn start_upload(
        &self,
        media_id: u64,
        variant: Variant,
        content_type: &str,
    ) -> object_store::Result<PartUpload> {
        let upload = self
            .store
            .put_multipart_opts(
                &self.key(media_id, variant),
                PutMultipartOptions::from(self.attributes(content_type)),
            )
            .await?;
        Ok(PartUpload {
            writer: WriteMultipart::new(upload),
        })
    }

    /// The bytes of `range` of one file, as they arrive.
    pub async fn read(
        &self,
        media_id: u64,
        variant: Variant,
        range: Range<u64>,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.key(media_id, variant), options)
            .await?;
        Ok(result.into_stream().boxed())
    }

    /// Deletes one file; deleting a missing file succeeds, so a deletion
    /// interrupted halfway can simply run again.
    pub async fn delete(&self, media_id: u64, variant: Variant) -> object_store::Result<()> {
        match self.store.delete(&self.key(media_id, variant)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// A presigned GET URL of one file, valid for `ttl` (S3 only).
    pub async fn presigned_url(
        &self,
        media_id: u64,
        variant: Variant,
        ttl: Duration,
    ) -> object_store::Result<Option<String>> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let url = s3
            .signed_url(http::Method::GET, &self.key(media_id, variant), ttl)
            .await?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_delete_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(&BlobsConfig::default(), dir.path()).unwrap();
        blobs
            .put(7, Variant::Original, "image/png", b"0123456789".to_vec())
            .await
            .unwrap();
        let chunks: Vec<Bytes> = blobs
            .read(7, Variant::Original, 2..5)
            .await
            .unwrap()
            .map(|chunk| chunk.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.concat(), b"234");
        let mut upload = blobs
            .start_upload(8, Variant::Original, "video/mp4")
            .await
            .unwrap();
        upload.write(b"abc").await.unwrap();
        upload.write(b"def").await.unwrap();
        upload.finish().await.unwrap();
        let chunks: Vec<Bytes> = blobs
            .read(8, Variant::Original, 0..6)
            .await
            .unwrap()
            .map(|chunk| chunk.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.concat(), b"abcdef");
        blobs.delete(7, Variant::Original).await.unwrap();
        blobs.delete(7, Variant::Original).await.unwrap();
        assert!(blobs.read(7, Variant::Original, 0..1).await.is_err());
        assert!(
            blobs
                .presigned_url(8, Variant::Original, Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
    }
}
