//! Socket.IO-level fuzzing against the live server: one user's socket sends random frames
//! (well-formed event envelopes with random payloads, and broken envelopes: garbage,
//! truncated or mistyped packets, other namespaces, binary frames, deep nesting) while two
//! other users chat. The server must not panic, must keep answering, and nothing of the
//! other users may change but what they did themselves.
//!
//! `NEXUS_SOCKET_FUZZ_FRAMES` (default 2,000) and `NEXUS_SOCKET_FUZZ_SEED` set the run;
//! longer runs and their counts: docs/operations.md, "Fuzzing".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_bench::sio::{event_name, Incoming, SioConn, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp, TestUser};

const EVENTS: [&str; 12] = [
    "NEW_MESSAGE",
    "MESSAGE_DELIVERED",
    "MESSAGE_READ",
    "EDIT_MESSAGE",
    "DELETE_MESSAGE",
    "TYPING_START",
    "TYPING_STOP",
    "GET_ONLINE_USERS",
    "HEALTH_CHECK",
    "MARK_CONVERSATION_READ",
    "CONNECTION_SUCCESS",
    "",
];

const KEYS: [&str; 8] = [
    "receiverId",
    "content",
    "tempId",
    "messageId",
    "conversationId",
    "upToMessageId",
    "token",
    "__proto__",
];

fn random_string(rng: &mut StdRng, ids: &[String]) -> String {
    match rng.gen_range(0..8) {
        0 => ids[rng.gen_range(0..ids.len())].clone(),
        1 => uuid::Uuid::new_v4().to_string(),
        2 => "\u{0}".repeat(rng.gen_range(1..4)),
        3 => "x".repeat(rng.gen_range(0..12_000)),
        4 => "\u{202e}\u{200b}😀".repeat(rng.gen_range(1..50)),
        5 => String::new(),
        _ => (0..rng.gen_range(0..40))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'))
            .collect(),
    }
}

fn random_value(rng: &mut StdRng, depth: u32, ids: &[String]) -> Value {
    let leaf = depth >= 3 || rng.gen_bool(0.4);
    match rng.gen_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => match rng.gen_range(0..4) {
            0 => json!(rng.gen::<i64>()),
            1 => json!(rng.gen::<f64>() * 1e300),
            2 => json!(u64::MAX),
            _ => json!(-1),
        },
        3 | 4 => json!(random_string(rng, ids)),
        5 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_value(rng, depth + 1, ids))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..6))
                .map(|_| {
                    let key = if rng.gen_bool(0.8) {
                        KEYS[rng.gen_range(0..KEYS.len())].to_string()
                    } else {
                        random_string(rng, ids)
                    };
                    (key, random_value(rng, depth + 1, ids))
                })
                .collect(),
        ),
    }
}

/// One frame: `Ok(text)` or `Err(binary)`.
fn random_frame(rng: &mut StdRng, ids: &[String]) -> Result<String, Vec<u8>> {
    let event = EVENTS[rng.gen_range(0..EVENTS.len())];
    let payload = random_value(rng, 0, ids);
    let envelope = json!([event, payload]).to_string();
    Ok(match rng.gen_range(0..14) {
        // Well-formed envelopes with random payloads (half of the frames), some with an ack.
        0..=4 => format!("42/ws,{envelope}"),
        5 | 6 => format!("42/ws,{}{envelope}", rng.gen::<u32>()),
        // Broken ones.
        7 => {
            let mut cut = rng.gen_range(0..envelope.len());
            while !envelope.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("42/ws,{}", &envelope[..cut])
        }
        8 => format!("42/ws,{}", random_value(rng, 0, ids)),
        9 => format!("4{}/ws,{envelope}", rng.gen_range(0..10)),
        10 => format!("42/{},{envelope}", random_string(rng, ids).replace(',', "")),
        11 => format!("{}{}", rng.gen_range(0..10), random_string(rng, ids)),
        12 => format!("42/ws,{}1{}", "[".repeat(5000), "]".repeat(5000)),
        _ => return Err((0..rng.gen_range(0..200)).map(|_| rng.gen()).collect()),
    })
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

/// Sends `content` from `from` to `to`, waits for the ack and for `to`'s socket to get it.
async fn exchange(
    from: &mut SioConn,
    to: &mut SioConn,
    to_user: &TestUser,
    content: &str,
    ack: i64,
) {
    from.feed_event(
        "NEW_MESSAGE",
        &json!({"receiverId": to_user.id, "content": content}),
        Some(ack),
    )
    .await
    .unwrap();
    from.flush().await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), from.recv())
            .await
            .expect("the server stopped answering a bystander");
        match from.decode(frame) {
            Incoming::Ack { id, .. } if id == ack => break,
            Incoming::Closed(why) => panic!("a bystander's socket closed: {why}"),
            _ => from.flush().await.unwrap(),
        }
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), to.recv())
            .await
            .expect("a bystander's message did not arrive");
        match to.decode(frame) {
            Incoming::Event(v) if event_name(&v).is_ok_and(|n| n == "NEW_MESSAGE") => {
                assert!(format!("{v:?}").contains(content));
                break;
            }
            Incoming::Closed(why) => panic!("a bystander's socket closed: {why}"),
            _ => to.flush().await.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_break_nothing_for_anyone_else() {
    let frames: usize = std::env::var("NEXUS_SOCKET_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("NEXUS_SOCKET_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    // Panics of the server's code (not of tests) in this process.
    let server_panics = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = server_panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| l.file().to_string())
            .unwrap_or_default();
        if !at.contains("/tests/") {
            seen.lock().unwrap().push(format!("{at}: {info}"));
        }
        previous(info);
    }));

    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let (fuzzer, ada, bob) = (
        app.register("Fuzz").await,
        app.register("Ada").await,
        app.register("Bob").await,
    );
    // The fuzzer may write to Carl (that is allowed) and aims at Ada's message.
    let carl = app.register("Carl").await;
    let first = app.send_ok(&ada, &bob, "before").await;
    let ids = vec![
        carl.id.clone(),
        fuzzer.id.clone(),
        first["id"].as_str().unwrap().to_string(),
    ];
    let (mut ada_socket, mut bob_socket) = (connect(&app, &ada).await, connect(&app, &bob).await);
    let mut socket = connect(&app, &fuzzer).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let reconnects = AtomicUsize::new(0);
    let mut exchanged = 1;
    for i in 0..frames {
        let sent = match random_frame(&mut rng, &ids) {
            Ok(text) => socket.send_raw_text(text).await,
            Err(bytes) => socket.send_raw_binary(bytes).await,
        };
        // Drain what the server answered; a closed socket (a broken envelope may end the
        // session) is opened again.
        let mut closed = sent.is_err();
        while !closed {
            match tokio::time::timeout(Duration::from_millis(1), socket.recv()).await {
                Err(_) => break,
                Ok(frame) => {
                    if let Incoming::Closed(_) = socket.decode(frame) {
                        closed = true;
                    }
                }
            }
        }
        if closed {
            reconnects.fetch_add(1, Ordering::Relaxed);
            socket = connect(&app, &fuzzer).await;
        } else {
            let _ = socket.flush().await;
        }
        if i % 200 == 199 {
            exchange(
                &mut ada_socket,
                &mut bob_socket,
                &bob,
                &format!("ada {i}"),
                i as i64,
            )
            .await;
            exchange(
                &mut bob_socket,
                &mut ada_socket,
                &ada,
                &format!("bob {i}"),
                i as i64,
            )
            .await;
            exchanged += 2;
        }
    }
    exchange(&mut ada_socket, &mut bob_socket, &bob, "after", 1).await;
    exchanged += 1;

    // The server answers, and Ada's and Bob's data is only what they made.
    assert_eq!(
        app.client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let feed = app.sync_all(&ada, 0).await;
    assert!(
        feed.iter().all(|e| e["type"] == "message.created"
            && [ada.id.as_str(), bob.id.as_str()]
                .contains(&e["message"]["senderId"].as_str().unwrap())),
        "a fuzzed frame changed Ada's feed: {feed:?}"
    );
    assert_eq!(feed.len(), exchanged);
    assert_eq!(app.sync_all(&bob, 0).await.len(), exchanged);
    let panics = server_panics.lock().unwrap().clone();
    assert!(panics.is_empty(), "the server panicked: {panics:?}");
    eprintln!(
        "socket fuzz: {frames} frames (seed {seed}), {} reconnects, {exchanged} bystander messages, no panic",
        reconnects.load(Ordering::Relaxed)
    );
}
