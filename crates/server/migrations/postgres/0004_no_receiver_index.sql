-- Every message inserted an entry in messages_by_receiver, at the end of the receiver's
-- range: one more index page written per receiver in every commit (on SQLite about a sixth
-- of the pages a batch writes). Its two readers now reach a user's received messages
-- through the conversations table and messages_by_pair (sender_id, receiver_id, pos):
-- unread counts per conversation, and the brief's timestamp catch-up.
DROP INDEX messages_by_receiver;
