//! Tweet text rules and what is extracted from the text.
//!
//! Length is counted in Unicode scalar values *after* NFC normalisation, so a
//! letter typed as base + combining accent counts once, exactly as its
//! precomposed form does, and the stored text is the normalised one.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;
use warble_proto::limits::graph::MAX_USERNAME_CHARS;
use warble_proto::limits::tweet::MAX_TEXT_CHARS;

/// Input longer than this is rejected before normalising. A canonical
/// decomposition is at most a few scalar values long, so any text that could
/// normalise to [`MAX_TEXT_CHARS`] scalar values is far shorter; the bound
/// only keeps a hostile multi-megabyte request from costing a full
/// normalisation pass. Not a contract limit: no text it rejects could pass.
const MAX_RAW_TEXT_BYTES: usize = 64 * 1024;

/// Why a text is not acceptable as a tweet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty, or whitespace only.
    #[error("must contain something other than whitespace")]
    Blank,
    /// More than [`MAX_TEXT_CHARS`] scalar values after normalisation.
    #[error("must be at most {MAX_TEXT_CHARS} characters after NFC normalisation")]
    TooLong,
}

/// NFC-normalises `raw` and checks the tweet text rules; returns the text to store.
pub fn normalize(raw: &str) -> Result<String, TextError> {
    if raw.len() > MAX_RAW_TEXT_BYTES {
        return Err(TextError::TooLong);
    }
    let text: String = raw.nfc().collect();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(TextError::TooLong);
    }
    if text.trim().is_empty() {
        return Err(TextError::Blank);
    }
    Ok(text)
}

/// Hashtags in `text`: `#` followed by word characters, lower-cased, without
/// the `#`, deduplicated, in order of first appearance.
pub fn hashtags(text: &str) -> Vec<String> {
    first_occurrences(after_sigils(text, '#').filter_map(|rest| {
        let end = rest.find(|c| !is_word_char(c)).unwrap_or(rest.len());
        (end > 0).then(|| rest[..end].to_lowercase())
    }))
}

/// Mentioned usernames in `text`: `@` followed by 1 to
/// [`MAX_USERNAME_CHARS`] of `[A-Za-z0-9_]`, lower-cased, without the `@`,
/// deduplicated, in order of first appearance. A longer run names no
/// possible user and is not a mention.
pub fn mentions(text: &str) -> Vec<String> {
    first_occurrences(after_sigils(text, '@').filter_map(|rest| {
        // Username characters are ASCII, so the byte offset is the length.
        let end = rest.find(|c| !is_username_char(c)).unwrap_or(rest.len());
        (1..=MAX_USERNAME_CHARS)
            .contains(&end)
            .then(|| rest[..end].to_ascii_lowercase())
    }))
}

/// Letters, digits, `_` and combining marks: marks are part of words in many
/// scripts (Devanagari vowel signs, for one), so a hashtag must not stop at them.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The text after each `sigil` that starts a token. A sigil glued to a
/// preceding word (`a@b.com`, `c#`) starts nothing.
fn after_sigils(text: &str, sigil: char) -> impl Iterator<Item = &str> {
    let mut previous: Option<char> = None;
    text.char_indices().filter_map(move |(index, c)| {
        let starts = c == sigil && previous.is_none_or(|p| !is_word_char(p));
        previous = Some(c);
        starts.then(|| &text[index + c.len_utf8()..])
    })
}

fn first_occurrences(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|item| seen.insert(item.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text units with the number of scalar values each becomes under NFC.
    const UNITS: &[(&str, usize)] = &[
        ("a", 1),
        ("é", 1),                // precomposed, 2 bytes
        ("e\u{301}", 1),         // base + combining acute composes to é
        ("\u{1100}\u{1161}", 1), // Hangul jamo compose to one syllable
        ("😀", 1),               // 4 bytes
        ("\u{0958}", 2),         // Devanagari QA: NFC decomposes it (composition exclusion)
    ];

    #[test]
    fn length_is_counted_after_normalisation() {
        for (unit, nfc_chars) in UNITS {
            let fits = MAX_TEXT_CHARS / nfc_chars;
            assert!(normalize(&unit.repeat(fits)).is_ok(), "{unit:?} x {fits}");
            assert_eq!(
                normalize(&unit.repeat(fits + 1)),
                Err(TextError::TooLong),
                "{unit:?} x {}",
                fits + 1
            );
        }
        // 280 raw scalar values that NFC turns into 560.
        assert_eq!(normalize(&"\u{0958}".repeat(280)), Err(TextError::TooLong));
    }

    #[test]
    fn stored_text_is_nfc() {
        assert_eq!(normalize("cafe\u{301}").unwrap(), "café");
    }

    #[test]
    fn blank_text_is_rejected() {
        for text in ["", " ", "\n\t ", "\u{3000}"] {
            assert_eq!(normalize(text), Err(TextError::Blank), "{text:?}");
        }
        assert!(normalize(" x ").is_ok());
    }

    #[test]
    fn extracts_hashtags_and_mentions() {
        let text =
            "#Rust and #rust, #tokio_rs! c# @Alice hi @bob @ALICE a@b.com @x_1 #日本語 #नमस्ते";
        assert_eq!(hashtags(text), ["rust", "tokio_rs", "日本語", "नमस्ते"]);
        assert_eq!(mentions(text), ["alice", "bob", "x_1"]);
    }

    #[test]
    fn overlong_usernames_and_bare_sigils_are_not_extracted() {
        assert!(mentions("@abcdefghijklmnop @ @.").is_empty());
        assert_eq!(mentions("@abcdefghijklmno."), ["abcdefghijklmno"]);
        assert!(hashtags("# #. ##").is_empty());
    }

    /// Pieces of hostile text: combining marks (stacked, and orphaned at the
    /// start), Hangul jamo that compose, characters NFC expands (composition
    /// exclusions, a three-way decomposition), right-to-left scripts and
    /// overrides, emoji ZWJ sequences, variation selectors and flags, every
    /// kind of whitespace and invisible, controls, noncharacters, sigils
    /// glued to all of them, and upper case that lower-cases to more.
    const HOSTILE: &[&str] = &[
        "a",
        "Z",
        "_",
        "0",
        "#",
        "@",
        "##",
        "@@",
        "#_",
        "@_",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\u{0}",
        "\u{7}",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\u{a0}",
        "\u{2028}",
        "\u{2029}",
        "\u{3000}",
        "\u{feff}",
        "\u{200b}",
        "\u{200c}",
        "\u{200d}",
        "\u{2060}",
        "\u{301}",
        "\u{308}\u{301}\u{323}",
        "\u{34f}",
        "\u{36f}",
        "\u{20dd}",
        "e\u{301}",
        "\u{1100}",
        "\u{1161}",
        "\u{11a8}",
        "\u{ac00}",
        "\u{0958}",
        "\u{0915}\u{093c}",
        "\u{0928}\u{092e}\u{0938}\u{094d}\u{0924}\u{0947}",
        "\u{fb2c}",
        "\u{1d160}",
        "\u{2126}",
        "\u{212b}",
        "\u{1e9b}\u{323}",
        "ﬃ",
        "İ",
        "ẞ",
        "Σ",
        "ΑΣ",
        "ǅ",
        "\u{5e9}\u{5c1}",
        "\u{5d0}\u{5d1}",
        "\u{627}\u{644}\u{639}",
        "\u{661}",
        "\u{200e}",
        "\u{200f}",
        "\u{202a}",
        "\u{202e}",
        "\u{2066}",
        "\u{2069}",
        "👨\u{200d}👩\u{200d}👧\u{200d}👦",
        "🏳\u{fe0f}\u{200d}🌈",
        "👍🏽",
        "❤\u{fe0f}",
        "\u{fe0e}",
        "🇯🇵",
        "\u{1f1ef}",
        "1\u{fe0f}\u{20e3}",
        "\u{e0067}\u{e0062}",
        "\u{fffd}",
        "\u{ffff}",
        "\u{fdd0}",
        "\u{10ffff}",
        "\u{e000}",
        "日本語",
        "𝔘𝔫𝔦",
    ];

    /// A sequence of [`HOSTILE`] pieces and arbitrary characters (any
    /// scalar value, controls and format characters included).
    fn hostile(max_pieces: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(HOSTILE).prop_map(str::to_owned),
                1 => any::<char>().prop_map(String::from),
            ],
            0..max_pieces,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// What [`normalize`] must answer, from the documented rules alone.
    fn expected(raw: &str) -> Result<String, TextError> {
        let nfc: String = raw.nfc().collect();
        if nfc.chars().count() > MAX_TEXT_CHARS {
            Err(TextError::TooLong)
        } else if nfc.trim().is_empty() {
            Err(TextError::Blank)
        } else {
            Ok(nfc)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Hostile Unicode up to a few hundred pieces (around the length
        /// limit): exactly the documented rules, an idempotent result, and
        /// extraction that holds its promises.
        #[test]
        fn hostile_text_follows_the_rules(input in hostile(400)) {
            let result = normalize(&input);
            prop_assert_eq!(&result, &expected(&input));
            if let Ok(text) = &result {
                prop_assert_eq!(
                    normalize(text),
                    Ok(text.clone()),
                    "normalising is idempotent"
                );
            }
            let tags = hashtags(&input);
            let names = mentions(&input);
            prop_assert!(tags.len() <= input.matches('#').count());
            prop_assert!(names.len() <= input.matches('@').count());
            for tag in &tags {
                prop_assert!(!tag.is_empty());
                prop_assert!(tag.chars().all(is_word_char), "{:?}", tag);
                prop_assert_eq!(tag, &tag.to_lowercase());
            }
            for name in &names {
                prop_assert!((1..=MAX_USERNAME_CHARS).contains(&name.len()));
                prop_assert!(name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_'));
                let mention = format!("@{name}");
                prop_assert!(input.to_ascii_lowercase().contains(&mention));
            }
            prop_assert_eq!(tags.iter().collect::<HashSet<_>>().len(), tags.len());
            prop_assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Very long input, on both sides of the raw-size bound: one piece
        /// repeated to 60-70 KiB is always too long, and cheap to refuse.
        #[test]
        fn very_long_text_is_too_long(piece in prop::sample::select(HOSTILE), target in 60_000usize..70_000) {
            let input = piece.repeat(target / piece.len() + 1);
            prop_assert_eq!(normalize(&input), Err(TextError::TooLong));
            let _ = hashtags(&input);
            let _ = mentions(&input);
        }
    }

    proptest! {
        #[test]
        fn never_panics(input in any::<String>()) {
            let _ = normalize(&input);
            let _ = hashtags(&input);
            let _ = mentions(&input);
        }

        /// The rule holds exactly at the boundary for every kind of unit.
        #[test]
        fn length_rule_is_exact(unit in 0..UNITS.len(), count in 270usize..290) {
            let (text, nfc_chars) = UNITS[unit];
            let accepted = normalize(&text.repeat(count)).is_ok();
            prop_assert_eq!(accepted, count * nfc_chars <= MAX_TEXT_CHARS);
        }

        #[test]
        fn accepted_text_is_nfc_and_within_bounds(input in "\\PC{0,300}") {
            if let Ok(text) = normalize(&input) {
                prop_assert!(unicode_normalization::is_nfc(&text));
                let chars = text.chars().count();
                prop_assert!((1..=MAX_TEXT_CHARS).contains(&chars));
                prop_assert!(!text.trim().is_empty());
            }
        }

        #[test]
        fn extracted_tokens_are_lowercase_and_unique(input in "([#@ ]|\\w|[A-Z]){0,80}") {
            let tags = hashtags(&input);
            let names = mentions(&input);
            for tag in &tags {
                prop_assert!(!tag.is_empty());
                prop_assert_eq!(tag, &tag.to_lowercase());
                prop_assert!(tag.chars().all(is_word_char));
            }
            for name in &names {
                prop_assert!((1..=MAX_USERNAME_CHARS).contains(&name.len()));
                prop_assert!(name.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '_'));
            }
            prop_assert_eq!(tags.iter().collect::<HashSet<_>>().len(), tags.len());
            prop_assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        }
    }
}
