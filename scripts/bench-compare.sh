#!/usr/bin/env bash
# Side by side in one run: nexus on SQLite, nexus on PostgreSQL and the seed stack's Node peer
# (crates/bench/peer: Node socket.io + PostgreSQL, one INSERT per message), each measured by
# `nexus-bench compare` with the same closed-loop load (default 200 users in pairs, 10 s,
# 1 and 16 messages in flight per user, durable acks counted), printing each server's ratio
# to the peer. Release binaries; fresh databases on the machine's PostgreSQL, dropped after.
#   scripts/bench-compare.sh [extra `nexus-bench compare` flags, e.g. --rounds 2 --json]
# NEXUS_BIN / NEXUS_BIN_LABEL add a second nexus binary on PostgreSQL (e.g. an older build,
# for a before/after table in the same run); NO_BUILD=1 skips the build.
# PRIVATE_PG=1 runs a private PostgreSQL cluster for the run (initdb into a temporary
# directory, stock configuration and durability) instead of the machine's, whose WAL and
# fsyncs other users' databases share (a test suite committing meanwhile stalls these runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PRIVATE_PG:-}" ]; then
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  PGDIR=$(mktemp -d); chmod 777 "$PGDIR"; PGPORT=$((26000 + RANDOM % 4000))
  as_pg initdb -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  as_pg pg_ctl -D "$PGDIR/data" -l "$PGDIR/pg.log" -w start \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  PG_ADMIN_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres
fi
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
[ -n "${NO_BUILD:-}" ] || cargo build --release -p nexus -p nexus-bench >/dev/null
B=./target/release/nexus-bench
(cd crates/bench/peer && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
RUN=$$
DBS=(nexus_cmp_pg_$RUN nexus_cmp_peer_$RUN)
[ -z "${NEXUS_BIN:-}" ] || DBS+=(nexus_cmp_other_$RUN)
for db in "${DBS[@]}"; do psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db"; done
DIR=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for db in "${DBS[@]}"; do psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
  rm -rf "$DIR"
  if [ -n "${PGDIR:-}" ]; then
    as_pg pg_ctl -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
  fi
}
trap cleanup EXIT
PGBASE=${PG_ADMIN_URL%/*}
export RATE_LIMIT_MESSAGES_PER_MINUTE=100000000 RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 \
  RUST_LOG=warn HOST=127.0.0.1 JWT_SECRET=bench-compare-secret-at-least-32-bytes-long
wait_ready() { for _ in $(seq 100); do curl -fsS "$1" >/dev/null 2>&1 && return; sleep 0.2; done; echo "$1 never answered" >&2; exit 2; }

DATABASE_URL="sqlite://$DIR/n.db" PORT=3301 ./target/release/nexus & pids+=($!); SQLITE_PID=$!
DATABASE_URL="$PGBASE/${DBS[0]}" PORT=3302 ./target/release/nexus & pids+=($!); PG_PID=$!
(cd crates/bench/peer && DATABASE_URL="$PGBASE/${DBS[1]}" PORT=3100 exec node server.mjs >/dev/null) & pids+=($!); PEER_PID=$!
targets=(--target "nexus-sqlite=http://127.0.0.1:3301@$SQLITE_PID" --target "nexus-pg=http://127.0.0.1:3302@$PG_PID")
if [ -n "${NEXUS_BIN:-}" ]; then
  DATABASE_URL="$PGBASE/${DBS[2]}" PORT=3303 "$NEXUS_BIN" & pids+=($!)
  targets+=(--target "${NEXUS_BIN_LABEL:-other-pg}=http://127.0.0.1:3303@$!")
  wait_ready http://127.0.0.1:3303/ready
fi
wait_ready http://127.0.0.1:3301/ready
wait_ready http://127.0.0.1:3302/ready
wait_ready http://127.0.0.1:3100/health
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); nexus $(git rev-parse --short HEAD); PostgreSQL ${PG_ADMIN_URL%/*}" >&2
$B compare "${targets[@]}" --peer "seed-node-pg=http://127.0.0.1:3100@$PEER_PID" --contract brief "$@"
