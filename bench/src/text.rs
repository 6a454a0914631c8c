//! Tweet texts that look like tweets: varied length, hashtags, @mentions,
//! the odd link and emoji, so the services' parsing, normalisation and
//! storage do their usual work.

use rand::Rng;
use rand::seq::IndexedRandom as _;

const OPENERS: &[&str] = &[
    "Just",
    "Honestly,",
    "Hot take:",
    "Reminder:",
    "TIL",
    "Can't believe",
    "Morning!",
    "Thread:",
    "PSA:",
    "Finally",
    "So",
    "Quick question:",
];

const SUBJECTS: &[&str] = &[
    "the new release",
    "my coffee",
    "this build",
    "the train",
    "our team",
    "the weather",
    "that talk",
    "the benchmark",
    "my garden",
    "the match",
    "this paper",
    "the deploy",
    "Rust's borrow checker",
    "the city at night",
];

const VERBS: &[&str] = &[
    "shipped",
    "broke",
    "made my day",
    "is underrated",
    "needs more love",
    "just got faster",
    "surprised everyone",
    "is finally done",
    "taught me something",
    "went better than expected",
];

const TAILS: &[&str] = &[
    "and I'm here for it.",
    "again.",
    "no notes.",
    "thoughts?",
    "more soon.",
    "who else?",
    "what a week.",
    "can't wait for tomorrow.",
    "🎉",
    "☕",
    "🚀",
    "details below",
];

const HASHTAGS: &[&str] = &[
    "rust",
    "warble",
    "systemdesign",
    "coffee",
    "music",
    "football",
    "opensource",
    "devops",
    "photography",
    "books",
    "travel",
    "ai",
    "gardening",
    "weekend",
];

/// A tweet-like text of at most 280 characters, mentioning some of `mentionable`.
pub fn tweet_text(rng: &mut impl Rng, mentionable: &[String]) -> String {
    let mut text = format!(
        "{} {} {} {}",
        OPENERS.choose(rng).expect("openers"),
        SUBJECTS.choose(rng).expect("subjects"),
        VERBS.choose(rng).expect("verbs"),
        TAILS.choose(rng).expect("tails"),
    );
    // Longer posts: a second sentence on roughly a third of them.
    if rng.random_bool(0.35) {
        text.push_str(&format!(
            " Also, {} {}.",
            SUBJECTS.choose(rng).expect("subjects"),
            VERBS.choose(rng).expect("verbs")
        ));
    }
    if rng.random_bool(0.15) {
        text.push_str(" https://example.com/p/");
        text.push_str(&rng.random_range(1_000..99_999u32).to_string());
    }
    for _ in 0..rng.random_range(0..=2) {
        text.push_str(" #");
        text.push_str(HASHTAGS.choose(rng).expect("hashtags"));
    }
    if !mentionable.is_empty() {
        for _ in 0..rng.random_range(0..=1) {
            text.push_str(" @");
            text.push_str(mentionable.choose(rng).expect("users"));
        }
    }
    if text.chars().count() > 280 {
        text = text.chars().take(280).collect();
    }
    text
}

const NAMES: &[&str] = &[
    "ada", "alan", "grace", "linus", "ken", "barbara", "edsger", "donald", "margaret", "dennis",
    "frances", "john", "radia", "tim", "sophie", "guido", "yukihiro", "bjarne", "anita", "hedy",
];

/// A valid, unique username for user `index` (at most 15 of `[a-z0-9_]`).
pub fn username(index: usize) -> String {
    let digits = index.to_string();
    // The index keeps names unique; the name is cut to leave it room.
    let room = 15usize.saturating_sub(digits.len() + 1);
    let name = NAMES[index % NAMES.len()];
    format!("{}_{digits}", &name[..name.len().min(room)])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn texts_fit_a_tweet_and_usernames_fit_a_handle() {
        let mut rng = StdRng::seed_from_u64(7);
        let users: Vec<String> = (0..10).map(username).collect();
        for _ in 0..1_000 {
            let text = tweet_text(&mut rng, &users);
            assert!((1..=280).contains(&text.chars().count()), "{text}");
        }
        for index in (0..40).chain(9_999_960..10_000_000) {
            assert!(username(index).len() <= 15, "{}", username(index));
        }
        assert_eq!(username(21), "alan_21");
        assert_ne!(username(1_000_008), username(1_000_028));
        assert!(
            username(123)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        );
    }
}
