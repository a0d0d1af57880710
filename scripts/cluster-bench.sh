#!/usr/bin/env bash
# The cluster figures of docs/benchmarks.md ("Cluster") and the per-message costs behind the
# scale model of docs/operations.md, in one run on one machine:
#   - nexus-bench cluster at the same open-loop rate with every pair across two nodes
#     (--placement cross) and within one node (--placement same);
#   - nexus-bench throughput over two nodes (users round-robin, so pairs span them);
#   - Redis' cost per PUBLISH (INFO commandstats) and a third node's cost per cross-node
#     message it receives without any socket (its CPU time / messages received): what every
#     node pays for every broadcast of the cluster.
# Uses release binaries, a fresh database on the machine's PostgreSQL and a private Redis.
#   scripts/cluster-bench.sh [RATE] [SECONDS]     (default 2000 msgs/s, 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-2000}
SECS=${2:-10}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p nexus -p nexus-bench >/dev/null
B=./target/release/nexus-bench
DB=nexus_cluster_bench_$$
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB"
REDIS_PORT=$((20000 + RANDOM % 10000))
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
REDIS_PID=$!
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  kill $REDIS_PID 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT
sleep 0.5
export DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  RATE_LIMIT_MESSAGES_PER_MINUTE=100000000 RUST_LOG=warn HOST=127.0.0.1 JWT_SECRET=cluster-bench-secret-at-least-32-bytes
ports=(3401 3402 3403)
for p in "${ports[@]}"; do
  PORT=$p ./target/release/nexus & pids+=($!)
  sleep 1
done
for p in "${ports[@]}"; do
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$p/ready" >/dev/null 2>&1 && break; sleep 0.2; done
done
IDLE_PID=${pids[2]}
A=http://127.0.0.1:${ports[0]}
Bn=http://127.0.0.1:${ports[1]}
rc() { redis-cli -p $REDIS_PORT "$@"; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
publish_stats() { rc INFO commandstats | grep '^cmdstat_publish:' | tr -d '\r'; }

measure() { # label, then the bench arguments
  local label=$1; shift
  rc CONFIG RESETSTAT >/dev/null
  local t0; t0=$(cpu_ticks $IDLE_PID)
  local r0; r0=$(rc INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {print s}')
  $B --url $A --url $Bn --json "$@" > "/tmp/cluster-bench-$label.json"
  local t1; t1=$(cpu_ticks $IDLE_PID)
  local r1; r1=$(rc INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {print s}')
  local pub; pub=$(publish_stats)
  local calls; calls=$(echo "$pub" | sed -E 's/^cmdstat_publish:calls=([0-9]+).*/\1/')
  python3 - "$label" "/tmp/cluster-bench-$label.json" "$calls" "$pub" "$((t1 - t0))" "$(getconf CLK_TCK)" "$r0" "$r1" <<'PY'
import json, sys
label, path, calls, pub, ticks, hz, r0, r1 = sys.argv[1:]
r = json.load(open(path))
res = r["results"]
calls = int(calls or 0)
idle_cpu_s = int(ticks) / int(hz)
redis_cpu_s = float(r1) - float(r0)
print(f"== {label}: {res['pace']}")
print(f"   sent/s {res['sent_per_second']}, acked/s {res['acked_per_second']}, delivered/s {res['delivered_per_second']}, cross-node pairs {res['cross_node_pairs']}/{res['pairs']}")
for k in ("ack_latency_ms", "e2e_latency_ms"):
    p = res[k]
    print(f"   {k}: p50 {p.get('p50')} p99 {p.get('p99')} p99.9 {p.get('p999', p.get('p99_9'))} max {p.get('max')}")
print(f"   correctness: {json.dumps(r['correctness'])[:300]}")
print(f"   redis: {pub}")
if calls:
    print(f"   redis CPU {redis_cpu_s:.2f} s for {calls} publishes = {redis_cpu_s / calls * 1e6:.1f} us per publish (3 subscribing nodes)")
    print(f"   idle third node: {idle_cpu_s:.2f} s CPU for {calls} cross-node messages received = {idle_cpu_s / calls * 1e6:.1f} us per message")
PY
}

echo "load before: $(cat /proc/loadavg)"
measure cross cluster --placement cross --rate "$RATE" --duration "$SECS" --users 64
measure same cluster --placement same --rate "$RATE" --duration "$SECS" --users 64
measure throughput throughput --duration "$SECS"
echo "load after: $(cat /proc/loadavg)"
