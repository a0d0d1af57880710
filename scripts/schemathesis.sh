#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document (/openapi.json):
# schemathesis generates requests from the document (valid and invalid ones) and checks that
# no answer is a 5xx and that every answer matches the document (status, content type,
# headers, body schema) and that authentication is enforced. Against a live server of its
# own (in-memory database, free port), with a user whose token the authenticated routes use.
#   scripts/schemathesis.sh            # 25 examples per operation (the test command)
#   EXAMPLES=500 scripts/schemathesis.sh
# Installs schemathesis into .venv-schemathesis from tests/python/requirements-openapi.txt
# (every package pinned with its hash).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${NEXUS_BIN:-$PWD/target/debug/nexus}"
examples="${EXAMPLES:-25}"
venv=.venv-schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
    -r tests/python/requirements-openapi.txt
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Limits raised: schemathesis registers and logs in far more often than a person.
DATABASE_URL=sqlite::memory: HOST=127.0.0.1 PORT=$port RUST_LOG=error \
  RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 RATE_LIMIT_MESSAGES_PER_MINUTE=1000000 \
  RATE_LIMIT_CHANGES_PER_MINUTE=1000000 "$bin" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 200); do
  curl -sf "$base/ready" >/dev/null && break
  sleep 0.05
done
token=$(curl -sf -H 'content-type: application/json' \
  -d '{"name":"Schema","email":"schema@example.org","password":"correct horse battery"}' \
  "$base/auth/register" | python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
out=$(mktemp)
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
run() {
  "$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth \
    --max-examples "$examples" --seed 1 --workers 1 --no-color \
    --phases examples,coverage,fuzzing --generation-database none \
    -H "Authorization: Bearer $token" "$@" | tee -a "$out"
}
# Logout and password change end the token the other operations use: they run last.
run --exclude-path /auth/logout --exclude-path /auth/password
run --include-path /auth/password --include-path /auth/logout
grep -E "^  [0-9]+ generated" "$out" | sed 's/^/schemathesis test cases: /'
