-- Nothing changes on SQLite. Keep in step with ../postgres/0008_hot_pointers.sql (same
-- version), which leaves room on PostgreSQL's pages for the next versions of rows updated on
-- every message; SQLite keeps no row versions and has no fillfactor.
SELECT 1;
