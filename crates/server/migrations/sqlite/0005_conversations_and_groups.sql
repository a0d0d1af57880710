-- Conversations as the unit of the model, and groups (docs/design.md, "Conversations and
-- groups"). Keep in step with ../postgres/0005_conversations_and_groups.sql (same version).
-- A database that applied 0006 and 0007 before this one gets it afterwards (nothing here
-- touches their tables).
--
-- messages.receiver_id becomes nullable (a group message has no receiver) and every message
-- gets its conversation_id. SQLite changes a column only by rebuilding the table, and
-- foreign keys (on, and not switchable inside the migration's transaction) forbid dropping
-- a table others still refer to: so the three tables that refer to messages are rebuilt
-- too, referring to the new table, and dropped before the old one; renaming the new table
-- rewrites their references.

-- The 0002 index of (user, other party, last position) becomes a conversation per pair
-- with two member rows.
ALTER TABLE conversations RENAME TO conversations_0002;
DROP INDEX conversations_recent;

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title      TEXT,
    -- A direct conversation's two members, the smaller id first: one conversation per pair.
    user_lo    TEXT REFERENCES users (id),
    user_hi    TEXT REFERENCES users (id),
    created_at INTEGER NOT NULL,
    -- Position of the latest message (0: none yet).
    last_pos   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_lo, user_hi)
);

-- One row per member, kept after removal (removed_at set) so that a former member's
-- history up to the removal (last_pos, frozen then) stays readable. unread is stored,
-- maintained by the write path; read_up_to_pos is the member's read pointer.
CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at       INTEGER NOT NULL,
    last_pos        INTEGER NOT NULL DEFAULT 0,
    read_up_to_pos  INTEGER NOT NULL DEFAULT 0,
    unread          INTEGER NOT NULL DEFAULT 0,
    removed_at      INTEGER,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id, last_pos);

INSERT INTO conversations (id, kind, title, user_lo, user_hi, created_at, last_pos)
SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-'
             || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(h, 18, 3) || '-'
             || substr(h, 21, 12)),
       'direct', NULL, user_id, other_id,
       (SELECT MIN(m.created_at) FROM messages m
         WHERE (m.sender_id = p.user_id AND m.receiver_id = p.other_id)
            OR (m.sender_id = p.other_id AND m.receiver_id = p.user_id)),
       last_pos
FROM (SELECT hex(randomblob(16)) AS h, user_id, other_id, last_pos
      FROM conversations_0002 WHERE user_id < other_id) AS p;

INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, last_pos,
                                  read_up_to_pos, unread)
SELECT c.id, o.user_id, 'member', c.created_at, c.last_pos, 0,
       (SELECT COUNT(*) FROM messages m
         WHERE m.sender_id = o.other_id AND m.receiver_id = o.user_id
           AND m.deleted_at IS NULL AND NOT EXISTS (
             SELECT 1 FROM read_receipts r WHERE r.message_id = m.id AND r.user_id = o.user_id))
FROM conversations c
JOIN conversations_0002 o
  ON (o.user_id = c.user_lo AND o.other_id = c.user_hi)
  OR (o.user_id = c.user_hi AND o.other_id = c.user_lo);

CREATE TABLE messages_0005 (
    pos               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id),
    sender_id         TEXT NOT NULL REFERENCES users (id),
    receiver_id       TEXT REFERENCES users (id),
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
INSERT INTO messages_0005 (pos, id, conversation_id, sender_id, receiver_id, content,
                           created_at, edited_at, deleted_at, is_encrypted, encryption_key_id,
                           client_message_id, sender_seq, receiver_seq)
SELECT m.pos, m.id, c.id, m.sender_id, m.receiver_id, m.content, m.created_at, m.edited_at,
       m.deleted_at, m.is_encrypted, m.encryption_key_id, m.client_message_id, m.sender_seq,
       m.receiver_seq
FROM messages m
JOIN conversations c
  ON c.user_lo = min(m.sender_id, m.receiver_id) AND c.user_hi = max(m.sender_id, m.receiver_id);
CREATE TABLE message_edits_0005 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT NOT NULL REFERENCES messages_0005 (id),
    content     TEXT NOT NULL,
    replaced_at INTEGER NOT NULL
);
INSERT INTO message_edits_0005 (id, message_id, content, replaced_at)
SELECT id, message_id, content, replaced_at FROM message_edits;

CREATE TABLE read_receipts_0005 (
    message_id TEXT NOT NULL REFERENCES messages_0005 (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    read_at    INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
INSERT INTO read_receipts_0005 (message_id, user_id, read_at)
SELECT message_id, user_id, read_at FROM read_receipts;

CREATE TABLE delivery_receipts_0005 (
    message_id   TEXT NOT NULL REFERENCES messages_0005 (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
INSERT INTO delivery_receipts_0005 (message_id, user_id, delivered_at)
SELECT message_id, user_id, delivered_at FROM delivery_receipts;

DROP TABLE message_edits;
DROP TABLE read_receipts;
DROP TABLE delivery_receipts;
DROP TABLE messages;
ALTER TABLE messages_0005 RENAME TO messages;
ALTER TABLE message_edits_0005 RENAME TO message_edits;
ALTER TABLE read_receipts_0005 RENAME TO read_receipts;
ALTER TABLE delivery_receipts_0005 RENAME TO delivery_receipts;
CREATE INDEX message_edits_by_message ON message_edits (message_id, id);
CREATE INDEX read_receipts_by_time ON read_receipts (read_at);
-- History is read by conversation; nothing reads by pair any more.
CREATE INDEX messages_by_conversation ON messages (conversation_id, pos);

DROP TABLE conversations_0002;

-- A conversation change in the feed names its conversation (message_id is '' then, or
-- the message read up to for conversation.read).
ALTER TABLE changes ADD COLUMN conversation_id TEXT;
