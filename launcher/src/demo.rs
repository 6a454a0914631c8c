//! `warble dev --demo`: sample users, follows and tweets, loaded through the
//! services' public gRPC batch APIs (CreateUsers, FollowMany, CreateTweets),
//! including one celebrity above the fan-out threshold so the read-time
//! merge is visible.

use std::net::SocketAddr;

use anyhow::Context as _;
use tonic::Code;
use tonic::transport::Channel;
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
use warble_proto::limits;
use warble_proto::tweet::v1 as tweet;
use warble_proto::tweet::v1::tweet_service_client::TweetServiceClient;

/// The demo's regular users: (username, display name, bio).
const PEOPLE: &[(&str, &str, &str)] = &[
    (
        "alice",
        "Alice Liddell",
        "Falling down rabbit holes since 1865.",
    ),
    ("bob", "Bob Builder", "Can we fix it? Yes we can."),
    ("carol", "Carol Danvers", "Higher, further, faster."),
    ("dave", "Dave Bowman", "Open the pod bay doors."),
    ("erin", "Erin Brockovich", "Reading the fine print."),
];

/// The celebrity everyone follows.
const CELEBRITY: (&str, &str, &str) =
    ("warblehq", "Warble HQ", "News from the team behind Warble.");

const TWEETS: &[(&str, &str)] = &[
    ("alice", "Just set up my Warble account! #hello"),
    ("bob", "Building something new today. #rust #warble"),
    ("carol", "@alice welcome aboard!"),
    ("dave", "The timeline is fast. Like, really fast. #warble"),
    (
        "erin",
        "Hybrid fan-out: push for most, pull for the famous. #systemdesign",
    ),
    ("alice", "Does anyone know a good tea shop? @bob @carol"),
    ("bob", "Idempotency keys saved my weekend. #rust"),
];

const CELEBRITY_TWEETS: &[&str] = &[
    "Welcome to Warble! Say hi with #hello",
    "Celebrity tweets are merged into your timeline when you read it. #warble",
];

/// Entries per CreateUsers / FollowMany call: the most graph-svc takes.
const WRITE_BATCH: usize = limits::graph::MAX_WRITE_BATCH;
// Every demo tweet goes in one CreateTweets call.
const _: () = assert!(TWEETS.len() + CELEBRITY_TWEETS.len() <= limits::tweet::MAX_WRITE_BATCH);

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach {addr}"))
}

/// Creates `username` or returns the existing user's id (so a restart with
/// `--demo` changes nothing).
async fn ensure_user(
    graph: &mut GraphServiceClient<Channel>,
    (username, name, bio): (&str, &str, &str),
) -> anyhow::Result<u64> {
    let created = graph
        .create_user(graph::CreateUserRequest {
            username: username.into(),
            display_name: name.into(),
            bio: bio.into(),
        })
        .await;
    match created {
        Ok(response) => Ok(response.into_inner().user.context("no user returned")?.id),
        Err(status) if status.code() == Code::AlreadyExists => Ok(graph
            .get_user_by_username(graph::GetUserByUsernameRequest {
                username: username.into(),
            })
            .await?
            .into_inner()
            .user
            .context("no user returned")?
            .id),
        Err(status) => Err(status).with_context(|| format!("cannot create {username}")),
    }
}

/// Creates `users` (username, display name, bio) with CreateUsers, a batch
/// at a time, and returns their ids in order. A batch naming someone who
/// already exists (a restart with `--demo`) creates no one, being all or
/// none, so that batch falls back to [`ensure_user`] per user.
async fn ensure_users(
    graph: &mut GraphServiceClient<Channel>,
    users: &[(String, String, String)],
) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::with_capacity(users.len());
    for batch in users.chunks(WRITE_BATCH) {
        let requests = batch
            .iter()
            .map(|(username, name, bio)| graph::CreateUserRequest {
                username: username.clone(),
                display_name: name.clone(),
                bio: bio.clone(),
            })
            .collect();
        match graph
            .create_users(graph::CreateUsersRequest { users: requests })
            .await
        {
            Ok(response) => ids.extend(response.into_inner().users.iter().map(|user| user.id)),
            Err(status) if status.code() == Code::AlreadyExists => {
                for (username, name, bio) in batch {
                    ids.push(ensure_user(graph, (username, name, bio)).await?);
                }
            }
            Err(status) => return Err(status).context("cannot create the demo users"),
        }
    }
    anyhow::ensure!(
        ids.len() == users.len(),
        "CreateUsers returned {} users for {}",
        ids.len(),
        users.len()
    );
    Ok(ids)
}

/// Loads the demo data; `celebrity_threshold` decides how many followers
/// the celebrity gets (one more than the threshold). Users, follows and
/// tweets go in batches (CreateUsers, FollowMany, CreateTweets); running
/// it again on the same data changes nothing (for tweets, while their
/// idempotency keys live: a day by default).
pub async fn load(
    tweet_addr: SocketAddr,
    graph_addr: SocketAddr,
    celebrity_threshold: u64,
) -> anyhow::Result<()> {
    let mut graph = GraphServiceClient::new(channel(graph_addr).await?);
    let mut tweets = TweetServiceClient::new(channel(tweet_addr).await?);

    // Fans push the celebrity over the fan-out threshold.
    let fans_needed = celebrity_threshold.saturating_sub(PEOPLE.len() as u64) + 1;
    println!(
        "demo: {fans_needed} fans follow @{} (celebrity threshold {celebrity_threshold})",
        CELEBRITY.0
    );
    let profile = |(username, name, bio): (&str, &str, &str)| {
        (username.to_owned(), name.to_owned(), bio.to_owned())
    };
    let users: Vec<(String, String, String)> = PEOPLE
        .iter()
        .copied()
        .chain([CELEBRITY])
        .map(profile)
        .chain((0..fans_needed).map(|n| (format!("fan{n}"), format!("Fan {n}"), String::new())))
        .collect();
    let ids = ensure_users(&mut graph, &users).await?;
    let (people, rest) = ids.split_at(PEOPLE.len());
    let (celebrity, fans) = (rest[0], &rest[1..]);

    // Everyone follows everyone else among the regular users, and the
    // celebrity; the fans follow the celebrity. FollowMany is idempotent.
    let pairs: Vec<graph::FollowPair> = people
        .iter()
        .flat_map(|&follower| {
            people
                .iter()
                .copied()
                .filter(move |&followee| followee != follower)
                .chain([celebrity])
                .map(move |followee| (follower, followee))
        })
        .chain(fans.iter().map(|&fan| (fan, celebrity)))
        .map(|(follower_id, followee_id)| graph::FollowPair {
            follower_id,
            followee_id,
        })
        .collect();
    for batch in pairs.chunks(WRITE_BATCH) {
        graph
            .follow_many(graph::FollowManyRequest {
                pairs: batch.to_vec(),
            })
            .await
            .context("cannot follow")?;
    }

    let author = |username: &str| {
        PEOPLE
            .iter()
            .position(|(name, _, _)| *name == username)
            .map(|index| people[index])
            .with_context(|| format!("no demo user {username}"))
    };
    // Idempotency keys make re-running the demo post nothing twice.
    let post = |author: u64, text: &str, key: String| tweet::CreateTweetRequest {
        author_id: author,
        text: text.into(),
        idempotency_key: key,
        ..Default::default()
    };
    let mut posts = Vec::with_capacity(TWEETS.len() + CELEBRITY_TWEETS.len());
    for (index, (username, text)) in TWEETS.iter().enumerate() {
        posts.push(post(author(username)?, text, format!("demo-{index}")));
    }
    for (index, text) in CELEBRITY_TWEETS.iter().enumerate() {
        posts.push(post(celebrity, text, format!("demo-celebrity-{index}")));
    }
    tweets
        .create_tweets(tweet::CreateTweetsRequest { tweets: posts })
        .await
        .context("cannot post")?;
    println!(
        "demo: loaded {} users, follows and {} tweets; sign in as any of them with \
         `mutation {{ issueToken(username: \"alice\") {{ token }} }}`",
        PEOPLE.len() + 1,
        TWEETS.len() + CELEBRITY_TWEETS.len()
    );
    Ok(())
}
