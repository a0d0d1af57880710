//! The node's link to Redis: two auto-reconnecting connections (redis-rs `ConnectionManager`),
//! one for pub/sub and one for commands (presence, rate limits), a watchdog that knows
//! whether Redis answers, and the Socket.IO adapter's [`Driver`] over them.
//!
//! `socketioxide-redis` ships two drivers and neither survives a Redis restart: its `redis`
//! driver holds a plain `MultiplexedConnection`, which never reconnects, and its `fred`
//! driver reconnects but does not subscribe again, so a node would silently stop hearing
//! the other nodes. This driver implements the crate's `Driver` trait (its extension point)
//! instead:
//!
//! - the pub/sub connection is a `ConnectionManager` with automatic resubscription: after a
//!   reconnect it replays the subscriptions it had confirmed;
//! - the driver also keeps every channel the adapter asked for, and on each return of Redis
//!   the watchdog subscribes to all of them again (a subscription asked for while Redis was
//!   down was never confirmed, so the manager alone would not know it);
//! - while Redis is down, `publish` returns at once without sending (counted): the adapter
//!   sends to local sockets only after its publish succeeded, so a failing publish would
//!   stop local delivery too. What the other nodes missed reaches their clients through the
//!   `seq` gap and `/sync`;
//! - an incoming message that does not fit the adapter's buffer is dropped (as the stock
//!   drivers do) but counted and logged, and [`Link::resyncs`] tells the gateway, which asks
//!   its clients to sync.
//!
//! Redis must speak RESP3 (Redis 7 or later): push messages arrive on the same multiplexed
//! connection as command replies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{mpsc, watch};

/// How often the watchdog checks that Redis answers (and, once it does again, restores the
/// subscriptions).
pub const WATCHDOG_EVERY: Duration = Duration::from_millis(500);

/// A command that takes longer than this counts as Redis being unreachable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);

/// Counters an operator watches (exported on `/metrics`, see [`LinkStats::register`]).
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Incoming pub/sub messages dropped because the adapter's buffer was full.
    pub dropped_incoming: Counter,
    /// Broadcasts not published because Redis was down (other nodes' clients sync).
    pub skipped_publishes: Counter,
    /// Times the link came up (the first connection, then each return of Redis).
    pub reconnects: Counter,
    /// Commands (presence, limits) that failed or timed out.
    pub command_failures: Counter,
    /// 1 while Redis answers.
    pub up: Gauge,
}

impl LinkStats {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "nexus_redis_dropped_messages",
            "Cross-node pub/sub messages dropped because this node's adapter buffer was full",
            self.dropped_incoming.clone(),
        );
        registry.register(
            "nexus_redis_skipped_publishes",
            "Broadcasts not sent to other nodes because Redis was unreachable",
            self.skipped_publishes.clone(),
        );
        registry.register(
            "nexus_redis_connects",
            "Times this node's Redis link came up (first connect and every recovery)",
            self.reconnects.clone(),
        );
        registry.register(
            "nexus_redis_command_failures",
            "Presence and rate-limit commands that failed or timed out",
            self.command_failures.clone(),
        );
        registry.register(
            "nexus_redis_up",
            "1 while Redis answers this node",
            self.up.clone(),
        );
    }
}

type Handlers = HashMap<String, mpsc::Sender<ChanItem>>;

/// What the push handler (called by redis-rs for every push message) shares with the link.
struct Shared {
    /// The adapter's channels and where their messages go.
    handlers: RwLock<Handlers>,
    up: AtomicBool,
    stats: LinkStats,
    /// Bumped whenever this node may have missed pub/sub messages and has them flowing
    /// again (Redis came back, or the adapter's buffer overflowed).
    resyncs: watch::Sender<u64>,
    /// Bumped each time the link comes up (the first connection, every return of Redis).
    came_up: watch::Sender<u64>,
    /// Tests: a channel the adapter adds while the watchdog restores the subscriptions,
    /// between its reading the list and its marking the link up.
    #[cfg(test)]
    added_meanwhile: std::sync::Mutex<Option<(String, mpsc::Sender<ChanItem>)>>,
}

struct Inner {
    pubsub: ConnectionManager,
    commands: ConnectionManager,
    shared: Arc<Shared>,
}

/// The node's Redis link. A clone is one pointer; all clones share the connections.
#[derive(Clone)]
pub struct Link(Arc<Inner>);

/// Errors of the Redis link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis is unreachable")]
    Down,
    #[error("redis did not answer in time")]
    Timeout,
}

impl Link {
    /// Opens both connections lazily: a node starts even while Redis is down, and the
    /// watchdog (started here) connects once it is there. Fails only for a malformed URL.
    pub fn open(url: &str) -> Result<Link, LinkError> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;

        let (resyncs, _) = watch::channel(0);
        let (came_up, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            handlers: RwLock::new(HashMap::new()),
            up: AtomicBool::new(false),
            stats: LinkStats::default(),
            resyncs,
            came_up,
            #[cfg(test)]
            added_meanwhile: Default::default(),
        });
        // Reconnect attempts 100 ms to 1 s apart; a cycle that gives up is started again by
        // the watchdog's next ping.
        let config = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(COMMAND_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT))
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_millis(1000))
                .set_number_of_retries(6)
        };
        let on_push = Arc::downgrade(&shared);
        let pubsub_config = config()
            .set_push_sender(move |push: PushInfo| {
                if let Some(shared) = on_push.upgrade() {
                    shared.on_push(push);
                }
                Ok::<(), Infallible>(())
            })
            .set_automatic_resubscription();
        let pubsub = ConnectionManager::new_lazy_with_config(client.clone(), pubsub_config)?;
        let commands = ConnectionManager::new_lazy_with_config(client, config())?;
        let link = Link(Arc::new(Inner {
            pubsub,
            commands,
            shared,
        }));
        tokio::spawn(watchdog(Arc::downgrade(&link.0)));
        Ok(link)
    }

    /// True while Redis answers (as of the watchdog's last look, or the last failure).
    pub fn is_up(&self) -> bool {
        self.0.shared.up.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> &LinkStats {
        &self.0.shared.stats
    }

    /// Changes each time this node may have missed pub/sub messages and is receiving again.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.0.shared.resyncs.subscribe()
    }

    /// Changes each time the link comes up: the first connection, every return of Redis
    /// (the presence heartbeat beats at once then).
    pub fn came_up(&self) -> watch::Receiver<u64> {
        self.0.shared.came_up.subscribe()
    }

    /// Runs a command on the command connection: at once `Down` while Redis is known to be
    /// unreachable, `Timeout` after [`COMMAND_TIMEOUT`]. A failure marks Redis down until
    /// the watchdog sees it answer again.
    pub async fn query<T: FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, LinkError> {
        if !self.is_up() {
            return Err(LinkError::Down);
        }
        let mut conn = self.0.commands.clone();
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, run(&mut conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => LinkError::Redis(e),
            Err(_) => LinkError::Timeout,
        };
        self.0.shared.stats.command_failures.inc();
        if !matches!(&result, LinkError::Redis(e) if !is_connection_error(e)) {
            self.0.shared.mark_down(&result);
        }
        Err(result)
    }

    /// Asks Redis to subscribe to every channel the adapter wants (idempotent).
    async fn subscribe_all(&self) -> redis::RedisResult<()> {
        let channels: Vec<String> = self
            .0
            .shared
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if channels.is_empty() {
            return Ok(());
        }
        self.0.pubsub.clone().subscribe(channels).await
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl Shared {
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => self.route(push),
            PushKind::Disconnection => self.mark_down(&LinkError::Down),
            _ => {}
        }
    }

    /// Hands a pub/sub message to the adapter's stream of its channel.
    fn route(&self, push: PushInfo) {
        let mut data = push.data.into_iter();
        let (Some(chan), Some(payload)) = (data.next(), data.next()) else {
            return;
        };
        let (Ok(chan), Ok(payload)) = (
            String::from_redis_value(chan),
            Vec::<u8>::from_redis_value(payload),
        ) else {
            tracing::warn!("unreadable pub/sub message from redis");
            return;
        };
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = handlers.get(&chan) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((chan, payload)) {
            let dropped = self.stats.dropped_incoming.inc() + 1;
            // One line per power of two: a flood does not flood the log too.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "redis pub/sub buffer full: a cross-node event was dropped (clients recover \
                     through the seq gap and /sync)"
                );
            }
            self.resyncs.send_modify(|n| *n += 1);
        }
    }

    fn mark_down(&self, why: &LinkError) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.stats.up.set(0);
            tracing::warn!(error = %why, "redis unreachable: this node serves its own sockets only until it returns");
        }
    }
}

/// Every [`WATCHDOG_EVERY`]: pings both connections (a ping is also what restarts a
/// reconnect cycle that gave up). When Redis answers again, subscribes to every channel
/// once more, then marks the link up and bumps [`Link::resyncs`].
async fn watchdog(link: Weak<Inner>) {
    let mut tick = tokio::time::interval(WATCHDOG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = link.upgrade() else {
            return;
        };
        let link = Link(inner);
        let ping = async {
            let mut pubsub = link.0.pubsub.clone();
            let mut commands = link.0.commands.clone();
            redis::cmd("PING").query_async::<()>(&mut pubsub).await?;
            redis::cmd("PING").query_async::<()>(&mut commands).await
        };
        let answered = matches!(
            tokio::time::timeout(COMMAND_TIMEOUT, ping).await,
            Ok(Ok(()))
        );
        let shared = &link.0.shared;
        if !answered {
            shared.mark_down(&LinkError::Timeout);
            continue;
        }
        if shared.up.load(Ordering::Acquire) {
            continue;
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, link.subscribe_all()).await {
            Ok(Ok(())) => {
                #[cfg(test)]
                if let Some((chan, tx)) = shared.added_meanwhile.lock().unwrap().take() {
                    shared.handlers.write().unwrap().insert(chan, tx);
                }
                shared.up.store(true, Ordering::Release);
                // A channel the adapter added after `subscribe_all` read the list, while
                // the link was still down, was not subscribed by the adapter's call (it
                // leaves that to this task) nor by the list: subscribe to the list again.
                // Any channel added from here on sees the link up and subscribes itself.
                if !matches!(
                    tokio::time::timeout(COMMAND_TIMEOUT, link.subscribe_all()).await,
                    Ok(Ok(()))
                ) {
                    shared.mark_down(&LinkError::Timeout);
                    continue;
                }
                let first = shared.stats.reconnects.inc() == 0;
                shared.stats.up.set(1);
                if first {
                    tracing::info!("redis connected");
                } else {
                    tracing::info!("redis reachable again: subscriptions restored");
                }
                shared.resyncs.send_modify(|n| *n += 1);
                shared.came_up.send_modify(|n| *n += 1);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "redis: cannot restore subscriptions yet"),
            Err(_) => tracing::warn!("redis: restoring subscriptions timed out"),
        }
    }
}

/// The Socket.IO adapter's driver: `None` on a single node (every broadcast stays local).
#[derive(Clone)]
pub struct PubSub(Option<Link>);

impl PubSub {
    pub fn local() -> PubSub {
        PubSub(None)
    }

    pub fn redis(link: Link) -> PubSub {
        PubSub(Some(link))
    }

    pub fn is_clustered(&self) -> bool {
        self.0.is_some()
    }
}

impl Driver for PubSub {
    type Error = LinkError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), LinkError> {
        let Some(link) = &self.0 else {
            return Ok(());
        };
        if !link.is_up() {
            link.stats().skipped_publishes.inc();
            return Ok(());
        }
        let mut conn = link.0.pubsub.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(chan).arg(val);
        let publish = cmd.query_async::<redis::Value>(&mut conn);
        // A failed publish must not stop local delivery (see the module's doc): it is
        // counted, Redis is marked down, and the other nodes' clients sync.
        let failed = match tokio::time::timeout(COMMAND_TIMEOUT, publish).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => LinkError::Redis(e),
            Err(_) => LinkError::Timeout,
        };
        link.stats().skipped_publishes.inc();
        link.0.shared.mark_down(&failed);
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, LinkError> {
        let Some(link) = &self.0 else {
            return Ok(MessageStream::new_empty());
        };
        let (tx, rx) = mpsc::channel(size);
        link.0
            .shared
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), tx);
        // While Redis is down the watchdog subscribes once it is back.
        if link.is_up() {
            let mut conn = link.0.pubsub.clone();
            match tokio::time::timeout(COMMAND_TIMEOUT, conn.subscribe(&chan)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => link.0.shared.mark_down(&LinkError::Redis(e)),
                Err(_) => link.0.shared.mark_down(&LinkError::Timeout),
            }
        }
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), LinkError> {
        let Some(link) = &self.0 else {
            return Ok(());
        };
        link.0
            .shared
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&chan);
        if link.is_up() {
            let mut conn = link.0.pubsub.clone();
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, conn.unsubscribe(&chan)).await;
        }
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, LinkError> {
        let Some(link) = &self.0 else {
            return Ok(1);
        };
        let chan = chan.to_string();
        let (_, count): (String, u16) = link
            .query(async move |conn| {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(chan)
                    .query_async(conn)
                    .await
            })
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use futures::StreamExt;

    use super::*;

    /// A `redis-server` of the test's own on a free port, which the test may stop and start
    /// again (the machine's shared Redis is never touched).
    pub(crate) struct PrivateRedis {
        pub port: u16,
        child: Option<Child>,
    }

    impl PrivateRedis {
        pub(crate) fn start() -> PrivateRedis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut redis = PrivateRedis { port, child: None };
            redis.restart();
            redis
        }

        pub(crate) fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        pub(crate) fn restart(&mut self) {
            self.stop();
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/apt-packages.txt)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        pub(crate) fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            self.stop();
        }
    }

    pub(crate) async fn wait_up(link: &Link) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.is_up() {
            assert!(Instant::now() < deadline, "the link never came up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes on `from` until `stream` receives it (or `within` passes).
    async fn delivered_within(
        from: &PubSub,
        stream: &mut MessageStream<ChanItem>,
        within: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            from.publish("chan".into(), b"hello".to_vec())
                .await
                .unwrap();
            if let Ok(Some((chan, payload))) =
                tokio::time::timeout(Duration::from_millis(100), stream.next()).await
            {
                assert_eq!((chan.as_str(), payload.as_slice()), ("chan", &b"hello"[..]));
                return Some(start.elapsed());
            }
        }
        None
    }

    /// The gap this driver closes: after Redis restarts, a node hears the other nodes again
    /// by itself (the stock drivers stay deaf), and while Redis is down a publish returns at
    /// once (the adapter would otherwise not deliver to local sockets either).
    #[tokio::test]
    async fn after_a_redis_restart_subscriptions_are_restored() {
        let mut redis = PrivateRedis::start();
        let (a, b) = (
            Link::open(&redis.url()).unwrap(),
            Link::open(&redis.url()).unwrap(),
        );
        wait_up(&a).await;
        wait_up(&b).await;
        let (a, b) = (PubSub::redis(a), PubSub::redis(b));
        let mut stream = b.subscribe("chan".into(), 16).await.unwrap();
        assert!(delivered_within(&a, &mut stream, Duration::from_secs(5))
            .await
            .is_some());

        redis.stop();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b_link = b.0.clone().unwrap();
        assert!(!b_link.is_up(), "the link did not notice Redis went away");
        let started = Instant::now();
        a.publish("chan".into(), b"lost".to_vec()).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "publish waited for Redis"
        );
        assert!(a.0.as_ref().unwrap().stats().skipped_publishes.get() >= 1);

        let resyncs = b_link.resyncs();
        let before = *resyncs.borrow();
        redis.restart();
        let resumed = delivered_within(&a, &mut stream, Duration::from_secs(10)).await;
        let resumed = resumed.expect("cross-node messages did not resume after the restart");
        assert!(
            resumed < Duration::from_secs(5),
            "resumed only after {resumed:?}"
        );
        assert!(
            *resyncs.borrow() > before,
            "the gateway was not told to resync"
        );
    }

    /// A subscription asked for while Redis is down (a node started during an outage) is
    /// made once Redis is there.
    #[tokio::test]
    async fn a_subscription_made_while_redis_is_down_takes_effect_when_it_returns() {
        let mut redis = PrivateRedis::start();
        redis.stop();
        let b = PubSub::redis(Link::open(&redis.url()).unwrap());
        let mut stream = b.subscribe("chan".into(), 16).await.unwrap();
        redis.restart();
        let a = PubSub::redis(Link::open(&redis.url()).unwrap());
        wait_up(a.0.as_ref().unwrap()).await;
        assert!(delivered_within(&a, &mut stream, Duration::from_secs(10))
            .await
            .is_some());
    }

    /// A channel the adapter adds while the watchdog is restoring the subscriptions (after
    /// it read the list, before it marked the link up) is subscribed too.
    #[tokio::test]
    async fn a_channel_added_while_the_subscriptions_are_restored_is_subscribed() {
        let mut redis = PrivateRedis::start();
        redis.stop();
        let b_link = Link::open(&redis.url()).unwrap();
        let b = PubSub::redis(b_link.clone());
        // One channel before Redis returns (so the watchdog has a list to subscribe to),
        // and one that arrives in the window.
        let _early = b.subscribe("early".into(), 16).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        *b_link.0.shared.added_meanwhile.lock().unwrap() = Some(("chan".into(), tx));
        let mut stream = MessageStream::new(rx);
        redis.restart();
        wait_up(&b_link).await;
        let a = PubSub::redis(Link::open(&redis.url()).unwrap());
        wait_up(a.0.as_ref().unwrap()).await;
        assert!(
            delivered_within(&a, &mut stream, Duration::from_secs(5))
                .await
                .is_some(),
            "the channel added meanwhile was never subscribed"
        );
    }

    /// Messages that do not fit the adapter's buffer are counted, and the gateway is told.
    #[tokio::test]
    async fn dropped_incoming_messages_are_counted() {
        let redis = PrivateRedis::start();
        let (a, b) = (
            Link::open(&redis.url()).unwrap(),
            Link::open(&redis.url()).unwrap(),
        );
        wait_up(&a).await;
        wait_up(&b).await;
        let resyncs = b.resyncs();
        let before = *resyncs.borrow();
        let (a, b_link) = (PubSub::redis(a), b.clone());
        let _stream = PubSub::redis(b).subscribe("chan".into(), 1).await.unwrap();
        for _ in 0..20 {
            a.publish("chan".into(), b"x".to_vec()).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while b_link.stats().dropped_incoming.get() < 19 {
            assert!(Instant::now() < deadline, "drops were not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(*resyncs.borrow() > before);
    }
}
