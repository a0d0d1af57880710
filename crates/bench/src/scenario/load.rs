//! The message scenarios: `throughput` (closed loop), `latency` and `cluster` (open loop),
//! and `ws-echo` (the closed loop against the raw relay). All run on [`crate::pairs`].

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::api::{Api, BenchUser};
use crate::check::Correctness;
use crate::cli::{ClusterArgs, Common, LatencyArgs, LoadArgs, Placement, ThroughputArgs};
use crate::link::{AckMode, Contract, Link, RawLink, SioLink};
use crate::pairs::{self, Pace, Pair, Plan, RunOutcome};
use crate::progress::Progress;
use crate::report::{LoadResult, PlotData, Report, Results};
use crate::sio::{self, SioConn, Target};
use crate::stats::Percentiles;

/// Sockets opened at the same time while setting up.
const CONNECT_CONCURRENCY: usize = 64;
/// Read buffer per bench socket.
const READ_BUFFER: usize = 64 * 1024;
/// Time between the last connection and the first send.
const SETTLE: Duration = Duration::from_millis(300);

fn check_users(users: usize) -> Result<()> {
    if users < 2 || users % 2 != 0 {
        bail!("--users must be an even number ≥ 2 (users come in pairs), got {users}");
    }
    Ok(())
}

fn secs(s: f64, flag: &str) -> Result<Duration> {
    if !s.is_finite() || s < 0.0 {
        bail!("{flag} must be a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Registers `count` users and connects each to `/ws`, paired (2k, 2k+1).
async fn sio_pairs(
    common: &Common,
    count: usize,
    ack: AckMode,
    contract: Contract,
    group_size: usize,
    progress: &Progress,
) -> Result<(Vec<BenchUser>, Vec<Pair>)> {
    if group_size == 1 {
        bail!("--group-size must be 0 (1:1) or at least 2");
    }
    let api = Api::new(common.register_concurrency)?;
    let users = api
        .register_many(&common.urls, count, common.register_concurrency, progress)
        .await?;
    // Groups: each pair's own group, with members of its own who never connect.
    let mut groups: Vec<Option<String>> = vec![None; count / 2];
    if group_size >= 2 {
        let silent = api
            .register_run(
                &common.urls,
                count / 2 * (group_size - 2),
                common.register_concurrency,
                progress,
                "silent",
            )
            .await?;
        progress.start("creating groups", (count / 2) as u64);
        let made: Vec<(usize, String)> = stream::iter(0..count / 2)
            .map(|p| {
                let (a, b) = (&users[2 * p], &users[2 * p + 1]);
                let mut members = vec![b.id.clone()];
                members.extend(
                    silent[p * (group_size - 2)..(p + 1) * (group_size - 2)]
                        .iter()
                        .map(|u| u.id.clone()),
                );
                let api = api.clone();
                async move {
                    let id = api
                        .create_group(&a.url, &a.token, &format!("bench pair {p}"), &members)
                        .await?;
                    progress.inc(1);
                    Ok::<_, anyhow::Error>((p, id))
                }
            })
            .buffer_unordered(common.register_concurrency.max(1))
            .try_collect()
            .await?;
        progress.finish();
        for (p, id) in made {
            groups[p] = Some(id);
        }
    }
    let groups = &groups;
    progress.start("connecting", count as u64);
    let mut links: Vec<(usize, Link)> = stream::iter(users.iter())
        .map(|u| {
            let partner = users[u.index ^ 1].id.clone();
            async move {
                let target = Target::parse(&u.url)?;
                let conn =
                    SioConn::connect(&target, &u.token, None, sio::ws_config(READ_BUFFER)).await?;
                progress.inc(1);
                let mut link = SioLink::new(conn, partner, ack, contract);
                if let Some(group) = &groups[u.index / 2] {
                    link = link.in_conversation(group.clone());
                }
                Ok::<_, anyhow::Error>((u.index, Link::Sio(Box::new(link))))
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    progress.finish();
    links.sort_by_key(|(i, _)| *i);
    Ok((users, into_pairs(links)))
}

fn into_pairs(links: Vec<(usize, Link)>) -> Vec<Pair> {
    let mut pairs = Vec::with_capacity(links.len() / 2);
    let mut it = links.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push([a, b]);
    }
    pairs
}

/// How the pace line names the conversation shape.
fn in_groups(group_size: usize) -> String {
    if group_size >= 2 {
        format!(", each pair in a group of {group_size}")
    } else {
        ", 1:1".into()
    }
}

fn cross_node_pairs(users: &[BenchUser]) -> usize {
    users
        .chunks(2)
        .filter(|p| p.len() == 2 && p[0].url != p[1].url)
        .count()
}

fn nodes(common: &Common) -> usize {
    let mut urls = common.urls.clone();
    urls.sort();
    urls.dedup();
    urls.len()
}

/// `throughput`: every user keeps `--inflight` messages in flight.
pub async fn throughput(common: &Common, args: &ThroughputArgs) -> Result<Report> {
    let a = &args.load;
    check_users(a.users)?;
    let progress = Progress::new(!common.json);
    let (users, pairs) = sio_pairs(
        common,
        a.users,
        args.ack,
        args.contract,
        a.group_size,
        &progress,
    )
    .await?;
    let plan = closed_loop_plan(a)?;
    let due = [plan.send_from; 2];
    let out = pairs::run_all(
        pairs.into_iter().map(|p| (p, due)).collect(),
        plan,
        common.pid,
        &progress,
    )
    .await;
    let pace = format!(
        "{} in flight per user, {}-byte messages{}",
        a.inflight,
        a.size,
        in_groups(a.group_size)
    );
    Ok(report(
        "throughput",
        common,
        serde_json::to_value(args)?,
        a.users,
        cross_node_pairs(&users),
        pace,
        None,
        out,
    ))
}

/// `ws-echo`: the same closed loop against the raw relay.
pub async fn ws_echo(common: &Common, args: &LoadArgs) -> Result<Report> {
    check_users(args.users)?;
    let progress = Progress::new(!common.json);
    let target = Target::parse(common.urls.first().map_or("", String::as_str))?;
    progress.start("connecting", args.users as u64);
    let mut links: Vec<(usize, Link)> = stream::iter(0..args.users)
        .map(|i| {
            let target = target.clone();
            let progress = progress.clone();
            async move {
                let link = RawLink::connect(&target, i, i ^ 1).await?;
                progress.inc(1);
                Ok::<_, anyhow::Error>((i, Link::Raw(Box::new(link))))
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    progress.finish();
    links.sort_by_key(|(i, _)| *i);
    let plan = closed_loop_plan(args)?;
    let due = [plan.send_from; 2];
    let out = pairs::run_all(
        into_pairs(links).into_iter().map(|p| (p, due)).collect(),
        plan,
        common.pid,
        &progress,
    )
    .await;
    let pace = format!(
        "{} in flight per user, {}-byte messages, raw WebSocket relay",
        args.inflight, args.size
    );
    Ok(report(
        "ws-echo",
        common,
        serde_json::to_value(args)?,
        args.users,
        0,
        pace,
        None,
        out,
    ))
}

fn closed_loop_plan(a: &LoadArgs) -> Result<Plan> {
    if a.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    let send_from = Instant::now() + SETTLE;
    let record_from = send_from + secs(a.warmup, "--warmup")?;
    Ok(Plan {
        pace: Pace::Window(a.inflight),
        send_from,
        record_from,
        send_until: record_from + secs(a.duration, "--duration")?,
        drain: secs(a.drain, "--drain")?,
        size: a.size,
    })
}

/// `cluster`: `latency` with the pairs placed across nodes or within them.
pub async fn cluster(common: &Common, args: &ClusterArgs) -> Result<Report> {
    let placed = match args.placement {
        Placement::Cross => common.clone(),
        Placement::Same => {
            // One URL per user: pair k (users 2k, 2k+1) on node k mod n.
            let n = common.urls.len().max(1);
            let urls = (0..args.latency.users)
                .map(|i| common.urls[(i / 2) % n].clone())
                .collect();
            Common {
                urls,
                ..common.clone()
            }
        }
    };
    let mut report = latency(&placed, &args.latency, "cluster").await?;
    report.targets = common.urls.clone();
    report.parameters = serde_json::to_value(args)?;
    Ok(report)
}

/// `latency` and `cluster`: a fixed total rate, open loop.
pub async fn latency(
    common: &Common,
    args: &LatencyArgs,
    scenario: &'static str,
) -> Result<Report> {
    check_users(args.users)?;
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of messages per second");
    }
    let progress = Progress::new(!common.json);
    let (users, pairs) = sio_pairs(
        common,
        args.users,
        args.ack,
        Contract::Nexus,
        args.group_size,
        &progress,
    )
    .await?;

    // The whole run sends one message every 1/rate s: user k at k/rate, then every
    // users/rate s.
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let period = Duration::from_secs_f64(args.users as f64 / args.rate);
    let send_from = Instant::now() + SETTLE;
    let record_from = send_from + secs(args.warmup, "--warmup")?;
    let plan = Plan {
        pace: Pace::Rate { period },
        send_from,
        record_from,
        send_until: record_from + secs(args.duration, "--duration")?,
        drain: secs(args.drain, "--drain")?,
        size: args.size,
    };
    let due = |user: usize| send_from + gap * user as u32;
    let pairs = pairs
        .into_iter()
        .map(|p| {
            let d = [due(p[0].0), due(p[1].0)];
            (p, d)
        })
        .collect();
    let out = pairs::run_all(pairs, plan, common.pid, &progress).await;
    let pace = format!(
        "open loop at {} msgs/s in total ({:.1} msgs/s per user), {}-byte messages{}",
        args.rate,
        args.rate / args.users as f64,
        args.size,
        in_groups(args.group_size)
    );
    Ok(report(
        scenario,
        common,
        serde_json::to_value(args)?,
        args.users,
        cross_node_pairs(&users),
        pace,
        Some(args.rate),
        out,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    scenario: &'static str,
    common: &Common,
    parameters: serde_json::Value,
    users: usize,
    cross_node_pairs: usize,
    pace: String,
    target_rate: Option<f64>,
    out: RunOutcome,
) -> Report {
    let secs = out.window_seconds.max(1e-9);
    let result = LoadResult {
        users,
        pairs: users / 2,
        nodes: if scenario == "ws-echo" {
            1
        } else {
            nodes(common)
        },
        cross_node_pairs,
        pace,
        target_rate,
        measured_seconds: out.window_seconds,
        sent_per_second: round1(out.window_sent as f64 / secs),
        acked_per_second: round1(out.window_acked as f64 / secs),
        delivered_per_second: round1(out.window_delivered as f64 / secs),
        ack_latency_ms: Percentiles::of(&out.ack),
        e2e_latency_ms: Percentiles::of(&out.e2e),
        cpu: out.cpu,
        series: out.series.clone(),
    };
    let mut correctness = Correctness::default();
    correctness.add(out.tally);
    for e in out.errors {
        correctness.error(e);
    }
    let title = format!("nexus-bench {scenario}: {} users, {}", users, result.pace);
    Report {
        scenario,
        targets: common.urls.clone(),
        parameters,
        results: Results::Load(result),
        correctness,
        passed: false,
        failures: Vec::new(),
        plot: PlotData::Load {
            title,
            series: out.series,
            latencies: vec![
                ("send → ack".into(), out.ack),
                ("send → delivered".into(), out.e2e),
            ],
        },
    }
    .finish()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
