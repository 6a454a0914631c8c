//! `GET /media/{id}/{variant}` (and `HEAD`): a media file's bytes, streamed
//! from media-svc's ReadMedia as they arrive, never held whole. This is
//! where media URLs point in `warble dev`; production serves them from the
//! bucket or a CDN.
//!
//! A single `Range` is honoured (206 with `Content-Range`, 416 with
//! `Content-Range: bytes */<length>` when it selects nothing), so video
//! players can seek; see [`crate::byte_range`]. Media never change, so a
//! file is cacheable forever (`Cache-Control: public, max-age=31536000,
//! immutable`, which replaces the router's default `no-store`).

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use tonic::{Code, Status, Streaming};
use warble_proto::media::v1 as media;
use warble_proto::media::v1::media_service_client::MediaServiceClient;

use crate::byte_range::{self, ByteRange, RangeRequest};
use crate::downstream::DownstreamChannel;

/// What a served file's responses may be cached as: forever, anywhere, and
/// without revalidation (a media id never names other bytes).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Answers a request for `variant` (`original` or `preview`) of media `id`,
/// with the request's `Range` header if any; `head` answers the headers
/// alone, reading a single byte of the file.
pub async fn serve(
    client: MediaServiceClient<DownstreamChannel>,
    head: bool,
    id: &str,
    variant: &str,
    range: Option<&HeaderValue>,
) -> Response {
    let (Some(media_id), Some(variant)) = (parse_id(id), parse_variant(variant)) else {
        return not_found();
    };
    let file = MediaFile {
        client,
        media_id,
        variant,
    };
    let served = match byte_range::parse(range.map(HeaderValue::as_bytes)) {
        RangeRequest::Whole => file.whole(head).await,
        RangeRequest::One(range) => file.range(range, head).await,
    };
    served.unwrap_or_else(|status| failed(&status))
}

/// A media id in a path: a decimal `u64` other than 0.
fn parse_id(id: &str) -> Option<u64> {
    // `u64::from_str` takes a leading `+`; a URL names an id one way only.
    if !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    id.parse::<u64>().ok().filter(|&id| id != 0)
}

fn parse_variant(variant: &str) -> Option<media::MediaVariant> {
    match variant {
        "original" => Some(media::MediaVariant::Original),
        "preview" => Some(media::MediaVariant::Preview),
        _ => None,
    }
}

/// One variant of one media item on media-svc.
struct MediaFile {
    client: MediaServiceClient<DownstreamChannel>,
    media_id: u64,
    variant: media::MediaVariant,
}

/// A ReadMedia stream that has sent its first message (the file's type and
/// length, and the range being sent).
struct Opened {
    first: media::ReadMediaResponse,
    rest: Streaming<media::ReadMediaResponse>,
}

impl MediaFile {
    /// Starts reading `length` bytes (0: to the end) at `offset`.
    async fn open(&self, offset: u64, length: u64) -> Result<Opened, Status> {
        let mut rest = self
            .client
            .clone()
            .read_media(media::ReadMediaRequest {
                media_id: self.media_id,
                variant: self.variant.into(),
                offset,
                length,
            })
            .await?
            .into_inner();
        let first = rest
            .message()
            .await?
            .ok_or_else(|| Status::internal("ReadMedia ended before its first message"))?;
        let sent_end = first.offset.checked_add(first.length);
        if sent_end.is_none_or(|end| end > first.total_bytes) {
            return Err(Status::internal(format!(
                "ReadMedia sent bytes {}+{} of a {}-byte file",
                first.offset, first.length, first.total_bytes
            )));
        }
        Ok(Opened { first, rest })
    }

    /// The file's type and length, from a one-byte read (the stream is
    /// dropped, which cancels it).
    async fn probe(&self) -> Result<media::ReadMediaResponse, Status> {
        Ok(self.open(0, 1).await?.first)
    }

    async fn whole(&self, head: bool) -> Result<Response, Status> {
        let opened = self.open(0, if head { 1 } else { 0 }).await?;
        let (content_type, total) = (opened.first.content_type.clone(), opened.first.total_bytes);
        Ok(file_response(
            StatusCode::OK,
            &content_type,
            total,
            None,
            (!head).then_some(opened),
        ))
    }

    async fn range(&self, range: ByteRange, head: bool) -> Result<Response, Status> {
        // A range from a known position is read at once, and media-svc says
        // what it sent; a suffix (and a HEAD) needs the length first.
        let at_once = match range {
            ByteRange::Bounded { first, last } => Some((
                first,
                // 0 reads to the end: a last byte at u64::MAX can only mean that.
                (last - first).checked_add(1).unwrap_or(0),
            )),
            ByteRange::From { first } => Some((first, 0)),
            ByteRange::Suffix { .. } => None,
        };
        if let Some((offset, length)) = at_once.filter(|_| !head) {
            match self.open(offset, length).await {
                Ok(opened) if opened.first.length > 0 => return Ok(partial(opened)),
                Ok(opened) => return Ok(unsatisfiable(opened.first.total_bytes)),
                // Starts past the end: the 416 names the length.
                Err(status) if status.code() == Code::OutOfRange => {}
                Err(status) => return Err(status),
            }
        }
        let probe = self.probe().await?;
        let total = probe.total_bytes;
        let Some((offset, length)) = range.resolve(total) else {
            return Ok(unsatisfiable(total));
        };
        if head {
            return Ok(file_response(
                StatusCode::PARTIAL_CONTENT,
                &probe.content_type,
                length,
                Some(byte_range::content_range(offset, length, total)),
                None,
            ));
        }
        let opened = self.open(offset, length).await?;
        if opened.first.length == 0 {
            return Ok(unsatisfiable(opened.first.total_bytes));
        }
        Ok(partial(opened))
    }
}

/// 206 with the range media-svc is sending.
fn partial(opened: Opened) -> Response {
    let first = &opened.first;
    let (content_type, offset, length, total) = (
        first.content_type.clone(),
        first.offset,
        first.length,
        first.total_bytes,
    );
    file_response(
        StatusCode::PARTIAL_CONTENT,
        &content_type,
        length,
        Some(byte_range::content_range(offset, length, total)),
        Some(opened),
    )
}

/// A file response of `length` bytes: the body streams `body`'s chunks,
/// or is empty (HEAD).
fn file_response(
    status: StatusCode,
    content_type: &str,
    length: u64,
    content_range: Option<String>,
    body: Option<Opened>,
) -> Response {
    let body = match body {
        Some(Opened { first, rest }) => Body::from_stream(
            futures::stream::once(async move { Ok(Bytes::from(first.chunk)) })
                .chain(rest.map(|message| message.map(|message| Bytes::from(message.chunk)))),
        ),
        None => Body::empty(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Some(range) = content_range.and_then(|range| HeaderValue::from_str(&range).ok()) {
        headers.insert(header::CONTENT_RANGE, range);
    }
    response
}

/// 416: the range selects nothing of a file of `total` bytes.
fn unsatisfiable(total: u64) -> Response {
    let mut response = (
        StatusCode::RANGE_NOT_SATISFIABLE,
        "the range selects no byte of the file",
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(range) = HeaderValue::from_str(&byte_range::unsatisfied_range(total)) {
        headers.insert(header::CONTENT_RANGE, range);
    }
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such media").into_response()
}

/// A failed ReadMedia as an HTTP status: 404 for media that do not exist
/// (or a variant they do not have), 503 while media-svc is unavailable,
/// 502 with a logged reference for anything else.
fn failed(status: &Status) -> Response {
    match status.code() {
        Code::NotFound | Code::InvalidArgument => not_found(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            tracing::warn!(code = ?status.code(), message = status.message(), "media unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "media are unavailable; retry later",
            )
                .into_response()
        }
        _ => {
            let reference = warble_mesh::status::internal(status);
            (StatusCode::BAD_GATEWAY, reference.message().to_owned()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_one_media_and_variant_one_way() {
        assert_eq!(parse_id("123"), Some(123));
        assert_eq!(parse_id("18446744073709551615"), Some(u64::MAX));
        for id in [
            "",
            "0",
            "+1",
            "-1",
            "1.0",
            "18446744073709551616",
            "abc",
            " 1",
        ] {
            assert_eq!(parse_id(id), None, "{id:?}");
        }
        assert_eq!(
            parse_variant("original"),
            Some(media::MediaVariant::Original)
        );
        assert_eq!(parse_variant("preview"), Some(media::MediaVariant::Preview));
        for variant in ["", "Original", "thumbnail", "preview.jpg"] {
            assert_eq!(parse_variant(variant), None, "{variant:?}");
        }
    }

    #[test]
    fn media_svc_failures_become_http_statuses() {
        let status_of = |code| failed(&Status::new(code, "detail")).status();
        assert_eq!(status_of(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(Code::Internal), StatusCode::BAD_GATEWAY);
    }
}
