//! Who is typing to whom, with expiry. Typing indicators are fleeting: they live in the
//! memory of the node the typist is connected to, and a lost one expires by itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a `TYPING_START` lasts without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

/// Each start or stop bumps a generation; an expiry timer only fires if no newer start or
/// stop came since it was set. (A std `Mutex`: every critical section is a map operation.)
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
