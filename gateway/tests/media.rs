//! Media end to end, over a real media-svc (see `support`): uploads sent as
//! real multipart HTTP requests, tweets and avatars that show them (a page
//! costs one GetMedia, whatever it holds), the `/media` route with and
//! without a `Range`, and every refusal with its stable code.

mod support;

use std::io::Cursor;
use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, error_codes, id};

const UPLOAD: &str = "mutation($file: Upload!, $alt: String) {
  uploadMedia(file: $file, altText: $alt) {
    id kind url previewUrl width height blurhash altText contentType sizeBytes createdAt
  }
}";

const POST: &str = "mutation($text: String!, $media: [ID!], $key: String) {
  postTweet(text: $text, mediaIds: $media, idempotencyKey: $key) { id media { id } }
}";

const TIMELINE: &str = "query($username: String!) {
  userTimeline(username: $username, first: 20) {
    edges { node { id media { id url previewUrl width } author { avatarUrl } } }
  }
}";

/// A `width` × `height` PNG: a gradient, so no two are alike.
fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, seed])
    });
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("a PNG");
    bytes.into_inner()
}

/// A GraphQL multipart request (the spec's `operations`, `map`, then one
/// part per file, each mapped to `variables.file`): its content type and body.
fn multipart(query: &str, variables: Value, files: &[&[u8]]) -> (String, Vec<u8>) {
    let boundary = "warble-test-7d1f0c";
    let mut body = Vec::new();
    let mut part = |headers: String, content: &[u8]| {
        body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    let operations = json!({ "query": query, "variables": variables }).to_string();
    part(
        "Content-Disposition: form-data; name=\"operations\"".into(),
        operations.as_bytes(),
    );
    let map: serde_json::Map<String, Value> = (0..files.len())
        .map(|index| (index.to_string(), json!(["variables.file"])))
        .collect();
    part(
        "Content-Disposition: form-data; name=\"map\"".into(),
        Value::Object(map).to_string().as_bytes(),
    );
    for (index, content) in files.iter().enumerate() {
        part(
            format!(
                "Content-Disposition: form-data; name=\"{index}\"; filename=\"photo-{index}.png\"\r\n\
                 Content-Type: image/png"
            ),
            content,
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The gateway over HTTP, as a browser or an app calls it.
struct Http {
    addr: SocketAddr,
    client: reqwest::Client,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            client: reqwest::Client::new(),
        }
    }

    /// Posts a multipart body to `/graphql`; the status and the JSON answer.
    async fn post_multipart(
        &self,
        bearer: Option<&str>,
        (content_type, body): (String, Vec<u8>),
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .header("content-type", content_type)
            .body(body);
        if let Some(bearer) = bearer {
            request = request.header("authorization", bearer);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// Uploads `file` as `bearer` with `alt`; the status and the JSON answer.
    async fn upload(&self, bearer: Option<&str>, file: &[u8], alt: &str) -> (StatusCode, Value) {
        let body = multipart(UPLOAD, json!({ "file": null, "alt": alt }), &[file]);
        self.post_multipart(bearer, body).await
    }

    /// Uploads `file`, failing the test on any error; returns the `Media`.
    async fn uploaded(&self, bearer: &str, file: &[u8]) -> Value {
        let (status, response) = self.upload(Some(bearer), file, "").await;
        assert_eq!(status, StatusCode::OK, "{response:#}");
        assert!(response.get("errors").is_none(), "{response:#}");
        response["data"]["uploadMedia"].clone()
    }

    /// GETs (or HEADs) a path with an optional `Range`.
    async fn get(&self, method: reqwest::Method, path: &str, range: Option<&str>) -> Fetched {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.addr));
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a body").to_vec();
        Fetched {
            status,
            headers,
            body,
        }
    }
}

/// A `/media` response.
struct Fetched {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// The path of a media URL (`http://host/media/1/original` → `/media/1/original`).
fn path_of(url: &Value) -> String {
    let url = url.as_str().expect("a URL");
    let rest = url.strip_prefix("http://").expect("an http URL");
    rest[rest.find('/').expect("a path")..].to_owned()
}

fn media_ids(media: &Value) -> Vec<&str> {
    media
        .as_array()
        .expect("a media list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test]
async fn an_uploaded_image_is_attached_shown_and_served() {
    let mut backend = Backend::start();
    let served = backend.serve_http(|_| {});
    let http = Http::new(served.addr);
    let alice = backend.sign_up("alice").await;
    let bearer = backend.bearer(alice);

    let (status, response) = http
        .upload(Some(&bearer), &png(64, 48, 1), "a gradient")
        .await;
    assert_eq!(status, StatusCode::OK, "{response:#}");
    let first = response["data"]["uploadMedia"].clone();
    let first_id = first["id"].as_str().expect("an id").to_owned();
    assert_eq!(first["kind"], "IMAGE");
    assert_eq!(
        (first["width"].clone(), first["height"].clone()),
        (json!(64), json!(48))
    );
    assert_eq!(first["altText"], "a gradient");
    assert!(
        first["blurhash"]
            .as_str()
            .is_some_and(|hash| !hash.is_empty())
    );
    assert!(first["contentType"].as_str().unwrap().starts_with("image/"));
    let size = first["sizeBytes"].as_u64().expect("a size");
    assert!(size > 0);
    // The URLs name this gateway's `/media` route.
    assert_eq!(
        first["url"],
        format!("http://{}/media/{first_id}/original", served.addr)
    );
    assert_eq!(
        first["previewUrl"],
        format!("http://{}/media/{first_id}/preview", served.addr)
    );

    // Tweets attach media in the order given; one without media has none.
    let second = http.uploaded(&bearer, &png(30, 20, 2)).await;
    let third = http.uploaded(&bearer, &png(20, 30, 3)).await;
    let avatar = http.uploaded(&bearer, &png(100, 100, 4)).await;
    let with_two = backend
        .data(
            Some(alice),
            POST,
            json!({ "text": "two pictures", "media": [second["id"], first["id"]] }),
        )
        .await["postTweet"]
        .clone();
    assert_eq!(
        media_ids(&with_two["media"]),
        [second["id"].as_str().unwrap(), &first_id]
    );
    backend
        .data(
            Some(alice),
            POST,
            json!({ "text": "one picture", "media": [third["id"]] }),
        )
        .await;
    backend.post(alice, "no pictures").await;
    let profile = backend
        .data(
            Some(alice),
            "mutation($avatar: ID) { updateProfile(avatarMediaId: $avatar) { avatarUrl } }",
            json!({ "avatar": avatar["id"] }),
        )
        .await;
    assert_eq!(
        profile["updateProfile"]["avatarUrl"], avatar["previewUrl"],
        "an avatar shows its preview"
    );

    // A page costs one GetMedia for every tweet's media and every avatar.
    let before = backend.rpc_counts();
    let page = backend
        .data(None, TIMELINE, json!({ "username": "alice" }))
        .await;
    let after = backend.rpc_counts();
    let calls = |counts: &std::collections::BTreeMap<String, u64>| {
        counts.get("GetMedia").copied().unwrap_or(0)
    };
    assert_eq!(calls(&after) - calls(&before), 1, "{before:?} -> {after:?}");
    let edges = page["userTimeline"]["edges"].as_array().expect("edges");
    let shown: Vec<Vec<&str>> = edges
        .iter()
        .map(|edge| media_ids(&edge["node"]["media"]))
        .collect();
    assert_eq!(
        shown,
        [
            vec![],
            vec![third["id"].as_str().unwrap()],
            vec![second["id"].as_str().unwrap(), &first_id],
        ]
    );
    for edge in edges {
        assert_eq!(edge["node"]["author"]["avatarUrl"], avatar["previewUrl"]);
    }

    // A page without media or avatars calls nothing.
    let bob = backend.sign_up("bob").await;
    backend.post(bob, "words only").await;
    let before = backend.rpc_counts();
    let page = backend
        .data(None, TIMELINE, json!({ "username": "bob" }))
        .await;
    assert_eq!(calls(&backend.rpc_counts()), calls(&before));
    assert_eq!(page["userTimeline"]["edges"][0]["node"]["media"], json!([]));
    assert_eq!(
        page["userTimeline"]["edges"][0]["node"]["author"]["avatarUrl"],
        Value::Null
    );

    // The original, whole: cacheable forever, and rangeable.
    let original = path_of(&first["url"]);
    let whole = http.get(reqwest::Method::GET, &original, None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body.len() as u64, size);
    assert_eq!(whole.header("content-length"), size.to_string());
    assert_eq!(whole.header("content-type"), first["contentType"]);
    assert_eq!(whole.header("accept-ranges"), "bytes");
    assert_eq!(
        whole.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(whole.header("x-content-type-options"), "nosniff");
    let decoded = image::load_from_memory(&whole.body).expect("an image");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));

    // Ranges: bounded, open-ended, suffix; past the end is 416.
    let ranged = |range: &'static str| http.get(reqwest::Method::GET, &original, Some(range));
    let head = ranged("bytes=0-9").await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.header("content-range"), format!("bytes 0-9/{size}"));
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(head.body, whole.body[..10]);
    assert_eq!(
        head.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    let tail = ranged("bytes=-7").await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.header("content-range"),
        format!("bytes {}-{}/{size}", size - 7, size - 1)
    );
    assert_eq!(tail.body, whole.body[whole.body.len() - 7..]);
    let rest = ranged("bytes=10-").await;
    assert_eq!(rest.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(rest.body, whole.body[10..]);
    let beyond = http
        .get(
            reqwest::Method::GET,
            &original,
            Some(&format!("bytes={size}-")),
        )
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.header("content-range"), format!("bytes */{size}"));
    let beyond_suffix = ranged("bytes=-0").await;
    assert_eq!(beyond_suffix.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Several ranges, or a header that does not parse: the whole file.
    for range in ["bytes=0-1,4-5", "bytes=5-1", "lines=1-2"] {
        let answered = ranged(range).await;
        assert_eq!(answered.status, StatusCode::OK, "{range}");
        assert_eq!(answered.body, whole.body, "{range}");
    }

    // HEAD: the headers alone.
    let headers = http.get(reqwest::Method::HEAD, &original, None).await;
    assert_eq!(headers.status, StatusCode::OK);
    assert_eq!(headers.header("content-length"), size.to_string());
    assert_eq!(headers.header("accept-ranges"), "bytes");
    assert!(headers.body.is_empty());
    let headers = http
        .get(reqwest::Method::HEAD, &original, Some("bytes=-7"))
        .await;
    assert_eq!(headers.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers.header("content-length"), "7");
    assert!(headers.body.is_empty());

    // The preview is an image too.
    let preview = http
        .get(reqwest::Method::GET, &path_of(&first["previewUrl"]), None)
        .await;
    assert_eq!(preview.status, StatusCode::OK);
    image::load_from_memory(&preview.body).expect("a preview image");

    // Anything else is 404, and not cacheable.
    for path in [
        format!("/media/{first_id}/thumbnail"),
        format!("/media/{}/original", id(&first["id"]) + 1_000_000),
        "/media/abc/original".to_owned(),
        "/media/0/original".to_owned(),
        format!("/media/{first_id}"),
    ] {
        let missing = http.get(reqwest::Method::GET, &path, None).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(missing.header("cache-control"), "no-store", "{path}");
    }
}

#[tokio::test]
async fn uploads_are_refused_with_stable_codes() {
    let mut backend = Backend::start();
    // Small enough to send a file over it.
    let limit = 256 * 1024;
    let served = backend.serve_http(|limits| limits.max_upload_bytes = limit);
    let http = Http::new(served.addr);
    let alice = backend.sign_up("alice").await;
    let bearer = backend.bearer(alice);
    let code = |response: &Value| error_codes(response).first().cloned().unwrap_or_default();

    // Signed out: refused before the body is read.
    let (status, response) = http.upload(None, &png(8, 8, 1), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&response).0, "UNAUTHENTICATED", "{response:#}");

    // Not an image: media-svc's reason, as BAD_USER_INPUT.
    let (status, response) = http
        .upload(Some(&bearer), b"plain text, not an image", "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&response).0, "BAD_USER_INPUT", "{response:#}");
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("type"), "{message}");

    // Over the gateway's limit: 413, before media-svc sees it.
    let before = backend.rpc_counts();
    let (status, response) = http.upload(Some(&bearer), &vec![7u8; limit + 1], "").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&response).0, "BAD_USER_INPUT", "{response:#}");
    assert_eq!(backend.rpc_counts(), before);

    // Two files in one request.
    let small = png(8, 8, 2);
    let body = multipart(
        UPLOAD,
        json!({ "file": null }),
        &[small.as_slice(), small.as_slice()],
    );
    let (status, response) = http.post_multipart(Some(&bearer), body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&response).0, "BAD_USER_INPUT");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("one file")
    );

    // Not the multipart spec: no `map`.
    let boundary = "b0undary";
    let broken = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        json!({ "query": UPLOAD, "variables": { "file": null } })
    );
    let (status, response) = http
        .post_multipart(
            Some(&bearer),
            (
                format!("multipart/form-data; boundary={boundary}"),
                broken.into_bytes(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&response).0, "BAD_USER_INPUT");

    // Alt text over 1500 characters, refused before the file is sent.
    let before = backend.rpc_counts();
    let (_, response) = http
        .upload(Some(&bearer), &png(8, 8, 3), &"a".repeat(1_501))
        .await;
    assert_eq!(
        code(&response),
        ("BAD_USER_INPUT".into(), "altText".into()),
        "{response:#}"
    );
    assert_eq!(backend.rpc_counts(), before);

    // A JSON body keeps the JSON limit (64 KiB), whatever the upload limit.
    let padding = "x".repeat(70 * 1024);
    let response = http
        .client
        .post(format!("http://{}/graphql", served.addr))
        .header("content-type", "application/json")
        .body(json!({ "query": format!("{{ __typename }} # {padding}") }).to_string())
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response: Value = response.json().await.expect("a JSON answer");
    assert_eq!(code(&response).0, "BAD_USER_INPUT");
}

#[tokio::test]
async fn media_ids_are_checked_at_the_edge_then_claimed() {
    let mut backend = Backend::start();
    let served = backend.serve_http(|_| {});
    let http = Http::new(served.addr);
    let alice = backend.sign_up("alice").await;
    let bob = backend.sign_up("bob").await;
    let pictures = [
        http.uploaded(&backend.bearer(alice), &png(8, 8, 1)).await,
        http.uploaded(&backend.bearer(alice), &png(8, 8, 2)).await,
    ];
    let picture = pictures[0]["id"].clone();

    // Too many, malformed or repeated ids: refused before any call.
    let before = backend.rpc_counts();
    for media in [
        json!(["1", "2", "3", "4", "5"]),
        json!(["12", "not-an-id"]),
        json!(["0"]),
        json!([picture, picture]),
    ] {
        let response = backend
            .execute(
                Some(alice),
                POST,
                json!({ "text": "hello", "media": media }),
            )
            .await;
        assert_eq!(
            error_codes(&response),
            [("BAD_USER_INPUT".into(), "mediaIds".into())],
            "{media}: {response:#}"
        );
    }
    assert_eq!(backend.rpc_counts(), before, "nothing was called");

    // Someone else's media: media-svc refuses the claim, nothing is posted.
    let before = backend.rpc_counts();
    let response = backend
        .execute(
            Some(bob),
            POST,
            json!({ "text": "mine now", "media": [picture] }),
        )
        .await;
    assert_eq!(
        error_codes(&response),
        [("BAD_USER_INPUT".into(), "mediaIds".into())],
        "{response:#}"
    );
    let after = backend.rpc_counts();
    assert_eq!(after.get("CreateTweet"), before.get("CreateTweet"));

    // A tweet tweet-svc refuses gives its claim back: the media can be
    // posted again.
    let before = backend.rpc_counts();
    let response = backend
        .execute(
            Some(alice),
            POST,
            json!({ "text": "   ", "media": [picture] }),
        )
        .await;
    assert_eq!(
        error_codes(&response)[0].0,
        "BAD_USER_INPUT",
        "{response:#}"
    );
    let after = backend.rpc_counts();
    let delta = |method: &str| after.get(method).unwrap_or(&0) - before.get(method).unwrap_or(&0);
    assert_eq!(delta("ReleaseClaim"), 1);

    // Posted with its media; another tweet cannot take the same media.
    // (A retry with the same `idempotencyKey` is not checked here: once
    // media-svc has applied TweetCreated the media are attached, and
    // ClaimMedia refuses them even under the same claim key.)
    let posted = backend
        .data(
            Some(alice),
            POST,
            json!({ "text": "posted", "media": [picture], "key": "post-1" }),
        )
        .await;
    assert_eq!(
        media_ids(&posted["postTweet"]["media"]),
        [picture.as_str().unwrap()]
    );
    let response = backend
        .execute(
            Some(alice),
            POST,
            json!({ "text": "again", "media": [picture] }),
        )
        .await;
    assert_eq!(
        error_codes(&response),
        [("BAD_USER_INPUT".into(), "mediaIds".into())],
        "{response:#}"
    );

    // Avatars: only one's own image; both arguments at once is refused;
    // removeAvatar clears it.
    const PROFILE: &str = "mutation($avatar: ID, $remove: Boolean) {
      updateProfile(avatarMediaId: $avatar, removeAvatar: $remove) { avatarUrl }
    }";
    let other = pictures[1]["id"].clone();
    let response = backend
        .execute(Some(bob), PROFILE, json!({ "avatar": other }))
        .await;
    assert_eq!(
        error_codes(&response),
        [("BAD_USER_INPUT".into(), "avatarMediaId".into())],
        "{response:#}"
    );
    let response = backend
        .execute(
            Some(alice),
            PROFILE,
            json!({ "avatar": other, "remove": true }),
        )
        .await;
    assert_eq!(error_codes(&response)[0].0, "BAD_USER_INPUT");
    let set = backend
        .data(Some(alice), PROFILE, json!({ "avatar": other }))
        .await;
    assert_eq!(set["updateProfile"]["avatarUrl"], pictures[1]["previewUrl"]);
    let cleared = backend
        .data(Some(alice), PROFILE, json!({ "remove": true }))
        .await;
    assert_eq!(cleared["updateProfile"]["avatarUrl"], Value::Null);
}
