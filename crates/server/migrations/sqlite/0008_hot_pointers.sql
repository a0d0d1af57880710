-- Nothing changes on SQLite. Keep in step with ../postgres/0008_hot_pointers.sql (same
-- version), which drops the (user_id, last_pos) index of member rows so that PostgreSQL's
-- per-message updates of those rows are HOT (no index entry written). SQLite has no such
-- versions: an update moves the row's index entry within a page the commit writes anyway,
-- and its plan for a user's conversation list walks this index newest first, so the first
-- page reads only its own rows. The index stays.
SELECT 1;
