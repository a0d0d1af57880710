//! `GET /metrics`: what an operator watches, in the Prometheus text format
//! (`prometheus-client`). The parts of a node register their metrics in one [`Registry`]
//! while the application is assembled; [`Metrics`] is the frozen registry `/metrics`
//! renders. `docs/operations.md` ("Metrics") says what each one means and when to worry.
//!
//! [`NodeMetrics`] holds the metrics of the core path (sockets, events, sends, the writer,
//! the database, rate limits, HTTP), reached from anywhere through [`node`]: one set per
//! process, as a process serves one node (an embedding program or a test binary that runs
//! several applications in one process sees their sum). Other parts (push, the Redis link)
//! keep their own metrics and register them in the same registry; the helpers [`counter`]
//! and [`gauge`] make that one line each.

use std::sync::Arc;
use std::time::Instant;

use nexus_protocol::events;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The node's metrics, frozen once the application is assembled.
#[derive(Clone)]
pub struct Metrics(Arc<Registry>);

impl Metrics {
    pub fn new(registry: Registry) -> Metrics {
        Metrics(Arc::new(registry))
    }

    /// The exposition of every metric (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.0) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Registers a new counter under `name` (exposed as `name_total`) and returns it.
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

/// Registers a new gauge under `name` and returns it.
pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route as the router declares it (`/messages/{id}`), never the raw path, so the
    /// number of series stays bounded; `unmatched` for requests no route took.
    pub route: String,
    pub status: u16,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from 0.25 ms to about 4 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The client → server events of the protocol. Counting by these (and `other` for anything
/// else) keeps a client from inventing series.
const CLIENT_EVENTS: &[&str] = &[
    events::NEW_MESSAGE,
    events::MESSAGE_DELIVERED,
    events::MESSAGE_READ,
    events::EDIT_MESSAGE,
    events::DELETE_MESSAGE,
    events::TYPING_START,
    events::TYPING_STOP,
    events::GET_ONLINE_USERS,
    events::HEALTH_CHECK,
];

/// The server → client events.
const SERVER_EVENTS: &[&str] = &[
    events::CONNECTION_SUCCESS,
    events::MESSAGE_SENT,
    events::MESSAGE_DELIVERED_UPDATE,
    events::MESSAGE_READ_UPDATE,
    events::MESSAGE_EDITED,
    events::MESSAGE_DELETED,
    events::USER_TYPING,
    events::ONLINE_USERS,
    events::USER_PRESENCE_UPDATE,
    events::HEALTH_RESPONSE,
    events::ERROR,
    events::RATE_LIMIT_EXCEEDED,
    events::FORCE_DISCONNECT,
];

/// The limits whose refusals are counted (`nexus_rate_limited_total{kind}`), shown at 0
/// from the start so that an alert on their rate has a series to watch.
pub const LIMIT_KINDS: &[&str] = &[
    "send",
    "login_ip",
    "login_email",
    "register_ip",
    "password_hashing",
    "socket_queue",
    "changes",
    "search",
    "online_users",
    "typing",
];

/// Events counted by name: one counter per known name, found without a lock.
#[derive(Clone)]
pub struct EventCounters {
    known: Arc<[(&'static str, Counter)]>,
    other: Counter,
}

impl EventCounters {
    fn new(family: &Family<EventLabel, Counter>, names: &[&'static str]) -> EventCounters {
        let known = names
            .iter()
            .map(|&event| (event, family.get_or_create_owned(&EventLabel { event })))
            .collect::<Vec<_>>()
            .into();
        EventCounters {
            known,
            other: family.get_or_create_owned(&EventLabel { event: "other" }),
        }
    }

    pub fn count(&self, event: &str) {
        match self.known.iter().find(|(name, _)| *name == event) {
            Some((_, c)) => c.inc(),
            None => self.other.inc(),
        };
    }
}

/// The core path's metrics of this process (see the module's documentation).
pub fn node() -> &'static NodeMetrics {
    static NODE: std::sync::OnceLock<NodeMetrics> = std::sync::OnceLock::new();
    NODE.get_or_init(NodeMetrics::new)
}

/// The metrics of a node's core path. Cloning shares them.
#[derive(Clone)]
pub struct NodeMetrics {
    /// Sockets connected to this node now.
    pub sockets: Gauge,
    /// Connections refused at connect, by reason.
    pub connections_refused: Family<ReasonLabel, Counter>,
    events_in_family: Family<EventLabel, Counter>,
    events_out_family: Family<EventLabel, Counter>,
    /// Client → server events by name.
    pub events_in: EventCounters,
    /// Server → client emits by name (a room emit counts once, whatever its sockets).
    pub events_out: EventCounters,
    /// Messages stored (retries excluded): their rate is sends per second.
    pub messages: Counter,
    /// From receiving a send to acknowledging it (decode → commit → ack), by transport.
    pub send_seconds: Histograms<TransportLabel>,
    /// Commands per group commit.
    pub writer_batch: Histogram,
    /// One group commit: from taking the batch to the commit returning.
    pub writer_commit_seconds: Histogram,
    /// Commands waiting in the writer's queues when it takes a batch.
    pub writer_queue: Gauge,
    /// Database round trips, by operation.
    pub database_seconds: Histograms<OpLabel>,
    /// Requests and events refused by a limit, by kind.
    pub rate_limited: Family<KindLabel, Counter>,
    /// Password hashes waiting for a hashing slot (registrations and logins).
    pub hash_waiting: Gauge,
    /// HTTP requests answered, by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request durations, by method, route and status.
    pub http_seconds: Histograms<HttpLabels>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics::new()
    }
}

impl NodeMetrics {
    /// Metrics not yet registered anywhere (tests, or parts started without a registry).
    pub fn new() -> NodeMetrics {
        let events_in_family = Family::default();
        let events_out_family = Family::default();
        let rate_limited: Family<KindLabel, Counter> = Family::default();
        for kind in LIMIT_KINDS {
            rate_limited.get_or_create_owned(&KindLabel { kind });
        }
        let connections_refused: Family<ReasonLabel, Counter> = Family::default();
        for reason in ["unauthorized", "too_many_sockets", "node_full"] {
            connections_refused.get_or_create_owned(&ReasonLabel { reason });
        }
        NodeMetrics {
            sockets: Gauge::default(),
            connections_refused,
            events_in: EventCounters::new(&events_in_family, CLIENT_EVENTS),
            events_out: EventCounters::new(&events_out_family, SERVER_EVENTS),
            events_in_family,
            events_out_family,
            messages: Counter::default(),
            send_seconds: Family::new_with_constructor(latency),
            writer_batch: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            writer_commit_seconds: latency(),
            writer_queue: Gauge::default(),
            database_seconds: Family::new_with_constructor(latency),
            rate_limited,
            hash_waiting: Gauge::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency),
        }
    }

    /// Registers every metric in `registry` (see docs/operations.md for their meaning).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "nexus_sockets_connected",
            "Socket.IO sockets connected to this node",
            self.sockets.clone(),
        );
        r.register(
            "nexus_connections_refused",
            "Socket.IO connections refused at connect, by reason",
            self.connections_refused.clone(),
        );
        r.register(
            "nexus_socket_events_received",
            "Client to server Socket.IO events, by event name",
            self.events_in_family.clone(),
        );
        r.register(
            "nexus_socket_events_sent",
            "Server to client Socket.IO emits, by event name (a room emit counts once)",
            self.events_out_family.clone(),
        );
        r.register(
            "nexus_messages_stored",
            "Messages stored and acknowledged (retries excluded)",
            self.messages.clone(),
        );
        r.register(
            "nexus_send_duration_seconds",
            "From receiving a send to acknowledging it after its commit, by transport",
            self.send_seconds.clone(),
        );
        r.register(
            "nexus_writer_batch_size",
            "Commands applied in one group commit",
            self.writer_batch.clone(),
        );
        r.register(
            "nexus_writer_commit_duration_seconds",
            "One group commit, from taking the batch to the commit returning",
            self.writer_commit_seconds.clone(),
        );
        r.register(
            "nexus_writer_queue_depth",
            "Commands waiting in the writer's queue when it took its last batch",
            self.writer_queue.clone(),
        );
        r.register(
            "nexus_database_duration_seconds",
            "Database operations, by operation",
            self.database_seconds.clone(),
        );
        r.register(
            "nexus_rate_limited",
            "Requests and events refused by a limit, by kind",
            self.rate_limited.clone(),
        );
        r.register(
            "nexus_password_hashes_waiting",
            "Password hashes (registrations, logins) waiting for a hashing slot",
            self.hash_waiting.clone(),
        );
        r.register(
            "nexus_http_requests",
            "HTTP requests answered, by method, route and status",
            self.http_requests.clone(),
        );
        r.register(
            "nexus_http_request_duration_seconds",
            "HTTP request durations, by method, route and status",
            self.http_seconds.clone(),
        );
    }

    /// Counts a refusal by the limit `kind` (`send`, `login`, …).
    pub fn limited(&self, kind: &'static str) {
        self.rate_limited.get_or_create(&KindLabel { kind }).inc();
    }

    /// Records how long a database operation took.
    pub fn database(&self, op: &'static str, started: Instant) {
        self.database_seconds
            .get_or_create(&OpLabel { op })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records a send's time from receipt to acknowledgement.
    pub fn sent(&self, transport: &'static str, started: Instant) {
        self.send_seconds
            .get_or_create(&TransportLabel { transport })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts a connection refused at connect.
    pub fn refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}

/// Counts `gauge` up while alive.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_counters() {
        let mut registry = Registry::default();
        let dropped = counter(&mut registry, "nexus_example", "An example");
        dropped.inc();
        let text = Metrics::new(registry).render();
        assert!(text.contains("nexus_example_total 1"), "{text}");
    }

    #[test]
    fn events_are_counted_by_known_name_and_the_rest_as_other() {
        let mut registry = Registry::default();
        let node = NodeMetrics::new();
        node.register(&mut registry);
        node.events_in.count(events::NEW_MESSAGE);
        node.events_in.count(events::NEW_MESSAGE);
        node.events_in.count("made-up-by-a-client");
        node.limited("send");
        let text = Metrics::new(registry).render();
        assert!(
            text.contains(r#"nexus_socket_events_received_total{event="NEW_MESSAGE"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nexus_socket_events_received_total{event="other"} 1"#),
            "{text}"
        );
        assert!(!text.contains("made-up"), "{text}");
        assert!(
            text.contains(r#"nexus_rate_limited_total{kind="send"} 1"#),
            "{text}"
        );
    }
}
