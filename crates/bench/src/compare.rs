//! `compare`: the `throughput` scenario against several servers of the contract in one run,
//! side by side, and each server's ratio to a peer.
//!
//! The machines these figures come from are shared and drift from minute to minute, so a
//! figure means something only beside another taken in the same minutes. For every
//! in-flight level and round, every target and then the peer are measured one after the
//! other, with the same users, window and duration, and each target's durable sends/s is
//! divided by the peer's from the same round.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::cli::{Common, CompareArgs, LoadArgs, ThroughputArgs};
use crate::link::{AckMode, Contract};
use crate::report::{Report, Results};
use crate::scenario::load;
use crate::stats::{fmt_ms, group};

/// A server to measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub label: String,
    pub url: String,
    pub pid: Option<u32>,
    pub contract: Contract,
}

/// `LABEL=URL` or `LABEL=URL@PID`.
pub fn parse_server(spec: &str, contract: Contract) -> Result<Server> {
    let (label, rest) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("expected LABEL=URL[@PID], got {spec:?}"))?;
    let (url, pid) = match rest.rsplit_once('@') {
        Some((url, pid)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
            (url, Some(pid.parse()?))
        }
        _ => (rest, None),
    };
    if label.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("expected LABEL=URL[@PID] with an http:// URL, got {spec:?}");
    }
    Ok(Server {
        label: label.to_string(),
        url: url.to_string(),
        pid,
        contract,
    })
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub server: String,
    pub inflight: usize,
    pub round: usize,
    pub acked_per_second: f64,
    pub ack_p50_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub server_cpu_percent: Option<f64>,
    pub bench_cpu_percent: f64,
    /// Durable sends/s over the peer's in the same round (the peer's own row: 1).
    pub ratio_to_peer: Option<f64>,
    pub passed: bool,
    pub failures: Vec<String>,
    /// `/proc/loadavg` (1 minute) when the run started.
    pub load_average: Option<f64>,
}

/// What `compare` reports.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub servers: Vec<Server>,
    pub peer: String,
    pub users: usize,
    pub duration_seconds: f64,
    pub rows: Vec<Row>,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
    pub passed: bool,
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs every (in-flight level, round, server) in turn.
pub async fn run(common: &Common, args: &CompareArgs) -> Result<Comparison> {
    let mut servers = args
        .targets
        .iter()
        .map(|t| parse_server(t, Contract::Nexus))
        .collect::<Result<Vec<_>>>()?;
    if servers.is_empty() {
        let url = common
            .urls
            .first()
            .ok_or_else(|| anyhow!("give a --target"))?;
        servers.push(Server {
            label: "nexus".into(),
            url: url.clone(),
            pid: common.pid,
            contract: Contract::Nexus,
        });
    }
    let peer = parse_server(&args.peer, args.contract)?;
    if servers.iter().any(|s| s.label == peer.label) {
        bail!("the peer's label {:?} is also a target's", peer.label);
    }
    servers.push(peer.clone());
    if args.inflight.is_empty() || args.inflight.contains(&0) {
        bail!("--inflight must be at least 1");
    }

    let before = load_average();
    let mut rows = Vec::new();
    for &inflight in &args.inflight {
        for round in 1..=args.rounds.max(1) {
            let mut this_round = Vec::new();
            for server in &servers {
                if !common.json {
                    eprintln!(
                        "compare: {} × {inflight} in flight, round {round}: {} ({})",
                        args.users, server.label, server.url
                    );
                }
                let common = Common {
                    urls: vec![server.url.clone()],
                    pid: server.pid,
                    plot: None,
                    ..common.clone()
                };
                let throughput = ThroughputArgs {
                    load: LoadArgs {
                        users: args.users,
                        inflight,
                        duration: args.duration,
                        warmup: args.warmup,
                        size: args.size,
                        drain: 10.0,
                        group_size: 0,
                    },
                    ack: AckMode::Event,
                    contract: server.contract,
                };
                let load_average = load_average();
                let report = load::throughput(&common, &throughput).await?;
                this_round.push(row(&server.label, inflight, round, load_average, &report));
            }
            let peer_rate = this_round
                .iter()
                .find(|r| r.server == peer.label)
                .map(|r| r.acked_per_second);
            for r in &mut this_round {
                r.ratio_to_peer = peer_rate
                    .filter(|p| *p > 0.0)
                    .map(|p| (r.acked_per_second / p * 100.0).round() / 100.0);
            }
            rows.extend(this_round);
        }
    }
    // The peer's own correctness failures are shown in its rows but do not fail the run:
    // the run measures the targets (the seed stack's peer, for one, reorders a sender's
    // messages once several are in flight: its handlers insert concurrently from a pool).
    let passed = rows
        .iter()
        .filter(|r| r.server != peer.label)
        .all(|r| r.passed);
    Ok(Comparison {
        servers,
        peer: peer.label,
        users: args.users,
        duration_seconds: args.duration,
        rows,
        load_average_before: before,
        load_average_after: load_average(),
        passed,
    })
}

fn row(label: &str, inflight: usize, round: usize, load: Option<f64>, report: &Report) -> Row {
    let Results::Load(r) = &report.results else {
        unreachable!("throughput reports a load result")
    };
    Row {
        server: label.to_string(),
        inflight,
        round,
        acked_per_second: r.acked_per_second,
        ack_p50_ms: r.ack_latency_ms.p50,
        e2e_p50_ms: r.e2e_latency_ms.p50,
        e2e_p99_ms: r.e2e_latency_ms.p99,
        server_cpu_percent: r.cpu.server_percent,
        bench_cpu_percent: r.cpu.bench_percent,
        ratio_to_peer: None,
        passed: report.passed,
        failures: report.failures.clone(),
        load_average: load,
    }
}

impl Comparison {
    /// The table, one line per measurement.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "nexus-bench compare: {} users in pairs, {} s per run, durable acks (MESSAGE_SENT) counted; \
             ratio = durable sends/s over {}'s in the same round",
            self.users, self.duration_seconds, self.peer
        );
        let _ = writeln!(
            out,
            "{:>8} {:>5}  {:<14} {:>13} {:>10} {:>10} {:>10} {:>9} {:>8} {:>7} {:>5}",
            "inflight",
            "round",
            "server",
            "durable/s",
            "ack p50",
            "e2e p50",
            "e2e p99",
            "server %",
            "bench %",
            "ratio",
            "load"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:>8} {:>5}  {:<14} {:>13} {:>10} {:>10} {:>10} {:>9} {:>8.0} {:>7} {:>5}{}",
                r.inflight,
                r.round,
                r.server,
                group(r.acked_per_second as u64),
                fmt_ms(r.ack_p50_ms),
                fmt_ms(r.e2e_p50_ms),
                fmt_ms(r.e2e_p99_ms),
                r.server_cpu_percent
                    .map_or_else(|| "-".into(), |c| format!("{c:.0}")),
                r.bench_cpu_percent,
                r.ratio_to_peer
                    .map_or_else(|| "-".into(), |x| format!("{x:.2}×")),
                r.load_average
                    .map_or_else(|| "-".into(), |l| format!("{l:.1}")),
                if r.passed {
                    String::new()
                } else {
                    format!("  FAILED: {}", r.failures.join("; "))
                }
            );
        }
        let la = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "load average (1 min): {} before, {} after",
            la(self.load_average_before),
            la(self.load_average_after)
        );
        out
    }

    /// Prints the comparison; exit 1 when a target's run failed its correctness checks.
    pub fn output(&self, common: &Common) -> ExitCode {
        if common.json {
            match serde_json::to_string_pretty(self) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    eprintln!("nexus-bench: cannot encode the report: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            print!("{}", self.human());
        }
        if self.passed {
            ExitCode::SUCCESS
        } else {
            eprintln!("nexus-bench: FAILED: a target's run did not pass its correctness checks");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_a_pid() {
        assert_eq!(
            parse_server("pg=http://127.0.0.1:3301@42", Contract::Nexus).unwrap(),
            Server {
                label: "pg".into(),
                url: "http://127.0.0.1:3301".into(),
                pid: Some(42),
                contract: Contract::Nexus
            }
        );
        let s = parse_server("seed=http://127.0.0.1:3100", Contract::Brief).unwrap();
        assert_eq!((s.pid, s.contract), (None, Contract::Brief));
        assert!(parse_server("http://127.0.0.1:3100", Contract::Nexus).is_err());
        assert!(parse_server("x=127.0.0.1:3100", Contract::Nexus).is_err());
    }
}
