//! Sign-up with an identity provider (`auth.subjects = "registered"`).
//!
//! No identity provider (Auth0, Keycloak, Cognito) issues Warble user ids:
//! their tokens' `sub` is their own name for the person. In this mode a
//! verified token's (`iss`, `sub`) is an [`Identity`]; a person registers
//! it once with the `register` mutation (graph-svc's RegisterUser creates
//! the user and the binding together), and every later request resolves it
//! to that user with graph-svc's ResolveIdentity.
//!
//! Resolutions are remembered per gateway replica in an [`IdentityCache`],
//! bounded in entries and with a time to live, so a signed-in user costs
//! one lookup per replica and TTL, not one per request. Only found users
//! are remembered: an identity that has not registered is looked up again
//! on its next request, so a registration made on any replica counts at
//! once everywhere (this replica also remembers the user it registered).
//! The lookups an unregistered identity can cause are bounded by the
//! request rate limit, which is taken per identity before the lookup.
//!
//! An identity that has not registered may only register: any other
//! operation is refused as a whole with `UNREGISTERED` ([`only_registers`],
//! applied by the executor), and a WebSocket `connection_init` is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{Data, Name, Positioned};
use tokio::time::Instant;
use tonic::{Code, Status};
use warble_proto::graph::v1 as graph;

use super::{Bearer, Identity, Viewer};
use crate::downstream::Downstream;
use crate::error::{ErrorCode, gql_error};
use crate::websocket::connection_value;

/// What an unregistered identity is told, whatever it asked.
/// Short enough to be a WebSocket close reason (123 bytes) with the code
/// in front.
pub const REGISTER_FIRST: &str =
    "no Warble account for this sign-in yet: register first (the `register` mutation)";

/// The `UNREGISTERED` refusal of a request from an identity that has not
/// registered.
pub fn register_first() -> async_graphql::Error {
    gql_error(ErrorCode::Unregistered, REGISTER_FIRST)
}

/// Which user each recently seen identity registered as (cheap to clone:
/// clones share the entries).
#[derive(Debug, Clone)]
pub struct IdentityCache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// By [`Identity::digest`]: the user and when the entry lapses.
    entries: Mutex<HashMap<[u8; 32], (u64, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

impl IdentityCache {
    /// An empty cache of at most `capacity` identities (at least one), each
    /// remembered for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                ttl,
                capacity: capacity.max(1),
            }),
        }
    }

    /// The user `identity` registered as, if remembered and not lapsed.
    pub fn get(&self, identity: &Identity) -> Option<u64> {
        self.get_at(&identity.digest(), Instant::now())
    }

    /// Remembers that `identity` registered as `user_id`.
    pub fn remember(&self, identity: &Identity, user_id: u64) {
        self.remember_at(identity.digest(), user_id, Instant::now());
    }

    /// How many identities are remembered (lapsed ones included until
    /// they make room).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no identity is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_at(&self, key: &[u8; 32], now: Instant) -> Option<u64> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some(&(user_id, lapses)) if now < lapses => Some(user_id),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_at(&self, key: [u8; 32], user_id: u64, now: Instant) {
        let mut entries = self.entries();
        if entries.len() >= self.shared.capacity && !entries.contains_key(&key) {
            // Lapsed entries go first; if none has, a sixteenth of the
            // entries (arbitrary ones) make room, so a full cache of live
            // entries is not scanned on every insert.
            entries.retain(|_, (_, lapses)| now < *lapses);
            if entries.len() >= self.shared.capacity {
                let evict = self.shared.capacity / 16 + 1;
                let victims: Vec<[u8; 32]> = entries.keys().take(evict).copied().collect();
                for victim in victims {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(key, (user_id, now + self.shared.ttl));
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (u64, Instant)>> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The user `identity` registered as: remembered, or asked of
    /// graph-svc (and then remembered); `None` when it has not registered.
    pub async fn resolve(
        &self,
        downstream: &Downstream,
        identity: &Identity,
    ) -> Result<Option<Viewer>, Status> {
        let key = identity.digest();
        if let Some(user_id) = self.get_at(&key, Instant::now()) {
            return Ok(Some(Viewer { user_id }));
        }
        let answer = downstream
            .graph
            .clone()
            .resolve_identity(graph::ResolveIdentityRequest {
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
            })
            .await;
        match answer {
            Ok(response) => {
                let user_id = response.into_inner().user_id;
                self.remember_at(key, user_id, Instant::now());
                Ok(Some(Viewer { user_id }))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status),
        }
    }
}

/// Who a request comes from, its token resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The Warble user, when the token names one (directly, or through the
    /// identity it registered as).
    pub viewer: Option<Viewer>,
    /// The identity provider's account the token names (`auth.subjects =
    /// "registered"`), registered or not.
    pub identity: Option<Identity>,
}

impl Caller {
    /// The caller a verified token's `bearer` names (`None`: anonymous),
    /// looking an identity up through `auth`'s cache and graph-svc. Fails
    /// only when graph-svc cannot answer.
    pub async fn resolve(
        auth: &super::Authenticator,
        downstream: &Downstream,
        bearer: Option<Bearer>,
    ) -> Result<Self, Status> {
        match bearer {
            None => Ok(Self::default()),
            Some(Bearer::User(viewer)) => Ok(Self {
                viewer: Some(viewer),
                identity: None,
            }),
            Some(Bearer::Identity(identity)) => {
                let viewer = match auth.identities() {
                    Some(cache) => cache.resolve(downstream, &identity).await?,
                    None => None,
                };
                Ok(Self {
                    viewer,
                    identity: Some(identity),
                })
            }
        }
    }

    /// An identity that has not registered: it may only register.
    pub fn unregistered(&self) -> bool {
        self.identity.is_some() && self.viewer.is_none()
    }

    /// Puts the caller in a request's data (its [`Viewer`] and
    /// [`Identity`], each when there is one).
    pub fn into_request(self, mut request: async_graphql::Request) -> async_graphql::Request {
        if let Some(viewer) = self.viewer {
            request = request.data(viewer);
        }
        if let Some(identity) = self.identity {
            request = request.data(identity);
        }
        request
    }
}

/// Whether a request's data names an identity that has not registered.
pub fn is_unregistered(data: &Data) -> bool {
    connection_value::<Identity>(data).is_some() && connection_value::<Viewer>(data).is_none()
}

/// Whether the operation `operation_name` picks in `document` (the only
/// one when `None`) only registers: a mutation whose root fields,
/// fragments included, are all `register` (or `__typename`). True when no
/// operation is picked: execution then fails without running anything.
pub fn only_registers(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let mut operations = document.operations.iter();
    let picked = match operation_name {
        Some(wanted) => operations
            .find(|(name, _)| name.is_some_and(|name| name.as_str() == wanted))
            .map(|(_, operation)| operation),
        None => match (operations.next(), operations.next()) {
            (Some((_, operation)), None) => Some(operation),
            _ => None,
        },
    };
    let Some(operation) = picked else {
        return true;
    };
    operation.node.ty == OperationType::Mutation
        && root_fields_register(&operation.node.selection_set.node, &document.fragments, 0)
}

/// Fragments nest at most this deep at the root before the check gives up
/// (refusing): validation, which runs later, refuses cycles anyway.
const MAX_FRAGMENT_NESTING: usize = 8;

fn root_fields_register(
    selection_set: &SelectionSet,
    fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
    nesting: usize,
) -> bool {
    if nesting > MAX_FRAGMENT_NESTING {
        return false;
    }
    selection_set
        .items
        .iter()
        .all(|selection| match &selection.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "register" | "__typename")
            }
            Selection::InlineFragment(fragment) => {
                root_fields_register(&fragment.node.selection_set.node, fragments, nesting + 1)
            }
            Selection::FragmentSpread(spread) => fragments
                .get(&spread.node.fragment_name.node)
                .is_some_and(|fragment| {
                    root_fields_register(&fragment.node.selection_set.node, fragments, nesting + 1)
                }),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(subject: &str) -> Identity {
        Identity {
            issuer: "https://id.example/".into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn entries_lapse_after_their_ttl() {
        let cache = IdentityCache::new(Duration::from_secs(60), 10);
        let ada = identity("ada").digest();
        let start = Instant::now();
        assert_eq!(cache.get_at(&ada, start), None);
        cache.remember_at(ada, 7, start);
        assert_eq!(cache.get_at(&ada, start + Duration::from_secs(59)), Some(7));
        assert_eq!(cache.get_at(&ada, start + Duration::from_secs(60)), None);
        assert!(cache.is_empty(), "a lapsed entry is dropped when read");
    }

    #[test]
    fn a_full_cache_makes_room_lapsed_entries_first() {
        let cache = IdentityCache::new(Duration::from_secs(60), 32);
        let start = Instant::now();
        for n in 0..32u64 {
            let at = if n < 4 {
                start
            } else {
                start + Duration::from_secs(30)
            };
            cache.remember_at(identity(&n.to_string()).digest(), n, at);
        }
        assert_eq!(cache.len(), 32);
        // At +61 s the first four have lapsed: they alone make room.
        let later = start + Duration::from_secs(61);
        cache.remember_at(identity("new").digest(), 99, later);
        assert_eq!(cache.len(), 29);
        for n in 4..32u64 {
            assert_eq!(
                cache.get_at(&identity(&n.to_string()).digest(), later),
                Some(n)
            );
        }
        // Full of live entries: a few arbitrary ones make room, never more
        // than the capacity is held.
        for n in 100..200u64 {
            cache.remember_at(identity(&n.to_string()).digest(), n, later);
            assert!(cache.len() <= 32);
        }
        assert_eq!(cache.get_at(&identity("199").digest(), later), Some(199));
        // Remembering one already held replaces it in place.
        let held = cache.len();
        cache.remember_at(identity("199").digest(), 1, later);
        assert_eq!(cache.len(), held);
        assert_eq!(cache.get_at(&identity("199").digest(), later), Some(1));
    }

    #[test]
    fn the_refusal_fits_a_close_frame() {
        assert!(format!("UNREGISTERED: {REGISTER_FIRST}").len() <= 123);
    }

    #[test]
    fn digests_tell_every_identity_apart() {
        let pair = |issuer: &str, subject: &str| Identity {
            issuer: issuer.into(),
            subject: subject.into(),
        };
        assert_ne!(pair("ab", "c").digest(), pair("a", "bc").digest());
        assert_ne!(pair("a", "b").digest(), pair("a", "B").digest());
        assert_eq!(pair("a", "b").digest(), pair("a", "b").digest());
        let tag = pair("https://id.example/", "ada@example.com").tag();
        assert_eq!(tag.len(), 32);
        assert!(!tag.contains("ada"));
    }

    fn allowed(query: &str, operation: Option<&str>) -> bool {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        only_registers(&document, operation)
    }

    #[test]
    fn only_a_register_mutation_passes() {
        for query in [
            r#"mutation { register(username: "ada", displayName: "Ada") { id } }"#,
            r#"mutation R { __typename register(username: "ada", displayName: "Ada") { id username } }"#,
            r#"mutation { ...R } fragment R on Mutation { register(username: "a", displayName: "A") { id } }"#,
            r#"mutation { ... on Mutation { register(username: "a", displayName: "A") { id } } }"#,
        ] {
            assert!(allowed(query, None), "{query}");
        }
        for query in [
            "{ viewer { id } }",
            "{ __typename }",
            "query { __schema { types { name } } }",
            r#"mutation { postTweet(text: "hi") { id } }"#,
            r#"mutation { register(username: "a", displayName: "A") { id } postTweet(text: "hi") { id } }"#,
            r#"mutation { ...P } fragment P on Mutation { postTweet(text: "hi") { id } }"#,
            r#"mutation { ...Missing }"#,
            "subscription { homeTimelineUpdates { id } }",
        ] {
            assert!(!allowed(query, None), "{query}");
        }
        // Several operations: the one named is judged.
        let both = r#"query Q { viewer { id } } mutation R { register(username: "a", displayName: "A") { id } }"#;
        assert!(allowed(both, Some("R")));
        assert!(!allowed(both, Some("Q")));
        // No operation picked: nothing runs, so nothing to refuse here.
        assert!(allowed(both, None));
        assert!(allowed(both, Some("Nope")));
    }

    #[test]
    fn fragments_nesting_without_end_are_refused() {
        let cyclic =
            "mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { ...A }";
        assert!(!allowed(cyclic, None));
    }
}
