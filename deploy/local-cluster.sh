#!/usr/bin/env bash
# One command, a local Nexus cluster: a PostgreSQL database, a Redis, N nexus nodes and
# HAProxy in front of them. Runs in the foreground; Ctrl-C (or SIGTERM) stops everything
# it started. Clients connect to http://127.0.0.1:$LB_PORT (Socket.IO at /ws, both
# transports: see deploy/haproxy.cfg).
#
#   deploy/local-cluster.sh            # 3 nodes, balancer on :8080
#   NODES=2 LB_PORT=9000 deploy/local-cluster.sh
#
# Settings (environment):
#   NODES          1-3 nodes (default 3; deploy/haproxy.cfg lists three servers)
#   LB_PORT        the balancer's port (default 8080); nodes listen on LB_PORT+1 … +NODES
#   PG_ADMIN_URL   a PostgreSQL server to create the database on
#                  (default postgres://postgres@127.0.0.1:5432/postgres)
#   DATABASE_NAME  the database (default nexus_cluster; created if missing, kept afterwards)
#   REDIS_URL      an existing Redis to use; unset: a private redis-server on LB_PORT+100
#   NEXUS_BIN      the nexus binary (default target/release/nexus, built if missing)
#   STATE_DIR      logs and the private Redis' files (default a new temporary directory)
# Every other variable of `nexus --help` (JWT_SECRET, RATE_LIMIT_…) is passed to the nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-3}
LB_PORT=${LB_PORT:-8080}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DATABASE_NAME=${DATABASE_NAME:-nexus_cluster}
STATE_DIR=${STATE_DIR:-$(mktemp -d -t nexus-cluster-XXXXXX)}
NEXUS_BIN=${NEXUS_BIN:-target/release/nexus}
if [ "$NODES" -lt 1 ] || [ "$NODES" -gt 3 ]; then
  echo "NODES must be 1 to 3 (deploy/haproxy.cfg lists three servers)" >&2; exit 2
fi
for tool in haproxy psql; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/setup.sh installs haproxy)" >&2; exit 2; }
done
if [ ! -x "$NEXUS_BIN" ]; then
  echo "building $NEXUS_BIN …"
  cargo build --release -p nexus
fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping the cluster …"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "logs kept in $STATE_DIR"
}
trap stop INT TERM EXIT

# The database: created once, kept between runs.
base=${PG_ADMIN_URL%/*}
if ! psql "$PG_ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE_NAME'" | grep -q 1; then
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$DATABASE_NAME\""
fi
export DATABASE_URL="$base/$DATABASE_NAME"

# Redis: the given one, or a private one.
if [ -z "${REDIS_URL:-}" ]; then
  redis_port=$((LB_PORT + 100))
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$STATE_DIR" >"$STATE_DIR/redis.log" 2>&1 &
  pids+=($!)
  export REDIS_URL="redis://127.0.0.1:$redis_port"
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# The nodes.
export NEXUS_LB_PORT=$LB_PORT HOST=127.0.0.1
for i in 1 2 3; do
  port=$((LB_PORT + i))
  export "NEXUS_NODE${i}_PORT=$port"
  [ "$i" -le "$NODES" ] || continue
  PORT=$port "$NEXUS_BIN" >"$STATE_DIR/node$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq "$NODES"); do
  port=$((LB_PORT + i))
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { echo "node $i is not ready: see $STATE_DIR/node$i.log" >&2; exit 1; }
done

haproxy -f deploy/haproxy.cfg >"$STATE_DIR/haproxy.log" 2>&1 &
pids+=($!)

cat <<INFO
Nexus cluster up: $NODES node(s) on ports $((LB_PORT + 1))…$((LB_PORT + NODES)), balancer at http://127.0.0.1:$LB_PORT
  database $DATABASE_URL
  redis    $REDIS_URL
  logs     $STATE_DIR
Ctrl-C stops it.
INFO
wait -n "${pids[@]}" || true
echo "a process of the cluster exited; see $STATE_DIR" >&2
