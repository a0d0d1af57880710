-- A user's conversation list pages by (last_pos, conversation_id) (GET /conversations and
-- GET /messages/conversations/all): with the id in the index, a page seeks to its cursor
-- and reads only its own rows, whatever the number of conversations before it. It replaces
-- the index on (user_id, last_pos), of which it is a superset, so the write path (every
-- message moves its members' last_pos) still maintains one index of these rows.
CREATE INDEX conversation_members_listed ON conversation_members (user_id, last_pos, conversation_id);
DROP INDEX conversation_members_by_user;
