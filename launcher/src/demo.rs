//! `warble dev --demo`: sample users, follows and tweets, loaded through the
//! services' public gRPC APIs, including one celebrity above the fan-out
//! threshold so the read-time merge is visible.

use std::net::SocketAddr;

use anyhow::Context as _;
use tonic::Code;
use tonic::transport::Channel;
use warble_proto::graph::v1 as graph;
use warble_proto::graph::v1::graph_service_client::GraphServiceClient;
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

/// Loads the demo data; `celebrity_threshold` decides how many followers
/// the celebrity gets (one more than the threshold).
pub async fn load(
    tweet_addr: SocketAddr,
    graph_addr: SocketAddr,
    celebrity_threshold: u64,
) -> anyhow::Result<()> {
    let mut graph = GraphServiceClient::new(channel(graph_addr).await?);
    let mut tweets = TweetServiceClient::new(channel(tweet_addr).await?);

    let mut people = Vec::new();
    for person in PEOPLE {
        people.push((person.0, ensure_user(&mut graph, *person).await?));
    }
    let celebrity = ensure_user(&mut graph, CELEBRITY).await?;
    // Everyone follows everyone else among the regular users, and the celebrity.
    for (_, follower) in &people {
        for (_, followee) in people
            .iter()
            .filter(|(_, id)| id != follower)
            .chain([&("", celebrity)])
        {
            graph
                .follow(graph::FollowRequest {
                    follower_id: *follower,
                    followee_id: *followee,
                })
                .await
                .context("cannot follow")?;
        }
    }
    // Fans push the celebrity over the fan-out threshold.
    let fans_needed = celebrity_threshold.saturating_sub(people.len() as u64) + 1;
    println!(
        "demo: {fans_needed} fans follow @{} (celebrity threshold {celebrity_threshold})",
        CELEBRITY.0
    );
    for n in 0..fans_needed {
        let username = format!("fan{n}");
        let fan = ensure_user(&mut graph, (&username, &format!("Fan {n}"), "")).await?;
        graph
            .follow(graph::FollowRequest {
                follower_id: fan,
                followee_id: celebrity,
            })
            .await
            .context("cannot follow")?;
        if (n + 1) % 500 == 0 {
            println!("demo: {} of {fans_needed} fans", n + 1);
        }
    }

    let post = |author: u64, text: &str, key: String| tweet::CreateTweetRequest {
        author_id: author,
        text: text.into(),
        idempotency_key: key,
        ..Default::default()
    };
    for (index, (username, text)) in TWEETS.iter().enumerate() {
        let author = people
            .iter()
            .find(|(name, _)| name == username)
            .map(|(_, id)| *id)
            .context("author")?;
        // Idempotency keys make re-running the demo post nothing twice.
        tweets
            .create_tweet(post(author, text, format!("demo-{index}")))
            .await
            .context("cannot post")?;
    }
    for (index, text) in CELEBRITY_TWEETS.iter().enumerate() {
        tweets
            .create_tweet(post(celebrity, text, format!("demo-celebrity-{index}")))
            .await
            .context("cannot post")?;
    }
    println!(
        "demo: loaded {} users, follows and {} tweets; sign in as any of them with \
         `mutation {{ issueToken(username: \"alice\") {{ token }} }}`",
        PEOPLE.len() + 1,
        TWEETS.len() + CELEBRITY_TWEETS.len()
    );
    Ok(())
}
