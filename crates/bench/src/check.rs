//! Correctness, checked as messages go. A [`Conversation`] is one direction (sender →
//! receiver): every send is acknowledged once, and every acknowledged message is delivered
//! exactly once and in send order. [`Correctness`] adds the ledgers of a run up and says
//! whether it passed.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

/// The ledger of one direction of a conversation.
#[derive(Debug, Default)]
pub struct Conversation {
    /// Next sequence number to send, i.e. how many were sent.
    sent: u64,
    /// Sent and not yet acknowledged: seq → start time (ns, [`crate::clock`]).
    inflight: HashMap<u64, u64>,
    acked: u64,
    /// The seq the receiver should see next if everything is in order.
    next_expected: u64,
    /// Seqs skipped by a later delivery: lost, unless they still turn up (out of order).
    missing: BTreeSet<u64>,
    delivered: u64,
    duplicates: u64,
    reordered: u64,
    unknown_acks: u64,
    unknown_deliveries: u64,
}

/// What a finished [`Conversation`] amounts to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    /// Acknowledged (so durable) but never delivered.
    pub lost: u64,
    pub duplicated: u64,
    /// Delivered, but after a later message of the same conversation.
    pub reordered: u64,
    /// Sent, but never acknowledged by the end of the drain period.
    pub unacknowledged: u64,
    /// Acks or deliveries of messages that were never sent (or acked twice).
    pub unexpected: u64,
}

impl Conversation {
    /// Records a send that started at `start_ns`; returns its sequence number.
    pub fn send(&mut self, start_ns: u64) -> u64 {
        let seq = self.sent;
        self.sent += 1;
        self.inflight.insert(seq, start_ns);
        seq
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Records the acknowledgement of `seq`; returns its start time, or `None` when `seq`
    /// was not waiting for one (a duplicate or unknown ack, counted as unexpected).
    pub fn ack(&mut self, seq: u64) -> Option<u64> {
        match self.inflight.remove(&seq) {
            Some(start) => {
                self.acked += 1;
                Some(start)
            }
            None => {
                self.unknown_acks += 1;
                None
            }
        }
    }

    /// Records that the receiver got `seq`.
    pub fn deliver(&mut self, seq: u64) {
        if seq >= self.sent {
            self.unknown_deliveries += 1;
        } else if seq == self.next_expected {
            self.next_expected += 1;
            self.delivered += 1;
        } else if seq > self.next_expected {
            self.missing.extend(self.next_expected..seq);
            self.next_expected = seq + 1;
            self.delivered += 1;
        } else if self.missing.remove(&seq) {
            self.reordered += 1;
            self.delivered += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Everything sent is acknowledged and delivered: nothing more to wait for.
    pub fn is_settled(&self) -> bool {
        self.inflight.is_empty() && self.next_expected == self.sent && self.missing.is_empty()
    }

    pub fn tally(&self) -> Tally {
        let undelivered_acked = self
            .missing
            .iter()
            .copied()
            .chain(self.next_expected..self.sent)
            .filter(|s| !self.inflight.contains_key(s))
            .count() as u64;
        Tally {
            sent: self.sent,
            acked: self.acked,
            delivered: self.delivered,
            lost: undelivered_acked,
            duplicated: self.duplicates,
            reordered: self.reordered,
            unacknowledged: self.inflight.len() as u64,
            unexpected: self.unknown_acks + self.unknown_deliveries,
        }
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.unacknowledged += o.unacknowledged;
        self.unexpected += o.unexpected;
    }
}

/// How many distinct error messages a report keeps (the rest are counted).
const MAX_ERRORS: usize = 10;

/// The verdict of a whole run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Correctness {
    pub passed: bool,
    #[serde(flatten)]
    pub tally: Tally,
    /// Other failures: refused sends, dropped connections, protocol violations.
    pub errors: Vec<String>,
    pub more_errors: u64,
}

impl Correctness {
    pub fn add(&mut self, t: Tally) {
        self.tally += t;
    }

    pub fn error(&mut self, e: impl Into<String>) {
        let e = e.into();
        if self.errors.len() < MAX_ERRORS {
            if !self.errors.contains(&e) {
                self.errors.push(e);
            }
        } else {
            self.more_errors += 1;
        }
    }

    /// Sets `passed` and returns one line per failure.
    pub fn finish(&mut self) -> Vec<String> {
        let t = &self.tally;
        let mut f = Vec::new();
        let mut count = |n: u64, what: &str| {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        };
        count(t.lost, "acknowledged messages never delivered (LOSS)");
        count(
            t.duplicated,
            "messages delivered more than once (DUPLICATION)",
        );
        count(t.reordered, "messages delivered out of order");
        count(
            t.unacknowledged,
            "sends never acknowledged with MESSAGE_SENT",
        );
        count(t.unexpected, "acks or deliveries of messages never sent");
        f.extend(self.errors.iter().cloned());
        if self.more_errors > 0 {
            f.push(format!("… and {} more errors", self.more_errors));
        }
        self.passed = f.is_empty();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64) -> Conversation {
        let mut c = Conversation::default();
        for i in 0..n {
            assert_eq!(c.send(i), i);
        }
        c
    }

    #[test]
    fn in_order_exactly_once_is_settled_and_clean() {
        let mut c = sent(3);
        for s in 0..3 {
            c.deliver(s);
            assert_eq!(c.ack(s), Some(s));
        }
        assert!(c.is_settled());
        let t = c.tally();
        assert_eq!((t.acked, t.delivered, t.lost, t.duplicated), (3, 3, 0, 0));
    }

    #[test]
    fn a_skipped_acked_message_is_lost() {
        let mut c = sent(3);
        (0..3).for_each(|s| {
            c.ack(s);
        });
        c.deliver(0);
        c.deliver(2);
        assert!(!c.is_settled());
        assert_eq!(c.tally().lost, 1);
    }

    #[test]
    fn a_late_message_is_reordered_not_lost_and_a_repeat_is_a_duplicate() {
        let mut c = sent(3);
        (0..3).for_each(|s| {
            c.ack(s);
        });
        c.deliver(0);
        c.deliver(2);
        c.deliver(1);
        c.deliver(1);
        let t = c.tally();
        assert_eq!(
            (t.lost, t.reordered, t.duplicated, t.delivered),
            (0, 1, 1, 3)
        );
    }

    #[test]
    fn unacked_and_unknown_are_counted() {
        let mut c = sent(2);
        c.ack(0);
        assert_eq!(c.ack(0), None);
        c.deliver(0);
        c.deliver(7);
        let t = c.tally();
        assert_eq!((t.unacknowledged, t.unexpected, t.lost), (1, 2, 0));
    }

    #[test]
    fn correctness_fails_on_any_violation() {
        let mut ok = Correctness::default();
        ok.add(sent(0).tally());
        assert!(ok.finish().is_empty() && ok.passed);

        let mut bad = Correctness::default();
        let mut c = sent(1);
        c.ack(0);
        bad.add(c.tally());
        let failures = bad.finish();
        assert!(!bad.passed);
        assert!(failures[0].contains("LOSS"), "{failures:?}");
    }
}
