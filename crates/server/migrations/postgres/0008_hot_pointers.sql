-- The per-message pointer updates become HOT updates (docs/benchmarks.md, "PostgreSQL write
-- path"). Keep in step with ../sqlite/0008_hot_pointers.sql (same version).
--
-- Every message updates its senders' and receivers' member rows (last_pos, unread), its
-- conversation (last_pos) and its parties' counters (seq). An update that changes no indexed
-- column and finds room on its page is a heap-only (HOT) update: it writes no index entry, and
-- the page prunes the old version by itself, without waiting for vacuum. The index of member
-- rows by (user_id, last_pos) made every member update non-HOT: a new entry in both of the
-- table's indexes, a dead one left in each, on two rows per message.
--
-- A user's conversation list still finds that user's rows by user_id and orders them by
-- last_pos. The (user_id, last_pos) index did not bound a page's cost anyway (the keyset
-- condition on (last_pos, conversation_id) is no index range, so every page read all of the
-- user's rows and kept the top ones); a page costs the same with this index, linear in the
-- number of the user's conversations (about 2 ms of the statement for 5,000).
DROP INDEX conversation_members_by_user;
CREATE INDEX conversation_members_by_user_id ON conversation_members (user_id);

-- A tenth of every page kept free for the next versions of its rows, so that the first update
-- of a row on a page that inserts filled is HOT too; after that, pages make room themselves
-- by pruning old versions (in the bench, 99.99 % of member updates were HOT with or without
-- this). More room would only spread the rows of a user's conversation list over more pages.
-- Applies to pages written from now on.
ALTER TABLE conversation_members SET (fillfactor = 90);
ALTER TABLE conversations SET (fillfactor = 90);
ALTER TABLE user_seqs SET (fillfactor = 90);
