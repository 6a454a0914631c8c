//! A frontend's view of the stack: GraphQL over HTTP and subscriptions over
//! WebSocket (`graphql-transport-ws`).

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// A GraphQL-over-HTTP client.
#[derive(Clone)]
pub struct GraphqlClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl GraphqlClient {
    /// A client of the gateway at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr,
        }
    }

    /// The gateway's HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Posts a request and returns the whole JSON response (`data` and `errors`).
    pub async fn request(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("gateway answers");
        response.json().await.expect("a JSON GraphQL response")
    }

    /// Like [`GraphqlClient::request`], failing the test on any GraphQL error; returns `data`.
    pub async fn data(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let response = self.request(token, query, variables).await;
        assert!(
            response.get("errors").is_none(),
            "unexpected errors: {response:#}"
        );
        response["data"].clone()
    }

    /// Downstream calls the gateway has made so far, by short method name,
    /// read from its `/metrics` endpoint.
    pub async fn downstream_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter_map(|line| line.strip_prefix("warble_gateway_downstream_calls_total{method=\""))
            .filter_map(|rest| rest.split_once("\"} "))
            .map(|(path, count)| {
                let method = path.rsplit('/').next().unwrap_or(path).to_owned();
                (method, count.trim().parse().unwrap_or(0))
            })
            .collect()
    }

    /// Signs up a user in development mode; returns (user id, token).
    pub async fn sign_up(&self, username: &str) -> (String, String) {
        let data = self
            .data(
                None,
                "mutation($u: String!) { signUp(username: $u, displayName: $u) { token user { id } } }",
                json!({ "u": username }),
            )
            .await;
        (
            data["signUp"]["user"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            data["signUp"]["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Follows `user_id` as the token's user.
    pub async fn follow(&self, token: &str, user_id: &str) {
        self.data(
            Some(token),
            "mutation($id: ID!) { follow(userId: $id) { id } }",
            json!({ "id": user_id }),
        )
        .await;
    }

    /// Posts a tweet; returns its id.
    pub async fn post(&self, token: &str, text: &str) -> String {
        let data = self
            .data(
                Some(token),
                "mutation($t: String!) { postTweet(text: $t) { id } }",
                json!({ "t": text }),
            )
            .await;
        data["postTweet"]["id"].as_str().expect("id").to_owned()
    }
}

/// The node ids of a connection's edges, in page order.
pub fn node_ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `extensions.code` of every error in a response.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    error["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An open `graphql-transport-ws` subscription.
pub struct Subscription {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Subscription {
    /// Connects with `token`, subscribes to `query`, and waits for the server to acknowledge.
    pub async fn start(addr: SocketAddr, token: &str, query: &str) -> Self {
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
        socket
            .send(Message::text(init.to_string()))
            .await
            .expect("send init");
        let ack = next_json(&mut socket, Duration::from_secs(10))
            .await
            .expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .expect("send subscribe");
        Self { socket }
    }

    /// The next `next` payload's `data`, or `None` after `timeout`.
    pub async fn next_data(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            let message = next_json(&mut self.socket, timeout).await?;
            match message["type"].as_str() {
                Some("next") => return Some(message["payload"]["data"].clone()),
                Some("ping") => {
                    let pong = json!({ "type": "pong" }).to_string();
                    let _ = self.socket.send(Message::text(pong)).await;
                }
                Some("error") | Some("complete") => panic!("subscription ended: {message}"),
                _ => {}
            }
        }
    }
}

async fn next_json<S>(socket: &mut S, timeout: Duration) -> Option<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(timeout, socket.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).ok();
        }
    }
}

/// A raw `graphql-transport-ws` socket, for cases that probe the protocol's limits.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a `graphql-transport-ws` socket to the gateway at `addr` (no `connection_init` yet).
pub async fn raw_socket(addr: SocketAddr) -> RawSocket {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects")
        .0
}

/// Sends one JSON message.
pub async fn send_json(socket: &mut RawSocket, message: &Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// Sends `connection_init` with `token` and returns the server's answer
/// (`connection_ack`, or `None` when it closed the connection instead).
pub async fn init_socket(socket: &mut RawSocket, token: &str) -> Option<Value> {
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    send_json(socket, &init).await;
    next_json(socket, Duration::from_secs(10)).await
}

/// The next JSON message, or `None` when the socket closed or `timeout` passed.
pub async fn next_message(socket: &mut RawSocket, timeout: Duration) -> Option<Value> {
    next_json(socket, timeout).await
}

/// Reads until the server closes the socket; returns the close code
/// (`None` when the connection simply ended, or nothing came within `timeout`).
pub async fn close_code(socket: &mut RawSocket, timeout: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match message {
            Ok(Message::Close(frame)) => return frame.map(|frame| frame.code.into()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}
