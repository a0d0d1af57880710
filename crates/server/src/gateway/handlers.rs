//! Socket handlers: decode an event, call the domain, answer and fan out. No rule lives
//! here; every refusal comes from the domain (or from decoding) as one `ERROR` event.
//!
//! Each socket has one task that takes its events in arrival order. State changes are
//! queued with the domain in that order (so a client's messages are stored in the order it
//! sent them) and their commits are awaited concurrently, so a client may have many sends
//! in flight. The same task closes the socket after `IDLE_TIMEOUT_SECONDS` of silence.

use std::future::Future;
use std::pin::Pin;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{FuturesOrdered, StreamExt};
use nexus_protocol::events::{
    self, ConnectionSuccess, EditMessage, ErrorEvent, ForceDisconnect, HealthResponse,
    MarkConversationRead, MessageRef, NewMessage, OnlineUsers, PresenceStatus, RateLimitExceeded,
    Typing,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::typing::TYPING_TTL;
use super::Gateway;
use crate::accounts::Session;
use crate::clock::{iso, now_ms};
use crate::delivery::{token_room, user_room, Origin};
use crate::domain::UserId;
use crate::error::DomainError;
use crate::messaging::{Outcome, ReceiptKind, Sent};
use crate::metrics;

/// Events a socket may have waiting before it is told to slow down.
const QUEUE: usize = 1024;

struct Incoming<A: Adapter> {
    event: String,
    data: Option<Value>,
    ack: AckSender<A>,
    /// When it arrived: a send's latency runs from here to its acknowledgement.
    received: Instant,
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
type InFlight<A> = Pin<
    Box<dyn Future<Output = (Incoming<A>, Option<String>, Result<Committed, DomainError>)> + Send>,
>;

/// What `admit` learnt for `welcome`.
#[derive(Clone, Copy)]
struct Admitted {
    session: Session,
    first_socket: bool,
}

/// The socket's event queue and close signal, waiting in its extensions for `welcome` to
/// start its task ([`serve`]). Until the socket is in the namespace nothing of the gateway
/// holds the socket, so a socket socketioxide gives up is dropped (see [`Places`]).
struct Pending<A: Adapter>(Arc<Mutex<Option<Queued<A>>>>);

type Queued<A> = (mpsc::Receiver<Box<Incoming<A>>>, Arc<Notify>);

impl<A: Adapter> Clone for Pending<A> {
    fn clone(&self) -> Self {
        Pending(self.0.clone())
    }
}

/// The places a counted socket holds: in the gateway's count (the node's `MAX_CONNECTIONS`,
/// the user's cap on this node), in the presence (the user's sockets on every node: the
/// CONNECT script's count in Redis, in a cluster) and in the sockets gauge. They are given
/// back once: by the socket's disconnect handler, or, if socketioxide drops the socket
/// without calling that handler, when the handler is dropped. socketioxide does so when the
/// client went away while the connect middleware ran (after the socket was counted, before
/// it entered the namespace: the CONNECT answer cannot be sent, the socket is removed and no
/// disconnect is ever reported); those places stayed taken until the idle timeout closed
/// the orphan.
struct Places {
    gateway: Arc<Gateway>,
    user: UserId,
    socket_id: String,
    given_back: AtomicBool,
}

impl Places {
    /// The first call gives back the gateway's place and the gauge at once, and returns
    /// the presence's part (with "offline" announced if that was the user's last socket
    /// anywhere); later calls return `None`.
    fn give_back(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        if self.given_back.swap(true, Ordering::AcqRel) {
            return None;
        }
        metrics::node().sockets.dec();
        self.gateway.sockets.release(self.user);
        let (gateway, user, socket_id) = (self.gateway.clone(), self.user, self.socket_id.clone());
        Some(async move {
            if gateway.state.presence.disconnect(user, &socket_id).await {
                announce_presence(&gateway, user, PresenceStatus::Offline).await;
            }
        })
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        let Some(gone) = self.give_back() else {
            return;
        };
        tracing::debug!(
            sid = %self.socket_id,
            "handshake abandoned after the socket was counted: its places are given back"
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(gone);
        }
    }
}

/// Sets up an authenticated socket, counted by the presence already (`first_socket`: the
/// user's first anywhere), before Socket.IO tells the client it is connected (this runs in
/// the connect middleware): its user room, its event queue and disconnect handler. Nothing
/// the client sends after connecting can arrive before its handler exists; its events wait
/// in the queue until `welcome` starts the task that takes them.
pub(super) async fn admit<A: Adapter>(
    gateway: &Arc<Gateway>,
    s: &SocketRef<A>,
    session: Session,
    first_socket: bool,
) {
    let user = session.user;
    s.join(user_room(&user.as_string()));
    if let Some(jti) = session.token_id {
        s.join(token_room(&jti.to_string()));
    }
    metrics::node().sockets.inc();
    let socket_id = s.id.to_string();
    s.extensions.insert(Admitted {
        session,
        first_socket,
    });

    // Boxed: a channel allocates its first block of slots up front, and with the event
    // itself in each slot that block was ~5 KiB for every idle socket.
    let (queue, events) = mpsc::channel::<Box<Incoming<A>>>(QUEUE);
    let closed = Arc::new(Notify::new());
    s.extensions.insert(Pending::<A>(Arc::new(Mutex::new(Some((
        events,
        closed.clone(),
    ))))));
    // Called in arrival order: only queue here, so the order is kept.
    s.on_fallback(
        move |s: SocketRef<A>,
              Event(event): Event,
              TryData(data): TryData<Value>,
              ack: AckSender<A>| {
            metrics::node().events_in.count(&event);
            if let Err(mpsc::error::TrySendError::Full(inc)) = queue.try_send(Box::new(Incoming {
                event,
                data: data.ok(),
                ack,
                received: Instant::now(),
            })) {
                let inc = *inc;
                let busy = DomainError::TooManyAttempts {
                    retry_after_ms: 1000,
                };
                metrics::node().limited("socket_queue");
                refuse(&s, inc.ack, &inc.event, busy, temp_id(inc.data.as_ref()));
            }
            async {}
        },
    );
    let places = Arc::new(Places {
        gateway: gateway.clone(),
        user,
        socket_id,
        given_back: AtomicBool::new(false),
    });
    s.on_disconnect(async move |_s: SocketRef<A>| {
        let gone = places.give_back();
        closed.notify_one();
        if let Some(gone) = gone {
            gone.await;
        }
    });
}

/// Once connected: `CONNECTION_SUCCESS` with the latest `seq`, and presence for partners.
pub(super) async fn welcome<A: Adapter>(gateway: Arc<Gateway>, s: SocketRef<A>) {
    let Some(Admitted {
        session,
        first_socket,
    }) = s.extensions.get::<Admitted>()
    else {
        // The auth middleware always admits; refuse rather than guess.
        let _ = s.disconnect();
        return;
    };
    let queued = s
        .extensions
        .remove::<Pending<A>>()
        .and_then(|Pending(q)| q.lock().unwrap_or_else(|e| e.into_inner()).take());
    if let Some((events, closed)) = queued {
        tokio::spawn(serve(gateway.clone(), s.clone(), session, events, closed));
    }
    let user_id = session.user.as_string();
    let seq = match gateway.state.messaging.current_seq(session.user).await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::error!(error = ?e, "connect: cannot read the change feed position");
            let _ = s.disconnect();
            return;
        }
    };
    emit(
        &s,
        events::CONNECTION_SUCCESS,
        &ConnectionSuccess {
            user_id: user_id.clone(),
            socket_id: s.id.to_string(),
            timestamp: iso(now_ms()),
            seq,
        },
    );
    // A socket that is gone already (a flaky connection) announces nothing: its
    // disconnect may have been handled before this, and must stay the last word.
    if first_socket
        && s.connected()
        && !gateway
            .state
            .presence
            .online_among(&[session.user])
            .await
            .is_empty()
    {
        announce_presence(&gateway, session.user, PresenceStatus::Online).await;
    }
}

/// The socket's task: its events in order, their commits awaited together but answered in
/// order (a refusal never overtakes an earlier send's `MESSAGE_SENT`), and the idle timeout.
/// When the socket closes, what it had already sent is still committed and announced to the
/// other users; then the task ends.
async fn serve<A: Adapter>(
    gateway: Arc<Gateway>,
    s: SocketRef<A>,
    session: Session,
    mut events: mpsc::Receiver<Box<Incoming<A>>>,
    closed: Arc<Notify>,
) {
    let user = session.user;
    let idle = gateway.idle_timeout;
    let mut deadline = Instant::now() + idle;
    // The socket lives no longer than the token it was opened with.
    let token_left = session
        .expires_at_secs
        .saturating_sub((now_ms() / 1000).max(0) as u64);
    let expiry = Instant::now()
        .checked_add(std::time::Duration::from_secs(token_left))
        .unwrap_or(deadline);
    let mut in_flight: FuturesOrdered<InFlight<A>> = FuturesOrdered::new();
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
                match Box::pin(dispatch(&gateway, &s, user, &inc.event, inc.data.take())).await {
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
                    Ok(committed) => Ok(Box::pin(announce(&gateway, &s, committed)).await),
                    Err(e) => Err(e),
                };
                if answer.is_ok() && inc.event == events::NEW_MESSAGE {
                    metrics::node().sent("socket", inc.received.into_std());
                }
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
async fn force_disconnect<A: Adapter>(s: &SocketRef<A>, reason: &str) {
    emit(
        s,
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

fn respond<A: Adapter>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
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

/// Tells the users the domain names (those who share a conversation with `user`) that
/// they came or went.
async fn announce_presence(gateway: &Gateway, user: UserId, status: PresenceStatus) {
    match gateway.state.messaging.presence_changed(user, status).await {
        Ok(notifications) => {
            gateway
                .state
                .delivery
                .send(notifications, Origin::Http)
                .await
        }
        Err(e) => tracing::warn!(error = ?e, "presence: cannot load the user's contacts"),
    }
}

/// Decodes the payload of `event` into `T`, or refuses with `VALIDATION_FAILED`.
pub(super) fn decode<T: DeserializeOwned>(
    event: &str,
    data: Option<Value>,
) -> Result<T, DomainError> {
    let data = data
        .ok_or_else(|| DomainError::Validation(format!("{event} needs a JSON object payload")))?;
    serde_json::from_value(data)
        .map_err(|e| DomainError::Validation(format!("invalid {event} payload: {e}")))
}

async fn dispatch<A: Adapter>(
    gateway: &Arc<Gateway>,
    s: &SocketRef<A>,
    user: UserId,
    event: &str,
    data: Option<Value>,
) -> Reply {
    let state = &gateway.state;
    let messaging = &state.messaging;
    let queued = match event {
        events::NEW_MESSAGE => return new_message(gateway, user, data).await,
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
        events::MARK_CONVERSATION_READ => match decode::<MarkConversationRead>(event, data) {
            Ok(r) => {
                messaging
                    .mark_conversation_read(user, &r.conversation_id, &r.up_to_message_id)
                    .await
            }
            Err(e) => Err(e),
        },
        events::TYPING_START | events::TYPING_STOP => {
            return Reply::Now(typing(gateway, user, event == events::TYPING_START, data).await)
        }
        events::GET_ONLINE_USERS => {
            let online = messaging.online_contacts(user, &*state.presence).await;
            let payload = match online {
                Ok(user_ids) => to_value(&OnlineUsers { user_ids }),
                Err(e) => return Reply::Now(Err(e)),
            };
            emit(s, events::ONLINE_USERS, &payload);
            return Reply::Now(Ok(payload));
        }
        events::HEALTH_CHECK => {
            let report = state.health.check().await;
            let payload = to_value(&HealthResponse {
                status: if report.ready() { "ok" } else { "degraded" }.into(),
                database: report.database_status().into(),
                redis: report.redis_status().into(),
                timestamp: iso(now_ms()),
            });
            emit(s, events::HEALTH_RESPONSE, &payload);
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
async fn new_message(gateway: &Gateway, user: UserId, data: Option<Value>) -> Reply {
    let queued = match decode::<NewMessage>(events::NEW_MESSAGE, data) {
        Ok(m) => {
            gateway
                .state
                .messaging
                .send_to(
                    user,
                    m.receiver_id.as_deref(),
                    m.conversation_id.as_deref(),
                    &m.content,
                    m.temp_id.as_deref(),
                )
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
/// else; a change is delivered to both users. Returns the acknowledgement's answer.
async fn announce<A: Adapter>(gateway: &Gateway, s: &SocketRef<A>, committed: Committed) -> Value {
    let delivery = &gateway.state.delivery;
    let origin = Origin::Socket(s.id);
    match committed {
        Committed::Sent(sent) => {
            let ack = to_value(&sent.ack());
            emit(s, events::MESSAGE_SENT, &ack);
            delivery.deliver(&Outcome::Sent(sent), origin).await;
            ack
        }
        Committed::Changed(outcome) => {
            delivery.deliver(&outcome, origin).await;
            outcome.actor_payload()
        }
        Committed::Answer(answer) => answer,
    }
}

/// `TYPING_START` / `TYPING_STOP`: tell the receiver, if the domain allows it (someone
/// the typist shares a conversation with, within the typist's budget). Refreshes inside
/// [`super::typing::TYPING_THROTTLE`] are not forwarded; a start expires by itself after [`TYPING_TTL`]
/// unless refreshed; a stop is forwarded only when a start was.
async fn typing(
    gateway: &Arc<Gateway>,
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
    let messaging = &gateway.state.messaging;
    let receiver = match (t.receiver_id, t.conversation_id) {
        (Some(r), None) => r,
        (None, Some(c)) => return group_typing(gateway, user, is_typing, &c).await,
        _ => {
            return Err(DomainError::Validation(
                "give exactly one of receiverId and conversationId".into(),
            ))
        }
    };
    let to = messaging.typing_target(user, &receiver).await?;
    let (from_key, to_key) = (user.as_string(), to.as_string());
    let notification = messaging.typing_notification(user, to, is_typing);
    let payload = to_value(&notification.payload);
    if !is_typing {
        if gateway.typing.stop(&from_key, &to_key) {
            gateway
                .state
                .delivery
                .send(vec![notification], Origin::Http)
                .await;
        }
        return Ok(payload);
    }
    let start = gateway.typing.start(&from_key, &to_key);
    if start.forward {
        if let Err(e) = messaging.may_show_typing(user, to, start.new).await {
            gateway.typing.forget(&from_key, &to_key);
            return Err(e);
        }
        gateway
            .state
            .delivery
            .send(vec![notification], Origin::Http)
            .await;
    }
    let gateway = gateway.clone();
    tokio::spawn(async move {
        tokio::time::sleep(TYPING_TTL).await;
        if gateway.typing.expire(&from_key, &to_key, start.generation) {
            let stop = gateway.state.messaging.typing_notification(user, to, false);
            gateway.state.delivery.send(vec![stop], Origin::Http).await;
        }
    });
    Ok(payload)
}

/// Typing in a group: `USER_TYPING {userId, isTyping, conversationId}` to every other
/// current member, with the same throttle and expiry as 1:1 typing (keyed by the group).
async fn group_typing(
    gateway: &Arc<Gateway>,
    user: UserId,
    is_typing: bool,
    conversation: &str,
) -> Result<Value, DomainError> {
    let messaging = &gateway.state.messaging;
    let from_key = user.as_string();
    let to_key = format!("conversation:{conversation}");
    if !is_typing {
        if gateway.typing.stop(&from_key, &to_key) {
            let (id, others) = messaging
                .group_typing_audience(user, conversation, false)
                .await?;
            let notes = messaging.group_typing_notifications(user, &id, &others, false);
            gateway.state.delivery.send(notes, Origin::Http).await;
        }
        return Ok(to_value(&nexus_protocol::events::UserTyping {
            user_id: from_key,
            is_typing,
            conversation_id: Some(conversation.to_string()),
        }));
    }
    let start = gateway.typing.start(&from_key, &to_key);
    if start.forward {
        match messaging
            .group_typing_audience(user, conversation, true)
            .await
        {
            Ok((id, others)) => {
                let notes = messaging.group_typing_notifications(user, &id, &others, true);
                gateway.state.delivery.send(notes, Origin::Http).await;
            }
            Err(e) => {
                gateway.typing.forget(&from_key, &to_key);
                return Err(e);
            }
        }
    }
    let payload = to_value(&nexus_protocol::events::UserTyping {
        user_id: user.as_string(),
        is_typing,
        conversation_id: Some(conversation.to_string()),
    });
    let gateway = gateway.clone();
    let conversation = conversation.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(TYPING_TTL).await;
        if gateway.typing.expire(&from_key, &to_key, start.generation) {
            let messaging = &gateway.state.messaging;
            if let Ok((id, others)) = messaging
                .group_typing_audience(user, &conversation, false)
                .await
            {
                let notes = messaging.group_typing_notifications(user, &id, &others, false);
                gateway.state.delivery.send(notes, Origin::Http).await;
            }
        }
    });
    Ok(payload)
}

/// One `ERROR` (and, for the send limit, `RATE_LIMIT_EXCEEDED` first); the same error
/// through the acknowledgement. The socket stays connected.
fn refuse<A: Adapter>(
    s: &SocketRef<A>,
    ack: AckSender<A>,
    event: &str,
    e: DomainError,
    temp_id: Option<String>,
) {
    if let DomainError::Internal(cause) = &e {
        tracing::error!(error = ?cause, event, "socket event failed");
    }
    if let DomainError::RateLimited {
        limit,
        retry_after_ms,
    } = &e
    {
        emit(
            s,
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
    emit(s, events::ERROR, &error);
    let _ = ack.send(&error);
}

/// Emits `event` to this socket only (and counts it).
fn emit<A: Adapter, T: serde::Serialize + ?Sized>(
    s: &SocketRef<A>,
    event: &'static str,
    payload: &T,
) {
    metrics::node().events_out.count(event);
    let _ = s.emit(event, payload);
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
