//! `warble.media.v1.MediaService`: request validation and the handlers.

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _, stream};
use tonic::{Request, Response, Status, Streaming};
use warble_mesh::snowflake::SnowflakeGenerator;
use warble_mesh::status::ErrorChain;
use warble_proto::limits::media::{
    MAX_ALT_TEXT_CHARS, MAX_BATCH, MAX_CHUNK_BYTES, MAX_CLAIM_KEY_BYTES, MAX_IMAGES_PER_TWEET,
    MAX_VIDEOS_PER_TWEET,
};
use warble_proto::media::v1 as pb;
use warble_proto::media::v1::media_service_server::MediaService;
use warble_proto::media::v1::upload_request::Part;

use crate::blobs::{Blobs, PartUpload, Variant};
use crate::config::{MediaLimits, UrlMode, UrlsConfig};
use crate::error::{MediaError, Refusal};
use crate::process::{self, Format, SNIFF_BYTES};
use crate::store::{Conflict, Kind, MediaRecord, MediaStore, Preview, State};

/// media-svc's counters since start (GetStatus, and the stack's metrics).
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Uploads stored.
    pub uploads: AtomicU64,
    /// Bytes of files stored by uploads (originals and previews).
    pub bytes_stored: AtomicU64,
    /// Bytes of files deleted by the sweeper.
    pub bytes_deleted: AtomicU64,
    /// Media deleted by the sweeper.
    pub deleted: AtomicU64,
    /// Sum of the stored uploads' durations, in milliseconds.
    pub upload_millis_sum: AtomicU64,
    /// Refused uploads by reason.
    pub refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// The event consumer's counters.
    pub consumer: Arc<warble_mesh::consumer::ConsumerCounters>,
}

impl MediaStats {
    fn refused(&self, refusal: &Refusal) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(refusal.reason())
            .or_default() += 1;
    }

    /// A copy of the refusal counts.
    pub fn refusals(&self) -> BTreeMap<String, u64> {
        self.refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(reason, count)| ((*reason).to_owned(), *count))
            .collect()
    }
}

/// The handlers' shared state.
#[derive(Clone)]
pub struct MediaApi {
    pub store: Arc<dyn MediaStore>,
    pub blobs: Blobs,
    pub ids: Arc<SnowflakeGenerator>,
    pub stats: Arc<MediaStats>,
    pub limits: MediaLimits,
    pub urls: UrlsConfig,
    /// How long an upload may stay unattached, in milliseconds.
    pub unattached_ttl_ms: i64,
    /// How long a claim holds media, in milliseconds.
    pub claim_ttl_ms: i64,
}

fn now_ms() -> i64 {
    warble_mesh::time::now_ms() as i64
}

fn media_field_error(id: u64, conflict: Conflict) -> MediaError {
    MediaError::invalid("media_ids", format!("media {id} {}", conflict.describe()))
}

impl MediaApi {
    /// The client-facing form of a record, with its URLs.
    async fn to_proto(&self, record: &MediaRecord) -> Result<pb::Media, MediaError> {
        let url = self.url(record.id, Variant::Original).await?;
        let preview_url = match record.preview {
            Some(_) => self.url(record.id, Variant::Preview).await?,
            None => String::new(),
        };
        Ok(pb::Media {
            media_id: record.id,
            owner_id: record.owner_id,
            kind: match record.kind {
                Kind::Image => pb::MediaKind::Image,
                Kind::Video => pb::MediaKind::Video,
            } as i32,
            state: match record.state {
                State::Uploaded | State::Claimed { .. } => pb::MediaState::Uploaded,
                State::Attached { .. } => pb::MediaState::Attached,
                State::Deleting | State::Removing => pb::MediaState::Deleting,
            } as i32,
            content_type: record.content_type.clone(),
            size_bytes: record.size_bytes,
            width: record.width,
            height: record.height,
            blurhash: record.blurhash.clone(),
            alt_text: record.alt_text.clone(),
            url,
            preview_url,
            created_at_ms: record.created_at_ms,
            tweet_id: match record.state {
                State::Attached { tweet_id } => tweet_id,
                _ => 0,
            },
        })
    }

    async fn url(&self, media_id: u64, variant: Variant) -> Result<String, MediaError> {
        match self.urls.mode {
            UrlMode::Base => Ok(format!(
                "{}/{media_id}/{}",
                self.urls.base_url,
                variant.as_str()
            )),
            UrlMode::Presigned => self
                .blobs
                .presigned_url(
                    media_id,
                    variant,
                    Duration::from_secs(self.urls.presign_ttl_secs),
                )
                .await?
                .ok_or_else(|| MediaError::storage("presigned URLs need an S3 store")),
        }
    }

    /// Receives one upload and stores it, or refuses it leaving nothing.
    async fn receive(
        &self,
        stream: &mut Streaming<pb::UploadRequest>,
    ) -> Result<MediaRecord, MediaError> {
        let start = match next_part(stream).await? {
            Some(Part::Start(start)) => start,
            _ => {
                return Err(Refusal::Malformed(
                    "the first message of an upload must be `start`".into(),
                )
                .into());
            }
        };
        if start.owner_id == 0 {
            return Err(MediaError::invalid("start.owner_id", "must be set"));
        }
        if start.alt_text.chars().count() > MAX_ALT_TEXT_CHARS {
            return Err(MediaError::invalid(
                "start.alt_text",
                format!("must be at most {MAX_ALT_TEXT_CHARS} characters"),
            ));
        }
        // Enough of the file to know what it is.
        let mut head = Vec::new();
        let mut ended = false;
        while head.len() < SNIFF_BYTES {
            match next_chunk(stream).await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let format = process::sniff(&head)?;
        let record = if format.is_video() {
            self.receive_video(stream, format, head, ended).await?
        } else {
            self.receive_image(stream, format, head, ended).await?
        };
        let record = MediaRecord {
            owner_id: start.owner_id,
            alt_text: start.alt_text,
            ..record
        };
        if let Err(error) = self.store.insert(&record).await {
            self.delete_files(&record).await;
            return Err(error);
        }
        tracing::info!(
            media_id = record.id,
            owner_id = record.owner_id,
            content_type = record.content_type,
            size_bytes = record.size_bytes,
            file_name = start.file_name,
            "media uploaded"
        );
        Ok(record)
    }

    fn new_record(&self, kind: Kind, content_type: &str) -> Result<MediaRecord, MediaError> {
        let id = self
            .ids
            .next_id()
            .map_err(|error| MediaError::storage(error.to_string()))?;
        let created_at_ms = now_ms();
        Ok(MediaRecord {
            id,
            owner_id: 0,
            kind,
            content_type: content_type.to_owned(),
            size_bytes: 0,
            preview: None,
            width: 0,
            height: 0,
            blurhash: String::new(),
            alt_text: String::new(),
            created_at_ms,
            state: State::Uploaded,
            due_ms: created_at_ms.saturating_add(self.unattached_ttl_ms),
            attached_by_claim: String::new(),
        })
    }

    async fn receive_image(
        &self,
        stream: &mut Streaming<pb::UploadRequest>,
        format: Format,
        mut bytes: Vec<u8>,
        ended: bool,
    ) -> Result<MediaRecord, MediaError> {
        let limit = self.limits.max_image_bytes;
        let too_large = || Refusal::TooLarge {
            kind: "image",
            limit,
        };
        // An image is decoded whole anyway; it is at most `limit` bytes.
        if !ended {
            while let Some(chunk) = next_chunk(stream).await? {
                if (bytes.len() + chunk.len()) as u64 > limit {
                    return Err(too_large().into());
                }
                bytes.extend_from_slice(&chunk);
            }
        }
        if bytes.len() as u64 > limit {
            return Err(too_large().into());
        }
        let max_pixels = self.limits.max_image_pixels;
        let processed =
            tokio::task::spawn_blocking(move || process::process_image(&bytes, format, max_pixels))
                .await
                .map_err(MediaError::Processing)??;
        let record = MediaRecord {
            size_bytes: processed.original.len() as u64,
            preview: Some(Preview {
                content_type: processed.preview_content_type.into(),
                size_bytes: processed.preview.len() as u64,
            }),
            width: processed.width,
            height: processed.height,
            blurhash: processed.blurhash,
            ..self.new_record(Kind::Image, processed.content_type)?
        };
        let stored = async {
            self.blobs
                .put(
                    record.id,
                    Variant::Original,
                    processed.content_type,
                    processed.original,
                )
                .await?;
            self.blobs
                .put(
                    record.id,
                    Variant::Preview,
                    processed.preview_content_type,
                    processed.preview,
                )
                .await
        };
        if let Err(error) = stored.await {
            self.delete_files(&record).await;
            return Err(error.into());
        }
        Ok(record)
    }

    async fn receive_video(
        &self,
        stream: &mut Streaming<pb::UploadRequest>,
        format: Format,
        head: Vec<u8>,
        ended: bool,
    ) -> Result<MediaRecord, MediaError> {
        let record = self.new_record(Kind::Video, format.content_type())?;
        let mut upload = self
            .blobs
            .start_upload(record.id, Variant::Original, format.content_type())
            .await?;
        match self.stream_video(stream, &mut upload, head, ended).await {
            Ok(size_bytes) => {
                upload.finish().await?;
                Ok(MediaRecord {
                    size_bytes,
                    ..record
                })
            }
            Err(error) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(
                        media_id = record.id,
                        error = %ErrorChain(&abort),
                        "could not abort a refused video's upload"
                    );
                }
                Err(error)
            }
        }
    }

    /// Copies the video's bytes into `upload` as they arrive; its size.
    async fn stream_video(
        &self,
        stream: &mut Streaming<pb::UploadRequest>,
        upload: &mut PartUpload,
        head: Vec<u8>,
        ended: bool,
    ) -> Result<u64, MediaError> {
        let limit = self.limits.max_video_bytes;
        let mut size = head.len() as u64;
        if size > limit {
            return Err(Refusal::TooLarge {
                kind: "video",
                limit,
            }
            .into());
        }
        upload.write(&head).await?;
        if !ended {
            while let Some(chunk) = next_chunk(stream).await? {
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Refusal::TooLarge {
                        kind: "video",
                        limit,
                    }
                    .into());
                }
                upload.write(&chunk).await?;
            }
        }
        Ok(size)
    }

    /// Deletes whatever files a failed upload may have stored.
    async fn delete_files(&self, record: &MediaRecord) {
        for variant in [Variant::Original, Variant::Preview] {
            if let Err(error) = self.blobs.delete(record.id, variant).await {
                tracing::warn!(
                    media_id = record.id,
                    error = %ErrorChain(&error),
                    "could not delete a failed upload's file; the sweeper will not know it"
                );
            }
        }
    }

    fn validate_ids(ids: &[u64]) -> Result<(), MediaError> {
        if ids.is_empty() {
            return Err(MediaError::invalid("media_ids", "must not be empty"));
        }
        if ids.len() > MAX_IMAGES_PER_TWEET {
            return Err(MediaError::invalid(
                "media_ids",
                format!("a tweet attaches at most {MAX_IMAGES_PER_TWEET} media"),
            ));
        }
        let mut seen = HashSet::new();
        for id in ids {
            if *id == 0 || !seen.insert(*id) {
                return Err(MediaError::invalid(
                    "media_ids",
                    format!("media {id} is not a valid id, or is repeated"),
                ));
            }
        }
        Ok(())
    }

    fn validate_claim_key(key: &str) -> Result<(), MediaError> {
        if key.is_empty() || key.len() > MAX_CLAIM_KEY_BYTES {
            return Err(MediaError::invalid(
                "claim_key",
                format!("must be 1 to {MAX_CLAIM_KEY_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// The next message's part; a broken stream is the client's doing.
async fn next_part(stream: &mut Streaming<pb::UploadRequest>) -> Result<Option<Part>, MediaError> {
    match stream.message().await {
        Ok(Some(message)) => Ok(message.part),
        Ok(None) => Ok(None),
        Err(status) => Err(Refusal::Malformed(format!(
            "the upload stream broke off: {}",
            status.message()
        ))
        .into()),
    }
}

/// The next chunk of the file, or `None` at its end.
async fn next_chunk(
    stream: &mut Streaming<pb::UploadRequest>,
) -> Result<Option<Vec<u8>>, MediaError> {
    match next_part(stream).await? {
        None => Ok(None),
        Some(Part::Chunk(chunk)) if chunk.len() <= MAX_CHUNK_BYTES => Ok(Some(chunk)),
        Some(Part::Chunk(_)) => Err(Refusal::Malformed(format!(
            "upload chunks may be at most {MAX_CHUNK_BYTES} bytes"
        ))
        .into()),
        Some(Part::Start(_)) => {
            Err(Refusal::Malformed("`start` may only be the first message".into()).into())
        }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadMediaResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MediaService for MediaApi {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let started = Instant::now();
        let mut stream = request.into_inner();
        match self.receive(&mut stream).await {
            Ok(record) => {
                let stats = &self.stats;
                stats.uploads.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_stored
                    .fetch_add(record.stored_bytes(), Ordering::Relaxed);
                stats
                    .upload_millis_sum
                    .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                Ok(Response::new(pb::UploadResponse {
                    media: Some(self.to_proto(&record).await?),
                }))
            }
            Err(error) => {
                match &error {
                    MediaError::Refused(refusal) => self.stats.refused(refusal),
                    MediaError::Invalid { .. } => {
                        self.stats.refused(&Refusal::Malformed(String::new()))
                    }
                    other => tracing::warn!(error = %ErrorChain(other), "upload failed"),
                }
                Err(error.into())
            }
        }
    }

    async fn get_media(
        &self,
        request: Request<pb::GetMediaRequest>,
    ) -> Result<Response<pb::GetMediaResponse>, Status> {
        let ids = request.into_inner().media_ids;
        if ids.len() > MAX_BATCH {
            return Err(MediaError::invalid(
                "media_ids",
                format!("at most {MAX_BATCH} ids per call"),
            )
            .into());
        }
        let records = self.store.get_many(&ids).await?;
        let mut results = Vec::with_capacity(records.len());
        for record in records {
            results.push(match record {
                Some(record) if record.state != State::Removing => pb::MediaResult {
                    found: true,
                    media: Some(self.to_proto(&record).await?),
                },
                _ => pb::MediaResult::default(),
            });
        }
        Ok(Response::new(pb::GetMediaResponse { results }))
    }

    async fn claim_media(
        &self,
        request: Request<pb::ClaimMediaRequest>,
    ) -> Result<Response<pb::ClaimMediaResponse>, Status> {
        let request = request.into_inner();
        if request.owner_id == 0 {
            return Err(MediaError::invalid("owner_id", "must be set").into());
        }
        Self::validate_ids(&request.media_ids)?;
        Self::validate_claim_key(&request.claim_key)?;
        // What they are decides how many may go together.
        let records = self.store.get_many(&request.media_ids).await?;
        let mut videos = 0;
        for (id, record) in request.media_ids.iter().zip(&records) {
            match record {
                None => return Err(media_field_error(*id, Conflict::Missing).into()),
                Some(record) if record.kind == Kind::Video => videos += 1,
                Some(_) => {}
            }
        }
        if videos > MAX_VIDEOS_PER_TWEET || (videos > 0 && request.media_ids.len() > videos) {
            return Err(MediaError::invalid(
                "media_ids",
                format!(
                    "a tweet attaches up to {MAX_IMAGES_PER_TWEET} images or {MAX_VIDEOS_PER_TWEET} video, not both"
                ),
            )
            .into());
        }
        let now = now_ms();
        self.store
            .claim(
                request.owner_id,
                &request.media_ids,
                &request.claim_key,
                now,
                now.saturating_add(self.claim_ttl_ms),
            )
            .await?
            .map_err(|(id, conflict)| media_field_error(id, conflict))?;
        Ok(Response::new(pb::ClaimMediaResponse {}))
    }

    async fn release_claim(
        &self,
        request: Request<pb::ReleaseClaimRequest>,
    ) -> Result<Response<pb::ReleaseClaimResponse>, Status> {
        let request = request.into_inner();
        if request.media_ids.len() > MAX_IMAGES_PER_TWEET {
            return Err(MediaError::invalid(
                "media_ids",
                format!("at most {MAX_IMAGES_PER_TWEET} ids"),
            )
            .into());
        }
        Self::validate_claim_key(&request.claim_key)?;
        self.store
            .release(request.owner_id, &request.media_ids, &request.claim_key)
            .await?;
        Ok(Response::new(pb::ReleaseClaimResponse {}))
    }

    async fn use_as_avatar(
        &self,
        request: Request<pb::UseAsAvatarRequest>,
    ) -> Result<Response<pb::UseAsAvatarResponse>, Status> {
        let request = request.into_inner();
        if request.owner_id == 0 {
            return Err(MediaError::invalid("owner_id", "must be set").into());
        }
        let record = self
            .store
            .use_as_avatar(request.owner_id, request.media_id)
            .await?
            .map_err(|conflict| {
                MediaError::invalid(
                    "media_id",
                    format!("media {} {}", request.media_id, conflict.describe()),
                )
            })?;
        Ok(Response::new(pb::UseAsAvatarResponse {
            media: Some(self.to_proto(&record).await?),
        }))
    }

    type ReadMediaStream = ReadStream;

    async fn read_media(
        &self,
        request: Request<pb::ReadMediaRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let request = request.into_inner();
        let variant = match pb::MediaVariant::try_from(request.variant) {
            Ok(pb::MediaVariant::Original | pb::MediaVariant::Unspecified) => Variant::Original,
            Ok(pb::MediaVariant::Preview) => Variant::Preview,
            Err(_) => return Err(MediaError::invalid("variant", "unknown variant").into()),
        };
        let record = self
            .store
            .get_many(&[request.media_id])
            .await?
            .pop()
            .flatten()
            .filter(|record| record.state != State::Removing)
            .ok_or_else(|| MediaError::NotFound(format!("media {} not found", request.media_id)))?;
        let (content_type, total) = match (variant, &record.preview) {
            (Variant::Original, _) => (record.content_type.clone(), record.size_bytes),
            (Variant::Preview, Some(preview)) => (preview.content_type.clone(), preview.size_bytes),
            (Variant::Preview, None) => {
                return Err(MediaError::NotFound(format!(
                    "media {} has no preview",
                    request.media_id
                ))
                .into());
            }
        };
        let offset = request.offset;
        if offset >= total {
            return Err(MediaError::OutOfRange { offset, total }.into());
        }
        let end = match request.length {
            0 => total,
            length => offset.saturating_add(length).min(total),
        };
        let body = self
            .blobs
            .read(record.id, variant, offset..end)
            .await
            .map_err(MediaError::from)?;
        let header = pb::ReadMediaResponse {
            content_type,
            total_bytes: total,
            offset,
            length: end - offset,
            chunk: Vec::new(),
        };
        let chunks = body.flat_map(|piece| {
            let messages: Vec<Result<pb::ReadMediaResponse, Status>> = match piece {
                Ok(bytes) => bytes
                    .chunks(MAX_CHUNK_BYTES)
                    .map(|chunk| {
                        Ok(pb::ReadMediaResponse {
                            chunk: chunk.to_vec(),
                            ..pb::ReadMediaResponse::default()
                        })
                    })
                    .collect(),
                Err(error) => vec![Err(Status::from(MediaError::from(error)))],
            };
            stream::iter(messages)
        });
        let messages = stream::once(async move { Ok(header) }).chain(chunks);
        Ok(Response::new(Box::pin(messages)))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let stats = &self.stats;
        Ok(Response::new(pb::GetStatusResponse {
            bytes_stored: stats.bytes_stored.load(Ordering::Relaxed),
            bytes_deleted: stats.bytes_deleted.load(Ordering::Relaxed),
            uploads: stats.uploads.load(Ordering::Relaxed),
            refusals: stats.refusals().into_iter().collect(),
            deleted: stats.deleted.load(Ordering::Relaxed),
            upload_millis_sum: stats.upload_millis_sum.load(Ordering::Relaxed),
            groups_vanished: stats.consumer.groups_vanished.load(Ordering::Relaxed),
        }))
    }
}
