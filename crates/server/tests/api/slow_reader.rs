//! A slow reader: a client that stops reading its socket while others flood it. The server
//! closes that connection (the kernel gives up on data left unacknowledged for
//! `SLOW_CLIENT_TIMEOUT_SECONDS`), stays healthy for everyone else, and the reader gets what
//! it missed from `/sync` (docs/operations.md, "Slow readers").

use std::time::{Duration, Instant};

use nexus_bench::sio::{Incoming, SioConn, Target};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp, TestUser};

/// The server's end of the TCP connection whose client end is `client_port` is still
/// open (any state but closed / time-wait): read from the kernel's table, since both ends
/// live in this process.
fn server_end_open(server_port: u16, client_port: u16) -> bool {
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .any(|table| {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |addr: &str| {
                    addr.rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                };
                // 06 TIME_WAIT, 07 CLOSE: nothing of the connection is kept.
                fields.len() > 3
                    && port(fields[1]) == Some(server_port)
                    && port(fields[2]) == Some(client_port)
                    && !matches!(fields[3], "06" | "07")
            })
        })
}

/// A socket whose kernel receive buffer is as small as the kernel allows, so it fills
/// after a few messages once the client stops reading.
async fn tiny_window_socket(app: &TestApp, user: &TestUser) -> (SioConn, u16) {
    let target = Target::parse(&app.address).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", target.port).parse().unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let client_port = tcp.local_addr().unwrap().port();
    let conn = SioConn::connect_over(tcp, &target, &user.token, nexus_bench::sio::ws_config(4096))
        .await
        .unwrap();
    (conn, client_port)
}

async fn connect(app: &TestApp, user: &TestUser) -> SioConn {
    let target = Target::parse(&app.address).unwrap();
    SioConn::connect(
        &target,
        &user.token,
        None,
        nexus_bench::sio::ws_config(4096),
    )
    .await
    .unwrap()
}

/// Sends one message on `from` and waits for its ack (answering pings on the way).
async fn send_and_ack(from: &mut SioConn, to: &TestUser, content: &str, ack: i64) {
    from.feed_event(
        "NEW_MESSAGE",
        &json!({"receiverId": to.id, "content": content, "tempId": format!("t{ack}")}),
        Some(ack),
    )
    .await
    .unwrap();
    from.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), from.recv())
            .await
            .expect("a bystander's send was not acknowledged");
        match from.decode(frame) {
            Incoming::Ack { id, data } if id == ack => {
                let text = format!("{data:?}");
                assert!(text.contains("dbMessageId"), "{text}");
                return;
            }
            Incoming::Closed(why) => panic!("a bystander's socket closed: {why}"),
            _ => from.flush().await.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_catches_up_through_sync() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.slow_client_timeout_seconds = 2).await
    else {
        return;
    };
    let server_port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let (slow, flooder) = (app.register("Slow").await, app.register("Flood").await);
    let (ada, bob) = (app.register("Ada").await, app.register("Bob").await);
    let since = app.sync_all(&slow, 0).await.len() as i64;

    let (stalled, client_port) = tiny_window_socket(&app, &slow).await;
    let (mut ada_socket, mut bob_socket) = (connect(&app, &ada).await, connect(&app, &bob).await);

    // The flood: 400 messages of 4 kB (1.6 MB) to a reader that reads nothing, from 8
    // concurrent REST callers, while Ada and Bob chat on their sockets.
    let chunk = "x".repeat(4000);
    let flood = {
        let (client, url, token, to) = (
            app.client.clone(),
            app.url("/messages"),
            flooder.token.clone(),
            slow.id.clone(),
        );
        tokio::spawn(async move {
            let sends = (0..400).map(|i| {
                let body = json!({"receiverId": to, "content": format!("{i} {chunk}")});
                let request = client.post(&url).bearer_auth(&token).json(&body);
                async move { request.send().await.map(|r| r.status().as_u16()) }
            });
            let statuses: Vec<_> = futures::StreamExt::collect(
                futures::StreamExt::buffer_unordered(futures::stream::iter(sends), 8),
            )
            .await;
            statuses
        })
    };
    for i in 0..20 {
        send_and_ack(&mut ada_socket, &bob, &format!("ada {i}"), 2 * i).await;
        send_and_ack(&mut bob_socket, &ada, &format!("bob {i}"), 2 * i + 1).await;
    }
    let statuses = flood.await.unwrap();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(201))),
        "every flood send is stored: {:?}",
        statuses
            .iter()
            .filter(|s| !matches!(s, Ok(201)))
            .collect::<Vec<_>>()
    );

    // The server gives up on the stalled connection: its end is closed and the user goes
    // offline, while the client still holds its end (it never read nor closed).
    let slow_id = nexus::domain::UserId::parse(&slow.id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = server_end_open(server_port, client_port);
        let online = !app.state.presence.online_among(&[slow_id]).await.is_empty();
        if !open && !online {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "20 s after the flood the server still holds the stalled connection \
             (server end open: {open}, user online: {online})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everyone else was unaffected, and the server still answers.
    send_and_ack(&mut ada_socket, &bob, "after", 100).await;
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The slow reader comes back and gets every message it missed from /sync.
    drop(stalled);
    let events = app.sync_all(&slow, since).await;
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "message.created")
        .collect();
    assert_eq!(created.len(), 400, "every missed message is in /sync");
    let mut back = connect(&app, &slow).await;
    send_and_ack(&mut back, &flooder, "I am back", 1).await;
}
