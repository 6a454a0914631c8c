//! `testkit::s3::S3Server` against the client media-svc stores blobs with:
//! `object_store`'s `AmazonS3`, over real HTTP with SigV4, and presigned URLs
//! fetched by a plain HTTP client.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart};
use reqwest::{Method, StatusCode};
use warble_testkit::s3::S3Server;

/// S3's smallest part but the last.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// A client of `bucket` on `server`, as media-svc builds one (path-style
/// addressing is the builder's default, so no `with_virtual_hosted_style_request`).
fn client(server: &S3Server, bucket: &str) -> AmazonS3 {
    client_with_secret(server, bucket, server.secret_access_key())
}

fn client_with_secret(server: &S3Server, bucket: &str, secret: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_region(server.region())
        .with_bucket_name(bucket)
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(secret)
        .build()
        .expect("an S3 client of the test server")
}

/// Bytes that differ at every offset a wrong range or part order would show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8)
        .collect()
}

#[tokio::test]
async fn put_get_ranges_head_list_and_delete_round_trip() {
    let server = S3Server::shared();
    let bucket = server.fresh_bucket();
    let store = client(server, &bucket);
    let key = Path::from("media/2024/photo.jpg");
    let body = pattern(10_000);

    let put = store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .unwrap();
    store
        .put(
            &Path::from("media/other.png"),
            PutPayload::from_static(b"png"),
        )
        .await
        .unwrap();
    store
        .put(&Path::from("elsewhere"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    let got = store.get(&key).await.unwrap();
    assert!(put.e_tag.is_some());
    assert_eq!(got.meta.e_tag, put.e_tag);
    let whole = got.bytes().await.unwrap();
    assert_eq!(whole.as_ref(), body.as_slice());
    let range = store.get_range(&key, 1_000..4_321).await.unwrap();
    assert_eq!(range.as_ref(), &body[1_000..4_321]);

    let meta = store.head(&key).await.unwrap();
    assert_eq!(meta.location, key);
    assert_eq!(meta.size, body.len() as u64);
    // No `meta.e_tag`: s3s-fs 0.12 answers HEAD without an ETag (GET and
    // PUT carry one).

    let mut listed: Vec<String> = store
        .list(Some(&Path::from("media")))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(listed, ["media/2024/photo.jpg", "media/other.png"]);

    assert_eq!(
        server.objects_on_disk(&bucket),
        ["elsewhere", "media/2024/photo.jpg", "media/other.png"]
    );
    store.delete(&key).await.unwrap();
    assert!(matches!(
        store.get(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(matches!(
        store.head(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(
        server.objects_on_disk(&bucket),
        ["elsewhere", "media/other.png"],
        "the deleted object's file is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_of_several_parts_reassembles_in_order() {
    let server = S3Server::shared();
    let bucket = server.fresh_bucket();
    let store = client(server, &bucket);
    let key = Path::from("videos/clip.mp4");
    // Two full parts and a short last one.
    let body = pattern(2 * PART_SIZE + 2 * 1024 * 1024 + 7);

    let upload = store.put_multipart(&key).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    for chunk in body.chunks(64 * 1024) {
        writer.wait_for_capacity(2).await.unwrap();
        writer.write(chunk);
    }
    writer.finish().await.unwrap();

    assert_eq!(store.head(&key).await.unwrap().size, body.len() as u64);
    let stored = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert!(
        stored.as_ref() == body.as_slice(),
        "the parts came back in order"
    );
    let tail = store
        .get_range(&key, 2 * PART_SIZE as u64 - 10..2 * PART_SIZE as u64 + 10)
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &body[2 * PART_SIZE - 10..2 * PART_SIZE + 10]);
    let on_disk = std::fs::metadata(server.bucket_dir(&bucket).join("videos/clip.mp4")).unwrap();
    assert_eq!(on_disk.len(), body.len() as u64);
}

#[tokio::test]
async fn an_aborted_multipart_upload_leaves_nothing_behind() {
    let server = S3Server::start();
    let store = client(&server, server.bucket());
    let key = Path::from("abandoned");

    let mut upload = store.put_multipart(&key).await.unwrap();
    upload
        .put_part(PutPayload::from(pattern(PART_SIZE)))
        .await
        .unwrap();
    assert_eq!(server.pending_multipart_uploads(), 1);
    upload.abort().await.unwrap();

    assert_eq!(server.pending_multipart_uploads(), 0);
    assert!(server.objects_on_disk(server.bucket()).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(server.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != server.bucket())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_wrong_secret_or_no_signature_is_refused() {
    let server = S3Server::shared();
    let bucket = server.fresh_bucket();
    let key = Path::from("secret.txt");
    client(server, &bucket)
        .put(&key, PutPayload::from_static(b"mine"))
        .await
        .unwrap();

    let intruder = client_with_secret(server, &bucket, "not-the-secret");
    let refused = intruder
        .put(&Path::from("planted"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("SignatureDoesNotMatch"),
        "{refused}"
    );
    let refused = intruder.get(&key).await.unwrap_err();
    assert!(
        matches!(refused, object_store::Error::PermissionDenied { .. }),
        "a 403 SignatureDoesNotMatch, not retried: {refused:?}"
    );
    assert_eq!(server.objects_on_disk(&bucket), ["secret.txt"]);

    let anonymous = reqwest::get(format!("{}/{bucket}/secret.txt", server.endpoint()))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn presigned_urls_work_for_a_plain_http_client_and_are_checked() {
    let server = S3Server::shared();
    let bucket = server.fresh_bucket();
    let store = client(server, &bucket);
    let key = Path::from("avatars/alice.webp");
    let body = pattern(3_000);
    store
        .put(&key, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let http = reqwest::Client::new();

    let get = store
        .signed_url(Method::GET, &key, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(
        get.query()
            .is_some_and(|query| query.contains("X-Amz-Signature="))
    );
    let fetched = http.get(get.clone()).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), body.as_slice());

    // The signature covers the path and the method: neither can change.
    let mut other_key = get.clone();
    other_key.set_path(&format!("/{bucket}/avatars/mallory.webp"));
    let refused = http.get(other_key).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = http.delete(get.clone()).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(store.head(&key).await.is_ok());

    // A URL signed with another secret is refused.
    let forged = client_with_secret(server, &bucket, "not-the-secret")
        .signed_url(Method::GET, &key, Duration::from_secs(300))
        .await
        .unwrap();
    let refused = http.get(forged).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // An expired one too (X-Amz-Expires counts from X-Amz-Date).
    let expiring = store
        .signed_url(Method::GET, &key, Duration::from_secs(1))
        .await
        .unwrap();
    // Refused once its second is over: polled, with a deadline well past it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http.get(expiring.clone()).send().await.unwrap();
        if answer.status() == StatusCode::FORBIDDEN {
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK, "valid until it expires");
        assert!(
            std::time::Instant::now() < deadline,
            "a URL signed for 1 s still works 15 s later"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A presigned PUT uploads without credentials.
    let upload_key = Path::from("uploads/direct.bin");
    let put = store
        .signed_url(Method::PUT, &upload_key, Duration::from_secs(300))
        .await
        .unwrap();
    let uploaded = http.put(put).body(b"direct".to_vec()).send().await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    let stored = store.get(&upload_key).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored.as_ref(), b"direct");
}

#[test]
fn buckets_are_isolated_and_a_dropped_server_is_gone() {
    let server = S3Server::start();
    let (first, second) = (server.fresh_bucket(), server.fresh_bucket());
    assert_ne!(first, second);
    assert_ne!(first, server.bucket());
    assert!(server.bucket_dir(&first).is_dir());
    assert!(server.objects_on_disk(&second).is_empty());
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));

    // Served from its own runtime: a plain test (no runtime) can use it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        client(&server, &first)
            .put(&Path::from("k"), PutPayload::from_static(b"v"))
            .await
            .unwrap();
        assert!(matches!(
            client(&server, &second).get(&Path::from("k")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    });
    assert_eq!(server.objects_on_disk(&first), ["k"]);

    let (port, dir) = (server.port(), server.dir().to_owned());
    drop(server);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    assert!(!dir.exists(), "the storage directory is removed");
}
