//! A Socket.IO v4 client over one WebSocket (Engine.IO protocol 4), websocket transport only.
//!
//! The codecs are the maintained crates the server is built on: `engineioxide-core` frames
//! Engine.IO packets, `socketioxide-core` builds Socket.IO packets and
//! `socketioxide-parser-common` (the default "common" JSON parser) encodes and decodes them.
//! Those crates are written for the server side, so two packets a client receives have no
//! decoder there and are read here with serde: the Engine.IO `open` packet (`0{…}`, only
//! its ping interval) and the Socket.IO `CONNECT_ERROR` (`44/ws,{"message":…}`).
//!
//! [`SioConn::recv`] only waits for the next frame, so it can sit in a `select!` without
//! losing anything when another branch wins; [`SioConn::decode`] then turns the frame into an
//! [`Incoming`], remembering an Engine.IO ping so that the next [`SioConn::flush`] answers it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use engineioxide_core::{Packet as EioPacket, ProtocolVersion, Str};
use futures::{SinkExt, StreamExt};
use nexus_protocol::events::{self, NAMESPACE};
use serde::de::Deserialize;
use serde::Serialize;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_core::Value;
use socketioxide_parser_common::CommonParser;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// How long connecting (TCP, WebSocket handshake, namespace connect, `CONNECTION_SUCCESS`)
/// may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `host:port` of a server, from a base URL such as `http://127.0.0.1:3000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(base: &str) -> Result<Target> {
        let url = reqwest::Url::parse(base).with_context(|| format!("invalid URL {base:?}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow!("URL {base:?} has no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow!("URL {base:?} has no port"))?;
        Ok(Target { host, port })
    }

    /// Opens a TCP connection, from `source` (port chosen by the kernel) when given: binding
    /// several 127.0.0.x source addresses gives each its own range of ephemeral ports.
    pub async fn tcp(&self, source: Option<IpAddr>) -> Result<TcpStream> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .find(|a| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4()))
            .ok_or_else(|| anyhow!("{} has no address of the source's family", self.host))?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("cannot bind source address {ip}"))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// WebSocket settings: `read_buffer` bytes are allocated per connection up front (tungstenite
/// defaults to 128 KiB, too much for thousands of idle connections). Writes are buffered
/// until [`SioConn::flush`], so a burst of sends costs one system call.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(read_buffer)
}

/// A frame, decoded.
#[derive(Debug)]
pub enum Incoming {
    /// A Socket.IO event on `/ws`: `["NAME", payload]`; see [`event_name`] and [`payload`].
    Event(Value),
    /// The answer to an event sent with an ack id.
    Ack { id: i64, data: Value },
    /// The server closed the namespace, the Engine.IO session or the WebSocket.
    Closed(String),
    /// Nothing for the caller (a ping, which the next flush answers; another namespace…).
    Nothing,
}

/// One connected socket of one user.
pub struct SioConn {
    ws: WebSocketStream<TcpStream>,
    parse_config: ParseConfig,
    parser: ParserState,
    pub user_id: String,
    pub socket_id: String,
    /// The server's Engine.IO heartbeat interval (from the open packet).
    pub ping_interval: Duration,
    pub pings: u64,
    pending_pong: bool,
    unflushed: bool,
}

impl SioConn {
    /// Connects to `/ws` with `auth: {token}` and waits for `CONNECTION_SUCCESS`, so the
    /// server has joined the socket to its user's room before the caller sends anything.
    pub async fn connect(
        target: &Target,
        token: &str,
        source: Option<IpAddr>,
        config: WebSocketConfig,
    ) -> Result<SioConn> {
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            Self::connect_inner(target, token, source, config),
        )
        .await
        .map_err(|_| anyhow!("connecting to {}:{} timed out", target.host, target.port))?
    }

    async fn connect_inner(
        target: &Target,
        token: &str,
        source: Option<IpAddr>,
        config: WebSocketConfig,
    ) -> Result<SioConn> {
        let tcp = target.tcp(source).await?;
        Self::connect_over(tcp, target, token, config).await
    }

    /// [`SioConn::connect`] over a TCP connection the caller opened (and tuned).
    pub async fn connect_over(
        tcp: TcpStream,
        target: &Target,
        token: &str,
        config: WebSocketConfig,
    ) -> Result<SioConn> {
        let url = format!(
            "ws://{}:{}/socket.io/?EIO=4&transport=websocket",
            target.host, target.port
        );
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .context("WebSocket handshake on /socket.io/ failed")?;
        let mut conn = SioConn {
            ws,
            parse_config: ParseConfig::default(),
            parser: ParserState::default(),
            user_id: String::new(),
            socket_id: String::new(),
            ping_interval: Duration::ZERO,
            pings: 0,
            pending_pong: false,
            unflushed: false,
        };

        // The fields of the Engine.IO open packet and of `CONNECTION_SUCCESS` the bench
        // needs, read leniently: other servers of the contract (the Node peer) give session
        // ids of another length than engineioxide's `Sid`, and no `seq`.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Open {
            ping_interval: u64,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Connected {
            user_id: String,
            socket_id: String,
        }
        let open = conn.next_text().await?;
        let open: Open = open
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| anyhow!("expected an Engine.IO open packet, got {open:?}"))?;
        conn.ping_interval = Duration::from_millis(open.ping_interval);

        #[derive(Serialize)]
        struct Auth<'a> {
            token: &'a str,
        }
        let auth = CommonParser.encode_default(&Auth { token })?;
        conn.feed_packet(Packet::connect(NAMESPACE, Some(auth)))
            .await?;
        conn.flush().await?;

        loop {
            let text = conn.next_text().await?;
            let Some(sio) = text.strip_prefix('4') else {
                continue; // a ping (answered by next_text) or noise
            };
            if let Some(message) = connect_error(sio) {
                bail!("the server refused the connection to {NAMESPACE}: {message}");
            }
            let packet = conn.decode_sio(Str::from(sio.to_string()))?;
            match packet.inner {
                PacketData::Connect(_) if packet.ns == NAMESPACE => {}
                PacketData::Event(mut v, _)
                    if packet.ns == NAMESPACE
                        && event_name(&v).is_ok_and(|n| n == events::CONNECTION_SUCCESS) =>
                {
                    let ok: Connected = payload(&mut v)?;
                    conn.user_id = ok.user_id;
                    conn.socket_id = ok.socket_id;
                    return Ok(conn);
                }
                PacketData::Disconnect => bail!("the server closed {NAMESPACE} while connecting"),
                _ => {}
            }
        }
    }

    /// The next text frame during the handshake, answering pings on the way.
    async fn next_text(&mut self) -> Result<String> {
        loop {
            match self.ws.next().await {
                None => bail!("the server closed the WebSocket"),
                Some(Err(e)) => return Err(e).context("WebSocket error"),
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    self.pings += 1;
                    self.pending_pong = true;
                    self.flush().await?;
                }
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(c))) => bail!("the server closed the WebSocket: {c:?}"),
                Some(Ok(_)) => {}
            }
        }
    }

    fn decode_sio(&self, s: Str) -> Result<Packet> {
        CommonParser
            .decode_str(&self.parse_config, &self.parser, s)
            .map_err(|e| anyhow!("undecodable Socket.IO packet: {e}"))
    }

    /// Waits for the next frame. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn recv(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.ws.next().await
    }

    /// Turns a frame from [`SioConn::recv`] into an [`Incoming`].
    pub fn decode(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Incoming {
        let text = match frame {
            None => return Incoming::Closed("the WebSocket ended".into()),
            Some(Err(e)) => return Incoming::Closed(format!("WebSocket error: {e}")),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                return Incoming::Closed(format!("the server closed the WebSocket: {c:?}"))
            }
            Some(Ok(_)) => return Incoming::Nothing,
        };
        let eio = match EioPacket::parse(ProtocolVersion::V4, Str::from(text.as_str().to_owned())) {
            Ok(p) => p,
            Err(e) => return Incoming::Closed(format!("undecodable Engine.IO packet: {e}")),
        };
        let sio = match eio {
            EioPacket::Ping => {
                self.pings += 1;
                self.pending_pong = true;
                return Incoming::Nothing;
            }
            EioPacket::Close => return Incoming::Closed("Engine.IO close packet".into()),
            EioPacket::Message(s) => s,
            _ => return Incoming::Nothing,
        };
        if let Some(message) = connect_error(&sio) {
            return Incoming::Closed(format!("connect error: {message}"));
        }
        let packet = match self.decode_sio(sio) {
            Ok(p) => p,
            Err(e) => return Incoming::Closed(e.to_string()),
        };
        if packet.ns != NAMESPACE {
            return Incoming::Nothing;
        }
        match packet.inner {
            PacketData::Event(v, _) => Incoming::Event(v),
            PacketData::EventAck(data, id) => Incoming::Ack { id, data },
            PacketData::Disconnect => {
                Incoming::Closed(format!("the server disconnected {NAMESPACE}"))
            }
            _ => Incoming::Nothing,
        }
    }

    /// Queues an event on `/ws` (with a Socket.IO ack id when `ack` is given); written by the
    /// next [`SioConn::flush`].
    pub async fn feed_event<T: Serialize + ?Sized>(
        &mut self,
        event: &str,
        data: &T,
        ack: Option<i64>,
    ) -> Result<()> {
        let value = CommonParser.encode_value(data, Some(event))?;
        let mut packet = Packet::event(NAMESPACE, value);
        if let Some(id) = ack {
            packet.inner.set_ack_id(id);
        }
        self.feed_packet(packet).await
    }

    async fn feed_packet(&mut self, packet: Packet) -> Result<()> {
        let Value::Str(s, _) = CommonParser.encode(packet) else {
            bail!("the common parser produced binary data");
        };
        let frame = String::from(EioPacket::Message(s));
        self.ws.feed(Message::Text(frame.into())).await?;
        self.unflushed = true;
        Ok(())
    }

    /// Writes `text` as one WebSocket text frame, whatever it holds (fuzzing: broken
    /// Engine.IO / Socket.IO packets).
    pub async fn send_raw_text(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Writes `bytes` as one WebSocket binary frame (fuzzing).
    pub async fn send_raw_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Answers a pending ping and writes whatever was queued.
    pub async fn flush(&mut self) -> Result<()> {
        if self.pending_pong {
            self.pending_pong = false;
            self.ws
                .feed(Message::Text(String::from(EioPacket::Pong).into()))
                .await?;
            self.unflushed = true;
        }
        if self.unflushed {
            self.unflushed = false;
            self.ws.flush().await?;
        }
        Ok(())
    }

    /// Leaves politely: Socket.IO disconnect, then a WebSocket close.
    pub async fn close(mut self) {
        let _ = self.feed_packet(Packet::disconnect(NAMESPACE)).await;
        let _ = self.ws.close(None).await;
    }
}

/// The message of a Socket.IO `CONNECT_ERROR` packet (`4/ws,{"message":…}`), which the
/// server-side parser does not decode.
fn connect_error(sio: &str) -> Option<String> {
    let rest = sio.strip_prefix('4')?;
    let json = &rest[rest.find('{')?..];
    #[derive(serde::Deserialize)]
    struct ConnectError {
        message: String,
    }
    serde_json::from_str::<ConnectError>(json)
        .ok()
        .map(|e| e.message)
}

/// The name of an event (`["NAME", …]`).
pub fn event_name(v: &Value) -> Result<&str> {
    CommonParser
        .read_event(v)
        .map_err(|e| anyhow!("event without a name: {e}"))
}

/// The first payload of an event (`["NAME", payload]`); may borrow from `v`.
pub fn payload<'de, T: Deserialize<'de>>(v: &'de mut Value) -> Result<T> {
    CommonParser
        .decode_value(v, true)
        .map_err(|e| anyhow!("unexpected event payload: {e}"))
}

/// The first argument of an ack packet (`[payload]`); may borrow from `v`.
pub fn ack_payload<'de, T: Deserialize<'de>>(v: &'de mut Value) -> Result<T> {
    CommonParser
        .decode_value(v, false)
        .map_err(|e| anyhow!("unexpected ack payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_base_urls() {
        let t = Target::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 3000));
        assert_eq!(Target::parse("http://localhost/").unwrap().port, 80);
        assert_eq!(Target::parse("ws://[::1]:9/").unwrap().host, "::1");
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn connect_errors_are_read() {
        assert_eq!(
            connect_error(r#"4/ws,{"message":"Unauthorized"}"#).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(connect_error(r#"2/ws,["X",{}]"#), None);
    }

    #[test]
    fn events_encode_as_socket_io_expects() {
        let value = CommonParser
            .encode_value(&serde_json::json!({"a": 1}), Some("NEW_MESSAGE"))
            .unwrap();
        let mut packet = Packet::event(NAMESPACE, value);
        packet.inner.set_ack_id(7);
        let Value::Str(s, _) = CommonParser.encode(packet) else {
            panic!("binary")
        };
        assert_eq!(
            String::from(EioPacket::Message(s)),
            r#"42/ws,7["NEW_MESSAGE",{"a":1}]"#
        );
        let auth = CommonParser
            .encode_default(&serde_json::json!({"token": "t"}))
            .unwrap();
        let Value::Str(s, _) = CommonParser.encode(Packet::connect(NAMESPACE, Some(auth))) else {
            panic!("binary")
        };
        assert_eq!(s.as_str(), r#"0/ws,{"token":"t"}"#);
    }

    #[test]
    fn server_events_decode() {
        let packet = CommonParser
            .decode_str(
                &ParseConfig::default(),
                &ParserState::default(),
                Str::from(r#"2/ws,["MESSAGE_SENT",{"messageId":"3","seq":9}]"#.to_string()),
            )
            .unwrap();
        let PacketData::Event(mut v, None) = packet.inner else {
            panic!("not an event")
        };
        assert_eq!(event_name(&v).unwrap(), "MESSAGE_SENT");
        let p: serde_json::Value = payload(&mut v).unwrap();
        assert_eq!(p["messageId"], "3");
    }
}
