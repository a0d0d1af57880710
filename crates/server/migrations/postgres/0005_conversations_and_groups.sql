-- Conversations as the unit of the model, and groups (docs/design.md, "Conversations and
-- groups"). Keep in step with ../sqlite/0005_conversations_and_groups.sql (same version).
-- A database that applied 0006 and 0007 before this one gets it afterwards (nothing here
-- touches their tables).

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
    created_at BIGINT NOT NULL,
    -- Position of the latest message (0: none yet).
    last_pos   BIGINT NOT NULL DEFAULT 0,
    UNIQUE (user_lo, user_hi)
);

-- One row per member, kept after removal (removed_at set) so that a former member's
-- history up to the removal (last_pos, frozen then) stays readable. unread is stored,
-- maintained by the write path; read_up_to_pos is the member's read pointer.
CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    joined_at       BIGINT NOT NULL,
    last_pos        BIGINT NOT NULL DEFAULT 0,
    read_up_to_pos  BIGINT NOT NULL DEFAULT 0,
    unread          BIGINT NOT NULL DEFAULT 0,
    removed_at      BIGINT,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id, last_pos);

INSERT INTO conversations (id, kind, title, user_lo, user_hi, created_at, last_pos)
SELECT gen_random_uuid()::text, 'direct', NULL, p.user_id, p.other_id,
       (SELECT MIN(m.created_at) FROM messages m
         WHERE (m.sender_id = p.user_id AND m.receiver_id = p.other_id)
            OR (m.sender_id = p.other_id AND m.receiver_id = p.user_id)),
       p.last_pos
FROM conversations_0002 p WHERE p.user_id < p.other_id;

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

ALTER TABLE messages ADD COLUMN conversation_id TEXT REFERENCES conversations (id);
UPDATE messages m SET conversation_id = c.id FROM conversations c
 WHERE c.user_lo = LEAST(m.sender_id, m.receiver_id)
   AND c.user_hi = GREATEST(m.sender_id, m.receiver_id);
ALTER TABLE messages ALTER COLUMN conversation_id SET NOT NULL;
ALTER TABLE messages ALTER COLUMN receiver_id DROP NOT NULL;
-- History is read by conversation; nothing reads by pair any more.
DROP INDEX messages_by_pair;
CREATE INDEX messages_by_conversation ON messages (conversation_id, pos);

DROP TABLE conversations_0002;

-- A conversation change in the feed names its conversation (message_id is '' then, or
-- the message read up to for conversation.read).
ALTER TABLE changes ADD COLUMN conversation_id TEXT;
