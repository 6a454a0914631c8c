//! media-svc's configuration (see the README's config reference).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use warble_mesh::backends::RedisConfig;
use warble_mesh::config::{ConfigError, ServiceConfig};
use warble_mesh::grpc::ServerConfig;
use warble_mesh::secret::Secret;
use warble_mesh::snowflake::MAX_WORKER_ID;
use warble_mesh::telemetry::TelemetryConfig;

pub use warble_mesh::consumer::ConsumerConfig;

/// media-svc's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaSvcConfig {
    /// gRPC server (MediaService, health, reflection).
    pub server: ServerConfig,
    /// Where the embedded metadata store and filesystem blobs live.
    pub data_dir: PathBuf,
    /// This replica's Snowflake worker id (0 to 1023), unique among the
    /// replicas issuing media ids.
    pub worker_id: u32,
    /// Where the files go.
    pub blobs: BlobsConfig,
    /// Where the metadata goes.
    pub store: MediaStoreConfig,
    /// How clients reach the files.
    pub urls: UrlsConfig,
    /// What an upload may be.
    pub limits: MediaLimits,
    /// When unattached and deleted media go.
    pub lifecycle: LifecycleConfig,
    /// The event stream media-svc consumes (tweets created and deleted
    /// attach and release media): Redis Streams in a separate process.
    pub redis: RedisConfig,
    /// How events are consumed.
    pub consumer: ConsumerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// Who may call which RPC with mutual TLS on (`server.allow_peers`):
/// uploads, claims and avatars only through the gateway, which has checked
/// the user's token; reads by any mesh peer.
pub const DEFAULT_ALLOW_PEERS: &str = concat!(
    "warble.media.v1.MediaService/Upload=gateway; ",
    "warble.media.v1.MediaService/ClaimMedia=gateway; ",
    "warble.media.v1.MediaService/ReleaseClaim=gateway; ",
    "warble.media.v1.MediaService/UseAsAvatar=gateway; ",
    "*=*"
);

impl Default for MediaSvcConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::on_port(50057).allowing(DEFAULT_ALLOW_PEERS),
            data_dir: PathBuf::from("./data/media-svc"),
            worker_id: 1,
            blobs: BlobsConfig::default(),
            store: MediaStoreConfig::default(),
            urls: UrlsConfig::default(),
            limits: MediaLimits::default(),
            lifecycle: LifecycleConfig::default(),
            redis: RedisConfig::default(),
            consumer: ConsumerConfig::for_group("media"),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// Which object store holds the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// A directory: `blobs.dir`, or `data_dir/blobs` (the default).
    #[default]
    Filesystem,
    /// An S3-compatible bucket (`blobs.s3.*`).
    S3,
}

/// `blobs.*`: the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlobsConfig {
    /// `filesystem` or `s3`.
    pub backend: BlobBackend,
    /// The directory of `filesystem` blobs; empty means `data_dir/blobs`.
    pub dir: PathBuf,
    /// The bucket, used when `backend = "s3"`.
    pub s3: S3Config,
}

/// `blobs.s3.*`: an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// The API endpoint (`https://s3.eu-west-1.amazonaws.com`, or a
    /// MinIO URL); empty uses AWS's endpoint for `region`.
    pub endpoint: String,
    /// The bucket's region.
    pub region: String,
    /// The bucket; must exist.
    pub bucket: String,
    /// Access key id (a secret: from a file or `WARBLE_BLOBS__S3__ACCESS_KEY_ID`).
    pub access_key_id: Secret,
    /// Secret access key (a secret).
    pub secret_access_key: Secret,
    /// Allow a plain `http://` endpoint (a bucket on the same host or network).
    pub allow_http: bool,
    /// Address buckets as `bucket.endpoint` (AWS's default) rather than
    /// `endpoint/bucket` (what most self-hosted servers expect).
    pub virtual_hosted_style: bool,
    /// A key prefix inside the bucket (e.g. `media/`), so one bucket can
    /// hold other things; empty for none.
    pub prefix: String,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
            allow_http: false,
            virtual_hosted_style: false,
            prefix: String::new(),
        }
    }
}

/// Which metadata store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreBackend {
    /// redb in `data_dir` (the default).
    #[default]
    Embedded,
    /// Redis (`store.redis.*`), which must persist (AOF) and never evict.
    Redis,
}

/// `store.*`: the metadata store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MediaStoreConfig {
    /// `embedded` or `redis`.
    pub backend: MediaStoreBackend,
    /// The Redis holding metadata, used when `backend = "redis"`.
    pub redis: RedisConfig,
    /// A prefix for every metadata key, so deployments can share a Redis.
    pub key_prefix: String,
}

/// How [`UrlsConfig`] builds URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UrlMode {
    /// `{base_url}/{media_id}/{variant}`: a CDN in front of the bucket,
    /// or the gateway's `/media` route (the default, in `warble dev`).
    #[default]
    Base,
    /// Presigned GET URLs to the bucket, valid `presign_ttl_secs` (S3 only).
    Presigned,
}

/// `urls.*`: the URLs media-svc hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UrlsConfig {
    /// `base` or `presigned`.
    pub mode: UrlMode,
    /// The public base of `base` URLs, without a trailing slash. With a
    /// CDN it serves the bucket's keys `{prefix}{media_id}/{variant}`.
    pub base_url: String,
    /// How long a presigned URL stays valid, in seconds.
    pub presign_ttl_secs: u64,
}

impl Default for UrlsConfig {
    fn default() -> Self {
        Self {
            mode: UrlMode::Base,
            base_url: "http://127.0.0.1:8080/media".into(),
            presign_ttl_secs: 3_600,
        }
    }
}

/// `limits.*`: what an upload may be. A refusal is INVALID_ARGUMENT with
/// the reason, and stores nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaLimits {
    /// Largest image (JPEG, PNG, GIF, WebP), in bytes (5 MB, as X allows).
    pub max_image_bytes: u64,
    /// Largest video (MP4), in bytes.
    pub max_video_bytes: u64,
    /// Most pixels an image may decode to (width × height; for an
    /// animated GIF, summed over its frames). Refuses decompression bombs:
    /// a 5 MB file can claim gigapixels.
    pub max_image_pixels: u64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: 5 * 1024 * 1024,
            max_video_bytes: 64 * 1024 * 1024,
            // 8K UHD: 7680 × 4320.
            max_image_pixels: 33_177_600,
        }
    }
}

/// `lifecycle.*`: deleting what nobody uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LifecycleConfig {
    /// Uploads attached to nothing this long after upload are deleted.
    pub unattached_ttl_secs: u64,
    /// A deleted tweet's media are deleted this long after the tweet.
    pub deleted_grace_secs: u64,
    /// How long a ClaimMedia holds media for a post that has not been
    /// created yet; a lapsed claim frees them.
    pub claim_ttl_secs: u64,
    /// How often the sweeper looks for media to delete.
    pub sweep_interval_ms: u64,
    /// Most media one sweep deletes (the rest wait for the next sweep).
    pub sweep_batch: u32,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            unattached_ttl_secs: 86_400,
            deleted_grace_secs: 3_600,
            claim_ttl_secs: 600,
            sweep_interval_ms: 60_000,
            sweep_batch: 500,
        }
    }
}

impl warble_mesh::scaffold::BinaryConfig for MediaSvcConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

impl ServiceConfig for MediaSvcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.telemetry.validate("telemetry")?;
        self.redis.validate("redis")?;
        self.consumer.validate()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if self.worker_id > u32::from(MAX_WORKER_ID) {
            return Err(ConfigError::invalid(
                "worker_id",
                format!("must be at most {MAX_WORKER_ID}"),
            ));
        }
        if self.blobs.backend == BlobBackend::S3 {
            let s3 = &self.blobs.s3;
            if s3.bucket.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "blobs.s3.bucket",
                    "must name the bucket",
                ));
            }
            if s3.region.trim().is_empty() {
                return Err(ConfigError::invalid("blobs.s3.region", "must not be empty"));
            }
            if s3.endpoint.starts_with("http://") && !s3.allow_http {
                return Err(ConfigError::invalid(
                    "blobs.s3.endpoint",
                    "is plain http: set blobs.s3.allow_http = true to allow it",
                ));
            }
            let endpoint = &s3.endpoint;
            if !(endpoint.is_empty()
                || endpoint.starts_with("http://")
                || endpoint.starts_with("https://"))
            {
                return Err(ConfigError::invalid(
                    "blobs.s3.endpoint",
                    "must be an http(s) URL",
                ));
            }
            if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() {
                return Err(ConfigError::invalid(
                    "blobs.s3.secret_access_key",
                    "set both access_key_id and secret_access_key, or neither",
                ));
            }
        }
        if self.store.backend == MediaStoreBackend::Redis {
            self.store.redis.validate("store.redis")?;
        }
        match self.urls.mode {
            UrlMode::Base => {
                let base = &self.urls.base_url;
                if !(base.starts_with("http://")
                    || base.starts_with("https://")
                    || base.starts_with('/'))
                    || base.ends_with('/')
                {
                    return Err(ConfigError::invalid(
                        "urls.base_url",
                        "must be an http(s) URL or an absolute path, without a trailing slash",
                    ));
                }
            }
            UrlMode::Presigned => {
                if self.blobs.backend != BlobBackend::S3 {
                    return Err(ConfigError::invalid(
                        "urls.mode",
                        "presigned URLs need blobs.backend = \"s3\"",
                    ));
                }
                // S3 caps a presigned URL's life at seven days.
                if !(1..=604_800).contains(&self.urls.presign_ttl_secs) {
                    return Err(ConfigError::invalid(
                        "urls.presign_ttl_secs",
                        "must be between 1 and 604800 (seven days)",
                    ));
                }
            }
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_image_bytes", limits.max_image_bytes),
            ("limits.max_video_bytes", limits.max_video_bytes),
            ("limits.max_image_pixels", limits.max_image_pixels),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        let lifecycle = &self.lifecycle;
        for (key, value) in [
            (
                "lifecycle.unattached_ttl_secs",
                lifecycle.unattached_ttl_secs,
            ),
            ("lifecycle.claim_ttl_secs", lifecycle.claim_ttl_secs),
            ("lifecycle.sweep_interval_ms", lifecycle.sweep_interval_ms),
            ("lifecycle.sweep_batch", u64::from(lifecycle.sweep_batch)),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if lifecycle.claim_ttl_secs >= lifecycle.unattached_ttl_secs {
            return Err(ConfigError::invalid(
                "lifecycle.claim_ttl_secs",
                "must be shorter than lifecycle.unattached_ttl_secs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        MediaSvcConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        type Break = Box<dyn Fn(&mut MediaSvcConfig)>;
        let cases: Vec<(&str, Break)> = vec![
            (
                "blobs.s3.bucket",
                Box::new(|c| c.blobs.backend = BlobBackend::S3),
            ),
            (
                "blobs.s3.endpoint",
                Box::new(|c| {
                    c.blobs.backend = BlobBackend::S3;
                    c.blobs.s3.bucket = "media".into();
                    c.blobs.s3.endpoint = "http://127.0.0.1:9000".into();
                }),
            ),
            ("urls.mode", Box::new(|c| c.urls.mode = UrlMode::Presigned)),
            (
                "urls.base_url",
                Box::new(|c| c.urls.base_url = "cdn.example.com/".into()),
            ),
            (
                "limits.max_image_pixels",
                Box::new(|c| c.limits.max_image_pixels = 0),
            ),
            (
                "lifecycle.claim_ttl_secs",
                Box::new(|c| c.lifecycle.claim_ttl_secs = 90_000),
            ),
            ("worker_id", Box::new(|c| c.worker_id = 5_000)),
        ];
        for (key, breaks) in cases {
            let mut config = MediaSvcConfig::default();
            breaks(&mut config);
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }
}
