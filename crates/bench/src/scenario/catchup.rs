//! `catchup`: a receiver misses K messages while offline, then catches up through the
//! contract's change feed, `GET /sync?since=N&limit=L`, page after page until
//! `hasMore=false`. The feed must hold exactly the K messages, in send order, under
//! consecutive `seq` numbers (the feed is gap-free by contract).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nexus_protocol::ChangeType;

use crate::api::Api;
use crate::check::{Conversation, Correctness};
use crate::cli::{CatchupArgs, Common};
use crate::clock::now_ns;
use crate::content;
use crate::link::{AckMode, Contract, Ev, Link, SioLink};
use crate::progress::Progress;
use crate::report::{CatchupResult, PlotData, Report, Results};
use crate::sio::{self, SioConn, Target};
use crate::stats::{self, Percentiles};

/// Longest wait for the next acknowledgement while filling the gap.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(common: &Common, args: &CatchupArgs) -> Result<Report> {
    if args.messages == 0 || args.page_size == 0 || args.inflight == 0 {
        bail!("--messages, --page-size and --inflight must be at least 1");
    }
    let progress = Progress::new(!common.json);
    let api = Api::new(4)?;
    let users = api.register_many(&common.urls, 2, 2, &progress).await?;
    let (receiver, sender) = (&users[0], &users[1]);
    let mut correctness = Correctness::default();

    // Where the receiver's feed stands before it goes away (a new user: at 0).
    let mut cursor = 0;
    loop {
        let page = api
            .sync(&receiver.url, &receiver.token, cursor, args.page_size)
            .await?;
        cursor = page.next_cursor;
        if !page.has_more {
            break;
        }
    }
    let start_cursor = cursor;

    // The receiver is offline (never connected); the sender fills the gap.
    let conn = SioConn::connect(
        &Target::parse(&sender.url)?,
        &sender.token,
        None,
        sio::ws_config(64 * 1024),
    )
    .await?;
    let mut link = Link::Sio(Box::new(SioLink::new(
        conn,
        receiver.id.clone(),
        AckMode::Event,
        Contract::Nexus,
    )));
    let mut conv = Conversation::default();
    progress.start("sending", args.messages);
    let sending = Instant::now();
    loop {
        while conv.sent() < args.messages && conv.in_flight() < args.inflight {
            let start = now_ns();
            let seq = conv.send(start);
            link.feed(seq, start, args.size).await?;
        }
        link.flush().await?;
        if conv.sent() == args.messages && conv.in_flight() == 0 {
            break;
        }
        let frame = tokio::time::timeout(ACK_TIMEOUT, link.recv())
            .await
            .map_err(|_| anyhow!("no MESSAGE_SENT for {} s", ACK_TIMEOUT.as_secs()))?;
        match link.decode(frame) {
            Ev::Ack { seq } => {
                conv.ack(seq);
                progress.inc(1);
            }
            Ev::Deliver { .. } => correctness.error("the sender received its own message"),
            Ev::Fatal(e) => bail!("while filling the gap: {e}"),
            Ev::Nothing => {}
        }
    }
    let send_seconds = sending.elapsed().as_secs_f64();
    progress.finish();
    link.close().await;

    // The receiver comes back and catches up.
    progress.start("catching up", args.messages);
    let mut pages = 0;
    let mut page_latency = stats::histogram();
    let mut first_page_ms = 0.0;
    let mut fetched = vec![(0.0, 0)];
    let mut received = 0u64;
    let mut next_feed_seq = start_cursor + 1;
    let catching_up = Instant::now();
    cursor = start_cursor;
    loop {
        let asked = Instant::now();
        let page = api
            .sync(&receiver.url, &receiver.token, cursor, args.page_size)
            .await?;
        let took = asked.elapsed();
        page_latency.saturating_record(took.as_micros() as u64);
        if pages == 0 {
            first_page_ms = took.as_secs_f64() * 1000.0;
        }
        pages += 1;
        for ev in &page.events {
            if ev.seq != next_feed_seq {
                correctness.error(format!(
                    "the feed jumped from seq {} to {} (it must be gap-free)",
                    next_feed_seq - 1,
                    ev.seq
                ));
            }
            next_feed_seq = ev.seq + 1;
            if ev.kind != ChangeType::MessageCreated {
                correctness.error(format!("unexpected {} event in the feed", ev.kind.as_str()));
                continue;
            }
            let Some(message) = &ev.message else {
                correctness.error("a message event without its message");
                continue;
            };
            if message.sender_id != sender.id {
                correctness.error("a message from someone else in the feed");
                continue;
            }
            match content::decode(&message.content) {
                Some((seq, _)) => conv.deliver(seq),
                None => correctness.error("a message with foreign content in the feed"),
            }
            received += 1;
        }
        progress.set(received);
        fetched.push((catching_up.elapsed().as_secs_f64() * 1000.0, received));
        if page.next_cursor < cursor {
            correctness.error("the feed's cursor went backwards");
            break;
        }
        cursor = page.next_cursor;
        if !page.has_more {
            break;
        }
        if page.events.is_empty() {
            correctness.error("an empty page said hasMore=true");
            break;
        }
    }
    let catchup = catching_up.elapsed().as_secs_f64();
    progress.finish();
    correctness.add(conv.tally());

    let result = CatchupResult {
        messages: args.messages,
        page_size: args.page_size,
        send_seconds,
        sends_per_second: (args.messages as f64 / send_seconds.max(1e-9)).round(),
        catchup_ms: stats::round3(catchup * 1000.0),
        pages,
        events_per_second: (received as f64 / catchup.max(1e-9)).round(),
        first_page_ms: stats::round3(first_page_ms),
        page_latency_ms: Percentiles::of(&page_latency),
        events_received: received,
    };
    Ok(Report {
        scenario: "catchup",
        targets: common.urls.clone(),
        parameters: serde_json::to_value(args)?,
        plot: PlotData::Catchup {
            title: format!(
                "nexus-bench catchup: {} missed messages, pages of {}",
                args.messages, args.page_size
            ),
            fetched,
        },
        results: Results::Catchup(result),
        correctness,
        passed: false,
        failures: Vec::new(),
    }
    .finish())
}
