#!/usr/bin/env bash
# Runs docs/example-client.mjs as docs/protocol.md §6 documents it (npm ci in docs/, then
# node example-client.mjs) against a live server of its own (in-memory database, free port).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${NEXUS_BIN:-$PWD/target/debug/nexus}"
(cd docs && npm ci --no-audit --no-fund --loglevel=error)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATABASE_URL=sqlite::memory: HOST=127.0.0.1 PORT=$port RUST_LOG=warn "$bin" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  sleep 0.05
done
(cd docs && NEXUS_URL="http://127.0.0.1:$port" node example-client.mjs)
