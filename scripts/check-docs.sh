#!/usr/bin/env bash
# Runs what the docs tell a new user to run, against a live server of its own (in-memory
# database, free port): the README's quick start (curl and jq, with its B= pointing at that
# server), and docs/example-client.mjs as docs/protocol.md §6 documents it (npm ci in
# docs/, then node example-client.mjs).
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
quick=$(awk '/^## Quick start/{f=1} f&&/^```sh/{g=1;next} g&&/^```/{exit} g' README.md \
  | sed "s|^B=.*|B=http://127.0.0.1:$port|")
[ -n "$quick" ] || { echo "README quick start not found"; exit 1; }
out=$(bash -euo pipefail -c "$quick")
echo "$out" | grep -q '"type": "message.created"' || { echo "quick start: no message in /sync: $out"; exit 1; }
echo "$out" | tail -1 | grep -qx 204 || { echo "quick start: logout did not answer 204: $out"; exit 1; }
echo "README quick start: ok"
(cd docs && NEXUS_URL="http://127.0.0.1:$port" node example-client.mjs)
