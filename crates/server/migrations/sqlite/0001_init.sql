-- Nexus schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql (same version,
-- same tables and columns). Times are milliseconds since the Unix epoch (UTC); ids are
-- UUID strings; flags are 0/1 integers, so one set of SQL statements serves both backends.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    email                 TEXT NOT NULL UNIQUE,
    password_hash         TEXT NOT NULL,
    public_encryption_key TEXT,
    created_at            INTEGER NOT NULL
);

-- The per-user change counter (DESIGN.md §5): taken under lock in the transaction that
-- appends to the user's change log, so sequence numbers are gap-free and in commit order.
CREATE TABLE user_seqs (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    seq     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    pos               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    sender_id         TEXT NOT NULL REFERENCES users (id),
    receiver_id       TEXT NOT NULL REFERENCES users (id),
    content           TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    edited_at         INTEGER,
    deleted_at        INTEGER,
    is_encrypted      INTEGER NOT NULL DEFAULT 0,
    encryption_key_id TEXT,
    client_message_id TEXT,
    sender_seq        INTEGER NOT NULL,
    receiver_seq      INTEGER NOT NULL,
    UNIQUE (sender_id, client_message_id)
);
CREATE INDEX messages_by_pair ON messages (sender_id, receiver_id, pos);
CREATE INDEX messages_by_receiver ON messages (receiver_id, pos);
CREATE INDEX messages_by_created ON messages (created_at);

-- Earlier versions of an edited message, oldest first. Emptied when the message is deleted.
CREATE TABLE message_edits (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT NOT NULL REFERENCES messages (id),
    content     TEXT NOT NULL,
    replaced_at INTEGER NOT NULL
);
CREATE INDEX message_edits_by_message ON message_edits (message_id, id);

CREATE TABLE read_receipts (
    message_id TEXT NOT NULL REFERENCES messages (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    read_at    INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX read_receipts_by_time ON read_receipts (read_at);

CREATE TABLE delivery_receipts (
    message_id   TEXT NOT NULL REFERENCES messages (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);

-- Push targets, many per user (one per device). A token belongs to one user at a time.
CREATE TABLE push_devices (
    token      TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
);
CREATE INDEX push_devices_by_user ON push_devices (user_id, created_at);

-- The per-user change log behind GET /sync.
CREATE TABLE changes (
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    message_id TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
);
