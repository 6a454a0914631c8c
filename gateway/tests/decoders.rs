//! Property tests of every decoder of outside input at the edge: ids,
//! bearer tokens, GraphQL documents (as text and as generated structure,
//! through the executor over a real backend and over an unreachable one),
//! the admission check on its own, the services' validation of the ids
//! they are sent, and the gateway's config. Each property asserts no
//! panic and a sane answer: an exact oracle where one is cheap, a stable
//! error code (and never INTERNAL for the client's own mistake) otherwise.
//!
//! Case counts are fixed and modest (CI runs every property on every
//! push); `PROPTEST_CASES` does not change them.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use async_graphql::Executor as _;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use support::Backend;
use tonic::Code;
use warble_gateway::admission::{self, DocumentLimits, MAX_EXPANDED_SELECTIONS, Refusal};
use warble_gateway::auth::{AuthError, Authenticator, Bearer, Identity, Viewer};
use warble_gateway::config::{AuthConfig, LimitsConfig, SubjectMapping};
use warble_gateway::downstream::Downstream;
use warble_gateway::loaders::Loaders;
use warble_gateway::resolvers::ClientAddr;
use warble_gateway::{Gateway, GatewayConfig};
use warble_mesh::grpc::MeshChannel;
use warble_proto::common::v1::PageRequest;
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::limits::graph::MAX_SUBJECT_BYTES;
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

/// The `extensions.code`s clients may branch on.
const STABLE_CODES: [&str; 7] = [
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "NOT_FOUND",
    "FORBIDDEN",
    "RATE_LIMITED",
    "UNAVAILABLE",
    "INTERNAL",
];

/// A runtime for the async parts (the properties themselves are sync).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `cases` cases of a property. Failures are not persisted: an
/// integration test has no `lib.rs` beside it for proptest to find.
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

/// Text shaped like ids, and almost: digits around `u64::MAX`, signs,
/// leading zeros, whitespace, exponents, hex, full-width and Arabic-Indic
/// digits, and arbitrary text.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|id| id.to_string()),
        "[0-9]{1,22}",
        "[+-]?0*[0-9]{0,21}",
        prop::sample::select(vec![
            "",
            "0",
            "00",
            "-0",
            "+0",
            "+1",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            " 1",
            "1 ",
            "1\n",
            "1e3",
            "0x1f",
            "1_000",
            "1.0",
            "١٢٣",
            "１２３",
            "null",
        ])
        .prop_map(str::to_owned),
        "(?s).{0,30}",
    ]
}

/// The `extensions.code` and `extensions.field` of an `async_graphql::Error`.
fn code_and_field(error: &async_graphql::Error) -> (String, String) {
    let get = |key: &str| {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get(key))
            .map(|value| match value {
                async_graphql::Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    (get("code"), get("field"))
}

proptest! {
    #![proptest_config(cases(256))]

    /// `parse_id` accepts exactly the texts Rust reads as a non-zero u64,
    /// and refuses the rest as BAD_USER_INPUT naming the argument.
    #[test]
    fn parse_id_accepts_exactly_nonzero_u64s(text in id_text(), argument in "[a-zA-Z]{1,10}") {
        let id = async_graphql::ID::from(text.clone());
        let expected = text.parse::<u64>().ok().filter(|id| *id != 0);
        match warble_gateway::model::parse_id(&argument, &id) {
            Ok(parsed) => prop_assert_eq!(Some(parsed), expected),
            Err(error) => {
                prop_assert_eq!(expected, None);
                prop_assert_eq!(code_and_field(&error), ("BAD_USER_INPUT".into(), argument));
            }
        }
    }
}

/// Ids through the schema, as variables and as literals, read and written:
/// a malformed id is BAD_USER_INPUT naming its argument, a well-formed one
/// that names nothing is NOT_FOUND, one naming a real tweet or user finds
/// it (and the id it returns is the canonical one).
#[test]
fn ids_through_the_schema() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    let (viewer, tweet) = runtime.block_on(async {
        let viewer = backend.sign_up("idfuzz").await;
        let tweet = backend.post(viewer, "the one tweet").await;
        (viewer, tweet.parse::<u64>().expect("tweet id"))
    });
    // Text forms of the real ids, canonical and not.
    let forms = |id: u64| vec![id.to_string(), format!("+{id}"), format!("0{id}")];
    let mut real_forms = forms(viewer);
    real_forms.extend(forms(tweet));
    let id_or_real = prop_oneof![
        3 => id_text(),
        1 => prop::sample::select(real_forms),
    ];
    proptest!(cases(64), |(text in id_or_real, as_literal in any::<bool>())| {
        runtime.block_on(check_ids(&backend, viewer, tweet, &text, as_literal))?;
    });
}

/// One id through every field and mutation that takes one.
async fn check_ids(
    backend: &Backend,
    viewer: u64,
    tweet: u64,
    text: &str,
    as_literal: bool,
) -> Result<(), TestCaseError> {
    let parsed = text.parse::<u64>().ok().filter(|id| *id != 0);
    // (operation, the variable's type, selection with `%ID%` for the id,
    // root field, argument, signed in, the real id of that kind)
    let operations = [
        (
            "query",
            "ID!",
            "{ tweet(id: %ID%) { id } }",
            "tweet",
            "id",
            false,
            tweet,
        ),
        (
            "query",
            "ID",
            "{ user(id: %ID%) { id } }",
            "user",
            "id",
            false,
            viewer,
        ),
        (
            "mutation",
            "ID!",
            "{ likeTweet(id: %ID%) { id } }",
            "likeTweet",
            "id",
            true,
            tweet,
        ),
        (
            "mutation",
            "ID!",
            "{ follow(userId: %ID%) { id } }",
            "follow",
            "userId",
            true,
            viewer,
        ),
        (
            "mutation",
            "ID",
            "{ postTweet(text: \"re\", replyTo: %ID%) { replyTo { id } } }",
            "postTweet",
            "replyTo",
            true,
            tweet,
        ),
    ];
    for (operation, variable_type, selection, field, argument, signed_in, real) in operations {
        let (document, variables) = if as_literal {
            // A JSON string is a GraphQL string (same escapes).
            let literal = serde_json::to_string(text).expect("JSON");
            (
                format!("{operation} {}", selection.replace("%ID%", &literal)),
                json!({}),
            )
        } else {
            (
                format!(
                    "{operation}($id: {variable_type}) {}",
                    selection.replace("%ID%", "$id")
                ),
                json!({ "id": text }),
            )
        };
        let response = backend
            .execute(signed_in.then_some(viewer), &document, variables)
            .await;
        check_stable_codes(&response)?;
        let codes = support::error_codes(&response);
        let only_codes: Vec<&str> = codes.iter().map(|(code, _)| code.as_str()).collect();
        match parsed {
            None => prop_assert_eq!(
                &codes,
                &vec![("BAD_USER_INPUT".to_owned(), argument.to_owned())],
                "{} {:?}: {}",
                document,
                text,
                response
            ),
            // Following oneself is refused, however the id is spelled.
            Some(id) if id == real && field == "follow" => {
                prop_assert_eq!(only_codes, vec!["BAD_USER_INPUT"], "{}", response);
            }
            Some(id) if id == real => {
                prop_assert!(codes.is_empty(), "{document} {text:?}: {response}");
                let data = &response["data"][field];
                let returned = if field == "postTweet" {
                    &data["replyTo"]["id"]
                } else {
                    &data["id"]
                };
                prop_assert_eq!(
                    returned,
                    &json!(id.to_string()),
                    "the canonical id comes back"
                );
            }
            Some(_) => prop_assert_eq!(
                only_codes,
                vec!["NOT_FOUND"],
                "{} {:?}: {}",
                document,
                text,
                response
            ),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Bearer tokens
// ---------------------------------------------------------------------------

const SECRET: &str = "decoder-properties-secret-0123456789abcdef";

fn authenticator(issuer: &str, audience: &str) -> Authenticator {
    Authenticator::new(&AuthConfig {
        hs256_secret: SECRET.into(),
        dev_mode: true,
        issuer: issuer.into(),
        audience: audience.into(),
        ..AuthConfig::default()
    })
    .expect("authenticator")
}

/// [`Authenticator::verify`], which needs no runtime with a static key.
fn verify(auth: &Authenticator, token: &str) -> Result<Viewer, AuthError> {
    futures::executor::block_on(auth.verify(token))
}

/// [`Authenticator::verify_header`], likewise.
fn verify_header(auth: &Authenticator, header: &str) -> Result<Viewer, AuthError> {
    futures::executor::block_on(auth.verify_header(header))
}

/// An edit of a token: flip, insert, delete or swap a character.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, char),
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
    Swap(prop::sample::Index),
}

/// Characters a token is made of, and a few it is not.
fn token_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => prop::sample::select(vec!['.', '=', '+', '/', ' ', '\n', '\0', 'é']),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), token_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
        1 => (any::<prop::sample::Index>(), token_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Delete),
        1 => any::<prop::sample::Index>().prop_map(Edit::Swap),
    ]
}

/// `token` with `edits` applied (on characters, so any text stays valid).
fn apply(token: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    for edit in edits {
        match edit {
            Edit::Replace(at, c) if !chars.is_empty() => {
                let at = at.index(chars.len());
                chars[at] = *c;
            }
            Edit::Insert(at, c) => {
                let at = at.index(chars.len() + 1);
                chars.insert(at, *c);
            }
            Edit::Delete(at) if !chars.is_empty() => {
                let at = at.index(chars.len());
                chars.remove(at);
            }
            Edit::Swap(at) if chars.len() > 1 => {
                let at = at.index(chars.len() - 1);
                chars.swap(at, at + 1);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// base64url without padding, as JWTs encode their parts.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// A token signed with [`SECRET`] carrying `claims`.
fn signed(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode")
}

/// Seconds from now, well clear of the 30 s leeway on either side.
fn clear_offset() -> impl Strategy<Value = i64> {
    prop_oneof![-1_000_000i64..-60, 60i64..1_000_000]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any text, bare or after `Bearer `, and any three base64url parts of
    /// any JSON, is refused without a panic.
    #[test]
    fn arbitrary_text_is_no_token(
        text in "(?s).{0,200}",
        header in "(?s).{0,60}",
        claims in "(?s).{0,80}",
        signature in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let auth = authenticator("", "");
        let header_value = format!("Bearer {text}");
        prop_assert!(verify(&auth, &text).is_err());
        prop_assert!(verify_header(&auth, &text).is_err());
        prop_assert!(verify_header(&auth, &header_value).is_err());
        let shaped = format!("{}.{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()), b64(&signature));
        prop_assert!(verify(&auth, &shaped).is_err());
        let json_shaped = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.as_bytes()),
            b64(&signature),
        );
        prop_assert!(verify(&auth, &json_shaped).is_err());
    }

    /// Any edit of an issued token is refused, unless the edits cancel out;
    /// in a header, only surrounding whitespace is forgiven.
    #[test]
    fn edited_tokens_are_refused(
        user_id in 1u64..,
        edits in prop::collection::vec(edit(), 1..4),
        scoped in any::<bool>(),
    ) {
        let auth = if scoped { authenticator("warble", "web") } else { authenticator("", "") };
        let token = auth.issue(user_id).expect("dev mode issues tokens");
        prop_assert_eq!(verify(&auth, &token).ok(), Some(Viewer { user_id }));
        let edited = apply(&token, &edits);
        let verified = verify(&auth, &edited);
        if edited == token {
            prop_assert_eq!(verified.ok(), Some(Viewer { user_id }));
        } else {
            prop_assert!(verified.is_err(), "{token} edited to {edited} verified");
        }
        let from_header = verify_header(&auth, &format!("Bearer {edited}"));
        if edited.trim() == token {
            prop_assert_eq!(from_header.ok(), Some(Viewer { user_id }));
        } else {
            prop_assert!(from_header.is_err(), "{token} edited to {edited} verified");
        }
    }

    /// Properly signed tokens with arbitrary claims: a viewer exactly when
    /// `sub` is a non-zero u64 written as a string, the token is live, and
    /// a configured issuer and audience match.
    #[test]
    fn signed_claims_are_read_exactly(
        sub in prop_oneof![
            3 => id_text().prop_map(Value::String),
            1 => any::<u64>().prop_map(Value::from),
            1 => Just(Value::Null),
        ],
        exp in proptest::option::weighted(0.9, clear_offset()),
        nbf in proptest::option::of(clear_offset()),
        iss in proptest::option::of(prop::sample::select(vec!["warble", "Warble", "other", ""])),
        aud in proptest::option::of(prop_oneof![
            prop::sample::select(vec!["web", "mobile", ""]).prop_map(Value::from),
            prop::collection::vec(prop::sample::select(vec!["web", "mobile"]), 0..3).prop_map(Value::from),
        ]),
        scoped in any::<bool>(),
    ) {
        let now = now_secs();
        let mut claims = json!({ "sub": sub, "iat": now });
        if let Some(exp) = exp {
            claims["exp"] = json!(now + exp);
        }
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(now + nbf);
        }
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = &aud {
            claims["aud"] = aud.clone();
        }
        let auth = if scoped { authenticator("warble", "web") } else { authenticator("", "") };
        let audience_ok = match &aud {
            Some(Value::String(one)) => one == "web",
            Some(Value::Array(many)) => many.iter().any(|one| one == "web"),
            _ => false,
        };
        let expected = sub
            .as_str()
            .and_then(|sub| sub.parse::<u64>().ok())
            .filter(|id| *id != 0)
            .filter(|_| exp.is_some_and(|exp| exp > 0))
            .filter(|_| nbf.is_none_or(|nbf| nbf < 0))
            .filter(|_| !scoped || (iss == Some("warble") && audience_ok))
            .map(|user_id| Viewer { user_id });
        prop_assert_eq!(verify(&auth, &signed(&claims)).ok(), expected, "{}", claims);
    }

    /// With `auth.subjects = "registered"`, a properly signed token names
    /// the identity (`iss`, `sub`) exactly as sent, whatever the subject's
    /// text, when the subject is 1 to 255 bytes; never a user id.
    #[test]
    fn signed_identities_are_read_exactly(
        sub in prop_oneof![
            3 => ".{0,300}",
            1 => id_text(),
        ],
        numeric_sub in any::<bool>(),
    ) {
        let auth = Authenticator::new(&AuthConfig {
            hs256_secret: SECRET.into(),
            issuer: IDP.into(),
            audience: "web".into(),
            subjects: SubjectMapping::Registered,
            ..AuthConfig::default()
        })
        .expect("authenticator");
        let now = now_secs();
        let sub_claim = if numeric_sub { json!(sub.len()) } else { json!(sub) };
        let claims = json!({ "sub": sub_claim, "iat": now, "exp": now + 600, "iss": IDP, "aud": "web" });
        let expected = (!numeric_sub && !sub.is_empty() && sub.len() <= MAX_SUBJECT_BYTES).then(|| {
            Bearer::Identity(Identity { issuer: IDP.into(), subject: sub.clone() })
        });
        let verified = futures::executor::block_on(auth.verify_bearer(&signed(&claims)));
        prop_assert_eq!(verified.ok().map(|(bearer, _)| bearer), expected, "{}", claims);
    }
}

/// The issuer of the identity-provider properties.
const IDP: &str = "https://tenant.id.example/";

// ---------------------------------------------------------------------------
// GraphQL documents
// ---------------------------------------------------------------------------

/// Every error has a stable code, and an error that belongs to no field
/// (syntax, validation, admission: the client's document) is never INTERNAL.
fn check_stable_codes(response: &Value) -> Result<(), TestCaseError> {
    for error in response["errors"].as_array().into_iter().flatten() {
        let code = error["extensions"]["code"].as_str().unwrap_or_default();
        prop_assert!(STABLE_CODES.contains(&code), "no stable code: {error}");
        let in_a_field = error["path"]
            .as_array()
            .is_some_and(|path| !path.is_empty());
        prop_assert!(
            in_a_field || code != "INTERNAL",
            "INTERNAL for the document itself: {error}"
        );
    }
    Ok(())
}

/// What a response to `document` must look like when nothing downstream
/// misbehaves: stable codes; a document that does not parse gets no data
/// and only BAD_USER_INPUT; nothing is INTERNAL; nothing is UNAVAILABLE
/// unless `unreachable`.
fn check_response(
    document: &str,
    response: &Value,
    unreachable: bool,
) -> Result<(), TestCaseError> {
    check_stable_codes(response)?;
    let codes: Vec<String> = support::error_codes(response)
        .into_iter()
        .map(|(code, _)| code)
        .collect();
    // The oracle must not parse what the gateway refuses to parse: the
    // parser itself would overflow this thread's stack on deep nesting.
    let parses = warble_gateway::admission::check_nesting(document).is_ok()
        && async_graphql::parser::parse_query(document).is_ok();
    if !parses {
        prop_assert_eq!(&response["data"], &Value::Null, "{}", response);
        prop_assert!(!codes.is_empty(), "{response}");
        prop_assert!(
            codes.iter().all(|code| code == "BAD_USER_INPUT"),
            "{response}"
        );
    }
    prop_assert!(
        !codes.iter().any(|code| code == "INTERNAL"),
        "{document}\n{response:#}"
    );
    if !unreachable {
        prop_assert!(
            !codes.iter().any(|code| code == "UNAVAILABLE"),
            "{document}\n{response:#}"
        );
    }
    Ok(())
}

/// Choices for a deterministic document builder: proptest generates and
/// shrinks the list (towards fewer and smaller choices, hence simpler
/// documents); once it runs out every choice is the first (`__typename`
/// and nothing optional), so every document ends.
struct Choices<'a> {
    data: &'a [u16],
    at: usize,
}

impl Choices<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let choice = self.data.get(self.at).copied();
        self.at += 1;
        choice.map_or(0, |choice| usize::from(choice) % n.max(1))
    }

    fn exhausted(&self) -> bool {
        self.at >= self.data.len()
    }

    /// True `percent` times in a hundred (never once exhausted).
    fn chance(&mut self, percent: usize) -> bool {
        self.pick(100) >= 100 - percent
    }

    fn select<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.pick(items.len())]
    }
}

/// The schema's object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Query,
    Mutation,
    Subscription,
    User,
    Tweet,
    TweetConnection,
    TweetEdge,
    UserConnection,
    UserEdge,
    PageInfo,
    AuthPayload,
}

/// What an argument takes.
#[derive(Debug, Clone, Copy)]
enum Arg {
    Id,
    Int,
    Str,
}

/// A field: name, arguments (name, kind, required), and its object type
/// (`None` for a leaf).
type FieldDef = (
    &'static str,
    &'static [(&'static str, Arg, bool)],
    Option<Ty>,
);

const PAGE_ARGS: &[(&str, Arg, bool)] = &[("first", Arg::Int, false), ("after", Arg::Str, false)];
const ID_ARG: &[(&str, Arg, bool)] = &[("id", Arg::Id, true)];

fn fields(ty: Ty) -> &'static [FieldDef] {
    match ty {
        Ty::Query => &[
            ("__typename", &[], None),
            ("viewer", &[], Some(Ty::User)),
            (
                "user",
                &[("id", Arg::Id, false), ("username", Arg::Str, false)],
                Some(Ty::User),
            ),
            ("tweet", ID_ARG, Some(Ty::Tweet)),
            ("homeTimeline", PAGE_ARGS, Some(Ty::TweetConnection)),
            (
                "userTimeline",
                &[
                    ("username", Arg::Str, true),
                    ("first", Arg::Int, false),
                    ("after", Arg::Str, false),
                ],
                Some(Ty::TweetConnection),
            ),
        ],
        Ty::Mutation => &[
            ("__typename", &[], None),
            (
                "postTweet",
                &[
                    ("text", Arg::Str, true),
                    ("replyTo", Arg::Id, false),
                    ("quoteOf", Arg::Id, false),
                    ("idempotencyKey", Arg::Str, false),
                ],
                Some(Ty::Tweet),
            ),
            ("deleteTweet", ID_ARG, None),
            ("likeTweet", ID_ARG, Some(Ty::Tweet)),
            ("unlikeTweet", ID_ARG, Some(Ty::Tweet)),
            ("retweet", ID_ARG, Some(Ty::Tweet)),
            ("undoRetweet", ID_ARG, Some(Ty::Tweet)),
            ("follow", &[("userId", Arg::Id, true)], Some(Ty::User)),
            ("unfollow", &[("userId", Arg::Id, true)], Some(Ty::User)),
            (
                "signUp",
                &[
                    ("username", Arg::Str, true),
                    ("displayName", Arg::Str, true),
                    ("bio", Arg::Str, false),
                ],
                Some(Ty::AuthPayload),
            ),
            (
                "issueToken",
                &[("username", Arg::Str, true)],
                Some(Ty::AuthPayload),
            ),
        ],
        // No `__typename`: a subscription selects exactly one root field.
        Ty::Subscription => &[("homeTimelineUpdates", &[], Some(Ty::Tweet))],
        Ty::User => &[
            ("__typename", &[], None),
            ("id", &[], None),
            ("username", &[], None),
            ("displayName", &[], None),
            ("bio", &[], None),
            ("createdAt", &[], None),
            ("followersCount", &[], None),
            ("followingCount", &[], None),
            ("viewerFollows", &[], None),
            ("followers", PAGE_ARGS, Some(Ty::UserConnection)),
            ("following", PAGE_ARGS, Some(Ty::UserConnection)),
        ],
        Ty::Tweet => &[
            ("__typename", &[], None),
            ("id", &[], None),
            ("text", &[], None),
            ("createdAt", &[], None),
            ("author", &[], Some(Ty::User)),
            ("replyTo", &[], Some(Ty::Tweet)),
            ("quoteOf", &[], Some(Ty::Tweet)),
            ("hashtags", &[], None),
            ("mentions", &[], None),
            ("likeCount", &[], None),
            ("retweetCount", &[], None),
            ("replyCount", &[], None),
            ("quoteCount", &[], None),
            ("viewerHasLiked", &[], None),
            ("viewerHasRetweeted", &[], None),
        ],
        Ty::TweetConnection => &[
            ("__typename", &[], None),
            ("edges", &[], Some(Ty::TweetEdge)),
            ("pageInfo", &[], Some(Ty::PageInfo)),
        ],
        Ty::TweetEdge => &[
            ("__typename", &[], None),
            ("node", &[], Some(Ty::Tweet)),
            ("cursor", &[], None),
        ],
        Ty::UserConnection => &[
            ("__typename", &[], None),
            ("edges", &[], Some(Ty::UserEdge)),
            ("pageInfo", &[], Some(Ty::PageInfo)),
        ],
        Ty::UserEdge => &[
            ("__typename", &[], None),
            ("node", &[], Some(Ty::User)),
            ("cursor", &[], None),
            ("followedAt", &[], None),
        ],
        Ty::PageInfo => &[
            ("__typename", &[], None),
            ("hasNextPage", &[], None),
            ("hasPreviousPage", &[], None),
            ("startCursor", &[], None),
            ("endCursor", &[], None),
        ],
        Ty::AuthPayload => &[
            ("__typename", &[], None),
            ("token", &[], None),
            ("user", &[], Some(Ty::User)),
        ],
    }
}

/// Types a fragment may be on, by name (the last two do not exist or are
/// not composite).
const TYPE_NAMES: &[(&str, Option<Ty>)] = &[
    ("User", Some(Ty::User)),
    ("Tweet", Some(Ty::Tweet)),
    ("TweetConnection", Some(Ty::TweetConnection)),
    ("UserConnection", Some(Ty::UserConnection)),
    ("TweetEdge", Some(Ty::TweetEdge)),
    ("UserEdge", Some(Ty::UserEdge)),
    ("PageInfo", Some(Ty::PageInfo)),
    ("AuthPayload", Some(Ty::AuthPayload)),
    ("Query", Some(Ty::Query)),
    ("Nope", None),
    ("String", None),
];

/// Every field name in the schema, for fields put where they do not belong.
const ALL_FIELD_NAMES: &[&str] = &[
    "viewer",
    "user",
    "tweet",
    "homeTimeline",
    "userTimeline",
    "followers",
    "following",
    "edges",
    "node",
    "id",
    "text",
    "author",
    "username",
    "pageInfo",
    "cursor",
    "postTweet",
    "signUp",
    "__schema",
    "__type",
    "nope",
];

const ALIASES: &[&str] = &["a", "b", "id", "text", "node", "user", "x"];

/// Deepest generated nesting: past the gateway's limit of 12, so some
/// documents are refused for depth.
const MAX_GENERATED_DEPTH: usize = 15;

/// Builds a document (and its variables) from choices. Two documents in
/// three are `tame`: valid for the schema by construction (fragments
/// defined where they are spread and on the right type, arguments and
/// variables of the right type, no conflicting fields), so they reach the
/// resolvers with arbitrary argument values (pages of any size, any
/// cursor, any id, any username). The rest are `wild`: names where they do
/// not belong, wrong types, undefined and unused fragments and variables,
/// unknown directives, conflicting aliases.
struct DocumentBuilder<'a> {
    choices: Choices<'a>,
    wild: bool,
    /// Defined fragments: name, type, body.
    fragments: Vec<(String, Ty, String)>,
    /// Variables used: index, GraphQL type, and the JSON to send.
    variables: Vec<(usize, String, Value)>,
    /// For unique aliases.
    aliases: usize,
}

impl DocumentBuilder<'_> {
    fn build(data: &[u16]) -> (String, Value) {
        let mut builder = DocumentBuilder {
            choices: Choices { data, at: 0 },
            wild: false,
            fragments: Vec::new(),
            variables: Vec::new(),
            aliases: 0,
        };
        builder.wild = builder.choices.pick(3) == 2;
        let mut document = builder.operation();
        if builder.perturb(5) {
            // A second operation: without an operation name, refused.
            document.push(' ');
            document.push_str(&builder.operation());
        }
        if builder.perturb(20) {
            // Fragments that are never used, on any type.
            for _ in 0..1 + builder.choices.pick(3) {
                let (name, ty) = TYPE_NAMES[builder.choices.pick(TYPE_NAMES.len())];
                let body = builder.selection_set(ty.unwrap_or(Ty::User), 2);
                let index = builder.fragments.len();
                document.push_str(&format!(" fragment W{index} on {name} {body}"));
            }
        }
        for (name, ty, body) in &builder.fragments {
            let on = type_name(*ty);
            document.push_str(&format!(" fragment {name} on {on} {body}"));
        }
        let variables = builder.variable_values();
        (document, variables)
    }

    /// True `percent` times in a hundred, in a wild document only.
    fn perturb(&mut self, percent: usize) -> bool {
        self.wild && self.choices.chance(percent)
    }

    fn operation(&mut self) -> String {
        let (keyword, root) = match self.choices.pick(20) {
            0..=13 => ("query", Ty::Query),
            14..=17 => ("mutation", Ty::Mutation),
            18 => ("subscription", Ty::Subscription),
            _ => ("", Ty::Query),
        };
        let first_variable = self.variables.len();
        let body = if root == Ty::Subscription && !self.wild {
            let tweet = self.selection_set(Ty::Tweet, 2);
            format!("{{ homeTimelineUpdates {tweet} }}")
        } else {
            self.selection_set(root, 1)
        };
        let name = if self.choices.chance(30) { " Op" } else { "" };
        let mut declarations = Vec::new();
        let used: Vec<(usize, String)> = self.variables[first_variable..]
            .iter()
            .map(|(index, ty, _)| (*index, ty.clone()))
            .collect();
        for (index, ty) in used {
            if self.perturb(10) {
                continue; // used, not declared
            }
            let ty = if self.perturb(10) {
                self.choices
                    .select(&["ID", "Int!", "String", "[ID!]", "Nope"])
                    .to_owned()
            } else {
                ty
            };
            declarations.push(format!("$v{index}: {ty}"));
        }
        if self.perturb(5) {
            declarations.push("$unused: Int = 5".into());
        }
        if keyword.is_empty() && declarations.is_empty() {
            return body;
        }
        let keyword = if keyword.is_empty() { "query" } else { keyword };
        let declarations = if declarations.is_empty() {
            String::new()
        } else {
            format!("({})", declarations.join(", "))
        };
        format!("{keyword}{name}{declarations} {body}")
    }

    fn selection_set(&mut self, ty: Ty, depth: usize) -> String {
        let count = 1 + self.choices.pick(4);
        let mut items = Vec::new();
        for _ in 0..count {
            if self.choices.exhausted() || depth >= MAX_GENERATED_DEPTH {
                let last = match ty {
                    Ty::Subscription => "homeTimelineUpdates { id }",
                    _ => "__typename",
                };
                items.push(last.to_owned());
                continue;
            }
            let item = match self.choices.pick(100) {
                0..=71 => self.field(ty, depth),
                72..=81 => {
                    let condition = if self.perturb(30) {
                        format!(" on {}", TYPE_NAMES[self.choices.pick(TYPE_NAMES.len())].0)
                    } else if self.choices.chance(30) {
                        String::new()
                    } else {
                        format!(" on {}", type_name(ty))
                    };
                    let directives = self.directives();
                    let body = self.selection_set(ty, depth + 1);
                    format!("...{condition}{directives} {body}")
                }
                82..=93 => {
                    let name = if self.perturb(30) {
                        format!("F{}", self.choices.pick(6))
                    } else {
                        self.fragment(ty, depth)
                    };
                    let directives = self.directives();
                    format!("...{name}{directives}")
                }
                _ if self.wild => {
                    let name = self.choices.select(ALL_FIELD_NAMES);
                    let args = if self.choices.chance(50) {
                        format!("(id: {})", self.value(Arg::Id, false))
                    } else {
                        String::new()
                    };
                    let body = if self.choices.chance(50) {
                        format!(" {}", self.selection_set(ty, depth + 1))
                    } else {
                        String::new()
                    };
                    format!("{name}{args}{body}")
                }
                _ => self.field(ty, depth),
            };
            items.push(item);
        }
        format!("{{ {} }}", items.join(" "))
    }

    /// The name of a fragment on `ty` to spread: an existing one, or a new
    /// one defined now (after its own body, so fragments never cycle).
    fn fragment(&mut self, ty: Ty, depth: usize) -> String {
        let existing: Vec<String> = self
            .fragments
            .iter()
            .filter(|(_, t, _)| *t == ty)
            .map(|(name, _, _)| name.clone())
            .collect();
        if !existing.is_empty() && (self.fragments.len() >= 4 || self.choices.chance(50)) {
            return existing[self.choices.pick(existing.len())].clone();
        }
        let body = self.selection_set(ty, depth + 1);
        let name = format!("F{}", self.fragments.len());
        self.fragments.push((name.clone(), ty, body));
        name
    }

    fn field(&mut self, ty: Ty, depth: usize) -> String {
        let defs = fields(ty);
        let (name, args, child) = defs[self.choices.pick(defs.len())];
        let mut arguments = Vec::new();
        for (arg, kind, required) in args {
            // Mostly a small `first`: the default page of 20 multiplies
            // the complexity of everything nested below it.
            let often = if *arg == "first" { 80 } else { 50 };
            if (*required && !self.perturb(10)) || self.choices.chance(often) {
                arguments.push(format!("{arg}: {}", self.value(*kind, *required)));
            }
        }
        if self.perturb(5) {
            arguments.push(format!("bogus: {}", self.value(Arg::Int, false)));
        }
        // Fields with arguments or a selection get a unique alias, so two
        // of them never conflict; wild documents use clashing ones.
        let alias = if self.perturb(20) {
            format!("{}: ", self.choices.select(ALIASES))
        } else if !arguments.is_empty() || child.is_some() || self.choices.chance(10) {
            self.aliases += 1;
            format!("a{}: ", self.aliases)
        } else {
            String::new()
        };
        let arguments = if arguments.is_empty() {
            String::new()
        } else {
            format!("({})", arguments.join(", "))
        };
        // async-graphql 7.2 does not count a variable used only in a
        // directive on `__typename` as used (and refuses the document), so
        // tame documents put none there.
        let directives = if name == "__typename" && !self.wild {
            String::new()
        } else {
            self.directives()
        };
        let body = match child {
            Some(child) if !self.perturb(10) => {
                format!(" {}", self.selection_set(child, depth + 1))
            }
            None if self.perturb(10) => " { id }".to_owned(),
            _ => String::new(),
        };
        format!("{alias}{name}{arguments}{directives}{body}")
    }

    fn directives(&mut self) -> String {
        if !self.choices.chance(10) {
            return String::new();
        }
        if self.perturb(30) {
            return self
                .choices
                .select(&[" @deprecated", " @nope(x: 1)", " @skip", " @include(if: 1)"])
                .into();
        }
        let name = self.choices.select(&["skip", "include"]);
        let condition = if self.choices.chance(30) {
            {
                let value = self.choices.chance(50);
                self.variable("Boolean!", json!(value))
            }
        } else {
            self.choices.select(&["true", "false"]).into()
        };
        format!(" @{name}(if: {condition})")
    }

    /// A new variable of type `ty` with `value`; wild documents sometimes
    /// send another value, or none.
    fn variable(&mut self, ty: &str, value: Value) -> String {
        let index = self.variables.len();
        let value = if self.perturb(20) {
            match self.choices.pick(6) {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(1u64 << 63),
                3 => json!(1.5),
                4 => json!(["1", 2]),
                _ => json!({ "a": 1 }),
            }
        } else {
            value
        };
        self.variables.push((index, ty.to_owned(), value));
        format!("$v{index}")
    }

    /// An argument value of `kind`, inline or in a variable, with any
    /// content; in a wild document sometimes null or of another kind.
    fn value(&mut self, kind: Arg, required: bool) -> String {
        if self.perturb(15) {
            return self
                .choices
                .select(&[
                    "null", "true", "1.5", "[1, 2]", "{a: 1}", "ENUM", "\"\"", "[[[]]]",
                ])
                .into();
        }
        if !required && self.choices.chance(5) {
            return "null".into();
        }
        let (ty, text) = match kind {
            Arg::Int => {
                let first = if self.choices.chance(30) {
                    self.choices
                        .select(&["20", "100", "101", "-1", "2147483647", "-2147483648"])
                } else {
                    self.choices.select(&["0", "1", "2", "3"])
                };
                ("Int", first.to_owned())
            }
            Arg::Id => ("ID", self.id_text()),
            Arg::Str => ("String", self.text()),
        };
        if self.choices.chance(30) {
            let ty = if required {
                format!("{ty}!")
            } else {
                ty.to_owned()
            };
            let value = match kind {
                Arg::Int => json!(text.parse::<i64>().unwrap_or(0)),
                _ => json!(text),
            };
            return self.variable(&ty, value);
        }
        match kind {
            Arg::Int => text,
            // Ids are strings, or ints when they look like one.
            Arg::Id if text.parse::<u64>().is_ok() && self.choices.chance(30) => text,
            _ => serde_json::to_string(&text).expect("JSON"),
        }
    }

    fn id_text(&mut self) -> String {
        match self.choices.pick(4) {
            0 => self
                .choices
                .select(&[
                    "0",
                    "1",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-1",
                    "x",
                ])
                .into(),
            1 => self.text(),
            _ => (self.choices.pick(usize::from(u16::MAX)) as u64 * 1_000_003).to_string(),
        }
    }

    fn text(&mut self) -> String {
        match self.choices.pick(6) {
            // Cursors: real ones, for the lists the gateway pages and others.
            0 => {
                let kind = self.choices.select(&["0", "1", "33", "71", "72", "200"]);
                let kind = kind.parse::<u8>().unwrap_or(0);
                let positions: Vec<u64> = (0..self.choices.pick(4))
                    .map(|_| self.choices.pick(usize::from(u16::MAX)) as u64)
                    .collect();
                warble_mesh::cursor::encode(kind, &positions)
            }
            1 => "x".repeat(self.choices.pick(300)),
            2 => self
                .choices
                .select(&[
                    "",
                    " ",
                    "alice",
                    "Alice_1",
                    "bob",
                    "0",
                    "é\u{301}",
                    "\u{202e}",
                    "#tag @bob",
                ])
                .into(),
            3 => self.choices.pick(usize::from(u16::MAX)).to_string(),
            _ => {
                let length = self.choices.pick(12);
                (0..length)
                    .map(|_| char::from_u32(self.choices.pick(0x3000) as u32).unwrap_or('?'))
                    .collect()
            }
        }
    }

    /// The variables' values; a wild document sometimes leaves one out.
    fn variable_values(&mut self) -> Value {
        let mut values = serde_json::Map::new();
        for (index, _, value) in self.variables.clone() {
            if !self.perturb(10) {
                values.insert(format!("v{index}"), value);
            }
        }
        Value::Object(values)
    }
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Query => "Query",
        Ty::Mutation => "Mutation",
        Ty::Subscription => "Subscription",
        Ty::User => "User",
        Ty::Tweet => "Tweet",
        Ty::TweetConnection => "TweetConnection",
        Ty::TweetEdge => "TweetEdge",
        Ty::UserConnection => "UserConnection",
        Ty::UserEdge => "UserEdge",
        Ty::PageInfo => "PageInfo",
        Ty::AuthPayload => "AuthPayload",
    }
}

/// Choices for [`DocumentBuilder`], and sometimes a one-character
/// corruption of the document it builds.
fn generated_document() -> impl Strategy<Value = (String, Value)> {
    (
        prop::collection::vec(any::<u16>(), 0..300),
        proptest::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(choices, corrupt)| {
            let (mut document, variables) = DocumentBuilder::build(&choices);
            if let Some(at) = corrupt {
                let chars: Vec<char> = document.chars().collect();
                let at = at.index(chars.len());
                document = chars[..at].iter().chain(&chars[at + 1..]).collect();
            }
            (document, variables)
        })
}

/// Text shaped like GraphQL and not: tokens of the language and the
/// schema's names in any order, and arbitrary text.
fn document_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ":",
        "$",
        "$v",
        "@",
        "@skip",
        "...",
        "on",
        "query",
        "mutation",
        "subscription",
        "fragment",
        "F",
        "viewer",
        "user",
        "tweet",
        "homeTimeline",
        "userTimeline",
        "followers",
        "following",
        "edges",
        "node",
        "id",
        "text",
        "author",
        "username",
        "__schema",
        "__typename",
        "\"",
        "\"\"\"",
        "\"x\"",
        "#",
        "\n",
        ",",
        "=",
        "!",
        "1",
        "-1",
        "1e999",
        "0x1",
        "true",
        "null",
        "Int",
        "ID!",
        "\\u",
        "\u{feff}",
        "\u{0}",
    ]);
    prop_oneof![
        "(?s).{0,200}",
        prop::collection::vec(token, 0..80).prop_map(|tokens| tokens.join(" ")),
        prop::collection::vec(
            prop::sample::select(vec!["{", "}", "(", ")", "[", "]", "...", "a", ":", "\""]),
            0..80
        )
        .prop_map(|tokens| tokens.concat()),
    ]
}

/// A gateway whose downstream services are all unreachable, and the
/// per-request loaders over the same addresses.
struct Unreachable {
    gateway: Gateway,
    downstream: Downstream,
}

impl Unreachable {
    /// Must be called inside a runtime (the channels connect lazily).
    fn start() -> Self {
        // Port 1 on loopback: nothing listens, connections are refused at once.
        let addr = "127.0.0.1:1";
        let config = GatewayConfig {
            tweet_service_addr: addr.into(),
            graph_service_addr: addr.into(),
            timeline_service_addr: addr.into(),
            notify_service_addr: addr.into(),
            media_service_addr: addr.into(),
            request_timeout_ms: 500,
            auth: AuthConfig {
                hs256_secret: SECRET.into(),
                dev_mode: true,
                ..AuthConfig::default()
            },
            limits: LimitsConfig {
                mutation_burst: 100_000,
                mutations_per_minute: 100_000,
                ..LimitsConfig::default()
            },
            ..GatewayConfig::default()
        };
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let downstream =
            Downstream::connect(addr, addr, addr, addr, addr, addr, timeout, timeout, None)
                .expect("a valid address");
        let gateway = Gateway::new(&config, None).expect("gateway");
        Self {
            gateway,
            downstream,
        }
    }

    /// Executes as the signed-out client the HTTP layer would build.
    async fn execute(&self, query: &str, variables: Value) -> Value {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(Loaders::new(&self.downstream, None))
            .data(ClientAddr("127.0.0.1".into()));
        let response = self.gateway.executor().execute(request).await;
        serde_json::to_value(&response).expect("a response serializes")
    }
}

/// Arbitrary text as a document, with no viewer: never a panic, only
/// stable codes, BAD_USER_INPUT for what does not parse.
#[test]
fn arbitrary_text_documents() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    proptest!(cases(256), |(document in document_text())| {
        let response = runtime.block_on(backend.execute(None, &document, json!({})));
        check_response(&document, &response, false)?;
    });
}

/// Documents built from the schema's real names (nested fields, aliases,
/// arguments of every kind, inline fragments, spreads of defined and
/// undefined fragments, directives, variables), executed over a real
/// backend, mostly with no viewer.
#[test]
fn generated_documents_over_a_backend() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    let bob = runtime.block_on(async {
        // Something to find: a user, a follower and a tweet.
        let alice = backend.sign_up("alice").await;
        let bob = backend.sign_up("bob").await;
        backend.follow(bob, alice).await;
        backend.post(alice, "hello #warble @bob").await;
        bob
    });
    // Mostly signed out; signed in one time in four, so the home timeline
    // (and its cursors) and the mutations run too.
    let viewer = proptest::option::weighted(0.25, Just(bob));
    proptest!(cases(256), |((document, variables) in generated_document(), viewer in viewer)| {
        let response = runtime.block_on(backend.execute(viewer, &document, variables));
        check_response(&document, &response, false)?;
    });
}

/// The same documents with every downstream service unreachable: what
/// needs one is UNAVAILABLE, never INTERNAL.
#[test]
fn generated_documents_with_no_downstream() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let unreachable = Unreachable::start();
    proptest!(cases(128), |((document, variables) in generated_document())| {
        let response = runtime.block_on(unreachable.execute(&document, variables));
        check_response(&document, &response, true)?;
    });
}

/// Deep nesting of every kind the grammar allows, up to what fits in a
/// request body: parsed (or refused) without exhausting the stack, and
/// refused as BAD_USER_INPUT.
#[test]
fn deeply_nested_documents() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    let max_body = LimitsConfig::default().max_body_bytes;
    proptest!(cases(48), |(
        shape in 0usize..5,
        depth in prop_oneof![1usize..200, 200usize..2_000, 2_000usize..30_000],
    )| {
        let document = match shape {
            0 => format!("{{{}id{}}}", "viewer { ".repeat(depth), " }".repeat(depth)),
            1 => format!("{{ user(id: {}1{}) {{ id }} }}", "[".repeat(depth), "]".repeat(depth)),
            2 => format!("{{ user(id: {}1{}) {{ id }} }}", "{a: ".repeat(depth), "}".repeat(depth)),
            3 => format!("{{ viewer {{ {} id {} }} }}", "... on User { ".repeat(depth), "}".repeat(depth)),
            _ => "{".repeat(depth),
        };
        prop_assume!(document.len() <= max_body);
        let started = Instant::now();
        let response = runtime.block_on(backend.execute(None, &document, json!({})));
        check_response(&document, &response, false)?;
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Inline fragments add no depth; everything else here is refused.
        if depth > 12 && shape != 3 {
            let codes = support::error_codes(&response);
            prop_assert!(!codes.is_empty(), "depth {depth} of shape {shape} was run");
        }
    });
}

/// Found by `deeply_nested_documents`: nested list or object values in an
/// argument (or a variable's default) overflow the stack of the thread that
/// parses the document, which aborts the whole process: no panic to catch,
/// every in-flight request lost. async-graphql's parser bounds the nesting
/// of selection sets (64) but not of values. With a 2 MiB stack (the test
/// threads', and tokio's workers' by default) the parse overflows from
/// about 350 levels in a debug build and about 1,550 (lists) or 1,230
/// (objects) in a release build: `{ user(id: [[[…1…]]]) { id } }` is 3 KB,
/// far inside `limits.max_body_bytes`. Until the gateway refuses such
/// documents before parsing them, this test aborts (SIGABRT) at the first
/// depth that overflows.
#[test]
fn nested_values_in_a_small_document_are_refused_without_a_crash() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    let max_body = LimitsConfig::default().max_body_bytes;
    for depth in (25..=2_500).step_by(25) {
        for document in [
            format!(
                "{{ user(id: {}1{}) {{ id }} }}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
            format!(
                "{{ user(id: {}1{}) {{ id }} }}",
                "{a: ".repeat(depth),
                "}".repeat(depth)
            ),
            format!(
                "query($v: ID = {}1{}) {{ user(id: $v) {{ id }} }}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        ] {
            assert!(document.len() <= max_body);
            let response = runtime.block_on(backend.execute(None, &document, json!({})));
            let codes = support::error_codes(&response);
            assert!(
                !codes.is_empty() && codes.iter().all(|(code, _)| code == "BAD_USER_INPUT"),
                "depth {depth}: {response}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------

/// A selection in a fragment-heavy document.
#[derive(Debug, Clone)]
enum Item {
    /// `aN: followers { ...children }`.
    Field(Vec<Item>),
    /// `...Fn`.
    Spread(usize),
    /// `... { ...children }`.
    Inline(Vec<Item>),
    /// `id`.
    Leaf,
}

/// Fragments `F0..Fn`, each spreading others, often several times: an
/// expansion exponential in `n`. With `acyclic`, a fragment spreads only
/// later ones.
/// What "quick" means for the checks on these documents. It is no
/// performance target: a naive expansion of a 40-fragment graph doubles per
/// fragment (2^40 steps, hours), so a bound this loose still catches it,
/// while a test thread descheduled on a loaded CI machine does not fail.
const EXPONENTIAL_GUARD: Duration = Duration::from_secs(10);

fn fragment_graph() -> impl Strategy<Value = (Vec<Vec<Item>>, bool)> {
    (1usize..40, any::<bool>()).prop_flat_map(|(count, acyclic)| {
        let fragment = move |index: usize| {
            let target = if acyclic {
                (index + 1..=count).boxed()
            } else {
                (0..=count).boxed()
            };
            let leaf = prop_oneof![
                2 => target.clone().prop_map(Item::Spread),
                1 => Just(Item::Leaf),
            ];
            let item = leaf.prop_recursive(3, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(Item::Field),
                    prop::collection::vec(inner, 1..3).prop_map(Item::Inline),
                ]
            });
            prop::collection::vec(item, 1..5)
        };
        let fragments: Vec<_> = (0..count).map(fragment).collect();
        (fragments, Just(acyclic))
    })
}

fn render_items(items: &[Item], aliases: &mut usize) -> String {
    let mut out = String::new();
    for item in items {
        match item {
            Item::Field(children) => {
                *aliases += 1;
                let inner = render_items(children, aliases);
                out.push_str(&format!("a{aliases}: followers {{ {inner} }} "));
            }
            Item::Spread(target) => out.push_str(&format!("...F{target} ")),
            Item::Inline(children) => {
                let inner = render_items(children, aliases);
                out.push_str(&format!("... {{ {inner} }} "));
            }
            Item::Leaf => out.push_str("id "),
        }
    }
    out
}

/// The document: `{ viewer { ...F0 } }`, the fragments, and a last
/// fragment `Fn` with no spreads.
fn render_fragments(fragments: &[Vec<Item>]) -> String {
    let mut aliases = 0;
    let mut document = String::from("{ viewer { ...F0 } }\n");
    for (index, items) in fragments.iter().enumerate() {
        let body = render_items(items, &mut aliases);
        document.push_str(&format!("fragment F{index} on User {{ {body}}}\n"));
    }
    document.push_str(&format!("fragment F{} on User {{ id }}\n", fragments.len()));
    document
}

/// (expanded selections, depth) of `items`, fragments memoized; only for
/// acyclic graphs.
fn measure(
    items: &[Item],
    fragments: &[Vec<Item>],
    memo: &mut Vec<Option<(u128, usize)>>,
) -> (u128, usize) {
    let mut total = (0u128, 0usize);
    for item in items {
        let (selections, depth) = match item {
            Item::Field(children) => {
                let (selections, depth) = measure(children, fragments, memo);
                (selections + 1, depth + 1)
            }
            Item::Inline(children) => measure(children, fragments, memo),
            Item::Leaf => (1, 1),
            Item::Spread(target) => match memo[*target] {
                Some(measured) => measured,
                None => {
                    let measured = match fragments.get(*target) {
                        Some(items) => measure(items, fragments, memo),
                        None => (1, 1), // the last fragment: `{ id }`
                    };
                    memo[*target] = Some(measured);
                    measured
                }
            },
        };
        total = (total.0.saturating_add(selections), total.1.max(depth));
    }
    total
}

proptest! {
    #![proptest_config(cases(64))]

    /// `admission::check` on fragment graphs whose expansion is exponential:
    /// quick, never a panic, and (for acyclic graphs, where the expansion
    /// is well defined) exactly the documented limits.
    #[test]
    fn admission_is_quick_and_exact_on_fragment_graphs((fragments, acyclic) in fragment_graph()) {
        let document = render_fragments(&fragments);
        let parsed = async_graphql::parser::parse_query(&document).expect("a well-formed document");
        let limits = DocumentLimits { max_depth: LimitsConfig::default().max_depth };
        let started = Instant::now();
        let result = admission::check(&parsed, limits);
        prop_assert!(started.elapsed() < EXPONENTIAL_GUARD, "{:?}", started.elapsed());
        if acyclic {
            let mut memo = vec![None; fragments.len() + 1];
            let (selections, depth) = measure(&fragments[0], &fragments, &mut memo);
            // `viewer` adds one selection and one level.
            let (selections, depth) = (selections + 1, depth + 1);
            let expected = if selections > MAX_EXPANDED_SELECTIONS as u128 {
                Err(Refusal::TooLarge)
            } else if depth > limits.max_depth {
                Err(Refusal::TooDeep { depth, limit: limits.max_depth })
            } else {
                Ok(())
            };
            prop_assert_eq!(result, expected);
        }
    }

    /// `admission::check` on the generated documents: never a panic, quick.
    #[test]
    fn admission_never_panics_on_generated_documents((document, _) in generated_document()) {
        if let Ok(parsed) = async_graphql::parser::parse_query(&document) {
            let started = Instant::now();
            let _ = admission::check(&parsed, DocumentLimits { max_depth: 12 });
            prop_assert!(started.elapsed() < EXPONENTIAL_GUARD);
        }
    }
}

/// Exponential fragment graphs through the whole executor: answered
/// quickly, with BAD_USER_INPUT only (no viewer, so nothing runs that
/// could fail otherwise).
#[test]
fn fragment_graphs_through_the_executor() {
    let runtime = runtime();
    let _entered = runtime.enter();
    let backend = Backend::start();
    proptest!(cases(32), |((fragments, _) in fragment_graph())| {
        let document = render_fragments(&fragments);
        let started = Instant::now();
        let response = runtime.block_on(backend.execute(None, &document, json!({})));
        prop_assert!(started.elapsed() < 2 * EXPONENTIAL_GUARD, "{:?}", started.elapsed());
        check_response(&document, &response, false)?;
    });
}

// ---------------------------------------------------------------------------
// The services' validation of the ids they are sent
// ---------------------------------------------------------------------------

/// tweet-svc and graph-svc on embedded stores, called in process.
struct Services {
    tweets: TweetServiceClient<MeshChannel>,
    graph: GraphServiceClient<MeshChannel>,
    /// Users that exist.
    users: Vec<u64>,
    /// Tweets that exist, by an author no generated id names.
    tweet_ids: Vec<u64>,
    _data: tempfile::TempDir,
}

/// The author of [`Services::tweet_ids`].
const AUTHOR: u64 = 4_242_424_242;

impl Services {
    async fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let database = warble_mesh::embedded::open_shared(data.path()).expect("database");
        let log = warble_mesh::event_log::EmbeddedEventLog::open(database).expect("event log");
        let drain = Duration::from_secs(1);
        let timeout = Duration::from_secs(5);
        let tweets = warble_tweet_svc::TweetSvc::open_embedded_with_log(
            &warble_tweet_svc::TweetSvcConfig {
                data_dir: data.path().to_owned(),
                ..Default::default()
            },
            log.clone(),
        )
        .expect("tweet-svc")
        .into_grpc_server(drain)
        .local_channel(timeout);
        let graph = warble_graph_svc::GraphSvc::open_embedded_with_log(
            &warble_graph_svc::GraphSvcConfig {
                data_dir: data.path().to_owned(),
                ..Default::default()
            },
            log,
        )
        .expect("graph-svc")
        .into_grpc_server(drain)
        .local_channel(timeout);
        let mut services = Self {
            tweets: TweetServiceClient::new(tweets),
            graph: GraphServiceClient::new(graph),
            users: Vec::new(),
            tweet_ids: Vec::new(),
            _data: data,
        };
        for name in ["ann", "ben"] {
            let user = services
                .graph
                .create_user(graph::CreateUserRequest {
                    username: name.into(),
                    display_name: name.into(),
                    bio: String::new(),
                })
                .await
                .expect("create user")
                .into_inner()
                .user
                .expect("user");
            services.users.push(user.id);
        }
        for n in 0..2 {
            let created = services
                .tweets
                .create_tweet(tweet::CreateTweetRequest {
                    author_id: AUTHOR,
                    text: format!("tweet {n}"),
                    ..Default::default()
                })
                .await
                .expect("create tweet")
                .into_inner()
                .tweet
                .expect("tweet");
            services.tweet_ids.push(created.id);
        }
        services
    }
}

/// An id as a client might send it: unset, small, any, the largest, or
/// one that exists.
#[derive(Debug, Clone, Copy)]
enum IdPick {
    Zero,
    Small(u64),
    Any(u64),
    Max,
    Existing(prop::sample::Index),
}

fn id_pick() -> impl Strategy<Value = IdPick> {
    prop_oneof![
        2 => Just(IdPick::Zero),
        1 => (1u64..1_000).prop_map(IdPick::Small),
        1 => any::<u64>().prop_map(IdPick::Any),
        1 => Just(IdPick::Max),
        3 => any::<prop::sample::Index>().prop_map(IdPick::Existing),
    ]
}

impl IdPick {
    fn resolve(self, existing: &[u64]) -> u64 {
        match self {
            Self::Zero => 0,
            Self::Small(id) | Self::Any(id) => id,
            Self::Max => u64::MAX,
            Self::Existing(index) => *index.get(existing),
        }
    }
}

/// What a call with ids must answer: with `zero_field` (the first id in
/// validation order that is 0), INVALID_ARGUMENT naming it; otherwise
/// success, NOT_FOUND, or INVALID_ARGUMENT for one of `other_fields`
/// (a rule about something else); never anything a client cannot act on.
fn check_status<T>(
    call: &str,
    result: &Result<tonic::Response<T>, tonic::Status>,
    zero_field: Option<&str>,
    other_fields: &[&str],
) -> Result<(), TestCaseError> {
    let Err(status) = result else {
        prop_assert!(
            zero_field.is_none(),
            "{call}: accepted a 0 for {zero_field:?}"
        );
        return Ok(());
    };
    let field = warble_mesh::status::violated_field(status);
    match zero_field {
        Some(zero_field) => {
            prop_assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{}: {:?}",
                call,
                status
            );
            prop_assert_eq!(field.as_deref(), Some(zero_field), "{}: {:?}", call, status);
        }
        None => match status.code() {
            Code::NotFound | Code::PermissionDenied => {}
            Code::InvalidArgument => prop_assert!(
                field
                    .as_deref()
                    .is_some_and(|field| other_fields.contains(&field)),
                "{}: {:?}",
                call,
                status
            ),
            _ => prop_assert!(false, "{call}: {status:?}"),
        },
    }
    Ok(())
}

/// The first of `ids` (named) that is 0.
fn first_zero<'a>(ids: &[(&'a str, u64)]) -> Option<&'a str> {
    ids.iter().find(|(_, id)| *id == 0).map(|(name, _)| *name)
}

/// The field naming the first 0 in a batch `name` of `ids`.
fn first_zero_in(name: &str, ids: &[u64]) -> Option<String> {
    ids.iter()
        .position(|id| *id == 0)
        .map(|index| format!("{name}[{index}]"))
}

/// tweet-svc: every call that takes ids, with ids of every kind.
async fn check_tweet_ids(
    services: &Services,
    user: IdPick,
    tweet: IdPick,
    batch: &[IdPick],
    cursor: &str,
    limit: u32,
) -> Result<(), TestCaseError> {
    let user_id = user.resolve(&services.users);
    let tweet_id = tweet.resolve(&services.tweet_ids);
    let batch: Vec<u64> = batch
        .iter()
        .map(|id| id.resolve(&services.tweet_ids))
        .collect();
    let mut tweets = services.tweets.clone();

    let zero = first_zero(&[("user_id", user_id), ("tweet_id", tweet_id)]);
    let result = tweets
        .like_tweet(tweet::LikeTweetRequest { user_id, tweet_id })
        .await;
    check_status("LikeTweet", &result, zero, &[])?;
    let result = tweets
        .undo_retweet(tweet::UndoRetweetRequest { user_id, tweet_id })
        .await;
    check_status("UndoRetweet", &result, zero, &[])?;
    if user_id != AUTHOR {
        let zero = first_zero(&[("tweet_id", tweet_id), ("requester_id", user_id)]);
        let result = tweets
            .delete_tweet(tweet::DeleteTweetRequest {
                tweet_id,
                requester_id: user_id,
            })
            .await;
        check_status("DeleteTweet", &result, zero, &[])?;
    }

    let result = tweets
        .get_tweets(tweet::GetTweetsRequest {
            tweet_ids: batch.clone(),
            include_counts: true,
            viewer_id: user_id,
        })
        .await;
    check_status("GetTweets", &result, None, &[])?;
    if let Ok(response) = result {
        let results = response.into_inner().results;
        prop_assert_eq!(results.len(), batch.len());
        for (lookup, id) in results.iter().zip(&batch) {
            prop_assert_eq!(lookup.tweet_id, *id);
            let found = lookup.status == tweet::TweetLookupStatus::Found as i32;
            prop_assert_eq!(found, services.tweet_ids.contains(id), "{:?}", lookup);
        }
    }
    let result = tweets
        .get_counts(tweet::GetCountsRequest {
            tweet_ids: batch.clone(),
        })
        .await;
    check_status("GetCounts", &result, None, &[])?;
    let result = tweets
        .get_viewer_state(tweet::GetViewerStateRequest {
            viewer_id: user_id,
            tweet_ids: batch.clone(),
        })
        .await;
    check_status(
        "GetViewerState",
        &result,
        first_zero(&[("viewer_id", user_id)]),
        &[],
    )?;
    let result = tweets
        .list_authors_tweets(tweet::ListAuthorsTweetsRequest {
            author_ids: batch.clone(),
            before_tweet_id: tweet_id,
            limit_per_author: limit,
            include_retweets: false,
        })
        .await;
    let zero = batch.contains(&0).then_some("author_ids");
    check_status("ListAuthorsTweets", &result, zero, &["limit_per_author"])?;
    let result = tweets
        .list_user_tweets(tweet::ListUserTweetsRequest {
            author_id: user_id,
            page: Some(PageRequest {
                cursor: cursor.to_owned(),
                limit,
            }),
            include_retweets: false,
        })
        .await;
    check_status(
        "ListUserTweets",
        &result,
        first_zero(&[("author_id", user_id)]),
        &["page.cursor", "page.limit"],
    )?;
    let result = tweets
        .create_tweet(tweet::CreateTweetRequest {
            author_id: 0,
            text: "x".into(),
            reply_to_tweet_id: Some(tweet_id),
            ..Default::default()
        })
        .await;
    check_status("CreateTweet", &result, Some("author_id"), &[])?;
    Ok(())
}

/// graph-svc: every call that takes ids, with ids of every kind.
async fn check_graph_ids(
    services: &Services,
    follower: IdPick,
    followee: IdPick,
    batch: &[IdPick],
    cursor: &str,
    limit: u32,
) -> Result<(), TestCaseError> {
    let follower_id = follower.resolve(&services.users);
    let followee_id = followee.resolve(&services.users);
    let batch: Vec<u64> = batch.iter().map(|id| id.resolve(&services.users)).collect();
    let mut graph = services.graph.clone();

    let zero = first_zero(&[("follower_id", follower_id), ("followee_id", followee_id)]);
    let result = graph
        .follow(graph::FollowRequest {
            follower_id,
            followee_id,
        })
        .await;
    check_status("Follow", &result, zero, &["followee_id"])?;
    let result = graph
        .unfollow(graph::UnfollowRequest {
            follower_id,
            followee_id,
        })
        .await;
    check_status("Unfollow", &result, zero, &["followee_id"])?;

    let zero = first_zero_in("user_ids", &batch);
    let result = graph
        .get_users(graph::GetUsersRequest {
            user_ids: batch.clone(),
        })
        .await;
    check_status("GetUsers", &result, zero.as_deref(), &[])?;
    if let Ok(response) = result {
        for (lookup, id) in response.into_inner().results.iter().zip(&batch) {
            prop_assert_eq!(lookup.user_id, *id);
            prop_assert_eq!(lookup.user.is_some(), services.users.contains(id));
        }
    }
    let result = graph
        .get_follow_counts(graph::GetFollowCountsRequest {
            user_ids: batch.clone(),
        })
        .await;
    check_status("GetFollowCounts", &result, zero.as_deref(), &[])?;
    let pairs: Vec<graph::FollowPair> = batch
        .iter()
        .map(|id| graph::FollowPair {
            follower_id: follower_id.max(1),
            followee_id: *id,
        })
        .collect();
    let zero = batch
        .iter()
        .position(|id| *id == 0)
        .map(|index| format!("pairs[{index}].followee_id"));
    let result = graph
        .is_following(graph::IsFollowingRequest { pairs })
        .await;
    check_status("IsFollowing", &result, zero.as_deref(), &[])?;

    let page = Some(PageRequest {
        cursor: cursor.to_owned(),
        limit,
    });
    let zero = first_zero(&[("user_id", follower_id)]);
    let result = graph
        .list_followers(graph::ListFollowersRequest {
            user_id: follower_id,
            page: page.clone(),
        })
        .await;
    check_status(
        "ListFollowers",
        &result,
        zero,
        &["page.cursor", "page.limit"],
    )?;
    let result = graph
        .list_following(graph::ListFollowingRequest {
            user_id: follower_id,
            page,
            min_followers: 0,
        })
        .await;
    check_status(
        "ListFollowing",
        &result,
        zero,
        &["page.cursor", "page.limit"],
    )?;
    Ok(())
}

/// Cursors as a client might send them back: none, real ones (for this
/// list and owner or another), edited ones, and garbage.
fn cursor_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (any::<u8>(), prop::collection::vec(any::<u64>(), 0..4))
            .prop_map(|(kind, positions)| warble_mesh::cursor::encode(kind, &positions)),
        (
            prop::sample::select(vec![0x21u8, 0x47, 0x48]),
            0u64..5,
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(kind, owner, a, b)| warble_mesh::cursor::encode(kind, &[owner, a, b])),
        "[A-Za-z0-9_-]{0,60}",
        "(?s).{0,40}",
    ]
}

/// Both services, every call that takes an id: a 0 is INVALID_ARGUMENT
/// naming the field (by index in a batch), anything else is served or
/// NOT_FOUND, and no id makes either service fail internally.
#[test]
fn services_validate_the_ids_they_are_sent() {
    let runtime = runtime();
    let services = runtime.block_on(Services::start());
    proptest!(cases(128), |(
        a in id_pick(),
        b in id_pick(),
        batch in prop::collection::vec(id_pick(), 0..6),
        cursor in cursor_text(),
        limit in prop_oneof![0u32..120, Just(5_000), Just(5_001), any::<u32>()],
    )| {
        runtime.block_on(check_tweet_ids(&services, a, b, &batch, &cursor, limit))?;
        runtime.block_on(check_graph_ids(&services, a, b, &batch, &cursor, limit))?;
    });
}

proptest! {
    #![proptest_config(cases(256))]

    /// graph-svc's follow-list cursors: one it issued continues only its own
    /// list and owner, at the position it holds; anything else is refused
    /// naming `page.cursor`.
    #[test]
    fn graph_page_cursors_bind_list_and_owner(
        owner in 1u64..,
        other_owner in 1u64..,
        follow_seq in any::<u64>(),
        user_id in any::<u64>(),
        garbage in cursor_text(),
    ) {
        use warble_graph_svc::GraphError;
        use warble_graph_svc::store::EdgePosition;
        use warble_graph_svc::validate::{UserList, next_cursor, page};
        let position = EdgePosition { follow_seq, user_id };
        let cursor = next_cursor(UserList::Followers, owner, Some(position));
        let request = |cursor: &str| PageRequest { cursor: cursor.to_owned(), limit: 10 };
        let query = page(Some(&request(&cursor)), UserList::Followers, owner).expect("its own cursor");
        prop_assert_eq!(query.after, Some(position));
        let refused = |result: Result<_, GraphError>| {
            matches!(result, Err(GraphError::InvalidArgument { field, .. }) if field == "page.cursor")
        };
        prop_assert!(refused(page(Some(&request(&cursor)), UserList::Following, owner)));
        if other_owner != owner {
            prop_assert!(refused(page(Some(&request(&cursor)), UserList::Followers, other_owner)));
        }
        match page(Some(&request(&garbage)), UserList::Following, owner) {
            Ok(query) => {
                if garbage.is_empty() {
                    prop_assert_eq!(query.after, None);
                } else {
                    // Only a real cursor of this list and owner gets through.
                    let after = query.after.expect("a position");
                    prop_assert_eq!(next_cursor(UserList::Following, owner, Some(after)), garbage);
                }
            }
            Err(error) => prop_assert!(refused(Err(error))),
        }
    }
}

// ---------------------------------------------------------------------------
// The gateway's config
// ---------------------------------------------------------------------------

/// Any TOML scalar, weighted to what gateway keys take.
fn toml_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..70_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "(?s).{0,40}".prop_map(|text| serde_json::to_string(&text).expect("JSON")),
        prop::sample::select(vec![
            "\"HS256\"",
            "\"RS256\"",
            "\"EdDSA\"",
            "\"hs256\"",
            "\"*\"",
            "\"http://a.example, https://b.example:8443\"",
            "\"https://a.example/path\"",
            "\"0.0.0.0:8080\"",
            "\"[::1]:0\"",
            "\"localhost\"",
            "\"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"",
            "\"a-secret-that-is-long-enough-0123456789\"",
            "\"10.0.0.0/8, 192.168.1.1\"",
            "\"https://issuer.example/.well-known/jwks.json\"",
            "[]",
            "[1, \"a\"]",
            "{ a = 1 }",
            "1.5",
            "nan",
        ])
        .prop_map(str::to_owned),
    ]
}

/// `warble_mesh::config::load` of a gateway config file with arbitrary
/// values for its keys (whatever keys it has: the list comes from the
/// config itself): a config, or an error naming one of those keys.
#[test]
fn gateway_config_values_load_or_name_their_key() {
    let keys: Vec<String> = warble_mesh::config::keys::<GatewayConfig>()
        .into_iter()
        .map(|(key, _)| key)
        // No file paths: the property must not read arbitrary files.
        .filter(|key| !key.ends_with("_file"))
        .collect();
    // The key itself, a section of keys, or inside a key's (wrongly
    // tabled) value.
    let names_a_key = |named: &str| {
        keys.iter().any(|key| {
            key == named
                || key.starts_with(&format!("{named}."))
                || named.starts_with(&format!("{key}."))
        })
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    proptest!(cases(128), |(
        values in prop::collection::vec((prop::sample::select(keys.clone()), toml_scalar()), 1..5),
    )| {
        // Dotted keys in one table each, so any two may share a section.
        let contents: String = values
            .iter()
            .map(|(key, value)| {
                let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
                if section.is_empty() {
                    format!("{leaf} = {value}\n")
                } else {
                    format!("[{section}]\n{leaf} = {value}\n")
                }
            })
            .collect();
        std::fs::write(&path, &contents).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match warble_mesh::config::load::<GatewayConfig>(Some(&path)) {
            Ok(_) => {}
            Err(warble_mesh::config::ConfigError::Invalid { key, .. }) => {
                prop_assert!(names_a_key(&key), "{key} is no key:\n{contents}");
            }
            Err(warble_mesh::config::ConfigError::Parse(error)) => {
                // A key twice, or a section and a key clashing, is a TOML
                // error without a key; anything else names one.
                let message = error.to_string();
                for error in *error {
                    if !error.path.is_empty() {
                        let named = error.path.join(".");
                        prop_assert!(names_a_key(&named), "{named}: {message}\n{contents}");
                    }
                }
            }
            Err(error) => prop_assert!(false, "{error}"),
        }
    });
}
