#!/usr/bin/env bash
# Group figures (docs/benchmarks.md, "Groups"), for one or more nexus binaries side by side
# in one run, on SQLite and/or PostgreSQL, each run on a fresh database:
#   1. throughput: 32 users in 16 pairs, 16 in flight each, 1:1 and groups of 2, 10, 100
#      (`nexus-bench throughput --group-size G`);
#   2. beside: a 1:1 `latency` run (16 users, 1,000 msgs/s) alone, then again while 16
#      pairs keep 16 messages each in flight in groups of 100 on the same server.
# Every scenario runs each binary in turn before the next scenario, so the binaries are
# measured minutes apart, not in separate sessions.
#   BINS="before=/tmp/nexus-before after=target/release/nexus" ENGINES="sqlite postgres" \
#     scripts/bench-groups.sh
# BINS defaults to "nexus=target/release/nexus", ENGINES to "sqlite"; SCENARIOS to
# "throughput beside"; SIZES to "0 2 10 100". JSON reports stay in $OUT (default a new
# temporary directory, printed). NO_BUILD=1 skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p nexus -p nexus-bench >/dev/null
B=./target/release/nexus-bench
BINS=${BINS:-nexus=target/release/nexus}
ENGINES=${ENGINES:-sqlite}
SCENARIOS=${SCENARIOS:-throughput beside}
SIZES=${SIZES:-0 2 10 100}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PORT=3310
U=http://127.0.0.1:$PORT
DB=nexus_groups_$$
DIR=$(mktemp -d)
SERVER=
cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
export RATE_LIMIT_MESSAGES_PER_MINUTE=100000000 RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 \
  RUST_LOG=warn HOST=127.0.0.1 PORT JWT_SECRET=bench-groups-secret-at-least-32-bytes-long

# start ENGINE BINARY: a server on a fresh database.
start() {
  local url
  case $1 in
    sqlite) rm -rf "$DIR/db"; mkdir -p "$DIR/db"; url="sqlite://$DIR/db/n.db" ;;
    postgres)
      psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
      psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB"
      url="${PG_ADMIN_URL%/*}/$DB" ;;
  esac
  DATABASE_URL=$url "$2" & SERVER=$!
  for _ in $(seq 150); do curl -fsS "$U/ready" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "$2 never became ready" >&2; exit 2
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
stored() { curl -fsS "$U/metrics" | awk '/^nexus_messages_stored_total/ {print $2}'; }

# One line of figures from a report: acknowledged (durable) sends/s and send -> ack latency.
figures() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
res = r["results"]
res = res.get("Load", res)
a = res["ack_latency_ms"]
print("passed=%s acked/s=%.0f ack_p50=%.2f p99=%.2f max=%.1f ms cpu=%s" % (r["passed"],
      res["acked_per_second"], a["p50"], a["p99"], a["max"], json.dumps(res["cpu"])))
' "$1"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); nexus $(git rev-parse --short HEAD); reports in $OUT" >&2
for engine in $ENGINES; do
  for scenario in $SCENARIOS; do
    case $scenario in
      throughput)
        for g in $SIZES; do
          for bin in $BINS; do
            label=${bin%%=*}; path=${bin#*=}
            start "$engine" "$path"
            f="$OUT/$engine-throughput-g$g-$label.json"
            $B --url $U --pid "$SERVER" --json throughput --duration 10 --users 32 --inflight 16 --group-size "$g" >"$f"
            echo "$engine throughput group-size=$g $label load=$(cut -d' ' -f1 /proc/loadavg) $(figures "$f")"
            stop
          done
        done ;;
      beside)
        for bin in $BINS; do
          label=${bin%%=*}; path=${bin#*=}
          start "$engine" "$path"
          f="$OUT/$engine-alone-$label.json"
          $B --url $U --pid "$SERVER" --json latency --users 16 --rate 1000 --duration 10 >"$f"
          echo "$engine 1:1-alone $label load=$(cut -d' ' -f1 /proc/loadavg) $(figures "$f")"
          # The group load: registration and group creation first; the 1:1 run starts
          # once its messages are being stored, and ends well before it does.
          g="$OUT/$engine-groupload-$label.json"
          $B --url $U --pid "$SERVER" --json throughput --duration 30 --warmup 2 --users 32 --inflight 16 --group-size 100 >"$g" &
          load=$!
          base=$(stored)
          until [ "$(stored)" -gt $((base + 2000)) ]; do sleep 0.2; done
          sleep 2
          f="$OUT/$engine-beside-$label.json"
          $B --url $U --pid "$SERVER" --json latency --users 16 --rate 1000 --duration 10 >"$f"
          echo "$engine 1:1-beside-groups-of-100 $label load=$(cut -d' ' -f1 /proc/loadavg) $(figures "$f")"
          # A load that saw errors (e.g. UNAVAILABLE past DATABASE_TIMEOUT_SECONDS) is
          # reported, not hidden: its report says which.
          wait $load || echo "$engine group-load-of-100 $label: the load run failed its checks (see $g)"
          echo "$engine group-load-of-100 $label $(figures "$g")"
          stop
        done ;;
    esac
  done
done
