//! The command line: global flags, one subcommand per scenario, and the entry point.
//!
//! Exit status: 0 when the run passed, 1 when it measured but found a correctness failure
//! (loss, duplication, reordering, refused or unacknowledged sends, dropped connections),
//! 2 when it could not run (bad flags, server unreachable, registration refused…).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::link::{AckMode, Contract};
use crate::report::Report;
use crate::scenario;

const ABOUT: &str =
    "Load generator for servers implementing the Nexus contract (Socket.IO v4 over WebSocket)";

const LONG_ABOUT: &str = "\
Load generator for any server implementing the Nexus contract (docs/protocol.md): it registers
its own users through POST /auth/register, connects them to the Socket.IO namespace /ws over
WebSocket (Engine.IO 4) and uses only the contract's events: NEW_MESSAGE with a tempId, the
MESSAGE_SENT acknowledgement, the receiver's NEW_MESSAGE.

Every scenario checks correctness while it measures: each acknowledged message must reach its
receiver exactly once and in order (a sequence number travels in the content). Exit status:
0 passed, 1 correctness failure (loss, duplication, reordering, refused sends, dropped
connections), 2 could not run.

The server must allow the send rate: start it with RATE_LIMIT_MESSAGES_PER_MINUTE=100000000
(and, since every
simulated user registers from this machine, RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000).";

#[derive(Parser, Debug)]
#[command(name = "nexus-bench", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every scenario takes (before or after the subcommand).
#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Base URL of a server implementing the contract. Repeat for several nodes: user i is
    /// registered and connected on URL (i mod n), so the two users of a pair are on
    /// different nodes whenever there are two or more.
    #[arg(
        long = "url",
        value_name = "URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub urls: Vec<String>,

    /// Print the report as one JSON object on stdout instead of the human summary (the
    /// progress bar is hidden too).
    #[arg(long, global = true)]
    pub json: bool,

    /// Also draw a PNG chart: throughput over time and the latency distribution for the
    /// message scenarios, connections open over time for `connections`, events fetched
    /// over time for `catchup`.
    #[arg(long, value_name = "FILE.png", global = true)]
    pub plot: Option<PathBuf>,

    /// PID of the server process: the report adds its CPU use, resident memory and what it
    /// wrote to storage per acknowledged message (read from /proc/PID/stat, /proc/PID/status
    /// and /proc/PID/io); `connections` needs it for RSS per connection.
    #[arg(long, value_name = "PID", global = true)]
    pub pid: Option<u32>,

    /// Worker threads of the load generator [default: the number of CPUs].
    #[arg(long, value_name = "N", global = true)]
    pub threads: Option<usize>,

    /// How many users are registered at once (each costs the server a password hash).
    #[arg(long, value_name = "N", default_value_t = 8, global = true)]
    pub register_concurrency: usize,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Peak closed-loop throughput: users in pairs send to each other as fast as their
    /// acknowledgements allow (--inflight per user); reports durable sends/s (MESSAGE_SENT
    /// received) and deliveries/s.
    Throughput(ThroughputArgs),
    /// Open-loop latency at a fixed total rate: sends follow a schedule whatever the server
    /// does (no coordinated omission); HDR percentiles of send → MESSAGE_SENT and send →
    /// delivered, timed from the scheduled send time carried in the message.
    Latency(LatencyArgs),
    /// Idle connections: open N sockets (M users, several per user) from several 127.0.0.x
    /// source addresses, hold them through the Engine.IO heartbeats, report how many stayed
    /// up and the server's RSS per connection (--pid).
    Connections(ConnectionsArgs),
    /// Catch-up: a receiver misses K messages while offline, then fetches them through
    /// GET /sync pages until hasMore=false; reports the time to catch up and checks count
    /// and order.
    Catchup(CatchupArgs),
    /// Cluster latency: like `latency` over several nodes (give each node's --url). With
    /// `--placement cross` (the default) users are spread round-robin over the URLs so each
    /// pair spans two nodes (every message crosses Redis); with `--placement same` both
    /// users of a pair are on one node (pairs still spread over the nodes). Run both at the
    /// same --rate to see what crossing nodes costs.
    Cluster(ClusterArgs),
    /// Runs the raw WebSocket relay that `ws-echo` measures (the ceiling): per message one
    /// frame in, an ack back to the sender and the frame forwarded to the partner.
    WsEchoServer(EchoServerArgs),
    /// The ceiling: the `throughput` scenario against `ws-echo-server` (give its address
    /// with --url http://HOST:PORT), same pairs, same window, same driver.
    WsEcho(LoadArgs),
    /// Side by side: the `throughput` scenario against several servers of the contract in
    /// one run (each `--target`, then the `--peer`, in turn, for every `--inflight` level
    /// and `--rounds` times), with the same users, window and duration; prints durable
    /// sends/s, latencies and CPU per server and each server's ratio to the peer. Start the
    /// servers first (scripts/bench-compare.sh starts nexus on SQLite and PostgreSQL and the
    /// Node peer in crates/bench/peer, and runs this).
    Compare(CompareArgs),
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct CompareArgs {
    /// A server to measure, as LABEL=URL or LABEL=URL@PID (the PID adds its CPU use).
    /// Repeat for several; without any, `nexus=` the first --url.
    #[arg(long = "target", value_name = "LABEL=URL[@PID]")]
    pub targets: Vec<String>,
    /// The server the others are compared with, as LABEL=URL or LABEL=URL@PID (such as the
    /// seed stack's Node peer).
    #[arg(long, value_name = "LABEL=URL[@PID]")]
    pub peer: String,
    /// The peer's event shapes (the targets speak the Nexus contract).
    #[arg(long, value_enum, default_value_t = Contract::Nexus)]
    pub contract: Contract,
    /// Users (an even number), paired as in `throughput`.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Messages in flight per user; repeat for several levels.
    #[arg(long = "inflight", default_values_t = [1, 16])]
    pub inflight: Vec<usize>,
    /// Seconds of measured sending per run, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of sending before each measurement.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// How many times each (server, in-flight level) is measured, interleaved.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// The closed-loop load shape shared by `throughput` and `ws-echo`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct LoadArgs {
    /// Users (an even number): paired 0-1, 2-3, …; both users of a pair send to each other,
    /// one socket each.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Messages each user keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,
    /// Seconds of measured sending, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of sending before the measurement starts (excluded from the figures).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait, once sending stops, for outstanding acks and deliveries; what is
    /// still missing then is reported as unacknowledged or lost.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// 0: 1:1 messages (by `receiverId`). N ≥ 2: each pair talks in a group of N members
    /// (the pair and N−2 members who are registered but never connect), sending by
    /// `conversationId`; every message then costs N change-log rows.
    #[arg(long, default_value_t = 0)]
    pub group_size: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ThroughputArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// How sends are acknowledged: the MESSAGE_SENT event, or a Socket.IO ack callback.
    #[arg(long, value_enum, default_value_t = AckMode::Event)]
    pub ack: AckMode,
    /// The server's event shapes: the Nexus contract, or the original brief's (no `seq`).
    #[arg(long, value_enum, default_value_t = Contract::Nexus)]
    pub contract: Contract,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct LatencyArgs {
    /// Users (an even number), paired; both users of a pair send to each other.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Total send rate over all users, messages per second (each user sends every
    /// users/rate seconds, start times staggered evenly).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of measured sending, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of sending before the measurement starts (excluded from the figures).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait, once sending stops, for outstanding acks and deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// How sends are acknowledged: the MESSAGE_SENT event, or a Socket.IO ack callback.
    #[arg(long, value_enum, default_value_t = AckMode::Event)]
    pub ack: AckMode,
    /// 0: 1:1 messages (by `receiverId`). N ≥ 2: each pair talks in a group of N members
    /// (the pair and N−2 members who are registered but never connect), sending by
    /// `conversationId`; every message then costs N change-log rows.
    #[arg(long, default_value_t = 0)]
    pub group_size: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ClusterArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub latency: LatencyArgs,
    /// Where the two users of a pair are: on two different nodes, or on the same one.
    #[arg(long, value_enum, default_value_t = Placement::Cross)]
    pub placement: Placement,
}

/// Where the users of a pair connect (`cluster`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Cross,
    Same,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ConnectionsArgs {
    /// Connections to open and hold. Each is a file of this process: more than `ulimit -n`
    /// minus 64 is refused before anything starts (on this project's machine 19,936; run
    /// several processes with a share each for more, against a server that can hold them).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Users to register (connection i belongs to user i mod users). Registration costs an
    /// argon2 hash each, so for thousands of connections use fewer users.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Source addresses 127.0.0.1 … 127.0.0.K, used in turn, each with its own ephemeral
    /// port range (IPv4 loopback targets only).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,
    /// Seconds to hold the connections open once all are up. The server's ping interval is
    /// 25 s by default, so hold at least 60 s to see heartbeats; nexus closes silent sockets
    /// after IDLE_TIMEOUT_SECONDS (default 300).
    #[arg(long, default_value_t = 60.0)]
    pub hold: f64,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct CatchupArgs {
    /// Messages the receiver misses while offline.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// `limit` of each GET /sync page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Messages the sender keeps in flight while filling the gap.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Message content size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct EchoServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
}

/// Parses the command line, runs the scenario, prints the report; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli
        .common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nexus-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let common = cli.common.clone();
    if let Command::Compare(args) = &cli.command {
        return match runtime.block_on(crate::compare::run(&common, args)) {
            Ok(outcome) => outcome.output(&common),
            Err(e) => {
                eprintln!("nexus-bench: error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match runtime.block_on(scenario::run(cli)) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) => output(&common, &report),
        Err(e) => {
            eprintln!("nexus-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn output(common: &Common, report: &Report) -> ExitCode {
    if common.json {
        match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("nexus-bench: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.human());
    }
    if let Some(path) = &common.plot {
        match crate::plot::draw(path, &report.plot) {
            Ok(()) if !common.json => eprintln!("plot written to {}", path.display()),
            Ok(()) => {}
            Err(e) => eprintln!("nexus-bench: {e:#}"),
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("nexus-bench: FAILED: {}", report.failures.join("; "));
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere_and_urls_repeat() {
        let cli = Cli::try_parse_from([
            "nexus-bench",
            "cluster",
            "--url",
            "http://127.0.0.1:3001",
            "--url",
            "http://127.0.0.1:3002",
            "--json",
            "--rate",
            "500",
        ])
        .unwrap();
        assert_eq!(cli.common.urls.len(), 2);
        assert!(cli.common.json);
        let Command::Cluster(args) = cli.command else {
            panic!("not cluster")
        };
        assert_eq!(args.latency.rate, 500.0);
        assert_eq!(args.placement, Placement::Cross);

        let cli = Cli::try_parse_from(["nexus-bench", "throughput"]).unwrap();
        assert_eq!(cli.common.urls, vec!["http://127.0.0.1:3000".to_string()]);

        let cli = Cli::try_parse_from([
            "nexus-bench",
            "compare",
            "--peer",
            "seed=http://127.0.0.1:3100",
            "--contract",
            "brief",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(args.inflight, vec![1, 16]);
        assert_eq!(args.users, 200);
        assert_eq!(args.contract, Contract::Brief);
    }
}
