//! The relay's own Pub/Sub connection against a real Valkey (`$VALKEY_SERVER`): password and
//! ACL user authentication, a Unix socket, subscriptions' counts, messages and PING.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands, IntoConnectionInfo};
use relay::valkey::pubsub::{PubSubConnection, PubSubError, Push};

mod common;
use common::{valkey, Valkey};

/// A Valkey with password `pw`, an ACL user `app` (password `apw`) and a Unix socket.
struct Secured {
    valkey: Valkey,
    dir: std::path::PathBuf,
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Secured {
    fn port(&self) -> u16 {
        self.valkey.port
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("valkey.sock")
    }
}

async fn secured() -> Secured {
    let dir = std::env::temp_dir().join(format!(
        "pubsub-conn-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("valkey.sock");
    let valkey = valkey(&[
        "--requirepass",
        "pw",
        "--unixsocket",
        socket.to_str().unwrap(),
    ])
    .await;
    let secured = Secured { valkey, dir };
    let mut admin = client(&secured, "redis://:pw@127.0.0.1").await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">apw", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    secured
}

/// Tests run at once in one process: each Valkey gets its own folder.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn client(valkey: &Secured, url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("{url}:{}", valkey.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Reads until `n` pushes have arrived.
async fn pushes(conn: &mut PubSubConnection, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        tokio::time::timeout(Duration::from_secs(5), conn.read_more())
            .await
            .expect("a push within 5 s")
            .unwrap();
        conn.drain(u64::MAX, |push| {
            out.push(match push {
                Push::Message { channel, payload } => format!(
                    "{}={}",
                    String::from_utf8_lossy(channel),
                    String::from_utf8_lossy(payload)
                ),
                Push::Confirmed { count } => format!("confirmed {count}"),
                Push::Pong => "pong".to_owned(),
            })
        })
        .unwrap();
    }
    out
}

/// Connects with `url`, subscribes to `channels`; returns the connection and the confirmations.
async fn subscribed(url: &str, channels: &[&str]) -> (PubSubConnection, Vec<String>) {
    let info = url.into_connection_info().unwrap();
    let mut conn = PubSubConnection::connect(&info).await.unwrap();
    conn.command("SUBSCRIBE", channels);
    conn.flush().await.unwrap();
    let confirmed = pushes(&mut conn, channels.len()).await;
    (conn, confirmed)
}

#[tokio::test]
async fn follows_channels_and_patterns_with_a_password() {
    let valkey = secured().await;
    let url = format!("redis://:pw@127.0.0.1:{}", valkey.port());
    let (mut conn, confirmed) = subscribed(&url, &["a", "b"]).await;
    assert_eq!(confirmed, ["confirmed 1", "confirmed 2"]);
    conn.command("PSUBSCRIBE", &["p#*"]);
    conn.flush().await.unwrap();
    assert_eq!(pushes(&mut conn, 1).await, ["confirmed 3"]);

    let mut publisher = client(&valkey, "redis://:pw@127.0.0.1").await;
    let big = "x".repeat(100_000);
    let _: i64 = publisher.publish("a", "1").await.unwrap();
    let _: i64 = publisher.publish("p#2", &big).await.unwrap();
    let _: i64 = publisher.publish("c", "not followed").await.unwrap();
    let _: i64 = publisher.publish("b", "3").await.unwrap();
    assert_eq!(
        pushes(&mut conn, 3).await,
        ["a=1".to_owned(), format!("p#2={big}"), "b=3".to_owned()]
    );

    // Unsubscribing what was never subscribed is confirmed too (the subscriber relies on it).
    conn.command("UNSUBSCRIBE", &["a", "never"]);
    conn.command::<&str>("PING", &[]);
    conn.flush().await.unwrap();
    assert_eq!(
        pushes(&mut conn, 3).await,
        ["confirmed 2", "confirmed 2", "pong"]
    );
}

#[tokio::test]
async fn an_acl_user_and_a_unix_socket() {
    let valkey = secured().await;
    let acl_user = format!("redis://app:apw@127.0.0.1:{}", valkey.port());
    assert_eq!(subscribed(&acl_user, &["a"]).await.1, ["confirmed 1"]);

    let unix = format!("unix://{}?pass=pw", valkey.socket().display());
    assert_eq!(subscribed(&unix, &["a"]).await.1, ["confirmed 1"]);
}

#[tokio::test]
async fn a_wrong_password_is_an_error_that_names_no_secret() {
    let valkey = secured().await;
    let info = format!("redis://app:secret-guess@127.0.0.1:{}", valkey.port())
        .into_connection_info()
        .unwrap();
    let err = match PubSubConnection::connect(&info).await {
        Err(e) => e,
        Ok(_) => panic!("a wrong password was accepted"),
    };
    assert!(matches!(err, PubSubError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("secret-guess"), "{err}");

    // Without credentials, a command is refused, and the refusal ends the connection.
    let info = format!("redis://127.0.0.1:{}", valkey.port())
        .into_connection_info()
        .unwrap();
    let mut conn = PubSubConnection::connect(&info).await.unwrap();
    conn.command("SUBSCRIBE", &["a"]);
    conn.flush().await.unwrap();
    conn.read_more().await.unwrap();
    let refused = conn.drain(u64::MAX, |_| {});
    assert!(
        matches!(refused, Err(PubSubError::Refused(_))),
        "{refused:?}"
    );
}
