//! Who is typing to whom, with expiry and a throttle. Typing indicators are fleeting: they
//! live in the memory of the node the typist is connected to, and a lost one expires by
//! itself. An entry exists only between a start and its stop (or expiry), so the map holds
//! no more than the indicators shown right now.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a `TYPING_START` lasts without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

/// A refreshed start is forwarded at most this often (clients send one per keystroke);
/// the refresh still extends the indicator's life.
pub const TYPING_THROTTLE: Duration = Duration::from_secs(2);

struct Shown {
    /// Bumped by each start; an expiry timer fires only for the latest.
    generation: u64,
    /// When a start was last forwarded.
    forwarded: Instant,
}

/// (A std `Mutex`: every critical section is a map operation.)
#[derive(Default)]
pub struct Typing {
    shown: Mutex<HashMap<(String, String), Shown>>,
}

/// What a start asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Arm an expiry timer for this generation.
    pub generation: u64,
    /// Forward `USER_TYPING {isTyping: true}` (false: a refresh inside the throttle).
    pub forward: bool,
    /// No indicator was shown: the caller checks it is allowed before forwarding.
    pub new: bool,
}

impl Typing {
    /// Records that `from` is typing to `to`.
    pub fn start(&self, from: &str, to: &str) -> Start {
        let mut map = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match map.get_mut(&(from.to_string(), to.to_string())) {
            Some(shown) => {
                shown.generation += 1;
                let forward = now.duration_since(shown.forwarded) >= TYPING_THROTTLE;
                if forward {
                    shown.forwarded = now;
                }
                Start {
                    generation: shown.generation,
                    forward,
                    new: false,
                }
            }
            None => {
                map.insert(
                    (from.to_string(), to.to_string()),
                    Shown {
                        generation: 1,
                        forwarded: now,
                    },
                );
                Start {
                    generation: 1,
                    forward: true,
                    new: true,
                }
            }
        }
    }

    /// Forgets an indicator a start had just created (the caller refused it).
    pub fn forget(&self, from: &str, to: &str) {
        let mut map = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(from.to_string(), to.to_string()));
    }

    /// `from` stopped typing to `to`: true when an indicator was shown (forward the stop).
    pub fn stop(&self, from: &str, to: &str) -> bool {
        let mut map = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(from.to_string(), to.to_string())).is_some()
    }

    /// True (and forgotten) when `generation` is still the latest: the indicator expired.
    pub fn expire(&self, from: &str, to: &str, generation: u64) -> bool {
        let mut map = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let key = (from.to_string(), to.to_string());
        if map.get(&key).map(|s| s.generation) == Some(generation) {
            map.remove(&key);
            true
        } else {
            false
        }
    }

    /// Indicators shown now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shown.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn typing_expires_only_without_refresh() {
        let t = Typing::default();
        let g1 = t.start("a", "b").generation;
        let g2 = t.start("a", "b").generation;
        assert!(
            !t.expire("a", "b", g1),
            "a refreshed indicator must not expire"
        );
        assert!(t.expire("a", "b", g2));
        assert!(t.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_are_forwarded_at_most_once_per_throttle() {
        let t = Typing::default();
        assert!(t.start("a", "b").forward);
        assert!(!t.start("a", "b").forward, "a keystroke later");
        tokio::time::advance(TYPING_THROTTLE).await;
        assert!(t.start("a", "b").forward);
        assert!(t.start("a", "c").forward, "another receiver has its own");
    }

    /// The entry leaked after START → STOP: every pair a user ever typed to stayed.
    #[tokio::test]
    async fn a_stop_forgets_the_indicator() {
        let t = Typing::default();
        t.start("a", "b");
        assert!(t.stop("a", "b"));
        assert!(!t.stop("a", "b"), "a second stop forwards nothing");
        assert!(t.is_empty());
    }
}
