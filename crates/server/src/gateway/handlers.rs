//! Socket handlers: decode an event, call the domain, answer and fan out. No rule lives
//! here; every refusal comes from the domain (or from decoding) as one `ERROR` event.
//!
//! Each socket has one task that takes its events in arrival order. State changes are
//! queued with the domain in that order (so a client's messages are stored in the order it
//! sent them) and their commits are awaited concurrently, so a client may have many sends
//! in flight. The same task closes the socket after `IDLE_TIMEOUT_SECONDS` of silence.

use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesOrdered, StreamExt};
use nexus_protocol::events::{
    self, ConnectionSuccess, EditMessage, ErrorEvent, ForceDisconnect, HealthResponse, MessageRef,
    NewMessage, OnlineUsers, PresenceStatus, PresenceUpdate, RateLimitExceeded, Typing, UserTyping,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::presence::TYPING_TTL;
use super::user_room;
use crate::accounts::Session;
use crate::app::AppState;
use crate::clock::{iso, now_ms};
use crate::domain::UserId;
use crate::error::DomainError;
use crate::messaging::{Outcome, ReceiptKind, Sent};

/// Events a socket may have waiting before it is told to slow down.
const QUEUE: usize = 1024;

struct Incoming {
    event: String,
    data: Option<Value>,
    ack: AckSender,
}

/// How an event is answered: now, or after a commit.
enum Reply {
    Now(Result<Value, DomainError>),
    Later(Pin<Box<dyn Future<Output = Result<Committed, DomainError>> + Send>>),
}

/// A committed change, to be announced in the order its events arrived (or an immediate
/// answer queued behind them).
enum Committed {
    Sent(Sent),
    Changed(Outcome),
    Answer(Value),
}

/// An event waiting for its commit.
type InFlight = Pin<
    Box<dyn Future<Output = (Incoming, Option<String>, Result<Committed, DomainError>)> + Send>,
>;

/// What `admit` learnt for `welcome`.
#[derive(Clone, Copy)]
struct Admitted {
    session: Session,
    first_socket: bool,
}

/// Sets up an authenticated socket before Socket.IO tells the client it is connected (this
/// runs in the connect middleware): its user room, its event queue and disconnect handler.
/// Nothing the client sends after connecting can arrive before its handler exists.
pub(super) fn admit(state: &AppState, s: &SocketRef, session: Session) {
    let user_id = session.user.as_string();
    s.join(user_room(&user_id));
    let first_socket = state.gateway.presence.connect(&user_id);
    s.extensions.insert(Admitted {
        session,
        first_socket,
    });

    // Boxed: a channel allocates its first block of slots up front, and with the event
    // itself in each slot that block was ~5 KiB for every idle socket.
    let (queue, events) = mpsc::channel::<Box<Incoming>>(QUEUE);
    let closed = Arc::new(Notify::new());
    tokio::spawn(serve(
        state.clone(),
        s.clone(),
        session,
        events,
        closed.clone(),
    ));
    // Called in arrival order: only queue here, so the order is kept.
    s.on_fallback(
        move |s: SocketRef, Event(event): Event, TryData(data): TryData<Value>, ack: AckSender| {
            if let Err(mpsc::error::TrySendError::Full(inc)) = queue.try_send(Box::new(Incoming {
                event,
                data: data.ok(),
                ack,
            })) {
                let inc = *inc;
                let busy = DomainError::TooManyAttempts {
                    retry_after_ms: 1000,
                };
                refuse(&s, inc.ack, &inc.event, busy, temp_id(inc.data.as_ref()));
            }
            async {}
        },
    );
    let state = state.clone();
    s.on_disconnect(async move |_s: SocketRef| {
        closed.notify_one();
        if state.gateway.presence.disconnect(&user_id) {
            announce_presence(&state, &user_id, PresenceStatus::Offline).await;
        }
    });
}

/// Once connected: `CONNECTION_SUCCESS` with the latest `seq`, and presence for partners.
pub(super) async fn welcome(state: AppState, s: SocketRef) {
    let Some(Admitted {
        session,
        first_socket,
    }) = s.extensions.get::<Admitted>()
    else {
        // The auth middleware always admits; refuse rather than guess.
        let _ = s.disconnect();
        return;
    };
    let user_id = session.user.as_string();
    let seq = match state.messaging.current_seq(session.user).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = ?e, "connect: cannot read the change feed position");
            let _ = s.disconnect();
            return;
        }
    };
    let _ = s.emit(
        events::CONNECTION_SUCCESS,
        &ConnectionSuccess {
            user_id: user_id.clone(),
            socket_id: s.id.to_string(),
            timestamp: iso(now_ms()),
            seq,
        },
    );
    if first_socket && s.connected() && state.gateway.presence.is_online(&user_id) {
        announce_presence(&state, &user_id, PresenceStatus::Online).await;
    }
}

/// The socket's task: its events in order, their commits awaited together but answered in
/// order (a refusal never overtakes an earlier send's `MESSAGE_SENT`), and the idle timeout.
/// When the socket closes, what it had already sent is still committed and announced to the
/// other users; then the task ends.
async fn serve(
    state: AppState,
    s: SocketRef,
    session: Session,
    mut events: mpsc::Receiver<Box<Incoming>>,
    closed: Arc<Notify>,
) {
    let user = session.user;
    let idle = state.gateway.idle_timeout;
    let mut deadline = Instant::now() + idle;
    // The socket lives no longer than the token it was opened with.
    let token_left = session
        .expires_at_secs
        .saturating_sub((now_ms() / 1000).max(0) as u64);
    let expiry = Instant::now() + std::time::Duration::from_secs(token_left);
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let (mut closing, mut drained) = (false, false);
    while !(drained && in_flight.is_empty()) {
        tokio::select! {
            incoming = events.recv(), if !drained => {
                let Some(inc) = incoming else {
                    drained = true;
                    continue;
                };
                let mut inc = *inc;
                deadline = Instant::now() + idle;
                let temp_id = temp_id(inc.data.as_ref());
                // Boxed: inline, the largest handler's state would make every idle socket's task
                // that large.
                match Box::pin(dispatch(&state, &s, user, &inc.event, inc.data.take())).await {
                    Reply::Now(result) if in_flight.is_empty() => {
                        respond(&s, inc.ack, &inc.event, result, temp_id)
                    }
                    Reply::Now(result) => {
                        let ready = result.map(Committed::Answer);
                        in_flight.push_back(Box::pin(async move { (inc, temp_id, ready) }));
                    }
                    Reply::Later(commit) => {
                        in_flight.push_back(Box::pin(async move { (inc, temp_id, commit.await) }));
                    }
                }
            }
            Some((inc, temp_id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let answer = match result {
                    Ok(committed) => Ok(Box::pin(announce(&state, &s, committed)).await),
                    Err(e) => Err(e),
                };
                respond(&s, inc.ack, &inc.event, answer, temp_id);
            }
            _ = closed.notified(), if !closing => {
                // Take no more events; finish the ones already received.
                closing = true;
                events.close();
            }
            // One timer for both ends (each timer is a hundred bytes of every idle socket).
            _ = tokio::time::sleep_until(deadline.min(expiry)), if !closing => {
                let reason = if expiry <= deadline { "token_expired" } else { "idle_timeout" };
                force_disconnect(&s, reason).await;
                closing = true;
                events.close();
            }
        }
    }
}

/// `FORCE_DISCONNECT {reason}`, then close the socket.
async fn force_disconnect(s: &SocketRef, reason: &str) {
    let _ = s.emit(
        events::FORCE_DISCONNECT,
        &ForceDisconnect {
            reason: reason.into(),
        },
    );
    tracing::debug!(sid = %s.id, reason, "force disconnect");
    // Let the goodbye be written before the transport closes.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _ = s.clone().disconnect();
}

fn temp_id(data: Option<&Value>) -> Option<String> {
    data.and_then(|d| d.get("tempId"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn respond(
    s: &SocketRef,
    ack: AckSender,
    event: &str,
    result: Result<Value, DomainError>,
    temp_id: Option<String>,
) {
    match result {
        Ok(answer) => {
            let _ = ack.send(&answer);
        }
        Err(e) => refuse(s, ack, event, e, temp_id),
    }
}

/// Tells the users who share a conversation with `user` that they came or went.
async fn announce_presence(state: &AppState, user: &str, status: PresenceStatus) {
    let Ok(id) = UserId::parse(user) else { return };
    let partners = match state.store.partners(id).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "presence: cannot load conversation partners");
            return;
        }
    };
    let update = to_value(&PresenceUpdate {
        user_id: user.to_string(),
        status,
        last_seen: iso(now_ms()),
    });
    for partner in partners {
        state
            .gateway
            .emit_to_user(&partner, events::USER_PRESENCE_UPDATE, &update)
            .await;
    }
}

/// Decodes the payload of `event` into `T`, or refuses with `VALIDATION_FAILED`.
fn decode<T: DeserializeOwned>(event: &str, data: Option<Value>) -> Result<T, DomainError> {
    let data = data
        .ok_or_else(|| DomainError::Validation(format!("{event} needs a JSON object payload")))?;
    serde_json::from_value(data)
        .map_err(|e| DomainError::Validation(format!("invalid {event} payload: {e}")))
}

async fn dispatch(
    state: &AppState,
    s: &SocketRef,
    user: UserId,
    event: &str,
    data: Option<Value>,
) -> Reply {
    let messaging = &state.messaging;
    let queued = match event {
        events::NEW_MESSAGE => return new_message(state, user, data).await,
        events::MESSAGE_DELIVERED | events::MESSAGE_READ => {
            let kind = if event == events::MESSAGE_READ {
                ReceiptKind::Read
            } else {
                ReceiptKind::Delivered
            };
            match decode::<MessageRef>(event, data) {
                Ok(r) => messaging.mark(user, &r.message_id, kind).await,
                Err(e) => Err(e),
            }
        }
        events::EDIT_MESSAGE => match decode::<EditMessage>(event, data) {
            Ok(e) => messaging.edit(user, &e.message_id, &e.content).await,
            Err(e) => Err(e),
        },
        events::DELETE_MESSAGE => match decode::<MessageRef>(event, data) {
            Ok(r) => messaging.delete(user, &r.message_id).await,
            Err(e) => Err(e),
        },
        events::TYPING_START | events::TYPING_STOP => {
            return Reply::Now(typing(state, user, event == events::TYPING_START, data).await)
        }
        events::GET_ONLINE_USERS => {
            let payload = to_value(&OnlineUsers {
                user_ids: state.gateway.online_users(),
            });
            let _ = s.emit(events::ONLINE_USERS, &payload);
            return Reply::Now(Ok(payload));
        }
        events::HEALTH_CHECK => {
            let database = state.store.ping().await;
            let payload = to_value(&HealthResponse {
                status: if database { "ok" } else { "degraded" }.into(),
                database: if database { "up" } else { "down" }.into(),
                redis: "not configured".into(),
                timestamp: iso(now_ms()),
            });
            let _ = s.emit(events::HEALTH_RESPONSE, &payload);
            return Reply::Now(Ok(payload));
        }
        other => Err(DomainError::Validation(format!("unknown event {other}"))),
    };
    match queued {
        Err(e) => Reply::Now(Err(e)),
        Ok(pending) => Reply::Later(Box::pin(async move {
            Ok(Committed::Changed(pending.committed().await?))
        })),
    }
}

/// `NEW_MESSAGE`: queue it; after the commit, `MESSAGE_SENT` to this socket and
/// `NEW_MESSAGE` to the receiver and the sender's other sockets.
async fn new_message(state: &AppState, user: UserId, data: Option<Value>) -> Reply {
    let queued = match decode::<NewMessage>(events::NEW_MESSAGE, data) {
        Ok(m) => {
            state
                .messaging
                .send(user, &m.receiver_id, &m.content, m.temp_id.as_deref())
                .await
        }
        Err(e) => Err(e),
    };
    let pending = match queued {
        Ok(p) => p,
        Err(e) => return Reply::Now(Err(e)),
    };
    Reply::Later(Box::pin(async move {
        Ok(Committed::Sent(pending.committed().await?))
    }))
}

/// After a commit: a send gets `MESSAGE_SENT` on this socket and `NEW_MESSAGE` everywhere
/// else; a change is fanned out to both users. Returns the acknowledgement's answer.
async fn announce(state: &AppState, s: &SocketRef, committed: Committed) -> Value {
    match committed {
        Committed::Sent(sent) => {
            let ack = to_value(&sent.ack());
            let _ = s.emit(events::MESSAGE_SENT, &ack);
            state.fanout(&Outcome::Sent(sent), Some(s)).await;
            ack
        }
        Committed::Changed(outcome) => {
            state.fanout(&outcome, Some(s)).await;
            outcome.actor_payload()
        }
        Committed::Answer(answer) => answer,
    }
}

/// `TYPING_START` / `TYPING_STOP`: tell the receiver; a start expires by itself after
/// [`TYPING_TTL`] unless refreshed.
async fn typing(
    state: &AppState,
    user: UserId,
    is_typing: bool,
    data: Option<Value>,
) -> Result<Value, DomainError> {
    let event = if is_typing {
        events::TYPING_START
    } else {
        events::TYPING_STOP
    };
    let t: Typing = decode(event, data)?;
    let to = state.messaging.typing_target(user, &t.receiver_id).await?;
    let (from, to) = (user.as_string(), to.as_string());
    let payload = to_value(&UserTyping {
        user_id: from.clone(),
        is_typing,
    });
    let generation = state.gateway.typing.bump(&from, &to);
    state
        .gateway
        .emit_to_user(&to, events::USER_TYPING, &payload)
        .await;
    if is_typing {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TYPING_TTL).await;
            if state.gateway.typing.expire(&from, &to, generation) {
                let stop = to_value(&UserTyping {
                    user_id: from,
                    is_typing: false,
                });
                state
                    .gateway
                    .emit_to_user(&to, events::USER_TYPING, &stop)
                    .await;
            }
        });
    }
    Ok(payload)
}

/// One `ERROR` (and, for the send limit, `RATE_LIMIT_EXCEEDED` first); the same error
/// through the acknowledgement. The socket stays connected.
fn refuse(s: &SocketRef, ack: AckSender, event: &str, e: DomainError, temp_id: Option<String>) {
    if let DomainError::Internal(cause) = &e {
        tracing::error!(error = ?cause, event, "socket event failed");
    }
    if let DomainError::RateLimited {
        limit,
        retry_after_ms,
    } = &e
    {
        let _ = s.emit(
            events::RATE_LIMIT_EXCEEDED,
            &RateLimitExceeded {
                limit: *limit,
                retry_after_ms: *retry_after_ms,
                temp_id: temp_id.clone(),
            },
        );
    }
    let error = ErrorEvent {
        message: e.to_string(),
        code: e.code(),
        event: event.to_string(),
        temp_id,
        timestamp: iso(now_ms()),
    };
    let _ = s.emit(events::ERROR, &error);
    let _ = ack.send(&error);
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
