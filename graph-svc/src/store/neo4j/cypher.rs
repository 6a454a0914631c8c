//! Every Cypher statement the Neo4j graph store runs, in one place.
//!
//! # Model
//!
//! - `(:User {id, username, username_lower, display_name, bio,
//!   created_at_ms, location, website, verified, avatar_media_id, followers,
//!   following})`.
//!   `followers` and `following` are maintained in the transaction of every
//!   follow and unfollow, so a count is one property read, never a scan of
//!   a celebrity's edges. `location`, `website`, `verified` and
//!   `avatar_media_id` came later: reads default them (`''`, `''`, `false`,
//!   `0`) on older nodes. `avatar_media_id` is a media id stored bit for bit
//!   as a Cypher integer, as user ids are; 0 is no avatar.
//! - `(:User)-[:FOLLOWS {seq, follower, followee}]->(:User)`. `seq` is a
//!   Snowflake id drawn while both users are locked, so one user's follows
//!   get increasing seqs in commit order; the two endpoint ids are copied
//!   onto the relationship so a page of a list is a seek in a composite
//!   relationship index (`followee, seq` or `follower, seq`) that returns
//!   edges already ordered, whatever the user's degree.
//! - `(:User)-[:BLOCKS {seq, blocker, blocked}]->(:User)` and
//!   `(:User)-[:MUTES {seq, muter, muted, expires_at_ms,
//!   hide_notifications}]->(:User)`, shaped like `FOLLOWS`: `seq` is drawn
//!   while both users are locked, and a composite index on (owner, seq)
//!   makes a page of a list an ordered seek. `expires_at_ms` is 0 for a
//!   mute that never lapses; a lapsed mute stays until replaced or removed,
//!   and every read judges it against the caller's `$now`. Whether a viewer
//!   blocks or mutes a user is an expand between two users found by id,
//!   never a walk of the viewer's list.
//! - `(:Identity {key, issuer, subject, user_id})`: an identity provider's
//!   account bound to the user it registered as, created by the statement
//!   that creates the user. `key` is the pair in one string, the issuer's
//!   length first (`"19:https://id.example/auth0|42"`), so no two pairs
//!   share one; its unique constraint keeps one user per identity (a
//!   composite constraint is Enterprise-only on Neo4j 4.4).
//! - `(:Outbox:OutboxPending {event_id, stream, event_key, payload})`: the
//!   transactional outbox, created in the transaction (or the statement)
//!   of the change it describes. Publishing removes the `OutboxPending` label; published
//!   nodes are kept a week (they carry the largest event ids, which a
//!   restarted id generator must stay above) and then pruned.
//!
//! Labels, the relationship type and schema names carry a namespace
//! prefix: empty in production, unique per run in the gated test suite, so
//! runs sharing one database (Neo4j Community has only one) never meet.
//!
//! Syntax is the common subset of Neo4j 4.4 and 5.x (`FOR ... REQUIRE`
//! constraints, `IF NOT EXISTS`, relationship property indexes).

/// Labels, relationship type and schema-name prefix of one namespace.
#[derive(Debug, Clone)]
pub(super) struct Names {
    user: String,
    identity: String,
    follows: String,
    blocks: String,
    mutes: String,
    outbox: String,
    pending: String,
    schema: String,
}

impl Names {
    /// The names in `namespace` (`[A-Za-z][A-Za-z0-9_]*` or empty; checked by the caller).
    pub(super) fn new(namespace: &str) -> Self {
        Self {
            user: format!("{namespace}User"),
            identity: format!("{namespace}Identity"),
            follows: format!("{namespace}FOLLOWS"),
            blocks: format!("{namespace}BLOCKS"),
            mutes: format!("{namespace}MUTES"),
            outbox: format!("{namespace}Outbox"),
            pending: format!("{namespace}OutboxPending"),
            schema: if namespace.is_empty() {
                "warble".to_owned()
            } else {
                format!(
                    "warble_{}",
                    namespace.trim_end_matches('_').to_ascii_lowercase()
                )
            },
        }
    }
}

/// Every statement, with the namespace's names filled in.
#[derive(Debug, Clone)]
pub(super) struct Cypher {
    /// Constraints and indexes, each idempotent.
    pub schema: Vec<String>,
    /// Names of the constraints and indexes [`Cypher::schema`] creates, to
    /// check they are all online.
    pub schema_names: Vec<String>,
    /// Lists the indexes with their default columns: `name` and `state`
    /// everywhere, `owningConstraint` on Neo4j 5 and ArcadeDB (`SHOW`
    /// works on 4.4 and 5.x).
    pub show_indexes: String,
    /// The names of the constraints: on servers that name a constraint's
    /// index otherwise and do not say which constraint owns it, the only
    /// sign the constraint exists.
    pub show_constraints: String,
    /// A round trip that touches nothing.
    pub ping: String,
    /// `$id, $username, $username_lower, $display_name, $bio,
    /// $created_at_ms` and the `UserCreated` outbox entry (`$event_id,
    /// $stream, $event_key, $payload`), in one statement: both or neither.
    pub create_user: String,
    /// [`Cypher::create_user`]'s parameters and `$identity_key, $issuer,
    /// $subject`: the user, its identity binding and its `UserCreated`
    /// outbox entry in one statement, all or none.
    pub register_user: String,
    /// `$identity_key` -> `user_id` of the user the identity registered as.
    pub resolve_identity: String,
    /// `$ids` -> users found (any order; the caller restores request order).
    pub get_users: String,
    /// `$username_lower` -> the user.
    pub get_user_by_username: String,
    /// `$usernames_lower` -> users found (any order; the caller matches
    /// them to the request).
    pub get_users_by_usernames: String,
    /// Takes the write lock of user `$id` and returns the user; no row when
    /// it does not exist.
    pub lock_profile: String,
    /// `$id, $display_name, $bio, $location, $website, $verified,
    /// $avatar_media_id` -> writes the profile.
    pub set_profile: String,
    /// `$ids` -> `id, followers, following` of users found.
    pub follow_counts: String,
    /// `$followers, $followees` (parallel lists) -> `i, follows` per pair.
    pub is_following: String,
    /// Takes the write lock of user `$id` (held to the end of the
    /// transaction) and returns its counts; no row when it does not exist.
    pub lock_user: String,
    /// Creates the follow if absent (under both users' locks), raising both
    /// counts only when it did; returns whether it did and the counts.
    pub merge_follow: String,
    /// Deletes the follow if present, lowering both counts (never below
    /// zero); one row when it did, none otherwise.
    pub delete_follow: String,
    /// Creates a pending outbox node.
    pub create_outbox: String,
    /// `$firsts, $seconds` (parallel lists) -> `i, blocked` per pair:
    /// whether either user blocks the other.
    pub blocks_between: String,
    /// `$blocker, $blocked` -> one row when the block exists.
    pub find_block: String,
    /// `$blocker, $blocked, $seq` -> creates the block (under both locks).
    pub create_block: String,
    /// `$blocker, $blocked` -> deletes the block; one row when it did.
    pub delete_block: String,
    /// `$muter, $muted` -> `seq, expires_at_ms, hide_notifications` of the
    /// stored mute, lapsed or not; no row when there is none.
    pub find_mute: String,
    /// `$muter, $muted, $seq, $expires_at_ms, $hide_notifications` ->
    /// creates or replaces the mute (under both locks).
    pub put_mute: String,
    /// `$muter, $muted` -> deletes the mute.
    pub delete_mute: String,
    /// `$user, $before, $limit` -> `user_id, seq` of blocked users, newest first.
    pub blocked_page: String,
    /// `$user, $before, $limit` -> `user_id, seq, expires_at_ms,
    /// hide_notifications` of muted users (lapsed too), newest first.
    pub muted_page: String,
    /// `$viewer, $ids, $now` -> `i, viewer_blocks, blocks_viewer,
    /// mute_expires_at_ms, mute_hides_notifications` per id (the mute
    /// columns null without an active mute).
    pub relations: String,
    /// Whether user `$id` exists.
    pub user_exists: String,
    /// `$user, $before, $limit` -> `user_id, seq` of followers, newest first.
    pub followers_page: String,
    /// `$user, $before, $limit` -> `user_id, seq, followers` of followees, newest first.
    pub following_page: String,
    /// `$after, $limit` -> the users with ids above `$after`, ascending by
    /// id, with `followers, following` (the scan of every user).
    pub scan_users: String,
    /// `$max` -> the oldest pending outbox entries.
    pub pending: String,
    /// `$ids` (event ids) -> marks them published.
    pub mark_published: String,
    /// `$cutoff` -> deletes a bounded number of published entries older than it.
    pub prune_published: String,
    /// The largest user id and the largest outbox event id.
    pub max_ids: String,
}

impl Cypher {
    /// The statements for `names`.
    pub(super) fn new(names: &Names) -> Self {
        let Names {
            user,
            identity,
            follows,
            blocks,
            mutes,
            outbox,
            pending,
            schema,
        } = names;
        let schema_names = [
            "user_id",
            "user_username",
            "identity_key",
            "outbox_event",
            "outbox_pending",
            "follows_by_followee",
            "follows_by_follower",
            "blocks_by_blocker",
            "mutes_by_muter",
        ]
        .map(|name| format!("{schema}_{name}"))
        .to_vec();
        let user_fields = "u.id AS id, u.username AS username, u.display_name AS display_name, \
                           u.bio AS bio, u.created_at_ms AS created_at_ms, \
                           coalesce(u.location, '') AS location, \
                           coalesce(u.website, '') AS website, \
                           coalesce(u.verified, false) AS verified, \
                           coalesce(u.avatar_media_id, 0) AS avatar_media_id";
        let create_outbox = format!(
            "CREATE (e:{outbox}:{pending} {{event_id: $event_id, stream: $stream, \
             event_key: $event_key, payload: $payload}})"
        );
        let create_user = format!(
            "CREATE (u:{user} {{id: $id, username: $username, username_lower: $username_lower, \
             display_name: $display_name, bio: $bio, created_at_ms: $created_at_ms, \
             location: '', website: '', verified: false, avatar_media_id: 0, \
             followers: 0, following: 0}})"
        );
        Self {
            schema: vec![
                format!(
                    "CREATE CONSTRAINT {schema}_user_id IF NOT EXISTS \
                     FOR (u:{user}) REQUIRE u.id IS UNIQUE"
                ),
                // Uniqueness ignoring case, enforced by the database itself.
                format!(
                    "CREATE CONSTRAINT {schema}_user_username IF NOT EXISTS \
                     FOR (u:{user}) REQUIRE u.username_lower IS UNIQUE"
                ),
                // One user per identity (the key holds issuer and subject).
                format!(
                    "CREATE CONSTRAINT {schema}_identity_key IF NOT EXISTS \
                     FOR (i:{identity}) REQUIRE i.key IS UNIQUE"
                ),
                format!(
                    "CREATE CONSTRAINT {schema}_outbox_event IF NOT EXISTS \
                     FOR (e:{outbox}) REQUIRE e.event_id IS UNIQUE"
                ),
                format!(
                    "CREATE INDEX {schema}_outbox_pending IF NOT EXISTS \
                     FOR (e:{pending}) ON (e.event_id)"
                ),
                format!(
                    "CREATE INDEX {schema}_follows_by_followee IF NOT EXISTS \
                     FOR ()-[r:{follows}]-() ON (r.followee, r.seq)"
                ),
                format!(
                    "CREATE INDEX {schema}_follows_by_follower IF NOT EXISTS \
                     FOR ()-[r:{follows}]-() ON (r.follower, r.seq)"
                ),
                format!(
                    "CREATE INDEX {schema}_blocks_by_blocker IF NOT EXISTS \
                     FOR ()-[r:{blocks}]-() ON (r.blocker, r.seq)"
                ),
                format!(
                    "CREATE INDEX {schema}_mutes_by_muter IF NOT EXISTS \
                     FOR ()-[r:{mutes}]-() ON (r.muter, r.seq)"
                ),
            ],
            schema_names,
            show_indexes: "SHOW INDEXES".into(),
            show_constraints: "SHOW CONSTRAINTS YIELD name RETURN name".into(),
            ping: "RETURN 1 AS ok".into(),
            create_user: format!("{create_user} {create_outbox}"),
            // Both unique constraints (username, identity) hold for the one
            // statement: a taken username or a bound identity fails it whole.
            register_user: format!(
                "{create_user} \
                 CREATE (i:{identity} {{key: $identity_key, issuer: $issuer, subject: $subject, \
                 user_id: $id}}) \
                 {create_outbox}"
            ),
            resolve_identity: format!(
                "MATCH (i:{identity} {{key: $identity_key}}) RETURN i.user_id AS user_id"
            ),
            get_users: format!(
                "UNWIND $ids AS wanted MATCH (u:{user} {{id: wanted}}) RETURN {user_fields}"
            ),
            get_user_by_username: format!(
                "MATCH (u:{user} {{username_lower: $username_lower}}) RETURN {user_fields}"
            ),
            get_users_by_usernames: format!(
                "UNWIND $usernames_lower AS wanted \
                 MATCH (u:{user} {{username_lower: wanted}}) RETURN {user_fields}"
            ),
            // The same lock as `lock_user`: a profile edit and a follow of
            // the same user serialise, harmlessly.
            lock_profile: format!(
                "MATCH (u:{user} {{id: $id}}) SET u.warble_lock = true REMOVE u.warble_lock \
                 RETURN {user_fields}"
            ),
            set_profile: format!(
                "MATCH (u:{user} {{id: $id}}) \
                 SET u.display_name = $display_name, u.bio = $bio, u.location = $location, \
                 u.website = $website, u.verified = $verified, \
                 u.avatar_media_id = $avatar_media_id"
            ),
            follow_counts: format!(
                "UNWIND $ids AS wanted MATCH (u:{user} {{id: wanted}}) \
                 RETURN u.id AS id, u.followers AS followers, u.following AS following"
            ),
            // Expand(Into) between two bound users walks the smaller side.
            is_following: format!(
                "UNWIND range(0, size($followers) - 1) AS i \
                 OPTIONAL MATCH (a:{user} {{id: $followers[i]}})-[r:{follows}]->(b:{user} {{id: $followees[i]}}) \
                 RETURN i, count(r) > 0 AS follows"
            ),
            // Writing a property takes the node's write lock until commit;
            // removing it again leaves no trace. Callers lock the smaller id
            // first, so two opposite follows cannot deadlock.
            lock_user: format!(
                "MATCH (u:{user} {{id: $id}}) SET u.warble_lock = true REMOVE u.warble_lock \
                 RETURN u.followers AS followers, u.following AS following"
            ),
            // Both users are locked, so MERGE cannot race another MERGE of
            // the same edge; ON CREATE makes the counts move only with it.
            merge_follow: format!(
                "MATCH (a:{user} {{id: $follower}}), (b:{user} {{id: $followee}}) \
                 MERGE (a)-[r:{follows}]->(b) \
                 ON CREATE SET r.seq = $seq, r.follower = $follower, r.followee = $followee, \
                 a.following = a.following + 1, b.followers = b.followers + 1 \
                 RETURN r.seq = $seq AS created, r.seq AS seq, \
                 a.following AS following, b.followers AS followers"
            ),
            delete_follow: format!(
                "MATCH (a:{user} {{id: $follower}})-[r:{follows}]->(b:{user} {{id: $followee}}) \
                 DELETE r \
                 SET a.following = CASE WHEN a.following > 0 THEN a.following - 1 ELSE 0 END, \
                 b.followers = CASE WHEN b.followers > 0 THEN b.followers - 1 ELSE 0 END \
                 RETURN a.following AS following, b.followers AS followers"
            ),
            create_outbox,
            // An undirected pattern: a block either way refuses a follow.
            blocks_between: format!(
                "UNWIND range(0, size($firsts) - 1) AS i \
                 OPTIONAL MATCH (a:{user} {{id: $firsts[i]}})-[r:{blocks}]-(b:{user} {{id: $seconds[i]}}) \
                 RETURN i, count(r) > 0 AS blocked"
            ),
            find_block: format!(
                "MATCH (a:{user} {{id: $blocker}})-[r:{blocks}]->(b:{user} {{id: $blocked}}) \
                 RETURN r.seq AS seq"
            ),
            // Both users are locked and `find_block` found none, so MERGE
            // creates; ON CREATE keeps a repeat from moving the block.
            create_block: format!(
                "MATCH (a:{user} {{id: $blocker}}), (b:{user} {{id: $blocked}}) \
                 MERGE (a)-[r:{blocks}]->(b) \
                 ON CREATE SET r.seq = $seq, r.blocker = $blocker, r.blocked = $blocked"
            ),
            delete_block: format!(
                "MATCH (a:{user} {{id: $blocker}})-[r:{blocks}]->(b:{user} {{id: $blocked}}) \
                 DELETE r RETURN true AS deleted"
            ),
            find_mute: format!(
                "MATCH (a:{user} {{id: $muter}})-[r:{mutes}]->(b:{user} {{id: $muted}}) \
                 RETURN r.seq AS seq, r.expires_at_ms AS expires_at_ms, \
                 r.hide_notifications AS hide_notifications"
            ),
            put_mute: format!(
                "MATCH (a:{user} {{id: $muter}}), (b:{user} {{id: $muted}}) \
                 MERGE (a)-[r:{mutes}]->(b) \
                 SET r.seq = $seq, r.muter = $muter, r.muted = $muted, \
                 r.expires_at_ms = $expires_at_ms, r.hide_notifications = $hide_notifications"
            ),
            delete_mute: format!(
                "MATCH (a:{user} {{id: $muter}})-[r:{mutes}]->(b:{user} {{id: $muted}}) DELETE r"
            ),
            blocked_page: format!(
                "MATCH ()-[r:{blocks}]->() WHERE r.blocker = $user AND r.seq < $before \
                 RETURN r.blocked AS user_id, r.seq AS seq \
                 ORDER BY r.seq DESC LIMIT $limit"
            ),
            // Lapsed mutes are returned too and skipped by the caller within
            // its scan budget: filtering here would let one page seek
            // through any number of them.
            muted_page: format!(
                "MATCH ()-[r:{mutes}]->() WHERE r.muter = $user AND r.seq < $before \
                 RETURN r.muted AS user_id, r.seq AS seq, r.expires_at_ms AS expires_at_ms, \
                 r.hide_notifications AS hide_notifications \
                 ORDER BY r.seq DESC LIMIT $limit"
            ),
            // Three expands between two users found by id per entry, each
            // collapsed to one row per `i` before the next.
            relations: format!(
                "UNWIND range(0, size($ids) - 1) AS i \
                 OPTIONAL MATCH (:{user} {{id: $viewer}})-[vb:{blocks}]->(:{user} {{id: $ids[i]}}) \
                 WITH i, count(vb) > 0 AS viewer_blocks \
                 OPTIONAL MATCH (:{user} {{id: $ids[i]}})-[bv:{blocks}]->(:{user} {{id: $viewer}}) \
                 WITH i, viewer_blocks, count(bv) > 0 AS blocks_viewer \
                 OPTIONAL MATCH (:{user} {{id: $viewer}})-[m:{mutes}]->(:{user} {{id: $ids[i]}}) \
                 WHERE m.expires_at_ms = 0 OR m.expires_at_ms > $now \
                 RETURN i, viewer_blocks, blocks_viewer, \
                 m.expires_at_ms AS mute_expires_at_ms, \
                 m.hide_notifications AS mute_hides_notifications"
            ),
            user_exists: format!("MATCH (u:{user} {{id: $id}}) RETURN u.id AS id"),
            // Anchored on the relationship index only (no user lookup), so
            // the page is an ordered index seek of `limit` entries.
            followers_page: format!(
                "MATCH ()-[r:{follows}]->() WHERE r.followee = $user AND r.seq < $before \
                 RETURN r.follower AS user_id, r.seq AS seq \
                 ORDER BY r.seq DESC LIMIT $limit"
            ),
            following_page: format!(
                "MATCH ()-[r:{follows}]->(b:{user}) WHERE r.follower = $user AND r.seq < $before \
                 WITH r, b ORDER BY r.seq DESC LIMIT $limit \
                 RETURN r.followee AS user_id, r.seq AS seq, b.followers AS followers"
            ),
            // A range seek in the id constraint's index, which also yields
            // the order, so a page reads `limit` users however many exist.
            scan_users: format!(
                "MATCH (u:{user}) WHERE u.id > $after \
                 WITH u ORDER BY u.id ASC LIMIT $limit \
                 RETURN {user_fields}, u.followers AS followers, u.following AS following"
            ),
            pending: format!(
                "MATCH (e:{pending}) WHERE e.event_id IS NOT NULL \
                 RETURN e.event_id AS event_id, e.stream AS stream, e.event_key AS event_key, \
                 e.payload AS payload ORDER BY e.event_id ASC LIMIT $max"
            ),
            mark_published: format!(
                "UNWIND $ids AS published MATCH (e:{pending} {{event_id: published}}) \
                 REMOVE e:{pending}"
            ),
            prune_published: format!(
                "MATCH (e:{outbox}) WHERE e.event_id < $cutoff AND NOT e:{pending} \
                 WITH e LIMIT 1000 DELETE e"
            ),
            max_ids: format!(
                "CALL {{ MATCH (u:{user}) WHERE u.id IS NOT NULL \
                 RETURN u.id AS id ORDER BY u.id DESC LIMIT 1 \
                 UNION ALL MATCH (e:{outbox}) WHERE e.event_id IS NOT NULL \
                 RETURN e.event_id AS id ORDER BY e.event_id DESC LIMIT 1 }} \
                 RETURN max(id) AS max_id"
            ),
        }
    }
}
