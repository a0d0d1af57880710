#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it:
#   formatting and lints, Rust unit and integration tests (each integration test on SQLite
#   and on PostgreSQL), the official socket.io-client suite (node --test), the cluster suite
#   (several nodes on PostgreSQL + Redis behind HAProxy, with failures) and the
#   python-socketio suite (pytest), all against the real `nexus` binary; the web client's
#   unit tests (Vitest) and browser tests (Playwright driving Debian's Chromium).
# Installs what it needs (npm ci, a Python virtualenv) from the project's own lock files.
# PostgreSQL: NEXUS_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres);
# with CI=true an unreachable PostgreSQL fails the run instead of skipping those tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "system packages (scripts/setup.sh)"
./scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit + HTTP integration, SQLite and PostgreSQL)"
cargo build --workspace --bins
cargo test --workspace

step "push: send latency with the push services answering vs hung (fake FCM + Web Push)"
cargo test -q -p nexus --test api a_hung_push_service_does_not_slow_sends -- --nocapture 2>&1 \
  | grep -E "send latency|test result"

export NEXUS_BIN="$PWD/target/debug/nexus"

step "socket.io-client 4.x suite (node --test)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error && npm test)

step "cluster suite: nodes on PostgreSQL + Redis, HAProxy, failures (node SIGKILL, Redis down 30 s, PostgreSQL down, rolling restart), 60 s of chaos"
# The machine's Redis (own key prefix per suite) and private redis-server / initdb copies that
# the failure tests stop; see tests/js/cluster/harness.js.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then echo "CI=true and Redis at 127.0.0.1:6379 is unreachable" >&2; exit 1; fi
  echo "skipping the cluster suite: no Redis at 127.0.0.1:6379"
elif ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [ "${CI:-}" = true ]; then echo "CI=true and PostgreSQL at 127.0.0.1:5432 is unreachable" >&2; exit 1; fi
  echo "skipping the cluster suite: no PostgreSQL at 127.0.0.1:5432"
else
  (cd tests/js && node --test --test-concurrency=1 cluster/*.test.js)
fi

step "python-socketio 5.x suite (pytest)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r tests/python/requirements.txt
.venv/bin/python -m pytest tests/python -q

step "schemathesis against /openapi.json (a live server; no 5xx, every answer as documented)"
./scripts/schemathesis.sh

step "web client: typecheck, Vitest units, production build, Playwright in Chromium"
# The wire types' freshness is checked by `cargo test` above (crates/protocol).
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run typecheck && npm run test:unit \
  && npm run build && npm run test:e2e)

step "the README quick start and docs/example-client.mjs run as documented, against a live server"
./scripts/check-docs.sh

step "scripts/wal-frames.py still runs against the current migrations (tiny sizes)"
python3 scripts/wal-frames.py --users 4 --batch 4 --warm 3 --batches 3

step "all suites passed"
