//! Frontend-level cases of media: an image uploaded with the GraphQL
//! multipart request spec, posted, read on a follower's home timeline and
//! downloaded from its URL (the same pixels, no EXIF); an avatar on the
//! author; a video seeked with HTTP range requests; and each bad upload
//! refused with its reason. Like every case in [`crate::cases`], each runs
//! on the single-process stack (files in a directory, served by the
//! gateway's `/media` route) and on the separate processes (media-svc on
//! Redis, files in an S3 bucket on a real S3 API server).

use std::io::Cursor;

use serde_json::{Value, json};

use warble_testkit::media::{contains, jpeg_with_gps, mp4, picture, png, png_claiming};

use crate::frontend::Frontend;
use crate::graphql::{GraphqlClient, error_codes};

const UPLOAD: &str = r#"mutation($file: Upload!, $alt: String) {
  uploadMedia(file: $file, altText: $alt) {
    id kind url previewUrl width height blurhash altText
  }
}"#;

/// Uploads `bytes` as `file_name` through a multipart request, as
/// apollo-upload-client and graphql-upload send it; the whole response.
pub async fn upload(gql: &GraphqlClient, token: &str, bytes: Vec<u8>, file_name: &str) -> Value {
    let operations =
        json!({ "query": UPLOAD, "variables": { "file": null, "alt": "what it shows" } });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": ["variables.file"] }).to_string())
        .part(
            "0",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(file_name.to_owned())
                .mime_str("application/octet-stream")
                .expect("a valid MIME type"),
        );
    reqwest::Client::new()
        .post(format!("http://{}/graphql", gql.addr()))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON response")
}

/// Uploads and returns the media object, failing on any error.
pub async fn uploaded(gql: &GraphqlClient, token: &str, bytes: Vec<u8>, file_name: &str) -> Value {
    let response = upload(gql, token, bytes, file_name).await;
    assert!(response.get("errors").is_none(), "{response}");
    response["data"]["uploadMedia"].clone()
}

async fn download(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    request.send().await.expect("the media URL answers")
}

async fn post_with_media(gql: &GraphqlClient, token: &str, text: &str, media: &[&str]) -> Value {
    gql.request(
        Some(token),
        "mutation($text: String!, $media: [ID!]) { postTweet(text: $text, mediaIds: $media) { id media { id } } }",
        json!({ "text": text, "media": media }),
    )
    .await
}

const HOME_WITH_MEDIA: &str = r#"query {
  homeTimeline(first: 20) {
    edges { node { id text media { id kind url previewUrl width height blurhash altText } } }
  }
}"#;

/// Upload an image, post it, read the follower's home timeline and
/// download the URL: the same pixels, and no EXIF; the preview is at most
/// 400 px; a page of tweets with media costs one GetMedia call.
pub async fn an_image_posted_reaches_the_timeline_and_downloads_clean(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (ada_id, ada) = gql.sign_up("ada").await;
    let (_, bob) = gql.sign_up("bob").await;
    gql.follow(&bob, &ada_id).await;
    let drawing = uploaded(&gql, &ada, png(640, 480), "drawing.png").await;
    assert_eq!(drawing["kind"], "IMAGE");
    assert_eq!(
        (drawing["width"].as_i64(), drawing["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(drawing["altText"], "what it shows");
    assert!(
        drawing["blurhash"]
            .as_str()
            .is_some_and(|hash| hash.len() >= 6)
    );
    let photo = uploaded(&gql, &ada, jpeg_with_gps(320, 200), "IMG_0042.JPG").await;
    let posted = post_with_media(
        &gql,
        &ada,
        "two pictures",
        &[
            drawing["id"].as_str().unwrap(),
            photo["id"].as_str().unwrap(),
        ],
    )
    .await;
    assert!(posted.get("errors").is_none(), "{posted}");
    let text_only = gql.post(&ada, "no pictures here").await;
    stack.settle().await;

    let before = gql.downstream_calls().await;
    let page = gql.data(Some(&bob), HOME_WITH_MEDIA, json!({})).await;
    let after = gql.downstream_calls().await;
    let edges = page["homeTimeline"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["id"], text_only.as_str());
    assert_eq!(edges[0]["node"]["media"], json!([]));
    let media = edges[1]["node"]["media"].as_array().expect("media");
    assert_eq!(media.len(), 2);
    assert_eq!(media[0]["id"], drawing["id"]);
    assert_eq!(media[1]["id"], photo["id"]);
    let calls = |counts: &std::collections::BTreeMap<String, u64>| {
        counts.get("GetMedia").copied().unwrap_or(0)
    };
    assert_eq!(
        calls(&after) - calls(&before),
        1,
        "one GetMedia call per page"
    );

    let response = download(media[0]["url"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), 200);
    let stored = response.bytes().await.unwrap();
    let decoded = image::load_from_memory(&stored).expect("a PNG").to_rgb8();
    assert_eq!(decoded, picture(640, 480), "the same pixels");
    let stored_photo = download(media[1]["url"].as_str().unwrap(), None)
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!contains(&stored_photo, b"Exif") && !contains(&stored_photo, b"GPS"));
    let decoded = image::load_from_memory(&stored_photo).expect("a JPEG");
    assert_eq!((decoded.width(), decoded.height()), (320, 200));
    let preview = download(media[0]["previewUrl"].as_str().unwrap(), None)
        .await
        .bytes()
        .await
        .unwrap();
    let preview = image::ImageReader::new(Cursor::new(&preview[..]))
        .with_guessed_format()
        .unwrap()
        .decode()
        .expect("a preview image");
    assert!(preview.width().max(preview.height()) <= 400);
    assert_eq!((preview.width(), preview.height()), (400, 300));
}

/// `updateProfile(avatarMediaId)` shows the avatar on the author of a
/// tweet, and its URL answers.
pub async fn an_avatar_shows_on_the_author(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ada) = gql.sign_up("ada").await;
    let avatar = uploaded(&gql, &ada, png(500, 500), "me.png").await;
    let updated = gql
        .request(
            Some(&ada),
            "mutation($id: ID!) { updateProfile(avatarMediaId: $id) { avatarUrl } }",
            json!({ "id": avatar["id"] }),
        )
        .await;
    assert!(updated.get("errors").is_none(), "{updated}");
    let url = updated["data"]["updateProfile"]["avatarUrl"]
        .as_str()
        .expect("an avatar URL")
        .to_owned();
    gql.post(&ada, "hello with a face").await;
    stack.settle().await;
    let timeline = gql
        .data(
            None,
            "query { userTimeline(username: \"ada\", first: 5) { edges { node { author { avatarUrl } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        timeline["userTimeline"]["edges"][0]["node"]["author"]["avatarUrl"],
        url.as_str()
    );
    let response = download(&url, None).await;
    assert_eq!(response.status(), 200);
    let image = image::load_from_memory(&response.bytes().await.unwrap()).expect("an image");
    assert!(image.width() <= 400);
}

/// A video plays from range requests: 206 with `Content-Range`, the exact
/// bytes, and 416 past the end.
pub async fn a_video_plays_from_range_requests(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ada) = gql.sign_up("ada").await;
    let video = mp4(3 * 1024 * 1024 + 17);
    let media = uploaded(&gql, &ada, video.clone(), "clip.mp4").await;
    assert_eq!(media["kind"], "VIDEO");
    assert!(media["previewUrl"].is_null(), "{media}");
    let posted = post_with_media(&gql, &ada, "watch this", &[media["id"].as_str().unwrap()]).await;
    assert!(posted.get("errors").is_none(), "{posted}");
    let url = media["url"].as_str().unwrap();
    let whole = download(url, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-type"].to_str().unwrap(),
        "video/mp4"
    );
    assert_eq!(whole.bytes().await.unwrap().len(), video.len());
    let part = download(url, Some("bytes=1000000-1000999")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000000-1000999/{}", video.len())
    );
    assert_eq!(
        &part.bytes().await.unwrap()[..],
        &video[1_000_000..1_001_000]
    );
    let tail = download(url, Some("bytes=-10")).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(&tail.bytes().await.unwrap()[..], &video[video.len() - 10..]);
    let past = download(url, Some(&format!("bytes={}-", video.len() + 5))).await;
    assert_eq!(past.status(), 416);
}

fn refusal(response: &Value) -> String {
    assert_eq!(error_codes(response), ["BAD_USER_INPUT"], "{response}");
    response["errors"][0]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// A wrong type renamed `.jpg`, a 6 MB image, a bomb, five images and
/// someone else's media id are each refused with BAD_USER_INPUT and the
/// reason; the refused files leave nothing (media-svc's own tests look at
/// the disk and the bucket), and the media stay usable by their owner.
pub async fn bad_uploads_are_refused_with_their_reason(stack: &impl Frontend) {
    let gql = stack.graphql();
    let (_, ada) = gql.sign_up("ada").await;
    let (_, bob) = gql.sign_up("bob").await;
    let message = refusal(&upload(&gql, &ada, b"plain text pretending".to_vec(), "cat.jpg").await);
    assert!(message.contains("unsupported type"), "{message}");
    let mut big = png(4, 4);
    big.resize(6 * 1024 * 1024, 0);
    let message = refusal(&upload(&gql, &ada, big, "big.png").await);
    assert!(message.contains("too large"), "{message}");
    let message = refusal(&upload(&gql, &ada, png_claiming(60_000, 60_000), "bomb.png").await);
    assert!(message.contains("too many pixels"), "{message}");

    let mut five = Vec::new();
    for _ in 0..5 {
        five.push(
            uploaded(&gql, &ada, png(16, 16), "x.png").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let ids: Vec<&str> = five.iter().map(String::as_str).collect();
    let message = refusal(&post_with_media(&gql, &ada, "too many", &ids).await);
    assert!(message.contains('4'), "{message}");
    // Bob cannot post Ada's picture; the refusal names it.
    let message = refusal(&post_with_media(&gql, &bob, "not mine", &ids[..1]).await);
    assert!(message.contains(ids[0]), "{message}");
    assert!(message.contains("another user"), "{message}");
    // Nothing was taken by the refusals: Ada posts four of them.
    let posted = post_with_media(&gql, &ada, "four", &ids[..4]).await;
    assert!(posted.get("errors").is_none(), "{posted}");
    assert_eq!(
        posted["data"]["postTweet"]["media"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
}
