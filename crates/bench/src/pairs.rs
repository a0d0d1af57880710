//! The pair driver behind `throughput`, `latency`, `cluster` and `ws-echo`.
//!
//! Users come in pairs (2k, 2k+1) and both users of a pair send to each other. One task
//! drives both links of a pair, so it sees each message from both ends: it checks
//! exactly-once, in-order delivery ([`Conversation`]) and measures send → ack and
//! send → delivered latency without sharing anything with other tasks but counters.
//!
//! Two paces:
//! - [`Pace::Window`] (closed loop): each user keeps up to N messages in flight, sending the
//!   next one as soon as an ack frees a slot — the throughput the server sustains.
//! - [`Pace::Rate`] (open loop): each user sends on a fixed schedule whatever happens to the
//!   earlier messages. A message's latency counts from the time it was *scheduled* (or from
//!   when it actually went out, if that was earlier), so a stalled server cannot hide its
//!   stall by slowing the bench down (no coordinated omission). The task wakes up to
//!   [`EARLY`] before a send is due, because tokio's timer has millisecond granularity.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::check::{Conversation, Tally};
use crate::clock::{micros_between, now_ns, ns_of};
use crate::link::{Ev, Link};
use crate::procfs::{CpuMeter, CpuUse};
use crate::progress::Progress;
use crate::stats::{self, Sample};

/// How far ahead of its schedule an open-loop send may go out (timer granularity).
pub const EARLY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Closed loop: up to this many messages in flight per user.
    Window(usize),
    /// Open loop: each user sends one message every `period`.
    Rate { period: Duration },
}

/// When and how every pair sends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pace: Pace,
    /// Sending starts (all pairs together)…
    pub send_from: Instant,
    /// …latencies of messages started before this are not recorded, nor counted in the
    /// measured throughput (warm-up)…
    pub record_from: Instant,
    /// …and sending stops here. Then the pairs wait up to `drain` for what is in flight.
    pub send_until: Instant,
    pub drain: Duration,
    /// Content size in bytes.
    pub size: usize,
}

/// Counters shared by all pair tasks, read by the sampler.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    /// Set by the first pair that hits a fatal error: everyone stops sending.
    pub abort: AtomicBool,
}

/// The two users of a pair: (user index, link).
pub type Pair = [(usize, Link); 2];

/// A pair and when each side's first open-loop message is due.
pub type ScheduledPair = (Pair, [Instant; 2]);

/// One pair's outcome.
pub struct PairOutcome {
    pub tallies: [Tally; 2],
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub errors: Vec<String>,
}

struct Side {
    link: Link,
    /// Messages from this side to the other.
    conv: Conversation,
    /// Open loop: when the next message is due.
    next_due: Instant,
    user: usize,
}

/// Drives one pair until sending stops and everything is settled (or the drain ends).
/// `first_due` is when each side's first open-loop message is due.
pub async fn run_pair(
    links: Pair,
    first_due: [Instant; 2],
    plan: Arc<Plan>,
    counters: Arc<Counters>,
) -> PairOutcome {
    let [(ua, la), (ub, lb)] = links;
    let mut sides = [
        Side {
            link: la,
            conv: Conversation::default(),
            next_due: first_due[0],
            user: ua,
        },
        Side {
            link: lb,
            conv: Conversation::default(),
            next_due: first_due[1],
            user: ub,
        },
    ];
    let mut out = PairOutcome {
        tallies: [Tally::default(); 2],
        ack: stats::histogram(),
        e2e: stats::histogram(),
        errors: Vec::new(),
    };
    let record_from = ns_of(plan.record_from);
    let drain_until = plan.send_until + plan.drain;
    let timer = tokio::time::sleep_until(plan.send_from.into());
    tokio::pin!(timer);

    'run: loop {
        let now = Instant::now();
        // An open-loop schedule is kept even when this task wakes late (a busy machine):
        // every message due before `send_until` is sent, also after it.
        let behind = matches!(plan.pace, Pace::Rate { .. })
            && sides.iter().any(|s| s.next_due < plan.send_until);
        let sending = now >= plan.send_from
            && (now < plan.send_until || behind)
            && !counters.abort.load(Relaxed);
        if sending {
            for side in &mut sides {
                if let Err(e) = fill(side, &plan, now, &counters).await {
                    out.errors.push(format!("user {}: {e:#}", side.user));
                    counters.abort.store(true, Relaxed);
                    break 'run;
                }
            }
        }
        for side in &mut sides {
            if let Err(e) = side.link.flush().await {
                out.errors
                    .push(format!("user {}: write failed: {e:#}", side.user));
                counters.abort.store(true, Relaxed);
                break 'run;
            }
        }
        let settled = sides.iter().all(|s| s.conv.is_settled());
        if (now >= plan.send_until || counters.abort.load(Relaxed))
            && (settled || now >= drain_until)
        {
            break;
        }

        let wake = if now < plan.send_from {
            plan.send_from
        } else if sending {
            match plan.pace {
                Pace::Window(_) => plan.send_until,
                Pace::Rate { .. } => sides[0]
                    .next_due
                    .min(sides[1].next_due)
                    .checked_sub(EARLY)
                    .unwrap_or(now)
                    .min(plan.send_until),
            }
        } else {
            drain_until
        };
        if timer.deadline() != wake.into() {
            timer.as_mut().reset(wake.into());
        }

        let (which, frame) = {
            let [a, b] = &mut sides;
            tokio::select! {
                f = a.link.recv() => (0, Some(f)),
                f = b.link.recv() => (1, Some(f)),
                () = &mut timer => (2, None),
            }
        };
        let Some(frame) = frame else { continue };
        let other = 1 - which;
        match sides[which].link.decode(frame) {
            Ev::Nothing => {}
            Ev::Ack { seq } => {
                if let Some(start) = sides[which].conv.ack(seq) {
                    counters.acked.fetch_add(1, Relaxed);
                    if start >= record_from {
                        out.ack.saturating_record(micros_between(start, now_ns()));
                    }
                }
            }
            Ev::Deliver { seq, start_ns } => {
                sides[other].conv.deliver(seq);
                counters.delivered.fetch_add(1, Relaxed);
                if start_ns >= record_from {
                    out.e2e
                        .saturating_record(micros_between(start_ns, now_ns()));
                }
            }
            Ev::Fatal(e) => {
                out.errors.push(format!("user {}: {e}", sides[which].user));
                counters.abort.store(true, Relaxed);
                break;
            }
        }
    }

    for (i, side) in sides.into_iter().enumerate() {
        out.tallies[i] = side.conv.tally();
        let _ = tokio::time::timeout(Duration::from_secs(2), side.link.close()).await;
    }
    out
}

/// Queues whatever this side may send now.
async fn fill(
    side: &mut Side,
    plan: &Plan,
    now: Instant,
    counters: &Counters,
) -> anyhow::Result<()> {
    match plan.pace {
        Pace::Window(window) => {
            while side.conv.in_flight() < window {
                let start = now_ns();
                let seq = side.conv.send(start);
                side.link.feed(seq, start, plan.size).await?;
                counters.sent.fetch_add(1, Relaxed);
            }
        }
        Pace::Rate { period } => {
            while side.next_due <= now + EARLY && side.next_due < plan.send_until {
                let start = ns_of(side.next_due).min(now_ns());
                let seq = side.conv.send(start);
                side.link.feed(seq, start, plan.size).await?;
                counters.sent.fetch_add(1, Relaxed);
                side.next_due += period;
            }
        }
    }
    Ok(())
}

/// What a whole run of pairs gave.
pub struct RunOutcome {
    pub tally: Tally,
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub errors: Vec<String>,
    /// Throughput second by second while sending.
    pub series: Vec<Sample>,
    /// Counters over the measured window [`Plan::record_from`, `Plan::send_until`].
    pub window_seconds: f64,
    pub window_sent: u64,
    pub window_acked: u64,
    pub window_delivered: u64,
    pub cpu: CpuUse,
}

/// Runs every pair (`pairs[k]` = the two users' links, `first_due[k]` their first open-loop
/// send) under `plan`, sampling throughput every second.
pub async fn run_all(
    pairs: Vec<ScheduledPair>,
    plan: Plan,
    pid: Option<u32>,
    progress: &Progress,
) -> RunOutcome {
    let plan = Arc::new(plan);
    let counters = Arc::new(Counters::default());
    let done = Arc::new(AtomicBool::new(false));

    let window = {
        let (plan, counters) = (plan.clone(), counters.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(plan.record_from.into()).await;
            let before = snapshot(&counters);
            let meter = CpuMeter::start(pid);
            tokio::time::sleep_until(plan.send_until.into()).await;
            let after = snapshot(&counters);
            (before, after, meter.stop())
        })
    };

    let total = plan.send_until.saturating_duration_since(plan.send_from);
    progress.start("sending", total.as_secs().max(1));
    let sampler = {
        let (plan, counters, done) = (plan.clone(), counters.clone(), done.clone());
        let bar = progress.clone();
        tokio::spawn(async move { sample(plan, counters, done, bar).await })
    };

    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(links, due)| tokio::spawn(run_pair(links, due, plan.clone(), counters.clone())))
        .collect();
    let mut tally = Tally::default();
    let mut ack = stats::histogram();
    let mut e2e = stats::histogram();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => {
                tally += o.tallies[0];
                tally += o.tallies[1];
                stats::merge(&mut ack, &o.ack);
                stats::merge(&mut e2e, &o.e2e);
                errors.extend(o.errors);
            }
            Err(e) => errors.push(format!("a pair task failed: {e}")),
        }
    }
    done.store(true, Relaxed);
    let series = sampler.await.unwrap_or_default();
    progress.finish();
    let aborted_early = Instant::now() < plan.send_until;
    let (before, after, cpu) = if aborted_early {
        window.abort();
        let s = snapshot(&counters);
        (s, s, CpuMeter::start(pid).stop())
    } else {
        match window.await {
            Ok(w) => w,
            Err(_) => {
                let s = snapshot(&counters);
                (s, s, CpuMeter::start(pid).stop())
            }
        }
    };
    RunOutcome {
        tally,
        ack,
        e2e,
        errors,
        series,
        window_seconds: plan
            .send_until
            .saturating_duration_since(plan.record_from)
            .as_secs_f64(),
        window_sent: after.0 - before.0,
        window_acked: after.1 - before.1,
        window_delivered: after.2 - before.2,
        cpu,
    }
}

fn snapshot(c: &Counters) -> (u64, u64, u64) {
    (
        c.sent.load(Relaxed),
        c.acked.load(Relaxed),
        c.delivered.load(Relaxed),
    )
}

async fn sample(
    plan: Arc<Plan>,
    counters: Arc<Counters>,
    done: Arc<AtomicBool>,
    bar: Progress,
) -> Vec<Sample> {
    const EVERY: Duration = Duration::from_secs(1);
    tokio::time::sleep_until(plan.send_from.into()).await;
    let mut series = Vec::new();
    let mut last = snapshot(&counters);
    let mut at = plan.send_from;
    // Whole seconds of sending only: the drain that follows is not a rate.
    while !done.load(Relaxed) && at + EVERY <= plan.send_until {
        at += EVERY;
        tokio::time::sleep_until(at.into()).await;
        let now = snapshot(&counters);
        let secs = EVERY.as_secs_f64();
        let s = Sample {
            t: at.duration_since(plan.send_from).as_secs_f64(),
            sent_per_second: (now.0 - last.0) as f64 / secs,
            acked_per_second: (now.1 - last.1) as f64 / secs,
            delivered_per_second: (now.2 - last.2) as f64 / secs,
        };
        last = now;
        series.push(s);
        bar.set(s.t as u64);
        bar.message(format!(
            "acked {}/s  delivered {}/s",
            stats::group(s.acked_per_second as u64),
            stats::group(s.delivered_per_second as u64)
        ));
    }
    series
}
