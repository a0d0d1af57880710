#!/usr/bin/env python3
"""How many SQLite WAL frames (pages) a batch of messages writes, for the current schema.

The SQLite writer is bound by what each commit writes: every page a transaction touches is
appended to the WAL as a whole frame, and the commit waits for the fsync of those frames.
Run times on a shared VM drift by tens of percent between hours; this count does not, so a
schema change can be judged by it before it is benchmarked.

The script applies crates/server/migrations/sqlite/*.sql to a fresh database, then commits
batches shaped like `nexus-bench throughput`'s load (users in pairs, 100-byte messages,
tempIds "<senderId>:<n>") with the statements of crates/server/src/store/sqlite_writes.rs
(insert the message, write its conversation and both member rows, one change row per party,
the counters),
and reports WAL frames and KiB per message once the tables are warm.

    scripts/wal-frames.py                       # 32 users, batches of 44 and 512
    scripts/wal-frames.py --batch 100 --drop-index messages_by_conversation   # what an index costs
"""

import argparse
import glob
import os
import random
import sqlite3
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def uuid7() -> str:
    """A time-ordered id like the server's `Uuid::now_v7()`."""
    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def measure(users: int, batch: int, page_size: int, warm: int, batches: int, drop: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "n.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size = {page_size}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # the WAL only grows: its size counts frames
        for migration in sorted(glob.glob(os.path.join(ROOT, "crates/server/migrations/sqlite/*.sql"))):
            db.executescript(open(migration).read())
        for index in drop:
            db.execute(f"DROP INDEX {index}")

        ids = [str(uuid.uuid4()) for _ in range(users)]
        for u in ids:
            db.execute(
                "INSERT INTO users (id, name, email, password_hash, created_at) VALUES (?, ?, ?, ?, 0)",
                (u, "user " + u[:8], u + "@example.com", "$argon2id$" + "x" * 87),
            )
            db.execute("INSERT INTO user_seqs (user_id, seq) VALUES (?, 0)", (u,))
        seq = {u: 0 for u in ids}
        sent = {u: 0 for u in ids}
        # Each pair's direct conversation, as its first message creates it.
        conversation = {}
        unread = {}
        for k in range(0, users, 2):
            a, b = sorted((ids[k], ids[k + 1]))
            cid = uuid7()
            db.execute(
                "INSERT INTO conversations (id, kind, title, user_lo, user_hi, created_at, last_pos) "
                "VALUES (?, 'direct', NULL, ?, ?, 0, 0)",
                (cid, a, b),
            )
            for u in (a, b):
                db.execute(
                    "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at) "
                    "VALUES (?, ?, 'member', 0)",
                    (cid, u),
                )
                unread[u] = 0
            conversation[ids[k]] = conversation[ids[k + 1]] = (cid, a, b)

        def one_batch() -> None:
            db.execute("BEGIN IMMEDIATE")
            now = int(time.time() * 1000)
            written = []
            for _ in range(batch):
                k = random.randrange(users)
                sender, receiver = ids[k], ids[k ^ 1]
                sent[sender] += 1
                seq[sender] += 1
                seq[receiver] += 1
                mid = uuid7()
                content = f"{sent[sender]} {time.time_ns()} ".ljust(100, "x")
                unread[receiver] += 1
                cur = db.execute(
                    "INSERT INTO messages (id, conversation_id, sender_id, receiver_id, content, "
                    "created_at, client_message_id, sender_seq, receiver_seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mid, conversation[sender][0], sender, receiver, content, now,
                     f"{sender}:{sent[sender]}", seq[sender], seq[receiver]),
                )
                written.append((sender, receiver, cur.lastrowid, mid, seq[sender], seq[receiver]))
            latest = {}
            for sender, _receiver, pos, *_ in written:
                latest[conversation[sender]] = pos
            for (cid, a, b), pos in sorted(latest.items()):
                db.execute(
                    "INSERT INTO conversations (id, kind, title, user_lo, user_hi, created_at, "
                    "last_pos) VALUES (?, 'direct', NULL, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE "
                    "SET title = excluded.title, last_pos = excluded.last_pos",
                    (cid, a, b, pos),
                )
            for (cid, a, b), pos in sorted(latest.items()):
                for u in (a, b):
                    db.execute(
                        "INSERT INTO conversation_members (conversation_id, user_id, role, "
                        "joined_at, last_pos, read_up_to_pos, unread, removed_at) "
                        "VALUES (?, ?, 'member', 0, ?, 0, ?, NULL) "
                        "ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, "
                        "joined_at = excluded.joined_at, last_pos = excluded.last_pos, "
                        "read_up_to_pos = excluded.read_up_to_pos, unread = excluded.unread, "
                        "removed_at = excluded.removed_at",
                        (cid, u, pos, unread[u]),
                    )
            for sender, receiver, _, mid, s_seq, r_seq in written:
                for user, user_seq in ((sender, s_seq), (receiver, r_seq)):
                    db.execute(
                        "INSERT INTO changes (user_id, seq, kind, message_id, conversation_id, "
                        "actor_id, at) VALUES (?, ?, 'message', ?, NULL, ?, ?)",
                        (user, user_seq, mid, sender, now),
                    )
            for user in sorted({u for w in written for u in w[:2]}):
                db.execute("UPDATE user_seqs SET seq = ? WHERE user_id = ?", (seq[user], user))
            db.execute("COMMIT")

        for _ in range(warm):
            one_batch()
        before = os.path.getsize(path + "-wal")
        for _ in range(batches):
            one_batch()
        frames = (os.path.getsize(path + "-wal") - before) / (page_size + 24)
        db.close()
    per_message = frames / (batches * batch)
    print(
        f"{users} users, batches of {batch}, {page_size}-byte pages"
        f"{', without ' + ', '.join(drop) if drop else ''}: "
        f"{frames / batches:.1f} frames per commit, {per_message:.2f} per message "
        f"= {per_message * page_size / 1024:.1f} KiB of WAL per message"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=32, help="users, in pairs (default 32)")
    p.add_argument("--batch", type=int, action="append",
                   help="messages per commit; repeat for several (default 44 and 512)")
    p.add_argument("--page-size", type=int, default=4096, help="SQLite page size (default 4096)")
    p.add_argument("--warm", type=int, default=300, help="batches before counting (default 300)")
    p.add_argument("--batches", type=int, default=300, help="batches counted (default 300)")
    p.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                   help="drop this index first, to see what it costs")
    a = p.parse_args()
    random.seed(1)
    for batch in a.batch or [44, 512]:
        measure(a.users, batch, a.page_size, a.warm, a.batches, a.drop_index)


if __name__ == "__main__":
    main()
