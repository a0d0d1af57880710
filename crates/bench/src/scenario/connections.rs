//! `connections`: many idle sockets. Opens N connections for M users (several sockets per
//! user, since registering costs an argon2 hash each) from source addresses
//! 127.0.0.1…127.0.0.K, holds them through the Engine.IO heartbeats (each socket answers the
//! server's pings) and reports how many stayed up and, with `--pid`, the server's resident
//! memory per connection.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::stream::{self, StreamExt};
use nexus_protocol::events::{self, ForceDisconnect};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::check::Correctness;
use crate::cli::{Common, ConnectionsArgs};
use crate::procfs::{open_files_limit, rss_kib};
use crate::progress::Progress;
use crate::report::{ConnectionsResult, PlotData, Report, Results};
use crate::sio::{self, Incoming, SioConn, Target};
use crate::stats::{self, Percentiles};

/// Files the bench keeps open besides its sockets (runtime, registration, /proc, output).
const FILES_BESIDES_SOCKETS: u64 = 64;

/// Read buffer per idle socket: the server sends little besides pings.
const READ_BUFFER: usize = 4 * 1024;

/// What one held connection went through.
struct Held {
    pings: u64,
    ping_interval: Duration,
    connected_at: Instant,
    /// Why it closed before the end of the hold, if it did.
    dropped: Option<String>,
}

pub async fn run(common: &Common, args: &ConnectionsArgs) -> Result<Report> {
    if args.connections == 0 || args.users == 0 || args.sources == 0 {
        bail!("--connections, --users and --sources must be at least 1");
    }
    let hold = Duration::try_from_secs_f64(args.hold)
        .map_err(|_| anyhow::anyhow!("--hold must be a non-negative number of seconds"))?;
    // Each socket is a file of this process: past the limit the last sockets would fail to
    // open and look like the server's failures.
    let limit = open_files_limit()?;
    if (args.connections as u64).saturating_add(FILES_BESIDES_SOCKETS) > limit {
        bail!(
            "--connections {} needs {} more files than this process may open ({limit}, \
             `ulimit -n`): raise the limit, or run several nexus-bench processes with a share \
             of the connections each",
            args.connections,
            (args.connections as u64 + FILES_BESIDES_SOCKETS).saturating_sub(limit)
        );
    }
    let progress = Progress::new(!common.json);
    let api = Api::new(common.register_concurrency)?;
    let users = api
        .register_many(
            &common.urls,
            args.users.min(args.connections),
            common.register_concurrency,
            &progress,
        )
        .await?;
    drop(api);
    let targets = users
        .iter()
        .map(|u| Target::parse(&u.url))
        .collect::<Result<Vec<_>>>()?;
    let sources: Vec<IpAddr> = (1..=args.sources)
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
        .collect();
    let mut correctness = Correctness::default();

    let rss = |_: ()| common.pid.and_then(|p| rss_kib(Some(p)).ok());
    let rss_before = rss(());

    let (stop, stopped) = watch::channel(false);
    let open = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let sampler = {
        let (open, stopped) = (open.clone(), stopped.clone());
        tokio::spawn(async move { sample_open(open, stopped, started).await })
    };

    progress.start("connecting", args.connections as u64);
    let mut connect_latency = stats::histogram();
    let mut holders: Vec<JoinHandle<Held>> = Vec::with_capacity(args.connections);
    let mut failed = 0;
    let mut attempts = stream::iter(0..args.connections)
        .map(|i| {
            let u = i % users.len();
            let (target, token, source) =
                (&targets[u], &users[u].token, sources[i % sources.len()]);
            async move {
                let t = Instant::now();
                let conn =
                    SioConn::connect(target, token, Some(source), sio::ws_config(READ_BUFFER))
                        .await;
                (t.elapsed(), source, conn)
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1));
    while let Some((took, source, conn)) = attempts.next().await {
        progress.inc(1);
        match conn {
            Ok(conn) => {
                connect_latency.saturating_record(took.as_micros() as u64);
                open.fetch_add(1, Relaxed);
                holders.push(tokio::spawn(hold_open(conn, stopped.clone(), open.clone())));
            }
            Err(e) => {
                failed += 1;
                correctness.error(format!("connecting from {source} failed: {e:#}"));
            }
        }
    }
    drop(attempts);
    let connect_seconds = started.elapsed().as_secs_f64();
    progress.finish();
    let established = holders.len();

    // Let the server settle (allocations after the handshake) before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss(());

    progress.start("holding", hold.as_secs().max(1));
    let hold_start = Instant::now();
    while hold_start.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(1).min(hold)).await;
        progress.set(hold_start.elapsed().as_secs());
        progress.message(format!("{} open", stats::group(open.load(Relaxed))));
    }
    progress.finish();
    let rss_end = rss(());
    let bench_rss = rss_kib(None).ok();

    let _ = stop.send(true);
    let stopped_at = Instant::now();
    let mut pings = (u64::MAX, 0u64);
    let (mut dropped, mut healthy) = (0, 0);
    let mut ping_interval = Duration::ZERO;
    for h in holders {
        let Ok(held) = h.await else {
            dropped += 1;
            continue;
        };
        ping_interval = held.ping_interval;
        pings = (pings.0.min(held.pings), pings.1.max(held.pings));
        match held.dropped {
            Some(why) => {
                dropped += 1;
                correctness.error(format!("a connection dropped during the hold: {why}"));
            }
            None => {
                let lived = stopped_at.duration_since(held.connected_at).as_secs_f64();
                let interval = held.ping_interval.as_secs_f64().max(1e-3);
                let expected = ((lived / interval).floor() as u64).saturating_sub(1);
                if held.pings >= expected {
                    healthy += 1;
                }
            }
        }
    }
    let series = sampler.await.unwrap_or_default();
    if pings.0 == u64::MAX {
        pings.0 = 0;
    }

    let mib = |k: Option<u64>| k.map(|k| stats::round3(k as f64 / 1024.0));
    let per_connection = match (rss_before, rss_connected) {
        (Some(b), Some(c)) if established > 0 => Some(stats::round3(
            c.saturating_sub(b) as f64 / established as f64,
        )),
        _ => None,
    };
    let result = ConnectionsResult {
        requested: args.connections,
        users: users.len(),
        source_addresses: sources.iter().map(ToString::to_string).collect(),
        established,
        failed,
        connect_seconds,
        connect_latency_ms: Percentiles::of(&connect_latency),
        hold_seconds: hold.as_secs_f64(),
        ping_interval_seconds: ping_interval.as_secs_f64(),
        alive_at_end: established - dropped,
        dropped,
        heartbeat_healthy: healthy,
        pings_min: pings.0,
        pings_max: pings.1,
        server_rss_before_mib: mib(rss_before),
        server_rss_connected_mib: mib(rss_connected),
        server_rss_end_mib: mib(rss_end),
        server_rss_per_connection_kib: per_connection,
        bench_rss_mib: mib(bench_rss),
    };
    Ok(Report {
        scenario: "connections",
        targets: common.urls.clone(),
        parameters: serde_json::to_value(args)?,
        plot: PlotData::Connections {
            title: format!(
                "nexus-bench connections: {} sockets of {} users, held {:.0} s",
                args.connections,
                users.len(),
                hold.as_secs_f64()
            ),
            open: series,
        },
        results: Results::Connections(result),
        correctness,
        passed: false,
        failures: Vec::new(),
    }
    .finish())
}

/// Keeps one socket open, answering pings, until `stop`; then closes it.
async fn hold_open(
    mut conn: SioConn,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicU64>,
) -> Held {
    let connected_at = Instant::now();
    let mut forced: Option<String> = None;
    let dropped = loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break None,
            frame = conn.recv() => match conn.decode(frame) {
                Incoming::Closed(why) => {
                    break Some(forced.take().map_or(why, |f| format!("FORCE_DISCONNECT {f}")));
                }
                Incoming::Event(mut v) => {
                    if sio::event_name(&v).ok() == Some(events::FORCE_DISCONNECT) {
                        let reason = sio::payload::<ForceDisconnect>(&mut v).map(|f| f.reason);
                        forced = Some(reason.unwrap_or_default());
                    }
                }
                Incoming::Ack { .. } | Incoming::Nothing => {}
            },
        }
        if let Err(e) = conn.flush().await {
            break Some(format!("cannot answer a ping: {e:#}"));
        }
    };
    let held = Held {
        pings: conn.pings,
        ping_interval: conn.ping_interval,
        connected_at,
        dropped,
    };
    if held.dropped.is_some() {
        open.fetch_sub(1, Relaxed);
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.close()).await;
    }
    held
}

/// Connections open, once a second, until `stopped`.
async fn sample_open(
    open: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
    started: Instant,
) -> Vec<(f64, u64)> {
    let mut series = vec![(0.0, 0)];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            _ = tick.tick() => series.push((started.elapsed().as_secs_f64(), open.load(Relaxed))),
        }
    }
    series
}
