//! The Socket.IO gateway: namespace `/ws` on socketioxide (DESIGN.md §4).
//!
//! A socket authenticates at connect (`auth.token` or `Authorization: Bearer`), joins its
//! user's room and from then on sends events that [`handlers`] decode and pass to the
//! messaging domain; the outcomes are fanned out to user rooms here. Presence, typing and
//! idle time are gateway concerns and live in [`presence`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};
use nexus_protocol::events::{self, ForceDisconnect, NAMESPACE};
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;

use crate::app::AppState;
use crate::messaging::notify::Notification;

mod handlers;
pub mod presence;

use presence::{Presence, Typing};

/// Copies a Socket.IO handshake's URI and header values out of the connection's read
/// buffer. socketioxide keeps each socket's handshake request for as long as the socket
/// lives, and hyper parses both as slices of that buffer (8–16 KiB), so every idle socket
/// kept its whole read buffer alive; with the copies the buffer goes away when the
/// connection is upgraded to a WebSocket. Other requests pass untouched.
pub async fn detach_handshake(request: Request) -> Request {
    if !request.uri().path().starts_with("/socket.io") {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    for value in parts.headers.values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        // The router recorded the URI as it came, too.
        if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
            *original = uri.clone();
        }
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}

/// The room every socket of a user joins.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// The gateway's shared part: the Socket.IO handle plus presence and typing state.
#[derive(Clone)]
pub struct Gateway {
    io: SocketIo,
    idle_timeout: Duration,
    presence: Arc<Presence>,
    typing: Arc<Typing>,
}

impl Gateway {
    pub fn new(io: SocketIo, idle_timeout: Duration) -> Gateway {
        Gateway {
            io,
            idle_timeout,
            presence: Arc::new(Presence::default()),
            typing: Arc::new(Typing::default()),
        }
    }

    /// Emits each notification to its user's room, leaving out the `origin` socket where
    /// the notification says so (a broadcast from a socket skips that socket).
    pub async fn fanout(&self, notifications: Vec<Notification>, origin: Option<&SocketRef>) {
        let Some(ns) = self.io.of(NAMESPACE) else {
            return;
        };
        for n in notifications {
            let room = user_room(&n.user_id);
            let op = match origin {
                Some(socket) if !n.to_origin => socket.to(room),
                _ => ns.clone().to(room),
            };
            if let Err(e) = op.emit(n.event, &n.payload).await {
                tracing::warn!(error = %e, event = n.event, "fan-out failed");
            }
        }
    }

    /// Emits one event to every socket of `user`.
    pub async fn emit_to_user(&self, user: &str, event: &'static str, payload: &Value) {
        if let Some(ns) = self.io.of(NAMESPACE) {
            if let Err(e) = ns.to(user_room(user)).emit(event, payload).await {
                tracing::warn!(error = %e, event, "emit failed");
            }
        }
    }

    /// Tells every socket the server is going away, then closes them.
    pub async fn shutdown(&self) {
        if let Some(ns) = self.io.of(NAMESPACE) {
            let bye = ForceDisconnect {
                reason: "server_shutdown".into(),
            };
            let _ = ns.emit(events::FORCE_DISCONNECT, &bye).await;
        }
        // Let the goodbye reach the clients before the transports close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.io.close().await;
    }

    pub fn online_users(&self) -> Vec<String> {
        self.presence.online()
    }
}

/// Registers the `/ws` namespace.
pub fn register(io: &SocketIo, state: AppState) {
    let auth_state = state.clone();
    let auth = async move |s: SocketRef, TryData(auth): TryData<Value>| {
        authenticate(&auth_state, &s, auth.ok())
    };
    let connect = async move |s: SocketRef| handlers::welcome(state, s).await;
    io.ns(NAMESPACE, connect.with(auth));
}

/// Connect middleware: a missing, forged or expired token refuses the connection with
/// `connect_error` "Unauthorized"; an accepted socket is set up (`admit`) before the client
/// learns it is connected.
fn authenticate(state: &AppState, s: &SocketRef, auth: Option<Value>) -> Result<(), &'static str> {
    let from_auth = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(|t| t.trim_start_matches("Bearer ").to_string());
    let from_header = || {
        s.req_parts()
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    };
    let token = from_auth.or_else(from_header).ok_or("Unauthorized")?;
    let session = state
        .accounts
        .tokens()
        .verify_session(&token)
        .map_err(|_| "Unauthorized")?;
    handlers::admit(state, s, session);
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderValue, Uri};

    use super::*;

    /// A request whose URI and header value are slices of `buffer`, as hyper parses them.
    fn parsed_from(buffer: &Bytes) -> Request {
        let uri = Uri::from_maybe_shared(buffer.slice(0..30)).unwrap();
        let token = HeaderValue::from_maybe_shared(buffer.slice(31..)).unwrap();
        let mut request = Request::builder()
            .uri(uri.clone())
            .header("authorization", token)
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(OriginalUri(uri));
        request
    }

    fn inside(buffer: &Bytes, bytes: &[u8]) -> bool {
        buffer.as_ptr_range().contains(&bytes.as_ptr())
    }

    #[tokio::test]
    async fn a_handshake_keeps_nothing_of_the_connection_buffer() {
        let buffer = Bytes::from_static(b"/socket.io/?EIO=4&transport=ws Bearer abc");
        let request = detach_handshake(parsed_from(&buffer)).await;

        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=ws");
        assert_eq!(request.headers()["authorization"], "Bearer abc");
        let original = request.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original.0, "/socket.io/?EIO=4&transport=ws");
        assert!(!inside(&buffer, request.uri().path().as_bytes()));
        assert!(!inside(&buffer, original.0.path().as_bytes()));
        assert!(!inside(
            &buffer,
            request.headers()["authorization"].as_bytes()
        ));
    }

    #[tokio::test]
    async fn other_requests_pass_untouched() {
        let buffer = Bytes::from_static(b"/messages/conversation/xy?l=10 Bearer abc");
        let request = detach_handshake(parsed_from(&buffer)).await;
        assert!(inside(&buffer, request.uri().path().as_bytes()));
        assert!(inside(
            &buffer,
            request.headers()["authorization"].as_bytes()
        ));
    }
}
