//! The limits the `.proto` comments state are the limits the code enforces.
//!
//! A comment states a limit as the number followed by its constant's path
//! in backticks: "up to 500 (`limits::tweet::MAX_BATCH`) tweet ids". This
//! test reads every `.proto` under `proto/` and fails when
//! - a mention's number differs from its constant, or names no constant;
//! - a comment states any other number (besides 0 and 1, which are bounds
//!   like "1 to 280", not limits) without naming its constant;
//! - a constant is never mentioned in any `.proto`;
//! - `src/limits.rs` defines a constant [`LIMITS`] does not list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use warble_proto::limits::{graph, media, notify, search, timeline, tweet};

/// `("contract::NAME", value)` for a constant of `warble_proto::limits`.
macro_rules! limit {
    ($contract:ident :: $name:ident) => {
        (
            concat!(stringify!($contract), "::", stringify!($name)),
            $contract::$name as u64,
        )
    };
}

/// Every constant of `warble_proto::limits`, by its path below `limits::`.
const LIMITS: &[(&str, u64)] = &[
    limit!(tweet::MAX_BATCH),
    limit!(tweet::MAX_SCAN_LIMIT),
    limit!(tweet::MAX_WRITE_BATCH),
    limit!(tweet::MAX_MEDIA),
    limit!(tweet::MAX_IDEMPOTENCY_KEY_BYTES),
    limit!(tweet::MAX_TEXT_CHARS),
    limit!(tweet::DEFAULT_PAGE_LIMIT),
    limit!(tweet::MAX_PAGE_LIMIT),
    limit!(tweet::MAX_AUTHORS_PER_CALL),
    limit!(tweet::MAX_TWEETS_PER_AUTHOR),
    limit!(tweet::MAX_ANCESTORS),
    limit!(graph::MAX_USERNAME_CHARS),
    limit!(graph::MAX_DISPLAY_NAME_CHARS),
    limit!(graph::MAX_BIO_CHARS),
    limit!(graph::MAX_BATCH),
    limit!(graph::MAX_WRITE_BATCH),
    limit!(graph::DEFAULT_PAGE_LIMIT),
    limit!(graph::MAX_PAGE_LIMIT),
    limit!(graph::MAX_LOCATION_CHARS),
    limit!(graph::MAX_WEBSITE_CHARS),
    limit!(graph::MAX_MUTE_DURATION_SECS),
    limit!(graph::MAX_SCAN_LIMIT),
    limit!(graph::MAX_ISSUER_BYTES),
    limit!(graph::MAX_SUBJECT_BYTES),
    limit!(notify::DEFAULT_PAGE_LIMIT),
    limit!(notify::MAX_PAGE_LIMIT),
    limit!(notify::MAX_BATCH),
    limit!(notify::MAX_SAMPLE_ACTORS),
    limit!(notify::GROUP_WINDOW_SECS),
    limit!(notify::MAX_UNREAD_COUNT),
    limit!(notify::RETAINED_GROUPS),
    limit!(notify::RETENTION_DAYS),
    limit!(notify::MAX_NEW_ACCOUNT_DAYS),
    limit!(media::MAX_BATCH),
    limit!(media::MAX_IMAGES_PER_TWEET),
    limit!(media::MAX_VIDEOS_PER_TWEET),
    limit!(media::MAX_ALT_TEXT_CHARS),
    limit!(media::MAX_CHUNK_BYTES),
    limit!(media::MAX_CLAIM_KEY_BYTES),
    limit!(media::PREVIEW_MAX_SIDE),
    limit!(timeline::DEFAULT_PAGE_LIMIT),
    limit!(timeline::MAX_PAGE_LIMIT),
    limit!(timeline::CACHED_HOME_ENTRIES),
    limit!(timeline::RETWEET_DEDUP_WINDOW),
    limit!(search::DEFAULT_PAGE_LIMIT),
    limit!(search::MAX_PAGE_LIMIT),
    limit!(search::MAX_QUERY_BYTES),
    limit!(search::MAX_QUERY_TERMS),
    limit!(search::DEFAULT_USER_LIMIT),
    limit!(search::MAX_USER_LIMIT),
    limit!(search::DEFAULT_TREND_LIMIT),
    limit!(search::MAX_TREND_LIMIT),
    limit!(search::MAX_TREND_SAMPLES),
    limit!(search::MIN_TREND_AUTHORS),
    limit!(search::TREND_HOURS),
    limit!(search::MAX_COUNTED_LAG),
];

/// Numbers a comment may state without naming a constant.
const NOT_LIMITS: &[u64] = &[0, 1];

/// What opens a mention's constant path: `(` and a backtick.
const MENTION_OPEN: &str = "(`limits::";

#[test]
fn proto_comments_state_the_limits_the_code_enforces() {
    let mut problems = Vec::new();
    let mut mentioned = BTreeSet::new();
    let protos = proto_files();
    assert!(!protos.is_empty(), "no .proto files found");
    for path in &protos {
        let source = std::fs::read_to_string(path).expect("read a .proto");
        let file = path.strip_prefix(manifest_dir()).unwrap_or(path).display();
        for (line, comment) in comments(&source) {
            for problem in check_comment(&comment, &mut mentioned) {
                problems.push(format!("{file}:{line}: {problem}"));
            }
        }
    }
    for (name, value) in LIMITS {
        if !mentioned.contains(name) {
            problems.push(format!(
                "limits::{name} ({value}) is not mentioned in any .proto"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_table_lists_every_constant_of_the_limits_module() {
    let source =
        std::fs::read_to_string(manifest_dir().join("src/limits.rs")).expect("read src/limits.rs");
    let mut module = None;
    let mut defined = BTreeSet::new();
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub mod ") {
            module = Some(rest.trim_end_matches(" {").to_owned());
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            let name = rest.split(':').next().unwrap_or_default();
            let module = module
                .as_deref()
                .expect("a constant outside a contract module");
            defined.insert(format!("{module}::{name}"));
        }
    }
    let listed: BTreeSet<String> = LIMITS.iter().map(|(name, _)| name.to_string()).collect();
    let unlisted: Vec<_> = defined.difference(&listed).collect();
    let undefined: Vec<_> = listed.difference(&defined).collect();
    assert!(
        unlisted.is_empty() && undefined.is_empty(),
        "LIMITS must list exactly the constants of src/limits.rs; \
         add {unlisted:?}, remove {undefined:?}"
    );
}

#[test]
fn the_checker_catches_disagreements() {
    let mut mentioned = BTreeSet::new();
    for right in [
        "Up to 500 (`limits::tweet::MAX_BATCH`) ids, e.g. `ids[3]`.",
        "At most 1,000 (`limits::graph::MAX_WRITE_BATCH`), may be empty.",
        "1 to 15 (`limits::graph::MAX_USERNAME_CHARS`) of [A-Za-z0-9_]; 0 selects the default.",
    ] {
        assert_eq!(
            check_comment(right, &mut mentioned),
            Vec::<String>::new(),
            "{right}"
        );
    }
    assert_eq!(mentioned.len(), 3);
    for wrong in [
        // The wrong number.
        "Up to 501 (`limits::tweet::MAX_BATCH`) ids.",
        // No such constant.
        "Up to 500 (`limits::tweet::MAX_BATCHES`) ids.",
        // A constant without its number, or not in the mention form.
        "Up to (`limits::tweet::MAX_BATCH`) ids.",
        "Up to 500 `limits::tweet::MAX_BATCH` ids.",
        "Up to 500 (`limits::tweet::MAX_BATCH` ids.",
        // A number without its constant.
        "Up to 500 ids.",
        "0 selects 100.",
    ] {
        assert!(!check_comment(wrong, &mut mentioned).is_empty(), "{wrong}");
    }
    // A mention may wrap onto the next comment line.
    let wrapped =
        comments("  // at most 1,000\n  // (`limits::tweet::MAX_WRITE_BATCH`), may be empty\n");
    assert_eq!(wrapped.len(), 1);
    assert_eq!(
        check_comment(&wrapped[0].1, &mut mentioned),
        Vec::<String>::new()
    );
}

/// The comments of a `.proto` source with the line each starts on: a run
/// of whole-line `//` comments is one comment, its lines joined with a
/// space, so a mention may wrap; a comment after code stands alone.
fn comments(source: &str) -> Vec<(usize, String)> {
    let mut comments: Vec<(usize, String)> = Vec::new();
    let mut continues = false;
    for (index, line) in source.lines().enumerate() {
        let Some((code, comment)) = line.split_once("//") else {
            continues = false;
            continue;
        };
        let comment = comment.trim();
        match comments.last_mut() {
            Some((_, text)) if continues && code.trim().is_empty() => {
                text.push(' ');
                text.push_str(comment);
            }
            _ => comments.push((index + 1, comment.to_owned())),
        }
        continues = code.trim().is_empty();
    }
    comments
}

/// Problems with one comment's text; records the constants it mentions.
fn check_comment(comment: &str, mentioned: &mut BTreeSet<&'static str>) -> Vec<String> {
    let mut problems = Vec::new();
    // Every mention first, then what is left must state no number.
    let mut rest = comment.to_owned();
    while let Some(open) = rest.find(MENTION_OPEN) {
        let after_open = &rest[open + MENTION_OPEN.len()..];
        let Some(close) = after_open.find("`)") else {
            problems.push(format!("unclosed limit mention in {comment:?}"));
            rest.replace_range(open.., "");
            break;
        };
        let name = &after_open[..close];
        let (number_start, number) = number_before(&rest[..open]);
        match (LIMITS.iter().find(|(known, _)| *known == name), number) {
            (None, _) => problems.push(format!("limits::{name} is not a known limit")),
            (Some(_), None) => problems.push(format!(
                "limits::{name} is mentioned without its number before it"
            )),
            (Some((known, value)), Some(number)) => {
                mentioned.insert(*known);
                if number != *value {
                    problems.push(format!(
                        "says {number} for limits::{name}, which is {value}"
                    ));
                }
            }
        }
        let end = open + MENTION_OPEN.len() + close + "`)".len();
        rest.replace_range(number_start..end, "");
    }
    if rest.contains("limits::") {
        problems.push(format!(
            "names a limit outside the form \"500 (`limits::tweet::MAX_BATCH`)\" in {comment:?}"
        ));
    }
    for number in bare_numbers(&without_code_spans(&rest)) {
        if !NOT_LIMITS.contains(&number) {
            problems.push(format!(
                "states {number} without naming its constant: write \
                 \"{number} (`limits::<contract>::<NAME>`)\" and add the \
                 constant, in {comment:?}"
            ));
        }
    }
    problems
}

/// The number that `text` ends with, followed by one space (the form
/// "500 (`limits::...`)"), and where it starts; `(text.len(), None)` when
/// there is none.
fn number_before(text: &str) -> (usize, Option<u64>) {
    let Some(text) = text.strip_suffix(' ') else {
        return (text.len(), None);
    };
    let start = text
        .rfind(|c: char| !(c.is_ascii_digit() || c == ','))
        .map_or(0, |index| index + 1);
    let digits: String = text[start..].chars().filter(|c| *c != ',').collect();
    match digits.parse() {
        Ok(number) => (start, Some(number)),
        Err(_) => (text.len() + 1, None),
    }
}

/// `text` without its `code spans`, which quote examples such as `tweets[3]`.
fn without_code_spans(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The numbers `text` states as numbers: digit runs (with `,` separators)
/// that are not part of a word, so `[A-Za-z0-9_]` and `v1` state none.
fn bare_numbers(text: &str) -> Vec<u64> {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let chars: Vec<char> = text.chars().collect();
    let mut numbers = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        if !chars[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let start = index;
        while index < chars.len()
            && (chars[index].is_ascii_digit()
                || (chars[index] == ',' && chars.get(index + 1).is_some_and(char::is_ascii_digit)))
        {
            index += 1;
        }
        let before = start.checked_sub(1).map(|at| chars[at]);
        if !is_word(before) && !is_word(chars.get(index).copied()) {
            let digits: String = chars[start..index].iter().filter(|c| **c != ',').collect();
            numbers.push(digits.parse().expect("a run of digits"));
        }
    }
    numbers
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.proto` below the crate's `proto/` directory.
fn proto_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![manifest_dir().join("proto")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a proto directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "proto") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
