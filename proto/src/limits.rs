//! The numeric limits of Warble's contracts, one module per contract. The
//! service that enforces a limit, the clients that stay within it and the
//! `.proto` comment that states it all read the one number defined here.
//!
//! A `.proto` comment states a limit as the number followed by the path of
//! its constant, e.g. "up to 500 (`limits::tweet::MAX_BATCH`) tweet ids".
//! `tests/limits.rs` checks every such mention against the constant, that
//! every constant here is mentioned somewhere, and that no comment states a
//! number without naming its constant.
//!
//! Each constant has the type of what it bounds: `u32` for a `uint32`
//! request field (page sizes, tweets per author), `usize` for the length of
//! a repeated field or a string.

/// Limits of `warble.tweet.v1.TweetService`.
pub mod tweet {
    /// Most tweet ids one read batch carries (GetTweets, GetCounts,
    /// GetViewerState).
    pub const MAX_BATCH: usize = 500;
    /// Largest page ScanTweets (the search index's backfill) returns.
    pub const MAX_SCAN_LIMIT: u32 = 1_000;
    /// Most tweets one CreateTweets call creates. The embedded store writes
    /// a batch in one transaction, so this bounds how long a batch holds the
    /// store's single writer.
    pub const MAX_WRITE_BATCH: usize = 1_000;
    /// Most media ids one tweet attaches.
    pub const MAX_MEDIA: usize = 4;
    /// Longest idempotency key, in bytes.
    pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
    /// Most Unicode scalar values a tweet's text has after NFC normalisation.
    pub const MAX_TEXT_CHARS: usize = 280;
    /// ListUserTweets' page size when `page.limit` is 0, and ListAuthorsTweets'
    /// tweets per author when `limit_per_author` is 0.
    pub const DEFAULT_PAGE_LIMIT: u32 = 20;
    /// Largest `page.limit` ListUserTweets accepts.
    pub const MAX_PAGE_LIMIT: u32 = 100;
    /// Most author ids one ListAuthorsTweets call names.
    pub const MAX_AUTHORS_PER_CALL: usize = 1_000;
    /// Largest `limit_per_author` ListAuthorsTweets accepts: a whole cached
    /// home timeline ([`super::timeline::CACHED_HOME_ENTRIES`]), so a
    /// timeline rebuild can take it from one author in one call.
    pub const MAX_TWEETS_PER_AUTHOR: u32 = 800;
    /// Most ancestors GetAncestors returns (and its default): a reply chain
    /// shown above a tweet, as Mastodon's context does.
    pub const MAX_ANCESTORS: u32 = 80;
}

/// Limits of `warble.graph.v1.GraphService`.
pub mod graph {
    /// Longest username. Usernames are `[A-Za-z0-9_]` only, so this counts
    /// characters and bytes alike; a mention in a tweet is at most this long
    /// too, since it names a user.
    pub const MAX_USERNAME_CHARS: usize = 15;
    /// Longest display name after trimming, in characters.
    pub const MAX_DISPLAY_NAME_CHARS: usize = 50;
    /// Longest bio, in characters.
    pub const MAX_BIO_CHARS: usize = 160;
    /// Most user ids or pairs one read batch carries (GetUsers,
    /// GetFollowCounts, IsFollowing).
    pub const MAX_BATCH: usize = 500;
    /// Most users or pairs one write batch (CreateUsers, FollowMany) carries.
    /// A batch is one store transaction: this bounds how long it holds the
    /// store's single writer and how much it buffers before committing.
    pub const MAX_WRITE_BATCH: usize = 1_000;
    /// ListFollowers' and ListFollowing's page size when `page.limit` is 0.
    pub const DEFAULT_PAGE_LIMIT: u32 = 100;
    /// Largest `page.limit` ListFollowers and ListFollowing accept; large
    /// because fan-out and timeline rebuilds read whole lists.
    pub const MAX_PAGE_LIMIT: u32 = 5_000;
    /// Longest location after trimming, in characters.
    pub const MAX_LOCATION_CHARS: usize = 30;
    /// Longest website URL, in characters.
    pub const MAX_WEBSITE_CHARS: usize = 100;
    /// Longest mute duration: a year. Longer is what "until unmuted" (0) is for.
    pub const MAX_MUTE_DURATION_SECS: u64 = 31_536_000;
    /// Largest page ScanUsers (the search index's backfill) returns.
    pub const MAX_SCAN_LIMIT: u32 = 1_000;
    /// Longest identity issuer (a token's `iss`, RegisterUser and
    /// ResolveIdentity), in bytes: providers' issuers are URLs well below it.
    pub const MAX_ISSUER_BYTES: usize = 255;
    /// Longest identity subject (a token's `sub`), in bytes: OpenID Connect
    /// caps `sub` at 255 ASCII characters.
    pub const MAX_SUBJECT_BYTES: usize = 255;
}

/// Limits of `warble.timeline.v1.TimelineService`.
pub mod timeline {
    /// GetHomeTimeline's and GetUserTimeline's page size when `page.limit` is 0.
    pub const DEFAULT_PAGE_LIMIT: u32 = 20;
    /// Largest `page.limit` GetHomeTimeline and GetUserTimeline accept.
    pub const MAX_PAGE_LIMIT: u32 = 100;
    /// Newest entries of each home timeline the timeline cache keeps. Not a
    /// request limit: pages below them are read from the tweet and graph
    /// stores, only more slowly. The cache's own capacity must equal it
    /// (timeline-svc asserts so where it uses both).
    pub const CACHED_HOME_ENTRIES: usize = 800;
    /// A retweet does not enter a home timeline whose newest this-many
    /// entries already hold the tweet or another retweet of it (Mastodon's
    /// rule), so one tweet is not shown again and again.
    pub const RETWEET_DEDUP_WINDOW: usize = 40;
}

/// Limits of `warble.notify.v1.NotifyService`.
pub mod notify {
    /// ListNotifications' page size when `page.limit` is 0.
    pub const DEFAULT_PAGE_LIMIT: u32 = 20;
    /// Largest `page.limit` ListNotifications accepts.
    pub const MAX_PAGE_LIMIT: u32 = 100;
    /// Most group ids one GetNotifications call names.
    pub const MAX_BATCH: usize = 100;
    /// Actors a group shows (newest first); the count covers the rest.
    pub const MAX_SAMPLE_ACTORS: usize = 8;
    /// A like, retweet or follow group keeps absorbing actors while its
    /// newest item is younger than this (Mastodon groups the same way).
    pub const GROUP_WINDOW_SECS: u64 = 43_200;
    /// The unread count stops counting here (Mastodon caps it too): a badge
    /// says "1000+", and counting is bounded work.
    pub const MAX_UNREAD_COUNT: u64 = 1_000;
    /// Groups kept per recipient; older ones are dropped as new ones arrive.
    pub const RETAINED_GROUPS: usize = 10_000;
    /// Groups whose newest item is older than this are dropped.
    pub const RETENTION_DAYS: u64 = 180;
    /// Largest `new_accounts_days` a notification policy accepts.
    pub const MAX_NEW_ACCOUNT_DAYS: u32 = 365;
}

/// Limits of `warble.search.v1.SearchService`.
pub mod search {
    /// SearchTweets' page size when `page.limit` is 0.
    pub const DEFAULT_PAGE_LIMIT: u32 = 20;
    /// Largest `page.limit` SearchTweets accepts.
    pub const MAX_PAGE_LIMIT: u32 = 100;
    /// Longest query, in bytes (the query language's own limit).
    pub const MAX_QUERY_BYTES: usize = 512;
    /// Most terms in a query.
    pub const MAX_QUERY_TERMS: usize = 32;
    /// SearchUsers' result count when `limit` is 0.
    pub const DEFAULT_USER_LIMIT: u32 = 20;
    /// Largest `limit` SearchUsers accepts.
    pub const MAX_USER_LIMIT: u32 = 100;
    /// GetTrends' trend count when `limit` is 0.
    pub const DEFAULT_TREND_LIMIT: u32 = 20;
    /// Largest `limit` GetTrends accepts.
    pub const MAX_TREND_LIMIT: u32 = 100;
    /// Sample tweets GetTrends returns per trend, at most.
    pub const MAX_TREND_SAMPLES: u32 = 10;
    /// Unique authors a tag needs within the last hour to trend.
    pub const MIN_TREND_AUTHORS: u64 = 5;
    /// Hourly counts a trend carries (a day's sparkline, oldest first).
    pub const TREND_HOURS: usize = 24;
    /// GetStatus counts the stream entries not yet applied up to this many.
    pub const MAX_COUNTED_LAG: u64 = 10_000;
}

/// Limits of `warble.media.v1.MediaService`.
pub mod media {
    /// Most media ids one GetMedia call names (a page's tweets and avatars).
    pub const MAX_BATCH: usize = 500;
    /// Most images one tweet attaches (as Mastodon and X allow).
    pub const MAX_IMAGES_PER_TWEET: usize = 4;
    /// Most videos one tweet attaches; a video is attached alone.
    pub const MAX_VIDEOS_PER_TWEET: usize = 1;
    /// Longest alt text, in characters (Mastodon's limit).
    pub const MAX_ALT_TEXT_CHARS: usize = 1_500;
    /// Largest chunk of an Upload or ReadMedia stream, in bytes: small
    /// enough that a stream never holds a file whole, large enough that a
    /// 64 MB video is a few hundred messages.
    pub const MAX_CHUNK_BYTES: usize = 262_144;
    /// Longest claim key, in bytes (a tweet's idempotency key fits).
    pub const MAX_CLAIM_KEY_BYTES: usize = 128;
    /// Longest side of an image's preview, in pixels.
    pub const PREVIEW_MAX_SIDE: u32 = 400;
}

// A tweet attaches no more media than tweet-svc accepts.
const _: () = assert!(media::MAX_IMAGES_PER_TWEET <= tweet::MAX_MEDIA);

// A rebuild fills a cached timeline from a single prolific author in one call.
const _: () = assert!(tweet::MAX_TWEETS_PER_AUTHOR as usize >= timeline::CACHED_HOME_ENTRIES);
