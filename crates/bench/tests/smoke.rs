//! Smoke runs of every scenario (seconds, tiny sizes) against the real `nexus` binary, so the
//! load generator keeps working. The binary comes from `NEXUS_BIN`, else
//! `<workspace>/target/debug/nexus`; building it is the caller's job
//! (`cargo build --workspace --bins`, as `scripts/test.sh` does).
//!
//! Each test starts its own server on a free port with a fresh SQLite file, runs
//! `nexus-bench … --json` and checks the report's figures are sane.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

fn nexus_bin() -> PathBuf {
    let bin = std::env::var_os("NEXUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/nexus")
        });
    assert!(
        bin.exists(),
        "{} not found: build the server first (cargo build --workspace --bins) or set NEXUS_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`, or panics (with `child`'s fate) after 60 s.
fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `nexus` process with its own database; killed on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with_rate_limit(1_000_000)
    }

    fn start_with_rate_limit(per_minute: u32) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(nexus_bin())
            .current_dir(dir.path())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("n.db").display()),
            )
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RATE_LIMIT_MESSAGES_PER_MINUTE", per_minute.to_string())
            .env("RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", "1000000")
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, "nexus");
        Server {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nexus-bench ARGS --json`; (exit code, report, stderr).
fn bench(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nexus-bench"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn passed(args: &[&str]) -> Value {
    let (code, report, stderr) = bench(args);
    assert_eq!(code, 0, "nexus-bench {args:?} failed: {stderr}\n{report:#}");
    assert_eq!(report["passed"], true, "{report:#}");
    report
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every acknowledged message arrived, once: the ledger balances.
fn assert_balanced(report: &Value) {
    let c = &report["correctness"];
    assert!(f(&c["acked"]) > 0.0, "{c:#}");
    assert_eq!(c["acked"], c["sent"], "{c:#}");
    assert_eq!(c["delivered"], c["acked"], "{c:#}");
    for k in [
        "lost",
        "duplicated",
        "reordered",
        "unacknowledged",
        "unexpected",
    ] {
        assert_eq!(c[k], 0, "{k}: {c:#}");
    }
}

#[test]
fn throughput_smoke() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("t.png");
    let r = passed(&[
        "throughput",
        "--url",
        &server.url(),
        "--pid",
        &server.pid(),
        "--users",
        "4",
        "--inflight",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.5",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_balanced(&r);
    let res = &r["results"];
    assert!(f(&res["acked_per_second"]) > 0.0, "{res:#}");
    assert!(f(&res["delivered_per_second"]) > 0.0, "{res:#}");
    assert!(f(&res["ack_latency_ms"]["p50"]) > 0.0, "{res:#}");
    assert!(f(&res["e2e_latency_ms"]["max"]) >= f(&res["e2e_latency_ms"]["p50"]));
    assert!(res["cpu"]["server_percent"].is_number(), "{res:#}");
    let png = std::fs::read(&png).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn throughput_with_ack_callbacks_smoke() {
    let server = Server::start();
    let r = passed(&[
        "throughput",
        "--url",
        &server.url(),
        "--users",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--ack",
        "callback",
    ]);
    assert_balanced(&r);
}

#[test]
fn latency_smoke() {
    let server = Server::start();
    let r = passed(&[
        "latency",
        "--url",
        &server.url(),
        "--users",
        "4",
        "--rate",
        "200",
        "--duration",
        "1",
        "--warmup",
        "0.5",
    ]);
    assert_balanced(&r);
    let res = &r["results"];
    // 200 msgs/s for 1.5 s in all; 1 s of it measured.
    assert_eq!(r["correctness"]["sent"], 300, "{r:#}");
    let measured = res["ack_latency_ms"]["count"].as_u64().unwrap();
    assert!((190..=210).contains(&measured), "{res:#}");
    assert!(f(&res["e2e_latency_ms"]["p99"]) > 0.0, "{res:#}");
    assert!(f(&res["e2e_latency_ms"]["p999"]) >= f(&res["e2e_latency_ms"]["p90"]));
}

#[test]
fn cluster_smoke_over_two_urls() {
    let server = Server::start();
    // Two spellings of one node: the users of each pair land on different "nodes".
    let other = format!("http://localhost:{}", server.port);
    let r = passed(&[
        "cluster",
        "--url",
        &server.url(),
        "--url",
        &other,
        "--users",
        "4",
        "--rate",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    assert_balanced(&r);
    assert_eq!(r["results"]["nodes"], 2);
    assert_eq!(r["results"]["cross_node_pairs"], 2);
}

#[test]
fn connections_smoke() {
    let server = Server::start();
    let r = passed(&[
        "connections",
        "--url",
        &server.url(),
        "--pid",
        &server.pid(),
        "--connections",
        "40",
        "--users",
        "4",
        "--sources",
        "2",
        "--hold",
        "1",
    ]);
    let res = &r["results"];
    assert_eq!(res["established"], 40, "{res:#}");
    assert_eq!(res["alive_at_end"], 40, "{res:#}");
    assert_eq!(res["dropped"], 0, "{res:#}");
    assert_eq!(res["source_addresses"].as_array().unwrap().len(), 2);
    assert!(f(&res["ping_interval_seconds"]) > 0.0, "{res:#}");
    assert!(res["server_rss_per_connection_kib"].is_number(), "{res:#}");
}

#[test]
fn catchup_smoke() {
    let server = Server::start();
    let r = passed(&[
        "catchup",
        "--url",
        &server.url(),
        "--messages",
        "300",
        "--page-size",
        "50",
    ]);
    assert_balanced(&r);
    let res = &r["results"];
    assert_eq!(res["events_received"], 300, "{res:#}");
    assert!(res["pages"].as_u64().unwrap() >= 6, "{res:#}");
    assert!(f(&res["catchup_ms"]) > 0.0, "{res:#}");
}

#[test]
fn ws_echo_smoke() {
    let port = free_port();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_nexus-bench"))
        .args(["ws-echo-server", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut relay, "ws-echo-server");
    let (code, r, stderr) = bench(&[
        "ws-echo",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--users",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
    ]);
    let _ = relay.kill();
    let _ = relay.wait();
    assert_eq!(code, 0, "{stderr}\n{r:#}");
    assert_balanced(&r);
    assert!(f(&r["results"]["acked_per_second"]) > 0.0);
}

#[test]
fn a_rate_limited_run_fails_loudly() {
    let server = Server::start_with_rate_limit(5);
    let (code, r, stderr) = bench(&[
        "throughput",
        "--url",
        &server.url(),
        "--users",
        "2",
        "--duration",
        "2",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 1, "{stderr}\n{r:#}");
    assert_eq!(r["passed"], false);
    assert!(stderr.contains("RATE_LIMIT_EXCEEDED"), "{stderr}");
}

#[test]
fn an_unreachable_server_is_an_error_not_a_result() {
    let (code, r, stderr) = bench(&[
        "throughput",
        "--url",
        &format!("http://127.0.0.1:{}", free_port()),
        "--users",
        "2",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(r.is_null());
    assert!(stderr.contains("error"), "{stderr}");
}

/// More sockets than the bench may open is refused up front (exit 2), before anything is
/// registered: the missing sockets would otherwise count as the server's failures.
#[test]
fn more_connections_than_the_file_limit_is_refused_up_front() {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec '{}' --json --url http://127.0.0.1:{} connections \
             --connections 100 --users 1",
            env!("CARGO_BIN_EXE_nexus-bench"),
            free_port()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ulimit -n"), "{stderr}");
}

#[test]
fn compare_smoke_two_servers_side_by_side() {
    let (a, b) = (Server::start(), Server::start());
    let target = format!("a={}@{}", a.url(), a.pid());
    let peer = format!("b={}", b.url());
    let r = passed(&[
        "compare",
        "--target",
        &target,
        "--peer",
        &peer,
        "--contract",
        "brief",
        "--users",
        "4",
        "--inflight",
        "1",
        "--inflight",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{r:#}");
    for (row, (server, inflight)) in rows.iter().zip([("a", 1), ("b", 1), ("a", 4), ("b", 4)]) {
        assert_eq!(row["server"], server, "{row:#}");
        assert_eq!(row["inflight"], inflight, "{row:#}");
        assert!(f(&row["acked_per_second"]) > 0.0, "{row:#}");
        assert_eq!(row["passed"], true, "{row:#}");
    }
    assert!(rows[0]["server_cpu_percent"].is_number(), "{r:#}");
    assert_eq!(f(&rows[1]["ratio_to_peer"]), 1.0, "{r:#}");
    let expected = f(&rows[0]["acked_per_second"]) / f(&rows[1]["acked_per_second"]);
    assert!(
        (f(&rows[0]["ratio_to_peer"]) - expected).abs() < 0.01,
        "{r:#}"
    );
}
