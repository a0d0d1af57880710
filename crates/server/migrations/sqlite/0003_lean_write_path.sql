-- Fewer B-tree writes per message (each one is a page in the next commit's WAL frames).
-- Keep in step with ../postgres/0003_lean_write_path.sql (same version).

-- Nothing reads messages by creation time alone: every query starts from a user.
DROP INDEX messages_by_created;

-- The change log and the counters are only ever reached by their primary key: stored in
-- it (WITHOUT ROWID), a row is one B-tree insert, not a table row plus an index entry.
CREATE TABLE changes_by_key (
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
INSERT INTO changes_by_key (user_id, seq, kind, message_id, actor_id, at)
SELECT user_id, seq, kind, message_id, actor_id, at FROM changes;
DROP TABLE changes;
ALTER TABLE changes_by_key RENAME TO changes;

CREATE TABLE user_seqs_by_key (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    seq     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO user_seqs_by_key (user_id, seq) SELECT user_id, seq FROM user_seqs;
DROP TABLE user_seqs;
ALTER TABLE user_seqs_by_key RENAME TO user_seqs;
