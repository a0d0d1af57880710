#!/usr/bin/env bash
# The 10-minute chaos soak (not part of the test command, which runs a 60-second version):
# three nodes behind HAProxy on a fresh database of the machine's PostgreSQL and a private
# Redis, 200 users chatting through the balancer, a random node SIGKILLed and restarted every
# minute, Redis restarted once; then every client is compared with the database. Prints the
# counts as one JSON line (lost, clientsWithGaps and storedTwice must be 0) and exits
# non-zero otherwise. Extra arguments go to the driver, e.g. --seconds 120 --users 50.
# Needs what scripts/test.sh needs (haproxy, redis-server, PostgreSQL, Node.js).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p nexus
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
NEXUS_BIN="$PWD/target/release/nexus" exec node tests/js/cluster/chaos.js --seconds 600 --users 200 --kill-every 60 "$@"
