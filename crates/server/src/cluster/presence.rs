//! Cluster-wide presence in Redis: a user is online while any socket of theirs is connected
//! on any live node.
//!
//! Keys (under `REDIS_KEY_PREFIX`, `p` below):
//! - `p presence:nodes`: sorted set, node id → the time (Redis' clock, ms) until which the
//!   node counts as alive. Each node pushes its own forward every [`HEARTBEAT_EVERY`] by
//!   [`NODE_TTL`].
//! - `p presence:user:<id>`: hash, node id → that node's socket count for the user.
//! - `p presence:node:<node>`: set of the users with a socket on that node (to clean up
//!   after a node that died).
//! - `p presence:shown:<id>`: present while the user's contacts were told "online". It
//!   makes each real transition announced once, whichever node sees it: a user's first
//!   socket anywhere sets it (online if it was absent), and the last one's disconnect clears
//!   it (offline if it was present), atomically in Redis.
//!
//! **Flapping.** A user's last socket going away is announced only after [`OFFLINE_DELAY`],
//! and only if no socket of theirs came back meanwhile on any node: a phone switching
//! networks or a tab reloading shows no offline/online pair to contacts. (A socket coming
//! back within the delay is not announced either, since `shown` is still set.)
//!
//! **A node that dies** (SIGKILL, power loss) stops heartbeating; once its time is up, the
//! next heartbeat of any live node removes it and its sockets in one script, and that node
//! announces "offline" for every user left with no socket anywhere: at most
//! `NODE_TTL + HEARTBEAT_EVERY` (12 s) after the death.
//!
//! **Sockets per user** (`MAX_SOCKETS_PER_USER`) are counted from the same hash: a socket is
//! admitted ([`RedisPresence::admit`]) only while the user's counts on live nodes add up to
//! less than the cap, checked and counted in one script, so two nodes admitting at once
//! cannot both pass the last place. A disconnect gives its place back at once (before the
//! offline delay); a dead node's sockets stop counting as soon as its time is up, before
//! any heartbeat removes them.
//!
//! **Redis down.** Every operation falls back to this node's own counts (kept anyway): the
//! node's users stay online to one another, and when Redis is back the node writes its
//! counts into Redis again (announcing "offline" for users who left meanwhile), without
//! announcing anyone "online" a second time. Admission then answers "admitted": the
//! gateway's own count caps the user's sockets on this node (so a user holds at most the cap
//! on each node until Redis answers again; nobody is refused for the outage).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::Script;

use super::link::Link;
use crate::domain::UserId;
use crate::presence::AtCapacity;

/// How often a node tells Redis it is alive (and removes dead nodes).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// How long a user's last socket must stay gone before contacts hear "offline".
pub const OFFLINE_DELAY: Duration = Duration::from_secs(2);

/// Presence of every node's sockets, in Redis.
pub struct RedisPresence {
    link: Link,
    prefix: String,
    node: String,
    offline_delay: Duration,
    node_ttl: Duration,
    /// This node's sockets per user: the fallback while Redis is down, and what is written
    /// back into Redis when it returns. (A std `Mutex`: never held across an await.)
    local: Mutex<HashMap<UserId, usize>>,
    /// Set when an operation could not reach Redis: Redis may not hold this node's counts.
    stale: AtomicBool,
    /// Times this node wrote its sockets into Redis (`nexus_presence_restores`).
    restores: Counter,
}

/// KEYS: nodes, user hash, node set, shown. ARGV: node, user, ttl ms, cap (0: none).
/// Returns -1 when the user holds `cap` sockets on live nodes already (nothing is changed
/// then), 1 when the user was not shown online (they came online), 0 otherwise.
const CONNECT: &str = r"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local cap = tonumber(ARGV[4])
if cap > 0 and sockets(KEYS[1], KEYS[2], now) >= cap then return -1 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SADD', KEYS[3], ARGV[2])
if redis.call('SET', KEYS[4], '1', 'GET') then return 0 end
return 1
";

/// KEYS: user hash, node set. ARGV: node, user. Returns the node's remaining count.
const DISCONNECT: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return n
";

/// Helpers shared by the scripts: is the user (hash `key`) on a live node, and how many
/// sockets has the user on live nodes? (`now`: Redis' clock, ms.)
const ONLINE_FN: &str = r"
local function online(nodes, key, now)
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local alive = redis.call('ZSCORE', nodes, fields[i])
    if alive and tonumber(alive) >= now and tonumber(fields[i + 1]) > 0 then return true end
  end
  return false
end
local function sockets(nodes, key, now)
  local n = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local alive = redis.call('ZSCORE', nodes, fields[i])
    if alive and tonumber(alive) >= now then n = n + math.max(tonumber(fields[i + 1]), 0) end
  end
  return n
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
";

/// KEYS: nodes, user hash, shown. Returns 1 when the user has no socket on a live node and
/// was shown online: they are to be announced offline (by this caller only).
const SETTLE: &str = r"
if online(KEYS[1], KEYS[2], now) then return 0 end
return redis.call('DEL', KEYS[3])
";

/// KEYS: nodes, then one user hash per user. Returns 1/0 per user.
const ONLINE_AMONG: &str = r"
local result = {}
for i = 2, #KEYS do
  result[i - 1] = online(KEYS[1], KEYS[i], now) and 1 or 0
end
return result
";

/// KEYS: nodes. ARGV: node, ttl ms, key prefix. Keeps this node alive and removes the
/// nodes whose time is up, with their sockets. Returns {was this node known (0/1), users
/// who went offline because of it}.
const HEARTBEAT: &str = r"
local known = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local offline = {}
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - 1)) do
  local set = ARGV[3] .. 'presence:node:' .. dead
  for _, user in ipairs(redis.call('SMEMBERS', set)) do
    local key = ARGV[3] .. 'presence:user:' .. user
    redis.call('HDEL', key, dead)
    if not online(KEYS[1], key, now) then
      if redis.call('DEL', ARGV[3] .. 'presence:shown:' .. user) == 1 then
        table.insert(offline, user)
      end
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], dead)
end
return {known, offline}
";

/// KEYS: nodes. ARGV: node, ttl ms, key prefix, then (user, count) pairs: this node's
/// sockets. Writes them as this node's entries (replacing what Redis had), marks those
/// users shown online without announcing them, and returns the users this node had in
/// Redis who are now on no live node (to be announced offline).
const RESTORE: &str = r"
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local set = ARGV[3] .. 'presence:node:' .. ARGV[1]
local before = redis.call('SMEMBERS', set)
redis.call('DEL', set)
local here = {}
for i = 4, #ARGV, 2 do
  local user = ARGV[i]
  here[user] = true
  redis.call('HSET', ARGV[3] .. 'presence:user:' .. user, ARGV[1], ARGV[i + 1])
  redis.call('SADD', set, user)
  redis.call('SET', ARGV[3] .. 'presence:shown:' .. user, '1')
end
local offline = {}
for _, user in ipairs(before) do
  if not here[user] then
    local key = ARGV[3] .. 'presence:user:' .. user
    redis.call('HDEL', key, ARGV[1])
    if not online(KEYS[1], key, now) then
      if redis.call('DEL', ARGV[3] .. 'presence:shown:' .. user) == 1 then
        table.insert(offline, user)
      end
    end
  end
end
return offline
";

fn script(body: &str, with_online: bool) -> Script {
    if with_online {
        Script::new(&format!("{ONLINE_FN}\n{body}"))
    } else {
        Script::new(body)
    }
}

struct Scripts {
    connect: Script,
    disconnect: Script,
    settle: Script,
    online_among: Script,
    heartbeat: Script,
    restore: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        connect: script(CONNECT, true),
        disconnect: script(DISCONNECT, false),
        settle: script(SETTLE, true),
        online_among: script(ONLINE_AMONG, true),
        heartbeat: script(HEARTBEAT, true),
        restore: script(RESTORE, true),
    })
}

impl RedisPresence {
    pub fn new(link: Link, prefix: &str) -> RedisPresence {
        RedisPresence {
            link,
            prefix: prefix.to_string(),
            node: uuid::Uuid::new_v4().simple().to_string(),
            offline_delay: OFFLINE_DELAY,
            node_ttl: NODE_TTL,
            local: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
            restores: Counter::default(),
        }
    }

    /// Exports the count of restores on `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "nexus_presence_restores",
            "Times this node wrote its sockets into Redis presence (once at start, then after \
             each time Redis lost them or could not be reached)",
            self.restores.clone(),
        );
    }

    /// Times this node wrote its sockets into Redis.
    pub fn restores(&self) -> u64 {
        self.restores.get()
    }

    /// The same with another offline delay and node lifetime (tests).
    pub fn with_timings(mut self, offline_delay: Duration, node_ttl: Duration) -> RedisPresence {
        self.offline_delay = offline_delay;
        self.node_ttl = node_ttl;
        self
    }

    fn nodes_key(&self) -> String {
        format!("{}presence:nodes", self.prefix)
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}presence:user:{user}", self.prefix)
    }

    fn node_key(&self) -> String {
        format!("{}presence:node:{}", self.prefix, self.node)
    }

    fn shown_key(&self, user: &str) -> String {
        format!("{}presence:shown:{user}", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.node_ttl.as_millis() as u64
    }

    /// Changes this node's count for `user` by `delta`; returns (before, after).
    fn count(&self, user: UserId, delta: isize) -> (usize, usize) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let n = local.entry(user).or_insert(0);
        let before = *n;
        *n = n.saturating_add_signed(delta);
        let after = *n;
        if after == 0 {
            local.remove(&user);
        }
        (before, after)
    }

    fn locally_online(&self, user: UserId) -> bool {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&user)
    }

    fn fell_back(&self, what: &str, e: &super::link::LinkError) {
        self.stale.store(true, Ordering::Release);
        tracing::debug!(error = %e, what, "presence: redis unreachable, using this node's view");
    }

    /// A socket of `user` connected here, counted without a cap; true when the user came
    /// online (first socket on any node, or, with Redis down, on this node).
    pub async fn connect(&self, user: UserId) -> bool {
        self.admit(user, 0).await.unwrap_or(false)
    }

    /// A socket of `user` wants to connect here: counted unless the user holds `cap`
    /// sockets (0: no cap) on live nodes already ([`AtCapacity`]; nothing is counted then).
    /// Ok(true) when the user came online (first socket on any node, or, with Redis down,
    /// on this node). With Redis unreachable the socket is admitted: the caller's own count
    /// caps it on this node.
    pub async fn admit(&self, user: UserId, cap: u32) -> Result<bool, AtCapacity> {
        let (before, _) = self.count(user, 1);
        let id = user.as_string();
        let keys = [
            self.nodes_key(),
            self.user_key(&id),
            self.node_key(),
            self.shown_key(&id),
        ];
        let (node, ttl) = (self.node.clone(), self.ttl_ms());
        let result = self
            .link
            .query(async move |conn| {
                let mut call = scripts().connect.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                call.arg(node)
                    .arg(&id)
                    .arg(ttl)
                    .arg(cap)
                    .invoke_async::<i64>(conn)
                    .await
            })
            .await;
        match result {
            Ok(-1) => {
                self.count(user, -1);
                Err(AtCapacity)
            }
            Ok(came_online) => Ok(came_online == 1),
            Err(e) => {
                self.fell_back("connect", &e);
                Ok(before == 0)
            }
        }
    }

    /// A socket of `user` went away here; after the offline delay, true when the user has
    /// no socket left anywhere and is to be announced offline (by this call only).
    pub async fn disconnect(&self, user: UserId) -> bool {
        self.count(user, -1);
        let id = user.as_string();
        let keys = [self.user_key(&id), self.node_key()];
        let node = self.node.clone();
        let id2 = id.clone();
        let result = self
            .link
            .query(async move |conn| {
                let mut call = scripts().disconnect.prepare_invoke();
                call.key(&keys[0]).key(&keys[1]).arg(node).arg(&id2);
                call.invoke_async::<i64>(conn).await
            })
            .await;
        let redis_ok = match result {
            Ok(_) => true,
            Err(e) => {
                self.fell_back("disconnect", &e);
                false
            }
        };
        tokio::time::sleep(self.offline_delay).await;
        if !redis_ok || !self.link.is_up() {
            return !self.locally_online(user);
        }
        let keys = [self.nodes_key(), self.user_key(&id), self.shown_key(&id)];
        let settled = self
            .link
            .query(async move |conn| {
                let mut call = scripts().settle.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                call.invoke_async::<i64>(conn).await
            })
            .await;
        match settled {
            Ok(n) => n == 1,
            Err(e) => {
                self.fell_back("settle", &e);
                !self.locally_online(user)
            }
        }
    }

    /// The users among `users` with a socket on a live node (this node's view while Redis
    /// is down), in the order given.
    pub async fn online_among(&self, users: &[UserId]) -> Vec<UserId> {
        if users.is_empty() {
            return Vec::new();
        }
        let mut keys = vec![self.nodes_key()];
        keys.extend(users.iter().map(|u| self.user_key(&u.as_string())));
        let result = self
            .link
            .query(async move |conn| {
                let mut call = scripts().online_among.prepare_invoke();
                for key in &keys {
                    call.key(key);
                }
                call.invoke_async::<Vec<i64>>(conn).await
            })
            .await;
        match result {
            Ok(flags) => users
                .iter()
                .zip(flags)
                .filter(|(_, online)| *online == 1)
                .map(|(u, _)| *u)
                .collect(),
            Err(e) => {
                self.fell_back("online_among", &e);
                users
                    .iter()
                    .filter(|u| self.locally_online(**u))
                    .copied()
                    .collect()
            }
        }
    }

    /// Keeps this node alive in Redis, removes dead nodes, and writes this node's counts
    /// back after Redis lost them (or could not be reached). Returns the users who went
    /// offline because of a dead node or while Redis was away: the caller announces them.
    pub async fn heartbeat(&self) -> Vec<UserId> {
        let (nodes, node, ttl, prefix) = (
            self.nodes_key(),
            self.node.clone(),
            self.ttl_ms(),
            self.prefix.clone(),
        );
        let result = self
            .link
            .query(async move |conn| {
                let mut call = scripts().heartbeat.prepare_invoke();
                call.key(&nodes).arg(&node).arg(ttl).arg(&prefix);
                call.invoke_async::<(i64, Vec<String>)>(conn).await
            })
            .await;
        let (known, mut offline) = match result {
            Ok(answer) => answer,
            Err(e) => {
                self.fell_back("heartbeat", &e);
                return Vec::new();
            }
        };
        // Both are consumed: a new node is unknown *and* stale at its first heartbeat, and
        // must not restore a second time at the next one.
        let stale = self.stale.swap(false, Ordering::AcqRel);
        if known == 0 || stale {
            match self.restore().await {
                Ok(left) => offline.extend(left),
                Err(e) => self.fell_back("restore", &e),
            }
        }
        offline
            .iter()
            .filter_map(|u| UserId::parse(u).ok())
            .filter(|u| !self.locally_online(*u))
            .collect()
    }

    async fn restore(&self) -> Result<Vec<String>, super::link::LinkError> {
        let counts: Vec<(String, usize)> = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(u, n)| (u.as_string(), *n))
            .collect();
        let (nodes, node, ttl, prefix) = (
            self.nodes_key(),
            self.node.clone(),
            self.ttl_ms(),
            self.prefix.clone(),
        );
        tracing::info!(
            users = counts.len(),
            "presence: writing this node's sockets into redis"
        );
        self.link
            .query(async move |conn| {
                let mut call = scripts().restore.prepare_invoke();
                call.key(&nodes).arg(&node).arg(ttl).arg(&prefix);
                for (user, n) in &counts {
                    call.arg(user).arg(*n);
                }
                call.invoke_async::<Vec<String>>(conn).await
            })
            .await
            .inspect(|_| {
                self.restores.inc();
            })
    }

    /// Leaves the cluster at shutdown: this node's entries go at once instead of after
    /// [`NODE_TTL`] (its sockets' disconnects have already been counted).
    pub async fn leave(&self) {
        let nodes = self.nodes_key();
        let node = self.node.clone();
        let _ = self
            .link
            .query(async move |conn| {
                redis::cmd("ZADD")
                    .arg(&nodes)
                    .arg(0)
                    .arg(&node)
                    .query_async::<()>(conn)
                    .await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::link::tests::{wait_up, PrivateRedis};

    const DELAY: Duration = Duration::from_millis(300);

    async fn nodes(redis: &PrivateRedis, n: usize) -> Vec<Arc<RedisPresence>> {
        let link = Link::open(&redis.url()).unwrap();
        wait_up(&link).await;
        let prefix = format!("t{}:", uuid::Uuid::new_v4().simple());
        (0..n)
            .map(|_| {
                Arc::new(
                    RedisPresence::new(link.clone(), &prefix)
                        .with_timings(DELAY, Duration::from_millis(1500)),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn online_while_any_socket_is_connected_on_any_node() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let (ada, bob) = (UserId::new(), UserId::new());
        assert!(
            n[0].connect(ada).await,
            "first socket anywhere: came online"
        );
        assert!(
            !n[1].connect(ada).await,
            "a second node's socket is no transition"
        );
        assert_eq!(n[1].online_among(&[bob, ada]).await, [ada]);
        assert!(
            !n[0].disconnect(ada).await,
            "still connected on the other node"
        );
        assert_eq!(n[0].online_among(&[ada]).await, [ada]);
        assert!(
            n[1].disconnect(ada).await,
            "last socket anywhere: went offline"
        );
        assert!(n[0].online_among(&[ada, bob]).await.is_empty());
    }

    /// A socket that disconnects and comes back within the delay shows no transition.
    #[tokio::test]
    async fn a_flapping_socket_is_not_announced() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let ada = UserId::new();
        assert!(n[0].connect(ada).await);
        let gone = tokio::spawn({
            let node = n[0].clone();
            async move { node.disconnect(ada).await }
        });
        tokio::time::sleep(DELAY / 3).await;
        assert!(
            !n[1].connect(ada).await,
            "came back within the delay: no online"
        );
        assert!(
            !gone.await.unwrap(),
            "came back within the delay: no offline"
        );
        assert!(n[1].disconnect(ada).await);
    }

    /// Concurrent last disconnects on two nodes announce offline once.
    #[tokio::test]
    async fn offline_is_announced_once() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let ada = UserId::new();
        n[0].connect(ada).await;
        n[1].connect(ada).await;
        let (a, b) = tokio::join!(n[0].disconnect(ada), n[1].disconnect(ada));
        assert!(a ^ b, "offline announced {} times", a as u8 + b as u8);
    }

    /// A node that stops heartbeating (killed) has its users taken offline by another
    /// node's heartbeat once its time is up.
    #[tokio::test]
    async fn a_dead_nodes_users_go_offline() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let (ada, bob) = (UserId::new(), UserId::new());
        n[0].connect(ada).await;
        n[0].connect(bob).await;
        n[1].connect(bob).await;
        assert!(n[1].heartbeat().await.is_empty());
        // n[0] is dead from here on: it never heartbeats again.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(
            n[1].heartbeat().await,
            [ada],
            "bob is still on the live node"
        );
        assert_eq!(n[1].online_among(&[ada, bob]).await, [bob]);
        assert!(n[1].heartbeat().await.is_empty(), "announced once");
    }

    /// `MAX_SOCKETS_PER_USER` over every node: of ten sockets asking at once on two nodes
    /// with a cap of 3, exactly three get in; a refused one changes nothing; a disconnect
    /// gives its place back at once.
    #[tokio::test]
    async fn sockets_per_user_are_capped_across_nodes_at_once() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let (ada, bob) = (UserId::new(), UserId::new());
        let asks = (0..10).map(|i| n[i % 2].admit(ada, 3));
        let answers = futures::future::join_all(asks).await;
        let admitted: Vec<usize> = (0..10).filter(|i| answers[*i].is_ok()).collect();
        assert_eq!(admitted.len(), 3, "admitted: {answers:?}");
        assert_eq!(
            answers.iter().filter(|a| **a == Ok(true)).count(),
            1,
            "came online once"
        );
        assert_eq!(n[0].admit(ada, 3).await, Err(AtCapacity));
        assert_eq!(n[1].admit(ada, 3).await, Err(AtCapacity));
        assert_eq!(n[0].admit(bob, 3).await, Ok(true), "the cap is per user");

        // One of ada's sockets goes (on whichever node held it): another may come, on
        // either node, and only one.
        let holder = admitted[0] % 2;
        let gone = tokio::spawn({
            let node = n[holder].clone();
            async move { node.disconnect(ada).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while n[1 - holder].admit(ada, 3).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "place never freed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(n[holder].admit(ada, 3).await, Err(AtCapacity));
        assert!(!gone.await.unwrap(), "still online: no offline");
    }

    /// A node that dies holding a user's sockets: they stop counting against the cap as soon
    /// as the node's time is up (no heartbeat needs to remove them first).
    #[tokio::test]
    async fn a_dead_nodes_sockets_stop_counting() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let ada = UserId::new();
        for _ in 0..3 {
            n[0].admit(ada, 3).await.unwrap();
        }
        assert_eq!(n[1].admit(ada, 3).await, Err(AtCapacity));
        // n[0] is dead from here on; n[1] does not heartbeat either.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        assert_eq!(n[1].admit(ada, 3).await, Ok(false), "still shown online");
        n[1].admit(ada, 3).await.unwrap();
        n[1].admit(ada, 3).await.unwrap();
        assert_eq!(n[1].admit(ada, 3).await, Err(AtCapacity));
    }

    /// Redis down: admission says yes (the gateway's count on each node is the cap then),
    /// rather than refusing everyone.
    #[tokio::test]
    async fn with_redis_down_admission_falls_back_to_the_node() {
        let mut redis = PrivateRedis::start();
        let n = nodes(&redis, 1).await;
        let ada = UserId::new();
        n[0].admit(ada, 1).await.unwrap();
        redis.stop();
        assert_eq!(n[0].admit(ada, 1).await, Ok(false));
    }

    /// A node writes its sockets into Redis once at start (its first heartbeat finds it
    /// unknown to Redis, and its view not yet written there), not again at the next
    /// heartbeats.
    #[tokio::test]
    async fn a_new_node_restores_its_sockets_once() {
        let redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        assert!(
            n[0].heartbeat().await.is_empty(),
            "a node starts with no socket"
        );
        assert_eq!(n[0].restores(), 1);
        let ada = UserId::new();
        n[0].connect(ada).await;
        for _ in 0..3 {
            assert!(n[0].heartbeat().await.is_empty());
        }
        assert_eq!(n[0].restores(), 1, "restored at start only");
        assert_eq!(n[1].online_among(&[ada]).await, [ada]);
    }

    /// Redis restarted empty: the next heartbeat writes this node's sockets back, and
    /// nobody is announced offline (or online) for it.
    #[tokio::test]
    async fn a_redis_restart_loses_no_one() {
        let mut redis = PrivateRedis::start();
        let n = nodes(&redis, 2).await;
        let ada = UserId::new();
        n[0].connect(ada).await;
        n[0].heartbeat().await;
        redis.restart();
        wait_up(&n[0].link).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while n[1].online_among(&[ada]).await.is_empty() {
            assert!(n[0].heartbeat().await.is_empty());
            assert!(tokio::time::Instant::now() < deadline, "never restored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!n[1].connect(ada).await, "restored as shown online");
    }
}
