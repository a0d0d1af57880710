//! The Socket.IO gateway: namespace `/ws` on socketioxide (events: docs/protocol.md).
//!
//! A socket authenticates at connect (`auth.token` or `Authorization: Bearer`), joins its
//! user's room and from then on sends events that [`handlers`] decode and pass to the
//! messaging domain; what the domain returns goes out through `crate::delivery`. The
//! gateway itself keeps only what belongs to a connection: idle time and typing expiry.
//!
//! The gateway works over any socketioxide adapter: the local one on a single node, the
//! Redis one in a cluster.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Uri};
use nexus_protocol::events::NAMESPACE;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_core::adapter::{CoreAdapter, DefinedAdapter};

use crate::domain::UserId;
use crate::presence::AtCapacity;
use crate::state::AppState;

#[cfg(test)]
mod fuzz;
mod handlers;
mod typing;

use typing::Typing;

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

/// What every socket of the gateway shares: the application's services and the gateway's
/// own settings and state. One `Arc` of it per socket task.
struct Gateway {
    state: AppState,
    idle_timeout: Duration,
    typing: Typing,
    sockets: Sockets,
}

/// How many sockets a gateway admits, and how many it holds.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A socket silent this long is told `FORCE_DISCONNECT {reason: "idle_timeout"}`.
    pub idle_timeout: Duration,
    /// Sockets one user may have connected (`MAX_SOCKETS_PER_USER`): on every node
    /// together in a cluster (counted in Redis by the presence), on this node alone on a
    /// single node and while Redis cannot be reached.
    pub max_sockets_per_user: u32,
    /// Sockets this node holds at most (`MAX_CONNECTIONS`).
    pub max_connections: Option<u32>,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
            max_sockets_per_user: config.max_sockets_per_user,
            max_connections: config.max_connections,
        }
    }
}

/// The sockets this node holds, per user and in all, counted when admitted and when gone:
/// the node's `MAX_CONNECTIONS`, and `MAX_SOCKETS_PER_USER` on this node (the whole cap on a
/// single node; in a cluster the presence checks it over every node, and this count is what
/// still holds while Redis cannot be reached). (A std `Mutex`: each critical section is a
/// map operation.)
struct Sockets {
    /// Sockets per user, and in all.
    held: std::sync::Mutex<(std::collections::HashMap<UserId, u32>, u32)>,
    max_per_user: u32,
    max_total: Option<u32>,
}

/// Why a connection was refused, as its `connect_error` says.
const TOO_MANY_SOCKETS: &str = "too many connections for this user";
const NODE_FULL: &str = "server is at its connection limit, retry later";

impl Sockets {
    /// Counts one more socket of `user`, or says why not.
    fn admit(&self, user: UserId) -> Result<(), &'static str> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *held;
        if self.max_total.is_some_and(|max| *total >= max) {
            crate::metrics::node().refused("node_full");
            return Err(NODE_FULL);
        }
        let n = map.entry(user).or_insert(0);
        if *n >= self.max_per_user {
            crate::metrics::node().refused("too_many_sockets");
            return Err(TOO_MANY_SOCKETS);
        }
        *n += 1;
        *total += 1;
        Ok(())
    }

    /// Forgets one socket of `user`.
    fn release(&self, user: UserId) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *held;
        if let Some(n) = map.get_mut(&user) {
            *n -= 1;
            *total -= 1;
            if *n == 0 {
                map.remove(&user);
            }
        }
    }
}

/// Registers the `/ws` namespace on `io`. A socket silent for `idle_timeout` is told
/// `FORCE_DISCONNECT {reason: "idle_timeout"}` and closed. Returns what the adapter's
/// initialisation gives (nothing for the local adapter; a future to await for Redis).
pub fn register<A: Adapter + DefinedAdapter>(
    io: &SocketIo<A>,
    state: AppState,
    idle_timeout: Duration,
) -> <A as CoreAdapter<socketioxide::adapter::Emitter>>::InitRes {
    let settings = Settings {
        idle_timeout,
        max_sockets_per_user: 10,
        max_connections: None,
    };
    register_with(io, state, settings)
}

/// [`register`] with every setting of the gateway.
pub fn register_with<A: Adapter + DefinedAdapter>(
    io: &SocketIo<A>,
    state: AppState,
    settings: Settings,
) -> <A as CoreAdapter<socketioxide::adapter::Emitter>>::InitRes {
    let gateway = Arc::new(Gateway {
        state,
        idle_timeout: settings.idle_timeout,
        typing: Typing::default(),
        sockets: Sockets {
            held: Default::default(),
            max_per_user: settings.max_sockets_per_user,
            max_total: settings.max_connections,
        },
    });
    let auth_gateway = gateway.clone();
    let auth = async move |s: SocketRef<A>, TryData(auth): TryData<Value>| {
        authenticate(&auth_gateway, &s, auth.ok()).await
    };
    let connect = async move |s: SocketRef<A>| handlers::welcome(gateway, s).await;
    io.ns(NAMESPACE, connect.with(auth))
}

/// Connect middleware: a missing, forged or expired token refuses the connection with
/// `connect_error` "Unauthorized"; an accepted socket is set up (`admit`) before the client
/// learns it is connected.
async fn authenticate<A: Adapter>(
    gateway: &Arc<Gateway>,
    s: &SocketRef<A>,
    auth: Option<Value>,
) -> Result<(), &'static str> {
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
    let unauthorized = |_| {
        crate::metrics::node().refused("unauthorized");
        "Unauthorized"
    };
    let token = from_auth
        .or_else(from_header)
        .ok_or(())
        .map_err(unauthorized)?;
    let session = gateway
        .state
        .accounts
        .authenticate(&token)
        .await
        .map_err(|_| unauthorized(()))?;
    // Counted here, given back by what `admit` sets up (the disconnect handler, or its drop
    // for a handshake abandoned before the socket entered the namespace): first on this
    // node (its connection limit, and the user's cap here), then wherever the presence sees
    // the user's sockets (every node of a cluster).
    gateway.sockets.admit(session.user)?;
    let first_socket = match gateway
        .state
        .presence
        .admit(
            session.user,
            &s.id.to_string(),
            gateway.sockets.max_per_user,
        )
        .await
    {
        Ok(first_socket) => first_socket,
        Err(AtCapacity) => {
            gateway.sockets.release(session.user);
            crate::metrics::node().refused("too_many_sockets");
            return Err(TOO_MANY_SOCKETS);
        }
    };
    handlers::admit(gateway, s, session, first_socket).await;
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
