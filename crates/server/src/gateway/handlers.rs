//! Socket handlers: decode an event, call the domain, answer and fan out. No rule lives
//! here; every refusal comes from the domain (or from decoding) as one `ERROR` event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nexus_protocol::events::{
    self, ConnectionSuccess, EditMessage, ErrorEvent, ForceDisconnect, HealthResponse, MessageRef,
    NewMessage, OnlineUsers, PresenceStatus, PresenceUpdate, RateLimitExceeded, Typing, UserTyping,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use tokio::time::Instant;

use super::presence::TYPING_TTL;
use super::user_room;
use crate::app::AppState;
use crate::clock::{iso, now_ms};
use crate::domain::UserId;
use crate::error::DomainError;
use crate::messaging::{Outcome, ReceiptKind};

/// When the socket last sent an event, in milliseconds after `base`.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

pub(super) async fn on_connect(state: AppState, s: SocketRef) {
    let Some(user) = s.extensions.get::<UserId>() else {
        // The auth middleware always sets it; refuse rather than guess.
        let _ = s.disconnect();
        return;
    };
    let user_id = user.as_string();
    s.join(user_room(&user_id));
    let _ = s.emit(
        events::CONNECTION_SUCCESS,
        &ConnectionSuccess {
            user_id: user_id.clone(),
            socket_id: s.id.to_string(),
            timestamp: iso(now_ms()),
        },
    );

    let activity = Arc::new(Activity {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    tokio::spawn(watch_idle(state.clone(), s.clone(), activity.clone()));

    if state.gateway.presence.connect(&user_id) {
        announce_presence(&state, &user_id, PresenceStatus::Online).await;
    }

    let st = state.clone();
    s.on_fallback(
        async move |s: SocketRef,
                    Event(event): Event,
                    TryData(data): TryData<Value>,
                    ack: AckSender| {
            activity.touch();
            dispatch(&st, &s, user, &event, data.ok(), ack).await;
        },
    );
    s.on_disconnect(async move |_s: SocketRef| {
        if state.gateway.presence.disconnect(&user_id) {
            announce_presence(&state, &user_id, PresenceStatus::Offline).await;
        }
    });
}

/// Closes the socket after `IDLE_TIMEOUT_SECONDS` without a client event.
async fn watch_idle(state: AppState, s: SocketRef, activity: Arc<Activity>) {
    let timeout = state.gateway.idle_timeout;
    loop {
        let deadline = activity.last() + timeout;
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep_until(deadline).await;
        if !s.connected() {
            return;
        }
    }
    let _ = s.emit(
        events::FORCE_DISCONNECT,
        &ForceDisconnect {
            reason: "idle_timeout".into(),
        },
    );
    tracing::debug!(sid = %s.id, "idle timeout");
    // Give the goodbye a moment to be written before the transport closes.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _ = s.disconnect();
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
    let update = serde_json::to_value(PresenceUpdate {
        user_id: user.to_string(),
        status,
        last_seen: iso(now_ms()),
    })
    .unwrap_or(Value::Null);
    for partner in partners {
        state
            .gateway
            .emit_to_user(&partner, events::USER_PRESENCE_UPDATE, &update)
            .await;
    }
}

/// Decodes the payload of `event` into `T`, or refuses with `VALIDATION_FAILED`.
fn decode<T: DeserializeOwned>(event: &str, data: Option<&Value>) -> Result<T, DomainError> {
    let data = data
        .ok_or_else(|| DomainError::Validation(format!("{event} needs a JSON object payload")))?;
    serde_json::from_value(data.clone())
        .map_err(|e| DomainError::Validation(format!("invalid {event} payload: {e}")))
}

async fn dispatch(
    state: &AppState,
    s: &SocketRef,
    user: UserId,
    event: &str,
    data: Option<Value>,
    ack: AckSender,
) {
    let temp_id = data
        .as_ref()
        .and_then(|d| d.get("tempId"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let result = match event {
        events::NEW_MESSAGE => new_message(state, s, user, data.as_ref()).await,
        events::MESSAGE_DELIVERED | events::MESSAGE_READ => {
            let kind = if event == events::MESSAGE_READ {
                ReceiptKind::Read
            } else {
                ReceiptKind::Delivered
            };
            match decode::<MessageRef>(event, data.as_ref()) {
                Ok(r) => {
                    changed(
                        state,
                        s,
                        state.messaging.mark(user, &r.message_id, kind).await,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        events::EDIT_MESSAGE => match decode::<EditMessage>(event, data.as_ref()) {
            Ok(e) => {
                changed(
                    state,
                    s,
                    state.messaging.edit(user, &e.message_id, &e.content).await,
                )
                .await
            }
            Err(e) => Err(e),
        },
        events::DELETE_MESSAGE => match decode::<MessageRef>(event, data.as_ref()) {
            Ok(r) => changed(state, s, state.messaging.delete(user, &r.message_id).await).await,
            Err(e) => Err(e),
        },
        events::TYPING_START | events::TYPING_STOP => {
            typing(state, user, event == events::TYPING_START, data.as_ref()).await
        }
        events::GET_ONLINE_USERS => {
            let payload = to_value(&OnlineUsers {
                user_ids: state.gateway.online_users(),
            });
            let _ = s.emit(events::ONLINE_USERS, &payload);
            Ok(payload)
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
            Ok(payload)
        }
        other => Err(DomainError::Validation(format!("unknown event {other}"))),
    };
    match result {
        Ok(answer) => {
            let _ = ack.send(&answer);
        }
        Err(e) => refuse(s, ack, event, e, temp_id),
    }
}

/// `NEW_MESSAGE`: store, acknowledge to the sender, deliver to everyone else.
async fn new_message(
    state: &AppState,
    s: &SocketRef,
    user: UserId,
    data: Option<&Value>,
) -> Result<Value, DomainError> {
    let m: NewMessage = decode(events::NEW_MESSAGE, data)?;
    let sent = state
        .messaging
        .send(user, &m.receiver_id, &m.content, m.temp_id.as_deref())
        .await?;
    let ack = to_value(&sent.ack());
    let _ = s.emit(events::MESSAGE_SENT, &ack);
    state.fanout(&Outcome::Sent(sent), Some(s.id)).await;
    Ok(ack)
}

/// Fans out the outcome of an edit, delete or receipt; the actor's payload is the answer.
async fn changed(
    state: &AppState,
    s: &SocketRef,
    outcome: Result<Outcome, DomainError>,
) -> Result<Value, DomainError> {
    let outcome = outcome?;
    state.fanout(&outcome, Some(s.id)).await;
    Ok(outcome.actor_payload())
}

/// `TYPING_START` / `TYPING_STOP`: tell the receiver; a start expires by itself after
/// [`TYPING_TTL`] unless refreshed.
async fn typing(
    state: &AppState,
    user: UserId,
    is_typing: bool,
    data: Option<&Value>,
) -> Result<Value, DomainError> {
    let event = if is_typing {
        events::TYPING_START
    } else {
        events::TYPING_STOP
    };
    let t: Typing = decode(event, data)?;
    let to = UserId::parse(&t.receiver_id)
        .map_err(|_| DomainError::Validation("receiverId must be a UUID".into()))?;
    if to == user {
        return Err(DomainError::Validation("cannot type to yourself".into()));
    }
    if state.store.user_by_id(to).await?.is_none() {
        return Err(DomainError::NotFound("receiver not found".into()));
    }
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
    let expiring = state.clone();
    let (f, t) = (from.clone(), to.clone());
    tokio::spawn(async move {
        tokio::time::sleep(TYPING_TTL).await;
        if expiring.gateway.typing.expire(&f, &t, generation) && is_typing {
            let stop = to_value(&UserTyping {
                user_id: f.clone(),
                is_typing: false,
            });
            expiring
                .gateway
                .emit_to_user(&t, events::USER_TYPING, &stop)
                .await;
        }
    });
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
