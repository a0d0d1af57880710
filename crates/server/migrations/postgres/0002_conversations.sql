-- One row per (user, other party): the position of their latest message. Kept by the write
-- path; makes the conversation list and presence fan-out independent of history size.
CREATE TABLE conversations (
    user_id  TEXT NOT NULL REFERENCES users (id),
    other_id TEXT NOT NULL REFERENCES users (id),
    last_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, other_id)
);
CREATE INDEX conversations_recent ON conversations (user_id, last_pos);

INSERT INTO conversations (user_id, other_id, last_pos)
SELECT user_id, other_id, MAX(pos) FROM (
    SELECT sender_id AS user_id, receiver_id AS other_id, pos FROM messages
    UNION ALL
    SELECT receiver_id AS user_id, sender_id AS other_id, pos FROM messages
) AS t GROUP BY user_id, other_id;
