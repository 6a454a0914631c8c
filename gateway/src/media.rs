//! Media: the `Media` type, `uploadMedia`, and the media-svc calls that
//! posting a tweet with media and setting an avatar make.
//!
//! An upload arrives as a multipart request (the GraphQL multipart request
//! spec); async-graphql spools its file to an anonymous temporary file
//! before the mutation runs (see [`crate::http`] for the limits). The
//! mutation streams that file to media-svc in chunks, so no file is ever
//! held in memory whole.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Result, Upload, UploadValue};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_stream::wrappers::ReceiverStream;
use warble_proto::limits::media::{
    MAX_ALT_TEXT_CHARS, MAX_CHUNK_BYTES, MAX_CLAIM_KEY_BYTES, MAX_IMAGES_PER_TWEET,
};
use warble_proto::media::v1 as media;
use warble_proto::media::v1::media_service_client::MediaServiceClient;
use warble_proto::media::v1::upload_request::Part;

use crate::downstream::{Downstream, DownstreamChannel};
use crate::error::{ErrorCode, bad_input, from_status, gql_error, internal};
use crate::resolvers::{mutating_viewer, state};
use crate::time::iso8601;

/// What a media item is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "MediaKind")]
pub enum MediaKind {
    /// A still or animated image (JPEG, PNG, GIF or WebP), stored re-encoded
    /// without its metadata (EXIF, location), with a preview.
    Image,
    /// An MP4 video, stored as uploaded, without a preview.
    Video,
}

/// A media item, as media-svc describes it.
#[derive(Clone)]
pub struct MediaNode(pub Arc<media::Media>);

impl MediaNode {
    /// A node over what media-svc returned.
    pub fn new(media: media::Media) -> Self {
        Self(Arc::new(media))
    }
}

/// An image or a video a user uploaded (`uploadMedia`): attached to their
/// tweets (`Tweet.media`) or shown as their avatar (`User.avatarUrl`).
/// Media never change once uploaded, so their URLs can be cached forever.
#[Object(name = "Media")]
impl MediaNode {
    /// The media's id: a 64-bit Snowflake id as a decimal string. Pass it
    /// in `postTweet(mediaIds:)` or `updateProfile(avatarMediaId:)`.
    async fn id(&self) -> ID {
        ID(self.0.media_id.to_string())
    }

    /// Whether it is an image or a video.
    async fn kind(&self) -> MediaKind {
        match media::MediaKind::try_from(self.0.kind) {
            Ok(media::MediaKind::Video) => MediaKind::Video,
            Ok(media::MediaKind::Image) => MediaKind::Image,
            // Not something media-svc sends; the type tells.
            _ if self.0.content_type.starts_with("video/") => MediaKind::Video,
            _ => MediaKind::Image,
        }
    }

    /// Where to fetch the stored file (the original, re-encoded for an
    /// image): an absolute URL that never changes; it supports HTTP range
    /// requests, for video players.
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// Where to fetch the image's preview, whose longest side is
    /// at most 400 pixels: show it in timelines, and `url` when the image
    /// is opened. Null for a video.
    async fn preview_url(&self) -> Option<&str> {
        Some(self.0.preview_url.as_str()).filter(|url| !url.is_empty())
    }

    /// The image's width in pixels; null for a video (not probed).
    async fn width(&self) -> Option<u32> {
        Some(self.0.width).filter(|&width| width != 0)
    }

    /// The image's height in pixels; null for a video (not probed).
    async fn height(&self) -> Option<u32> {
        Some(self.0.height).filter(|&height| height != 0)
    }

    /// A blurhash (https://blurha.sh) of the image, to paint a placeholder
    /// while it loads; null for a video.
    async fn blurhash(&self) -> Option<&str> {
        Some(self.0.blurhash.as_str()).filter(|hash| !hash.is_empty())
    }

    /// The description the uploader wrote for readers who cannot see it,
    /// at most 1500 characters; empty when they wrote none.
    async fn alt_text(&self) -> &str {
        &self.0.alt_text
    }

    /// The stored file's MIME type: `image/jpeg`, `image/png`, `image/gif`,
    /// `image/webp` or `video/mp4`, detected from its bytes.
    async fn content_type(&self) -> &str {
        &self.0.content_type
    }

    /// The stored file's size in bytes (for an image, after re-encoding).
    async fn size_bytes(&self) -> u64 {
        self.0.size_bytes
    }

    /// Upload time, ISO 8601 UTC with milliseconds
    /// (`2024-01-01T12:34:56.789Z`).
    async fn created_at(&self) -> String {
        iso8601(self.0.created_at_ms)
    }
}

/// Uploads. Part of the `Mutation` type.
#[derive(Default)]
pub struct MediaMutations;

#[Object]
impl MediaMutations {
    /// Uploads an image or a video as the viewer, to attach to a tweet
    /// (`postTweet(mediaIds:)`) or use as their avatar
    /// (`updateProfile(avatarMediaId:)`); returns it once it is stored.
    /// Send the request as `multipart/form-data` (the GraphQL multipart
    /// request spec: `operations`, `map`, then one file), within the
    /// gateway's upload limit (larger is refused with HTTP 413). The type
    /// is detected from the bytes, never from the file name: JPEG, PNG,
    /// GIF and WebP images (re-encoded, which drops their metadata) and
    /// MP4 videos (stored as uploaded). BAD_USER_INPUT naming the reason
    /// when the file is refused: an unsupported type, too large for its
    /// type, too many pixels, or undecodable. Media attached to nothing
    /// (no tweet, not the avatar) are deleted after a while (a day by
    /// default).
    async fn upload_media(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The file: the multipart request's one file part, mapped to this variable."
        )]
        file: Upload,
        #[graphql(
            desc = "A description for readers who cannot see the media, at most 1500 characters. Omit (or empty) for none."
        )]
        alt_text: Option<String>,
    ) -> Result<MediaNode> {
        let alt_text = alt_text.unwrap_or_default();
        let alt_chars = alt_text.chars().count();
        if alt_chars > MAX_ALT_TEXT_CHARS {
            return Err(bad_input(
                "altText",
                format!("alt text is at most {MAX_ALT_TEXT_CHARS} characters, got {alt_chars}"),
            ));
        }
        let viewer = mutating_viewer(ctx).await?;
        let upload = file.value(ctx).map_err(|error| internal(&error))?;
        let start = media::UploadStart {
            owner_id: viewer.user_id,
            alt_text,
            file_name: upload.filename.clone(),
        };
        let client = state(ctx)?.downstream.media_uploads.clone();
        upload_file(client, start, upload).await.map(MediaNode::new)
    }
}

/// Why an upload failed.
enum UploadFailure {
    /// media-svc refused or failed the call.
    Call(tonic::Status),
    /// The spooled file could not be read.
    Read(std::io::Error),
}

/// Streams `upload`'s spooled file to media-svc: `start`, then the bytes
/// in chunks of at most [`MAX_CHUNK_BYTES`], a couple of chunks in flight
/// at a time. A read error drops the call mid-stream, which cancels it, so
/// media-svc never takes a truncated file for a whole one.
async fn upload_file(
    mut client: MediaServiceClient<DownstreamChannel>,
    start: media::UploadStart,
    upload: UploadValue,
) -> Result<media::Media> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<media::UploadRequest>(2);
    let mut file = tokio::fs::File::from_std(upload.content);
    let send = async move {
        // The spooled file's descriptor is shared with the request's copy:
        // start from the beginning whatever read it last.
        file.rewind().await.map_err(UploadFailure::Read)?;
        let mut part = Part::Start(start);
        loop {
            let message = media::UploadRequest { part: Some(part) };
            if sender.send(message).await.is_err() {
                // The call ended early: its result says why.
                return Ok(());
            }
            let mut chunk = Vec::with_capacity(MAX_CHUNK_BYTES);
            (&mut file)
                .take(MAX_CHUNK_BYTES as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(UploadFailure::Read)?;
            if chunk.is_empty() {
                // Dropping the sender ends the stream: the file is complete.
                return Ok(());
            }
            part = Part::Chunk(chunk);
        }
    };
    let call = async {
        client
            .upload(ReceiverStream::new(receiver))
            .await
            .map_err(UploadFailure::Call)
    };
    match tokio::try_join!(call, send) {
        Ok((response, ())) => response.into_inner().media.ok_or_else(|| {
            gql_error(
                ErrorCode::Internal,
                "media-svc returned no media for an upload",
            )
        }),
        Err(UploadFailure::Call(status)) => Err(from_status(status)),
        Err(UploadFailure::Read(error)) => Err(internal(&error)),
    }
}

/// Parses `postTweet`'s `mediaIds`: at most [`MAX_IMAGES_PER_TWEET`], each
/// a valid id, none twice. Checked before anything is called.
pub fn parse_media_ids(ids: &[ID]) -> Result<Vec<u64>> {
    if ids.len() > MAX_IMAGES_PER_TWEET {
        return Err(bad_input(
            "mediaIds",
            format!(
                "a tweet attaches at most {MAX_IMAGES_PER_TWEET} media, got {}",
                ids.len()
            ),
        ));
    }
    let mut parsed = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let media_id = id
            .parse::<u64>()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| {
                bad_input(
                    "mediaIds",
                    format!("mediaIds[{index}]: `{}` is not a valid id", id.as_str()),
                )
            })?;
        if parsed.contains(&media_id) {
            return Err(bad_input(
                "mediaIds",
                format!("mediaIds[{index}]: media {media_id} is given twice"),
            ));
        }
        parsed.push(media_id);
    }
    Ok(parsed)
}

/// The claim key of a post attempt: its idempotency key, so that a retry
/// claims the same media again, or a fresh random one.
pub fn claim_key(idempotency_key: &str) -> Result<String> {
    if idempotency_key.is_empty() {
        return Ok(format!("post-{:032x}", rand::random::<u128>()));
    }
    if idempotency_key.len() > MAX_CLAIM_KEY_BYTES {
        return Err(bad_input(
            "idempotencyKey",
            format!(
                "the idempotency key is at most {MAX_CLAIM_KEY_BYTES} bytes, got {}",
                idempotency_key.len()
            ),
        ));
    }
    Ok(idempotency_key.to_owned())
}

/// Reserves `media_ids` for the viewer's tweet about to be posted.
/// BAD_USER_INPUT (naming `mediaIds`) with media-svc's reason when one is
/// not the viewer's, is attached already, or the mix is not allowed.
pub async fn claim(
    downstream: &Downstream,
    owner_id: u64,
    media_ids: &[u64],
    claim_key: &str,
) -> Result<()> {
    downstream
        .media
        .clone()
        .claim_media(media::ClaimMediaRequest {
            owner_id,
            media_ids: media_ids.to_vec(),
            claim_key: claim_key.to_owned(),
        })
        .await
        .map(drop)
        .map_err(|status| refusal("mediaIds", status))
}

/// Gives up a claim whose tweet could not be created, unless the outcome
/// of creating it is unknown (the call timed out or was cancelled: the
/// tweet may exist, and its TweetCreated event attaches the media); a
/// claim never released lapses on its own. Best effort: a failure is
/// logged, never returned.
pub async fn release_after(
    downstream: &Downstream,
    create_failure: &tonic::Status,
    owner_id: u64,
    media_ids: &[u64],
    claim_key: &str,
) {
    use tonic::Code;
    if matches!(
        create_failure.code(),
        Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    ) {
        return;
    }
    let released = downstream
        .media
        .clone()
        .release_claim(media::ReleaseClaimRequest {
            owner_id,
            media_ids: media_ids.to_vec(),
            claim_key: claim_key.to_owned(),
        })
        .await;
    if let Err(status) = released {
        tracing::warn!(
            code = ?status.code(),
            message = status.message(),
            owner_id,
            "could not release a media claim (it lapses on its own)"
        );
    }
}

/// Marks `media_id` as the viewer's avatar on media-svc. BAD_USER_INPUT
/// (naming `avatarMediaId`) when it is not the viewer's image; NOT_FOUND
/// when it does not exist.
pub async fn use_as_avatar(downstream: &Downstream, owner_id: u64, media_id: u64) -> Result<()> {
    downstream
        .media
        .clone()
        .use_as_avatar(media::UseAsAvatarRequest { owner_id, media_id })
        .await
        .map(drop)
        .map_err(|status| refusal("avatarMediaId", status))
}

/// A media-svc status as a GraphQL error: a refusal (INVALID_ARGUMENT)
/// names `argument` with media-svc's reason (without the request field
/// it names, `media_ids: ...`, which the client never sent); anything else
/// maps as usual.
fn refusal(argument: &str, status: tonic::Status) -> async_graphql::Error {
    if status.code() != tonic::Code::InvalidArgument {
        return from_status(status);
    }
    let message = status.message();
    let reason = message
        .split_once(": ")
        .filter(|(field, _)| field.starts_with("media_id"))
        .map_or(message, |(_, reason)| reason);
    bad_input(argument, reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Vec<ID> {
        ids.iter().map(|id| ID((*id).to_owned())).collect()
    }

    fn refused(ids: &[ID]) -> (String, String) {
        let error = parse_media_ids(ids).expect_err("refused");
        let extensions = error.extensions.expect("extensions");
        (
            extensions
                .get("code")
                .map(ToString::to_string)
                .unwrap_or_default(),
            error.message,
        )
    }

    #[test]
    fn valid_media_ids_parse_in_order() {
        assert_eq!(parse_media_ids(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(
            parse_media_ids(&ids(&["3", "1", "18446744073709551615", "2"])).unwrap(),
            vec![3, 1, u64::MAX, 2]
        );
    }

    #[test]
    fn too_many_media_ids_are_refused() {
        let five = ids(&["1", "2", "3", "4", "5"]);
        assert_eq!(five.len(), MAX_IMAGES_PER_TWEET + 1);
        let (code, message) = refused(&five);
        assert_eq!(code, "\"BAD_USER_INPUT\"");
        assert!(message.contains("at most 4"), "{message}");
        // Counted before any id is looked at.
        let (_, message) = refused(&ids(&["x"; 5]));
        assert!(message.contains("at most 4"), "{message}");
    }

    #[test]
    fn malformed_and_repeated_media_ids_are_refused_naming_the_index() {
        for (given, index) in [
            (ids(&["0"]), 0),
            (ids(&["1", "-2"]), 1),
            (ids(&["1", "2", " 3"]), 2),
            (ids(&["abc"]), 0),
            (ids(&["18446744073709551616"]), 0),
            (ids(&["1", ""]), 1),
            (ids(&["1.5"]), 0),
        ] {
            let (code, message) = refused(&given);
            assert_eq!(code, "\"BAD_USER_INPUT\"", "{given:?}");
            assert!(
                message.starts_with(&format!("mediaIds[{index}]:")),
                "{given:?}: {message}"
            );
        }
        let (code, message) = refused(&ids(&["7", "8", "7"]));
        assert_eq!(code, "\"BAD_USER_INPUT\"");
        assert!(
            message.contains("mediaIds[2]") && message.contains("twice"),
            "{message}"
        );
    }

    #[test]
    fn a_claim_key_is_the_idempotency_key_or_fresh() {
        assert_eq!(claim_key("post-1").unwrap(), "post-1");
        let (first, second) = (claim_key("").unwrap(), claim_key("").unwrap());
        assert_ne!(first, second);
        assert!(first.len() <= MAX_CLAIM_KEY_BYTES);
        assert!(claim_key(&"k".repeat(MAX_CLAIM_KEY_BYTES)).is_ok());
        assert!(claim_key(&"k".repeat(MAX_CLAIM_KEY_BYTES + 1)).is_err());
    }
}
