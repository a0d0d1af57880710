//! The state every request and socket handler shares: the services, assembled once by
//! [`crate::app::Application::build`].

use std::sync::Arc;

use crate::accounts::AccountService;
use crate::delivery::Delivery;
use crate::health::Health;
use crate::messaging::MessagingService;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::push::Push;
use crate::store::Store;

/// Everything a request or socket handler needs, shared: a clone is one pointer. Every
/// socket's task and disconnect handler keep a clone for as long as the socket lives, so it
/// stays one pointer wide.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub store: Store,
    pub accounts: AccountService,
    pub messaging: MessagingService,
    /// The one step that sends what the domain returns (sockets on any node, push).
    pub delivery: Delivery,
    /// Who is connected, on this node or (in cluster mode) anywhere.
    pub presence: Arc<dyn Presence>,
    pub health: Health,
    /// What `/metrics` shows.
    pub metrics: Metrics,
    /// Push devices (the `/users` device routes) and the push queue's counters.
    pub push: Push,
}

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}
