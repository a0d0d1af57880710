//! Health of what a node depends on: one check behind both `GET /ready` and the socket's
//! `HEALTH_CHECK`.

use std::sync::Arc;

use crate::store::Store;

/// Something besides the database a node needs (Redis, in cluster mode).
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    /// True when it answers now.
    async fn ping(&self) -> bool;
}

/// What [`Health::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub database: bool,
    /// `None` when Redis is not configured (a single node).
    pub redis: Option<bool>,
}

impl Report {
    /// Everything configured answers.
    pub fn ready(&self) -> bool {
        self.database && self.redis != Some(false)
    }

    pub fn database_status(&self) -> &'static str {
        up_down(self.database)
    }

    /// `up`, `down` or `not configured`.
    pub fn redis_status(&self) -> &'static str {
        self.redis.map(up_down).unwrap_or("not configured")
    }
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

#[derive(Clone)]
pub struct Health {
    store: Store,
    redis: Option<Arc<dyn Probe>>,
}

impl Health {
    pub fn new(store: Store, redis: Option<Arc<dyn Probe>>) -> Health {
        Health { store, redis }
    }

    /// Asks the database and (if configured) Redis, at the same time.
    pub async fn check(&self) -> Report {
        let redis = async {
            match &self.redis {
                Some(probe) => Some(probe.ping().await),
                None => None,
            }
        };
        let database = async {
            let started = std::time::Instant::now();
            let up = self.store.ping().await;
            crate::metrics::node().database("ping", started);
            up
        };
        let (database, redis) = tokio::join!(database, redis);
        Report { database, redis }
    }
}
