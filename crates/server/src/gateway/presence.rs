//! Who is online, and who is typing to whom.
//!
//! Both live in process memory: a user is online while any of their sockets is connected to
//! this node. (A std `Mutex` is right here: every critical section is a few map operations
//! and never awaits.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a `TYPING_START` lasts without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Presence {
    sockets: Mutex<HashMap<String, usize>>,
}

impl Presence {
    /// Counts a new socket of `user`; true when it is their first (they just came online).
    pub fn connect(&self, user: &str) -> bool {
        let mut map = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Forgets a socket of `user`; true when it was their last (they just went offline).
    pub fn disconnect(&self, user: &str) -> bool {
        let mut map = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(user);
                true
            }
            None => false,
        }
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(user)
    }

    pub fn online(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        users.sort();
        users
    }
}

/// Typing indicators with expiry: each start or stop bumps a generation; an expiry timer
/// only fires if no newer start or stop came since it was set.
#[derive(Default)]
pub struct Typing {
    generations: Mutex<HashMap<(String, String), u64>>,
}

impl Typing {
    /// Records a change of `from` typing to `to` and returns its generation.
    pub fn bump(&self, from: &str, to: &str) -> u64 {
        let mut map = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let g = map.entry((from.to_string(), to.to_string())).or_insert(0);
        *g += 1;
        *g
    }

    /// True (and forgotten) when `generation` is still the latest: the indicator expired.
    pub fn expire(&self, from: &str, to: &str, generation: u64) -> bool {
        let mut map = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let key = (from.to_string(), to.to_string());
        if map.get(&key) == Some(&generation) {
            map.remove(&key);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_any_socket_is_connected() {
        let p = Presence::default();
        assert!(p.connect("a"));
        assert!(!p.connect("a"));
        assert!(!p.disconnect("a"));
        assert!(p.is_online("a"));
        assert!(p.disconnect("a"));
        assert!(!p.is_online("a"));
        assert!(!p.disconnect("a"));
    }

    #[test]
    fn typing_expires_only_without_refresh() {
        let t = Typing::default();
        let g1 = t.bump("a", "b");
        let g2 = t.bump("a", "b");
        assert!(
            !t.expire("a", "b", g1),
            "a refreshed indicator must not expire"
        );
        assert!(t.expire("a", "b", g2));
    }
}
