//! The ceiling: a raw WebSocket relay (tokio-tungstenite, no Socket.IO, no database) that
//! does per message what Nexus does on the wire — one frame in, an acknowledgement back to
//! the sender and the message forwarded to the partner's socket — and nothing else.
//!
//! Protocol: a client connects to `ws://HOST:PORT/?me=<id>&peer=<id>` and sends text
//! frames `"<seq> <start_ns> …"`; the relay answers `"A<seq>"` to the sender and writes
//! `"M<frame>"` to `peer`'s socket. [`crate::link::RawLink`] is the client side, driven by
//! the same pair driver as the Nexus scenarios (`nexus-bench ws-echo`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Each connected client's outbox, by id.
type Outboxes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// Serves the relay on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> Result<()> {
    let outboxes: Outboxes = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await.context("accept failed")?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp, outboxes.clone()));
    }
}

/// Binds `addr` and serves the relay (the `ws-echo-server` subcommand).
pub async fn serve_on(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("ws-echo relay listening on ws://{}", listener.local_addr()?);
    serve(listener).await
}

fn query_ids(req: &Request) -> Option<(u64, u64)> {
    let (mut me, mut peer) = (None, None);
    for pair in req.uri().query()?.split('&') {
        match pair.split_once('=') {
            Some(("me", v)) => me = v.parse().ok(),
            Some(("peer", v)) => peer = v.parse().ok(),
            _ => {}
        }
    }
    Some((me?, peer?))
}

async fn connection(tcp: TcpStream, outboxes: Outboxes) {
    let mut ids = None;
    // The callback's error type is tungstenite's own (a full HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, res: Response| {
        ids = query_ids(req);
        Ok(res)
    };
    let config = WebSocketConfig::default().read_buffer_size(64 * 1024);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let Some((me, peer)) = ids else { return };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    if let Ok(mut o) = outboxes.lock() {
        o.insert(me, tx.clone());
    }

    // Writer: everything queued for this socket, flushed once per burst.
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    let mut partner: Option<mpsc::UnboundedSender<Message>> = None;
    while let Some(Ok(frame)) = stream.next().await {
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let seq = text.as_str().split(' ').next().unwrap_or_default();
        let _ = tx.send(Message::Text(format!("A{seq}").into()));
        if partner.is_none() {
            partner = outboxes.lock().ok().and_then(|o| o.get(&peer).cloned());
        }
        // A partner not connected (yet) misses the message; the client counts it as lost.
        if let Some(p) = &partner {
            let _ = p.send(Message::Text(format!("M{}", text.as_str()).into()));
        }
    }
    if let Ok(mut o) = outboxes.lock() {
        o.remove(&me);
    }
    // The partner may still hold a sender to this outbox: stop the writer explicitly.
    writer.abort();
}
