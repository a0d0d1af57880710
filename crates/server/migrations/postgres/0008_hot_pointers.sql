-- Room for the next versions of the rows the write path updates on every message (docs/
-- benchmarks.md, "PostgreSQL write path"). Keep in step with ../sqlite/0008_hot_pointers.sql
-- (same version).
--
-- An update that changes no indexed column and finds room on its page is a heap-only (HOT)
-- update: no index entry written, and the page prunes the old version by itself. Counters
-- (seq) and conversations (last_pos) are updated that way; a tenth of each page kept free lets
-- the first update of a row on a page that inserts filled be HOT too. Member rows are kept
-- here as well, although their last_pos is indexed for the conversation list (0009's
-- (user_id, last_pos, conversation_id), which makes each member update non-HOT: measured, and
-- what dropping that index would gain, in the doc above).
ALTER TABLE conversation_members SET (fillfactor = 90);
ALTER TABLE conversations SET (fillfactor = 90);
ALTER TABLE user_seqs SET (fillfactor = 90);
