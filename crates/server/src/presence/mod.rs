//! Who is online. A user is online while any socket of theirs is connected: on this node
//! ([`LocalPresence`]) or, in cluster mode, on any node (the Redis implementation, whose
//! node heartbeats let a dead node's users go offline by themselves).
//!
//! Presence only counts sockets. Who hears of a user's presence and whom a user may list
//! online are rules of the messaging domain (`MessagingService::presence_audience`,
//! `MessagingService::online_contacts`); see docs/design.md, "Presence".

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::UserId;

/// A socket refused because its user holds `MAX_SOCKETS_PER_USER` sockets already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

/// The connected sockets of every user, as far as this node can know.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Counts socket `socket` of `user`; true when it is the user's first one anywhere (they
    /// just came online).
    async fn connect(&self, user: UserId, socket: &str) -> bool;

    /// [`Presence::connect`] unless `user` holds `cap` sockets already, wherever this
    /// presence sees them: `Err(AtCapacity)`, and nothing is counted. In a cluster that is
    /// every live node (checked and counted at once, so two nodes cannot both give away the
    /// last place). Here, by default, no check: on a single node the gateway's own count of
    /// its sockets is the whole truth and caps them.
    async fn admit(&self, user: UserId, socket: &str, _cap: u32) -> Result<bool, AtCapacity> {
        Ok(self.connect(user, socket).await)
    }

    /// Forgets socket `socket` of `user`; true when it was the user's last one anywhere
    /// (they just went offline).
    async fn disconnect(&self, user: UserId, socket: &str) -> bool;

    /// The users among `users` with a socket connected somewhere, in the order given.
    async fn online_among(&self, users: &[UserId]) -> Vec<UserId>;

    /// Tells the other nodes this one is alive, so its sockets keep counting, and returns
    /// the users who went offline without a socket saying goodbye (the sockets of a node
    /// that died, or that left while Redis was unreachable): the caller announces them.
    /// Nothing to do on a single node.
    async fn heartbeat(&self) -> Vec<UserId> {
        Vec::new()
    }

    /// How often [`Presence::heartbeat`] is to be called; `None`: never.
    fn heartbeat_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// This node is shutting down (its sockets' disconnects are counted already).
    async fn leave(&self) {}
}

/// Presence in process memory: right for a single node, where every socket is local. (A
/// std `Mutex` is right here: every critical section is a few map operations and never
/// awaits.)
#[derive(Default)]
pub struct LocalPresence {
    sockets: Mutex<HashMap<UserId, usize>>,
}

#[async_trait::async_trait]
impl Presence for LocalPresence {
    async fn connect(&self, user: UserId, _socket: &str) -> bool {
        let mut map = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user).or_insert(0);
        *n += 1;
        *n == 1
    }

    async fn disconnect(&self, user: UserId, _socket: &str) -> bool {
        let mut map = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&user);
                true
            }
            None => false,
        }
    }

    async fn online_among(&self, users: &[UserId]) -> Vec<UserId> {
        let map = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter(|u| map.contains_key(u))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_while_any_socket_is_connected() {
        let p = LocalPresence::default();
        let (a, b) = (UserId::new(), UserId::new());
        assert!(p.connect(a, "s1").await, "first socket: came online");
        assert!(!p.connect(a, "s2").await);
        assert!(!p.disconnect(a, "s1").await);
        assert_eq!(p.online_among(&[b, a]).await, [a]);
        assert!(p.disconnect(a, "s2").await, "last socket: went offline");
        assert!(p.online_among(&[a, b]).await.is_empty());
        assert!(
            !p.disconnect(a, "s2").await,
            "an unknown socket changes nothing"
        );
    }
}
