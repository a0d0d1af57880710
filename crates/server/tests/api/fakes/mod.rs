//! In-test push services with the real wire shapes: [`fcm::FakeFcm`] (the OAuth2 token
//! endpoint and FCM HTTP v1 `messages:send`) and [`webpush::FakePushService`] (an RFC 8030
//! push service that decrypts what it gets). Both listen on 127.0.0.1 and answer each
//! device with the [`Answer`]s a test scripted for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod fcm;
pub mod webpush;

/// How a fake answers one push to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (FCM 200 with the message name, Web Push 201).
    Ok,
    /// FCM 404 `UNREGISTERED`.
    Unregistered,
    /// FCM 400 `INVALID_ARGUMENT` naming `message.token`.
    InvalidToken,
    /// FCM 403 `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// FCM 400 `INVALID_ARGUMENT` about another field (our payload, not the token).
    InvalidPayload,
    /// FCM 401: the bearer token is revoked first, as if it had expired.
    Unauthorized,
    /// Any status, with `Retry-After: secs` if given (429, 500, 503; Web Push 404, 410).
    Status(u16, Option<u64>),
    /// Held while [`Script::hang_all`] is on, then answered `Ok` (internal to the fakes).
    Held,
}

/// Scripted answers per device, and what arrived.
#[derive(Default)]
pub struct Script {
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    /// The answer once a device's script is used up (default `Ok`).
    then: Mutex<HashMap<String, Answer>>,
    /// Every attempt that passed authentication: (device, when).
    attempts: Mutex<Vec<(String, Instant)>>,
    /// Requests the fake found malformed (a test expects none).
    pub rejected: Mutex<Vec<String>>,
    /// Requests held open (while [`Script::hang_all`] was on) so far.
    pub held: AtomicUsize,
    hang_all: std::sync::atomic::AtomicBool,
    release: tokio::sync::Notify,
}

impl Script {
    /// `device` answers with `answers` in turn, then with `then`.
    pub fn script(&self, device: &str, answers: impl IntoIterator<Item = Answer>, then: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(device.to_string(), answers.into_iter().collect());
        self.then.lock().unwrap().insert(device.to_string(), then);
    }

    /// Every device's requests hang from now on; `false` answers the held ones (`Ok`) and
    /// goes back to the scripts.
    pub fn hang_all(&self, on: bool) {
        self.hang_all.store(on, Ordering::SeqCst);
        if !on {
            self.release.notify_waiters();
        }
    }

    /// How many requests were held open so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub(crate) fn next(&self, device: &str) -> Answer {
        self.attempts
            .lock()
            .unwrap()
            .push((device.to_string(), Instant::now()));
        if self.hang_all.load(Ordering::SeqCst) {
            return Answer::Held;
        }
        if let Some(a) = self
            .answers
            .lock()
            .unwrap()
            .get_mut(device)
            .and_then(VecDeque::pop_front)
        {
            return a;
        }
        self.then
            .lock()
            .unwrap()
            .get(device)
            .cloned()
            .unwrap_or(Answer::Ok)
    }

    /// When each attempt for `device` arrived.
    pub fn attempts(&self, device: &str) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == device)
            .map(|(_, at)| *at)
            .collect()
    }

    pub fn all_attempts(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }

    pub(crate) fn reject(&self, why: String) {
        self.rejected.lock().unwrap().push(why);
    }

    /// Holds the request open until [`Script::hang_all`] is turned off.
    pub(crate) async fn hold(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        loop {
            let released = self.release.notified();
            if !self.hang_all.load(Ordering::SeqCst) {
                return;
            }
            released.await;
        }
    }

    /// The next answer for `device`, after holding it while everything hangs.
    pub(crate) async fn answer(&self, device: &str) -> Answer {
        match self.next(device) {
            Answer::Held => {
                self.hold().await;
                Answer::Ok
            }
            other => other,
        }
    }
}

/// The gaps between consecutive instants.
pub fn gaps(at: &[Instant]) -> Vec<Duration> {
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

/// A listener on 127.0.0.1 (random port) and its base URL.
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves `router` on `listener` for as long as the test's runtime lives.
pub fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
}
