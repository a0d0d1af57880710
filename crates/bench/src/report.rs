//! What a run reports: one [`Report`] per run, printed as a human summary or as JSON
//! (`--json`), and the data its plot is drawn from.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::Correctness;
use crate::procfs::CpuUse;
use crate::stats::{fmt_ms, group, Percentiles, Sample};

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// The base URLs the run used.
    pub targets: Vec<String>,
    /// The scenario's parameters as given on the command line.
    pub parameters: serde_json::Value,
    pub results: Results,
    pub correctness: Correctness,
    pub passed: bool,
    /// One line per failure (empty when `passed`).
    pub failures: Vec<String>,
    #[serde(skip)]
    pub plot: PlotData,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Results {
    Load(LoadResult),
    Connections(ConnectionsResult),
    Catchup(CatchupResult),
}

/// `throughput`, `latency`, `cluster` and `ws-echo`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub users: usize,
    pub pairs: usize,
    pub nodes: usize,
    /// Pairs whose two users are connected to different nodes.
    pub cross_node_pairs: usize,
    /// `"16 in flight per user"` or `"open loop, 1000 msgs/s"`.
    pub pace: String,
    /// Open loop: the intended total send rate (msgs/s).
    pub target_rate: Option<f64>,
    pub measured_seconds: f64,
    pub sent_per_second: f64,
    /// Durable sends per second: acknowledgements (`MESSAGE_SENT`) received.
    pub acked_per_second: f64,
    /// Messages received by their receivers per second.
    pub delivered_per_second: f64,
    /// Send → `MESSAGE_SENT`.
    pub ack_latency_ms: Percentiles,
    /// Send → the receiver got the message.
    pub e2e_latency_ms: Percentiles,
    pub cpu: CpuUse,
    pub series: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsResult {
    pub requested: usize,
    pub users: usize,
    pub source_addresses: Vec<String>,
    pub established: usize,
    pub failed: usize,
    pub connect_seconds: f64,
    pub connect_latency_ms: Percentiles,
    pub hold_seconds: f64,
    /// The server's Engine.IO ping interval (from its open packet).
    pub ping_interval_seconds: f64,
    /// Connections still open at the end of the hold.
    pub alive_at_end: usize,
    /// Connections the server closed (or that broke) during the hold.
    pub dropped: usize,
    /// Open at the end and answered every ping the hold should have brought.
    pub heartbeat_healthy: usize,
    pub pings_min: u64,
    pub pings_max: u64,
    pub server_rss_before_mib: Option<f64>,
    pub server_rss_connected_mib: Option<f64>,
    pub server_rss_end_mib: Option<f64>,
    /// (RSS with all connections open − RSS before) / established, KiB.
    pub server_rss_per_connection_kib: Option<f64>,
    pub bench_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatchupResult {
    pub messages: u64,
    pub page_size: u32,
    /// Seconds the sender took to get all messages acknowledged while the receiver was away.
    pub send_seconds: f64,
    pub sends_per_second: f64,
    /// Time from the first `GET /sync` to the last page, ms.
    pub catchup_ms: f64,
    pub pages: usize,
    pub events_per_second: f64,
    pub first_page_ms: f64,
    pub page_latency_ms: Percentiles,
    pub events_received: u64,
}

/// What `--plot` draws.
#[derive(Default)]
pub enum PlotData {
    #[default]
    None,
    Load {
        title: String,
        series: Vec<Sample>,
        latencies: Vec<(String, Histogram<u64>)>,
    },
    Connections {
        title: String,
        /// (seconds since the first connect, connections open).
        open: Vec<(f64, u64)>,
    },
    Catchup {
        title: String,
        /// (ms since the first request, events fetched so far).
        fetched: Vec<(f64, u64)>,
    },
}

impl Report {
    /// Sets `passed` and `failures` from the correctness ledger.
    pub fn finish(mut self) -> Report {
        self.failures = self.correctness.finish();
        self.passed = self.correctness.passed;
        self
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "nexus-bench {} → {}",
            self.scenario,
            self.targets.join(", ")
        );
        match &self.results {
            Results::Load(r) => load(&mut s, r, self.scenario),
            Results::Connections(r) => connections(&mut s, r),
            Results::Catchup(r) => catchup(&mut s, r),
        }
        let t = &self.correctness.tally;
        if t.sent == 0 {
            let _ = writeln!(
                s,
                "correctness: {}",
                if self.passed { "PASSED" } else { "FAILED" }
            );
            for f in &self.failures {
                let _ = writeln!(s, "  ✗ {f}");
            }
        } else if self.passed {
            let _ = writeln!(
                s,
                "correctness: PASSED — {} sent, {} acknowledged, {} delivered exactly once and in order",
                group(t.sent),
                group(t.acked),
                group(t.delivered)
            );
        } else {
            let _ = writeln!(
                s,
                "correctness: FAILED — {} sent, {} acknowledged, {} delivered",
                group(t.sent),
                group(t.acked),
                group(t.delivered)
            );
            for f in &self.failures {
                let _ = writeln!(s, "  ✗ {f}");
            }
        }
        s
    }
}

fn load(s: &mut String, r: &LoadResult, scenario: &str) {
    let (acked, delivered) = if scenario == "ws-echo" {
        ("acks (relay \"A\" frames)", "deliveries (relayed frames)")
    } else {
        ("durable sends (MESSAGE_SENT)", "deliveries (NEW_MESSAGE)")
    };
    let _ = writeln!(
        s,
        "  {} users in {} pairs on {} node(s) ({} cross-node pairs), {}",
        r.users, r.pairs, r.nodes, r.cross_node_pairs, r.pace
    );
    let _ = writeln!(s, "  measured over {:.1} s", r.measured_seconds);
    let _ = writeln!(
        s,
        "  {acked:<32} {:>10} msgs/s",
        group(r.acked_per_second as u64)
    );
    let _ = writeln!(
        s,
        "  {delivered:<32} {:>10} msgs/s",
        group(r.delivered_per_second as u64)
    );
    if let Some(rate) = r.target_rate {
        let _ = writeln!(
            s,
            "  {:<32} {:>10} msgs/s (target {})",
            "sent",
            group(r.sent_per_second as u64),
            group(rate as u64)
        );
    }
    let _ = writeln!(s, "  send → ack        {}", r.ack_latency_ms.line());
    let _ = writeln!(s, "  send → delivered  {}", r.e2e_latency_ms.line());
    cpu(s, &r.cpu);
    if let Some(mib) = r.cpu.server_written_mib {
        let acked = r.acked_per_second * r.measured_seconds;
        let per_message = if acked > 0.0 {
            format!(
                " = {:.1} KiB per acknowledged message",
                mib * 1024.0 / acked
            )
        } else {
            String::new()
        };
        let _ = writeln!(s, "  storage: server wrote {mib:.1} MiB{per_message}");
    }
}

fn cpu(s: &mut String, c: &CpuUse) {
    let server = c
        .server_percent
        .map_or("? (no --pid)".to_string(), |p| format!("{p:.0}%"));
    let rss = c
        .server_rss_mib
        .map_or(String::new(), |m| format!(", server RSS {m:.0} MiB"));
    let _ = writeln!(
        s,
        "  CPU: server {server}, bench {:.0}% (of {}% on {} cores){rss}",
        c.bench_percent,
        100 * c.cores,
        c.cores
    );
}

fn connections(s: &mut String, r: &ConnectionsResult) {
    let _ = writeln!(
        s,
        "  {} connections of {} users from {}",
        group(r.requested as u64),
        group(r.users as u64),
        r.source_addresses.join(", ")
    );
    let _ = writeln!(
        s,
        "  established {} ({} failed) in {:.1} s; connect {}",
        group(r.established as u64),
        r.failed,
        r.connect_seconds,
        r.connect_latency_ms.line()
    );
    let _ = writeln!(
        s,
        "  held {:.0} s (server pings every {:.0} s): {} still open, {} dropped, {} answered every ping (pings per connection {}–{})",
        r.hold_seconds,
        r.ping_interval_seconds,
        group(r.alive_at_end as u64),
        r.dropped,
        group(r.heartbeat_healthy as u64),
        r.pings_min,
        r.pings_max
    );
    match (
        r.server_rss_before_mib,
        r.server_rss_connected_mib,
        r.server_rss_per_connection_kib,
    ) {
        (Some(b), Some(c), Some(per)) => {
            let _ = writeln!(
                s,
                "  server RSS {b:.1} MiB before → {c:.1} MiB connected ({} at the end): {per:.2} KiB per connection",
                r.server_rss_end_mib.map_or("?".into(), |e| format!("{e:.1} MiB"))
            );
        }
        _ => {
            let _ = writeln!(s, "  server RSS: not measured (give --pid PID)");
        }
    }
}

fn catchup(s: &mut String, r: &CatchupResult) {
    let _ = writeln!(
        s,
        "  offline receiver missed {} messages (sent at {} msgs/s in {:.2} s)",
        group(r.messages),
        group(r.sends_per_second as u64),
        r.send_seconds
    );
    let _ = writeln!(
        s,
        "  caught up through GET /sync in {} ({} pages of ≤ {}, {} events/s; first page {})",
        fmt_ms(r.catchup_ms),
        r.pages,
        r.page_size,
        group(r.events_per_second as u64),
        fmt_ms(r.first_page_ms)
    );
    let _ = writeln!(s, "  page latency      {}", r.page_latency_ms.line());
}
