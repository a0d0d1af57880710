#!/usr/bin/env bash
# What a page of a user's conversation list costs on PostgreSQL when that user has thousands
# of conversations (docs/benchmarks.md, "PostgreSQL write path"), with and without an index
# ordered by the per-member pointer `last_pos`, on the same data in one run.
#
# A release nexus on a fresh database of the machine's PostgreSQL applies the migrations;
# one user registers over HTTP; N direct conversations with one message each are then made
# for that user in SQL (N other users, N conversations, 2N member rows, N messages). For
# each index variant the script reports the server's own time for the listing statement
# (EXPLAIN ANALYZE, first page and a page deep in the list, buffers touched) and the
# wall-clock time of `GET /conversations?limit=50` (first page, and every page through the
# whole list following nextCursor) and of `GET /messages/conversations/all`.
#   scripts/pg-listing-cost.sh [N]     (default 5000)
# NEXUS_BIN picks the server binary (default target/release/nexus).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
NEXUS=${NEXUS_BIN:-./target/release/nexus}
DB=nexus_listing_$$
PORT=$((33000 + RANDOM % 1000))
PGBASE=${PG_ADMIN_URL%/*}
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $DB"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
}
trap cleanup EXIT
DATABASE_URL="$PGBASE/$DB" HOST=127.0.0.1 PORT=$PORT RUST_LOG=warn \
  RATE_LIMIT_AUTH_PER_IP_PER_MINUTE=1000000 JWT_SECRET=listing-cost-secret-at-least-32-bytes-long \
  "$NEXUS" & pids+=($!)
for _ in $(seq 100); do curl -fsS http://127.0.0.1:$PORT/ready >/dev/null 2>&1 && break; sleep 0.2; done
U=http://127.0.0.1:$PORT
reg=$(curl -fsS -X POST $U/auth/register -H 'content-type: application/json' \
  -d '{"name":"Many","email":"many@example.org","password":"listing-cost-pw"}')
TOKEN=$(jq -r .accessToken <<<"$reg"); ME=$(jq -r .user.id <<<"$reg")
P="psql $PGBASE/$DB -X -q -v ON_ERROR_STOP=1"
$P -v me="$ME" -v n="$N" <<'SQL'
CREATE TEMP TABLE o AS
  SELECT i, gen_random_uuid()::text AS uid, gen_random_uuid()::text AS cid,
         gen_random_uuid()::text AS mid FROM generate_series(1, :n) AS i;
INSERT INTO users (id, name, email, password_hash, created_at)
  SELECT uid, 'Other ' || i, 'other' || i || '@example.org', 'x', 1700000000000 FROM o;
INSERT INTO user_seqs (user_id, seq) SELECT uid, 1 FROM o;
INSERT INTO conversations (id, kind, user_lo, user_hi, created_at, last_pos)
  SELECT cid, 'direct', LEAST(uid, :'me'), GREATEST(uid, :'me'), 1700000000000 + i, 0 FROM o;
INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, created_at,
                      sender_seq, receiver_seq)
  SELECT mid, cid, uid, :'me', 'hello ' || i, 1700000000000 + i, 1, i FROM o ORDER BY i;
UPDATE conversations c SET last_pos = m.pos FROM messages m WHERE m.conversation_id = c.id;
INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, last_pos, unread)
  SELECT c.id, x.u, 'member', c.created_at, c.last_pos, CASE WHEN x.u = :'me' THEN 1 ELSE 0 END
  FROM conversations c CROSS JOIN LATERAL (VALUES (c.user_lo), (c.user_hi)) AS x (u)
  WHERE c.id IN (SELECT cid FROM o);
UPDATE user_seqs SET seq = :n WHERE user_id = :'me';
ANALYZE;
SQL
# The listing statement of store/conversations.rs, first page and the page after entry
# N/2 (the keyset cursor of a page deep in the list).
LIST="SELECT conversation_id, last_pos, unread FROM conversation_members
 WHERE user_id = \$1 AND removed_at IS NULL
   AND (\$2 = '' OR last_pos < \$3 OR (last_pos = \$3 AND conversation_id < \$2))
 ORDER BY last_pos DESC, conversation_id DESC LIMIT \$4"
mid=$($P -At -c "SELECT conversation_id || '|' || last_pos FROM conversation_members WHERE user_id = '$ME' ORDER BY last_pos DESC, conversation_id DESC OFFSET $((N / 2)) LIMIT 1")
explain() { # $1 = cursor id, $2 = cursor pos
  $P -At <<SQL | grep -E 'Execution Time|Buffers: shared' | sed -n '1p;$p' | sed 's/^ *//' | paste -sd ' ' -
PREPARE list(text, text, int8, int8) AS $LIST;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE list('$ME', '$1', $2, 51);
SQL
}
plan() { # the whole plan of the page at the cursor $1 / $2
  $P -At <<SQL
PREPARE list(text, text, int8, int8) AS $LIST;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE list('$ME', '$1', $2, 51);
SQL
}
pages() { # every page of GET /conversations, following nextCursor: count, order, time a page
  python3 - "$U" "$TOKEN" "$N" <<'PY'
import json, sys, time, urllib.request
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen, last, cursor, pages, t0 = [], None, None, 0, time.perf_counter()
while True:
    q = f"{url}/conversations?limit=50" + (f"&before={cursor}" if cursor else "")
    req = urllib.request.Request(q, headers={"authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(req)); pages += 1
    for c in page["conversations"]:
        at = c["lastMessage"]["timestamp"]
        assert last is None or at <= last, "not most recent first"
        last = at; seen.append(c["id"])
    cursor = page.get("nextCursor")
    if not cursor: break
ms = (time.perf_counter() - t0) * 1000
assert len(seen) == n and len(set(seen)) == n, f"{len(seen)} entries, {len(set(seen))} distinct"
print(f"{pages} pages, all {n} conversations once, most recent first; {ms:.0f} ms ({ms / pages:.1f} ms a page)")
PY
}
timed() { # median of 9 wall-clock times of curl for URL $1, in ms
  for _ in $(seq 9); do curl -fsS -o /dev/null -w '%{time_total}\n' "$1" -H "authorization: Bearer $TOKEN"; done \
    | sort -n | sed -n 5p | awk '{printf "%.1f ms", $1 * 1000}'
}
report() {
  [ -z "${PLANS:-}" ] || plan "${mid%|*}" "${mid#*|}"
  echo "  listing statement, first page:   $(explain '' 9223372036854775807)"
  echo "  listing statement, page at $((N / 2)): $(explain "${mid%|*}" "${mid#*|}")"
  echo "  GET /conversations?limit=50 (median of 9): $(timed "$U/conversations?limit=50")"
  echo "  GET /conversations?limit=50&before=(entry $((N / 2))) (median of 9): $(timed "$U/conversations?limit=50&before=${mid%|*}")"
  echo "  GET /conversations, every page:  $(pages)"
  echo "  GET /messages/conversations/all (median of 9): $(timed "$U/messages/conversations/all")"
}
echo "user with $N conversations; load average $(cut -d' ' -f1-3 /proc/loadavg); $($P -At -c "SELECT string_agg(indexname, ', ') FROM pg_indexes WHERE tablename = 'conversation_members'")"
echo "indexes of conversation_members as migrated:"
report
if $P -At -c "SELECT 1 FROM pg_indexes WHERE indexname = 'conversation_members_by_user'" | grep -q 1; then
  $P -c "DROP INDEX conversation_members_by_user; CREATE INDEX conversation_members_of_user ON conversation_members (user_id); ANALYZE conversation_members"
  echo "with (user_id) instead of (user_id, last_pos):"
elif $P -At -c "SELECT 1 FROM pg_indexes WHERE indexname = 'conversation_members_listed'" | grep -q 1; then
  $P -c "DROP INDEX conversation_members_listed; CREATE INDEX conversation_members_of_user ON conversation_members (user_id); ANALYZE conversation_members"
  echo "with (user_id) instead of 0009's (user_id, last_pos, conversation_id):"
fi
report
