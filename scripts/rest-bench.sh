#!/usr/bin/env bash
# POST /messages throughput from 50 concurrent HTTP clients (wrk), for issue 2's report.
# Usage: scripts/rest-bench.sh [DATABASE_URL] [seconds]   (release build of nexus required)
# Needs `wrk` (apt-get install wrk). Prints wrk's summary; Requests/sec = messages/s.
# NEXUS_WRAP="perf record -g -o perf.data --" runs the server under a profiler.
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-sqlite:///tmp/nexus-rest-bench/nexus.db}
secs=${2:-10}
port=3917
if [[ $url == sqlite://* ]]; then rm -rf /tmp/nexus-rest-bench; mkdir -p /tmp/nexus-rest-bench; fi
DATABASE_URL=$url PORT=$port HOST=127.0.0.1 RUST_LOG=warn RATE_LIMIT_MESSAGES_PER_MINUTE=100000000 RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 \
  ${NEXUS_WRAP:-} ./target/release/nexus & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
echo "nexus pid $pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done

tokens=() ids=()
for i in $(seq 1 50); do
  body=$(curl -sf -XPOST "http://127.0.0.1:$port/auth/register" -H 'content-type: application/json' \
    -d "{\"name\":\"u$i\",\"email\":\"u$i-$RANDOM$RANDOM@bench.local\",\"password\":\"password123\"}")
  tokens+=("$(echo "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')")
  ids+=("$(echo "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["user"]["id"])')")
done
# pair user i with user i+1 (wrapping): sender i sends to ids[i+1]
receivers=("${ids[@]:1}" "${ids[0]}")
TOKENS=$(IFS=,; echo "${tokens[*]}") RECEIVERS=$(IFS=,; echo "${receivers[*]}") \
  wrk -t2 -c50 -d"${secs}s" --latency -s scripts/wrk-post-messages.lua "http://127.0.0.1:$port"
echo "server: $url (every request is a stored message unless non-2xx above is > 0)"
