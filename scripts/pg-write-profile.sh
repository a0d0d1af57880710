#!/usr/bin/env bash
# Where the time of the PostgreSQL write path goes (docs/benchmarks.md, "PostgreSQL write
# path"): a release nexus on a PRIVATE PostgreSQL cluster (initdb into a temporary directory,
# stock durability: fsync=on, synchronous_commit=on; only pg_stat_statements and auto_explain
# loaded), `nexus-bench throughput` at 200 users x 1 in flight for 10 s, and meanwhile:
#   - pg_stat_statements: calls, rows and mean time of every statement, per commit;
#   - pg_stat_activity sampled every 10 ms: what the writer backends wait for (lock on a
#     counter row, WAL flush, the client's next statement = a round trip, or running);
#   - pidstat: CPU of nexus (per thread), the PostgreSQL backends and the load generator;
#   - nexus's /metrics: batch sizes and batch times as the writer saw them.
#   scripts/pg-write-profile.sh [USERS] [INFLIGHT] [SECONDS]   (default 200 1 10)
# NEXUS_BIN picks the server binary (default target/release/nexus); NO_BUILD=1 skips the build;
# EXTRA_SQL is run on the database after the migrations, before the load; PERF=1 adds a
# system-wide `perf record` (cpu-clock) over the window.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-200}; INFLIGHT=${2:-1}; SECS=${3:-10}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p nexus -p nexus-bench >/dev/null
NEXUS=${NEXUS_BIN:-./target/release/nexus}
B=./target/release/nexus-bench
command -v pidstat >/dev/null || { echo "pidstat missing: apt-get install sysstat" >&2; exit 2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DIR=$(mktemp -d); chmod 777 "$DIR"
PGPORT=$((25000 + RANDOM % 5000)); NPORT=$((31000 + RANDOM % 2000))
OUT=${OUT:-$DIR/out}; mkdir -p "$OUT"; chmod 777 "$OUT"
as_pg initdb -D "$DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg pg_ctl -D "$DIR/data" -l "$DIR/pg.log" -w start -o "-p $PGPORT -k $DIR -c listen_addresses=127.0.0.1 \
  -c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.track=all \
  -c auto_explain.log_min_duration=${AUTO_EXPLAIN_MS:-50} -c auto_explain.log_analyze=on -c track_io_timing=on" >/dev/null
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  as_pg pg_ctl -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
P="psql -h 127.0.0.1 -p $PGPORT -U postgres -X -q"
$P -c "CREATE DATABASE nexus" postgres
$P -c "CREATE EXTENSION pg_stat_statements" nexus
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/nexus" HOST=127.0.0.1 PORT=$NPORT \
  RATE_LIMIT_MESSAGES_PER_MINUTE=100000000 RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 RUST_LOG=warn \
  JWT_SECRET=profile-secret-at-least-32-bytes-long-xx "$NEXUS" & pids+=($!); NEXUS_PID=$!
for _ in $(seq 100); do curl -fsS http://127.0.0.1:$NPORT/ready >/dev/null 2>&1 && break; sleep 0.2; done
# EXTRA_SQL runs once nexus has migrated the database, before the load (to try a schema change
# on the same binary, e.g. EXTRA_SQL="DROP INDEX …").
[ -z "${EXTRA_SQL:-}" ] || $P -c "$EXTRA_SQL" nexus

# Registration and connection first; the statistics are reset 2 s after sending started
# (the bench's warm-up), and the samplers cover the rest of the run.
$B --url http://127.0.0.1:$NPORT --pid $NEXUS_PID --json throughput --users "$USERS" --inflight "$INFLIGHT" \
  --duration "$SECS" --warmup 2 > "$OUT/bench.json" & BENCH=$!
batches() { curl -fsS http://127.0.0.1:$NPORT/metrics | awk '/^nexus_writer_batch_size_sum/ {print int($2)}'; }
while kill -0 $BENCH 2>/dev/null; do
  # Sending has started once the writer stores more than 500 commands in 0.5 s.
  n=$(batches); sleep 0.5; m=$(batches)
  [ $((m - n)) -gt 500 ] && break
done
sleep 2
$P -c "SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal');" nexus >/dev/null
curl -fsS http://127.0.0.1:$NPORT/metrics > "$OUT/metrics-before.txt"
samplers=()
pidstat -u -t -p "$NEXUS_PID" 1 $((SECS - 2)) > "$OUT/pidstat-nexus.txt" 2>&1 & samplers+=($!)
pidstat -u -C postgres 1 $((SECS - 2)) > "$OUT/pidstat-postgres.txt" 2>&1 & samplers+=($!)
pidstat -u -C nexus-bench 1 $((SECS - 2)) > "$OUT/pidstat-bench.txt" 2>&1 & samplers+=($!)
python3 - "$PGPORT" "$((SECS - 2))" > "$OUT/waits.txt" <<'PY' &
import subprocess, sys, time, collections
port, secs = sys.argv[1], float(sys.argv[2])
q = ("SELECT coalesce(wait_event_type,'CPU') || ':' || coalesce(wait_event,'running') FROM pg_stat_activity "
     "WHERE datname='nexus' AND backend_type='client backend' AND state <> 'idle' AND pid <> pg_backend_pid() "
     "AND query NOT LIKE '%pg_stat_activity%';")
p = subprocess.Popen(["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-X", "-At", "nexus"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
counts = collections.Counter(); samples = 0; end = time.time() + secs
while time.time() < end:
    p.stdin.write(q + "SELECT 'END';\n"); p.stdin.flush()
    while True:
        line = p.stdout.readline().strip()
        if line == 'END': break
        counts[line] += 1
    samples += 1
    time.sleep(0.01)
total = sum(counts.values())
print(f"{samples} samples of the non-idle nexus backends ({total} backend-samples)")
for k, v in counts.most_common(): print(f"{v:8d} {100*v/max(total,1):5.1f}%  {k}")
PY
samplers+=($!)
# PERF=1: where the CPU goes, system-wide (flat, by process and function) over the window.
if [ -n "${PERF:-}" ]; then
  perf record -q -e cpu-clock -F 997 -a -o "$OUT/perf.data" -- sleep $((SECS - 2)) 2>/dev/null & samplers+=($!)
fi
wait $BENCH || true
wait "${samplers[@]}"
curl -fsS http://127.0.0.1:$NPORT/metrics > "$OUT/metrics-after.txt" || true
$P -c "\copy (SELECT calls, rows, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric, 1) AS total_ms, \
  round(wal_bytes / greatest(calls,1)) AS wal_bytes_per_call, regexp_replace(left(query, 400), '\s+', ' ', 'g') AS query \
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname='nexus') AND query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC) \
  TO '$OUT/statements.csv' CSV HEADER" nexus
# Commits as the statements saw them (pg_stat_database's counters lag behind busy backends).
$P -Atc "SELECT coalesce(sum(calls) FILTER (WHERE query ILIKE 'commit%'), 0), coalesce(sum(calls) FILTER (WHERE query ILIKE 'rollback%'), 0) FROM pg_stat_statements" nexus > "$OUT/commits.txt"
$P -Atc "SELECT wal_records, wal_bytes, wal_sync, round(wal_sync_time::numeric,1), wal_write FROM pg_stat_wal" nexus > "$OUT/wal.txt"
# Updates per table in the window, and how many were HOT (heap-only: no index entry written).
$P -c "SELECT relname, n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_hot_upd AS hot, n_dead_tup AS dead, \
  pg_size_pretty(pg_table_size(relid)) AS heap, pg_size_pretty(pg_indexes_size(relid)) AS indexes \
  FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0 ORDER BY n_tup_upd DESC, n_tup_ins DESC" nexus > "$OUT/tables.txt"
python3 - "$OUT" <<'PY'
import csv, json, os, re, sys
out = sys.argv[1]
b = json.load(open(f"{out}/bench.json"))
r = b["results"]
print(f"bench: {r['acked_per_second']:.0f} durable sends/s, ack p50 {r['ack_latency_ms']['p50']} ms, "
      f"e2e p50 {r['e2e_latency_ms']['p50']} ms, p99 {r['e2e_latency_ms']['p99']} ms; passed={b['passed']}")
commits, rollbacks = map(int, open(f"{out}/commits.txt").read().split("|"))
print(f"commits in the window: {commits} ({rollbacks} rollbacks); "
      f"{r['acked_per_second'] * 8 / max(commits, 1):.1f} messages per commit (approx.)")
def hist(name, path):
    s = c = 0.0
    for line in open(path):
        if line.startswith(name + "_sum"): s = float(line.split()[-1])
        if line.startswith(name + "_count"): c = float(line.split()[-1])
    return s, c
for name in ["nexus_writer_batch_size", "nexus_writer_commit_duration_seconds"]:
    s0, c0 = hist(name, f"{out}/metrics-before.txt"); s1, c1 = hist(name, f"{out}/metrics-after.txt")
    if c1 > c0: print(f"{name}: mean {(s1-s0)/(c1-c0):.4g} over {c1-c0:.0f} batches")
print("statements, grouped by their text up to the first parameter (generated lists of")
print("different lengths are one kind); per commit = calls / commits:")
kinds = {}
for row in csv.DictReader(open(f"{out}/statements.csv")):
    key = row["query"].split("$")[0][:100]
    k = kinds.setdefault(key, [0, 0.0, 0, 0])
    k[0] += int(row["calls"]); k[1] += float(row["total_ms"]); k[2] += int(row["rows"]); k[3] += 1
for key, (calls, total, rws, texts) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
    print(f"  {calls/max(commits,1):5.2f}/commit  mean {total/max(calls,1):7.3f} ms  total {total:8.1f} ms  "
          f"rows/call {rws/max(calls,1):6.1f}  texts {texts:3d}  {key}")
w = open(f"{out}/wal.txt").read().strip().split("|")
print(f"WAL: {w[0]} records, {int(w[1])/1e6:.1f} MB, {w[2]} syncs taking {w[3]} ms in all, {w[4]} writes")
print("tables (window):"); print(open(f"{out}/tables.txt").read())
print(open(f"{out}/waits.txt").read())
def avg(path, pat):
    tot = {}; 
    for line in open(path):
        if line.startswith("Average:") and not line.split()[1].startswith("UID"):
            parts = line.split(); cmd = parts[-1]
            try: tot[cmd] = tot.get(cmd, 0) + float(parts[-3])
            except: pass
    return tot
print("CPU (% of one core, pidstat averages):")
for f in ["pidstat-nexus.txt", "pidstat-postgres.txt", "pidstat-bench.txt"]:
    t = avg(f"{out}/{f}", None)
    for k, v in sorted(t.items(), key=lambda kv: -kv[1])[:8]: print(f"  {f[8:-4]:>8}: {v:6.1f}  {k}")
PY
if [ -n "${PERF:-}" ]; then
  perf report -i "$OUT/perf.data" --stdio --no-children --sort comm,dso -q 2>/dev/null | head -20 > "$OUT/perf-dso.txt"
  perf report -i "$OUT/perf.data" --stdio --no-children --comms postgres --sort sym -q 2>/dev/null | head -40 > "$OUT/perf-postgres.txt"
  perf report -i "$OUT/perf.data" --stdio --no-children --comms nexus,tokio-rt-worker,nexus-writer-0 --sort sym -q 2>/dev/null | head -40 > "$OUT/perf-nexus.txt"
  echo "perf (all CPUs, by process and library):"; cat "$OUT/perf-dso.txt"
  echo "perf, postgres processes, by function:"; cat "$OUT/perf-postgres.txt"
fi
echo "raw files: $OUT (kept with KEEP=1)"
echo "auto_explain plans over ${AUTO_EXPLAIN_MS:-50} ms: $(grep -c 'duration:' "$DIR/pg.log")" || true
[ -z "${KEEP:-}" ] || cp "$DIR/pg.log" "$OUT/"
