//! Delivery: the one step that sends what the domain returns.
//!
//! The messaging domain answers every change with an [`Outcome`] that names who must hear
//! of it ([`Notification`]s, one per user) and who should get a push notification if they
//! are connected nowhere ([`PushRequest`]s). [`Delivery::deliver`] sends the notifications
//! to the users' rooms through [`Rooms`] (socketioxide with its local adapter on one node,
//! its Redis adapter in a cluster: either way a user's sockets on every node get the event)
//! and hands the push requests of offline users to the [`PushQueue`]. HTTP handlers and the
//! Socket.IO gateway both call it; neither emits a domain event by itself.

use std::sync::{Arc, Mutex};

use nexus_protocol::events::{ForceDisconnect, NAMESPACE};
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SocketIo};

use crate::domain::UserId;
use crate::messaging::notify::{Notification, Payload};
use crate::messaging::Outcome;
use crate::presence::Presence;

pub use crate::messaging::notify::PushRequest;

/// The room every socket of a user joins, on whichever node it is connected.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// Where a change came from: a socket's own echo is skipped where the notification says
/// so (that socket gets its own answer instead).
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    Http,
    Socket(Sid),
}

/// Emitting to rooms of the `/ws` namespace, whatever the adapter behind it.
#[async_trait::async_trait]
pub trait Rooms: Send + Sync + 'static {
    /// Emits `event` to every socket in `room` (on any node), except socket `skip`.
    async fn emit(
        &self,
        room: String,
        skip: Option<Sid>,
        event: &'static str,
        payload: &Payload,
    ) -> Result<(), BroadcastError>;

    /// Tells every socket connected to this node `FORCE_DISCONNECT {reason}`, then closes
    /// them (shutdown). Sockets on other nodes are left alone.
    async fn close_local(&self, reason: &str);

    /// Closes every socket in `room`, on any node.
    async fn disconnect(&self, room: String) -> Result<(), BroadcastError>;
}

#[async_trait::async_trait]
impl<A: Adapter> Rooms for SocketIo<A> {
    async fn emit(
        &self,
        room: String,
        skip: Option<Sid>,
        event: &'static str,
        payload: &Payload,
    ) -> Result<(), BroadcastError> {
        let Some(ns) = self.of(NAMESPACE) else {
            return Ok(());
        };
        // The origin socket is always one of this node's: broadcasting from it skips it.
        match skip.and_then(|sid| ns.get_socket(sid)) {
            Some(socket) => socket.to(room).emit(event, payload).await,
            None => ns.to(room).emit(event, payload).await,
        }
    }

    async fn close_local(&self, reason: &str) {
        if let Some(ns) = self.of(NAMESPACE) {
            let bye = ForceDisconnect {
                reason: reason.into(),
            };
            let _ = ns
                .local()
                .emit(nexus_protocol::events::FORCE_DISCONNECT, &bye)
                .await;
        }
        // Let the goodbye reach the clients before the transports close.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.clone().close().await;
    }

    async fn disconnect(&self, room: String) -> Result<(), BroadcastError> {
        match self.of(NAMESPACE) {
            Some(ns) => ns.to(room).disconnect().await,
            None => Ok(()),
        }
    }
}

/// The room of the sockets opened with one access token (its `jti`), so that a logout
/// closes exactly those, on whichever node they are.
pub fn token_room(jti: &str) -> String {
    format!("token:{jti}")
}

/// Where push notifications for users connected nowhere go.
pub trait PushQueue: Send + Sync + 'static {
    /// Takes a push to send in the background. Never blocks and never fails the change
    /// that caused it: a queue that cannot take it drops it (and counts that).
    fn offer(&self, request: PushRequest);
}

/// Push turned off: requests are dropped.
pub struct NoPush;

impl PushQueue for NoPush {
    fn offer(&self, _request: PushRequest) {}
}

/// Keeps every request offered (tests).
#[derive(Default)]
pub struct RecordedPushes(Mutex<Vec<PushRequest>>);

impl RecordedPushes {
    /// The requests offered so far, forgetting them.
    pub fn take(&self) -> Vec<PushRequest> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl PushQueue for RecordedPushes {
    fn offer(&self, request: PushRequest) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
    }
}

impl<Q: PushQueue + ?Sized> PushQueue for Arc<Q> {
    fn offer(&self, request: PushRequest) {
        (**self).offer(request)
    }
}

#[derive(Clone)]
pub struct Delivery {
    rooms: Arc<dyn Rooms>,
    presence: Arc<dyn Presence>,
    push: Arc<dyn PushQueue>,
}

impl Delivery {
    pub fn new(
        rooms: Arc<dyn Rooms>,
        presence: Arc<dyn Presence>,
        push: Arc<dyn PushQueue>,
    ) -> Delivery {
        Delivery {
            rooms,
            presence,
            push,
        }
    }

    /// Sends everything `outcome` causes: its notifications to the users' sockets (skipping
    /// the origin socket where a notification says so), and a push for each recipient of a
    /// new message who has no socket connected anywhere.
    pub async fn deliver(&self, outcome: &Outcome, origin: Origin) {
        self.send(outcome.notifications(), origin).await;
        let pushes = outcome.pushes();
        if pushes.is_empty() {
            return;
        }
        let recipients: Vec<UserId> = pushes.iter().map(|p| p.recipient).collect();
        let online = self.presence.online_among(&recipients).await;
        for push in pushes {
            if !online.contains(&push.recipient) {
                self.push.offer(push);
            }
        }
    }

    /// Emits each notification to its user's room.
    pub async fn send(&self, notifications: Vec<Notification>, origin: Origin) {
        let skip = match origin {
            Origin::Socket(sid) => Some(sid),
            Origin::Http => None,
        };
        for n in notifications {
            let skip = if n.to_origin { None } else { skip };
            crate::metrics::node().events_out.count(n.event);
            if let Err(e) = self
                .rooms
                .emit(user_room(&n.user_id), skip, n.event, &n.payload)
                .await
            {
                tracing::warn!(error = %e, event = n.event, "delivery failed");
            }
        }
    }

    /// Sockets opened with token `jti` (any node): `FORCE_DISCONNECT {reason:
    /// "token_revoked"}`, then closed.
    pub async fn revoke_token(&self, jti: &str) {
        self.close_room(token_room(jti)).await;
    }

    /// Every socket of `user` (any node), after a password change.
    pub async fn revoke_user(&self, user: &str) {
        self.close_room(user_room(user)).await;
    }

    async fn close_room(&self, room: String) {
        let bye = Payload::Forced(ForceDisconnect {
            reason: "token_revoked".into(),
        });
        crate::metrics::node()
            .events_out
            .count(nexus_protocol::events::FORCE_DISCONNECT);
        if let Err(e) = self
            .rooms
            .emit(
                room.clone(),
                None,
                nexus_protocol::events::FORCE_DISCONNECT,
                &bye,
            )
            .await
        {
            tracing::warn!(error = %e, "revocation notice failed");
        }
        // Let the notice be written before the transports close.
        let rooms = self.rooms.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Err(e) = rooms.disconnect(room).await {
                tracing::warn!(error = %e, "closing revoked sockets failed");
            }
        });
    }

    /// Tells this node's sockets the server is going away, then closes them.
    pub async fn close_local_sockets(&self) {
        crate::metrics::node()
            .events_out
            .count(nexus_protocol::events::FORCE_DISCONNECT);
        self.rooms.close_local("server_shutdown").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::Sent;
    use crate::presence::LocalPresence;
    use crate::store::{MessageRow, StoredMessage};

    /// Remembers what was emitted where.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(String, Option<Sid>, &'static str)>>);

    #[async_trait::async_trait]
    impl Rooms for Recorded {
        async fn emit(
            &self,
            room: String,
            skip: Option<Sid>,
            event: &'static str,
            _payload: &Payload,
        ) -> Result<(), BroadcastError> {
            self.0.lock().unwrap().push((room, skip, event));
            Ok(())
        }

        async fn close_local(&self, _reason: &str) {}

        async fn disconnect(&self, _room: String) -> Result<(), BroadcastError> {
            Ok(())
        }
    }

    fn sent(sender: UserId, receiver: UserId) -> Outcome {
        let row = MessageRow {
            pos: 1,
            id: crate::domain::MessageId::new().as_string(),
            conversation_id: crate::domain::ConversationId::new().as_string(),
            sender_id: sender.as_string(),
            receiver_id: Some(receiver.as_string()),
            content: "hello".into(),
            created_at: 0,
            edited_at: None,
            deleted_at: None,
            is_encrypted: 0,
            encryption_key_id: None,
            client_message_id: None,
            sender_seq: 1,
            receiver_seq: 1,
            sender_name: "Ada".into(),
            sender_email: "ada@example.org".into(),
            receiver_name: Some("Bob".into()),
            receiver_email: Some("bob@example.org".into()),
        };
        Outcome::Sent(Sent {
            message_id: row.id.clone(),
            created_at: 0,
            sender_seq: 1,
            duplicate: false,
            message: Some(Box::new(StoredMessage {
                row,
                reads: vec![],
                deliveries: vec![],
            })),
            audience: vec![(receiver.as_string(), 1)],
        })
    }

    struct World {
        rooms: Arc<Recorded>,
        presence: Arc<LocalPresence>,
        pushes: Arc<RecordedPushes>,
        delivery: Delivery,
    }

    fn world() -> World {
        let rooms = Arc::new(Recorded::default());
        let presence = Arc::new(LocalPresence::default());
        let pushes = Arc::new(RecordedPushes::default());
        let delivery = Delivery::new(rooms.clone(), presence.clone(), pushes.clone());
        World {
            rooms,
            presence,
            pushes,
            delivery,
        }
    }

    #[tokio::test]
    async fn a_new_message_reaches_both_rooms_and_skips_the_senders_own_socket() {
        let w = world();
        let (ada, bob) = (UserId::new(), UserId::new());
        let sid = Sid::new();
        w.delivery
            .deliver(&sent(ada, bob), Origin::Socket(sid))
            .await;
        let emitted = w.rooms.0.lock().unwrap().clone();
        assert_eq!(
            emitted,
            [
                (user_room(&bob.as_string()), None, "NEW_MESSAGE"),
                (user_room(&ada.as_string()), Some(sid), "NEW_MESSAGE"),
            ]
        );
    }

    #[tokio::test]
    async fn a_receiver_connected_nowhere_gets_a_push_and_an_online_one_does_not() {
        let w = world();
        let (ada, bob) = (UserId::new(), UserId::new());
        w.delivery.deliver(&sent(ada, bob), Origin::Http).await;
        let pushed = w.pushes.take();
        assert_eq!(pushed.len(), 1, "offline receiver: one push");
        assert_eq!(pushed[0].recipient, bob);
        assert_eq!(pushed[0].message.content, "hello");
        assert_eq!(pushed[0].message.sender.name, "Ada");

        w.presence.connect(bob, "s1").await;
        w.delivery.deliver(&sent(ada, bob), Origin::Http).await;
        assert!(w.pushes.take().is_empty(), "online receiver: no push");
    }
}
