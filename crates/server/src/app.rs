//! Assembly: configuration in, a listening application out. `main` and the tests start Nexus
//! the same way: [`Application::build`] binds the port (0 in tests) and
//! [`Application::run_until`] serves until the given shutdown future resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method};
use axum::serve::ListenerExt;
use prometheus_client::registry::Registry;
use rand::RngCore;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::accounts::{AccountService, Tokens};
use crate::cluster::{self, link::PubSub, Cluster};
use crate::config::Config;
use crate::delivery::{Delivery, NoPush, PushQueue};
use crate::gateway;
use crate::health::Health;
use crate::messaging::writer::Writer;
use crate::messaging::MessagingService;
use crate::metrics::Metrics;
use crate::presence::{LocalPresence, Presence};
use crate::push::{Push, PushSettings};
use crate::ratelimit::{spawn_budget_shrinker, spawn_shrinker, Budgets, KeyedLimiter};
use crate::state::{AppState, Services};
use crate::store::Store;

/// What a test (or an embedding program) may put in place of the defaults.
#[derive(Default)]
pub struct Overrides {
    /// Where pushes for users connected nowhere go (default: push off).
    pub push: Option<Arc<dyn PushQueue>>,
}

pub struct Application {
    listener: TcpListener,
    /// How long a connection may go without the client acknowledging what was written.
    slow_client_timeout: Duration,
    router: axum::Router,
    state: AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the writer threads: {0}")]
    Writer(std::io::Error),
    #[error("push: {0}")]
    Push(String),
    #[error("redis: {0}")]
    Redis(String),
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Application::build_with(config, Overrides::default()).await
    }

    pub async fn build_with(
        config: Config,
        overrides: Overrides,
    ) -> Result<Application, StartError> {
        let push_settings = PushSettings::from_config(&config).map_err(StartError::Push)?;
        let database_timeout = Duration::from_secs(config.database_timeout_seconds);
        let store = Store::connect_within(
            &config.database_url,
            config.database_max_connections,
            database_timeout,
        )
        .await?;
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => {
                store
                    .setting_or_insert("jwt_secret", || {
                        let mut bytes = [0u8; 48];
                        rand::rngs::OsRng.fill_bytes(&mut bytes);
                        bytes.iter().map(|b| format!("{b:02x}")).collect()
                    })
                    .await?
            }
        };
        let tokens = Tokens::new(secret.as_bytes(), config.jwt_expires_in_seconds);
        let writer = Writer::start(store.clone(), store.writer_workers(), database_timeout)
            .map_err(StartError::Writer)?;
        let mut registry = Registry::default();
        crate::metrics::node().register(&mut registry);
        let push =
            Push::start(store.clone(), push_settings, &mut registry).map_err(StartError::Push)?;
        let queue: Arc<dyn PushQueue> = match overrides.push {
            Some(queue) => queue,
            None if push.is_on() => Arc::new(push.clone()),
            None => Arc::new(NoPush),
        };
        let budgets = Arc::new(Budgets::new(config.rate_limit_changes_per_minute));
        spawn_budget_shrinker(&budgets);

        let Some(redis_url) = &config.redis_url else {
            let send_limiter = Arc::new(KeyedLimiter::per_minute(
                config.rate_limit_messages_per_minute,
            ));
            let login_limiter = Arc::new(KeyedLimiter::per_minute(10));
            spawn_shrinker(send_limiter.clone(), login_limiter.clone());
            let (io_layer, io) = socket_io().build_layer();
            let presence: Arc<dyn Presence> = Arc::new(LocalPresence::default());
            let state = AppState::new(Services {
                health: Health::new(store.clone(), None),
                delivery: Delivery::new(Arc::new(io.clone()), presence.clone(), queue),
                push,
                accounts: AccountService::new(store.clone(), tokens, login_limiter)
                    .with_budgets(budgets.clone())
                    .with_per_ip(
                        config.rate_limit_auth_per_ip_per_minute,
                        config.trust_x_forwarded_for,
                    ),
                messaging: MessagingService::new(store.clone(), writer, send_limiter)
                    .with_budgets(budgets)
                    .with_group_max_members(config.group_max_members as usize),
                presence,
                metrics: Metrics::new(registry),
                store,
            });
            gateway::register_with(&io, state.clone(), gateway::Settings::from_config(&config));
            return Application::serve_with(&config, state, io_layer).await;
        };

        // Cluster mode: the Redis adapter, presence and limits (see `cluster`).
        let cluster = Cluster::open(
            redis_url,
            &config.redis_key_prefix,
            config.rate_limit_messages_per_minute,
        )
        .map_err(|e| StartError::Redis(e.to_string()))?;
        cluster.register_metrics(&mut registry);
        cluster.spawn_shrinker();
        let adapter = RedisAdapterCtr::new_with_driver(
            cluster.driver(),
            RedisAdapterConfig::default()
                .with_prefix(cluster.channel_prefix.clone())
                .with_stream_buffer(ADAPTER_BUFFER),
        );
        let (io_layer, io) = socket_io()
            .with_adapter::<ClusterAdapter>(adapter)
            .build_layer();
        let presence: Arc<dyn Presence> = cluster.presence.clone();
        let state = AppState::new(Services {
            health: Health::new(store.clone(), Some(Arc::new(cluster.link.clone()))),
            delivery: Delivery::new(Arc::new(io.clone()), presence.clone(), queue),
            push,
            accounts: AccountService::new(store.clone(), tokens, cluster.login_limiter.clone())
                .with_budgets(budgets.clone())
                .with_per_ip(
                    config.rate_limit_auth_per_ip_per_minute,
                    config.trust_x_forwarded_for,
                ),
            messaging: MessagingService::new(store.clone(), writer, cluster.send_limiter.clone())
                .with_budgets(budgets)
                .with_group_max_members(config.group_max_members as usize),
            presence,
            metrics: Metrics::new(registry),
            store,
        });
        let settings = gateway::Settings::from_config(&config);
        if let Err(e) = gateway::register_with(&io, state.clone(), settings).await {
            return Err(StartError::Redis(e.to_string()));
        }
        cluster::spawn_heartbeats(state.clone(), cluster.link.came_up());
        cluster::spawn_resync_hints(&io, cluster.link.resyncs());
        Application::serve_with(&config, state, io_layer).await
    }

    /// The HTTP side around a Socket.IO layer of either adapter, bound to its port.
    async fn serve_with<A: socketioxide::adapter::Adapter>(
        config: &Config,
        state: AppState,
        io_layer: socketioxide::layer::SocketIoLayer<A>,
    ) -> Result<Application, StartError> {
        let router = crate::http::router()
            .with_state(state.clone())
            .layer(io_layer)
            .layer(axum::middleware::map_request(gateway::detach_handshake))
            .layer(cors(config.frontend_url.as_deref()))
            .layer(TraceLayer::new_for_http());

        let addr = std::net::SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Application {
            listener,
            slow_client_timeout: Duration::from_secs(config.slow_client_timeout_seconds),
            router,
            state,
        })
    }

    /// The port actually bound (useful when the configuration asked for 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then tells every socket (`FORCE_DISCONNECT
    /// {reason: "server_shutdown"}`), stops accepting and lets requests in flight finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let delivery = self.state.delivery.clone();
        let presence = self.state.presence.clone();
        let store = self.state.store.clone();
        let messaging = self.state.messaging.clone();
        let push = self.state.push.clone();
        tracing::info!(
            addr = %self.listener.local_addr()?,
            backend = store.backend().name(),
            "nexus listening"
        );
        // Small frames (acks, events) go out at once instead of waiting for Nagle.
        let slow_client_timeout = self.slow_client_timeout;
        let listener = self.listener.tap_io(move |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            limit_unacknowledged(tcp, slow_client_timeout);
        });
        let router = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let lost = store.clone();
        let (fatal_tx, mut fatal_rx) = tokio::sync::oneshot::channel::<()>();
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => tracing::info!("shutting down"),
                    _ = lost.durability_lost() => {
                        tracing::error!("stopping: the database can no longer make writes durable");
                        let _ = fatal_tx.send(());
                    }
                }
                delivery.close_local_sockets().await;
                presence.leave().await;
            })
            .await?;
        push.shutdown().await;
        messaging.close().await;
        store.close().await;
        if fatal_rx.try_recv().is_ok() {
            return Err(std::io::Error::other(
                "an fsync of the database failed: writes may not be durable (see the log)",
            ));
        }
        Ok(())
    }
}

/// A client that stops reading its socket (its receive window stays shut) would keep the
/// connection, and everything queued for it, forever: the kernel keeps probing a zero
/// window as long as the peer answers, and the WebSocket writer waits on it. With
/// `TCP_USER_TIMEOUT` the kernel gives up once written data has gone unacknowledged for
/// `timeout`: reads and writes fail, the socket is closed and its queue freed (see "Slow
/// readers" in docs/operations.md).
fn limit_unacknowledged(tcp: &tokio::net::TcpStream, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (tcp, timeout);
}

/// Incoming cross-node messages a node buffers before its adapter takes them (the adapter's
/// default is 1,024); beyond, they are dropped and counted, and clients repair the gap
/// (see `cluster::link`).
const ADAPTER_BUFFER: usize = 16_384;

/// The Socket.IO adapter of a cluster node: socketioxide-redis over our driver.
type ClusterAdapter = CustomRedisAdapter<socketioxide::adapter::Emitter, PubSub>;

/// The Socket.IO settings of every node, whatever its adapter.
fn socket_io() -> socketioxide::SocketIoBuilder {
    SocketIo::builder()
        .max_payload(crate::http::MAX_SOCKET_PAYLOAD_BYTES as u64)
        // Packets a socket may have waiting to be written. Socket.IO drops what does not
        // fit, so this must cover a client's whole window of in-flight sends (each send
        // is answered by an event and an ack). The queue grows on demand.
        .max_buffer_size(8192)
        .ws_read_buffer_size(1024)
        .ws_max_message_size(crate::http::MAX_SOCKET_PAYLOAD_BYTES)
        .ws_max_frame_size(crate::http::MAX_SOCKET_PAYLOAD_BYTES)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
}

fn cors(frontend_url: Option<&str>) -> CorsLayer {
    let origin = match frontend_url.and_then(|u| u.parse::<HeaderValue>().ok()) {
        Some(origin) => AllowOrigin::list([origin]),
        None => AllowOrigin::list(std::iter::empty::<HeaderValue>()),
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(true)
}
