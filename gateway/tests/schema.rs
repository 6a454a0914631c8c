//! The checked-in `schema.graphql` is exactly what the code serves: frontend
//! tooling (codegen, linting) reads the file, so drift must fail the build.
//! And the schema documents itself: GraphiQL shows every description to the
//! frontend teams, so nothing in it may go without one.

use async_graphql::Schema;
use serde_json::Value;
use warble_gateway::resolvers::{MutationRoot, QueryRoot, SubscriptionRoot};

#[test]
fn checked_in_schema_matches_the_code() {
    let sdl = warble_gateway::schema::sdl();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &sdl).expect("write schema.graphql");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == sdl,
        "gateway/schema.graphql is out of date; regenerate it with \
         `UPDATE_SCHEMA=1 cargo test -p warble-gateway --test schema`"
    );
}

/// Everything that can carry a description, deprecated parts included.
const DESCRIPTIONS: &str = r"{
  __schema {
    types {
      name
      description
      fields(includeDeprecated: true) {
        name
        description
        args(includeDeprecated: true) { name description }
      }
      inputFields(includeDeprecated: true) { name description }
      enumValues(includeDeprecated: true) { name description }
    }
  }
}";

/// Types GraphQL itself defines, documented by the specification.
const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// Every element of Warble's own schema that can carry a description, by
/// coordinate (`Type`, `Type.field`, `Type.field(arg)`, `Input.field`,
/// `Enum.VALUE`), with its description (`None` when absent or blank), as
/// introspection (what GraphiQL shows) reports it.
async fn descriptions() -> Vec<(String, Option<String>)> {
    let schema = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .finish();
    let response = schema.execute(DESCRIPTIONS).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response
        .data
        .into_json()
        .expect("introspection result as JSON");
    let name = |item: &Value| item["name"].as_str().unwrap_or_default().to_owned();
    let description = |item: &Value| {
        item["description"]
            .as_str()
            .filter(|description| !description.trim().is_empty())
            .map(str::to_owned)
    };
    let items = |value: &Value, key: &str| value[key].as_array().cloned().unwrap_or_default();

    let types = items(&data["__schema"], "types");
    assert!(!types.is_empty(), "introspection returned no types: {data}");
    let mut all = Vec::new();
    for ty in types {
        let type_name = name(&ty);
        if type_name.starts_with("__") || BUILT_IN_SCALARS.contains(&type_name.as_str()) {
            continue;
        }
        all.push((type_name.clone(), description(&ty)));
        for field in items(&ty, "fields") {
            let field_name = name(&field);
            all.push((format!("{type_name}.{field_name}"), description(&field)));
            for arg in items(&field, "args") {
                let arg_name = name(&arg);
                all.push((
                    format!("{type_name}.{field_name}({arg_name})"),
                    description(&arg),
                ));
            }
        }
        for item in items(&ty, "inputFields")
            .into_iter()
            .chain(items(&ty, "enumValues"))
        {
            all.push((format!("{type_name}.{}", name(&item)), description(&item)));
        }
    }
    all
}

#[tokio::test]
async fn every_type_field_and_argument_has_a_description() {
    let undocumented: Vec<String> = descriptions()
        .await
        .into_iter()
        .filter(|(_, description)| description.is_none())
        .map(|(coordinate, _)| coordinate)
        .collect();
    assert!(
        undocumented.is_empty(),
        "{} schema elements have no description (GraphiQL shows these to \
         frontend teams): add a `///` doc comment (types, fields, enum values; \
         for an `#[Object]` type, on its `impl` block) or \
         `#[graphql(desc = \"...\")]` (arguments):\n  {}",
        undocumented.len(),
        undocumented.join("\n  ")
    );
}

/// Descriptions state limits as literal numbers (`desc` takes only a string
/// literal): each must still be the number the code enforces.
#[tokio::test]
async fn descriptions_state_the_limits_the_code_enforces() {
    use warble_gateway::paging::{DEFAULT_FIRST, MAX_FIRST};
    use warble_proto::limits::{graph, media, tweet};

    let text = format!("1 to {} Unicode scalar values", tweet::MAX_TEXT_CHARS);
    let username = format!("1 to {} of `[A-Za-z0-9_]`", graph::MAX_USERNAME_CHARS);
    let display_name = format!("1 to {} characters", graph::MAX_DISPLAY_NAME_CHARS);
    let bio = format!("at most {} characters", graph::MAX_BIO_CHARS);
    let key = format!("at most {} bytes", tweet::MAX_IDEMPOTENCY_KEY_BYTES);
    let first = format!(
        "0 to {MAX_FIRST}; default {DEFAULT_FIRST}. 0 returns an empty page. \
         Outside 0 to {MAX_FIRST}: BAD_USER_INPUT."
    );
    let node_ids = format!(
        "0 to {MAX_FIRST} of them: any `Node.id`s (`Tweet.id`s and `User.id`s, mixed). \
         More than {MAX_FIRST}, or a malformed one, is BAD_USER_INPUT."
    );
    let media_ids = format!("at most {} images", media::MAX_IMAGES_PER_TWEET);
    let more_media = format!("More than {}", media::MAX_IMAGES_PER_TWEET);
    let alt_text = format!("at most {} characters", media::MAX_ALT_TEXT_CHARS);
    let preview = format!("at most {} pixels", media::PREVIEW_MAX_SIDE);
    let expected: [(&str, &str); 16] = [
        ("Tweet.text", &text),
        ("Mutation.postTweet(text)", &text),
        ("Mutation.postTweet(idempotencyKey)", &key),
        ("User.username", &username),
        ("Mutation.signUp(username)", &username),
        ("User.displayName", &display_name),
        ("Mutation.signUp(displayName)", &display_name),
        ("User.bio", &bio),
        ("Mutation.signUp(bio)", &bio),
        ("Query.nodes(ids)", &node_ids),
        ("Mutation.postTweet(mediaIds)", &media_ids),
        ("Mutation.postTweet(mediaIds)", &more_media),
        ("Mutation.uploadMedia(altText)", &alt_text),
        ("Media.altText", &alt_text),
        ("Media.previewUrl", &preview),
        ("User.avatarUrl", &preview),
    ];

    let descriptions = descriptions().await;
    let mut wrong = Vec::new();
    let mut pages = 0;
    for (coordinate, description) in &descriptions {
        let description = description.as_deref().unwrap_or_default();
        let mut wanted: Vec<&str> = expected
            .iter()
            .filter(|(at, _)| at == coordinate)
            .map(|(_, wanted)| *wanted)
            .collect();
        if coordinate.ends_with("(first)") {
            pages += 1;
            wanted.push(first.as_str());
        }
        for wanted in wanted {
            if !description.contains(wanted) {
                wrong.push(format!(
                    "{coordinate}: {description:?} does not say {wanted:?}"
                ));
            }
        }
    }
    for (coordinate, _) in expected {
        if !descriptions.iter().any(|(at, _)| at == coordinate) {
            wrong.push(format!("{coordinate} is not in the schema"));
        }
    }
    assert!(pages > 0, "no `first` argument found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
