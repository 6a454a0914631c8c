//! The search query language: what a user types in the search box, parsed
//! into a typed [`Query`] the index can run.
//!
//! # Grammar
//!
//! A query is a sequence of terms separated by whitespace (any Unicode
//! whitespace). Each term is one of:
//!
//! | written                  | parsed as                                   |
//! |--------------------------|---------------------------------------------|
//! | `word`                   | [`Term::Word`], lower-cased                 |
//! | `"a phrase"`             | [`Term::Phrase`], its words lower-cased     |
//! | `#hashtag`               | [`Term::Hashtag`], lower-cased, without `#` |
//! | `@user`                  | [`Term::Mention`], lower-cased, without `@` |
//! | `from:user`              | [`Term::From`]: tweets by that user         |
//! | `to:user`                | [`Term::To`]: replies to that user          |
//! | `has:media`              | [`Term::HasMedia`]                          |
//! | `is:reply`               | [`Term::IsReply`]                           |
//! | `since:YYYY-MM-DD`       | [`Query::since`]                            |
//! | `until:YYYY-MM-DD`       | [`Query::until`]                            |
//!
//! A `-` directly before any term but a date excludes it ([`Clause::negated`]):
//! `-word`, `-"a phrase"`, `-#tag`, `-@user`, `-from:user`, `-to:user`,
//! `-has:media`, `-is:reply`.
//!
//! # Decisions
//!
//! - **Words.** A word character is a letter, digit, `_` or combining mark
//!   (the rule tweet-svc uses for hashtags, so `नमस्ते` is one word). An
//!   apostrophe (`'` or `’`, stored as `'`) is kept between word characters
//!   (`don't`) and dropped at a word's edges (`'quoted'` is `quoted`). Any
//!   other character separates words. A bare term that splits into several
//!   words (`e-mail`, `10:30`) is a [`Term::Phrase`] of them, as tantivy's
//!   own query parser does; a bare term with no word character at all
//!   (`!!!`, `...`) is punctuation and is skipped (it counts toward no
//!   limit), unless it is excluded (`-!!!` is an error: there is nothing to
//!   exclude). Words are lower-cased with Unicode rules.
//! - **Phrases.** `"`, `“` and `”` are all quote marks and any one closes a
//!   phrase any one opened, since phone keyboards type curly quotes. A
//!   quote always starts a phrase, even glued to a word (`foo"bar baz"` is
//!   `foo` and the phrase `bar baz`); inside quotes everything is plain
//!   words (`"#rust is fun"` is the phrase `rust is fun`). An unterminated
//!   quote is an error at the quote; so is a phrase with no word in it.
//! - **Hashtags and usernames are strict.** A hashtag is word characters
//!   only and a username (in `@user`, `from:` and `to:`) is 1 to
//!   [`MAX_USERNAME_CHARS`] of `[A-Za-z0-9_]`; any other character, even
//!   trailing punctuation (`#rust,`), is an error at that character, rather
//!   than a silent guess at what was meant. `from:` and `to:` also take
//!   `@user`.
//! - **Operators.** A term that starts with ASCII letters and a colon is an
//!   operator, names case-insensitive (`FROM:alice`). An unknown name is an
//!   error naming it (so a pasted URL, `https://…`, is one too); a colon
//!   after anything else is punctuation (`10:30`, `café:`).
//! - **Dates** are calendar dates in UTC and both ends are inclusive:
//!   `since:2024-01-01 until:2024-01-01` is that whole day (see
//!   [`Query::created_range_ms`]). Each appears at most once, `since` is not
//!   after `until`, and neither can be excluded.
//! - **A query needs at least one positive term.** Only exclusions (`-spam`)
//!   or only dates would ask for nearly every tweet in the index, which is
//!   a listing, not a search; `has:media` and `is:reply` alone are positive
//!   terms and allowed.
//! - **Limits.** At most [`MAX_QUERY_BYTES`] bytes and [`MAX_TERMS`] terms;
//!   a phrase is one term, and so is each date.
//!
//! Every error is a [`ParseError`] naming the byte position (always on a
//! character boundary, at most the input's length) where the problem is.

use std::fmt;

/// Longest query, in bytes: bounds the work one request can ask of the
/// parser and of the index.
pub const MAX_QUERY_BYTES: usize = 512;

/// Most terms in a query: every clause, and each `since:` or `until:`. Each
/// clause is a posting-list walk in the index, so this bounds a query's cost.
pub const MAX_TERMS: usize = 32;

/// Longest username, in characters (bytes alike: usernames are ASCII).
pub const MAX_USERNAME_CHARS: usize = warble_proto::limits::graph::MAX_USERNAME_CHARS;

// The contract states the query limits; the parser enforces these.
const _: () = assert!(MAX_QUERY_BYTES == warble_proto::limits::search::MAX_QUERY_BYTES);
const _: () = assert!(MAX_TERMS == warble_proto::limits::search::MAX_QUERY_TERMS);

/// A parsed query: the clauses every result must match (or, when negated,
/// must not), and an optional range of creation dates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// In the order written; at least one is not negated.
    pub terms: Vec<Clause>,
    /// Tweets created on or after this day (UTC).
    pub since: Option<Date>,
    /// Tweets created on or before this day (UTC), the whole day included.
    pub until: Option<Date>,
}

impl Query {
    /// The creation-time range in Unix milliseconds, `[start, end)`: `start`
    /// is the first instant of `since`, `end` the first instant after `until`.
    pub fn created_range_ms(&self) -> (Option<i64>, Option<i64>) {
        (
            self.since.map(Date::to_unix_ms),
            self.until.map(|until| until.to_unix_ms() + MS_PER_DAY),
        )
    }
}

/// The canonical spelling of the query, which parses back to the same
/// [`Query`]: clauses in order, then the dates.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dates = [("since", self.since), ("until", self.until)];
        let dates = dates
            .iter()
            .filter_map(|(name, date)| date.map(|date| format!("{name}:{date}")));
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(Clause::to_string)
            .chain(dates)
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// One term of a query, and whether results must match it or must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub term: Term,
    /// Written with a leading `-`: results must not match the term.
    pub negated: bool,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("-")?;
        }
        write!(f, "{}", self.term)
    }
}

/// What a clause matches. Text is lower-cased and carries no sigil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A word anywhere in the tweet's text.
    Word(String),
    /// These words, next to each other and in this order (never empty).
    Phrase(Vec<String>),
    /// A hashtag, without `#`.
    Hashtag(String),
    /// A mention of this username, without `@`.
    Mention(String),
    /// Tweets by this username.
    From(String),
    /// Replies to this username.
    To(String),
    /// Tweets with media attached.
    HasMedia,
    /// Tweets that are replies.
    IsReply,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Word(word) => f.write_str(word),
            Term::Phrase(words) => write!(f, "\"{}\"", words.join(" ")),
            Term::Hashtag(tag) => write!(f, "#{tag}"),
            Term::Mention(user) => write!(f, "@{user}"),
            Term::From(user) => write!(f, "from:{user}"),
            Term::To(user) => write!(f, "to:{user}"),
            Term::HasMedia => f.write_str("has:media"),
            Term::IsReply => f.write_str("is:reply"),
        }
    }
}

/// A calendar day (proleptic Gregorian, years 0000 to 9999), always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

const MS_PER_DAY: i64 = 86_400_000;

impl Date {
    /// The date, if it is one: `None` for month 13 or February 29 of a
    /// common year.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let valid = year <= 9999
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        valid.then_some(Date { year, month, day })
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// The first instant of the day in UTC, in milliseconds since the Unix
    /// epoch (negative before 1970).
    pub fn to_unix_ms(self) -> i64 {
        // Howard Hinnant's days_from_civil: years counted from March, so the
        // leap day is the last day of its year.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (i64::from(self.month) + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        (era * 146_097 + day_of_era - 719_468) * MS_PER_DAY
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap_year(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Why a query did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {position}: {message}")]
pub struct ParseError {
    /// Byte offset into the query, on a character boundary and at most the
    /// query's length.
    pub position: usize,
    /// What is wrong, for a person to read.
    pub message: String,
}

fn error(position: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        position,
        message: message.into(),
    }
}

/// Parses a search query; see the [module docs](self) for the language.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    if input.len() > MAX_QUERY_BYTES {
        let mut position = MAX_QUERY_BYTES;
        while !input.is_char_boundary(position) {
            position -= 1;
        }
        return Err(error(
            position,
            format!(
                "query is {} bytes; at most {MAX_QUERY_BYTES} are allowed",
                input.len()
            ),
        ));
    }
    if input.trim().is_empty() {
        return Err(error(0, "query is empty: type something to search for"));
    }
    let mut parser = Parser {
        input,
        pos: 0,
        query: Query::default(),
        term_count: 0,
    };
    loop {
        parser.skip_whitespace();
        if parser.pos == input.len() {
            break;
        }
        parser.item()?;
    }
    let query = parser.query;
    if query.terms.iter().all(|clause| clause.negated) {
        return Err(error(
            0,
            "query needs at least one positive term (a word, \"phrase\", #hashtag, @mention, \
             from:, to:, has:media or is:reply), not only exclusions or dates",
        ));
    }
    Ok(query)
}

/// What one item of the query turned out to be.
enum Item {
    Clause(Term),
    /// `since:` or `until:`, already recorded in the query.
    DateFilter,
    /// Punctuation only: ignored.
    Nothing,
}

#[derive(Clone, Copy)]
enum Bound {
    Since,
    Until,
}

impl Bound {
    fn name(self) -> &'static str {
        match self {
            Bound::Since => "since",
            Bound::Until => "until",
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
    query: Query,
    term_count: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The text up to the next whitespace or quote mark, consumed, and the
    /// byte offset it starts at.
    fn take_token(&mut self) -> (usize, &'a str) {
        let start = self.pos;
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || is_quote(c))
            .unwrap_or(rest.len());
        self.pos += end;
        (start, &rest[..end])
    }

    /// One term, optionally negated, starting at a non-whitespace character.
    fn item(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        let negated = self.peek() == Some('-');
        if negated {
            self.pos += 1;
            match self.peek() {
                None => return Err(dangling_minus(start)),
                Some(c) if c.is_whitespace() => return Err(dangling_minus(start)),
                Some('-') => {
                    return Err(error(
                        self.pos,
                        "a term can be excluded only once: remove the extra '-'",
                    ));
                }
                Some(_) => {}
            }
        }
        let item = match self.peek() {
            Some(c) if is_quote(c) => Item::Clause(self.phrase()?),
            Some('#') => Item::Clause(self.hashtag()?),
            Some('@') => Item::Clause(self.mention()?),
            _ => {
                let (at, token) = self.take_token();
                match split_operator(token) {
                    Some((name, value)) => self.operator(start, at, name, value, negated)?,
                    None => bare(start, token, negated)?,
                }
            }
        };
        if matches!(item, Item::Nothing) {
            return Ok(());
        }
        self.term_count += 1;
        if self.term_count > MAX_TERMS {
            return Err(error(
                start,
                format!("too many terms: at most {MAX_TERMS} are allowed"),
            ));
        }
        if let Item::Clause(term) = item {
            self.query.terms.push(Clause { term, negated });
        }
        Ok(())
    }

    fn phrase(&mut self) -> Result<Term, ParseError> {
        let open = self.pos;
        self.pos += self.peek().map_or(0, char::len_utf8);
        let rest = self.rest();
        let Some(length) = rest.find(is_quote) else {
            return Err(error(
                open,
                "unterminated quote: close the phrase with '\"'",
            ));
        };
        let closing = rest[length..].chars().next().map_or(0, char::len_utf8);
        self.pos += length + closing;
        let words = words(&rest[..length]);
        if words.is_empty() {
            return Err(error(open, "empty phrase: put words between the quotes"));
        }
        Ok(Term::Phrase(words))
    }

    fn hashtag(&mut self) -> Result<Term, ParseError> {
        let sigil = self.pos;
        self.pos += 1;
        let (at, tag) = self.take_token();
        if tag.is_empty() {
            return Err(error(
                sigil,
                "'#' must be followed by a hashtag, as in #rust",
            ));
        }
        if let Some((offset, c)) = tag.char_indices().find(|&(_, c)| !is_word_char(c)) {
            return Err(error(
                at + offset,
                format!(
                    "{c:?} cannot be part of a hashtag: a hashtag is letters, digits, marks and '_'"
                ),
            ));
        }
        Ok(Term::Hashtag(tag.to_lowercase()))
    }

    fn mention(&mut self) -> Result<Term, ParseError> {
        let sigil = self.pos;
        self.pos += 1;
        let (at, name) = self.take_token();
        if name.is_empty() {
            return Err(error(
                sigil,
                "'@' must be followed by a username, as in @alice",
            ));
        }
        username(at, name).map(Term::Mention)
    }

    /// `name:value`, where `at` is the offset of `name` and `start` that of
    /// the whole item (its `-`, if negated).
    fn operator(
        &mut self,
        start: usize,
        at: usize,
        name: &str,
        value: &str,
        negated: bool,
    ) -> Result<Item, ParseError> {
        let value_at = at + name.len() + 1;
        let lower = name.to_ascii_lowercase();
        let term = match lower.as_str() {
            "from" | "to" => {
                let (value_at, value) = match value.strip_prefix('@') {
                    Some(value) => (value_at + 1, value),
                    None => (value_at, value),
                };
                if value.is_empty() {
                    return Err(error(
                        at,
                        format!("{lower}: needs a username, as in {lower}:alice"),
                    ));
                }
                let user = username(value_at, value)?;
                if lower == "from" {
                    Term::From(user)
                } else {
                    Term::To(user)
                }
            }
            "has" | "is" => {
                let expected = if lower == "has" { "media" } else { "reply" };
                if value.is_empty() {
                    return Err(error(
                        at,
                        format!("{lower}: needs a value: {lower}:{expected}"),
                    ));
                }
                if !value.eq_ignore_ascii_case(expected) {
                    return Err(error(
                        value_at,
                        format!(
                            "unknown {lower}: value '{value}': the only one is {lower}:{expected}"
                        ),
                    ));
                }
                if lower == "has" {
                    Term::HasMedia
                } else {
                    Term::IsReply
                }
            }
            "since" => return self.date(Bound::Since, start, at, value_at, value, negated),
            "until" => return self.date(Bound::Until, start, at, value_at, value, negated),
            _ => {
                return Err(error(
                    at,
                    format!(
                        "unknown operator '{name}:': the operators are from:, to:, since:, until:, has: and is:"
                    ),
                ));
            }
        };
        Ok(Item::Clause(term))
    }

    fn date(
        &mut self,
        bound: Bound,
        start: usize,
        at: usize,
        value_at: usize,
        value: &str,
        negated: bool,
    ) -> Result<Item, ParseError> {
        let name = bound.name();
        if negated {
            return Err(error(
                start,
                format!("{name}: cannot be excluded: use since: and until: to bound the dates"),
            ));
        }
        if value.is_empty() {
            return Err(error(
                at,
                format!("{name}: needs a date, as in {name}:2024-01-31"),
            ));
        }
        let date = parse_date(value_at, value)?;
        let slot = match bound {
            Bound::Since => &mut self.query.since,
            Bound::Until => &mut self.query.until,
        };
        if slot.is_some() {
            return Err(error(at, format!("{name}: given more than once")));
        }
        *slot = Some(date);
        if let (Some(since), Some(until)) = (self.query.since, self.query.until)
            && since > until
        {
            return Err(error(at, format!("since:{since} is after until:{until}")));
        }
        Ok(Item::DateFilter)
    }
}

fn dangling_minus(position: usize) -> ParseError {
    error(
        position,
        "'-' must be followed directly by a term to exclude, as in -word",
    )
}

/// A bare word (or words glued by punctuation).
fn bare(start: usize, token: &str, negated: bool) -> Result<Item, ParseError> {
    let mut words = words(token);
    match words.len() {
        0 if negated => Err(error(
            start,
            format!("nothing to exclude: '{token}' has no letters or digits"),
        )),
        0 => Ok(Item::Nothing),
        1 => Ok(Item::Clause(Term::Word(words.remove(0)))),
        _ => Ok(Item::Clause(Term::Phrase(words))),
    }
}

/// `name` and `value` of `name:value`, if the token starts with ASCII letters
/// and a colon.
fn split_operator(token: &str) -> Option<(&str, &str)> {
    let name_len = token.bytes().take_while(u8::is_ascii_alphabetic).count();
    (name_len > 0 && token.as_bytes().get(name_len) == Some(&b':'))
        .then(|| (&token[..name_len], &token[name_len + 1..]))
}

/// A username starting at byte `at` of the query, lower-cased.
fn username(at: usize, name: &str) -> Result<String, ParseError> {
    if let Some((offset, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(error(
            at + offset,
            format!("{c:?} cannot be part of a username: usernames are A-Z, a-z, 0-9 and '_'"),
        ));
    }
    if name.len() > MAX_USERNAME_CHARS {
        return Err(error(
            at,
            format!("username '{name}' is longer than {MAX_USERNAME_CHARS} characters"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// `YYYY-MM-DD` starting at byte `at` of the query.
fn parse_date(at: usize, value: &str) -> Result<Date, ParseError> {
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| bytes[i].is_ascii_digit());
    if !shaped {
        return Err(error(
            at,
            format!("invalid date '{value}': expected YYYY-MM-DD, as in 2024-01-31"),
        ));
    }
    // Four ASCII digits at most: no overflow.
    let number = |from: usize, to: usize| {
        bytes[from..to]
            .iter()
            .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'))
    };
    let (year, month, day) = (number(0, 4), number(5, 7), number(8, 10));
    let Ok(month @ 1..=12) = u8::try_from(month) else {
        return Err(error(
            at + 5,
            format!("invalid month {month:02} in {value}: months run from 01 to 12"),
        ));
    };
    // Two digits: at most 99.
    let day = u8::try_from(day).unwrap_or(u8::MAX);
    Date::new(year, month, day).ok_or_else(|| {
        error(
            at + 8,
            format!(
                "invalid day {day:02} in {value}: {year:04}-{month:02} has {} days",
                days_in_month(year, month)
            ),
        )
    })
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

/// The words of `text`: runs of word characters and apostrophes, apostrophes
/// trimmed from the ends and stored as `'`, lower-cased. The index splits
/// tweets with this same rule, so a word typed matches the word indexed.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !is_word_char(c) && !is_apostrophe(c))
        .map(|piece| piece.trim_matches(is_apostrophe))
        .filter(|piece| !piece.is_empty())
        .map(|piece| piece.replace('\u{2019}', "'").to_lowercase())
        .collect()
}

/// Letters, digits, `_` and combining marks, as tweet-svc's hashtag rule:
/// marks are part of words in many scripts, so a word must not stop at them.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

/// Combining marks that [`char::is_alphanumeric`] does not already accept
/// (viramas, nuktas, diacritics, tone marks, variation selectors), by block.
/// tweet-svc asks `unicode-normalization` instead; this table keeps the
/// parser's dependencies small and is a close approximation: across the
/// Indic blocks every non-alphanumeric character but the dandas counts,
/// which takes in a few currency signs and fractions too. The index uses
/// this rule for tweets and queries alike ([`words`]), so they agree.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' // combining diacritical marks
        | '\u{0483}'..='\u{0489}' // Cyrillic
        | '\u{0591}'..='\u{05BD}' | '\u{05BF}' | '\u{05C1}'..='\u{05C2}' | '\u{05C4}'..='\u{05C5}' | '\u{05C7}' // Hebrew
        | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06DC}'
        | '\u{06DF}'..='\u{06E4}' | '\u{06E7}'..='\u{06E8}' | '\u{06EA}'..='\u{06ED}' // Arabic
        | '\u{0900}'..='\u{0963}' | '\u{0966}'..='\u{096F}' | '\u{0971}'..='\u{0DFF}' // Indic, but the dandas
        | '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}' // Thai
        | '\u{0EB1}' | '\u{0EB4}'..='\u{0EBC}' | '\u{0EC8}'..='\u{0ECE}' // Lao
        | '\u{0F18}'..='\u{0F19}' | '\u{0F35}' | '\u{0F37}' | '\u{0F39}' | '\u{0F71}'..='\u{0F84}'
        | '\u{0F86}'..='\u{0F87}' | '\u{0F8D}'..='\u{0FBC}' | '\u{0FC6}' // Tibetan
        | '\u{102B}'..='\u{103E}' | '\u{1056}'..='\u{1059}' | '\u{105E}'..='\u{1060}' | '\u{1062}'..='\u{1064}'
        | '\u{1067}'..='\u{106D}' | '\u{1071}'..='\u{1074}' | '\u{1082}'..='\u{108D}' | '\u{108F}'
        | '\u{109A}'..='\u{109D}' // Myanmar
        | '\u{17B4}'..='\u{17D3}' // Khmer
        | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' // more diacritics
        | '\u{302A}'..='\u{302F}' | '\u{3099}'..='\u{309A}' // CJK tone marks, kana voicing
        | '\u{FE00}'..='\u{FE0F}' | '\u{FE20}'..='\u{FE2F}' // variation selectors, half marks
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clause(term: Term) -> Clause {
        Clause {
            term,
            negated: false,
        }
    }

    fn not(term: Term) -> Clause {
        Clause {
            term,
            negated: true,
        }
    }

    fn word(text: &str) -> Term {
        Term::Word(text.to_owned())
    }

    fn phrase(words: &[&str]) -> Term {
        Term::Phrase(words.iter().map(|w| (*w).to_owned()).collect())
    }

    fn user(make: fn(String) -> Term, name: &str) -> Term {
        make(name.to_owned())
    }

    fn terms(clauses: Vec<Clause>) -> Query {
        Query {
            terms: clauses,
            since: None,
            until: None,
        }
    }

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date::new(year, month, day).expect("a valid date")
    }

    #[test]
    fn valid_queries_parse_exactly() {
        let dated = |since: Option<Date>, until: Option<Date>| Query {
            terms: vec![clause(word("rust"))],
            since,
            until,
        };
        let cases: Vec<(&str, Query)> = vec![
            ("rust", terms(vec![clause(word("rust"))])),
            (
                "  Rust\tTOKIO\n async ",
                terms(vec![
                    clause(word("rust")),
                    clause(word("tokio")),
                    clause(word("async")),
                ]),
            ),
            (
                "ÜBER Ünïcode Straße",
                terms(vec![
                    clause(word("über")),
                    clause(word("ünïcode")),
                    clause(word("straße")),
                ]),
            ),
            (
                "cafe\u{301} नमस्ते",
                terms(vec![clause(word("cafe\u{301}")), clause(word("नमस्ते"))]),
            ),
            (
                "日本語\u{3000}テスト",
                terms(vec![clause(word("日本語")), clause(word("テスト"))]),
            ),
            (
                "don't Rock’n’Roll snake_case",
                terms(vec![
                    clause(word("don't")),
                    clause(word("rock'n'roll")),
                    clause(word("snake_case")),
                ]),
            ),
            (
                "'quoted' hello! c++ c#",
                terms(vec![
                    clause(word("quoted")),
                    clause(word("hello")),
                    clause(word("c")),
                    clause(word("c")),
                ]),
            ),
            (
                "e-mail 10:30",
                terms(vec![
                    clause(phrase(&["e", "mail"])),
                    clause(phrase(&["10", "30"])),
                ]),
            ),
            ("rust !!! ... —", terms(vec![clause(word("rust"))])),
            (
                "\"Hello, World\"",
                terms(vec![clause(phrase(&["hello", "world"]))]),
            ),
            ("\"one\"", terms(vec![clause(phrase(&["one"]))])),
            (
                "“Curly Quotes” \"mixed”",
                terms(vec![
                    clause(phrase(&["curly", "quotes"])),
                    clause(phrase(&["mixed"])),
                ]),
            ),
            (
                "foo\"bar baz\"qux",
                terms(vec![
                    clause(word("foo")),
                    clause(phrase(&["bar", "baz"])),
                    clause(word("qux")),
                ]),
            ),
            (
                "\"#rust is @fun\"",
                terms(vec![clause(phrase(&["rust", "is", "fun"]))]),
            ),
            (
                "#Rust #日本語 #नमस्ते #snake_case",
                terms(vec![
                    clause(Term::Hashtag("rust".into())),
                    clause(Term::Hashtag("日本語".into())),
                    clause(Term::Hashtag("नमस्ते".into())),
                    clause(Term::Hashtag("snake_case".into())),
                ]),
            ),
            (
                "@Alice @x_1 @abcdefghijklmno",
                terms(vec![
                    clause(user(Term::Mention, "alice")),
                    clause(user(Term::Mention, "x_1")),
                    clause(user(Term::Mention, "abcdefghijklmno")),
                ]),
            ),
            (
                "from:Alice to:@Bob_1 FROM:carol",
                terms(vec![
                    clause(user(Term::From, "alice")),
                    clause(user(Term::To, "bob_1")),
                    clause(user(Term::From, "carol")),
                ]),
            ),
            (
                "has:media is:reply HAS:Media",
                terms(vec![
                    clause(Term::HasMedia),
                    clause(Term::IsReply),
                    clause(Term::HasMedia),
                ]),
            ),
            ("is:reply", terms(vec![clause(Term::IsReply)])),
            (
                "rust -java -\"bad news\" -#spam -@troll -from:bot -to:bot -has:media -is:reply -e-mail",
                terms(vec![
                    clause(word("rust")),
                    not(word("java")),
                    not(phrase(&["bad", "news"])),
                    not(Term::Hashtag("spam".into())),
                    not(user(Term::Mention, "troll")),
                    not(user(Term::From, "bot")),
                    not(user(Term::To, "bot")),
                    not(Term::HasMedia),
                    not(Term::IsReply),
                    not(phrase(&["e", "mail"])),
                ]),
            ),
            (
                "-5 degrees",
                terms(vec![not(word("5")), clause(word("degrees"))]),
            ),
            ("rust since:2024-01-01", dated(Some(date(2024, 1, 1)), None)),
            (
                "until:2024-01-31 rust",
                dated(None, Some(date(2024, 1, 31))),
            ),
            (
                "rust since:2024-02-29 until:2024-02-29",
                dated(Some(date(2024, 2, 29)), Some(date(2024, 2, 29))),
            ),
            (
                "SINCE:2023-12-31 rust UNTIL:2024-01-01",
                dated(Some(date(2023, 12, 31)), Some(date(2024, 1, 1))),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected.clone()), "{input:?}");
            let canonical = expected.to_string();
            assert_eq!(
                parse(&canonical),
                Ok(expected),
                "canonical form {canonical:?} of {input:?}"
            );
        }
    }

    #[test]
    fn invalid_queries_name_position_and_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "query is empty"),
            (" \t\n\u{3000}", 0, "query is empty"),
            ("\"unterminated", 0, "unterminated quote"),
            ("rust “open", 5, "unterminated quote"),
            ("rust \"\"", 5, "empty phrase"),
            ("rust \" !! \"", 5, "empty phrase"),
            ("rust -", 5, "'-' must be followed directly by a term"),
            ("rust - java", 5, "'-' must be followed directly by a term"),
            ("rust --java", 6, "excluded only once"),
            (
                "rust -!!!",
                5,
                "nothing to exclude: '!!!' has no letters or digits",
            ),
            ("#", 0, "'#' must be followed by a hashtag"),
            ("rust -#", 6, "'#' must be followed by a hashtag"),
            ("#rust!", 5, "'!' cannot be part of a hashtag"),
            ("##rust", 1, "'#' cannot be part of a hashtag"),
            ("日本 #タグ!", 14, "'!' cannot be part of a hashtag"),
            ("@", 0, "'@' must be followed by a username"),
            ("@al-ice", 3, "'-' cannot be part of a username"),
            ("@alicé", 5, "'é' cannot be part of a username"),
            (
                "@abcdefghijklmnop",
                1,
                "username 'abcdefghijklmnop' is longer than 15 characters",
            ),
            ("from:", 0, "from: needs a username, as in from:alice"),
            ("rust to:", 5, "to: needs a username"),
            ("rust to:@", 5, "to: needs a username"),
            ("from:ali.ce", 8, "'.' cannot be part of a username"),
            ("from:@abcdefghijklmnop", 6, "longer than 15 characters"),
            ("from:\"alice\"", 0, "from: needs a username"),
            ("lang:en", 0, "unknown operator 'lang:'"),
            ("rust https://example.com", 5, "unknown operator 'https:'"),
            ("rust -Near:me", 6, "unknown operator 'Near:'"),
            (
                "has:links",
                4,
                "unknown has: value 'links': the only one is has:media",
            ),
            (
                "is:quote",
                3,
                "unknown is: value 'quote': the only one is is:reply",
            ),
            ("rust has:", 5, "has: needs a value: has:media"),
            ("rust since:", 5, "since: needs a date"),
            (
                "rust since:2024-1-1",
                11,
                "invalid date '2024-1-1': expected YYYY-MM-DD",
            ),
            ("rust until:yesterday", 11, "invalid date 'yesterday'"),
            ("rust since:２０２４-01-01", 11, "invalid date"),
            (
                "rust until:2024-13-01",
                16,
                "invalid month 13 in 2024-13-01",
            ),
            ("rust until:2024-00-10", 16, "invalid month 00"),
            (
                "rust since:2023-02-29",
                19,
                "invalid day 29 in 2023-02-29: 2023-02 has 28 days",
            ),
            (
                "rust since:2024-04-31",
                19,
                "invalid day 31 in 2024-04-31: 2024-04 has 30 days",
            ),
            ("rust since:2024-01-00", 19, "invalid day 00"),
            (
                "rust since:2024-01-01 since:2024-01-02",
                22,
                "since: given more than once",
            ),
            (
                "rust until:2024-01-01 until:2024-01-01",
                22,
                "until: given more than once",
            ),
            (
                "rust since:2024-02-01 until:2024-01-31",
                22,
                "since:2024-02-01 is after until:2024-01-31",
            ),
            (
                "rust until:2024-01-31 since:2024-02-01",
                22,
                "since:2024-02-01 is after until:2024-01-31",
            ),
            ("rust -since:2024-01-01", 5, "since: cannot be excluded"),
            ("rust -until:2024-01-01", 5, "until: cannot be excluded"),
            ("-rust", 0, "needs at least one positive term"),
            (
                "-rust -#spam -has:media",
                0,
                "needs at least one positive term",
            ),
            (
                "since:2024-01-01 until:2024-12-31",
                0,
                "needs at least one positive term",
            ),
            ("!!! ???", 0, "needs at least one positive term"),
        ];
        for &(input, position, fragment) in cases {
            let error = parse(input).expect_err(input);
            assert_eq!(error.position, position, "{input:?}: {error}");
            assert!(error.message.contains(fragment), "{input:?}: {error}");
            assert_eq!(
                error.to_string(),
                format!("at byte {position}: {}", error.message)
            );
        }
    }

    #[test]
    fn query_length_is_limited_in_bytes() {
        assert!(parse(&"a".repeat(MAX_QUERY_BYTES)).is_ok());
        let error = parse(&"a".repeat(MAX_QUERY_BYTES + 1)).unwrap_err();
        assert_eq!(error.position, MAX_QUERY_BYTES);
        assert_eq!(error.message, "query is 513 bytes; at most 512 are allowed");
        // 171 three-byte characters are 513 bytes: the position backs off to
        // the character boundary before the limit.
        let error = parse(&"日".repeat(171)).unwrap_err();
        assert_eq!(error.position, 510);
        assert!(error.message.contains("query is 513 bytes"));
        // Whitespace counts too, and is not trimmed first.
        let padded = format!("rust{}", " ".repeat(MAX_QUERY_BYTES - 3));
        assert_eq!(parse(&padded).unwrap_err().position, MAX_QUERY_BYTES);
    }

    #[test]
    fn query_terms_are_limited() {
        let words = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>();
        let query = parse(&words(MAX_TERMS).join(" ")).unwrap();
        assert_eq!(query.terms.len(), MAX_TERMS);

        let input = words(MAX_TERMS + 1).join(" ");
        let error = parse(&input).unwrap_err();
        assert_eq!(error.position, input.rfind("w32").unwrap());
        assert_eq!(error.message, "too many terms: at most 32 are allowed");

        // Dates count, and a phrase is one term; punctuation counts for nothing.
        let mut thirty = words(MAX_TERMS - 3);
        thirty.push("\"a long phrase of words\"".into());
        let fits = format!("{} since:2024-01-01 !!! until:2024-01-02", thirty.join(" "));
        assert_eq!(parse(&fits).unwrap().terms.len(), MAX_TERMS - 2);
        let over = format!("{fits} -y");
        let error = parse(&over).unwrap_err();
        assert_eq!(error.position, over.len() - 2);
        assert!(error.message.contains("too many terms"));
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert!(Date::new(2024, 2, 29).is_some(), "2024 is a leap year");
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some(), "divisible by 400");
        assert!(Date::new(1900, 2, 29).is_none(), "divisible by 100");
        assert!(Date::new(2024, 13, 1).is_none());
        assert!(Date::new(2024, 0, 1).is_none());
        assert!(Date::new(2024, 1, 0).is_none());
        assert!(Date::new(2024, 1, 32).is_none());
        assert!(Date::new(10_000, 1, 1).is_none());
        assert_eq!(
            parse("x since:2024-02-29").unwrap().since,
            Some(date(2024, 2, 29))
        );
        assert_eq!(
            parse("x since:2000-02-29").unwrap().since,
            Some(date(2000, 2, 29))
        );
        assert!(
            parse("x since:1900-02-29")
                .unwrap_err()
                .message
                .contains("1900-02 has 28 days")
        );
        assert!(
            parse("x until:2024-13-01")
                .unwrap_err()
                .message
                .contains("invalid month 13")
        );
        assert_eq!(date(2024, 2, 29).to_string(), "2024-02-29");
        assert_eq!(date(7, 3, 9).to_string(), "0007-03-09");
    }

    #[test]
    fn dates_convert_to_unix_milliseconds() {
        // Checked against `date -u -d <day> +%s`.
        let cases = [
            (date(1970, 1, 1), 0),
            (date(1969, 12, 31), -86_400_000),
            (date(2000, 3, 1), 951_868_800_000),
            (date(2024, 2, 29), 1_709_164_800_000),
            (date(2024, 12, 31), 1_735_603_200_000),
            (date(0, 1, 1), -62_167_219_200_000),
            (date(9999, 12, 31), 253_402_214_400_000),
        ];
        for (day, ms) in cases {
            assert_eq!(day.to_unix_ms(), ms, "{day}");
        }
        let query = parse("rust since:2024-02-29 until:2024-02-29").unwrap();
        assert_eq!(
            query.created_range_ms(),
            (
                Some(1_709_164_800_000),
                Some(1_709_164_800_000 + 86_400_000)
            )
        );
        assert_eq!(parse("rust").unwrap().created_range_ms(), (None, None));
    }

    /// Pieces of the language and the characters that trip parsers, glued
    /// together with and without spaces.
    const PIECES: &[&str] = &[
        " ",
        "  ",
        "\t",
        "\u{3000}",
        "-",
        "--",
        "\"",
        "“",
        "”",
        "'",
        "’",
        "#",
        "@",
        ":",
        "!",
        ".",
        "_",
        "rust",
        "Don't",
        "e-mail",
        "日本",
        "नमस्ते",
        "\u{301}",
        "İ",
        "Σ",
        "ß",
        "🎉",
        "\u{200D}",
        "\0",
        "from:",
        "to:",
        "FROM:",
        "from:@",
        "has:",
        "has:media",
        "is:",
        "is:reply",
        "lang:",
        "since:",
        "until:",
        "2024-02-29",
        "2023-02-29",
        "2024-13-01",
        "9999-12-31",
        "0000-01-01",
        "alice",
        "abcdefghijklmnopq",
    ];

    fn query_shaped() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(PIECES).prop_map(str::to_owned),
                1 => any::<char>().prop_map(String::from),
            ],
            0..48,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// What every answer of [`parse`] promises, whatever the input.
    fn check(input: &str) -> Result<(), TestCaseError> {
        match parse(input) {
            Ok(query) => {
                prop_assert!(input.len() <= MAX_QUERY_BYTES);
                let dates = usize::from(query.since.is_some()) + usize::from(query.until.is_some());
                prop_assert!(query.terms.len() + dates <= MAX_TERMS);
                prop_assert!(query.terms.iter().any(|clause| !clause.negated));
                if let (Some(since), Some(until)) = (query.since, query.until) {
                    prop_assert!(since <= until);
                }
                for clause in &query.terms {
                    match &clause.term {
                        Term::Word(word) => prop_assert!(!word.is_empty()),
                        Term::Phrase(words) => {
                            prop_assert!(!words.is_empty() && words.iter().all(|w| !w.is_empty()))
                        }
                        Term::Hashtag(tag) => {
                            prop_assert!(!tag.is_empty() && tag.chars().all(is_word_char))
                        }
                        Term::Mention(name) | Term::From(name) | Term::To(name) => {
                            prop_assert!((1..=MAX_USERNAME_CHARS).contains(&name.len()));
                            prop_assert!(name.bytes().all(|b| b.is_ascii_digit()
                                || b.is_ascii_lowercase()
                                || b == b'_'));
                        }
                        Term::HasMedia | Term::IsReply => {}
                    }
                }
                // The canonical spelling parses back to the same query.
                let canonical = query.to_string();
                prop_assert_eq!(parse(&canonical), Ok(query), "canonical {:?}", canonical);
            }
            Err(error) => {
                prop_assert!(error.position <= input.len(), "{:?}: {}", input, error);
                prop_assert!(
                    input.is_char_boundary(error.position),
                    "{:?}: {}",
                    input,
                    error
                );
                prop_assert!(!error.message.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary strings (any scalar values, some over the length limit).
        #[test]
        fn never_panics_on_arbitrary_strings(input in any::<String>()) {
            check(&input)?;
        }

        /// Strings made of the language's own pieces, which reach every
        /// branch far more often than random characters do.
        #[test]
        fn never_panics_on_query_shaped_strings(input in query_shaped()) {
            check(&input)?;
        }
    }
}
