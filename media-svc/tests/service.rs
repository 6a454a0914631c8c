//! media-svc over real gRPC on a free port, with its files in a directory
//! and in an S3 bucket (a real S3 API server on loopback, `testkit::s3`):
//! every case runs on both. Uploads stream in chunks as the gateway sends
//! them; events arrive through the embedded event log and its consumer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tonic::Code;
use tonic::transport::Channel;
use warble_media_svc::config::{BlobBackend, MediaSvcConfig};
use warble_media_svc::lifecycle::Sweeper;
use warble_media_svc::{MediaSvc, open_blobs, open_store};
use warble_mesh::event_log::{DOMAIN_EVENTS_STREAM, EmbeddedEventLog, EventLog};
use warble_mesh::scaffold::Serve as _;
use warble_proto::events::v1::{Event, TweetCreated, TweetDeleted, event::Payload};
use warble_proto::media::v1 as pb;
use warble_proto::media::v1::media_service_client::MediaServiceClient;
use warble_testkit::media::{contains, jpeg_with_gps, mp4, picture, png, png_claiming};
use warble_testkit::s3::S3Server;
use warble_testkit::served::{Served, serve_on_a_free_port};

const ALICE: u64 = 11;
const BOB: u64 = 12;
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Filesystem,
    S3,
}

struct Harness {
    client: MediaServiceClient<Channel>,
    log: Arc<dyn EventLog>,
    sweeper: Sweeper,
    /// Where files land: the blob directory, or the S3 server and bucket.
    files: Files,
    _served: Served<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

enum Files {
    Directory(PathBuf),
    Bucket(Box<S3Server>, String),
}

impl Harness {
    async fn start(backend: Backend, tune: impl FnOnce(&mut MediaSvcConfig)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = MediaSvcConfig {
            data_dir: data_dir.path().to_owned(),
            ..MediaSvcConfig::default()
        };
        config.urls.base_url = "https://cdn.example.com/m".into();
        let files = match backend {
            Backend::Filesystem => Files::Directory(data_dir.path().join("blobs")),
            Backend::S3 => {
                // A server per harness: its disk then holds this test's files only.
                let server = S3Server::start();
                let s3 = &mut config.blobs.s3;
                config.blobs.backend = BlobBackend::S3;
                s3.endpoint = server.endpoint();
                s3.region = server.region().into();
                s3.bucket = server.bucket().into();
                s3.access_key_id = warble_mesh::secret::Secret::new(server.access_key_id());
                s3.secret_access_key = warble_mesh::secret::Secret::new(server.secret_access_key());
                s3.allow_http = true;
                let bucket = server.bucket().to_owned();
                Files::Bucket(Box::new(server), bucket)
            }
        };
        config.consumer.read_batch = 16;
        tune(&mut config);
        let store = open_store(&config).await.unwrap();
        let blobs = open_blobs(&config).unwrap();
        let database = warble_mesh::embedded::open_shared(&config.data_dir).unwrap();
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedEventLog::open(database).unwrap());
        let service = MediaSvc::new(&config, store, blobs, log.clone()).unwrap();
        let sweeper = service.sweeper();
        let server = service.into_server(Duration::from_secs(5));
        let served =
            serve_on_a_free_port(|listener, shutdown| server.serve(listener, shutdown)).await;
        let client = MediaServiceClient::connect(served.url())
            .await
            .unwrap()
            .max_decoding_message_size(1 << 20);
        Self {
            client,
            log,
            sweeper,
            files,
            _served: served,
            _data_dir: data_dir,
        }
    }

    /// Every stored file (relative path or key), sorted.
    fn stored_files(&self) -> Vec<String> {
        match &self.files {
            Files::Directory(dir) => {
                let mut files = Vec::new();
                walk(dir, dir, &mut files);
                files.sort();
                files
            }
            Files::Bucket(server, bucket) => server.objects_on_disk(bucket),
        }
    }

    fn pending_multipart_uploads(&self) -> usize {
        match &self.files {
            Files::Directory(_) => 0,
            Files::Bucket(server, _) => server.pending_multipart_uploads(),
        }
    }

    async fn upload(
        &mut self,
        owner_id: u64,
        bytes: &[u8],
        file_name: &str,
    ) -> Result<pb::Media, tonic::Status> {
        let mut messages = vec![pb::UploadRequest {
            part: Some(pb::upload_request::Part::Start(pb::UploadStart {
                owner_id,
                alt_text: "alt text".into(),
                file_name: file_name.into(),
            })),
        }];
        messages.extend(bytes.chunks(CHUNK).map(|chunk| pb::UploadRequest {
            part: Some(pb::upload_request::Part::Chunk(chunk.to_vec())),
        }));
        let response = self
            .client
            .upload(futures::stream::iter(messages))
            .await?
            .into_inner();
        Ok(response.media.expect("an upload answers with its media"))
    }

    async fn read(
        &mut self,
        media_id: u64,
        variant: pb::MediaVariant,
        offset: u64,
        length: u64,
    ) -> Result<(pb::ReadMediaResponse, Vec<u8>), tonic::Status> {
        let mut stream = self
            .client
            .read_media(pb::ReadMediaRequest {
                media_id,
                variant: variant as i32,
                offset,
                length,
            })
            .await?
            .into_inner();
        let header = stream.message().await?.expect("a header message");
        let mut body = header.chunk.clone();
        while let Some(message) = stream.message().await? {
            body.extend_from_slice(&message.chunk);
        }
        Ok((header, body))
    }

    async fn get(&mut self, media_id: u64) -> Option<pb::Media> {
        let result = self
            .client
            .get_media(pb::GetMediaRequest {
                media_ids: vec![media_id],
            })
            .await
            .unwrap()
            .into_inner()
            .results
            .pop()
            .unwrap();
        result.found.then(|| result.media.unwrap())
    }

    async fn publish(&self, author_id: u64, payload: Payload) {
        let event = Event {
            event_id: rand_id(),
            occurred_at_ms: now_ms(),
            trace_context: Default::default(),
            payload: Some(payload),
        };
        self.log
            .append(DOMAIN_EVENTS_STREAM, author_id, &event.encode_to_vec())
            .await
            .unwrap();
    }

    /// Waits until `media_id` is in `state` (the consumer applies events
    /// asynchronously).
    async fn await_state(&mut self, media_id: u64, state: pb::MediaState) -> pb::Media {
        for _ in 0..200 {
            if let Some(media) = self.get(media_id).await
                && media.state == state as i32
            {
                return media;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("media {media_id} never reached {state:?}");
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, files);
        } else {
            files.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

fn now_ms() -> i64 {
    warble_mesh::time::now_ms() as i64
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1 << 40);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

macro_rules! on_both_backends {
    ($body:ident => $filesystem:ident, $s3:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $filesystem() {
            $body(Backend::Filesystem).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $s3() {
            $body(Backend::S3).await;
        }
    };
}

async fn images_are_stored_without_metadata(backend: Backend) {
    let mut harness = Harness::start(backend, |_| {}).await;
    // The same pixels: a PNG is re-encoded losslessly.
    let original = png(600, 300);
    let media = harness
        .upload(ALICE, &original, "holiday.png")
        .await
        .unwrap();
    assert_eq!(media.kind, pb::MediaKind::Image as i32);
    assert_eq!((media.width, media.height), (600, 300));
    assert_eq!(media.content_type, "image/png");
    assert_eq!(media.owner_id, ALICE);
    assert_eq!(media.alt_text, "alt text");
    assert!(!media.blurhash.is_empty());
    assert_eq!(
        media.url,
        format!("https://cdn.example.com/m/{}/original", media.media_id)
    );
    assert_eq!(
        media.preview_url,
        format!("https://cdn.example.com/m/{}/preview", media.media_id)
    );
    let (header, stored) = harness
        .read(media.media_id, pb::MediaVariant::Original, 0, 0)
        .await
        .unwrap();
    assert_eq!(header.content_type, "image/png");
    assert_eq!(header.total_bytes, stored.len() as u64);
    let decoded = image::load_from_memory(&stored).unwrap().to_rgb8();
    assert_eq!(decoded, picture(600, 300));
    let (header, preview) = harness
        .read(media.media_id, pb::MediaVariant::Preview, 0, 0)
        .await
        .unwrap();
    assert_eq!(header.content_type, "image/jpeg");
    let preview = image::load_from_memory(&preview).unwrap();
    assert_eq!((preview.width(), preview.height()), (400, 200));
    // A range is the same bytes as the whole file's slice.
    let (header, slice) = harness
        .read(media.media_id, pb::MediaVariant::Original, 10, 25)
        .await
        .unwrap();
    assert_eq!((header.offset, header.length), (10, 25));
    assert_eq!(slice, stored[10..35]);
    let past_end = harness
        .read(
            media.media_id,
            pb::MediaVariant::Original,
            header.total_bytes,
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(past_end.code(), Code::OutOfRange);

    // A phone's JPEG loses its EXIF and GPS, keeps its size.
    let photo = harness
        .upload(ALICE, &jpeg_with_gps(320, 240), "IMG_0001.JPG")
        .await
        .unwrap();
    let (_, stored) = harness
        .read(photo.media_id, pb::MediaVariant::Original, 0, 0)
        .await
        .unwrap();
    assert!(!contains(&stored, b"Exif") && !contains(&stored, b"GPS"));
    let decoded = image::load_from_memory(&stored).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));

    let mut files = harness.stored_files();
    files.retain(|file| !file.starts_with('.'));
    assert_eq!(
        files,
        vec![
            format!("{}/original", media.media_id),
            format!("{}/preview", media.media_id),
            format!("{}/original", photo.media_id),
            format!("{}/preview", photo.media_id),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let missing = harness
        .read(42, pb::MediaVariant::Original, 0, 0)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

on_both_backends!(images_are_stored_without_metadata => images_keep_their_pixels_and_lose_their_exif_in_a_directory, images_keep_their_pixels_and_lose_their_exif_in_s3);

async fn refusals_leave_nothing_behind(backend: Backend) {
    let mut harness = Harness::start(backend, |config| {
        config.limits.max_video_bytes = 6 * 1024 * 1024;
    })
    .await;
    let refused = |status: tonic::Status, reason: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(reason), "{reason}: {status:?}");
    };
    // Text renamed `.jpg`: the name is never believed.
    refused(
        harness
            .upload(ALICE, b"just some words, not a picture at all", "cat.jpg")
            .await
            .unwrap_err(),
        "unsupported type",
    );
    // A 6 MB image: over the 5 MB limit, refused while streaming.
    let mut big = png(4, 4);
    big.resize(6 * 1024 * 1024, 0);
    refused(
        harness.upload(ALICE, &big, "big.png").await.unwrap_err(),
        "too large",
    );
    // A bomb: 100,000 × 100,000 pixels claimed by a tiny file.
    refused(
        harness
            .upload(ALICE, &png_claiming(100_000, 100_000), "bomb.png")
            .await
            .unwrap_err(),
        "too many pixels",
    );
    // A video over its limit, refused part-way through a multipart upload.
    refused(
        harness
            .upload(ALICE, &mp4(7 * 1024 * 1024), "long.mp4")
            .await
            .unwrap_err(),
        "too large",
    );
    // A broken image.
    let broken = png(64, 64);
    refused(
        harness
            .upload(ALICE, &broken[..broken.len() / 2], "broken.png")
            .await
            .unwrap_err(),
        "undecodable",
    );
    let mut files = harness.stored_files();
    files.retain(|file| !file.starts_with('.'));
    assert_eq!(files, Vec::<String>::new(), "refusals stored nothing");
    assert_eq!(harness.pending_multipart_uploads(), 0);
    let status = harness
        .client
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.uploads, 0);
    assert_eq!(status.bytes_stored, 0);
    let refusals: Vec<(String, u64)> = status.refusals.into_iter().collect();
    let count = |reason: &str| {
        refusals
            .iter()
            .find(|(name, _)| name == reason)
            .map_or(0, |(_, count)| *count)
    };
    assert_eq!(
        (
            count("unsupported_type"),
            count("too_large"),
            count("too_many_pixels"),
            count("undecodable")
        ),
        (1, 2, 1, 1)
    );
}

on_both_backends!(refusals_leave_nothing_behind => refusals_leave_nothing_in_a_directory, refusals_leave_nothing_in_s3);

async fn videos_stream_in_parts(backend: Backend) {
    let mut harness = Harness::start(backend, |_| {}).await;
    // Over 5 MiB: S3 receives it as several parts.
    let video = mp4(12 * 1024 * 1024 + 321);
    let media = harness.upload(ALICE, &video, "clip.mp4").await.unwrap();
    assert_eq!(media.kind, pb::MediaKind::Video as i32);
    assert_eq!(media.content_type, "video/mp4");
    assert_eq!(media.size_bytes, video.len() as u64);
    assert_eq!(media.preview_url, "");
    // Seeking: a range in the middle, across a part boundary.
    let start = 5 * 1024 * 1024 - 100;
    let (header, slice) = harness
        .read(
            media.media_id,
            pb::MediaVariant::Original,
            start as u64,
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(header.total_bytes, video.len() as u64);
    assert_eq!(slice, video[start..start + 1_000]);
    let (_, whole) = harness
        .read(media.media_id, pb::MediaVariant::Original, 0, 0)
        .await
        .unwrap();
    assert!(whole == video, "the whole video reads back unchanged");
    let no_preview = harness
        .read(media.media_id, pb::MediaVariant::Preview, 0, 0)
        .await
        .unwrap_err();
    assert_eq!(no_preview.code(), Code::NotFound);
    assert_eq!(harness.pending_multipart_uploads(), 0);
}

on_both_backends!(videos_stream_in_parts => videos_stream_in_parts_to_a_directory, videos_stream_in_parts_to_s3);

async fn claims_attach_and_delete(backend: Backend) {
    let mut harness = Harness::start(backend, |_| {}).await;
    let mut images = Vec::new();
    for _ in 0..5 {
        images.push(
            harness
                .upload(ALICE, &png(8, 8), "a.png")
                .await
                .unwrap()
                .media_id,
        );
    }
    let video = harness
        .upload(ALICE, &mp4(10_000), "v.mp4")
        .await
        .unwrap()
        .media_id;
    let bobs = harness
        .upload(BOB, &png(8, 8), "b.png")
        .await
        .unwrap()
        .media_id;
    let claims = harness.client.clone();
    let claim = |owner_id: u64, media_ids: Vec<u64>, key: &str| {
        let mut client = claims.clone();
        let request = pb::ClaimMediaRequest {
            owner_id,
            media_ids,
            claim_key: key.into(),
        };
        async move { client.claim_media(request).await }
    };
    let five = claim(ALICE, images.clone(), "post-1").await.unwrap_err();
    assert_eq!(five.code(), Code::InvalidArgument);
    assert!(five.message().contains("at most 4"), "{five:?}");
    let foreign = claim(ALICE, vec![images[0], bobs], "post-1")
        .await
        .unwrap_err();
    assert!(
        foreign
            .message()
            .contains(&format!("media {bobs} belongs to another user")),
        "{foreign:?}"
    );
    let mixed = claim(ALICE, vec![images[0], video], "post-1")
        .await
        .unwrap_err();
    assert!(mixed.message().contains("not both"), "{mixed:?}");
    let missing = claim(ALICE, vec![999], "post-1").await.unwrap_err();
    assert!(
        missing.message().contains("media 999 does not exist"),
        "{missing:?}"
    );
    claim(ALICE, images[..4].to_vec(), "post-1").await.unwrap();
    let taken = claim(ALICE, vec![images[3]], "post-2").await.unwrap_err();
    assert!(taken.message().contains("being attached"), "{taken:?}");

    // The tweet is created: its event attaches the media.
    let tweet_id = rand_id();
    harness
        .publish(
            ALICE,
            Payload::TweetCreated(TweetCreated {
                tweet_id,
                author_id: ALICE,
                created_at_ms: now_ms(),
                text: "four pictures".into(),
                media_ids: images[..4].to_vec(),
                ..TweetCreated::default()
            }),
        )
        .await;
    let attached = harness
        .await_state(images[0], pb::MediaState::Attached)
        .await;
    assert_eq!(attached.tweet_id, tweet_id);
    let again = claim(ALICE, vec![images[1]], "post-3").await.unwrap_err();
    assert!(again.message().contains("already attached"), "{again:?}");

    // An avatar: Alice's fifth image, never Bob's, never a video.
    let avatar = harness
        .client
        .use_as_avatar(pb::UseAsAvatarRequest {
            owner_id: ALICE,
            media_id: images[4],
        })
        .await
        .unwrap()
        .into_inner()
        .media
        .unwrap();
    assert_eq!(avatar.state, pb::MediaState::Attached as i32);
    for (owner_id, media_id) in [(ALICE, bobs), (ALICE, video)] {
        let refused = harness
            .client
            .use_as_avatar(pb::UseAsAvatarRequest { owner_id, media_id })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
    }

    // The unattached uploads go a day later; the tweet's and the avatar stay.
    let day_later = now_ms() + 86_400_000 + 1_000;
    let deleted = harness.sweeper.sweep(day_later).await.unwrap();
    assert_eq!(deleted, 2, "the video and Bob's image");
    assert!(harness.get(video).await.is_none());
    assert!(harness.get(bobs).await.is_none());
    assert!(harness.get(images[4]).await.is_some());
    // Deleted twice is deleted once.
    assert_eq!(harness.sweeper.sweep(day_later).await.unwrap(), 0);

    // The tweet is deleted: its media go after the grace period.
    let deleted_at = now_ms();
    harness
        .publish(
            ALICE,
            Payload::TweetDeleted(TweetDeleted {
                tweet_id,
                author_id: ALICE,
                deleted_at_ms: deleted_at,
                media_ids: images[..4].to_vec(),
                ..TweetDeleted::default()
            }),
        )
        .await;
    harness
        .await_state(images[3], pb::MediaState::Deleting)
        .await;
    assert_eq!(harness.sweeper.sweep(deleted_at + 1_000).await.unwrap(), 0);
    assert_eq!(
        harness.sweeper.sweep(deleted_at + 3_600_000).await.unwrap(),
        4
    );
    for id in &images[..4] {
        assert!(harness.get(*id).await.is_none());
    }
    let mut files = harness.stored_files();
    files.retain(|file| !file.starts_with('.'));
    assert_eq!(
        files,
        vec![
            format!("{}/original", images[4]),
            format!("{}/preview", images[4])
        ]
    );
}

on_both_backends!(claims_attach_and_delete => media_attach_and_go_with_their_tweet_in_a_directory, media_attach_and_go_with_their_tweet_in_s3);

#[tokio::test]
async fn a_stream_that_does_not_start_with_start_is_refused() {
    let harness = Harness::start(Backend::Filesystem, |_| {}).await;
    let mut client = harness.client.clone();
    let status = client
        .upload(futures::stream::iter(vec![pb::UploadRequest {
            part: Some(pb::upload_request::Part::Chunk(png(2, 2))),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("first message"), "{status:?}");
}

/// With `urls.mode = "presigned"`, the URLs are S3 presigned GETs that a
/// plain HTTP client fetches without credentials: the same bytes
/// ReadMedia serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_fetch_the_stored_bytes() {
    let mut harness = Harness::start(Backend::S3, |config| {
        config.urls.mode = warble_media_svc::config::UrlMode::Presigned;
        config.urls.presign_ttl_secs = 300;
    })
    .await;
    let media = harness.upload(ALICE, &png(50, 40), "p.png").await.unwrap();
    assert!(media.url.contains("X-Amz-Signature="), "{}", media.url);
    let (_, stored) = harness
        .read(media.media_id, pb::MediaVariant::Original, 0, 0)
        .await
        .unwrap();
    let fetched = reqwest::get(&media.url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), stored);
    let preview = reqwest::get(&media.preview_url).await.unwrap();
    assert_eq!(preview.status(), 200);
    // The signature covers the path: another object's key is refused.
    let tampered = media.url.replace("/original?", "/preview?");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
}
