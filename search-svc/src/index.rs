//! The search index: one tantivy index on disk holding tweets and users,
//! and the checkpoint of the event stream it has applied.
//!
//! **One index, one commit.** Tweets and users live in the same index
//! (different fields), so a batch of events touching both commits once, and
//! the commit's payload records the last event applied
//! ([`Checkpoint`]). After a crash the index reopens at its last commit and
//! the indexer resumes from exactly the event recorded there: nothing
//! applied twice, nothing skipped.
//!
//! **Idempotent writes.** Every document is written as delete-by-id then
//! add, so applying the same tweet twice (a backfill overlapping the
//! stream) leaves one copy.
//!
//! **Words.** Tweet text is split into words by the query language's own
//! rule ([`crate::query::words`]), so what a user types matches what was
//! indexed, in every script. Users are found by prefix: every prefix (up to
//! [`MAX_PREFIX_CHARS`] characters) of the username and of each word of the
//! display name is indexed (edge n-grams), so typeahead is one term lookup.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector as _, Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, EnableScoring, Occur, PhraseQuery, Query as TantivyQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};
use warble_mesh::event_log::EventId;

use crate::error::SearchError;
use crate::query::{self, Query, Term as QueryTerm};

/// Longest prefix of a username or display-name word indexed for typeahead;
/// longer input still matches on its first this-many characters.
pub const MAX_PREFIX_CHARS: usize = 20;

const WORDS_TOKENIZER: &str = "warble_words";
const PREFIX_TOKENIZER: &str = "warble_prefixes";
const RAW_TOKENIZER: &str = "raw";

const KIND_TWEET: u64 = 0;
const KIND_USER: u64 = 1;

/// A tweet as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TweetDoc {
    pub id: u64,
    pub author_id: u64,
    pub created_at_ms: i64,
    pub text: String,
    /// Lower-cased, without `#`.
    pub hashtags: Vec<String>,
    /// Lower-cased usernames, without `@`.
    pub mentions: Vec<String>,
    /// Whether it replies to a tweet.
    pub is_reply: bool,
    /// The author of the tweet it replies to, when known (`to:`).
    pub reply_to_author_id: Option<u64>,
    pub has_media: bool,
}

/// A user as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDoc {
    pub id: u64,
    pub username: String,
    pub display_name: String,
    pub followers: u64,
}

/// One change to the index, applied in order within a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    /// Adds the tweet, replacing any copy.
    UpsertTweet(TweetDoc),
    /// Removes the tweet (a no-op when absent).
    DeleteTweet(u64),
    /// Adds the user, replacing any copy (their follower count included).
    UpsertUser(UserDoc),
    /// Sets a user's follower count (a no-op for a user not indexed).
    SetFollowers { user_id: u64, followers: u64 },
    /// Sets a user's names, keeping their follower count (adds the user
    /// with none when not indexed).
    UpdateProfile {
        user_id: u64,
        username: String,
        display_name: String,
    },
}

/// What the index has applied, stored as the payload of each commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last domain event applied ("ms-seq"); `None` before the first.
    pub applied: Option<String>,
    /// False while a backfill is filling the index: a restart finding it
    /// false starts the backfill over.
    pub complete: bool,
}

impl Checkpoint {
    /// The checkpoint of a complete index that has applied up to `applied`.
    pub fn at(applied: Option<EventId>) -> Self {
        Self {
            applied: applied.map(|id| id.to_string()),
            complete: true,
        }
    }

    /// The last event applied, parsed.
    pub fn applied_id(&self) -> Result<Option<EventId>, SearchError> {
        self.applied
            .as_deref()
            .map(|text| {
                text.parse()
                    .map_err(|_| SearchError::storage(format!("corrupt checkpoint `{text}`")))
            })
            .transpose()
    }
}

#[derive(Clone, Copy)]
struct Fields {
    kind: Field,
    tweet_id: Field,
    user_id: Field,
    author: Field,
    reply_to_author: Field,
    is_reply: Field,
    has_media: Field,
    created_ms: Field,
    text: Field,
    tags: Field,
    mentions: Field,
    user_prefix: Field,
    username_lower: Field,
    username: Field,
    display_name: Field,
    followers: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let indexed = || NumericOptions::default().set_indexed();
    let indexed_fast = || NumericOptions::default().set_indexed().set_fast();
    let keyword = || {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(RAW_TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        )
    };
    let fields = Fields {
        kind: builder.add_u64_field("kind", indexed()),
        tweet_id: builder.add_u64_field("tweet_id", indexed_fast()),
        user_id: builder.add_u64_field("user_id", indexed_fast()),
        author: builder.add_u64_field("author", indexed_fast()),
        reply_to_author: builder.add_u64_field("reply_to_author", indexed()),
        is_reply: builder.add_u64_field("is_reply", indexed()),
        has_media: builder.add_u64_field("has_media", indexed()),
        created_ms: builder.add_i64_field("created_ms", indexed_fast()),
        text: builder.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(WORDS_TOKENIZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        ),
        tags: builder.add_text_field("tags", keyword()),
        mentions: builder.add_text_field("mentions", keyword()),
        user_prefix: builder.add_text_field(
            "user_prefix",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(PREFIX_TOKENIZER)
                    .set_fieldnorms(false)
                    .set_index_option(IndexRecordOption::Basic),
            ),
        ),
        username_lower: builder.add_text_field("username_lower", keyword()),
        username: builder.add_text_field("username", STORED),
        display_name: builder.add_text_field("display_name", STORED),
        followers: builder.add_u64_field("followers", NumericOptions::default().set_fast()),
    };
    (builder.build(), fields)
}

/// Splits text into the query language's words (see [`query::words`]).
#[derive(Clone, Default)]
struct WordsTokenizer;

/// Every prefix of every word, up to [`MAX_PREFIX_CHARS`] characters.
#[derive(Clone, Default)]
struct PrefixTokenizer;

/// Tokens computed up front (tweets are at most 280 characters).
struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl VecTokenStream {
    fn new(texts: impl IntoIterator<Item = String>) -> Self {
        let tokens = texts
            .into_iter()
            .enumerate()
            .map(|(position, text)| Token {
                offset_from: 0,
                offset_to: 0,
                position,
                text,
                position_length: 1,
            })
            .collect();
        Self { tokens, next: 0 }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for WordsTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(query::words(text))
    }
}

impl Tokenizer for PrefixTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(
            query::words(text)
                .into_iter()
                .flat_map(|word| prefixes(&word)),
        )
    }
}

/// The prefixes of `word`, shortest first, up to [`MAX_PREFIX_CHARS`] characters.
fn prefixes(word: &str) -> Vec<String> {
    word.char_indices()
        .skip(1)
        .map(|(end, _)| end)
        .chain(std::iter::once(word.len()))
        .take(MAX_PREFIX_CHARS)
        .map(|end| word[..end].to_owned())
        .collect()
}

/// One tweet found by a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TweetHit {
    pub tweet_id: u64,
    pub author_id: u64,
    pub created_at_ms: i64,
    /// BM25 relevance; 0 for results ordered by time.
    pub relevance: f32,
}

/// A query compiled against the index: the parsed query with usernames
/// resolved to ids.
pub struct CompiledQuery {
    query: Box<dyn TantivyQuery>,
    /// A `from:` or `to:` user does not exist: nothing can match.
    matches_nothing: bool,
}

/// The search index (see the module docs).
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    dense: DenseQueries,
}

/// When a newest-first search of a segment reads its newest documents
/// first instead of every match (see [`SearchIndex::latest`]).
#[derive(Debug, Clone, Copy)]
struct DenseQueries {
    /// A query estimated to match more of a segment than this is dense.
    matches: u32,
    /// Documents in the first window read from a segment's end; each next
    /// window is eight times larger.
    first_window: u32,
}

impl Default for DenseQueries {
    fn default() -> Self {
        Self {
            matches: 8_192,
            first_window: 4_096,
        }
    }
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

/// How long opening an index waits for another writer to let go of it.
const WRITER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl SearchIndex {
    /// Opens the index in `dir`, creating it (and the directory) when absent,
    /// with an indexing heap of `writer_heap_bytes` over `writer_threads` threads.
    pub fn open(
        dir: &Path,
        writer_threads: usize,
        writer_heap_bytes: usize,
    ) -> Result<Self, SearchError> {
        Self::open_waiting(dir, writer_threads, writer_heap_bytes, || {})
    }

    /// [`SearchIndex::open`], calling `on_busy` each time another writer
    /// still holds the index and the open waits for it.
    fn open_waiting(
        dir: &Path,
        writer_threads: usize,
        writer_heap_bytes: usize,
        mut on_busy: impl FnMut(),
    ) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            SearchError::storage(format!("cannot create {}: {error}", dir.display()))
        })?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(SearchError::storage)?;
        let index = Index::open_or_create(directory, schema).map_err(|error| {
            SearchError::storage(format!(
                "cannot open the index in {} (written by another version? move it away to rebuild): {error}",
                dir.display()
            ))
        })?;
        index.tokenizers().register(WORDS_TOKENIZER, WordsTokenizer);
        index
            .tokenizers()
            .register(PREFIX_TOKENIZER, PrefixTokenizer);
        // One writer per index directory. A holder that is shutting down
        // (the stack restarting in process, a pod's predecessor) lets go
        // shortly: wait for it, within bounds, then name the likely cause.
        let deadline = std::time::Instant::now() + WRITER_LOCK_WAIT;
        let writer = loop {
            match index.writer_with_num_threads(writer_threads.max(1), writer_heap_bytes) {
                Ok(writer) => break writer,
                Err(tantivy::TantivyError::LockFailure(
                    tantivy::directory::error::LockError::LockBusy,
                    _,
                )) if std::time::Instant::now() < deadline => {
                    on_busy();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error @ tantivy::TantivyError::LockFailure(..)) => {
                    return Err(SearchError::storage(format!(
                        "another writer still holds the index in {} after {} s (two search-svc \
                         processes sharing one data_dir?): {error}",
                        dir.display(),
                        WRITER_LOCK_WAIT.as_secs()
                    )));
                }
                Err(error) => return Err(SearchError::storage(error)),
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(SearchError::storage)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            dense: DenseQueries::default(),
        })
    }

    /// The checkpoint of the last commit; `None` for an index never committed.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, SearchError> {
        let metas = self.index.load_metas().map_err(SearchError::storage)?;
        metas
            .payload
            .map(|payload| {
                serde_json::from_str(&payload).map_err(|error| {
                    SearchError::storage(format!("corrupt commit payload `{payload}`: {error}"))
                })
            })
            .transpose()
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `ops` in order and commits them with `checkpoint`, then makes
    /// them visible to searches. Blocking: call it off the async runtime.
    pub fn apply(&self, ops: Vec<IndexOp>, checkpoint: &Checkpoint) -> Result<(), SearchError> {
        let mut writer = self.lock_writer();
        let outcome = self.write(&writer, ops).and_then(|()| {
            let payload = serde_json::to_string(checkpoint).map_err(SearchError::storage)?;
            let mut prepared = writer.prepare_commit().map_err(SearchError::storage)?;
            prepared.set_payload(&payload);
            prepared.commit().map_err(SearchError::storage)?;
            Ok(())
        });
        if outcome.is_err() {
            // Drop whatever part of the batch was staged: the batch is
            // retried whole from the last checkpoint.
            let _ = writer.rollback();
        }
        drop(writer);
        outcome?;
        self.reader.reload().map_err(SearchError::storage)
    }

    /// Removes every document and commits `checkpoint` (a backfill starting over).
    pub fn clear(&self, checkpoint: &Checkpoint) -> Result<(), SearchError> {
        let mut writer = self.lock_writer();
        writer
            .delete_all_documents()
            .map_err(SearchError::storage)?;
        let payload = serde_json::to_string(checkpoint).map_err(SearchError::storage)?;
        let mut prepared = writer.prepare_commit().map_err(SearchError::storage)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(SearchError::storage)?;
        drop(writer);
        self.reader.reload().map_err(SearchError::storage)
    }

    fn write(&self, writer: &IndexWriter, ops: Vec<IndexOp>) -> Result<(), SearchError> {
        let f = self.fields;
        // Users are written once per batch, after their last change: a
        // celebrity gaining a thousand followers in one batch is one rewrite.
        let mut users: HashMap<u64, Option<UserDoc>> = HashMap::new();
        let mut user_order: Vec<u64> = Vec::new();
        for op in ops {
            match op {
                IndexOp::UpsertTweet(tweet) => {
                    writer.delete_term(Term::from_field_u64(f.tweet_id, tweet.id));
                    writer
                        .add_document(self.tweet_document(&tweet))
                        .map_err(SearchError::storage)?;
                }
                IndexOp::DeleteTweet(tweet_id) => {
                    writer.delete_term(Term::from_field_u64(f.tweet_id, tweet_id));
                }
                IndexOp::UpsertUser(user) => {
                    if !users.contains_key(&user.id) {
                        user_order.push(user.id);
                    }
                    users.insert(user.id, Some(user));
                }
                IndexOp::SetFollowers { user_id, followers } => {
                    if let Some(user) = self.pending_user(&mut users, &mut user_order, user_id)? {
                        user.followers = followers;
                    }
                }
                IndexOp::UpdateProfile {
                    user_id,
                    username,
                    display_name,
                } => {
                    let user = self
                        .pending_user(&mut users, &mut user_order, user_id)?
                        .get_or_insert(UserDoc {
                            id: user_id,
                            username: String::new(),
                            display_name: String::new(),
                            followers: 0,
                        });
                    user.username = username;
                    user.display_name = display_name;
                }
            }
        }
        for user_id in user_order {
            if let Some(Some(user)) = users.remove(&user_id) {
                writer.delete_term(Term::from_field_u64(f.user_id, user.id));
                writer
                    .add_document(self.user_document(&user))
                    .map_err(SearchError::storage)?;
            }
        }
        Ok(())
    }

    /// The batch's copy of a user, loaded from the index on first touch
    /// (`None` when not indexed).
    fn pending_user<'a>(
        &self,
        users: &'a mut HashMap<u64, Option<UserDoc>>,
        order: &mut Vec<u64>,
        user_id: u64,
    ) -> Result<&'a mut Option<UserDoc>, SearchError> {
        Ok(match users.entry(user_id) {
            std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                order.push(user_id);
                slot.insert(self.user(user_id)?)
            }
        })
    }

    fn tweet_document(&self, tweet: &TweetDoc) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.kind, KIND_TWEET);
        doc.add_u64(f.tweet_id, tweet.id);
        doc.add_u64(f.author, tweet.author_id);
        doc.add_i64(f.created_ms, tweet.created_at_ms);
        doc.add_text(f.text, &tweet.text);
        for tag in &tweet.hashtags {
            doc.add_text(f.tags, tag.to_lowercase());
        }
        for mention in &tweet.mentions {
            doc.add_text(f.mentions, mention.to_lowercase());
        }
        if let Some(author) = tweet.reply_to_author_id {
            doc.add_u64(f.reply_to_author, author);
        }
        doc.add_u64(f.is_reply, u64::from(tweet.is_reply));
        doc.add_u64(f.has_media, u64::from(tweet.has_media));
        doc
    }

    fn user_document(&self, user: &UserDoc) -> TantivyDocument {
        let f = self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.kind, KIND_USER);
        doc.add_u64(f.user_id, user.id);
        doc.add_text(f.user_prefix, &user.username);
        doc.add_text(f.user_prefix, &user.display_name);
        doc.add_text(f.username_lower, user.username.to_lowercase());
        doc.add_text(f.username, &user.username);
        doc.add_text(f.display_name, &user.display_name);
        doc.add_u64(f.followers, user.followers);
        doc
    }

    /// The user with this id as last committed, if indexed.
    pub fn user(&self, user_id: u64) -> Result<Option<UserDoc>, SearchError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_u64(f.user_id, user_id),
            IndexRecordOption::Basic,
        );
        let top = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(SearchError::storage)?;
        let Some((_, address)) = top.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*address).map_err(SearchError::storage)?;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let followers = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("followers")
            .map_err(SearchError::storage)?
            .first(address.doc_id)
            .unwrap_or(0);
        Ok(Some(UserDoc {
            id: user_id,
            username: text(f.username),
            display_name: text(f.display_name),
            followers,
        }))
    }

    /// The id of the user with this username (any case), if indexed.
    pub fn user_id_by_username(&self, username: &str) -> Result<Option<u64>, SearchError> {
        let f = self.fields;
        let query = TermQuery::new(
            Term::from_field_text(f.username_lower, &username.to_lowercase()),
            IndexRecordOption::Basic,
        );
        let ids = self.user_ids(&query, 1)?;
        Ok(ids.first().copied())
    }

    fn user_ids(&self, query: &dyn TantivyQuery, limit: usize) -> Result<Vec<u64>, SearchError> {
        let searcher = self.reader.searcher();
        let top = searcher
            .search(
                query,
                &TopDocs::with_limit(limit.max(1))
                    .order_by_fast_field::<u64>("followers", Order::Desc),
            )
            .map_err(SearchError::storage)?;
        top.into_iter()
            .map(|(_, address)| {
                searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("user_id")
                    .map_err(SearchError::storage)
                    .map(|column| column.first(address.doc_id).unwrap_or(0))
            })
            .collect()
    }

    /// Typeahead: users whose username or a display-name word starts with
    /// each word typed; the exact username first, then by followers.
    pub fn search_users(&self, typed: &str, limit: usize) -> Result<Vec<u64>, SearchError> {
        let f = self.fields;
        let words = query::words(typed.trim_start().trim_start_matches('@'));
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = words
            .iter()
            .take(crate::query::MAX_TERMS)
            .map(|word| {
                let prefix: String = word.chars().take(MAX_PREFIX_CHARS).collect();
                let term = TermQuery::new(
                    Term::from_field_text(f.user_prefix, &prefix),
                    IndexRecordOption::Basic,
                );
                (Occur::Must, Box::new(term) as Box<dyn TantivyQuery>)
            })
            .collect();
        let mut ids = Vec::with_capacity(limit);
        if words.len() == 1
            && let Some(exact) = self.user_id_by_username(&words[0])?
        {
            ids.push(exact);
        }
        for id in self.user_ids(&BooleanQuery::new(clauses), limit + 1)? {
            if ids.len() == limit {
                break;
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Compiles a parsed query: `from:` and `to:` usernames are looked up
    /// in the index's users.
    pub fn compile(&self, parsed: &Query) -> Result<CompiledQuery, SearchError> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        let mut matches_nothing = false;
        for clause in &parsed.terms {
            let occur = if clause.negated {
                Occur::MustNot
            } else {
                Occur::Must
            };
            let term_query = |term: Term| -> Box<dyn TantivyQuery> {
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
            };
            let query: Box<dyn TantivyQuery> = match &clause.term {
                QueryTerm::Word(word) => term_query(Term::from_field_text(f.text, word)),
                QueryTerm::Phrase(words) if words.len() == 1 => {
                    term_query(Term::from_field_text(f.text, &words[0]))
                }
                QueryTerm::Phrase(words) => Box::new(PhraseQuery::new(
                    words
                        .iter()
                        .map(|word| Term::from_field_text(f.text, word))
                        .collect(),
                )),
                QueryTerm::Hashtag(tag) => term_query(Term::from_field_text(f.tags, tag)),
                QueryTerm::Mention(user) => term_query(Term::from_field_text(f.mentions, user)),
                QueryTerm::From(user) | QueryTerm::To(user) => {
                    let field = if matches!(clause.term, QueryTerm::From(_)) {
                        f.author
                    } else {
                        f.reply_to_author
                    };
                    match self.user_id_by_username(user)? {
                        Some(id) => term_query(Term::from_field_u64(field, id)),
                        None => {
                            // Nobody has that name: a required clause
                            // matches nothing, an excluded one excludes nothing.
                            if !clause.negated {
                                matches_nothing = true;
                            }
                            continue;
                        }
                    }
                }
                QueryTerm::HasMedia => term_query(Term::from_field_u64(f.has_media, 1)),
                QueryTerm::IsReply => term_query(Term::from_field_u64(f.is_reply, 1)),
            };
            clauses.push((occur, query));
        }
        let (start, end) = parsed.created_range_ms();
        if start.is_some() || end.is_some() {
            let bound = |value: Option<i64>, inclusive: bool| match value {
                None => Bound::Unbounded,
                Some(ms) if inclusive => Bound::Included(Term::from_field_i64(f.created_ms, ms)),
                Some(ms) => Bound::Excluded(Term::from_field_i64(f.created_ms, ms)),
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(bound(start, true), bound(end, false))),
            ));
        }
        if !clauses.iter().any(|(occur, _)| *occur == Occur::Must) {
            // Only exclusions are left (a required user that exists was
            // excluded elsewhere): match among all tweets.
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.kind, KIND_TWEET),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        Ok(CompiledQuery {
            query: Box::new(BooleanQuery::new(clauses)),
            matches_nothing,
        })
    }

    fn restricted(
        &self,
        compiled: &CompiledQuery,
        below_tweet_id: Option<u64>,
        at_most_tweet_id: Option<u64>,
    ) -> BooleanQuery {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> =
            vec![(Occur::Must, compiled.query.box_clone())];
        if below_tweet_id.is_some() || at_most_tweet_id.is_some() {
            let upper = match (below_tweet_id, at_most_tweet_id) {
                (Some(below), _) => Bound::Excluded(Term::from_field_u64(f.tweet_id, below)),
                (None, Some(at_most)) => Bound::Included(Term::from_field_u64(f.tweet_id, at_most)),
                (None, None) => Bound::Unbounded,
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(Bound::Unbounded, upper)),
            ));
        }
        BooleanQuery::new(clauses)
    }

    /// The searcher's segments holding tweets, newest first: `(ordinal,
    /// smallest tweet id, largest tweet id)`, by largest id. Tweets are
    /// written in arrival order and merges join neighbouring segments, so
    /// the newest matches of a query sit in the first few.
    fn segments_newest_first(
        &self,
        searcher: &tantivy::Searcher,
    ) -> Result<Vec<(u32, u64, u64)>, SearchError> {
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        for (ordinal, reader) in searcher.segment_readers().iter().enumerate() {
            let ids = reader
                .fast_fields()
                .u64("tweet_id")
                .map_err(SearchError::storage)?;
            if ids.num_docs() == 0 || ids.max_value() == 0 {
                continue; // users only
            }
            segments.push((ordinal as u32, ids.min_value(), ids.max_value()));
        }
        segments.sort_by_key(|&(_, _, newest)| std::cmp::Reverse(newest));
        Ok(segments)
    }

    /// Newest first: up to `limit` matches with tweet ids below
    /// `below_tweet_id` (the previous page's last), for cursors that stay
    /// put while new tweets arrive.
    ///
    /// Segments are visited newest first and the walk stops at the first
    /// whose newest tweet is older than the page's oldest: a query matching
    /// most of the index reads the newest segment or two, not every match.
    /// Within a segment, a query estimated to match much of it (a common
    /// word, a phrase of common words) is checked only against the
    /// segment's newest documents, in growing windows from its end (tweets
    /// are written in arrival order), until the page is full; then one
    /// pass over the column of tweet ids finds any older document with a
    /// newer id (a backfill or replay writes out of order), so the page is
    /// exact.
    pub fn latest(
        &self,
        compiled: &CompiledQuery,
        below_tweet_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TweetHit>, SearchError> {
        if compiled.matches_nothing || limit == 0 {
            return Ok(Vec::new());
        }
        let query = self.restricted(compiled, below_tweet_id, None);
        let searcher = self.reader.searcher();
        let weight = query
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .map_err(SearchError::storage)?;
        let collector =
            TopDocs::with_limit(limit).order_by_fast_field::<u64>("tweet_id", Order::Desc);
        let mut best: Vec<(u64, DocAddress)> = Vec::with_capacity(limit + 1);
        for (ordinal, oldest, newest) in self.segments_newest_first(&searcher)? {
            let newest = match below_tweet_id {
                Some(below) if oldest >= below => continue,
                Some(below) => newest.min(below.saturating_sub(1)),
                None => newest,
            };
            if best.len() >= limit && best.last().is_some_and(|(worst, _)| newest < *worst) {
                break;
            }
            let reader = searcher.segment_reader(ordinal);
            let estimate = weight
                .scorer(reader, 1.0)
                .map_err(SearchError::storage)?
                .size_hint();
            if estimate <= self.dense.matches {
                let fruit = collector
                    .collect_segment(weight.as_ref(), ordinal, reader)
                    .map_err(SearchError::storage)?;
                let found = collector
                    .merge_fruits(vec![fruit])
                    .map_err(SearchError::storage)?;
                best.extend(
                    found
                        .into_iter()
                        .filter_map(|(id, address)| id.map(|id| (id, address))),
                );
                best.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
                best.truncate(limit);
            } else {
                self.latest_in_dense_segment(
                    weight.as_ref(),
                    ordinal,
                    reader,
                    below_tweet_id,
                    limit,
                    &mut best,
                )?;
            }
        }
        best.into_iter()
            .map(|(_, address)| self.hit(&searcher, address, 0.0))
            .collect()
    }

    /// [`SearchIndex::latest`] within one segment for a dense query: the
    /// segment's documents are read in windows from its end, each checked
    /// against the query, until `best` holds `limit` hits; then one last
    /// pass over the rest of the segment takes only documents whose tweet
    /// id beats the worst kept (found in the id column, not by reading the
    /// query's matches).
    fn latest_in_dense_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        ordinal: u32,
        reader: &tantivy::SegmentReader,
        below_tweet_id: Option<u64>,
        limit: usize,
        best: &mut Vec<(u64, DocAddress)>,
    ) -> Result<(), SearchError> {
        let ids = reader
            .fast_fields()
            .u64("tweet_id")
            .map_err(SearchError::storage)?;
        let ceiling = below_tweet_id.map_or(u64::MAX, |below| below.saturating_sub(1));
        let mut end = reader.max_doc();
        let mut window = self.dense.first_window.max(1);
        let mut candidates = Vec::new();
        while end > 0 {
            let full = best.len() >= limit;
            // Once the page is full, one pass over everything left, for
            // the few documents that could still displace a kept hit.
            let start = if full { 0 } else { end.saturating_sub(window) };
            let floor = match best.last() {
                Some(&(worst, _)) if full => worst.saturating_add(1),
                _ => 1,
            };
            if floor > ceiling {
                break;
            }
            candidates.clear();
            ids.get_docids_for_value_range(floor..=ceiling, start..end, &mut candidates);
            if !candidates.is_empty() {
                let mut scorer = weight.scorer(reader, 1.0).map_err(SearchError::storage)?;
                for &doc in &candidates {
                    if scorer.doc() > doc {
                        continue;
                    }
                    if scorer.seek(doc) == doc
                        && !reader.is_deleted(doc)
                        && let Some(id) = ids.first(doc)
                    {
                        best.push((id, DocAddress::new(ordinal, doc)));
                    }
                }
                best.sort_by_key(|&(id, _)| std::cmp::Reverse(id));
                best.truncate(limit);
            }
            if full {
                break;
            }
            end = start;
            window = window.saturating_mul(8);
        }
        Ok(())
    }

    /// The `limit` most relevant matches (BM25) among the newest matches:
    /// segments are read newest first until they have yielded at least
    /// `pool` matches (all of them for a rare query). Among tweets with ids
    /// up to `at_most_tweet_id`; most relevant first.
    pub fn most_relevant(
        &self,
        compiled: &CompiledQuery,
        at_most_tweet_id: Option<u64>,
        limit: usize,
        pool: usize,
    ) -> Result<Vec<TweetHit>, SearchError> {
        if compiled.matches_nothing || limit == 0 {
            return Ok(Vec::new());
        }
        let query = self.restricted(compiled, None, at_most_tweet_id);
        let searcher = self.reader.searcher();
        let weight = query
            .weight(EnableScoring::enabled_from_searcher(&searcher))
            .map_err(SearchError::storage)?;
        let collector = (TopDocs::with_limit(limit).order_by_score(), Count);
        let mut best: Vec<(f32, DocAddress)> = Vec::with_capacity(limit + 1);
        let mut matched = 0usize;
        for (ordinal, oldest, _) in self.segments_newest_first(&searcher)? {
            if at_most_tweet_id.is_some_and(|ceiling| oldest > ceiling) {
                continue;
            }
            if matched >= pool {
                break;
            }
            let fruit = collector
                .collect_segment(weight.as_ref(), ordinal, searcher.segment_reader(ordinal))
                .map_err(SearchError::storage)?;
            let (found, count) = collector
                .merge_fruits(vec![fruit])
                .map_err(SearchError::storage)?;
            matched += count;
            best.extend(found);
            best.sort_by(|a, b| b.0.total_cmp(&a.0));
            best.truncate(limit);
        }
        best.into_iter()
            .map(|(score, address)| self.hit(&searcher, address, score))
            .collect()
    }

    fn hit(
        &self,
        searcher: &tantivy::Searcher,
        address: DocAddress,
        relevance: f32,
    ) -> Result<TweetHit, SearchError> {
        let fast = searcher.segment_reader(address.segment_ord).fast_fields();
        let u64_of = |name: &str| -> Result<u64, SearchError> {
            Ok(fast
                .u64(name)
                .map_err(SearchError::storage)?
                .first(address.doc_id)
                .unwrap_or(0))
        };
        Ok(TweetHit {
            tweet_id: u64_of("tweet_id")?,
            author_id: u64_of("author")?,
            created_at_ms: fast
                .i64("created_ms")
                .map_err(SearchError::storage)?
                .first(address.doc_id)
                .unwrap_or(0),
            relevance,
        })
    }

    /// The newest tweet id in the index (the ceiling a TOP search fixes),
    /// from the segments' column statistics: one deleted since may be it,
    /// which changes nothing for a ceiling.
    pub fn newest_tweet_id(&self) -> Result<Option<u64>, SearchError> {
        let searcher = self.reader.searcher();
        Ok(self
            .segments_newest_first(&searcher)?
            .first()
            .map(|(_, _, newest)| *newest))
    }

    /// Tweets and users in the index, as last committed.
    pub fn counts(&self) -> Result<(u64, u64), SearchError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let count = |kind: u64| {
            searcher
                .search(
                    &TermQuery::new(Term::from_field_u64(f.kind, kind), IndexRecordOption::Basic),
                    &Count,
                )
                .map(|count| count as u64)
                .map_err(SearchError::storage)
        };
        Ok((count(KIND_TWEET)?, count(KIND_USER)?))
    }

    /// Every tweet id in the index, ascending (for tests and checks that
    /// compare the index with tweet-svc).
    pub fn all_tweet_ids(&self) -> Result<Vec<u64>, SearchError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_u64(f.kind, KIND_TWEET),
            IndexRecordOption::Basic,
        );
        let total = searcher
            .search(&query, &Count)
            .map_err(SearchError::storage)?;
        if total == 0 {
            return Ok(Vec::new());
        }
        let mut ids: Vec<u64> = searcher
            .search(
                &query,
                &TopDocs::with_limit(total).order_by_fast_field::<u64>("tweet_id", Order::Asc),
            )
            .map_err(SearchError::storage)?
            .into_iter()
            .filter_map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Bytes the index takes on disk.
    pub fn disk_bytes(&self) -> Result<u64, SearchError> {
        let searcher = self.reader.searcher();
        let space = searcher.space_usage().map_err(SearchError::storage)?;
        Ok(space.total().get_bytes())
    }

    #[cfg(test)]
    fn matches_all(&self) -> usize {
        self.reader
            .searcher()
            .search(&tantivy::query::AllQuery, &Count)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tweet `compiled` matches, newest first, read `limit` at a time
    /// by following each page's last id.
    fn every_page(index: &SearchIndex, compiled: &CompiledQuery, limit: usize) -> Vec<u64> {
        let mut below = None;
        let mut seen = Vec::new();
        loop {
            let page: Vec<u64> = index
                .latest(compiled, below, limit)
                .unwrap()
                .into_iter()
                .map(|hit| hit.tweet_id)
                .collect();
            if page.is_empty() {
                return seen;
            }
            below = page.last().copied();
            seen.extend(page);
        }
    }

    fn tweet(id: u64, author_id: u64, text: &str) -> TweetDoc {
        TweetDoc {
            id,
            author_id,
            created_at_ms: 1_700_000_000_000 + id as i64,
            text: text.into(),
            hashtags: text
                .split_whitespace()
                .filter_map(|word| word.strip_prefix('#'))
                .map(str::to_lowercase)
                .collect(),
            mentions: text
                .split_whitespace()
                .filter_map(|word| word.strip_prefix('@'))
                .map(str::to_lowercase)
                .collect(),
            is_reply: false,
            reply_to_author_id: None,
            has_media: false,
        }
    }

    fn user(id: u64, username: &str, display_name: &str, followers: u64) -> UserDoc {
        UserDoc {
            id,
            username: username.into(),
            display_name: display_name.into(),
            followers,
        }
    }

    fn search(index: &SearchIndex, text: &str) -> Vec<u64> {
        let parsed = query::parse(text).unwrap();
        let compiled = index.compile(&parsed).unwrap();
        index
            .latest(&compiled, None, 100)
            .unwrap()
            .into_iter()
            .map(|hit| hit.tweet_id)
            .collect()
    }

    fn open(dir: &Path) -> SearchIndex {
        SearchIndex::open(dir, 1, 15_000_000).unwrap()
    }

    #[test]
    fn prefixes_stop_at_the_limit_and_respect_characters() {
        assert_eq!(prefixes("abc"), ["a", "ab", "abc"]);
        assert_eq!(prefixes("é"), ["é"]);
        assert_eq!(prefixes(&"x".repeat(30)).len(), MAX_PREFIX_CHARS);
    }

    #[test]
    fn finds_by_word_phrase_tag_mention_author_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        let mut reply = tweet(4, 11, "replying about rust");
        reply.reply_to_author_id = Some(10);
        reply.is_reply = true;
        index
            .apply(
                vec![
                    IndexOp::UpsertUser(user(10, "Alice", "Alice Liddell", 5)),
                    IndexOp::UpsertUser(user(11, "bob", "Bob", 1)),
                    IndexOp::UpsertTweet(tweet(1, 10, "I love Rust and #Tantivy @bob")),
                    IndexOp::UpsertTweet(tweet(2, 11, "rust love is real")),
                    IndexOp::UpsertTweet(tweet(3, 11, "नमस्ते दुनिया")),
                    IndexOp::UpsertTweet(reply),
                ],
                &Checkpoint::at(None),
            )
            .unwrap();
        assert_eq!(search(&index, "rust"), [4, 2, 1]);
        assert_eq!(search(&index, "RUST love"), [2, 1]);
        assert_eq!(search(&index, "\"love rust\""), [1]);
        assert_eq!(search(&index, "\"rust love\""), [2]);
        assert_eq!(search(&index, "#tantivy"), [1]);
        assert_eq!(search(&index, "@bob"), [1]);
        assert_eq!(search(&index, "from:alice"), [1]);
        assert_eq!(search(&index, "rust -from:alice"), [4, 2]);
        assert_eq!(search(&index, "from:nobody"), Vec::<u64>::new());
        assert_eq!(search(&index, "to:alice"), [4]);
        assert_eq!(search(&index, "rust -is:reply"), [2, 1]);
        assert_eq!(search(&index, "नमस्ते"), [3]);
        assert_eq!(search(&index, "rust -love"), [4]);
    }

    #[test]
    fn upserts_replace_deletes_remove_and_commits_carry_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let first = EventId { ms: 5, seq: 1 };
        {
            let index = open(dir.path());
            assert_eq!(index.checkpoint().unwrap(), None);
            let ops = vec![
                IndexOp::UpsertTweet(tweet(1, 10, "hello world")),
                IndexOp::UpsertTweet(tweet(1, 10, "hello world")),
                IndexOp::UpsertTweet(tweet(2, 10, "hello again")),
                IndexOp::DeleteTweet(2),
                IndexOp::DeleteTweet(99),
            ];
            index.apply(ops, &Checkpoint::at(Some(first))).unwrap();
            assert_eq!(index.all_tweet_ids().unwrap(), [1]);
            assert_eq!(index.matches_all(), 1);
        }
        let index = open(dir.path());
        let checkpoint = index.checkpoint().unwrap().unwrap();
        assert!(checkpoint.complete);
        assert_eq!(checkpoint.applied_id().unwrap(), Some(first));
        assert_eq!(search(&index, "hello"), [1]);
    }

    #[test]
    fn typeahead_puts_the_exact_name_first_then_followers() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        index
            .apply(
                vec![
                    IndexOp::UpsertUser(user(1, "ann", "Ann Smith", 3)),
                    IndexOp::UpsertUser(user(2, "annabel", "Annabel", 900)),
                    IndexOp::UpsertUser(user(3, "zed", "Anna Zed", 50)),
                    IndexOp::UpsertUser(user(4, "bob", "Bob", 10_000)),
                    IndexOp::SetFollowers {
                        user_id: 3,
                        followers: 5_000,
                    },
                    IndexOp::SetFollowers {
                        user_id: 77,
                        followers: 1,
                    },
                ],
                &Checkpoint::at(None),
            )
            .unwrap();
        assert_eq!(index.search_users("ann", 10).unwrap(), [1, 3, 2]);
        assert_eq!(index.search_users("@AN", 10).unwrap(), [3, 2, 1]);
        assert_eq!(index.search_users("anna z", 10).unwrap(), [3]);
        assert_eq!(index.search_users("an", 2).unwrap(), [3, 2]);
        assert_eq!(index.search_users("   ", 10).unwrap(), Vec::<u64>::new());
        // A later batch keeps the follower count set by an earlier one.
        index
            .apply(
                vec![IndexOp::SetFollowers {
                    user_id: 1,
                    followers: 10,
                }],
                &Checkpoint::at(None),
            )
            .unwrap();
        assert_eq!(index.user(3).unwrap().unwrap().followers, 5_000);
        assert_eq!(index.user(1).unwrap().unwrap().display_name, "Ann Smith");
        assert_eq!(index.counts().unwrap(), (0, 4));
    }

    #[test]
    fn newest_first_pages_are_exact_across_segments_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        // Five commits (segments) whose id ranges overlap and arrive out of
        // order, as a backfill overlapping the stream makes them; one in
        // three tweets matches.
        let batches: [Vec<u64>; 5] = [
            (100..130).collect(),
            (1..40).collect(),
            (120..200).step_by(3).collect(),
            (40..100).rev().collect(),
            vec![5, 199, 77, 300],
        ];
        let mut matching = std::collections::BTreeSet::new();
        for batch in batches {
            let ops = batch
                .into_iter()
                .map(|id| {
                    let text = if id % 3 == 0 { "match me" } else { "other" };
                    if id % 3 == 0 {
                        matching.insert(id);
                    }
                    IndexOp::UpsertTweet(tweet(id, 1, text))
                })
                .collect();
            index.apply(ops, &Checkpoint::at(None)).unwrap();
        }
        let newest_first: Vec<u64> = matching.iter().rev().copied().collect();
        let compiled = index.compile(&query::parse("match").unwrap()).unwrap();
        for limit in [1, 7, 20, 200] {
            assert_eq!(
                every_page(&index, &compiled, limit),
                newest_first,
                "pages of {limit}"
            );
        }
        assert_eq!(index.newest_tweet_id().unwrap(), Some(300));
        let relevant = index.most_relevant(&compiled, None, 500, 1).unwrap();
        assert!(!relevant.is_empty() && relevant.len() <= matching.len());
        let all = index
            .most_relevant(&compiled, None, 500, usize::MAX)
            .unwrap();
        assert_eq!(all.len(), matching.len());
    }

    #[test]
    fn dense_queries_page_exactly_from_segment_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = open(dir.path());
        // Every query is dense, and windows start at 3 documents.
        index.dense = DenseQueries {
            matches: 0,
            first_window: 3,
        };
        // Out-of-order ids inside segments (a backfill overlapping the
        // stream), a deleted match, two segments.
        let batches: [Vec<u64>; 2] = [
            vec![50, 3, 90, 12, 71, 40, 8, 66, 99, 21, 35, 84],
            vec![7, 95, 60, 14, 88, 2, 45, 77, 30, 101],
        ];
        let mut matching = std::collections::BTreeSet::new();
        for batch in batches {
            let ops = batch
                .into_iter()
                .map(|id| {
                    let text = if id % 2 == 1 { "dense match" } else { "other" };
                    if id % 2 == 1 {
                        matching.insert(id);
                    }
                    IndexOp::UpsertTweet(tweet(id, 1, text))
                })
                .collect();
            index.apply(ops, &Checkpoint::at(None)).unwrap();
        }
        index
            .apply(vec![IndexOp::DeleteTweet(77)], &Checkpoint::at(None))
            .unwrap();
        matching.remove(&77);
        let newest_first: Vec<u64> = matching.iter().rev().copied().collect();
        let compiled = index.compile(&query::parse("dense").unwrap()).unwrap();
        for limit in [1, 2, 5, 100] {
            assert_eq!(
                every_page(&index, &compiled, limit),
                newest_first,
                "pages of {limit}"
            );
        }
    }

    #[test]
    fn dates_bound_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        let day = 86_400_000;
        let mut ops = Vec::new();
        for (id, ms) in [(1, 0), (2, day - 1), (3, day), (4, 2 * day)] {
            let mut doc = tweet(id, 1, "word");
            doc.created_at_ms = ms;
            ops.push(IndexOp::UpsertTweet(doc));
        }
        index.apply(ops, &Checkpoint::at(None)).unwrap();
        assert_eq!(search(&index, "word until:1970-01-01"), [2, 1]);
        assert_eq!(search(&index, "word since:1970-01-02"), [4, 3]);
        assert_eq!(
            search(&index, "word since:1970-01-02 until:1970-01-02"),
            [3]
        );
    }

    #[test]
    fn pages_below_a_cursor_and_relevance_under_a_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        let index = open(dir.path());
        let ops = (1..=5)
            .map(|id| IndexOp::UpsertTweet(tweet(id, 1, "page me")))
            .collect();
        index.apply(ops, &Checkpoint::at(None)).unwrap();
        let compiled = index.compile(&query::parse("page").unwrap()).unwrap();
        let ids =
            |hits: Vec<TweetHit>| hits.into_iter().map(|hit| hit.tweet_id).collect::<Vec<_>>();
        assert_eq!(ids(index.latest(&compiled, None, 2).unwrap()), [5, 4]);
        assert_eq!(ids(index.latest(&compiled, Some(4), 2).unwrap()), [3, 2]);
        let mut top = ids(index.most_relevant(&compiled, Some(3), 10, 100).unwrap());
        top.sort_unstable();
        assert_eq!(top, [1, 2, 3]);
        assert_eq!(index.newest_tweet_id().unwrap(), Some(5));
    }

    #[test]
    fn opening_waits_for_a_writer_that_is_letting_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = SearchIndex::open(dir.path(), 1, 15_000_000).unwrap();
        // The holder lets go only once the second open has found the
        // index busy, so the open below must have waited to succeed.
        let (busy, found_busy) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            found_busy.recv().expect("the open found the index busy");
            drop(first);
        });
        let mut waits = 0;
        let second = SearchIndex::open_waiting(dir.path(), 1, 15_000_000, || {
            waits += 1;
            let _ = busy.send(());
        });
        holder.join().expect("the holding thread");
        assert!(second.is_ok(), "opened once the first let go: {second:?}");
        assert!(waits >= 1, "it waited for the first writer");
    }
}
