//! One connection as the load driver sees it: send numbered messages to the partner, and
//! turn incoming frames into acknowledgements and deliveries.
//!
//! Two kinds: [`Link::Sio`] speaks the Nexus contract (`NEW_MESSAGE` with a `tempId`, the
//! `MESSAGE_SENT` ack, the partner's `NEW_MESSAGE`); [`Link::Raw`] speaks the bench's own
//! relay protocol to [`crate::echo`] (`"<body>"` out, `"A<seq>"` ack, `"M<body>"` delivery),
//! so the echo ceiling is measured by exactly the same driver.

use std::borrow::Cow;

use anyhow::{anyhow, Context, Result};
use futures::{SinkExt, StreamExt};
use nexus_protocol::events::{
    self, ErrorEvent, ForceDisconnect, IncomingMessage, MessageSent, NewMessage, RateLimitExceeded,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::content;
use crate::sio::{self, Incoming, SioConn, Target};

/// How a send is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Wait for the `MESSAGE_SENT` event (what the brief's clients do).
    #[default]
    Event,
    /// Send with a Socket.IO ack id and take the acknowledgement callback's answer
    /// (`MESSAGE_SENT` events are then ignored).
    Callback,
}

/// Which event shapes a server speaks. Both carry the same calls (`NEW_MESSAGE` with a
/// `tempId`, the `MESSAGE_SENT` acknowledgement, the receiver's `NEW_MESSAGE`); they differ
/// in the fields of the payloads, which the first ack and message of each socket are checked
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Contract {
    /// The Nexus contract (docs/protocol.md): the `nexus-protocol` types, `seq` included.
    #[default]
    Nexus,
    /// The original brief's shapes, which other implementations (such as the seed stack's
    /// Node peer) speak: `MESSAGE_SENT {messageId, dbMessageId, timestamp}` and
    /// `NEW_MESSAGE {id, content, senderId, receiverId, timestamp}`, no `seq`.
    Brief,
}

/// `MESSAGE_SENT` as the brief gives it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // decoded to check the shape
struct BriefSent {
    message_id: String,
    db_message_id: String,
    timestamp: String,
}

/// `NEW_MESSAGE` as the brief gives it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // decoded to check the shape
struct BriefMessage {
    id: String,
    content: String,
    sender_id: String,
    receiver_id: String,
    timestamp: String,
}

/// What a frame meant to the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Ev {
    /// The server acknowledged (stored) this link's message `seq`.
    Ack {
        seq: u64,
    },
    /// This link received the partner's message `seq`, started at `start_ns`.
    Deliver {
        seq: u64,
        start_ns: u64,
    },
    Nothing,
    /// The link cannot go on: closed, refused, rate limited, or the contract was broken.
    Fatal(String),
}

/// A Socket.IO link to the partner `partner_id`.
pub struct SioLink {
    pub conn: SioConn,
    partner_id: String,
    /// Sends go to this conversation (a group) instead of to the partner by id.
    conversation_id: Option<String>,
    /// Prefix of this link's `tempId`s (`"<tag>:<seq>"`): the sender's user id, so temp ids
    /// are unique across users, as a real client's (random) ones would be.
    tag: String,
    ack: AckMode,
    contract: Contract,
    /// The first ack and the first message are decoded with the full contract types, to
    /// catch a server whose payloads drift from the contract; later ones with lean types.
    ack_checked: bool,
    message_checked: bool,
}

/// A link to the raw relay of [`crate::echo`].
pub struct RawLink {
    ws: WebSocketStream<TcpStream>,
    unflushed: bool,
}

pub enum Link {
    Sio(Box<SioLink>),
    Raw(Box<RawLink>),
}

/// `MESSAGE_SENT`, or an ack callback's answer (which may be an `ERROR` body instead).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckLite<'a> {
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// The fields of an incoming `NEW_MESSAGE` the driver needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingLite<'a> {
    #[serde(borrow)]
    content: Cow<'a, str>,
    #[serde(borrow)]
    sender_id: Cow<'a, str>,
    #[serde(borrow, default)]
    temp_id: Option<Cow<'a, str>>,
}

impl SioLink {
    pub fn new(conn: SioConn, partner_id: String, ack: AckMode, contract: Contract) -> SioLink {
        let tag = conn.user_id.clone();
        SioLink {
            tag,
            conn,
            partner_id,
            conversation_id: None,
            ack,
            contract,
            ack_checked: false,
            message_checked: false,
        }
    }

    /// Sends by `conversationId` (the pair's group) from now on.
    pub fn in_conversation(mut self, conversation_id: String) -> SioLink {
        self.conversation_id = Some(conversation_id);
        self
    }

    fn decode(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Ev {
        match self.conn.decode(frame) {
            Incoming::Nothing => Ev::Nothing,
            Incoming::Closed(why) => Ev::Fatal(why),
            Incoming::Ack { mut data, .. } => match self.ack {
                AckMode::Callback => self.acked(&mut data, false),
                AckMode::Event => Ev::Nothing,
            },
            Incoming::Event(mut v) => {
                enum Kind {
                    Sent,
                    Message,
                    Error,
                    RateLimited,
                    ForceDisconnect,
                    Other,
                }
                let kind = match sio::event_name(&v) {
                    Ok(events::MESSAGE_SENT) => Kind::Sent,
                    Ok(events::NEW_MESSAGE) => Kind::Message,
                    Ok(events::ERROR) => Kind::Error,
                    Ok(events::RATE_LIMIT_EXCEEDED) => Kind::RateLimited,
                    Ok(events::FORCE_DISCONNECT) => Kind::ForceDisconnect,
                    Ok(_) => Kind::Other,
                    Err(e) => return Ev::Fatal(e.to_string()),
                };
                match kind {
                    Kind::Sent if self.ack == AckMode::Event => self.acked(&mut v, true),
                    Kind::Message => self.message(&mut v),
                    Kind::Error => match sio::payload::<ErrorEvent>(&mut v) {
                        Ok(e) => Ev::Fatal(format!(
                            "the server answered {} with ERROR {:?}: {}",
                            e.event, e.code, e.message
                        )),
                        Err(e) => Ev::Fatal(format!("ERROR event off contract: {e}")),
                    },
                    Kind::RateLimited => {
                        let limit = sio::payload::<RateLimitExceeded>(&mut v)
                            .map(|r| r.limit.to_string())
                            .unwrap_or_else(|_| "?".into());
                        Ev::Fatal(format!(
                            "RATE_LIMIT_EXCEEDED (limit {limit}/min per user): start the server \
                             with a higher RATE_LIMIT_MESSAGES_PER_MINUTE, e.g. 100000000"
                        ))
                    }
                    Kind::ForceDisconnect => {
                        let reason = sio::payload::<ForceDisconnect>(&mut v)
                            .map(|f| f.reason)
                            .unwrap_or_default();
                        Ev::Fatal(format!("FORCE_DISCONNECT from the server: {reason}"))
                    }
                    Kind::Sent | Kind::Other => Ev::Nothing,
                }
            }
        }
    }

    fn acked(&mut self, v: &mut socketioxide_core::Value, event: bool) -> Ev {
        if !self.ack_checked {
            self.ack_checked = true;
            let mut copy = v.clone();
            let full: Result<()> = match (self.contract, event) {
                (Contract::Nexus, true) => sio::payload::<MessageSent>(&mut copy).map(drop),
                (Contract::Nexus, false) => sio::ack_payload::<MessageSent>(&mut copy).map(drop),
                (Contract::Brief, true) => sio::payload::<BriefSent>(&mut copy).map(drop),
                (Contract::Brief, false) => sio::ack_payload::<BriefSent>(&mut copy).map(drop),
            };
            if let Err(e) = full {
                return Ev::Fatal(format!("MESSAGE_SENT does not match the contract: {e}"));
            }
        }
        let lite: Result<AckLite<'_>> = if event {
            sio::payload(v)
        } else {
            sio::ack_payload(v)
        };
        match lite {
            Ok(AckLite {
                message_id: Some(id),
                ..
            }) => match temp_seq(&id).filter(|(tag, _)| *tag == self.tag) {
                Some((_, seq)) => Ev::Ack { seq },
                None => Ev::Fatal(format!("MESSAGE_SENT for a tempId never sent: {id:?}")),
            },
            Ok(AckLite { code, message, .. }) => Ev::Fatal(format!(
                "send refused through the ack: {} {}",
                code.unwrap_or_default(),
                message.unwrap_or_default()
            )),
            Err(e) => Ev::Fatal(e.to_string()),
        }
    }

    fn message(&mut self, v: &mut socketioxide_core::Value) -> Ev {
        if !self.message_checked {
            self.message_checked = true;
            let mut copy = v.clone();
            let full = match self.contract {
                Contract::Nexus => sio::payload::<IncomingMessage>(&mut copy).map(drop),
                Contract::Brief => sio::payload::<BriefMessage>(&mut copy).map(drop),
            };
            if let Err(e) = full {
                return Ev::Fatal(format!("NEW_MESSAGE does not match the contract: {e}"));
            }
        }
        let m: IncomingLite<'_> = match sio::payload(v) {
            Ok(m) => m,
            Err(e) => return Ev::Fatal(e.to_string()),
        };
        if m.sender_id != self.partner_id {
            return Ev::Fatal(format!(
                "NEW_MESSAGE from {} on a socket whose only partner is {}",
                m.sender_id, self.partner_id
            ));
        }
        let Some((seq, start_ns)) = content::decode(&m.content) else {
            return Ev::Fatal(format!("NEW_MESSAGE with foreign content {:?}", m.content));
        };
        if let Some(temp) = &m.temp_id {
            if temp_seq(temp).map(|(_, s)| s) != Some(seq) {
                return Ev::Fatal(format!(
                    "NEW_MESSAGE with tempId {temp:?} for the content of message {seq}"
                ));
            }
        }
        Ev::Deliver { seq, start_ns }
    }

    async fn feed(&mut self, seq: u64, body: String) -> Result<()> {
        let msg = NewMessage {
            receiver_id: self
                .conversation_id
                .is_none()
                .then(|| self.partner_id.clone()),
            conversation_id: self.conversation_id.clone(),
            content: body,
            temp_id: Some(format!("{}:{seq}", self.tag)),
        };
        let ack = (self.ack == AckMode::Callback).then_some(seq as i64);
        self.conn.feed_event(events::NEW_MESSAGE, &msg, ack).await
    }
}

/// `"<tag>:<seq>"` → `(tag, seq)`.
fn temp_seq(temp_id: &str) -> Option<(&str, u64)> {
    let (tag, seq) = temp_id.rsplit_once(':')?;
    Some((tag, seq.parse().ok()?))
}

impl RawLink {
    /// Connects to the relay as user `me` whose partner is `peer`.
    pub async fn connect(target: &Target, me: usize, peer: usize) -> Result<RawLink> {
        let tcp = target.tcp(None).await?;
        let url = format!("ws://{}:{}/?me={me}&peer={peer}", target.host, target.port);
        let config = WebSocketConfig::default().read_buffer_size(64 * 1024);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .context("WebSocket handshake with the echo relay failed")?;
        Ok(RawLink {
            ws,
            unflushed: false,
        })
    }

    fn decode(frame: Option<Result<Message, tungstenite::Error>>) -> Ev {
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Ev::Fatal("the relay closed".into()),
            Some(Err(e)) => return Ev::Fatal(format!("WebSocket error: {e}")),
            Some(Ok(_)) => return Ev::Nothing,
        };
        let t = text.as_str();
        if let Some(seq) = t.strip_prefix('A').and_then(|s| s.parse().ok()) {
            Ev::Ack { seq }
        } else if let Some((seq, start_ns)) = t.strip_prefix('M').and_then(content::decode) {
            Ev::Deliver { seq, start_ns }
        } else {
            Ev::Fatal(format!("unexpected relay frame {t:?}"))
        }
    }
}

impl Link {
    /// Waits for the next frame (cancel-safe); [`Link::decode`] interprets it.
    pub async fn recv(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        match self {
            Link::Sio(l) => l.conn.recv().await,
            Link::Raw(l) => l.ws.next().await,
        }
    }

    pub fn decode(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Ev {
        match self {
            Link::Sio(l) => l.decode(frame),
            Link::Raw(_) => RawLink::decode(frame),
        }
    }

    /// Queues message `seq` (started at `start_ns`, body of `size` bytes) to the partner.
    pub async fn feed(&mut self, seq: u64, start_ns: u64, size: usize) -> Result<()> {
        let body = content::encode(seq, start_ns, size);
        match self {
            Link::Sio(l) => l.feed(seq, body).await,
            Link::Raw(l) => {
                l.unflushed = true;
                l.ws.feed(Message::Text(body.into()))
                    .await
                    .map_err(|e| anyhow!("relay write: {e}"))
            }
        }
    }

    /// Writes what was queued (and answers a pending Engine.IO ping).
    pub async fn flush(&mut self) -> Result<()> {
        match self {
            Link::Sio(l) => l.conn.flush().await,
            Link::Raw(l) => {
                if l.unflushed {
                    l.unflushed = false;
                    l.ws.flush().await?;
                }
                Ok(())
            }
        }
    }

    pub async fn close(self) {
        match self {
            Link::Sio(l) => l.conn.close().await,
            Link::Raw(mut l) => {
                let _ = l.ws.close(None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_ids_carry_tag_and_seq() {
        assert_eq!(temp_seq("0a1b2c:42"), Some(("0a1b2c", 42)));
        assert_eq!(temp_seq("42"), None);
        assert_eq!(temp_seq("x:y"), None);
    }

    #[test]
    fn raw_frames_decode() {
        let text = |s: &str| Some(Ok(Message::Text(s.to_string().into())));
        assert_eq!(RawLink::decode(text("A12")), Ev::Ack { seq: 12 });
        assert_eq!(
            RawLink::decode(text(&format!("M{}", content::encode(3, 99, 20)))),
            Ev::Deliver {
                seq: 3,
                start_ns: 99
            }
        );
        assert!(matches!(RawLink::decode(text("?")), Ev::Fatal(_)));
        assert!(matches!(RawLink::decode(None), Ev::Fatal(_)));
    }
}
